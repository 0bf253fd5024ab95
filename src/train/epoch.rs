//! One training epoch: the loader's batches through [`train_step`], with the running figures,
//! mid-epoch checkpoints, Ctrl-C, NaN and crash-test handling.

use std::time::Instant;

use burn::tensor::Tensor;

use crate::data::loader::{Loader, LoaderPlan, epoch_seed};
use crate::distributed::batch_norm::{all_ranks_running_stats, average_running_stats};
use crate::error::{RblError, Result};
use crate::interrupt;
use crate::network::Network;
use crate::train::checkpoint::{CheckpointState, PartialEpoch, save_checkpoint, save_checkpoint_with};
use crate::train::progress::Progress;
use crate::train::run::Trainer;
use crate::train::step::{StepBatch, StepSettings, train_step};
use crate::train::step_log::{NonFinite, RunningSums, StepLog, read_every};

/// Figures of one training epoch.
pub(crate) struct EpochStats {
    /// Mean training loss over the epoch's images.
    pub(crate) loss: f64,
    /// Training top-1 (%) of the augmented batches, before each update.
    pub(crate) acc: f64,
    /// Steps of the epoch.
    pub(crate) steps: usize,
    /// Images of the epoch.
    pub(crate) images: usize,
    /// Seconds spent in the epoch's steps.
    pub(crate) train_seconds: f64,
    /// Seconds the steps waited for the loader.
    pub(crate) loader_wait: f64,
    /// Training images skipped as undecodable.
    pub(crate) skipped: usize,
}

/// How an epoch ended (once per epoch, so the size of the network by value does not matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum EpochOutcome {
    /// Every batch done: the trained network and the epoch's figures.
    Finished(Network, EpochStats),
    /// Stopped by Ctrl-C / SIGTERM; `saved` describes the mid-epoch checkpoint written, if any.
    Interrupted { saved: Option<String> },
}

impl Trainer<'_> {
    /// Trains epoch `epoch` (0-based) at learning rate `lr`, continuing from `resume` when an
    /// earlier process got partway through it.
    pub(crate) fn train_epoch(&mut self, mut net: Network, epoch: usize, lr: f64, resume: Option<PartialEpoch>) -> Result<EpochOutcome> {
        let cfg = &self.cfg;
        let start = resume.unwrap_or_default();
        let plan = LoaderPlan {
            batch_size: cfg.train.batch_size,
            seed: Some(epoch_seed(cfg.seed, epoch)),
            drop_last: cfg.train.drop_last,
            sampler: cfg.data.sampler,
            skip: start.steps,
            // Mixing stops at train.mixup_stop_epoch (0: never).
            mixup_alpha: if cfg.train.mixup_stop_epoch > 0 && epoch >= cfg.train.mixup_stop_epoch { 0.0 } else { cfg.train.mixup_alpha },
            unimix_tau: (cfg.train.mixup == crate::train::config::MixupKind::Unimix).then_some(cfg.train.unimix_tau),
            workers: cfg.data.workers,
            shard: (self.world.rank, self.world.size),
            two_views: self.contrast.is_some(),
        };
        let mut loader = Loader::start(self.ctx.train.clone(), self.ctx.train_aug.clone(), plan);
        if self.criterion.needs_seen_counts() && self.seen.is_none() {
            self.seen = Some(crate::train::seen_counts::replay(&self.ctx.train, cfg, epoch, start.steps));
        }
        let total_steps = start.steps + loader.len();
        let every = cfg.train.checkpoint_every_steps;
        let progress = Progress::new(epoch + 1, cfg.train.epochs, total_steps, self.opts.quiet);
        let (c, h, w) = (self.ctx.train.channels, self.ctx.train.height, self.ctx.train.width);
        let settings =
            StepSettings { criterion: &self.criterion, epoch, lr, loss_scale: cfg.loss_scale(), contrast: self.contrast.as_ref() };
        let t0 = Instant::now();
        let resumed = RunningSums { loss_sum: start.loss_sum, hits: start.hits, images: start.images, steps: start.steps };
        // Steps' losses are read a window at a time (every step on the CPU): see step_log.
        let mut log = StepLog::new(resumed, read_every(cfg.device));
        let diverged = |bad: NonFinite, progress: &Progress| {
            progress.finish();
            RblError::Diverged { epoch: epoch + 1, step: bad.step, loss: bad.loss }
        };
        let partial = |run: RunningSums, loader: &Loader| PartialEpoch {
            steps: run.steps,
            loss_sum: run.loss_sum,
            hits: run.hits,
            images: run.images,
            train_seconds: start.train_seconds + t0.elapsed().as_secs_f64(),
            loader_wait: start.loader_wait + loader.waited().as_secs_f64(),
        };
        while let Some(batch) = loader.next() {
            if self.world.any(interrupt::requested()) {
                log.read().map_err(|bad| diverged(bad, &progress))?;
                progress.finish();
                let run = log.sums();
                let saved = if run.steps > start.steps { Some(save_partial(self, &net, epoch, partial(run, &loader))?) } else { None };
                return Ok(EpochOutcome::Interrupted { saved });
            }
            let b = batch.len();
            let images: Tensor<4> = crate::transfer::upload_vec(batch.images, [b, c, h, w], &self.train_device);
            if let Some(seen) = self.seen.as_mut() {
                crate::train::seen_counts::add_batch(seen, &batch.labels, self.world);
            }
            let second_view =
                batch.second_view.map(|v| (crate::transfer::upload_vec(v.images, [b, c, h, w], &self.train_device), v.pair_seed));
            let step_batch = StepBatch {
                images,
                labels: &batch.labels,
                mix: batch.mix.as_ref(),
                global: batch.global_len,
                seen: self.seen.as_deref(),
                second_view,
            };
            let (updated, readings) = train_step(net, &mut self.optim, step_batch, &settings);
            net = updated;
            log.push(readings).map_err(|bad| diverged(bad, &progress))?;
            self.steps_this_process += 1;
            let steps = log.steps();
            if every > 0 && steps.is_multiple_of(every) && steps < total_steps {
                // A checkpoint holds only a network whose every step was read and finite.
                log.read().map_err(|bad| diverged(bad, &progress))?;
                save_partial(self, &net, epoch, partial(log.sums(), &loader))?;
            }
            if self.opts.crash_after_steps.is_some_and(|n| self.steps_this_process >= n) {
                // A stand-in for SIGKILL or a power cut: no destructors, no flushing.
                std::process::abort();
            }
            if log.is_read() {
                let run = log.sums();
                let seen = (run.images - start.images) as f64;
                let (loss, acc) = (run.loss_sum / run.images as f64, 100.0 * run.hits as f64 / run.images as f64);
                progress.step(run.steps, loss, acc, seen / t0.elapsed().as_secs_f64());
            }
        }
        log.read().map_err(|bad| diverged(bad, &progress))?;
        progress.finish();
        let run = log.sums();
        if let Some(e) = loader.failure() {
            return Err(RblError::Dataset(format!(
                "{e} (epoch {}; set data.bad_images = \"skip\" to skip such training images)",
                epoch + 1
            )));
        }
        let n = run.images.max(1) as f64;
        let done = partial(run, &loader);
        let stats = EpochStats {
            loss: run.loss_sum / n,
            acc: 100.0 * run.hits as f64 / n,
            steps: run.steps,
            images: run.images,
            train_seconds: done.train_seconds.max(1e-9),
            loader_wait: done.loader_wait,
            skipped: loader.skipped(),
        };
        Ok(EpochOutcome::Finished(net, stats))
    }
}

/// Writes a mid-epoch checkpoint of epoch `epoch` (0-based) and says what it holds.
fn save_partial(trainer: &Trainer<'_>, net: &Network, epoch: usize, partial: PartialEpoch) -> Result<String> {
    let mut state = CheckpointState::new(epoch, &trainer.cfg, &trainer.history, trainer.wall_seconds, Some(partial));
    let described = state.describe();
    let world = trainer.world;
    if world.size == 1 {
        save_checkpoint(trainer.opts.run_dir.path(), net, &trainer.optim, state, trainer.cfg.train.keep_checkpoints)?;
        return Ok(described);
    }
    // Over several ranks: the model saved holds the ranks' averaged BatchNorm statistics (the
    // live networks keep their own), and every rank's own go beside it, so that a resume under
    // the same number of ranks continues each rank exactly. All ranks take part; rank 0 writes.
    let averaged = average_running_stats(world, net.clone())?;
    let all = all_ranks_running_stats(world, net)?;
    if world.is_root() {
        state.ranks = Some(world.size);
        let bytes: Vec<u8> = all.iter().flat_map(|x| x.to_le_bytes()).collect();
        let dir = trainer.opts.run_dir.path();
        save_checkpoint_with(dir, &averaged, &trainer.optim, state, trainer.cfg.train.keep_checkpoints, Some(&bytes))?;
    }
    Ok(described)
}
