//! Supervised contrastive learning for long-tailed data: KCL, TSC and HCL.
//!
//! Every step sees two augmented views of each image ([`crate::data::loader`] draws the second
//! from its own stream). The backbone's feature f goes through a projection MLP to the unit
//! sphere, z = g(f) ([`projection`]), and the 2B projections are contrasted with one another
//! (and with TSC's targets) by the weighted supervised contrastive loss ([`supcon`], masks in
//! [`masks`]). What the classifier learns alongside depends on the method:
//!
//! - KCL, TSC: L = L_con + L_cls(head(f̄)), the classifier a probe on the detached feature f̄ of
//!   the first view (it learns but teaches the backbone nothing), so that each epoch's scores
//!   mean something; stage 2 (`rbl stage2 --method crt`) then trains the classifier the
//!   methods report, on the frozen feature with class-balanced sampling.
//! - HCL: L = α·L_con + (1 − α)·L_cls(head(f)), α = 1 − (t/T)² at epoch t of T
//!   ([`curriculum_weight`]): the feature first, the classifier more and more.
//!
//! The reference recipes: KCL and TSC (LTH14/targeted-supcon) train ImageNet-LT with a MoCo
//! momentum encoder and a 65,536-key queue (positives and negatives come from the queue); their
//! CIFAR code contrasts within the batch, as rbl does on every dataset. rbl has no momentum
//! encoder or queue: on ImageNet-LT its positives are drawn from the batch (256 images, 512
//! views), not from 65,536 keys — say so beside any number compared with the paper's. KCL's own
//! code (bingykang/BalFeat) takes its k positives by top-k over the queue's 0/1 class mask, in
//! effect k by queue position; rbl draws them uniformly, as targeted-supcon's reimplementation does.

pub mod config;
pub mod hungarian;
pub mod masks;
pub mod projection;
pub mod supcon;
pub mod targets;

use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use config::{ContrastiveConfig, ContrastiveKind};
use masks::{TargetColumns, contrast_masks};
use projection::Projection;

use crate::error::Result;

/// HCL's curriculum: the contrastive branch's weight α = 1 − (epoch/epochs)² at 0-based
/// `epoch` (1 in the first epoch, falling as a parabola towards 0).
pub fn curriculum_weight(epoch: usize, epochs: usize) -> f64 {
    1.0 - (epoch as f64 / epochs.max(1) as f64).powi(2)
}

/// Seed offset of TSC's targets and starting centroids (apart from every other stream).
const TARGET_SEED: u64 = 0x75C0_7A26;

/// What a contrastive run needs in its steps besides the network: its settings and TSC's
/// targets.
pub struct ContrastiveTraining {
    /// The settings.
    pub cfg: ContrastiveConfig,
    /// Epochs of the run (HCL's curriculum).
    epochs: usize,
    /// TSC: the targets as host rows and on the training device.
    targets: Option<(Vec<Vec<f64>>, Tensor<2>)>,
}

/// What one contrastive step computed.
pub struct ContrastiveStep {
    /// L_con of the batch.
    pub loss: Tensor<1>,
    /// The projection head, with TSC's centroids moved by this batch.
    pub projection: Projection,
}

impl ContrastiveTraining {
    /// The step state of a run with `cfg` (`None` when no method is set); TSC's targets are
    /// placed here (a few seconds for more classes than the projection has dimensions + 1).
    pub fn new(cfg: &ContrastiveConfig, classes: usize, seed: u64, epochs: usize, device: &Device) -> Result<Option<Self>> {
        if !cfg.enabled() {
            return Ok(None);
        }
        let targets = if cfg.method == ContrastiveKind::Tsc {
            let rows = targets::uniform_targets(classes, cfg.projection_dim, seed ^ TARGET_SEED)?;
            let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
            let t = crate::transfer::upload_vec(flat, [classes, cfg.projection_dim], device);
            Some((rows, t))
        } else {
            None
        };
        Ok(Some(ContrastiveTraining { cfg: cfg.clone(), epochs, targets }))
    }

    /// The projection head a network of this config carries (`classes` for TSC's centroids).
    pub fn projection_for(cfg: &ContrastiveConfig, dim: usize, classes: usize, seed: u64, device: &Device) -> Option<Projection> {
        cfg.enabled().then(|| {
            let centroids = (cfg.method == ContrastiveKind::Tsc).then_some((classes, seed ^ TARGET_SEED ^ 1));
            Projection::new(dim, cfg.projection_dim, centroids, device)
        })
    }

    /// Weights of (L_con, L_cls) in the step's loss at 0-based `epoch`.
    pub fn weights(&self, epoch: usize) -> (f64, f64) {
        match self.cfg.method {
            ContrastiveKind::Hcl => {
                let a = curriculum_weight(epoch, self.epochs);
                (a, 1.0 - a)
            }
            _ => (1.0, 1.0),
        }
    }

    /// L_con of the projections `z` `[2B, p]` (first views, then second) of a batch labelled
    /// `labels`; `pair_seed` draws the k positives. TSC first moves the centroids by the first
    /// views and assigns the targets, as the reference does before its loss.
    pub fn loss(&self, projection: Projection, z: Tensor<2>, labels: &[i64], pair_seed: u64) -> ContrastiveStep {
        let mut rng = ChaCha8Rng::seed_from_u64(pair_seed);
        let b = labels.len();
        let Some((rows, targets)) = &self.targets else {
            let masks = contrast_masks(labels, self.cfg.positives, None, &mut rng);
            let loss = supcon::supcon_loss(z.clone(), z, &masks, self.cfg.temperature);
            return ContrastiveStep { loss, projection };
        };
        let mut centroids = projection.centroid_rows().expect("a TSC network holds centroids");
        let first: Vec<f32> = crate::transfer::read_f32(z.clone().detach().narrow(0, 0, b));
        targets::update_centroids(&mut centroids, &first, labels, self.cfg.centroid_momentum);
        let target_of_class = targets::assign(&centroids, rows);
        let columns = TargetColumns { target_of_class: &target_of_class, repeat: self.cfg.target_repeat, weight: self.cfg.target_weight };
        let masks = contrast_masks(labels, self.cfg.positives, Some(columns), &mut rng);
        let all = Tensor::cat(vec![z.clone(), targets.clone()], 0);
        let loss = supcon::supcon_loss(z, all, &masks, self.cfg.temperature);
        ContrastiveStep { loss, projection: projection.with_centroids(&centroids) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curriculum_is_a_parabola_from_one() {
        assert_eq!(curriculum_weight(0, 200), 1.0);
        assert!((curriculum_weight(100, 200) - 0.75).abs() < 1e-15);
        assert!((curriculum_weight(199, 200) - (1.0 - 0.995f64.powi(2))).abs() < 1e-15);
        // Falling, and faster towards the end.
        let w: Vec<f64> = (0..10).map(|e| curriculum_weight(e, 10)).collect();
        assert!(w.windows(3).all(|x| x[0] > x[1] && (x[0] - x[1]) < (x[1] - x[2])), "{w:?}");
    }

    #[test]
    fn tsc_moves_centroids_and_puts_targets_among_the_columns() {
        let device = Device::flex();
        let cfg = ContrastiveConfig { method: ContrastiveKind::Tsc, projection_dim: 4, positives: 1, ..Default::default() };
        let run = ContrastiveTraining::new(&cfg, 3, 0, 10, &device).unwrap().unwrap();
        let proj = ContrastiveTraining::projection_for(&cfg, 6, 3, 0, &device).unwrap();
        let before = proj.centroid_rows().unwrap();
        let z = crate::head::l2_normalize(Tensor::<2>::random([4, 4], burn::tensor::Distribution::Normal(0.0, 1.0), &device), 1);
        let step = run.loss(proj, z.clone(), &[0, 2], 9);
        let after = step.projection.centroid_rows().unwrap();
        assert_ne!(after[0], before[0], "class 0 is in the batch");
        assert_eq!(after[1], before[1], "class 1 is not");
        assert_ne!(after[2], before[2]);
        // The loss is the f64 formula's with the targets as columns (checked in supcon); here,
        // that it differs from the loss without them.
        let kcl = ContrastiveTraining::new(&ContrastiveConfig { method: ContrastiveKind::Kcl, ..cfg.clone() }, 3, 0, 10, &device)
            .unwrap()
            .unwrap();
        let plain = ContrastiveTraining::projection_for(&cfg, 6, 3, 0, &device).unwrap();
        let without = kcl.loss(plain, z, &[0, 2], 9).loss;
        let (a, b) = (step.loss.into_scalar::<f32>(), without.into_scalar::<f32>());
        assert!(a.is_finite() && b.is_finite() && (a - b).abs() > 1e-4, "{a} vs {b}");
    }
}
