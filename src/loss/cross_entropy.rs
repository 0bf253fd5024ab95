//! Softmax cross-entropy, the loss RBL trains with.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor};

/// Mean of −log softmax(logits)[y] over the batch.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let logp = log_softmax(logits, 1);
    logp.gather(1, labels.reshape([b, 1])).mean().neg()
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
        let got: f32 = cross_entropy(logits, labels).into_scalar();
        let l0 = -(2f64.exp() / (2f64.exp() + 2.0)).ln();
        let l1 = 3f64.ln();
        assert!((got as f64 - (l0 + l1) / 2.0).abs() < 1e-6, "{got}");
    }
}
