//! The matrix exponential for burn tensors, with gradients.
//!
//! burn has no `matrix_exp`. This one uses scaling and squaring: X is scaled by 2^−s so its
//! 1-norm is at most 1/2, exp is summed as a degree-12 Taylor polynomial (Paterson–Stockmeyer,
//! 5 matmuls; the truncation error is below 0.5^13/13! ≈ 2e-14, far under f32 rounding), then
//! squared s times.
//! Every step is a matmul, so burn's autodiff differentiates the polynomial exactly, which is
//! the Fréchet derivative of exp to within the truncation error (the tests check it against
//! central differences). A dedicated backward (the block identity d exp(X)[G] = top-right
//! block of exp([[Xᵀ, G], [0, Xᵀ]])) would save memory, not accuracy. The products go through
//! [`matmul_rows`]: on the CPU split by rows over the kernel pool (flex runs each on one
//! thread), with the bits of burn's `matmul`.

use burn::tensor::{FloatDType, Tensor};
use rbl_ops::matmul_rows;

/// Taylor degree of the scaled polynomial.
const DEGREE: usize = 12;
/// Largest 1-norm fed to the polynomial.
const THETA: f64 = 0.5;

/// Squarings of the f32 path: X is always scaled by 2^−8, so the polynomial's argument has
/// 1-norm ≤ 1/2 up to ‖X‖₁ = 128 (a 200-epoch run ends near 13), and beyond it a skew matrix's
/// spectral radius, well under its 1-norm, keeps the polynomial accurate (measured to 400).
const SKEW_F32_SQUARINGS: i32 = 8;

/// Largest ‖X‖₁ at which [`expm_skew_f32`] was measured accurate (relative error ≤ 1e-5).
pub const SKEW_F32_MEASURED_NORM: f64 = 400.0;

/// exp(X) computed in f64 and returned in f32; differentiable.
///
/// Squaring doubles the rounding error s times, so in f32 a rotation generator of norm 50
/// comes out orthogonal only to ~1e-5. In f64 the result is orthogonal to f32 rounding
/// whatever the norm. Backends without f64 (wgpu) use [`expm_skew_f32`] instead.
pub fn expm_f64(x: Tensor<2>) -> Tensor<2> {
    expm(x.cast(FloatDType::F64)).cast(FloatDType::F32)
}

/// exp(X) for a skew-symmetric X (a rotation) in f32 on X's own device, with no host read:
/// the backend for GPUs, which have no f64 and where a read per step would stall the queue.
///
/// A fixed scaling (2^−8, [`SKEW_F32_SQUARINGS`]) replaces the norm-dependent one, whose
/// choice needs ‖X‖ on the host. Its eight squarings grow the f32 rounding (~1e-4 off
/// orthogonal at ‖X‖₁ = 13), so one Newton–Schulz step, Q ← Q(3I − QᵀQ)/2, follows: it maps a
/// near-orthogonal Q to the nearest orthogonal matrix to second order (‖QᵀQ − I‖ from ε to
/// ~ε²), and its derivative at an orthogonal Q is the identity on the tangent space {QK: K
/// skew}, where every derivative of exp(X) lies, so the gradient is exp's own to first order.
/// Measured at d = 256 against an f64 reference for ‖X‖₁ from 0.01 to 400: within 3e-6
/// relative, ‖RᵀR − I‖ ≤ 1.3e-6 (the tests hold it to 1e-5). Cost: 13 d×d matmuls forward.
pub fn expm_skew_f32(x: Tensor<2>) -> Tensor<2> {
    let [n, m] = x.dims();
    assert_eq!(n, m, "expm needs a square matrix, got {n}×{m}");
    let device = x.device();
    let eye = Tensor::<2>::eye(n, &device).cast(x.dtype());
    let mut q = taylor_paterson_stockmeyer(x.mul_scalar(0.5f64.powi(SKEW_F32_SQUARINGS)), eye.clone());
    for _ in 0..SKEW_F32_SQUARINGS {
        q = matmul_rows(q.clone(), q);
    }
    let gram = matmul_rows(q.clone().transpose(), q.clone());
    matmul_rows(q, eye.mul_scalar(1.5) - gram.mul_scalar(0.5))
}

/// exp(X) for a square matrix X, in X's precision; differentiable.
pub fn expm(x: Tensor<2>) -> Tensor<2> {
    let [n, m] = x.dims();
    assert_eq!(n, m, "expm needs a square matrix, got {n}×{m}");
    let norm = norm1(&x);
    expm_with_norm(x, norm)
}

/// ‖X‖₁, the largest column sum of |X| (one device→host read): what the scaling is chosen by.
pub fn norm1(x: &Tensor<2>) -> f64 {
    let norm = crate::transfer::read_scalar(x.clone().detach().abs().sum_dim(0).max());
    norm as f64
}

/// exp(X) when the 1-norm of X is already known (saves a device→host read).
pub fn expm_with_norm(x: Tensor<2>, norm1: f64) -> Tensor<2> {
    let n = x.dims()[0];
    let device = x.device();
    let squarings = if norm1 > THETA { (norm1 / THETA).log2().ceil() as i32 } else { 0 };
    let xs = if squarings > 0 { x.mul_scalar(0.5f64.powi(squarings)) } else { x };
    let eye = Tensor::<2>::eye(n, &device).cast(xs.dtype());
    let mut acc = taylor_paterson_stockmeyer(xs, eye);
    for _ in 0..squarings {
        acc = matmul_rows(acc.clone(), acc);
    }
    acc
}

/// Σ_{k ≤ 12} X^k / k! by Paterson–Stockmeyer in blocks of 4: with X², X³, X⁴ (3 matmuls),
/// p = B₀ + X⁴(B₁ + X⁴·B₂), each B a combination of I, X, X², X³ (and X⁴ in B₂): 5 matmuls where
/// Horner's rule takes 12, and the backward pass saves as many again. Same polynomial, so the
/// same truncation error.
fn taylor_paterson_stockmeyer(x: Tensor<2>, eye: Tensor<2>) -> Tensor<2> {
    const _: () = assert!(DEGREE == 12, "the blocks below are written for degree 12");
    let c = |k: i32| 1.0 / (1..=k).map(f64::from).product::<f64>();
    let x2 = matmul_rows(x.clone(), x.clone());
    let x3 = matmul_rows(x2.clone(), x.clone());
    let x4 = matmul_rows(x2.clone(), x2.clone());
    let block = |j: i32| {
        eye.clone().mul_scalar(c(4 * j))
            + x.clone().mul_scalar(c(4 * j + 1))
            + x2.clone().mul_scalar(c(4 * j + 2))
            + x3.clone().mul_scalar(c(4 * j + 3))
    };
    let b2 = block(2) + x4.clone().mul_scalar(c(12));
    block(0) + matmul_rows(x4.clone(), block(1) + matmul_rows(x4, b2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::host_linalg::{Mat, expm_reference};
    use burn::tensor::{Device, TensorData};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn to_tensor(m: &Mat, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(m.to_f32(), [m.rows, m.cols]), device)
    }

    fn to_mat(t: Tensor<2>) -> Mat {
        Mat::from_tensor(t)
    }

    fn random_skew(n: usize, norm: f64, seed: u64) -> Mat {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let a = Mat::gaussian(n, n, &mut rng);
        let s = a.add_scaled(&a.t(), -1.0);
        s.scale(norm / s.frobenius())
    }

    #[test]
    fn known_values() {
        let device = Device::flex();
        let t = 1.3f64;
        let x = Mat { rows: 2, cols: 2, data: vec![0.0, -t, t, 0.0] };
        let e = to_mat(expm(to_tensor(&x, &device)));
        let want = [t.cos(), -t.sin(), t.sin(), t.cos()];
        for (a, b) in e.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let zero = to_mat(expm(Tensor::zeros([3, 3], &device)));
        assert_eq!(zero, Mat::eye(3));
        // exp of a diagonal matrix is the exp of its entries.
        let d = Mat { rows: 2, cols: 2, data: vec![1.0, 0.0, 0.0, -2.0] };
        let e = to_mat(expm(to_tensor(&d, &device)));
        assert!((e.at(0, 0) - 1f64.exp()).abs() < 1e-5 && (e.at(1, 1) - (-2f64).exp()).abs() < 1e-6);
    }

    #[test]
    fn matches_reference_and_is_orthogonal_on_random_skew_matrices() {
        let device = Device::flex();
        for (i, norm) in [0.01, 0.5, 2.0, 5.0, 10.0].into_iter().enumerate() {
            for n in [4, 32, 64] {
                let x = random_skew(n, norm, i as u64 * 100 + n as u64);
                let want = expm_reference(&x);
                let got = to_mat(expm_f64(to_tensor(&x, &device)));
                let rel = got.add_scaled(&want, -1.0).frobenius() / want.frobenius();
                assert!(rel < 1e-6, "n={n} norm={norm}: relative error {rel}");
                let got32 = to_mat(expm(to_tensor(&x, &device)));
                let rel32 = got32.add_scaled(&want, -1.0).frobenius() / want.frobenius();
                assert!(rel32 < 1e-5, "f32 path, n={n} norm={norm}: relative error {rel32}");
                let ortho = got.t().matmul(&got).add_scaled(&Mat::eye(n), -1.0).data.iter().fold(0f64, |m, x| m.max(x.abs()));
                assert!(ortho < 1e-5, "n={n} norm={norm}: RᵀR − I = {ortho}");
            }
        }
    }

    #[test]
    fn the_f32_device_path_is_accurate_and_orthogonal_up_to_large_norms() {
        let device = Device::flex();
        let n = 64;
        for (i, norm1) in [0.0, 0.01, 1.0, 13.0, 50.0, 128.0, SKEW_F32_MEASURED_NORM].into_iter().enumerate() {
            let x = random_skew(n, 1.0, 40 + i as u64);
            let x = x.scale(norm1 / x.norm1().max(1e-300));
            let want = expm_reference(&x);
            let got = to_mat(expm_skew_f32(to_tensor(&x, &device)));
            let rel = got.add_scaled(&want, -1.0).frobenius() / want.frobenius();
            assert!(rel < 1e-5, "‖X‖₁ = {norm1}: relative error {rel}");
            let ortho = got.t().matmul(&got).add_scaled(&Mat::eye(n), -1.0).data.iter().fold(0f64, |m, x| m.max(x.abs()));
            assert!(ortho < 1e-5, "‖X‖₁ = {norm1}: RᵀR − I = {ortho}");
        }
    }

    #[test]
    fn the_f32_device_paths_gradient_is_exps() {
        // d/dA sum(W ⊙ exp(A − Aᵀ)) through the f32 path against the f64 path's (checked
        // against central differences below), at a generator norm where the Newton–Schulz step
        // acts. Through A − Aᵀ, as the rotation uses it: the Newton–Schulz step keeps skew
        // directions of X (tangent to the rotations) and drops symmetric ones, which the
        // rotation never takes.
        let device = Device::flex().autodiff();
        let n = 24;
        let x = random_skew(n, 1.0, 11);
        let x = x.scale(13.0 / x.norm1());
        let w = random_skew(n, 3.0, 12).add_scaled(&Mat::eye(n), 1.0);
        let grad = |f: fn(Tensor<2>) -> Tensor<2>| {
            let a = to_tensor(&x.scale(0.5), &device).require_grad();
            let loss = (f(a.clone() - a.clone().transpose()) * to_tensor(&w, &device)).sum();
            to_mat(a.grad(&loss.backward()).unwrap())
        };
        let (g32, g64) = (grad(expm_skew_f32), grad(expm_f64));
        let rel = g32.add_scaled(&g64, -1.0).frobenius() / g64.frobenius();
        assert!(rel < 1e-4, "gradient of the f32 path off by {rel} (relative)");
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // d/dX sum(W ⊙ exp(X)) against central differences in f64 of the reference.
        let device = Device::flex().autodiff();
        let n = 5;
        let x = random_skew(n, 1.5, 9);
        let w = random_skew(n, 3.0, 10).add_scaled(&Mat::eye(n), 1.0);
        let xt = to_tensor(&x, &device).require_grad();
        let loss = (expm_f64(xt.clone()) * to_tensor(&w, &device)).sum();
        let g = to_mat(xt.grad(&loss.backward()).unwrap());
        let f = |m: &Mat| expm_reference(m).data.iter().zip(&w.data).map(|(a, b)| a * b).sum::<f64>();
        let h = 1e-6;
        for idx in [0, 3, 7, 12, 24] {
            let mut p = x.clone();
            p.data[idx] += h;
            let mut q = x.clone();
            q.data[idx] -= h;
            let fd = (f(&p) - f(&q)) / (2.0 * h);
            assert!((g.data[idx] - fd).abs() < 1e-3 * (1.0 + fd.abs()), "entry {idx}: autodiff {} vs fd {fd}", g.data[idx]);
        }
    }
}
