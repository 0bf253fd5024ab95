//! The experiment config: one TOML file per experiment, with `--set key=value` overrides.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and the resolved
//! config is written into every run folder so a run can be reproduced from its folder alone.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::long_tail::CountRule;
use crate::data::sampler::Sampler;
use crate::error::{RblError, Result};
use crate::loss::{LOSS_NAMES, LossConfig};

/// A whole experiment: data, model, training and evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// Name of the experiment; the default run folder is `runs/<name>`.
    pub name: String,
    /// Row label in `rbl table` (default: head and loss, e.g. `rbl` or `linear+lade`).
    pub method: String,
    /// Seed for weights, frame, data order and augmentation.
    pub seed: u64,
    /// `cpu` (burn flex) or `gpu` (burn wgpu, needs the `gpu` feature).
    pub device: String,
    /// Dataset and long-tail construction.
    pub data: DataConfig,
    /// Backbone and head.
    pub model: ModelConfig,
    /// Optimiser and schedule.
    pub train: TrainConfig,
    /// Training loss.
    pub loss: LossConfig,
    /// Evaluation options.
    pub eval: EvalConfig,
}

/// Which images, how imbalanced, how augmented.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `fashion-mnist` or `mnist` (IDX files), `cifar10` or `cifar100` (binary distributions).
    pub dataset: String,
    /// Folder with the IDX files (gzipped or not).
    pub root: String,
    /// Imbalance ratio n_max / n_min (1 … 500).
    pub imbalance_ratio: f64,
    /// Images of the head class; 0 means the per-class count of the training pool.
    pub n_max: usize,
    /// Rounding of the long-tail counts: `standard` (int) or `official-rbl` (ceil, the paper's code).
    pub counts: CountRule,
    /// Balanced validation images per class, set aside before the long-tail subsampling (0 = none).
    pub val_per_class: usize,
    /// Test images per class to evaluate on (0 = the whole balanced test set).
    pub test_per_class: usize,
    /// Zero padding for the random crop (0 disables the crop).
    pub crop_padding: usize,
    /// `folder` datasets: split file of the training images (`path label` lines, paths
    /// relative to `root`), e.g. ImageNet_LT_train.txt.
    pub train_split: String,
    /// `folder` datasets: split file of the test images.
    pub test_split: String,
    /// `folder` datasets: split file of the validation images (optional; used for selection).
    pub val_split: String,
    /// `folder` datasets: number of classes (1000 for ImageNet-LT).
    pub num_classes: usize,
    /// `folder` datasets: side of the square input (RandomResizedCrop for training; resize to
    /// size·8/7 and centre crop for evaluation).
    pub image_size: usize,
    /// `folder` datasets: decoder threads of the loader.
    pub workers: usize,
    /// `folder` datasets: `error` stops at a missing or undecodable image, naming it; `skip`
    /// leaves missing files out of the training and test sets and skips training images that
    /// fail to decode, counting them in the epoch log.
    pub bad_images: String,
    /// Per-channel normalisation mean on the 0–1 scale (empty: the training set's own).
    pub mean: Vec<f32>,
    /// Per-channel normalisation standard deviation on the 0–1 scale (empty: the training set's).
    pub std: Vec<f32>,
    /// AutoAugment's CIFAR-10 policy (25 sub-policies) after crop and flip.
    pub autoaugment: bool,
    /// Cutout hole side in pixels (0 = off; the paper's code uses 16 on CIFAR).
    pub cutout: usize,
    /// Random horizontal flip during training.
    pub flip: bool,
    /// How epochs sample the training set: `instance`, `class_balanced` or `sqrt`.
    pub sampler: Sampler,
    /// Classes with more than this many training images are "many-shot".
    pub many_threshold: usize,
    /// Classes with fewer than this many training images are "few-shot".
    pub few_threshold: usize,
}

/// Backbone and classifier head.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Backbone: `resnet32` (CIFAR ResNet, `widths`), `resnet50` or `resnext50_32x4d` (224-px input).
    pub backbone: String,
    /// Channel widths of the three stages.
    pub widths: [usize; 3],
    /// Linear projection to this feature dimension (0 = none, the feature is the last width).
    pub feature_dim: usize,
    /// `linear` (learned), `etf` (fixed simplex ETF, "Fixed") or `rbl` (ETF + learned rotation).
    pub head: String,
    /// Cosine logits (normalised features and class directions); LDAM's scale assumes them.
    pub cosine: bool,
    /// BatchNorm1d then L2 normalisation of the feature (the "Fixed" paper's dot-regression setup).
    pub feature_bn_l2: bool,
    /// Seed of the frame's directions (the ETF's U and RBL's base B0); unset: the run's seed.
    /// Lets an experiment change only where the fixed classifier points (`rbl experiment
    /// frame-directions`), keeping the backbone's initialisation and the data order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_seed: Option<u64>,
}

/// Optimiser and learning-rate schedule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Number of epochs.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay on every parameter.
    pub weight_decay: f64,
    /// Linear warm-up epochs before the cosine decay.
    pub warmup_epochs: usize,
    /// Warm-up starts at this fraction of `lr`.
    pub warmup_start_factor: f64,
    /// Drop the last incomplete batch of each epoch.
    pub drop_last: bool,
    /// Evaluate on the test set every this many epochs (and always at the last).
    pub eval_every: usize,
    /// Also checkpoint every this many steps inside an epoch (0: at epoch ends only; Ctrl-C
    /// always saves). Long epochs then lose at most this many steps to a crash; a resumed run
    /// still ends bitwise equal to an uninterrupted one.
    pub checkpoint_every_steps: usize,
    /// Mixup's Beta(α, α) parameter (0 = off; the "Fixed" paper uses α = 1 on CIFAR).
    pub mixup_alpha: f64,
    /// After warm-up: `cosine` (to 0 at the last epoch) or `step` (× `lr_gamma` at each of
    /// `lr_milestones`, 0-based epochs).
    pub schedule: String,
    /// Epochs where the step schedule multiplies the learning rate by `lr_gamma`.
    pub lr_milestones: Vec<usize>,
    /// Factor of each step.
    pub lr_gamma: f64,
    /// Arithmetic of the convolutions: `f32`, or mixed precision with the convolutions in
    /// `f16` / `bf16` and weights, norms, head, loss and optimizer in f32 (see
    /// `ops::precision`). Meant for GPUs; on the CPU, flex's half-precision convolution is
    /// slower than rbl's f32 one.
    pub precision: crate::ops::precision::Precision,
    /// The loss is multiplied by this before the backward pass and the gradients divided by
    /// it after, so that small f16 gradients do not flush to zero (0: 1024 for f16, else 1).
    pub loss_scale: f64,
}

/// Evaluation options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Post-hoc logit-adjustment strength τ.
    pub tau: f64,
    /// Images per evaluation batch.
    pub batch_size: usize,
    /// Neural-collapse metrics of the training features every this many epochs (0 = never).
    pub nc_every: usize,
    /// At every evaluation, also score the eval-mode network on the un-augmented training set:
    /// the train accuracy and loss the paper's curves show (the running figures of the
    /// augmented batches lag the model and see augmented images).
    pub train_eval: bool,
    /// After these epochs, draw PCA pictures of the train and test features with the class
    /// directions into `RUN_DIR/features/` (the paper's feature visualisations).
    pub feature_epochs: Vec<usize>,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            name: "experiment".into(),
            method: String::new(),
            seed: 0,
            device: "cpu".into(),
            data: DataConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            loss: LossConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: "fashion-mnist".into(),
            root: "/usr/share/datasets/fashion-mnist".into(),
            imbalance_ratio: 100.0,
            n_max: 0,
            counts: CountRule::Standard,
            val_per_class: 0,
            test_per_class: 0,
            crop_padding: 4,
            flip: true,
            train_split: String::new(),
            test_split: String::new(),
            val_split: String::new(),
            num_classes: 0,
            image_size: 224,
            workers: 4,
            bad_images: "error".into(),
            mean: Vec::new(),
            std: Vec::new(),
            autoaugment: false,
            cutout: 0,
            sampler: Sampler::Instance,
            many_threshold: 100,
            few_threshold: 20,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backbone: "resnet32".into(),
            widths: [16, 32, 64],
            feature_dim: 256,
            head: "rbl".into(),
            cosine: false,
            feature_bn_l2: false,
            frame_seed: None,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            warmup_epochs: 1,
            warmup_start_factor: 0.5,
            drop_last: true,
            eval_every: 1,
            checkpoint_every_steps: 0,
            mixup_alpha: 0.0,
            schedule: "cosine".into(),
            lr_milestones: Vec::new(),
            lr_gamma: 0.1,
            precision: crate::ops::precision::Precision::F32,
            loss_scale: 0.0,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { tau: 1.0, batch_size: 256, nc_every: 0, train_eval: false, feature_epochs: Vec::new() }
    }
}

impl ExperimentConfig {
    /// Reads a TOML file and applies `key=value` overrides (dotted keys, TOML values).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = crate::error::read_text_capped(path, 1 << 20)?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses TOML text (named `origin` in errors) and applies overrides.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| RblError::Config { origin: origin.into(), msg: e.to_string() })?;
        for ov in overrides {
            apply_override(&mut value, ov)?;
        }
        let cfg: ExperimentConfig =
            value.try_into().map_err(|e: toml::de::Error| RblError::Config { origin: origin.into(), msg: e.to_string() })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// The row label of `rbl table`.
    pub fn method_label(&self) -> String {
        if !self.method.is_empty() {
            return self.method.clone();
        }
        if self.loss.name == "ce" { self.model.head.clone() } else { format!("{}+{}", self.model.head, self.loss.name) }
    }

    /// The loss scale a step uses: `train.loss_scale`, or the precision's default for 0.
    pub fn loss_scale(&self) -> f64 {
        if self.train.loss_scale > 0.0 { self.train.loss_scale } else { self.train.precision.default_loss_scale() }
    }

    /// The column label of `rbl table`: dataset and imbalance ratio.
    pub fn column_label(&self) -> String {
        format!("{} IR{}", self.data.dataset, self.data.imbalance_ratio)
    }

    /// The config as TOML text, as written into the run folder.
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Rejects values that parse but cannot work, naming the key.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |key: &str, msg: String| Err(RblError::Config { origin: origin.into(), msg: format!("{key}: {msg}") });
        if !(1.0..=500.0).contains(&self.data.imbalance_ratio) {
            return bad("data.imbalance_ratio", format!("{} is outside 1 … 500", self.data.imbalance_ratio));
        }
        if !["fashion-mnist", "mnist", "cifar10", "cifar100", "folder"].contains(&self.data.dataset.as_str()) {
            return bad(
                "data.dataset",
                format!("unknown dataset '{}' (fashion-mnist, mnist, cifar10, cifar100, folder)", self.data.dataset),
            );
        }
        if self.data.dataset == "folder" {
            if self.data.train_split.is_empty() || self.data.test_split.is_empty() {
                return bad("data.train_split", "a folder dataset needs data.train_split and data.test_split".into());
            }
            if self.data.num_classes < 2 {
                return bad("data.num_classes", "a folder dataset needs its class count (at least 2)".into());
            }
            if self.data.val_per_class > 0 {
                return bad("data.val_per_class", "folder datasets bring their own validation split: use data.val_split".into());
            }
            if self.data.image_size < 8 || self.data.workers == 0 {
                return bad("data.image_size", "needs image_size ≥ 8 and workers ≥ 1".into());
            }
        }
        if !["error", "skip"].contains(&self.data.bad_images.as_str()) {
            return bad("data.bad_images", format!("'{}' is neither error nor skip", self.data.bad_images));
        }
        if !["linear", "etf", "rbl"].contains(&self.model.head.as_str()) {
            return bad("model.head", format!("unknown head '{}' (linear, etf, rbl)", self.model.head));
        }
        if !crate::model::backbone::BACKBONES.contains(&self.model.backbone.as_str()) {
            return bad(
                "model.backbone",
                format!("unknown backbone '{}' ({})", self.model.backbone, crate::model::backbone::BACKBONES.join(", ")),
            );
        }
        if !LOSS_NAMES.contains(&self.loss.name.as_str()) {
            return bad("loss.name", format!("unknown loss '{}' ({})", self.loss.name, LOSS_NAMES.join(", ")));
        }
        if self.loss.name == "dot_regression" && self.model.head == "linear" {
            return bad("loss.name", "dot_regression pulls features onto fixed class directions: use model.head = \"etf\" or \"rbl\" (a learned linear head would shrink to zero)".into());
        }
        if !["cpu", "gpu"].contains(&self.device.as_str()) {
            return bad("device", format!("unknown device '{}' (cpu, gpu)", self.device));
        }
        if self.train.epochs == 0 {
            return bad("train.epochs", "must be at least 1".into());
        }
        if self.train.batch_size == 0 || self.eval.batch_size == 0 {
            return bad("train.batch_size", "must be at least 1".into());
        }
        if !(self.train.lr.is_finite() && self.train.lr > 0.0) {
            return bad("train.lr", format!("{} is not a positive number", self.train.lr));
        }
        if !["cosine", "step"].contains(&self.train.schedule.as_str()) {
            return bad("train.schedule", format!("'{}' is neither cosine nor step", self.train.schedule));
        }
        if !(self.train.mixup_alpha.is_finite() && self.train.mixup_alpha >= 0.0) {
            return bad("train.mixup_alpha", format!("{} is not a non-negative number", self.train.mixup_alpha));
        }
        if self.train.eval_every == 0 {
            return bad("train.eval_every", "must be at least 1".into());
        }
        if !(self.train.loss_scale.is_finite() && self.train.loss_scale >= 0.0) {
            return bad("train.loss_scale", format!("{} is not a non-negative number (0: the precision's default)", self.train.loss_scale));
        }
        if self.data.few_threshold > self.data.many_threshold {
            return bad("data.few_threshold", "must not exceed data.many_threshold".into());
        }
        Ok(())
    }
}

/// Sets `a.b.c=value` in a TOML tree; the value is parsed as TOML, else taken as a string.
fn apply_override(root: &mut toml::Value, assignment: &str) -> Result<()> {
    let origin = format!("--set {assignment}");
    let (key, raw) =
        assignment.split_once('=').ok_or_else(|| RblError::Config { origin: origin.clone(), msg: "expected key=value".into() })?;
    let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.trim().split('.').collect();
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let table =
            node.as_table_mut().ok_or_else(|| RblError::Config { origin: origin.clone(), msg: format!("'{key}' is not a table") })?;
        if i + 1 == parts.len() {
            table.insert(part.to_string(), value);
            return Ok(());
        }
        node = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_unknown_keys_are_named() {
        let cfg =
            ExperimentConfig::from_toml_str("name = \"x\"\n[train]\nepochs = 3\n", "t", &["train.lr=0.05".into(), "model.head=etf".into()])
                .unwrap();
        assert_eq!(cfg.train.epochs, 3);
        assert_eq!(cfg.train.lr, 0.05);
        assert_eq!(cfg.model.head, "etf");
        let err = ExperimentConfig::from_toml_str("", "t", &["train.learning_rate=0.1".into()]).unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
        let err = ExperimentConfig::from_toml_str("[data]\nimbalance_ratio = 1000\n", "t", &[]).unwrap_err();
        assert!(err.to_string().contains("data.imbalance_ratio"), "{err}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let cfg = ExperimentConfig::default();
        let back = ExperimentConfig::from_toml_str(&cfg.to_toml_string(), "t", &[]).unwrap();
        assert_eq!(cfg, back);
    }
}
