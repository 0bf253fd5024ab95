//! Post-hoc corrections of a trained model with their τ chosen on the balanced validation
//! split (never on the test set): logit adjustment (Menon et al. 2021) and τ-normalisation of
//! a linear classifier (Kang et al., ICLR 2020). The test set is scored once, at the chosen τ.

use serde::{Deserialize, Serialize};

use crate::data::ImageSet;
use crate::error::{RblError, Result};
use crate::head::host_linalg::Mat;
use crate::loss::cross_entropy::mean_cross_entropy;
use crate::report::EvalSummary;
use crate::train::evaluate::{forward_all, predict, summarize};
use crate::train::trained_run::TrainedRun;

/// Which correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PostHoc {
    /// argmax(z − τ·log π).
    LogitAdjust,
    /// Class directions w_j / ‖w_j‖^τ (linear heads; bias dropped, as in Kang et al.).
    TauNorm,
}

/// The outcome: validation accuracy for every τ tried, the chosen τ, the test scores there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostHocResult {
    /// The correction.
    pub method: PostHoc,
    /// (τ, validation top-1 %) for each τ of the grid.
    pub validation: Vec<(f64, f64)>,
    /// The τ with the best validation top-1 (the smallest on ties).
    pub chosen_tau: f64,
    /// Test scores at the chosen τ (for τ-norm, `raw` is the corrected classifier).
    pub test: EvalSummary,
}

/// Runs `method` on a trained run over `grid`.
pub fn tune_posthoc(run: &TrainedRun, method: PostHoc, grid: &[f64]) -> Result<PostHocResult> {
    if grid.is_empty() {
        return Err(RblError::Config { origin: "--grid".into(), msg: "no τ to try".into() });
    }
    let (ctx, net) = (&run.ctx, &run.net);
    let (cfg, device) = (&ctx.cfg, &ctx.device);
    let val = ctx.val.clone().ok_or_else(|| RblError::Config {
        origin: "data.val_per_class".into(),
        msg: "post-hoc τ is chosen on the validation split, and this run has none: train with --set data.val_per_class=K".into(),
    })?;
    let counts = ctx.train_counts.clone();
    let score = |logits: Vec<f32>, set: &ImageSet, tau_la: f64| summarize(logits, f64::NAN, set, &counts, tau_la, ctx.buckets);

    let (validation, test) = match method {
        PostHoc::LogitAdjust => {
            let (val_logits, _) = predict(net, &val, &ctx.eval_aug, cfg.eval.batch_size, device)?;
            let validation: Vec<(f64, f64)> = grid.iter().map(|&t| (t, score(val_logits.clone(), &val, t).adjusted.top1)).collect();
            let chosen = best(&validation);
            let (test_logits, loss) = predict(net, &ctx.test, &ctx.eval_aug, cfg.eval.batch_size, device)?;
            (validation, summarize(test_logits, loss, &ctx.test, &counts, chosen, ctx.buckets))
        }
        PostHoc::TauNorm => {
            let weights = net.head.linear_weight().ok_or_else(|| {
                RblError::Model("τ-normalisation needs a linear head: the ETF's class directions already have equal norms".into())
            })?;
            let w = Mat::from_tensor(weights);
            let (d, c) = (w.rows, w.cols);
            let norms = w.column_norms();
            let val_f = forward_all(net, &val, &ctx.eval_aug, cfg.eval.batch_size, device, true)?.features;
            let logits = |f: &[f32], tau: f64| -> Vec<f32> {
                let scale: Vec<f64> = norms.iter().map(|n| n.powf(tau).max(1e-12)).collect();
                f.chunks_exact(d)
                    .flat_map(|row| {
                        (0..c).map(|j| ((0..d).map(|i| row[i] as f64 * w.at(i, j)).sum::<f64>() / scale[j]) as f32).collect::<Vec<_>>()
                    })
                    .collect()
            };
            let validation: Vec<(f64, f64)> = grid.iter().map(|&t| (t, score(logits(&val_f, t), &val, 0.0).raw.top1)).collect();
            let chosen = best(&validation);
            let test_f = forward_all(net, &ctx.test, &ctx.eval_aug, cfg.eval.batch_size, device, true)?.features;
            let test_logits = logits(&test_f, chosen);
            let loss = mean_cross_entropy(&test_logits, &ctx.test.labels, c);
            (validation, summarize(test_logits, loss, &ctx.test, &counts, 0.0, ctx.buckets))
        }
    };
    Ok(PostHocResult { method, chosen_tau: best(&validation), validation, test })
}

/// The τ of the best validation accuracy; the first (smallest) on ties.
fn best(scores: &[(f64, f64)]) -> f64 {
    scores.iter().fold((scores[0].0, f64::NEG_INFINITY), |b, &(t, a)| if a > b.1 { (t, a) } else { b }).0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rbl train --force` removes a result file only if run_dir lists its exact name.
    #[test]
    fn every_methods_result_file_is_one_rbl_recognises() {
        use crate::report::run_dir::{RunDir, TWO_STAGE_FILES};
        for m in [PostHoc::LogitAdjust, PostHoc::TauNorm] {
            let p = RunDir::new("r").two_stage_result("posthoc", &crate::config::variant_name(&m));
            assert!(TWO_STAGE_FILES.contains(&p.file_name().unwrap().to_str().unwrap()), "{p:?}");
        }
        for m in [crate::train::stage2::Stage2::Crt, crate::train::stage2::Stage2::Lws, crate::train::stage2::Stage2::Marc] {
            let p = RunDir::new("r").two_stage_result("stage2", &crate::config::variant_name(&m));
            assert!(TWO_STAGE_FILES.contains(&p.file_name().unwrap().to_str().unwrap()), "{p:?}");
        }
    }

    #[test]
    fn best_prefers_the_smallest_tau_on_ties() {
        assert_eq!(best(&[(0.0, 50.0), (0.5, 70.0), (1.0, 70.0), (1.5, 60.0)]), 0.5);
        assert_eq!(best(&[(0.0, 10.0)]), 0.0);
    }
}
