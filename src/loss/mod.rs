//! Training losses: cross-entropy (RBL's) and the long-tail losses rbl compares it with.

pub mod class_balanced;
pub mod cross_entropy;
pub mod dot_regression;
pub mod lade;
pub mod ldam;
pub mod logit_adjusted;
pub mod seesaw;
pub mod sigmoid_focal;

use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

pub use cross_entropy::cross_entropy;

use crate::error::Result;
use cross_entropy::{cross_entropy_per_image, weighted_mean};
use logit_adjusted::shift_by_prior;

/// Which training loss (`loss.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Cross-entropy (RBL's, and the plain baseline's).
    #[default]
    Ce,
    /// Cross-entropy of z + τ·log π (Menon et al. 2021).
    LogitAdjusted,
    /// Cross-entropy of z + log π (Ren et al. 2020): the logit-adjusted loss at τ = 1.
    BalancedSoftmax,
    /// Cross-entropy weighted by the effective number (Cui et al. 2019).
    CbCe,
    /// Focal loss weighted by the effective number.
    CbFocal,
    /// Label-distribution-aware margins (Cao et al. 2019), with optional deferred re-weighting.
    Ldam,
    /// LADE (Hong et al. 2021): the prior-shifted CE plus its regulariser.
    Lade,
    /// Features vs. fixed class directions (Yang et al. 2022); use with `model.feature_bn_l2`.
    DotRegression,
    /// Seesaw (Wang et al. 2021): CE whose negative terms are scaled by the accumulated class
    /// counts and the predicted probabilities ([`seesaw`]).
    Seesaw,
    /// Bayias (Xu et al. 2021, "Calibrated" with UniMix): CE of z + log π_train − log π_test.
    /// With a uniform test distribution log π_test is a constant, which softmax ignores: the
    /// loss is Balanced Softmax's, named as the paper's tables name it.
    Bayias,
}

/// The form of CB-Focal's focal loss (`loss.focal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FocalForm {
    /// Cui et al.'s: a sigmoid (one-vs-all) focal loss over every class, each image's terms
    /// weighted by its class's weight, summed and divided by the batch size.
    #[default]
    Sigmoid,
    /// A softmax focal loss (1 − p_y)^γ · CE, weighted mean over the batch (rbl's earlier form).
    Softmax,
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::config::variant_name(self))
    }
}

/// The `[loss]` section of a config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// `ce`, `logit_adjusted`, `balanced_softmax`, `cb_ce`, `cb_focal`, `ldam`, `lade` or
    /// `dot_regression` (features vs. class directions; use with `model.feature_bn_l2`).
    pub name: LossKind,
    /// τ of the logit-adjusted loss.
    pub tau: f64,
    /// β of the effective number (class-balanced weights; LDAM's deferred re-weighting).
    pub beta: f64,
    /// γ of the focal loss.
    pub gamma: f64,
    /// CB-Focal's form: `sigmoid` (Cui et al.'s code) or `softmax`.
    pub focal: FocalForm,
    /// LDAM's largest margin.
    pub ldam_max_margin: f64,
    /// LDAM's logit scale s (30 in Cao et al., for cosine logits: set `model.cosine = true`).
    pub ldam_scale: f64,
    /// From this 0-based epoch on, weight by effective number (LDAM-DRW; 0 = never).
    pub drw_epoch: usize,
    /// LADE's weight α of the regulariser.
    pub lade_alpha: f64,
    /// LADE's ReMINE penalty λ.
    pub lade_lambda: f64,
    /// Seesaw's mitigation exponent p (0.8 in the paper; 0 turns it off).
    pub seesaw_p: f64,
    /// Seesaw's compensation exponent q (2 in the paper; 0 turns it off).
    pub seesaw_q: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            name: LossKind::Ce,
            tau: 1.0,
            beta: 0.9999,
            gamma: 1.0,
            focal: FocalForm::Sigmoid,
            ldam_max_margin: 0.5,
            ldam_scale: 30.0,
            drw_epoch: 0,
            lade_alpha: 0.1,
            lade_lambda: 0.1,
            seesaw_p: 0.8,
            seesaw_q: 2.0,
        }
    }
}

/// A loss bound to a training set's class counts.
#[derive(Debug, Clone)]
pub struct Criterion {
    cfg: LossConfig,
    counts: Vec<f64>,
    log_prior: Vec<f32>,
    cb_weights: Vec<f32>,
    margins: Vec<f32>,
}

/// What a loss is computed from: the batch's logits, and for a loss on the feature itself
/// (dot regression) the features `[B, d]` and class directions `[d, C]` they came from.
#[derive(Clone)]
pub struct LossInputs {
    /// Logits `[B, C]`.
    pub logits: Tensor<2>,
    /// Features and class directions; the training step always passes them, a classifier-only
    /// stage (`rbl stage2`, whose losses are on logits) passes `None`.
    pub features: Option<(Tensor<2>, Tensor<2>)>,
    /// Images of each class seen so far in training, this batch's included (Seesaw's N); the
    /// training counts stand in where none are given.
    pub seen: Option<Vec<f64>>,
}

impl LossInputs {
    /// Logits alone, for losses on logits.
    pub fn logits(logits: Tensor<2>) -> LossInputs {
        LossInputs { logits, features: None, seen: None }
    }
}

impl Criterion {
    /// The loss of each image of the batch, `[B]`, for losses that are a plain mean over images
    /// (what UniMix's per-image λ weighs); `None` for the others (weighted means, LADE, DRW,
    /// dot regression).
    pub fn per_image(&self, inputs: &LossInputs, labels: &[i64]) -> Option<Tensor<1>> {
        let logits = inputs.logits.clone();
        let device = logits.device();
        let [b, c] = logits.dims();
        let y: Tensor<1, Int> = crate::transfer::upload_vec(labels.to_vec(), [b], &device);
        let log_prior = || -> Tensor<1> { crate::transfer::upload_vec(self.log_prior.clone(), [c], &device) };
        Some(match self.cfg.name {
            LossKind::Ce => cross_entropy_per_image(logits, y),
            LossKind::LogitAdjusted => cross_entropy_per_image(shift_by_prior(logits, log_prior(), self.cfg.tau), y),
            LossKind::BalancedSoftmax | LossKind::Bayias => cross_entropy_per_image(shift_by_prior(logits, log_prior(), 1.0), y),
            LossKind::Seesaw => {
                let seen = inputs.seen.as_deref().unwrap_or(&self.counts);
                cross_entropy_per_image(seesaw::seesaw_logits(logits, labels, seen, self.cfg.seesaw_p, self.cfg.seesaw_q), y)
            }
            _ => return None,
        })
    }

    /// Whether [`Self::per_image`] gives this loss (UniMix needs it).
    pub fn has_per_image(kind: LossKind) -> bool {
        matches!(kind, LossKind::Ce | LossKind::LogitAdjusted | LossKind::BalancedSoftmax | LossKind::Bayias | LossKind::Seesaw)
    }

    /// Whether the loss needs the accumulated class counts ([`LossInputs::seen`]).
    pub fn needs_seen_counts(&self) -> bool {
        self.cfg.name == LossKind::Seesaw
    }

    /// Binds `cfg` to the training counts.
    pub fn new(cfg: &LossConfig, counts: &[usize]) -> Result<Criterion> {
        let total: usize = counts.iter().sum();
        Ok(Criterion {
            cfg: cfg.clone(),
            counts: counts.iter().map(|&n| n as f64).collect(),
            log_prior: counts.iter().map(|&n| (n as f64 / total as f64).ln() as f32).collect(),
            cb_weights: class_balanced::effective_number_weights(counts, cfg.beta).into_iter().map(|w| w as f32).collect(),
            margins: ldam::ldam_margins(counts, cfg.ldam_max_margin).into_iter().map(|m| m as f32).collect(),
        })
    }

    /// The mean loss of a batch at 0-based `epoch`; `labels` also given on the host.
    pub fn forward(&self, inputs: &LossInputs, labels: &[i64], epoch: usize) -> Tensor<1> {
        let logits = inputs.logits.clone();
        let device = logits.device();
        let [b, c] = logits.dims();
        let y: Tensor<1, Int> = crate::transfer::upload_vec(labels.to_vec(), [b], &device);
        let vec1 = |v: Vec<f32>, d: &Device| -> Tensor<1> { crate::transfer::upload_vec(v, [c], d) };
        let per_image_weights = |w: &[f32]| -> Tensor<1> {
            crate::transfer::upload_vec(labels.iter().map(|&l| w[l as usize]).collect::<Vec<f32>>(), [b], &device)
        };
        match self.cfg.name {
            LossKind::Ce => cross_entropy(logits, y),
            LossKind::LogitAdjusted => cross_entropy(shift_by_prior(logits, vec1(self.log_prior.clone(), &device), self.cfg.tau), y),
            LossKind::BalancedSoftmax | LossKind::Bayias => {
                cross_entropy(shift_by_prior(logits, vec1(self.log_prior.clone(), &device), 1.0), y)
            }
            LossKind::CbCe => weighted_mean(cross_entropy_per_image(logits, y), per_image_weights(&self.cb_weights)),
            LossKind::CbFocal if self.cfg.focal == FocalForm::Softmax => {
                let ce = cross_entropy_per_image(logits, y);
                let focal = ce.clone().neg().exp().neg().add_scalar(1.0).powf_scalar(self.cfg.gamma) * ce;
                weighted_mean(focal, per_image_weights(&self.cb_weights))
            }
            LossKind::CbFocal => {
                let one_hot: Vec<f32> = (0..b * c).map(|k| (labels[k / c] as usize == k % c) as u8 as f32).collect();
                let one_hot: Tensor<2> = crate::transfer::upload_vec(one_hot, [b, c], &device);
                let per_image = sigmoid_focal::sigmoid_focal_per_image(logits, one_hot, self.cfg.gamma);
                (per_image * per_image_weights(&self.cb_weights)).sum().div_scalar(b as f32)
            }
            LossKind::Ldam => {
                let shift: Vec<f32> = (0..b * c).map(|k| if labels[k / c] as usize == k % c { self.margins[k % c] } else { 0.0 }).collect();
                let shifted = (logits - crate::transfer::upload_vec::<2, burn::tensor::Float, _>(shift, [b, c], &device))
                    .mul_scalar(self.cfg.ldam_scale);
                let per_image = cross_entropy_per_image(shifted, y);
                if self.cfg.drw_epoch > 0 && epoch >= self.cfg.drw_epoch {
                    weighted_mean(per_image, per_image_weights(&self.cb_weights))
                } else {
                    per_image.mean()
                }
            }
            LossKind::Lade => {
                let log_prior = vec1(self.log_prior.clone(), &device);
                let one_hot: Vec<f32> = (0..b * c).map(|k| (labels[k / c] as usize == k % c) as u8 as f32).collect();
                let one_hot: Tensor<2> = crate::transfer::upload_vec(one_hot, [b, c], &device);
                let pc = cross_entropy(shift_by_prior(logits.clone(), log_prior.clone(), 1.0), y);
                pc + lade::lade_regularizer(logits, one_hot, log_prior, self.cfg.lade_lambda).mul_scalar(self.cfg.lade_alpha)
            }
            LossKind::Seesaw => {
                let seen = inputs.seen.as_deref().unwrap_or(&self.counts);
                seesaw::seesaw(logits, labels, seen, self.cfg.seesaw_p, self.cfg.seesaw_q)
            }
            LossKind::DotRegression => {
                let (features, directions) =
                    inputs.features.clone().expect("dot regression is given the features (train_step passes them)");
                dot_regression::dot_regression(features, directions, y)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    const LOGITS: [f32; 6] = [2.0, 0.0, -1.0, 0.5, 0.5, 1.0];
    const LABELS: [i64; 2] = [0, 2];
    const COUNTS: [usize; 3] = [60, 30, 10];

    fn loss(cfg: LossConfig, counts: &[usize], epoch: usize) -> f64 {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(LOGITS.to_vec(), [2, 3]), &device);
        let v: f32 = Criterion::new(&cfg, counts).unwrap().forward(&LossInputs::logits(logits), &LABELS, epoch).into_scalar();
        v as f64
    }

    fn named(name: &str) -> LossConfig {
        LossConfig { name: serde_json::from_value(serde_json::Value::String(name.into())).unwrap(), ..Default::default() }
    }

    /// −log softmax(z)[y] in f64.
    fn ce_row(z: &[f64], y: usize) -> f64 {
        let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
        lse - z[y]
    }

    fn rows() -> [Vec<f64>; 2] {
        [LOGITS[..3].iter().map(|&v| v as f64).collect(), LOGITS[3..].iter().map(|&v| v as f64).collect()]
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
    }

    /// Bayias is Balanced Softmax up to a constant; each per-image loss averages to the loss,
    /// and UniMix's λ-weighted mixture is the f64 one.
    #[test]
    fn bayias_per_image_losses_and_the_unimix_mixture_by_hand() {
        close(loss(named("bayias"), &COUNTS, 0), loss(named("balanced_softmax"), &COUNTS, 0));
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(LOGITS.to_vec(), [2, 3]), &device);
        let inputs = LossInputs::logits(logits);
        for name in ["ce", "logit_adjusted", "balanced_softmax", "bayias", "seesaw"] {
            let c = Criterion::new(&named(name), &COUNTS).unwrap();
            let per: Vec<f32> = c.per_image(&inputs, &LABELS).unwrap().into_data().try_to_vec().unwrap();
            let mean: f32 = c.forward(&inputs, &LABELS, 0).into_scalar();
            close((per[0] + per[1]) as f64 / 2.0, mean as f64);
        }
        assert!(Criterion::new(&named("cb_ce"), &COUNTS).unwrap().per_image(&inputs, &LABELS).is_none());
        // λ·ℓ(y) + (1 − λ)·ℓ(y') per image, averaged: with Bayias, y' = [1, 0], λ = [0.3, 0.9].
        let c = Criterion::new(&named("bayias"), &COUNTS).unwrap();
        let [r0, r1] = rows();
        let lp: Vec<f64> = COUNTS.iter().map(|&n| (n as f64 / 100.0).ln()).collect();
        let shift = |r: &[f64]| r.iter().zip(&lp).map(|(z, p)| z + p).collect::<Vec<_>>();
        let (s0, s1) = (shift(&r0), shift(&r1));
        let want = (0.3 * ce_row(&s0, 0) + 0.7 * ce_row(&s0, 1) + 0.9 * ce_row(&s1, 2) + 0.1 * ce_row(&s1, 0)) / 2.0;
        let own: Vec<f32> = c.per_image(&inputs, &LABELS).unwrap().into_data().try_to_vec().unwrap();
        let partner: Vec<f32> = c.per_image(&inputs, &[1, 0]).unwrap().into_data().try_to_vec().unwrap();
        let got = (0.3 * own[0] as f64 + 0.7 * partner[0] as f64 + 0.9 * own[1] as f64 + 0.1 * partner[1] as f64) / 2.0;
        close(got, want);
    }

    #[test]
    fn cross_entropy_and_its_limits() {
        let [r0, r1] = rows();
        let ce = (ce_row(&r0, 0) + ce_row(&r1, 2)) / 2.0;
        close(loss(named("ce"), &COUNTS, 0), ce);
        // τ = 0 is plain cross-entropy; Balanced Softmax with equal counts is too.
        close(loss(LossConfig { tau: 0.0, ..named("logit_adjusted") }, &COUNTS, 0), ce);
        close(loss(named("balanced_softmax"), &[7, 7, 7], 0), ce);
        // CB with β = 0 weights every class 1; focal with γ = 0 is CB-CE.
        close(loss(LossConfig { beta: 0.0, ..named("cb_ce") }, &COUNTS, 0), ce);
        close(
            loss(LossConfig { gamma: 0.0, focal: FocalForm::Softmax, ..named("cb_focal") }, &COUNTS, 0),
            loss(named("cb_ce"), &COUNTS, 0),
        );
    }

    #[test]
    fn logit_adjusted_and_balanced_softmax_by_hand() {
        let [r0, r1] = rows();
        let lp: Vec<f64> = COUNTS.iter().map(|&n| (n as f64 / 100.0).ln()).collect();
        let shift = |r: &[f64], t: f64| r.iter().zip(&lp).map(|(z, p)| z + t * p).collect::<Vec<_>>();
        let la = |t: f64| (ce_row(&shift(&r0, t), 0) + ce_row(&shift(&r1, t), 2)) / 2.0;
        close(loss(LossConfig { tau: 0.5, ..named("logit_adjusted") }, &COUNTS, 0), la(0.5));
        close(loss(named("balanced_softmax"), &COUNTS, 0), la(1.0));
    }

    #[test]
    fn class_balanced_and_focal_by_hand() {
        let [r0, r1] = rows();
        let w = class_balanced::effective_number_weights(&COUNTS, 0.9999);
        let (l0, l1) = (ce_row(&r0, 0), ce_row(&r1, 2));
        close(loss(named("cb_ce"), &COUNTS, 0), (w[0] * l0 + w[2] * l1) / (w[0] + w[2]));
        let f = |l: f64, g: f64| (1.0 - (-l).exp()).powf(g) * l;
        let softmax_focal = LossConfig { gamma: 2.0, focal: FocalForm::Softmax, ..named("cb_focal") };
        close(loss(softmax_focal, &COUNTS, 0), (w[0] * f(l0, 2.0) + w[2] * f(l1, 2.0)) / (w[0] + w[2]));
    }

    #[test]
    fn sigmoid_focal_by_hand() {
        // Cui et al.: Σ_j w_y · mod_j · BCE_j over classes, summed over the batch, ÷ batch size;
        // BCE_j = −[y log σ(z) + (1 − y) log(1 − σ(z))], mod_j = exp(−γ y z − γ log(1 + e^−z)).
        let w = class_balanced::effective_number_weights(&COUNTS, 0.9999);
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        let term = |z: f64, y: f64, g: f64| {
            let bce = -(y * sig(z).ln() + (1.0 - y) * (1.0 - sig(z)).ln());
            (-g * y * z - g * (1.0 + (-z).exp()).ln()).exp() * bce
        };
        for g in [0.0, 1.0, 2.0] {
            let mut total = 0.0;
            for (i, &label) in LABELS.iter().enumerate() {
                let row = &LOGITS[i * 3..(i + 1) * 3];
                let s: f64 = row.iter().enumerate().map(|(j, &z)| term(z as f64, (j == label as usize) as u8 as f64, g)).sum();
                total += w[label as usize] * s;
            }
            close(loss(LossConfig { gamma: g, ..named("cb_focal") }, &COUNTS, 0), total / 2.0);
        }
    }

    #[test]
    fn ldam_and_deferred_reweighting_by_hand() {
        let [mut r0, mut r1] = rows();
        let m = ldam::ldam_margins(&COUNTS, 0.5);
        r0[0] -= m[0];
        r1[2] -= m[2];
        let s = 30.0;
        let sc = |r: &[f64]| r.iter().map(|v| v * s).collect::<Vec<_>>();
        let (l0, l1) = (ce_row(&sc(&r0), 0), ce_row(&sc(&r1), 2));
        let cfg = LossConfig { drw_epoch: 5, ..named("ldam") };
        close(loss(cfg.clone(), &COUNTS, 4), (l0 + l1) / 2.0);
        let w = class_balanced::effective_number_weights(&COUNTS, 0.9999);
        close(loss(cfg, &COUNTS, 5), (w[0] * l0 + w[2] * l1) / (w[0] + w[2]));
    }

    #[test]
    fn lade_by_hand() {
        let [r0, r1] = rows();
        let n = 100.0;
        let prior: Vec<f64> = COUNTS.iter().map(|&c| c as f64 / n).collect();
        let shifted = |r: &[f64]| r.iter().zip(&prior).map(|(z, p)| z + p.ln()).collect::<Vec<_>>();
        let pc = (ce_row(&shifted(&r0), 0) + ce_row(&shifted(&r1), 2)) / 2.0;
        let rows = [r0, r1];
        let labels = [0usize, 2];
        let (lambda, alpha, c) = (0.1, 0.1, 3.0f64);
        let mut reg = 0.0;
        for k in 0..3 {
            let count = labels.iter().filter(|&&y| y == k).count() as f64;
            let first: f64 = rows.iter().zip(&labels).filter(|(_, y)| **y == k).map(|(r, _)| r[k]).sum::<f64>() / (count + 1e-8);
            let lse = rows.iter().map(|r| (r[k] - prior[k].ln() - c.ln()).exp()).sum::<f64>().ln();
            let second = lse - 2f64.ln();
            reg -= prior[k] * (first - second - lambda * second * second);
        }
        close(loss(named("lade"), &COUNTS, 0), pc + alpha * reg);
    }

    #[test]
    fn unknown_loss_is_named() {
        let e = crate::ExperimentConfig::from_toml_str("[loss]\nname = \"hinge\"\n", "t", &[]).unwrap_err().to_string();
        assert!(e.contains("loss.name") && e.contains("hinge"), "{e}");
    }
}
