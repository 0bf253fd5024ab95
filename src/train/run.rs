//! The training run: build data and model, train epoch by epoch, evaluate, checkpoint, log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use crate::config::ExperimentConfig;
use crate::data::ImageSet;
use crate::data::augment::Augmenter;
use crate::data::loader::{Loader, LoaderPlan, epoch_seed};
use crate::data::source::{PreparedData, prepare};
use crate::error::{RblError, Result};
use crate::head::host_linalg::Mat;
use crate::loss::Criterion;
use crate::metrics::ShotBuckets;
use crate::metrics::accuracy::argmax_rows;
use crate::metrics::neural_collapse::{NeuralCollapse, neural_collapse};
use crate::network::Network;
use crate::report::feature_plot::{LabelledFeatures, plot_features};
use crate::report::{EpochRecord, EvalSummary, FinalMetrics, write_atomic};
use crate::train::checkpoint::{CheckpointState, PartialEpoch, apply_weights, latest_checkpoint, load_checkpoint, save_checkpoint};
use crate::train::device::device_for;
use crate::train::evaluate::{Evaluator, ForwardPass, forward_all};
use crate::train::interrupt;
use crate::train::optimizer::build_optimizer;
use crate::train::progress::Progress;
use crate::train::schedule::learning_rate;
use crate::train::step::train_step;

/// How to run: where, and whether to stop early (to test resuming).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Continue from the latest checkpoint in `run_dir`.
    pub resume: bool,
    /// Stop (as if interrupted) after this many epochs in total.
    pub stop_after_epoch: Option<usize>,
    /// No progress output.
    pub quiet: bool,
    /// Abort the process (as SIGKILL would) after this many training steps: crash-safety tests.
    pub crash_after_steps: Option<usize>,
}

/// Everything the epoch loop needs besides the model.
pub(crate) struct Context {
    pub(crate) cfg: ExperimentConfig,
    /// Training images per class: the prior and the shot buckets.
    pub(crate) train_counts: Vec<usize>,
    pub(crate) train: Arc<ImageSet>,
    pub(crate) test: Arc<ImageSet>,
    pub(crate) val: Option<Arc<ImageSet>>,
    pub(crate) train_aug: Arc<Augmenter>,
    pub(crate) eval_aug: Arc<Augmenter>,
    pub(crate) buckets: ShotBuckets,
    pub(crate) device: Device,
}

impl Context {
    /// How this run evaluates, at logit-adjustment strength `tau`.
    pub(crate) fn evaluator(&self, tau: f64) -> Evaluator<'_> {
        Evaluator {
            aug: &self.eval_aug,
            batch_size: self.cfg.eval.batch_size,
            device: &self.device,
            train_counts: &self.train_counts,
            tau,
            buckets: self.buckets,
        }
    }
}

/// Prepares the data of `cfg` and the evaluation context around it.
pub(crate) fn context_for(cfg: &ExperimentConfig, device: Device) -> Result<Context> {
    let data = prepare(&cfg.data, cfg.seed)?;
    Ok(context(cfg.clone(), data, device))
}

/// Builds the augmenters and shared sets of a prepared dataset.
fn context(cfg: ExperimentConfig, data: PreparedData, device: Device) -> Context {
    let PreparedData { train, val, test, train_counts, mean, std } = data;
    let train_aug = Augmenter {
        mean,
        std,
        crop_padding: cfg.data.crop_padding,
        flip: cfg.data.flip,
        autoaugment: cfg.data.autoaugment,
        cutout: cfg.data.cutout,
    };
    let eval_aug = Augmenter { crop_padding: 0, flip: false, autoaugment: false, cutout: 0, ..train_aug.clone() };
    Context {
        buckets: ShotBuckets { many: cfg.data.many_threshold, few: cfg.data.few_threshold },
        train: Arc::new(train),
        test: Arc::new(test),
        val: (!val.is_empty()).then(|| Arc::new(val)),
        train_aug: Arc::new(train_aug),
        eval_aug: Arc::new(eval_aug),
        train_counts,
        cfg,
        device,
    }
}

/// Trains (or resumes) the run in `opts.run_dir` for `cfg`. Returns the final metrics, or
/// `None` when stopped early by `stop_after_epoch`.
pub fn train_run(cfg: ExperimentConfig, opts: &RunOptions) -> Result<Option<FinalMetrics>> {
    let run_dir = &opts.run_dir;
    interrupt::install();
    std::fs::create_dir_all(run_dir).map_err(|e| RblError::io(run_dir, e))?;
    let device = device_for(&cfg)?;
    let train_device = device.clone().autodiff();
    train_device.seed(cfg.seed);

    let data = prepare(&cfg.data, cfg.seed)?;
    let ctx = context(cfg.clone(), data, device);
    let mut net = Network::from_config(&cfg, ctx.train.channels, ctx.train.num_classes, &train_device)?;
    let mut optim = build_optimizer(&cfg.train);
    let criterion = Criterion::new(&cfg.loss, &ctx.train_counts)?;
    let mut history: Vec<EpochRecord> = Vec::new();
    let mut wall_seconds = 0.0;
    let mut start_epoch = 0;
    let mut resume_partial: Option<PartialEpoch> = None;
    let mut steps_this_process = 0usize;

    if opts.resume {
        if let Some(dir) = latest_checkpoint(run_dir)? {
            let ckpt = load_checkpoint(&dir)?;
            if ckpt.config != cfg {
                return Err(RblError::Checkpoint { path: dir, msg: "belongs to a different config than this run's config.toml".into() });
            }
            net = apply_weights(net, &ckpt)?;
            optim = optim.from_bytes(ckpt.optimizer.clone()).map_err(|e| RblError::Checkpoint { path: dir.clone(), msg: e.to_string() })?;
            if !opts.quiet {
                eprintln!("resuming {} after {}", run_dir.display(), ckpt.state.describe());
            }
            start_epoch = ckpt.state.epoch;
            resume_partial = ckpt.state.partial;
            history = ckpt.state.history;
            wall_seconds = ckpt.state.wall_seconds;
        }
    } else {
        write_atomic(&run_dir.join("config.toml"), cfg.to_toml_string().as_bytes())?;
    }
    write_log(run_dir, &history)?;
    if !opts.quiet {
        eprintln!(
            "{}: {} training images {:?}, {} test images, head {}, {} epochs",
            cfg.name,
            ctx.train.len(),
            ctx.train_counts,
            ctx.test.len(),
            cfg.model.head,
            cfg.train.epochs
        );
    }

    let epochs = cfg.train.epochs;
    for epoch in start_epoch..epochs {
        if opts.stop_after_epoch.is_some_and(|s| epoch >= s) {
            return Ok(None);
        }
        let t0 = Instant::now();
        let lr = learning_rate(&cfg.train, epoch);
        let mut saved = None;
        let outcome = {
            let mut save = |net: &Network, optim: &burn::optim::ModuleOptimizer, partial: PartialEpoch| -> Result<()> {
                let state = CheckpointState::new(epoch, &cfg, &history, wall_seconds, Some(partial));
                saved = Some(state.describe());
                save_checkpoint(run_dir, net, optim, state).map(|_| ())
            };
            let control = EpochControl {
                resume: if epoch == start_epoch { resume_partial.take() } else { None },
                every: cfg.train.checkpoint_every_steps,
                crash_after_steps: opts.crash_after_steps,
                steps_this_process: &mut steps_this_process,
                save: &mut save,
            };
            train_epoch(net, &mut optim, &criterion, &ctx, &train_device, epoch, lr, opts.quiet, control)?
        };
        let (trained, stats) = match outcome {
            Some(done) => done,
            None => {
                let kept = saved.unwrap_or_else(|| if epoch == 0 { "nothing (no step finished)".into() } else { format!("epoch {epoch}") });
                return Err(RblError::Interrupted { epoch: epoch + 1, kept, run_dir: run_dir.display().to_string() });
            }
        };
        net = trained;
        let is_last = epoch + 1 == epochs;
        let eval_now = is_last || (epoch + 1) % cfg.train.eval_every == 0;
        let eval_net = net.valid();
        let evaluator = ctx.evaluator(cfg.eval.tau);
        let picture_now = cfg.eval.feature_epochs.contains(&(epoch + 1));
        // A picture epoch keeps the test features of the same pass that is evaluated.
        let test_pass = (eval_now || picture_now)
            .then(|| forward_all(&eval_net, &ctx.test, &ctx.eval_aug, cfg.eval.batch_size, &ctx.device, picture_now))
            .transpose()?;
        let test = test_pass.as_ref().filter(|_| eval_now).map(|pass| evaluator.summarize_pass(pass, &ctx.test));
        let val = ctx.val.as_ref().filter(|_| eval_now).map(|v| evaluator.evaluate(&eval_net, v)).transpose()?;
        if let Some(t) = test.as_ref().filter(|t| !t.loss.is_finite()) {
            return Err(RblError::Diverged { epoch: epoch + 1, step: stats.steps, loss: t.loss as f32 });
        }
        let ortho = net.head.rotation().map(|r| r.orthogonality_error());
        let nc_now = cfg.eval.nc_every > 0 && ((epoch + 1) % cfg.eval.nc_every == 0 || is_last);
        // One pass over the un-augmented training set serves all three uses.
        let train_pass = (nc_now || picture_now || (eval_now && cfg.eval.train_eval))
            .then(|| forward_all(&eval_net, &ctx.train, &ctx.eval_aug, cfg.eval.batch_size, &ctx.device, nc_now || picture_now))
            .transpose()?;
        let neural_collapse = train_pass.as_ref().filter(|_| nc_now).map(|pass| collapse_metrics(&eval_net, &ctx, pass));
        let train_eval = train_pass.as_ref().filter(|_| eval_now && cfg.eval.train_eval).map(|pass| {
            let labels: Vec<usize> = ctx.train.labels.iter().map(|&l| l as usize).collect();
            let predicted = argmax_rows(&pass.logits, ctx.train.num_classes);
            let hits = predicted.iter().zip(&labels).filter(|(p, y)| p == y).count();
            (pass.loss, 100.0 * hits as f64 / labels.len().max(1) as f64)
        });
        if let (Some(train_pass), Some(test_pass)) = (train_pass.as_ref().filter(|_| picture_now), test_pass.as_ref()) {
            feature_picture(&eval_net, &ctx, train_pass, test_pass, run_dir, epoch + 1)?;
        }
        let seconds = t0.elapsed().as_secs_f64();
        wall_seconds += seconds;
        let shots = |r: &crate::metrics::ClassificationReport| [r.many, r.medium, r.few];
        let record = EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: stats.loss,
            train_acc: stats.acc,
            test_loss: test.as_ref().map(|t| t.loss),
            test_acc: test.as_ref().map(|t| t.raw.top1),
            test_acc_adjusted: test.as_ref().map(|t| t.adjusted.top1),
            test_shots: test.as_ref().map(|t| shots(&t.raw)),
            test_shots_adjusted: test.as_ref().map(|t| shots(&t.adjusted)),
            train_eval_loss: train_eval.map(|t| t.0),
            train_eval_acc: train_eval.map(|t| t.1),
            val_acc_adjusted: val.as_ref().map(|v| v.adjusted.top1),
            seconds,
            loader_wait_seconds: stats.loader_wait,
            skipped_images: stats.skipped,
            train_images_per_second: stats.images as f64 / stats.train_seconds,
            rotation_orthogonality_error: ortho,
            neural_collapse,
        };
        if !opts.quiet {
            eprintln!("{}", format_epoch(&record, epochs));
        }
        history.push(record);
        let state = CheckpointState::new(epoch + 1, &cfg, &history, wall_seconds, None);
        save_checkpoint(run_dir, &net, &optim, state)?;
        write_log(run_dir, &history)?;
        if is_last {
            let metrics = final_metrics(&ctx, test.expect("last epoch is evaluated"), val, wall_seconds, ortho);
            write_atomic(&run_dir.join("metrics.json"), serde_json::to_string_pretty(&metrics).expect("serialises").as_bytes())?;
            return Ok(Some(metrics));
        }
    }
    // Resumed after the last epoch had finished. A crash between the final checkpoint and the
    // metrics file leaves no metrics: they are recomputed from the final weights (evaluation is
    // deterministic, so they are the numbers the uninterrupted run wrote).
    let p = run_dir.join("metrics.json");
    match std::fs::read_to_string(&p) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).map_err(|e| RblError::format(&p, e.to_string()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let eval_net = net.valid();
            let evaluator = ctx.evaluator(cfg.eval.tau);
            let test = evaluator.evaluate(&eval_net, &ctx.test)?;
            let val = ctx.val.as_ref().map(|v| evaluator.evaluate(&eval_net, v)).transpose()?;
            let metrics = final_metrics(&ctx, test, val, wall_seconds, net.head.rotation().map(|r| r.orthogonality_error()));
            write_atomic(&p, serde_json::to_string_pretty(&metrics).expect("serialises").as_bytes())?;
            Ok(Some(metrics))
        }
        Err(e) => Err(RblError::io(&p, e)),
    }
}

/// The numbers of a finished run, as `metrics.json` holds them.
fn final_metrics(ctx: &Context, test: EvalSummary, val: Option<EvalSummary>, wall_seconds: f64, ortho: Option<f64>) -> FinalMetrics {
    FinalMetrics {
        name: ctx.cfg.name.clone(),
        head: ctx.cfg.model.head.to_string(),
        epoch: ctx.cfg.train.epochs,
        train_counts: ctx.train_counts.clone(),
        test,
        val,
        wall_seconds,
        rotation_orthogonality_error: ortho,
    }
}

/// Neural-collapse metrics of the eval-mode network from its pass over the un-augmented
/// training set.
fn collapse_metrics(net: &Network, ctx: &Context, pass: &ForwardPass) -> NeuralCollapse {
    let directions = Mat::from_tensor(net.head.class_directions());
    let labels: Vec<usize> = ctx.train.labels.iter().map(|&l| l as usize).collect();
    neural_collapse(&pass.features, &labels, &directions, &pass.logits)
}

/// PCA pictures of the training and test features (passes that kept them) after `epoch`, into
/// `RUN_DIR/features/epoch_NNN.{png,svg}`.
fn feature_picture(
    net: &Network,
    ctx: &Context,
    train_pass: &ForwardPass,
    test_pass: &ForwardPass,
    run_dir: &Path,
    epoch: usize,
) -> Result<()> {
    let directions = Mat::from_tensor(net.head.class_directions());
    let train_labels: Vec<usize> = ctx.train.labels.iter().map(|&l| l as usize).collect();
    let test_labels: Vec<usize> = ctx.test.labels.iter().map(|&l| l as usize).collect();
    let dir = run_dir.join("features");
    std::fs::create_dir_all(&dir).map_err(|e| RblError::io(&dir, e))?;
    let sets = [
        LabelledFeatures { name: "train", features: &train_pass.features, labels: &train_labels },
        LabelledFeatures { name: "test", features: &test_pass.features, labels: &test_labels },
    ];
    let caption = format!("epoch {epoch}");
    plot_features(&dir.join(format!("epoch_{epoch:03}")), &caption, &sets, &directions)?;
    Ok(())
}

/// Figures of one training epoch.
struct EpochStats {
    loss: f64,
    acc: f64,
    steps: usize,
    images: usize,
    train_seconds: f64,
    loader_wait: f64,
    skipped: usize,
}

/// Mid-epoch checkpoints for one epoch: where to resume, how often to save, and the saver.
struct EpochControl<'a> {
    /// Progress already made in this epoch by an earlier process (resuming mid-epoch).
    resume: Option<PartialEpoch>,
    /// Save every this many steps (0: only at the epoch's end and on Ctrl-C).
    every: usize,
    /// Abort the process after this many steps in total (tests of crash safety).
    crash_after_steps: Option<usize>,
    /// Steps this process has run, over all epochs.
    steps_this_process: &'a mut usize,
    /// Writes a mid-epoch checkpoint.
    save: &'a mut dyn FnMut(&Network, &burn::optim::ModuleOptimizer, PartialEpoch) -> Result<()>,
}

/// One epoch; `None` when interrupted (after saving a mid-epoch checkpoint if it made progress).
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    mut net: Network,
    optim: &mut burn::optim::ModuleOptimizer,
    criterion: &Criterion,
    ctx: &Context,
    device: &Device,
    epoch: usize,
    lr: f64,
    quiet: bool,
    control: EpochControl<'_>,
) -> Result<Option<(Network, EpochStats)>> {
    let cfg = &ctx.cfg;
    let loss_scale = cfg.loss_scale();
    let start = control.resume.unwrap_or_default();
    let plan = LoaderPlan {
        batch_size: cfg.train.batch_size,
        seed: Some(epoch_seed(cfg.seed, epoch)),
        drop_last: cfg.train.drop_last,
        sampler: cfg.data.sampler,
        skip: start.steps,
        mixup_alpha: cfg.train.mixup_alpha,
        workers: cfg.data.workers,
    };
    let mut loader = Loader::start(ctx.train.clone(), ctx.train_aug.clone(), plan);
    let total_steps = start.steps + loader.len();
    let progress = Progress::new(epoch + 1, cfg.train.epochs, total_steps, quiet);
    let (c, h, w) = (ctx.train.channels, ctx.train.height, ctx.train.width);
    let t0 = Instant::now();
    let (mut loss_sum, mut hits, mut images, mut steps) = (start.loss_sum, start.hits, start.images, start.steps);
    let partial = |loss_sum, hits, images, steps, loader: &Loader| PartialEpoch {
        steps,
        loss_sum,
        hits,
        images,
        train_seconds: start.train_seconds + t0.elapsed().as_secs_f64(),
        loader_wait: start.loader_wait + loader.waited().as_secs_f64(),
    };
    while let Some(batch) = loader.next() {
        if interrupt::requested() {
            progress.finish();
            if steps > start.steps {
                (control.save)(&net, optim, partial(loss_sum, hits, images, steps, &loader))?;
            }
            return Ok(None);
        }
        let b = batch.len();
        let x = Tensor::<4>::from_data(TensorData::new(batch.images, [b, c, h, w]), device);
        let (updated, step) = train_step(net, optim, criterion, x, &batch.labels, batch.mix.as_ref(), epoch, lr, loss_scale, device);
        let loss_value = step.loss;
        if !loss_value.is_finite() {
            progress.finish();
            return Err(RblError::Diverged { epoch: epoch + 1, step: steps, loss: loss_value });
        }
        net = updated;
        hits += step.correct;
        loss_sum += loss_value as f64 * b as f64;
        images += b;
        steps += 1;
        *control.steps_this_process += 1;
        if control.every > 0 && steps % control.every == 0 && steps < total_steps {
            (control.save)(&net, optim, partial(loss_sum, hits, images, steps, &loader))?;
        }
        if control.crash_after_steps.is_some_and(|n| *control.steps_this_process >= n) {
            // A stand-in for SIGKILL or a power cut: no destructors, no flushing.
            std::process::abort();
        }
        let seen = (images - start.images) as f64;
        progress.step(steps, loss_sum / images as f64, 100.0 * hits as f64 / images as f64, seen / t0.elapsed().as_secs_f64());
    }
    progress.finish();
    if let Some(e) = loader.failure() {
        return Err(RblError::Dataset(format!("{e} (epoch {}; set data.bad_images = \"skip\" to skip such training images)", epoch + 1)));
    }
    let n = images.max(1) as f64;
    let done = partial(loss_sum, hits, images, steps, &loader);
    Ok(Some((
        net,
        EpochStats {
            loss: loss_sum / n,
            acc: 100.0 * hits as f64 / n,
            steps,
            images,
            train_seconds: done.train_seconds.max(1e-9),
            loader_wait: done.loader_wait,
            skipped: loader.skipped(),
        },
    )))
}

fn format_epoch(r: &EpochRecord, epochs: usize) -> String {
    let mut s = format!(
        "epoch {}/{} lr {:.4} train loss {:.4} acc {:.2}% | {:.0} img/s, {:.1}s (loader wait {:.2}s)",
        r.epoch, epochs, r.lr, r.train_loss, r.train_acc, r.train_images_per_second, r.seconds, r.loader_wait_seconds
    );
    if let (Some(l), Some(a), Some(aa)) = (r.test_loss, r.test_acc, r.test_acc_adjusted) {
        s += &format!(" | test loss {l:.4} acc {a:.2}% adjusted {aa:.2}%");
    }
    if let Some(e) = r.rotation_orthogonality_error {
        s += &format!(" | |RᵀR−I| {e:.1e}");
    }
    if r.skipped_images > 0 {
        s += &format!(" | skipped {} undecodable training images", r.skipped_images);
    }
    s
}

/// Rewrites `epochs.jsonl` from the in-memory history (atomically).
fn write_log(run_dir: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut text = String::new();
    for r in history {
        text += &serde_json::to_string(r).expect("record serialises");
        text.push('\n');
    }
    write_atomic(&run_dir.join("epochs.jsonl"), text.as_bytes())
}

/// Draws the feature pictures of a saved checkpoint into its run folder's `features/` (as
/// `eval.feature_epochs` would have at that epoch). Returns the PNG's path.
pub fn features_from_checkpoint(dir: &Path) -> Result<PathBuf> {
    let ckpt = load_checkpoint(dir)?;
    let cfg = ckpt.config.clone();
    let device = device_for(&cfg)?;
    let ctx = context_for(&cfg, device.clone())?;
    let net = Network::from_config(&cfg, ctx.train.channels, ctx.train.num_classes, &device)?;
    let net = apply_weights(net, &ckpt)?.valid();
    let run_dir = dir.parent().map(Path::to_path_buf).unwrap_or_default();
    let pass = |set| forward_all(&net, set, &ctx.eval_aug, cfg.eval.batch_size, &ctx.device, true);
    feature_picture(&net, &ctx, &pass(&ctx.train)?, &pass(&ctx.test)?, &run_dir, ckpt.state.epoch)?;
    Ok(run_dir.join("features").join(format!("epoch_{:03}.png", ckpt.state.epoch)))
}

/// Evaluates a saved checkpoint on the test (or validation) set of its config.
pub fn eval_checkpoint(dir: &Path, tau: Option<f64>, on_val: bool, device: Option<crate::config::DeviceKind>) -> Result<EvalSummary> {
    let ckpt = load_checkpoint(dir)?;
    let mut cfg = ckpt.config.clone();
    if let Some(d) = device {
        cfg.device = d;
    }
    let device = device_for(&cfg)?;
    let data = prepare(&cfg.data, cfg.seed)?;
    let ctx = context(cfg.clone(), data, device.clone());
    let net = Network::from_config(&cfg, ctx.train.channels, ctx.train.num_classes, &device)?;
    let net = apply_weights(net, &ckpt)?.valid();
    let set = if on_val {
        ctx.val
            .clone()
            .ok_or_else(|| RblError::Config { origin: "data.val_per_class".into(), msg: "this run has no validation split".into() })?
    } else {
        ctx.test.clone()
    };
    ctx.evaluator(tau.unwrap_or(cfg.eval.tau)).evaluate(&net, &set)
}
