//! What a run leaves behind: the per-epoch log, the final metrics, written so that a crash
//! never leaves a half-written file.

pub mod atomic;
pub mod config;
pub mod confusion_plot;
pub mod console;
pub mod feature_plot;
pub mod html;
pub mod plots;
pub mod records;
pub mod run_dir;
pub mod table;
pub mod tensorboard;

pub use atomic::write_atomic;
pub use records::{ClassResult, EpochRecord, EvalSummary, FinalMetrics, SelectedEpoch};
