//! A trained run loaded back: the one way every command that works on a finished (or
//! interrupted) run gets its config, data, device and eval-mode network with the saved weights.

use std::path::{Path, PathBuf};

use burn::module::Module;

use burn::tensor::Device;

use crate::config::{DeviceKind, ExperimentConfig};
use crate::data::card::DatasetCard;
use crate::error::{RblError, Result};
use crate::network::Network;
use crate::report::EvalSummary;
use crate::report::run_dir::RunDir;
use crate::train::checkpoint::{LoadedCheckpoint, apply_weights, load_checkpoint, resolve_checkpoint};
use crate::train::context::{Context, context_for};
use crate::train::device::device_for;
use crate::train::epoch_end::feature_picture;
use crate::train::evaluate::forward_all;

/// A trained model without its dataset: the network with a checkpoint's weights, its config
/// and the run's [`DatasetCard`] (class names, prior, input format). What `rbl predict` and
/// `rbl export` need; runs trained before `dataset.json` existed fall back to reading the
/// dataset for it.
pub struct TrainedModel {
    /// The run folder the checkpoint belongs to.
    pub run_dir: RunDir,
    /// The checkpoint (its folder, state and config).
    pub checkpoint: LoadedCheckpoint,
    /// The config (with the device override, if any).
    pub cfg: ExperimentConfig,
    /// What the model knows of its data.
    pub card: DatasetCard,
    /// The network with the checkpoint's weights, in eval mode.
    pub net: Network,
    /// The (no-autodiff) device the network is on.
    pub device: Device,
}

impl TrainedModel {
    /// Opens a checkpoint folder, or a run folder's latest checkpoint, on `device` (default:
    /// the run's own).
    pub fn open_on(path: &Path, device: Option<DeviceKind>) -> Result<TrainedModel> {
        let dir = resolve_checkpoint(path)?;
        let checkpoint = load_checkpoint(&dir)?;
        let mut cfg = checkpoint.config.clone();
        if let Some(d) = device {
            cfg.device = d;
        }
        let device = device_for(&cfg)?;
        let run_dir = RunDir::of_checkpoint(&dir);
        let card = match run_dir.read_dataset_card()? {
            Some(card) => card,
            None => context_for(&cfg, device.clone())?.dataset_card()?,
        };
        let net = Network::from_config(&cfg, card.channels, card.num_classes(), &device)?;
        let net = apply_weights(net, &checkpoint)?.valid();
        Ok(TrainedModel { run_dir, checkpoint, cfg, card, net, device })
    }
}

/// A checkpoint with everything built around it.
pub struct TrainedRun {
    /// The run folder the checkpoint belongs to (where results are written).
    pub run_dir: RunDir,
    /// The checkpoint (its folder, state and config).
    pub checkpoint: LoadedCheckpoint,
    /// Config, data sets, augmenters and device.
    pub ctx: Context,
    /// The network with the checkpoint's weights, in eval mode.
    pub net: Network,
}

impl TrainedRun {
    /// Opens a checkpoint folder, or a run folder's latest checkpoint, on the run's own device.
    pub fn open(path: &Path) -> Result<TrainedRun> {
        TrainedRun::open_on(path, None)
    }

    /// As [`Self::open`], on `device` instead of the run's when given.
    pub fn open_on(path: &Path, device: Option<DeviceKind>) -> Result<TrainedRun> {
        let dir = resolve_checkpoint(path)?;
        let checkpoint = load_checkpoint(&dir)?;
        let mut cfg = checkpoint.config.clone();
        if let Some(d) = device {
            cfg.device = d;
        }
        let device = device_for(&cfg)?;
        let ctx = context_for(&cfg, device.clone())?;
        let run_dir = RunDir::of_checkpoint(&dir);
        // The dataset read now must have the classes the model was trained on.
        if let Some(card) = run_dir.read_dataset_card()? {
            card.check_same_classes(&ctx.dataset_card()?.class_names)?;
        }
        let net = Network::from_config(&cfg, ctx.train.channels, ctx.train.num_classes, &device)?;
        let net = apply_weights(net, &checkpoint)?.valid();
        Ok(TrainedRun { run_dir, checkpoint, ctx, net })
    }

    /// The run's config (with the device override, if any).
    pub fn cfg(&self) -> &crate::config::ExperimentConfig {
        &self.ctx.cfg
    }

    /// Scores the network on the test set (or the validation split) at logit-adjustment
    /// strength `tau` (default: the run's).
    pub fn evaluate(&self, tau: Option<f64>, on_val: bool) -> Result<EvalSummary> {
        if let Some(t) = tau {
            crate::config::check_tau("--tau", t)?;
        }
        let set = if on_val {
            self.ctx
                .val
                .clone()
                .ok_or_else(|| RblError::Config { origin: "data.val_per_class".into(), msg: "this run has no validation split".into() })?
        } else {
            self.ctx.test.clone()
        };
        self.ctx.evaluator(tau.unwrap_or(self.cfg().eval.tau)).evaluate(&self.net, &set)
    }

    /// Draws the feature pictures of the checkpoint into the run folder's `features/` (as
    /// `eval.feature_epochs` would have at that epoch). Returns the PNG's path.
    pub fn draw_features(&self) -> Result<PathBuf> {
        let (ctx, epoch) = (&self.ctx, self.checkpoint.state.epoch);
        let pass = |set| forward_all(&self.net, set, &ctx.eval_aug, ctx.cfg.eval.batch_size, &ctx.device, true);
        feature_picture(&self.net, ctx, &pass(&ctx.train)?, &pass(&ctx.test)?, &self.run_dir, epoch)?;
        Ok(self.run_dir.feature_picture_stem(epoch).with_extension("png"))
    }
}
