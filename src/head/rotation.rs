//! The learned orthogonal rotation of RBL: R = B0 · exp(A − Aᵀ).
//!
//! A is an unconstrained d×d parameter initialised to 0, so plain SGD on A keeps R exactly in
//! SO(d) (the exponential of a skew-symmetric matrix is a rotation). B0 is a fixed random
//! Haar-orthogonal matrix, as in the paper's code (geotorch's "expm" parametrisation starts
//! from a random orthogonal base), so that R at initialisation is a random rotation.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::head::expm::expm_f64;
use crate::head::host_linalg::{Mat, random_orthonormal};

/// exp(X) in f64 on the CPU (burn flex), for backends without f64 (wgpu): the d×d generator
/// crosses to the CPU and back inside the autodiff graph. For d = 256 that is ~0.7 GFLOP per
/// step, small beside a batch of ResNet-32; in f32 on the GPU the squarings would leave R
/// orthogonal only to ~1e-4.
fn expm_f64_on_cpu(x: Tensor<2>) -> Tensor<2> {
    let device = x.device();
    let cpu = if device.is_autodiff() { Device::flex().autodiff() } else { Device::flex() };
    expm_f64(x.to_device(&cpu)).to_device(&device)
}

/// R = B0 · exp(A − Aᵀ).
#[derive(Module, Debug)]
pub struct Rotation {
    /// The free parameter A (d × d).
    a: Param<Tensor<2>>,
    /// The fixed base B0 (d × d); rebuilt from the seed.
    base: Tensor<2>,
    /// Compute exp in f64 on this device (backends that have f64); otherwise in f64 on the CPU.
    wide: bool,
}

impl Rotation {
    /// A rotation of R^dim with A = 0 and a base drawn from `seed`; `wide` computes the
    /// exponential in f64 on the tensors' own device (use it where the backend has f64),
    /// otherwise it goes to the CPU for it.
    pub fn new(dim: usize, seed: u64, wide: bool, device: &Device) -> Rotation {
        let b0 = random_orthonormal(dim, dim, seed);
        Rotation {
            a: Param::from_tensor(Tensor::zeros([dim, dim], device)),
            base: Tensor::from_data(TensorData::new(b0.to_f32(), [dim, dim]), device),
            wide,
        }
    }

    /// The rotation matrix R (d × d).
    pub fn matrix(&self) -> Tensor<2> {
        let a = self.a.val();
        let skew = a.clone() - a.transpose();
        let e = if self.wide { expm_f64(skew) } else { expm_f64_on_cpu(skew) };
        self.base.clone().matmul(e)
    }

    /// The fixed base B0 (d × d).
    pub fn base(&self) -> Tensor<2> {
        self.base.clone()
    }

    /// The rotation with base `base` instead (weights imported from a file).
    pub fn with_base(self, base: Tensor<2>) -> Rotation {
        Rotation { base, ..self }
    }

    /// The parameter A, to read its gradient.
    pub fn generator_param(&self) -> Tensor<2> {
        self.a.val()
    }

    /// max |RᵀR − I| of R as stored in f32, computed in f64 on the host so the check itself
    /// adds no rounding: how far R is from orthogonal.
    pub fn orthogonality_error(&self) -> f64 {
        let r = Mat::from_tensor(self.matrix().detach());
        let d = r.rows;
        r.t().matmul(&r).add_scaled(&Mat::eye(d), -1.0).data.iter().fold(0.0, |m, x| m.max(x.abs()))
    }
}
