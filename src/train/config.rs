//! The `[train]` and `[eval]` sections of a config: optimiser, schedule, precision, and how
//! and when a run is evaluated.

use serde::{Deserialize, Serialize};

use crate::train::schedule::{LrAt, Schedule};

/// Which mixup a run trains with (`train.mixup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixupKind {
    /// Zhang et al. 2018: one λ ~ Beta(α, α) for the batch, partners a permutation of it.
    #[default]
    Mixup,
    /// UniMix ([`crate::data::unimix`]): partners drawn ∝ n^τ, a λ per image.
    Unimix,
}

impl MixupKind {
    fn is_plain(&self) -> bool {
        *self == MixupKind::Mixup
    }
}

/// UniMix's τ when not set: the reference's CIFAR-10 value.
pub const DEFAULT_UNIMIX_TAU: f64 = -0.5;

fn is_default_unimix_tau(t: &f64) -> bool {
    *t == DEFAULT_UNIMIX_TAU
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
use crate::train::selection::Selection;

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
    /// Checkpoints kept in the run folder (the newest ones, at least 1): a damaged newest
    /// checkpoint then costs one interval, not the run; `--resume` falls back to the previous.
    pub keep_checkpoints: usize,
    /// Mixup's Beta(α, α) parameter (0 = off; the "Fixed" paper uses α = 1 on CIFAR).
    pub mixup_alpha: f64,
    /// Which mixup: `mixup` (one λ per batch, partners a permutation) or `unimix` (UniMix,
    /// Xu et al. 2021: partners ∝ n^τ, a λ per image leaning to the rarer class).
    #[serde(skip_serializing_if = "MixupKind::is_plain")]
    pub mixup: MixupKind,
    /// UniMix's τ (the reference: −0.5 on CIFAR-10, −0.1 on CIFAR-100).
    #[serde(skip_serializing_if = "is_default_unimix_tau")]
    pub unimix_tau: f64,
    /// The 0-based epoch from which mixing stops (0: never).
    #[serde(skip_serializing_if = "is_zero")]
    pub mixup_stop_epoch: usize,
    /// After warm-up: `cosine` (to 0 at the last epoch) or `step` (× `lr_gamma` at each of
    /// `lr_milestones`, 0-based epochs).
    pub schedule: Schedule,
    /// Where in each epoch the schedule is read: `epoch_end` (the released code's formula) or
    /// `epoch_start` (rbl's earlier one).
    pub lr_at: LrAt,
    /// Epochs where the step schedule multiplies the learning rate by `lr_gamma`.
    pub lr_milestones: Vec<usize>,
    /// Factor of each step.
    pub lr_gamma: f64,
    /// Arithmetic of the convolutions: `f32`, or mixed precision with the convolutions in
    /// `f16` / `bf16` and weights, norms, head, loss and optimizer in f32 (see
    /// `model::precision`). Meant for GPUs; on the CPU, flex's half-precision convolution is
    /// slower than rbl's f32 one.
    pub precision: crate::model::precision::Precision,
    /// The loss is multiplied by this before the backward pass and the gradients divided by
    /// it after, so that small f16 gradients do not flush to zero (0: 1024 for f16, else 1).
    pub loss_scale: f64,
    /// Over several ranks (`mpirun`): BatchNorm statistics of the whole global batch, as
    /// PyTorch's SyncBatchNorm computes them. Not available: rbl's fused convolution +
    /// BatchNorm kernels have no point at which to exchange the moments, so `true` is refused
    /// and each rank normalises by its own slice (PyTorch DDP's default); see
    /// docs/distributed.md.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_bn: bool,
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
    /// Which epoch the run reports besides the last (`last`, or `val`: the epoch best on the
    /// validation split, its checkpoint kept in `RUN_DIR/best/`); never the test set.
    #[serde(skip_serializing_if = "Selection::is_last")]
    pub select: Selection,
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
            lr_at: LrAt::EpochEnd,
            drop_last: true,
            eval_every: 1,
            checkpoint_every_steps: 0,
            keep_checkpoints: 2,
            mixup_alpha: 0.0,
            mixup: MixupKind::Mixup,
            unimix_tau: DEFAULT_UNIMIX_TAU,
            mixup_stop_epoch: 0,
            schedule: Schedule::Cosine,
            lr_milestones: Vec::new(),
            lr_gamma: 0.1,
            precision: crate::model::precision::Precision::F32,
            loss_scale: 0.0,
            sync_bn: false,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { tau: 1.0, batch_size: 256, nc_every: 0, train_eval: false, feature_epochs: Vec::new(), select: Selection::Last }
    }
}
