//! The learned orthogonal rotation of RBL: R = B0 · exp(A − Aᵀ).
//!
//! A is an unconstrained d×d parameter initialised to 0, so plain SGD on A keeps R exactly in
//! SO(d) (the exponential of a skew-symmetric matrix is a rotation). B0 is a fixed random
//! Haar-orthogonal matrix, as in the paper's code (geotorch's "expm" parametrisation starts
//! from a random orthogonal base), so that R at initialisation is a random rotation.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::head::expm::{expm, expm_f64};
use crate::head::host_linalg::{Mat, random_orthonormal};

/// R = B0 · exp(A − Aᵀ).
#[derive(Module, Debug)]
pub struct Rotation {
    /// The free parameter A (d × d).
    a: Param<Tensor<2>>,
    /// The fixed base B0 (d × d); rebuilt from the seed.
    base: Tensor<2>,
    /// Compute exp in f64 (backends that have it) rather than f32.
    wide: bool,
}

impl Rotation {
    /// A rotation of R^dim with A = 0 and a base drawn from `seed`; `wide` computes the
    /// exponential in f64 (use it where the backend has f64).
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
        let e = if self.wide { expm_f64(skew) } else { expm(skew) };
        self.base.clone().matmul(e)
    }

    /// The parameter A, to read its gradient.
    pub fn generator_param(&self) -> Tensor<2> {
        self.a.val()
    }

    /// max |RᵀR − I| of R as stored in f32, computed in f64 on the host so the check itself
    /// adds no rounding: how far R is from orthogonal.
    pub fn orthogonality_error(&self) -> f64 {
        let r = self.matrix().detach();
        let d = r.dims()[0];
        let data: Vec<f32> = r.into_data().try_to_vec().expect("f32 rotation");
        let r = Mat { rows: d, cols: d, data: data.into_iter().map(f64::from).collect() };
        r.t().matmul(&r).add_scaled(&Mat::eye(d), -1.0).data.iter().fold(0.0, |m, x| m.max(x.abs()))
    }
}
