//! The dot-regression loss of the "Fixed" ETF paper (Yang et al., NeurIPS 2022): pull each
//! feature onto its class direction without pushing it away from the others, which a fixed
//! frame makes unnecessary:
//! ½ · mean_i (h_iᵀ w_{y_i} − ‖w_{y_i}‖ ‖h_i‖)² / ‖h_i‖, with ‖h_i‖ held constant (detached).

use burn::tensor::{Int, Tensor};

/// The loss for features `h` `[B, d]`, class directions `w` `[d, C]` and labels `[B]`.
pub fn dot_regression(h: Tensor<2>, w: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = h.dims();
    let w_y = w.transpose().select(0, labels); // [B, d]
    let h_norm = h.clone().powi_scalar(2).sum_dim(1).sqrt().detach(); // [B, 1]
    let w_norm = w_y.clone().powi_scalar(2).sum_dim(1).sqrt(); // [B, 1]
    let dot = (h * w_y).sum_dim(1);
    let residual = dot - w_norm * h_norm.clone();
    (residual.powi_scalar(2) / h_norm.clamp_min(1e-12)).reshape([b]).mean().mul_scalar(0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn by_hand() {
        let device = Device::flex();
        // Two 2-d features, three class directions (columns of w).
        let h = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, 4.0, 1.0, 0.0], [2, 2]), &device);
        let w = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0, -1.0, 0.0, 2.0, 0.0], [2, 3]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
        let got: f32 = dot_regression(h, w, y).into_scalar();
        // Image 0: h = (3,4), ‖h‖ = 5, w_0 = (1,0): (3 − 5)² / 5 = 0.8.
        // Image 1: h = (1,0), ‖h‖ = 1, w_1 = (0,2): (0 − 2)² / 1 = 4.
        assert!((got - 0.5 * (0.8 + 4.0) / 2.0).abs() < 1e-6, "{got}");
        // A feature on its class direction costs nothing.
        let h = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 7.0], [1, 2]), &device);
        let w = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 1.0], [2, 1]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64], [1]), &device);
        let zero: f32 = dot_regression(h, w, y).into_scalar();
        assert!(zero.abs() < 1e-6);
    }
}
