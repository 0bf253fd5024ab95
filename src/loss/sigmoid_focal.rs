//! The sigmoid focal loss of Cui et al. (CVPR 2019, "Class-Balanced Loss Based on Effective
//! Number of Samples"), as their code computes it: every class is a one-vs-all sigmoid, and
//!
//!   FL_ij = mod_ij · BCE_ij,  BCE_ij = −[y_ij log σ(z_ij) + (1 − y_ij) log(1 − σ(z_ij))],
//!   mod_ij = exp(−γ·y_ij·z_ij − γ·log(1 + e^(−z_ij))) = (1 − p_t)^γ,
//!
//! p_t = σ(z) for the true class and 1 − σ(z) for the others. The class-balanced weighting and
//! the division by the batch size are the caller's (`LossKind::CbFocal`).

use burn::tensor::Tensor;
use burn::tensor::activation::softplus;

/// Σ_j FL_ij for each image: logits `[B, C]`, one-hot labels `[B, C]` → `[B]`.
pub fn sigmoid_focal_per_image(logits: Tensor<2>, one_hot: Tensor<2>, gamma: f64) -> Tensor<1> {
    let [b, _] = logits.dims();
    // BCE with logits, stably: softplus(z) − y·z (= −log(1 − σ(z)) for y = 0, −log σ(z) for y = 1).
    let bce = softplus(logits.clone(), 1.0) - one_hot.clone() * logits.clone();
    let per_class = if gamma == 0.0 {
        bce
    } else {
        // log(1 + e^−z) = softplus(−z).
        let modulator = (one_hot * logits.clone() + softplus(logits.neg(), 1.0)).mul_scalar(-gamma).exp();
        modulator * bce
    };
    per_class.sum_dim(1).reshape([b])
}
