//! Softmax cross-entropy, the loss RBL trains with, and its class-weighted form.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean of −log softmax(logits)[y] over the batch.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let logp = log_softmax(logits, 1);
    logp.gather(1, labels.reshape([b, 1])).mean().neg()
}

/// Per-image −log softmax(logits)[y], shape `[B]`.
pub fn cross_entropy_per_image(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    log_softmax(logits, 1).gather(1, labels.reshape([b, 1])).reshape([b]).neg()
}

/// Σ w_i·ℓ_i / Σ w_i: PyTorch's `cross_entropy(weight=...)` reduction, with `weights` the
/// per-image weight w_{y_i}.
pub fn weighted_mean(per_image: Tensor<1>, weights: Tensor<1>) -> Tensor<1> {
    (per_image * weights.clone()).sum() / weights.sum()
}

/// Mean −log softmax(z)[y] of row-major host logits `[N, C]`, in f64: the loss of an evaluation
/// pass, computed from the logits it already reads back rather than by another device sync.
pub fn mean_cross_entropy(logits: &[f32], labels: &[u32], classes: usize) -> f64 {
    let total: f64 = logits
        .chunks_exact(classes)
        .zip(labels)
        .map(|(row, &y)| {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
            lse - row[y as usize] as f64
        })
        .sum();
    total / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn matches_hand_computed_values() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], [2, 3]), &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
        let got: f32 = cross_entropy(logits.clone(), labels.clone()).into_scalar();
        let l0 = -(2f64.exp() / (2f64.exp() + 2.0)).ln(); // 0.2395
        let l1 = 3f64.ln(); // 1.0986
        assert!((got as f64 - (l0 + l1) / 2.0).abs() < 1e-6, "{got}");
        let w = Tensor::<1>::from_data(TensorData::new(vec![3.0f32, 1.0], [2]), &device);
        let got: f32 = weighted_mean(cross_entropy_per_image(logits, labels), w).into_scalar();
        assert!((got as f64 - (3.0 * l0 + l1) / 4.0).abs() < 1e-6, "{got}");
    }

    #[test]
    fn host_mean_cross_entropy_by_hand() {
        let l = mean_cross_entropy(&[0.0, 0.0, 2.0, 0.0], &[1, 0], 2);
        let want = (2f64.ln() + (1.0 + (-2f64).exp()).ln()) / 2.0;
        assert!((l - want).abs() < 1e-12);
    }
}
