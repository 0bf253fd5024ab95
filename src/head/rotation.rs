//! The learned orthogonal rotation of RBL: R = B0 · exp(A − Aᵀ).
//!
//! A is an unconstrained d×d parameter initialised to 0, so plain SGD on A keeps R exactly in
//! SO(d) (the exponential of a skew-symmetric matrix is a rotation). B0 is a fixed random
//! Haar-orthogonal matrix, as in the paper's code (geotorch's "expm" parametrisation starts
//! from a random orthogonal base), so that R at initialisation is a random rotation.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::head::expm::expm;
use crate::head::host_linalg::random_orthonormal;

/// R = B0 · exp(A − Aᵀ).
#[derive(Module, Debug)]
pub struct Rotation {
    /// The free parameter A (d × d).
    a: Param<Tensor<2>>,
    /// The fixed base B0 (d × d); rebuilt from the seed.
    base: Tensor<2>,
}

impl Rotation {
    /// A rotation of R^dim with A = 0 and a base drawn from `seed`.
    pub fn new(dim: usize, seed: u64, device: &Device) -> Rotation {
        let b0 = random_orthonormal(dim, dim, seed);
        Rotation {
            a: Param::from_tensor(Tensor::zeros([dim, dim], device)),
            base: Tensor::from_data(TensorData::new(b0.to_f32(), [dim, dim]), device),
        }
    }

    /// The rotation matrix R (d × d).
    pub fn matrix(&self) -> Tensor<2> {
        let a = self.a.val();
        let skew = a.clone() - a.transpose();
        self.base.clone().matmul(expm(skew))
    }

    /// The parameter A, to read its gradient.
    pub fn generator_param(&self) -> Tensor<2> {
        self.a.val()
    }

    /// max |RᵀR − I|: how far R is from orthogonal (should stay at f32 rounding).
    pub fn orthogonality_error(&self) -> f32 {
        let r = self.matrix().detach();
        let d = r.dims()[0];
        let err = r.clone().transpose().matmul(r) - Tensor::eye(d, &self.base.device());
        err.abs().max().into_scalar()
    }
}
