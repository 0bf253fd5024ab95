//! rbl: long-tailed image classification with Rotated Balanced Learning (Gao et al., ICML 2023)
//! and the baselines it is measured against, on burn.
//!
//! Data flows one way: [`data`] (formats, long-tail sampling, augmentation, loader) →
//! [`model`] (backbones) → [`head`] (linear, ETF, rotated ETF) → [`loss`] / [`metrics`] →
//! [`report`] (logs, results), driven by [`train`]. The CPU kernels burn lacks are the crate
//! `rbl-ops` (`crates/rbl-ops`); the command line is the binary's `src/cli/`.

pub mod config;
pub mod contrastive;
pub mod data;
pub mod distributed;
pub mod error;
pub mod files;
pub mod head;
pub mod interrupt;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod network;
pub mod report;
pub mod train;
pub mod transfer;

pub use config::ExperimentConfig;
pub use error::{RblError, Result};

/// Tests that seed burn's process-wide generator (`device.seed`) hold this lock: parameters
/// are drawn from it lazily, so a test reseeding in parallel would change another's weights.
#[cfg(test)]
pub(crate) static SEED_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
