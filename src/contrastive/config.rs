//! The `[contrastive]` section of a config: which supervised contrastive method learns the
//! feature, and its settings. Absent (method `none`), a run trains as it always did.

use serde::{Deserialize, Serialize};

/// Which contrastive method (`contrastive.method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum ContrastiveKind {
    /// No contrastive term: the classifier's loss alone.
    #[default]
    None,
    /// KCL (Kang et al., ICLR 2021): supervised contrastive loss with k positives per anchor;
    /// the classifier is trained afterwards on the frozen feature (`rbl stage2 --method crt`).
    Kcl,
    /// TSC (Li et al., CVPR 2022): KCL plus class targets spread uniformly on the sphere,
    /// assigned to classes online; the classifier is trained afterwards as for KCL.
    Tsc,
    /// HCL (Wang et al., CVPR 2021): a supervised contrastive branch and the classifier's loss
    /// on one backbone, weighted by a curriculum that moves from the first to the second.
    Hcl,
}

impl ContrastiveKind {
    /// Whether the backbone learns from the contrastive loss alone (KCL, TSC: the classifier
    /// is a probe on the detached feature until stage 2 re-trains it).
    pub fn feature_only(self) -> bool {
        matches!(self, ContrastiveKind::Kcl | ContrastiveKind::Tsc)
    }
}

impl std::fmt::Display for ContrastiveKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::config::variant_name(self))
    }
}

/// Settings of the contrastive methods. The defaults are the reference code's (targeted-supcon:
/// temperature 0.07, a 128-d projection, k = 6, target weight 0.2 and one copy per target on
/// ImageNet-LT; centroid momentum 0.9).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ContrastiveConfig {
    /// `none`, `kcl`, `tsc` or `hcl`.
    pub method: ContrastiveKind,
    /// Temperature τ of the similarities z·z'/τ.
    pub temperature: f64,
    /// Width of the projection MLP's output (the sphere the loss works on).
    pub projection_dim: usize,
    /// Positives sampled per anchor from its class, besides its own second view (KCL's k);
    /// 0 takes every image of the class in the batch (SupCon, HCL's branch).
    pub positives: usize,
    /// TSC: copies of each target among the contrasted vectors (the reference's `tr`).
    pub target_repeat: usize,
    /// TSC: weight of the target term in an anchor's mean over its positives (`tw`).
    pub target_weight: f64,
    /// TSC: momentum of the class centroids the assignment matches to the targets.
    pub centroid_momentum: f64,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        ContrastiveConfig {
            method: ContrastiveKind::None,
            temperature: 0.07,
            projection_dim: 128,
            positives: 6,
            target_repeat: 1,
            target_weight: 0.2,
            centroid_momentum: 0.9,
        }
    }
}

impl ContrastiveConfig {
    /// True when no contrastive method is set and every value is the default (the section is
    /// then left out of stored configs, which keeps older runs' files as they were).
    pub fn is_default(&self) -> bool {
        *self == ContrastiveConfig::default()
    }

    /// Whether a contrastive method is on.
    pub fn enabled(&self) -> bool {
        self.method != ContrastiveKind::None
    }

    /// Checks the values; `Err((key, why))` names the first bad one.
    pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        if !(self.temperature.is_finite() && self.temperature > 0.0 && self.temperature <= 10.0) {
            return Err(("contrastive.temperature", format!("{} is not a number in (0, 10]", self.temperature)));
        }
        if !(1..=4096).contains(&self.projection_dim) {
            return Err(("contrastive.projection_dim", format!("{} is outside 1 … 4096", self.projection_dim)));
        }
        if self.positives > 4096 {
            return Err(("contrastive.positives", format!("{} is more than 4096", self.positives)));
        }
        if !(1..=100).contains(&self.target_repeat) {
            return Err(("contrastive.target_repeat", format!("{} is outside 1 … 100", self.target_repeat)));
        }
        if !(self.target_weight.is_finite() && (0.0..=100.0).contains(&self.target_weight)) {
            return Err(("contrastive.target_weight", format!("{} is not a number from 0 to 100", self.target_weight)));
        }
        if !(self.centroid_momentum.is_finite() && (0.0..1.0).contains(&self.centroid_momentum)) {
            return Err(("contrastive.centroid_momentum", format!("{} is not a number in [0, 1)", self.centroid_momentum)));
        }
        Ok(())
    }
}
