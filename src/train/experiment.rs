//! The paper's motivating A/B experiment (`rbl experiment frame-directions`): one network,
//! one dataset, one seed, trained against two fixed simplex ETFs that differ only in where they
//! point ("initialisation A" and "B"), and third with RBL learning a rotation of frame A.
//!
//! The paper's claim is that A and B reach the same training accuracy but generalise
//! differently. The experiment records train accuracy (eval mode, un-augmented images) and
//! test accuracy every epoch, feature pictures at epoch 30 (or the last), and writes the gaps.
//! Each arm is an ordinary run folder, so an interrupted experiment resumes arm by arm.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::error::{RblError, Result};
use crate::head::HeadKind;
use crate::report::plots::plot_comparison;
use crate::report::run_dir::RunDir;
use crate::report::{EpochRecord, FinalMetrics, write_atomic};
use crate::train::run::{RunOptions, train_run};

/// The epoch of the paper's feature pictures.
const PICTURE_EPOCH: usize = 30;

/// What the experiment varies.
#[derive(Debug, Clone)]
pub struct FrameDirections {
    /// Frame seed of arm A (and of RBL's starting frame).
    pub seed_a: u64,
    /// Frame seed of arm B.
    pub seed_b: u64,
    /// The experiment folder; arms go in `A/`, `B/`, `rbl/`.
    pub out: PathBuf,
    /// No progress output.
    pub quiet: bool,
}

/// One arm's outcome, as written to `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmResult {
    /// `A`, `B` or `rbl`.
    pub arm: String,
    /// Head and frame seed.
    pub head: String,
    /// Seed of the frame's directions.
    pub frame_seed: u64,
    /// Last epoch's eval-mode top-1 (%) on the un-augmented training set.
    pub train_acc: f64,
    /// Last epoch's test top-1 (%), raw logits.
    pub test_acc: f64,
    /// Last epoch's test top-1 (%) after logit adjustment.
    pub test_acc_adjusted: f64,
    /// train_acc − test_acc.
    pub gap: f64,
    /// Mean gap over the last third of the epochs (less sensitive to one epoch's noise).
    pub gap_late_mean: f64,
    /// The arm's run folder.
    pub run_dir: String,
    /// Its feature picture (PNG).
    pub features_png: String,
}

/// The three arms' configs from a base config: same data, backbone initialisation, data order
/// and schedule; only the head and the frame seed differ.
pub fn arm_configs(base: &ExperimentConfig, seed_a: u64, seed_b: u64) -> Vec<(String, ExperimentConfig)> {
    let picture = PICTURE_EPOCH.min(base.train.epochs);
    let arm = |arm: &str, head: HeadKind, frame_seed: u64| {
        let mut cfg = base.clone();
        cfg.name = format!("{}_{arm}", base.name);
        cfg.method = String::new();
        cfg.model.head = head;
        cfg.model.frame_seed = Some(frame_seed);
        cfg.train.eval_every = 1;
        cfg.eval.train_eval = true;
        if !cfg.eval.feature_epochs.contains(&picture) {
            cfg.eval.feature_epochs.push(picture);
        }
        (arm.to_string(), cfg)
    };
    vec![arm("A", HeadKind::Etf, seed_a), arm("B", HeadKind::Etf, seed_b), arm("rbl", HeadKind::Rbl, seed_a)]
}

/// Trains (or resumes, or picks up) the three arms, then writes `summary.md`, `summary.json`
/// and `curves.{png,svg}` into the experiment folder. Returns the arms' results.
pub fn run_frame_directions(base: &ExperimentConfig, opts: &FrameDirections) -> Result<Vec<ArmResult>> {
    if opts.seed_a == opts.seed_b {
        return Err(RblError::Config { origin: "--seed-b".into(), msg: "arms A and B need different frame seeds".into() });
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| RblError::io(&opts.out, e))?;
    let mut results = Vec::new();
    let mut logs = Vec::new();
    for (arm, cfg) in arm_configs(base, opts.seed_a, opts.seed_b) {
        let run_dir = RunDir::new(opts.out.join(&arm));
        let metrics_path = run_dir.metrics();
        if !run_dir.is_finished() {
            let resume = run_dir.holds_run();
            if resume {
                let existing = ExperimentConfig::load_stored(&run_dir.config(), &[])?;
                if existing != cfg {
                    return Err(RblError::Config {
                        origin: run_dir.config().display().to_string(),
                        msg: "this arm was started with a different config; use a new --out folder".into(),
                    });
                }
            }
            if !opts.quiet {
                crate::note!(
                    "frame-directions: arm {arm} (head {}, frame seed {})",
                    cfg.model.head,
                    cfg.model.frame_seed.unwrap_or(cfg.seed)
                );
            }
            train_run(cfg.clone(), &RunOptions { quiet: opts.quiet, ..RunOptions::new(run_dir.clone(), resume) })?;
        }
        let log = run_dir.read_epoch_log()?;
        let metrics = run_dir.read_metrics()?.ok_or_else(|| RblError::format(&metrics_path, "missing after the arm's run"))?;
        results.push(arm_result(&arm, &cfg, &log, &metrics, &run_dir)?);
        logs.push((format!("{arm} ({})", cfg.model.head), log));
    }
    plot_comparison(&logs, &opts.out.join("curves"))?;
    write_atomic(&opts.out.join("summary.json"), serde_json::to_string_pretty(&results).expect("serialises").as_bytes())?;
    write_atomic(&opts.out.join("summary.md"), summary_markdown(base, &results).as_bytes())?;
    Ok(results)
}

fn arm_result(arm: &str, cfg: &ExperimentConfig, log: &[EpochRecord], metrics: &FinalMetrics, run_dir: &RunDir) -> Result<ArmResult> {
    let last = log.last().ok_or_else(|| RblError::format(run_dir.epoch_log(), "empty log"))?;
    let gap = |r: &EpochRecord| Some(r.train_eval_acc? - r.test_acc?);
    let late: Vec<f64> = log[log.len() - log.len().div_ceil(3)..].iter().filter_map(gap).collect();
    let train_acc =
        last.train_eval_acc.ok_or_else(|| RblError::format(run_dir.epoch_log(), "no eval-mode train accuracy (eval.train_eval)"))?;
    let picture = cfg.eval.feature_epochs.iter().max().copied().unwrap_or(cfg.train.epochs);
    Ok(ArmResult {
        arm: arm.into(),
        head: cfg.model.head.to_string(),
        frame_seed: cfg.model.frame_seed.unwrap_or(cfg.seed),
        train_acc,
        test_acc: metrics.test.raw.top1,
        test_acc_adjusted: metrics.test.adjusted.top1,
        gap: train_acc - metrics.test.raw.top1,
        gap_late_mean: late.iter().sum::<f64>() / late.len().max(1) as f64,
        run_dir: run_dir.path().display().to_string(),
        features_png: run_dir.feature_picture_stem(picture).with_extension("png").display().to_string(),
    })
}

/// The Markdown summary: the table and what it says about A against B, in words.
pub fn summary_markdown(base: &ExperimentConfig, results: &[ArmResult]) -> String {
    let mut s = format!(
        "# Frame directions: {} ({} epochs, seed {}, IR {})\n\n\
         | arm | head | frame seed | train top-1 (eval mode) | test top-1 | test adjusted | gap (last) | gap (mean, last third) |\n\
         |---|---|---|---|---|---|---|---|\n",
        base.name, base.train.epochs, base.seed, base.data.imbalance_ratio
    );
    for r in results {
        s += &format!(
            "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            r.arm, r.head, r.frame_seed, r.train_acc, r.test_acc, r.test_acc_adjusted, r.gap, r.gap_late_mean
        );
    }
    if let (Some(a), Some(b)) = (results.iter().find(|r| r.arm == "A"), results.iter().find(|r| r.arm == "B")) {
        s += &format!(
            "\nA and B differ only in the frame's directions. Train accuracy differs by {:.2} points, \
             test accuracy by {:.2} points, the train/test gap by {:.2} points at the last epoch \
             ({:.2} averaged over the last third of the epochs). One seed: a difference of this size is \
             {} evidence that the direction alone changes generalisation here.\n",
            (a.train_acc - b.train_acc).abs(),
            (a.test_acc - b.test_acc).abs(),
            (a.gap - b.gap).abs(),
            (a.gap_late_mean - b.gap_late_mean).abs(),
            if (a.gap_late_mean - b.gap_late_mean).abs() >= 1.0 { "suggestive, not conclusive," } else { "no" }
        );
    }
    s += "\nFeature pictures (PCA of train and test features with the class directions):\n\n";
    for r in results {
        s += &format!("- {}: {}\n", r.arm, r.features_png);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_differ_only_in_head_and_frame_seed() {
        let mut base = ExperimentConfig::default();
        base.train.epochs = 40;
        let arms = arm_configs(&base, 1, 2);
        assert_eq!(arms.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(), ["A", "B", "rbl"]);
        for (_, cfg) in &arms {
            assert_eq!(cfg.eval.feature_epochs, vec![30]);
            assert!(cfg.eval.train_eval);
            let mut same = cfg.clone();
            same.name = base.name.clone();
            same.model.head = base.model.head;
            same.model.frame_seed = None;
            same.eval = base.eval.clone();
            assert_eq!(same, base, "only name, head, frame seed and eval logging change");
        }
        assert_eq!(arms[0].1.model.frame_seed, Some(1));
        assert_eq!(arms[1].1.model.frame_seed, Some(2));
        assert_eq!(arms[2].1.model.frame_seed, Some(1));
        assert_eq!(arms[2].1.model.head, HeadKind::Rbl);
        base.train.epochs = 12;
        assert_eq!(arm_configs(&base, 1, 2)[0].1.eval.feature_epochs, vec![12]);
    }
}
