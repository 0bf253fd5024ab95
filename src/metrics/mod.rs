//! Evaluation metrics: top-1 accuracy raw and logit-adjusted, per class and per shot bucket.

pub mod accuracy;
pub mod confusion;
pub mod logit_adjust;
pub mod neural_collapse;
pub mod pca;

pub use accuracy::{ClassificationReport, ShotBuckets};
pub use logit_adjust::{adjust_logits, log_prior};
