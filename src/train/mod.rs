//! Training: the schedule, the optimiser, evaluation, checkpoints, progress and the run loop.

pub mod checkpoint;
pub mod config;
pub mod context;
pub mod device;
pub mod epoch;
pub mod epoch_end;
pub mod evaluate;
pub mod experiment;
pub mod kernel_count;
pub mod optimizer;
pub mod posthoc;
pub mod predict;
pub mod progress;
pub mod run;
pub mod schedule;
pub mod seen_counts;
pub mod selection;
pub mod stage2;
pub mod step;
pub mod step_log;
pub mod trained_run;

pub use run::{RunOptions, train_run};
