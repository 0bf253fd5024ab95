//! The training run: build data and model (or resume them), then for each epoch train
//! ([`super::epoch`]) and close the epoch ([`super::epoch_end`]: evaluate, log, draw,
//! checkpoint).

use std::path::PathBuf;

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;

use crate::config::ExperimentConfig;
use crate::config::{Augment, DatasetKind};
use crate::data::defaults::{self, Choice};
use crate::data::source::{PreparedData, STATS_SAMPLE, check_decodable, prepare, sampled_channel_stats};
use crate::distributed::World;
use crate::distributed::batch_norm::{average_running_stats, restore_own_running_stats};
use crate::error::{RblError, Result};
use crate::interrupt;
use crate::loss::Criterion;
use crate::model::weights::import_weights;
use crate::network::Network;
use crate::report::run_dir::{RunDir, RunLock};
use crate::report::tensorboard::EventWriter;
use crate::report::{EpochRecord, FinalMetrics, write_atomic};
use crate::train::checkpoint::{
    LoadedCheckpoint, PartialEpoch, apply_weights, checkpoints_newest_first, latest_checkpoint, load_checkpoint,
};
use crate::train::context::{Context, context};
use crate::train::device::device_for;
use crate::train::epoch::EpochOutcome;
use crate::train::epoch_end::final_metrics;
use crate::train::optimizer::build_optimizer;
use crate::train::schedule::learning_rate;
use crate::train::selection::{Selection, best_val_epoch, keep_as_best, kept_best_epoch};

/// How to run: where, and whether to stop early (to test resuming).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run folder.
    pub run_dir: RunDir,
    /// Continue from the latest checkpoint in `run_dir`.
    pub resume: bool,
    /// Stop (as if interrupted) after this many epochs in total.
    pub stop_after_epoch: Option<usize>,
    /// No progress output.
    pub quiet: bool,
    /// Abort the process (as SIGKILL would) after this many training steps: crash-safety tests.
    pub crash_after_steps: Option<usize>,
    /// Abort the process right after the checkpoint of this epoch (1-based) is written, before
    /// the epoch log: crash-safety tests of what an epoch boundary publishes.
    pub crash_after_checkpoint: Option<usize>,
    /// A new run replaces the run already in `run_dir` (`--force`): rbl's own files are
    /// removed under the folder's lock, which is then held for the new run without a gap.
    pub force: bool,
}

impl RunOptions {
    /// Train into `run_dir` from the start (`resume` false) or from its latest checkpoint.
    pub fn new(run_dir: RunDir, resume: bool) -> RunOptions {
        RunOptions {
            run_dir,
            resume,
            stop_after_epoch: None,
            quiet: false,
            crash_after_steps: None,
            crash_after_checkpoint: None,
            force: false,
        }
    }
}

/// The state of a run between epochs, besides the network (which the steps take by value).
pub(crate) struct Trainer<'a> {
    /// The run folder's lock, held for the whole run (by rank 0, the one writer).
    _lock: Option<RunLock>,
    /// This process's place in the job (one rank of one outside `mpirun`).
    pub(crate) world: &'static World,
    /// The run's config.
    pub(crate) cfg: ExperimentConfig,
    /// Where and how.
    pub(crate) opts: &'a RunOptions,
    /// Data, augmenters and the evaluation device.
    pub(crate) ctx: Context,
    /// The autodiff device the steps run on.
    pub(crate) train_device: Device,
    /// The loss, bound to the training counts.
    pub(crate) criterion: Criterion,
    /// SGD with its momentum buffers.
    pub(crate) optim: ModuleOptimizer,
    /// The epoch log so far.
    pub(crate) history: Vec<EpochRecord>,
    /// Training wall-clock seconds so far (over every process of the run).
    pub(crate) wall_seconds: f64,
    /// Training steps this process has run, over all epochs (crash tests).
    pub(crate) steps_this_process: usize,
    /// TensorBoard event file of this process (`log.tensorboard`).
    pub(crate) tensorboard: Option<EventWriter>,
    /// Images of each class fed to the loss so far, for losses that need them (Seesaw).
    pub(crate) seen: Option<Vec<f64>>,
    /// The contrastive method's step state (KCL, TSC, HCL), when the run has one.
    pub(crate) contrast: Option<crate::contrastive::ContrastiveTraining>,
}

/// Where a run (re)starts.
struct Start {
    /// The network: fresh, or with the checkpoint's weights.
    net: Network,
    /// The first epoch to run (0-based).
    epoch: usize,
    /// Progress already made into that epoch by an earlier process.
    partial: Option<PartialEpoch>,
}

/// Trains (or resumes) the run in `opts.run_dir` for `cfg`. Returns the final metrics, or
/// `None` when stopped early by `stop_after_epoch`.
pub fn train_run(cfg: ExperimentConfig, opts: &RunOptions) -> Result<Option<FinalMetrics>> {
    interrupt::install();
    // Over several ranks only rank 0 speaks (and writes); the others train in silence.
    let world = crate::distributed::world();
    let quiet_opts;
    let opts = if world.is_root() {
        opts
    } else {
        quiet_opts = RunOptions { quiet: true, ..opts.clone() };
        &quiet_opts
    };
    let (mut trainer, start) = Trainer::start(cfg, opts)?;
    let Start { mut net, epoch: start_epoch, mut partial } = start;
    let epochs = trainer.cfg.train.epochs;
    for epoch in start_epoch..epochs {
        if opts.stop_after_epoch.is_some_and(|s| epoch >= s) {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let lr = learning_rate(&trainer.cfg.train, epoch);
        let stats = match trainer.train_epoch(net, epoch, lr, partial.take())? {
            EpochOutcome::Finished(trained, stats) => {
                net = trained;
                stats
            }
            EpochOutcome::Interrupted { saved } => {
                let kept = saved.unwrap_or_else(|| if epoch == 0 { "nothing (no step finished)".into() } else { format!("epoch {epoch}") });
                return Err(RblError::Interrupted { epoch: epoch + 1, kept, run_dir: opts.run_dir.path().display().to_string() });
            }
        };
        // One model over the ranks before it is evaluated or saved.
        net = average_running_stats(trainer.world, net)?;
        if let Some(metrics) = trainer.end_epoch(&net, epoch, lr, &stats, started)? {
            return Ok(Some(metrics));
        }
    }
    trainer.metrics_of_finished_run(&net)
}

impl<'a> Trainer<'a> {
    /// Builds device, data, network, optimiser and loss; restores them from the latest
    /// checkpoint when resuming, or writes the config into a new run folder.
    fn start(cfg: ExperimentConfig, opts: &'a RunOptions) -> Result<(Trainer<'a>, Start)> {
        let run_dir = &opts.run_dir;
        let world = crate::distributed::world();
        if world.size > 1 && !cfg.train.batch_size.is_multiple_of(world.size) {
            let b = cfg.train.batch_size;
            let (down, up) = (b / world.size * world.size, b.div_ceil(world.size) * world.size);
            return Err(RblError::Config {
                origin: "train.batch_size".into(),
                msg: format!(
                    "{b} is the global batch, split over the {} ranks, and must divide by it (e.g. {} or {up})",
                    world.size,
                    down.max(world.size)
                ),
            });
        }
        let device = device_for(&cfg)?;
        let train_device = device.clone().autodiff();
        train_device.seed(cfg.seed);

        let (cfg, data, input) = resolve_input(cfg, opts)?;
        let ctx = context(cfg.clone(), data, device);
        let net = Network::seeded(&cfg, ctx.train.channels, ctx.train.num_classes, &train_device)?;
        // A new run takes model.init_weights here, before anything is written: a bad file stops
        // it with nothing on disk.
        let net = if opts.resume { net } else { with_init_weights(net, &cfg, opts.quiet)? };
        let optim = build_optimizer(&cfg.train);
        let criterion = Criterion::new(&cfg.loss, &ctx.train_counts)?;
        if cfg.contrastive.enabled() && world.size > 1 {
            return Err(RblError::Config {
                origin: "contrastive.method".into(),
                msg: format!(
                    "{} contrasts every image with the whole batch; split over {} ranks each would see only its slice. Run it as \
                     one process (several ranks would need an all-gather of the projections, not built yet)",
                    cfg.contrastive.method, world.size
                ),
            });
        }
        let contrast = crate::contrastive::ContrastiveTraining::new(
            &cfg.contrastive,
            ctx.train.num_classes,
            cfg.seed,
            cfg.train.epochs,
            &train_device,
        )?;
        // Folder datasets decode their images as they go: a bad test or validation image is
        // found here, before training, not at the first evaluation.
        check_decodable(&ctx.test, "test", cfg.data.workers)?;
        if let Some(val) = &ctx.val {
            check_decodable(val, "validation", cfg.data.workers)?;
        }
        if cfg.eval.select == Selection::Val && ctx.val.is_none() {
            return Err(RblError::Config {
                origin: "eval.select".into(),
                msg: "\"val\" needs a validation split: data.val_per_class (built-in datasets), data.val_split (folder) or a val/ \
                      beside test/ (image-folder)"
                    .into(),
            });
        }
        if cfg.train.drop_last && cfg.train.batch_size > ctx.train.len() {
            return Err(RblError::Config {
                origin: "train.batch_size".into(),
                msg: format!(
                    "{} is more than the {} training images, and train.drop_last leaves no step: lower it or set train.drop_last = false",
                    cfg.train.batch_size,
                    ctx.train.len()
                ),
            });
        }
        // Nothing is written before the config, the data and the model have passed their checks
        // (nor after an interrupt during them); the lock (which creates the folder) is held
        // from here to the end of the run.
        if world.any(interrupt::requested()) {
            return Err(interrupt::while_loading());
        }
        // Rank 0 alone takes the lock and writes the folder.
        let lock = if world.is_root() {
            let lock = run_dir.lock()?;
            if !opts.resume {
                if opts.force && run_dir.holds_run() {
                    run_dir.remove_run(&lock)?;
                } else {
                    run_dir.check_no_run()?;
                }
            }
            Some(lock)
        } else {
            None
        };
        let mut trainer = Trainer {
            _lock: lock,
            world,
            cfg,
            opts,
            ctx,
            train_device,
            criterion,
            optim,
            history: Vec::new(),
            wall_seconds: 0.0,
            steps_this_process: 0,
            tensorboard: None,
            seen: None,
            contrast,
        };
        let mut start = Start { net, epoch: 0, partial: None };
        if opts.resume {
            start = trainer.resume(start)?;
        }
        if opts.resume && start.epoch == 0 && start.partial.is_none() {
            // Resumed, but nothing to resume from: a fresh start after all.
            start.net = with_init_weights(start.net, &trainer.cfg, opts.quiet)?;
        }
        // What predict and export need of the data; runs from before it get one on resume,
        // and a resumed run refuses a tree whose classes were renamed meanwhile.
        let mut card = trainer.ctx.dataset_card()?;
        card.found = input.found.clone();
        card.chosen = input.chosen.clone();
        let stored_card = run_dir.read_dataset_card()?;
        if let Some(stored) = stored_card.as_ref().filter(|_| opts.resume) {
            stored.check_same_classes(&card.class_names)?;
        }
        if world.is_root() {
            if !opts.resume {
                write_atomic(&run_dir.config(), trainer.cfg.to_toml_string().as_bytes())?;
            }
            if stored_card.is_none() || !opts.resume {
                run_dir.write_dataset_card(&card)?;
            }
            run_dir.write_epoch_log(&trainer.history)?;
            if trainer.cfg.log.tensorboard && trainer.history.len() < trainer.cfg.train.epochs {
                trainer.tensorboard = Some(EventWriter::create(&run_dir.tensorboard(), trainer.history.len())?);
            }
        }
        if !opts.quiet {
            let (cfg, ctx) = (&trainer.cfg, &trainer.ctx);
            crate::note!(
                "{}: {} training images {:?}, {} test images, head {}, {} epochs, on {}",
                cfg.name,
                ctx.train.len(),
                ctx.train_counts,
                ctx.test.len(),
                cfg.model.head,
                cfg.train.epochs,
                device_words(cfg.device)
            );
        }
        Ok((trainer, start))
    }

    /// Restores network, optimiser, log and position from the latest checkpoint, if any.
    fn resume(&mut self, fresh: Start) -> Result<Start> {
        let run_dir = &self.opts.run_dir;
        let Some((dir, ckpt)) = usable_checkpoint(run_dir)? else { return Ok(fresh) };
        if ckpt.config != self.cfg {
            let keys = self.cfg.differing_keys(&ckpt.config).join(", ");
            return Err(RblError::Checkpoint {
                path: dir,
                msg: format!(
                    "belongs to a different config than the one resumed (differing keys: {keys}); --set and --device cannot change a run \
                     being resumed: resume without them, or start a new run"
                ),
            });
        }
        let mut net = apply_weights(fresh.net, &ckpt)?;
        // A multi-rank mid-epoch checkpoint kept each rank's BatchNorm statistics.
        if let (Some(all), Some(ranks)) = (&ckpt.rank_stats, ckpt.state.ranks) {
            net = restore_own_running_stats(self.world, net, all, ranks)?;
        }
        let trained_on = ckpt.state.ranks.unwrap_or(1);
        if trained_on != self.world.size && self.world.is_root() {
            crate::note!(
                "note: resuming a run trained on {trained_on} rank(s) on {} (the global batch is the same; the BatchNorm \
                 statistics of the ranks are averaged, so the result is not bit for bit the one the run would have reached)",
                self.world.size
            );
        }
        self.optim = build_optimizer(&self.cfg.train)
            .from_bytes(ckpt.optimizer.clone())
            .map_err(|e| RblError::Checkpoint { path: dir.clone(), msg: e.to_string() })?;
        if !self.opts.quiet {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            crate::note!("resuming {} after {} ({name})", run_dir.path().display(), ckpt.state.describe());
        }
        self.history = ckpt.state.history;
        self.wall_seconds = ckpt.state.wall_seconds;
        // A stop between an epoch's checkpoint and its copy to best/ leaves best/ behind the
        // log; that epoch's checkpoint is the one just restored, or still on disk.
        if self.cfg.eval.select == Selection::Val
            && self.world.is_root()
            && let Some(epoch) = best_val_epoch(&self.history)
            && kept_best_epoch(run_dir)? != Some(epoch)
        {
            let source = run_dir.path().join(format!("checkpoint-{epoch:06}"));
            if !source.is_dir() {
                return Err(RblError::Checkpoint {
                    path: run_dir.best(),
                    msg: format!("does not hold epoch {epoch}, the best on validation, and that epoch's checkpoint is gone"),
                });
            }
            keep_as_best(run_dir, &source)?;
        }
        self.world.barrier();
        Ok(Start { net, epoch: ckpt.state.epoch, partial: ckpt.state.partial })
    }

    /// Resumed after the last epoch had finished. A crash between the final checkpoint and the
    /// metrics file leaves no metrics: they are recomputed from the final weights (evaluation is
    /// deterministic, so they are the numbers the uninterrupted run wrote).
    fn metrics_of_finished_run(&self, net: &Network) -> Result<Option<FinalMetrics>> {
        let run_dir = &self.opts.run_dir;
        if let Some(metrics) = run_dir.read_metrics()? {
            return Ok(Some(metrics));
        }
        let eval_net = net.valid();
        let evaluator = self.ctx.evaluator(self.cfg.eval.tau);
        let test = evaluator.evaluate(&eval_net, &self.ctx.test)?;
        let val = self.ctx.val.as_ref().map(|v| evaluator.evaluate(&eval_net, v)).transpose()?;
        let mut metrics = final_metrics(&self.ctx, test, val, self.wall_seconds, net.head.rotation().map(|r| r.orthogonality_error()));
        metrics.selected = self.selected_epoch(net)?;
        if self.world.is_root() {
            if let Some(confusion) = &metrics.test.confusion {
                run_dir.write_confusion(confusion)?;
            }
            run_dir.write_metrics(&metrics)?;
        }
        Ok(Some(metrics))
    }
}

/// What rbl found in the data and chose for the keys left to it ([`crate::data::defaults`]).
struct InputChoices {
    /// One line on the data found (image-folder trees).
    found: Option<String>,
    /// The keys filled in, with the reasons.
    chosen: Vec<Choice>,
}

/// Fills in the data keys left to rbl (image size, augmentation, channels, normalisation of an
/// image-folder tree) and prepares the data with them; prints what was found and chosen when a
/// new run starts. A resumed run takes them from its stored config, so it trains on what it
/// started with even when given the unresolved config file again.
fn resolve_input(mut cfg: ExperimentConfig, opts: &RunOptions) -> Result<(ExperimentConfig, PreparedData, InputChoices)> {
    if opts.resume && opts.run_dir.holds_run() {
        let stored = ExperimentConfig::load_stored(&opts.run_dir.config(), &[])?;
        cfg.data.adopt_resolved(&stored.data);
    }
    let image_folder = cfg.data.dataset == DatasetKind::ImageFolder;
    let unresolved = cfg.data.image_size == 0 || cfg.data.augment == Augment::Auto || cfg.data.channels == 0;
    let survey = if image_folder && unresolved { Some(defaults::survey(std::path::Path::new(&cfg.data.root))?) } else { None };
    let mut chosen = defaults::resolve(&mut cfg.data, survey.as_ref());
    cfg.validate("the data's defaults")?;
    let mut data = prepare(&cfg.data, cfg.seed)?;
    // (A resumed run from before this existed keeps the normalisation it was trained with.)
    if image_folder && cfg.data.mean.is_empty() && !opts.resume {
        if data.train.files.is_some() {
            (data.mean, data.std) = sampled_channel_stats(&data.train, cfg.data.workers)?;
        }
        // A channel constant over the training set (std 0) is floored: it stays as it is.
        data.std.iter_mut().for_each(|s| *s = s.max(crate::config::MIN_STD));
        (cfg.data.mean, cfg.data.std) = (data.mean.clone(), data.std.clone());
        let show = |v: &[f32]| format!("[{}]", v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", "));
        let n = if data.train.files.is_some() { data.train.len().min(STATS_SAMPLE) } else { data.train.len() };
        chosen.push(Choice {
            key: "data.mean / data.std".into(),
            value: format!("{} / {}", show(&data.mean), show(&data.std)),
            why: format!("the training set's own, from {n} images"),
        });
    }
    if image_folder && cfg.data.imbalance_ratio == 1.0 && cfg.data.n_max == 0 && !opts.resume {
        chosen.push(Choice {
            key: "data.imbalance_ratio".into(),
            value: "1".into(),
            why: format!("train/ as it is ({:?} per class); a ratio > 1 subsamples it into a long tail", data.train_counts),
        });
    }
    let found = survey.as_ref().map(|s| defaults::describe(Some(s), &[], &[]).trim_end().to_string());
    if !opts.quiet && !opts.resume {
        let text = defaults::describe(survey.as_ref(), &chosen, &[]);
        if !text.is_empty() {
            crate::note!("{}", text.trim_end());
        }
    }
    Ok((cfg, data, InputChoices { found, chosen }))
}

/// `net` with `model.init_weights` loaded, if set (the import's summary on stderr).
fn with_init_weights(net: Network, cfg: &ExperimentConfig, quiet: bool) -> Result<Network> {
    if cfg.model.init_weights.is_empty() {
        return Ok(net);
    }
    let path = std::path::Path::new(&cfg.model.init_weights);
    let (net, report) = import_weights(net, cfg.model.backbone, path)?;
    if !quiet {
        crate::note!("{}", report.summary(path));
    }
    Ok(net)
}

/// The checkpoint a resumed run continues from: the one `latest` names, or, when that is
/// missing or fails its checks, the newest checkpoint folder that passes them, saying so.
/// `None` for a run that never reached its first checkpoint; an error when there are
/// checkpoints and none can be used (never a silent restart from scratch).
fn usable_checkpoint(run_dir: &RunDir) -> Result<Option<(PathBuf, LoadedCheckpoint)>> {
    let named = latest_checkpoint(run_dir.path())?;
    let mut candidates: Vec<PathBuf> = named.iter().cloned().collect();
    candidates.extend(checkpoints_newest_first(run_dir.path()).into_iter().filter(|c| Some(c) != named.as_ref()));
    if candidates.is_empty() {
        return Ok(None);
    }
    if named.is_none() {
        crate::note!("warning: {} has no `latest`; looking for the newest usable checkpoint", run_dir.path().display());
    }
    let mut refused = Vec::new();
    for dir in candidates {
        match load_checkpoint(&dir) {
            Ok(ckpt) => {
                if !refused.is_empty() || named.is_none() {
                    crate::note!("warning: using {}, the newest checkpoint that passes its checks", dir.display());
                }
                return Ok(Some((dir, ckpt)));
            }
            Err(e) => {
                crate::note!("warning: {e}");
                refused.push(dir);
            }
        }
    }
    Err(RblError::Checkpoint {
        path: run_dir.path().into(),
        msg: format!("none of its {} checkpoints can be used (see above); nothing was changed", refused.len()),
    })
}

/// The device a run computes on, as its first line says it: the CPU with its kernels'
/// instruction-set path (`rbl_ops::kernel_path`, capped by `RBL_CPU_LEVEL`), or the GPU.
fn device_words(kind: crate::train::device::DeviceKind) -> String {
    match kind {
        crate::train::device::DeviceKind::Cpu => format!("the CPU ({} kernels)", rbl_ops::kernel_path()),
        crate::train::device::DeviceKind::Gpu => "the GPU".into(),
    }
}
