//! The end of an epoch: evaluation (test, validation, eval-mode train accuracy), neural-collapse
//! metrics, feature pictures, the epoch's log line, the checkpoint, and after the last epoch
//! the final metrics.

use std::time::Instant;

use burn::module::Module;

use crate::error::{RblError, Result};
use crate::head::host_linalg::Mat;
use crate::metrics::ClassificationReport;
use crate::metrics::accuracy::Shot;
use crate::metrics::accuracy::argmax_rows;
use crate::metrics::neural_collapse::{NeuralCollapse, neural_collapse};
use crate::network::Network;
use crate::report::feature_plot::{LabelledFeatures, plot_features};
use crate::report::run_dir::RunDir;
use crate::report::{ClassResult, EpochRecord, EvalSummary, FinalMetrics, SelectedEpoch};
use crate::train::checkpoint::{CheckpointState, apply_weights, load_checkpoint, save_checkpoint};
use crate::train::context::Context;
use crate::train::epoch::EpochStats;
use crate::train::evaluate::{ForwardPass, forward_all};
use crate::train::run::Trainer;
use crate::train::selection::{Selection, best_val_epoch, keep_as_best};

/// What the end of an epoch computes, decided from the config.
struct Plan {
    /// Last epoch of the run.
    is_last: bool,
    /// Test (and validation) evaluation.
    eval: bool,
    /// Feature pictures.
    picture: bool,
    /// Neural-collapse metrics.
    collapse: bool,
    /// Eval-mode accuracy on the un-augmented training set.
    train_eval: bool,
}

/// What the end of an epoch measured.
struct Measured {
    /// Test scores (evaluation epochs).
    test: Option<EvalSummary>,
    /// Validation scores (evaluation epochs, when a split is set aside).
    val: Option<EvalSummary>,
    /// Eval-mode loss and top-1 on the un-augmented training set.
    train_eval: Option<(f64, f64)>,
    /// ‖RᵀR − I‖ of RBL's rotation.
    ortho: Option<f64>,
    /// Neural-collapse metrics.
    collapse: Option<NeuralCollapse>,
}

impl Trainer<'_> {
    /// Closes epoch `epoch` (0-based): evaluates, logs, draws, checkpoints. Returns the final
    /// metrics after the last epoch.
    pub(crate) fn end_epoch(
        &mut self,
        net: &Network,
        epoch: usize,
        lr: f64,
        stats: &EpochStats,
        started: Instant,
    ) -> Result<Option<FinalMetrics>> {
        let (cfg, ctx) = (&self.cfg, &self.ctx);
        let done = epoch + 1;
        let is_last = done == cfg.train.epochs;
        let eval = is_last || done.is_multiple_of(cfg.train.eval_every);
        let plan = Plan {
            is_last,
            eval,
            picture: cfg.eval.feature_epochs.contains(&done),
            collapse: cfg.eval.nc_every > 0 && (done.is_multiple_of(cfg.eval.nc_every) || is_last),
            train_eval: eval && cfg.eval.train_eval,
        };
        let eval_net = net.valid();
        let evaluator = ctx.evaluator(cfg.eval.tau);
        // A picture epoch keeps the test features of the same pass that is evaluated.
        let test_pass = (plan.eval || plan.picture)
            .then(|| forward_all(&eval_net, &ctx.test, &ctx.eval_aug, cfg.eval.batch_size, &ctx.device, plan.picture))
            .transpose()?;
        let test = test_pass.as_ref().filter(|_| plan.eval).map(|pass| evaluator.summarize_pass(pass, &ctx.test));
        let val = ctx.val.as_ref().filter(|_| plan.eval).map(|v| evaluator.evaluate(&eval_net, v)).transpose()?;
        if let Some(t) = test.as_ref().filter(|t| !t.loss.is_finite()) {
            return Err(RblError::Diverged { epoch: done, step: stats.steps, loss: t.loss as f32 });
        }
        let ortho = net.head.rotation().map(|r| r.orthogonality_error());
        if let Some(warning) = net.head.rotation().and_then(|r| r.f32_range_warning()) {
            crate::note!("{warning}");
        }
        // One pass over the un-augmented training set serves all three uses.
        let keep_features = plan.collapse || plan.picture;
        let train_pass = (keep_features || plan.train_eval)
            .then(|| forward_all(&eval_net, &ctx.train, &ctx.eval_aug, cfg.eval.batch_size, &ctx.device, keep_features))
            .transpose()?;
        let collapse = train_pass.as_ref().filter(|_| plan.collapse).map(|pass| collapse_metrics(&eval_net, ctx, pass));
        let train_eval = train_pass.as_ref().filter(|_| plan.train_eval).map(|pass| train_accuracy(ctx, pass));
        if let (Some(train_pass), Some(test_pass), true) =
            (train_pass.as_ref().filter(|_| plan.picture), test_pass.as_ref(), self.world.is_root())
        {
            feature_picture(&eval_net, ctx, train_pass, test_pass, &self.opts.run_dir, done)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        self.wall_seconds += seconds;
        let measured = Measured { test, val, train_eval, ortho, collapse };
        let record = epoch_record(done, lr, stats, seconds, &measured);
        if !self.opts.quiet {
            crate::note!("{}", format_epoch(&record, cfg.train.epochs));
        }
        self.history.push(record);
        // The epoch's TensorBoard point goes out before the checkpoint that publishes the
        // epoch: a crash between the two repeats the epoch on resume, and the resumed
        // session's START marker makes TensorBoard drop the first copy. (After the checkpoint,
        // a crash there would lose the point for good.)
        if let (Some(events), Some(record)) = (self.tensorboard.as_mut(), self.history.last()) {
            events.write_epoch(record)?;
        }
        let run_dir = &self.opts.run_dir;
        if self.world.is_root() {
            let mut state = CheckpointState::new(done, &self.cfg, &self.history, self.wall_seconds, None);
            state.ranks = (self.world.size > 1).then_some(self.world.size);
            let saved = save_checkpoint(run_dir.path(), net, &self.optim, state, self.cfg.train.keep_checkpoints)?;
            if self.opts.crash_after_checkpoint == Some(done) {
                // A stand-in for SIGKILL at the epoch boundary (crash-safety tests).
                std::process::abort();
            }
            if self.cfg.eval.select == Selection::Val && best_val_epoch(&self.history) == Some(done) {
                keep_as_best(run_dir, &saved)?;
            }
            run_dir.write_epoch_log(&self.history)?;
        }
        if !plan.is_last {
            return Ok(None);
        }
        let Measured { test, val, ortho, .. } = measured;
        let mut metrics = final_metrics(&self.ctx, test.expect("last epoch is evaluated"), val, self.wall_seconds, ortho);
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

/// The log line of epoch `done` (1-based).
fn epoch_record(done: usize, lr: f64, stats: &EpochStats, seconds: f64, m: &Measured) -> EpochRecord {
    let (test, val, train_eval) = (m.test.as_ref(), m.val.as_ref(), m.train_eval);
    let shots = |r: &ClassificationReport| [r.many, r.medium, r.few];
    EpochRecord {
        epoch: done,
        lr,
        train_loss: stats.loss,
        train_acc: stats.acc,
        test_loss: test.map(|t| t.loss),
        test_acc: test.map(|t| t.raw.top1),
        test_acc_adjusted: test.map(|t| t.adjusted.top1),
        test_shots: test.map(|t| shots(&t.raw)),
        test_shots_adjusted: test.map(|t| shots(&t.adjusted)),
        train_eval_loss: train_eval.map(|t| t.0),
        train_eval_acc: train_eval.map(|t| t.1),
        val_acc_adjusted: val.map(|v| v.adjusted.top1),
        seconds,
        loader_wait_seconds: stats.loader_wait,
        skipped_images: stats.skipped,
        train_images_per_second: stats.images as f64 / stats.train_seconds,
        rotation_orthogonality_error: m.ortho,
        neural_collapse: m.collapse.clone(),
    }
}

/// Loss and top-1 (%) of the eval-mode network on the un-augmented training set.
fn train_accuracy(ctx: &Context, pass: &ForwardPass) -> (f64, f64) {
    let labels: Vec<usize> = ctx.train.labels.iter().map(|&l| l as usize).collect();
    let predicted = argmax_rows(&pass.logits, ctx.train.num_classes);
    let hits = predicted.iter().zip(&labels).filter(|(p, y)| p == y).count();
    (pass.loss, 100.0 * hits as f64 / labels.len().max(1) as f64)
}

/// The numbers of a finished run, as `metrics.json` holds them.
pub(crate) fn final_metrics(
    ctx: &Context,
    test: EvalSummary,
    val: Option<EvalSummary>,
    wall_seconds: f64,
    ortho: Option<f64>,
) -> FinalMetrics {
    let classes = class_results(ctx, &test);
    FinalMetrics {
        name: ctx.cfg.name.clone(),
        head: ctx.cfg.model.head.to_string(),
        epoch: ctx.cfg.train.epochs,
        train_counts: ctx.train_counts.clone(),
        test,
        val,
        wall_seconds,
        rotation_orthogonality_error: ortho,
        selected: None,
        classes,
    }
}

/// Each class of a test evaluation, named: the report's per-class table.
fn class_results(ctx: &Context, test: &EvalSummary) -> Vec<ClassResult> {
    let c = ctx.train_counts.len();
    let names = ctx.class_names();
    let test_counts = ctx.test.class_counts();
    (0..c)
        .map(|i| ClassResult {
            name: names[i].clone(),
            train_images: ctx.train_counts[i],
            test_images: test_counts.get(i).copied().unwrap_or(0),
            raw: test.raw.per_class.get(i).copied().flatten(),
            adjusted: test.adjusted.per_class.get(i).copied().flatten(),
            shot: match ctx.buckets.bucket(ctx.train_counts[i]) {
                Shot::Many => "many",
                Shot::Medium => "medium",
                Shot::Few => "few",
            }
            .into(),
        })
        .collect()
}

impl Trainer<'_> {
    /// With `eval.select = "val"`: the kept best checkpoint scored on the test and validation
    /// sets (deterministic, so a recomputation after a crash gives the same numbers).
    pub(crate) fn selected_epoch(&self, net: &Network) -> Result<Option<SelectedEpoch>> {
        if self.cfg.eval.select != Selection::Val {
            return Ok(None);
        }
        let run_dir = &self.opts.run_dir;
        let Some(epoch) = best_val_epoch(&self.history) else {
            return Err(RblError::Dataset("eval.select = \"val\": no epoch was scored on the validation split".into()));
        };
        // Rank 0 wrote best/; the other ranks read it once it has.
        self.world.barrier();
        let best = load_checkpoint(&run_dir.best())?;
        if best.state.epoch != epoch {
            return Err(RblError::Checkpoint {
                path: run_dir.best(),
                msg: format!("holds epoch {}, but the epoch log's best on validation is {epoch}", best.state.epoch),
            });
        }
        let best_net = apply_weights(net.valid(), &best)?;
        let evaluator = self.ctx.evaluator(self.cfg.eval.tau);
        let test = evaluator.evaluate(&best_net, &self.ctx.test)?;
        let val = self.ctx.val.as_ref().map(|v| evaluator.evaluate(&best_net, v)).transpose()?;
        Ok(Some(SelectedEpoch { rule: "val".into(), epoch, test, val }))
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
pub(crate) fn feature_picture(
    net: &Network,
    ctx: &Context,
    train_pass: &ForwardPass,
    test_pass: &ForwardPass,
    run_dir: &RunDir,
    epoch: usize,
) -> Result<()> {
    let directions = Mat::from_tensor(net.head.class_directions());
    let train_labels: Vec<usize> = ctx.train.labels.iter().map(|&l| l as usize).collect();
    let test_labels: Vec<usize> = ctx.test.labels.iter().map(|&l| l as usize).collect();
    let dir = run_dir.features();
    std::fs::create_dir_all(&dir).map_err(|e| RblError::io(&dir, e))?;
    let sets = [
        LabelledFeatures { name: "train", features: &train_pass.features, labels: &train_labels },
        LabelledFeatures { name: "test", features: &test_pass.features, labels: &test_labels },
    ];
    let caption = format!("epoch {epoch}");
    plot_features(&run_dir.feature_picture_stem(epoch), &caption, &sets, &directions, &ctx.class_names())?;
    Ok(())
}

/// The epoch's line on stderr.
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
