//! Training-mode batch normalisation over (batch, height, width) on NCHW f32 data, forward and
//! backward, each in two passes: per-channel sums (channels in parallel), then one elementwise
//! pass (images in parallel).
//!
//! burn's default `batch_norm_train` and its backward are compositions of about twenty tensor
//! ops, each a full pass with its own allocation, several of them permuting copies (the
//! per-channel means go through a swap of the batch and channel axes); in the CIFAR ResNet they
//! cost as much as the convolutions. Sums are accumulated in f64: with 131,072 values per
//! channel (batch 128 at 32×32) an f32 running sum loses the low digits of the mean.

use rayon::prelude::*;

/// The layout of one activation: `batch` images of `channels` planes of `plane` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnGeometry {
    /// Images.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Values per channel per image (height · width).
    pub plane: usize,
}

impl BnGeometry {
    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }
    /// The values of channel `c`, image by image.
    fn planes<'a>(&self, data: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (plane, stride) = (self.plane, self.channels * self.plane);
        (0..self.batch).map(move |b| &data[b * stride + c * plane..][..plane])
    }
}

/// Per-channel batch mean and biased variance (what normalisation divides by).
fn moments(x: &[f32], g: &BnGeometry) -> (Vec<f32>, Vec<f32>) {
    (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = g.planes(x, c).map(|p| p.iter().map(|&v| v as f64).sum::<f64>()).sum();
            let mean = sum / g.count();
            let sq: f64 = g.planes(x, c).map(|p| p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()).sum();
            (mean as f32, (sq / g.count()) as f32)
        })
        .unzip()
}

/// y = γ·(x − μ)/√(σ² + ε) + β with the batch's own μ and σ²; returns (y, μ, σ²).
pub fn batch_norm_train_forward(x: &[f32], gamma: &[f32], beta: &[f32], epsilon: f64, g: &BnGeometry) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.batch * g.channels * g.plane, "batch norm: input size");
    assert_eq!((gamma.len(), beta.len()), (g.channels, g.channels), "batch norm: parameter size");
    let (mean, var) = moments(x, g);
    // y = x·scale + shift per channel.
    let scale: Vec<f32> = (0..g.channels).map(|c| gamma[c] / ((var[c] as f64 + epsilon).sqrt() as f32)).collect();
    let shift: Vec<f32> = (0..g.channels).map(|c| beta[c] - mean[c] * scale[c]).collect();
    let mut y = vec![0.0f32; x.len()];
    let image = g.channels * g.plane;
    y.par_chunks_mut(image).zip(x.par_chunks(image)).for_each(|(yb, xb)| {
        for c in 0..g.channels {
            let (s, t) = (scale[c], shift[c]);
            for (o, &v) in yb[c * g.plane..][..g.plane].iter_mut().zip(&xb[c * g.plane..][..g.plane]) {
                *o = v * s + t;
            }
        }
    });
    (y, mean, var)
}

/// Gradients (dx, dγ, dβ) of [`batch_norm_train_forward`]'s output, given dy and the μ, σ² the
/// forward pass returned:
/// dβ = Σ dy, dγ = Σ dy·x̂, dx = γ/√(σ² + ε) · (dy − dβ/N − x̂·dγ/N), x̂ = (x − μ)/√(σ² + ε).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f64,
    g: &BnGeometry,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), dy.len(), "batch norm backward: gradient size");
    let inv_std: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + epsilon).sqrt()).collect();
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let (m, s) = (mean[c] as f64, inv_std[c]);
            let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
            for (xp, dp) in g.planes(x, c).zip(g.planes(dy, c)) {
                for (&xv, &d) in xp.iter().zip(dp) {
                    sum_dy += d as f64;
                    sum_dy_xhat += d as f64 * (xv as f64 - m) * s;
                }
            }
            (sum_dy_xhat as f32, sum_dy as f32)
        })
        .unzip();
    let n = g.count();
    // dx = a·dy + b·x + c per channel, the three folded from the formula above.
    let coef: Vec<(f32, f32, f32)> = (0..g.channels)
        .map(|c| {
            let k = gamma[c] as f64 * inv_std[c];
            let (mb, mg) = (dbeta[c] as f64 / n, dgamma[c] as f64 / n);
            let b = -k * mg * inv_std[c];
            (k as f32, b as f32, (-k * mb - b * mean[c] as f64) as f32)
        })
        .collect();
    let mut dx = vec![0.0f32; x.len()];
    let image = g.channels * g.plane;
    dx.par_chunks_mut(image).zip(x.par_chunks(image).zip(dy.par_chunks(image))).for_each(|(out, (xb, db))| {
        for (c, &(a, b, k)) in coef.iter().enumerate() {
            let range = c * g.plane..(c + 1) * g.plane;
            for ((o, &xv), &d) in out[range.clone()].iter_mut().zip(&xb[range.clone()]).zip(&db[range]) {
                *o = a * d + b * xv + k;
            }
        }
    });
    (dx, dgamma, dbeta)
}
