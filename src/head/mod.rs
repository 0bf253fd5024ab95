//! Classifier heads: features `[B, d]` to logits `[B, C]`.
//!
//! - `linear`: a learned affine classifier, the cross-entropy baseline.
//! - `etf`: the fixed simplex ETF, the "Fixed" method of Yang et al. (2022).
//! - `rbl`: the ETF behind a learned rotation R = B0 · exp(A − Aᵀ) (Gao et al., 2023).

pub mod etf;
pub mod expm;
pub mod host_linalg;
pub mod rotation;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::Result;
pub use rotation::Rotation;
use serde::{Deserialize, Serialize};

/// Which classifier (`model.head`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum HeadKind {
    /// Learned linear classifier.
    Linear,
    /// Fixed simplex ETF.
    Etf,
    /// Simplex ETF with a learned rotation.
    Rbl,
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::config::variant_name(self))
    }
}

/// The classifier. Exactly one of `linear` / `frame` is set; `rotation` only for RBL.
#[derive(Module, Debug)]
pub struct Head {
    /// Cosine logits: features and class directions L2-normalised (LDAM's "normed linear").
    cosine: bool,
    linear: Option<Linear>,
    /// The fixed frame M (d × C); rebuilt from the seed, so not stored in checkpoints.
    frame: Option<Tensor<2>>,
    rotation: Option<Rotation>,
}

impl Head {
    /// Builds a head for `dim`-d features and `classes` classes; the frame and rotation base
    /// come from `seed`. `wide` computes RBL's exponential in f64 (CPU).
    pub fn new(kind: HeadKind, dim: usize, classes: usize, seed: u64, wide: bool, device: &Device) -> Result<Head> {
        let frame = |device: &Device| -> Result<Tensor<2>> {
            let m = etf::simplex_etf(dim, classes, seed ^ 0xE7F)?;
            Ok(Tensor::from_data(TensorData::new(m.to_f32(), [dim, classes]), device))
        };
        Ok(match kind {
            HeadKind::Linear => {
                Head { cosine: false, linear: Some(LinearConfig::new(dim, classes).init(device)), frame: None, rotation: None }
            }
            HeadKind::Etf => Head { cosine: false, linear: None, frame: Some(frame(device)?), rotation: None },
            HeadKind::Rbl => Head {
                cosine: false,
                linear: None,
                frame: Some(frame(device)?),
                rotation: Some(Rotation::new(dim, seed ^ 0xB0, wide, device)),
            },
        })
    }

    /// Makes the logits cosines: features and class directions are L2-normalised (the linear
    /// head loses its bias). The ETF's columns already have unit norm.
    pub fn with_cosine(mut self, cosine: bool) -> Head {
        self.cosine = cosine;
        self
    }

    /// Logits `[B, C]` = fᵀ W (+ b) for the linear head, Mᵀ f for Fixed, Mᵀ R f for RBL.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        self.logits_with(features, self.class_directions())
    }

    /// Logits from directions already computed by [`Self::class_directions`]: a pass over many
    /// batches computes them (and so RBL's matrix exponential) once, not once per batch.
    pub fn logits_with(&self, features: Tensor<2>, directions: Tensor<2>) -> Tensor<2> {
        let features = if self.cosine { l2_normalize(features, 1) } else { features };
        let logits = features.matmul(directions);
        match self.linear.as_ref().and_then(|l| l.bias.as_ref()).filter(|_| !self.cosine) {
            Some(bias) => {
                let c = logits.dims()[1];
                logits + bias.val().reshape([1, c])
            }
            None => logits,
        }
    }

    /// The learned weight `[d, C]` of a linear head.
    pub fn linear_weight(&self) -> Option<Tensor<2>> {
        self.linear.as_ref().map(|l| l.weight.val())
    }

    /// The rotation, for RBL heads.
    pub fn rotation(&self) -> Option<&Rotation> {
        self.rotation.as_ref()
    }

    /// The fixed frame M (d × C) of Fixed and RBL heads.
    pub fn frame(&self) -> Option<Tensor<2>> {
        self.frame.clone()
    }

    /// The head with its constants (frame M, rotation base B0) replaced where given: weights
    /// imported from a file bring the frame they were trained against. Shapes must match
    /// (the caller checks).
    pub fn with_constants(mut self, frame: Option<Tensor<2>>, base: Option<Tensor<2>>) -> Head {
        if let (Some(f), Some(_)) = (frame, &self.frame) {
            self.frame = Some(f);
        }
        if let (Some(b), Some(r)) = (base, self.rotation.take()) {
            self.rotation = Some(r.with_base(b));
        }
        self
    }

    /// The classifier as a `d × C` matrix of class directions (after R for RBL; unit columns
    /// for a cosine linear head), without bias.
    pub fn class_directions(&self) -> Tensor<2> {
        if let Some(linear) = &self.linear {
            let w = linear.weight.val();
            return if self.cosine { l2_normalize(w, 0) } else { w };
        }
        let frame = self.frame.clone().expect("ETF head has a frame");
        match &self.rotation {
            Some(r) => r.matrix().transpose().matmul(frame),
            None => frame,
        }
    }
}

/// x / max(‖x‖₂, 1e-12) along `dim`.
pub fn l2_normalize(x: Tensor<2>, dim: usize) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(dim).sqrt().clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn cosine_logits_are_bounded_by_one() {
        let device = Device::flex();
        for kind in [HeadKind::Linear, HeadKind::Etf, HeadKind::Rbl] {
            let head = Head::new(kind, 16, 10, 4, true, &device).unwrap().with_cosine(true);
            let f = Tensor::<2>::random([6, 16], Distribution::Normal(0.0, 5.0), &device);
            let max: f32 = head.forward(f).abs().max().into_scalar();
            assert!(max <= 1.0 + 1e-5 && max > 0.1, "{kind:?}: {max}");
        }
    }

    #[test]
    fn heads_give_logit_shapes_and_gradients_reach_a() {
        let device = Device::flex().autodiff();
        let _seeded = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(1);
        for kind in [HeadKind::Linear, HeadKind::Etf, HeadKind::Rbl] {
            let head = Head::new(kind, 16, 10, 4, true, &device).unwrap();
            let f = Tensor::<2>::random([5, 16], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let logits = head.forward(f);
            assert_eq!(logits.dims(), [5, 10]);
            let grads = logits.powi_scalar(2).sum().backward();
            if let Some(r) = head.rotation() {
                let g = r.generator_param().grad(&grads).expect("gradient reaches A");
                let gsum: f32 = g.abs().sum().into_scalar();
                assert!(gsum > 0.0, "zero gradient on A");
            }
        }
        // The linear head's logits are burn's own Linear layer's: F·W + b.
        let head = Head::new(HeadKind::Linear, 16, 10, 4, true, &Device::flex()).unwrap();
        let f = Tensor::<2>::random([5, 16], Distribution::Normal(0.0, 1.0), &Device::flex());
        let ours: Vec<f32> = head.forward(f.clone()).into_data().try_to_vec().unwrap();
        let burns: Vec<f32> = head.linear.as_ref().unwrap().forward(f).into_data().try_to_vec().unwrap();
        assert!(ours.iter().zip(&burns).all(|(a, b)| (a - b).abs() < 1e-5), "{ours:?} vs {burns:?}");
        // The ETF head's logits are exactly F·M: nothing is learned.
        let head = Head::new(HeadKind::Etf, 9, 10, 4, true, &Device::flex()).unwrap();
        assert_eq!(head.num_params(), 0);
    }

    #[test]
    fn fixed_frame_and_rbl_at_init_differ_only_by_the_base_rotation() {
        let device = Device::flex();
        let rbl = Head::new(HeadKind::Rbl, 12, 10, 4, true, &device).unwrap();
        let r = rbl.rotation().unwrap().matrix();
        let rtr: Vec<f32> = r.clone().transpose().matmul(r).into_data().try_to_vec().unwrap();
        for i in 0..12 {
            for j in 0..12 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((rtr[i * 12 + j] - want).abs() < 1e-5);
            }
        }
    }
}
