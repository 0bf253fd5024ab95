//! The learned orthogonal rotation of RBL: R = B0 · exp(A − Aᵀ).
//!
//! A is an unconstrained d×d parameter initialised to 0, so plain SGD on A keeps R exactly in
//! SO(d) (the exponential of a skew-symmetric matrix is a rotation). B0 is a fixed random
//! Haar-orthogonal matrix, as in the paper's code (geotorch's "expm" parametrisation starts
//! from a random orthogonal base), so that R at initialisation is a random rotation.
//!
//! The generator (`model.rotation_generator`): the paper writes exp(A − Aᵀ) (`full`); the
//! released code, through geotorch, uses exp(L − Lᵀ) with L = tril(A, −1) (`lower`, the
//! default). Both reach every rotation, but under SGD they differ by a factor of 2: with
//! G = ∂loss/∂(skew), the full form's gradient on A is G − Gᵀ and moves the skew matrix by
//! 2·lr·(G − Gᵀ), the lower form's moves it by lr·(G − Gᵀ).

use serde::{Deserialize, Serialize};

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use crate::head::expm::{SKEW_F32_MEASURED_NORM, expm_f64, expm_skew_f32, norm1};
use crate::head::host_linalg::{Mat, random_orthonormal};

/// Which part of A generates the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationGenerator {
    /// exp(L − Lᵀ), L the strictly lower triangle of A (the released code, via geotorch).
    #[default]
    Lower,
    /// exp(A − Aᵀ) (the paper's formula).
    Full,
}

/// R = B0 · exp(A − Aᵀ), or B0 · exp(L − Lᵀ) with L = tril(A, −1).
#[derive(Module, Debug)]
pub struct Rotation {
    /// The free parameter A (d × d).
    a: Param<Tensor<2>>,
    /// The fixed base B0 (d × d); rebuilt from the seed.
    base: Tensor<2>,
    /// Compute exp in f64 on this device (backends that have f64: the CPU); otherwise in f32 on
    /// it ([`expm_skew_f32`]: no host round trip on a GPU).
    wide: bool,
    /// Which part of A is the generator (chosen by the config, not a weight).
    #[module(skip)]
    generator: RotationGenerator,
}

impl Rotation {
    /// A rotation of R^dim with A = 0 and a base drawn from `seed`; `wide` computes the
    /// exponential in f64 (use it where the backend has f64), otherwise in f32, both on the
    /// tensors' own device.
    pub fn new(dim: usize, seed: u64, wide: bool, device: &Device) -> Rotation {
        let b0 = random_orthonormal(dim, dim, seed);
        Rotation {
            a: Param::from_tensor(Tensor::zeros([dim, dim], device)),
            base: crate::transfer::upload_vec(b0.to_f32(), [dim, dim], device),
            wide,
            generator: RotationGenerator::Lower,
        }
    }

    /// The rotation with `generator` as its parametrisation.
    pub fn with_generator(self, generator: RotationGenerator) -> Rotation {
        Rotation { generator, ..self }
    }

    /// The rotation matrix R (d × d).
    pub fn matrix(&self) -> Tensor<2> {
        let a = match self.generator {
            RotationGenerator::Full => self.a.val(),
            RotationGenerator::Lower => self.a.val().tril(-1),
        };
        let skew = a.clone() - a.transpose();
        let e = if self.wide { expm_f64(skew) } else { expm_skew_f32(skew) };
        rbl_ops::matmul_rows(self.base.clone(), e)
    }

    /// The generator in the paper's form: G with R = B0·exp(G − Gᵀ) (A itself for `full`,
    /// tril(A, −1) for `lower`). What an export writes as `head.a`, so that a PyTorch module
    /// computing exp(a − aᵀ) gets this rotation whichever form trained it.
    pub fn full_form_generator(&self) -> Tensor<2> {
        match self.generator {
            RotationGenerator::Full => self.a.val(),
            RotationGenerator::Lower => self.a.val().tril(-1),
        }
    }

    /// This rotation after A was loaded from a file in the paper's form (exp(A − Aᵀ)): for
    /// `lower`, A becomes tril(A − Aᵀ, −1), which generates the same rotation.
    pub fn from_full_form(self) -> Rotation {
        match self.generator {
            RotationGenerator::Full => self,
            RotationGenerator::Lower => {
                // A stays a leaf of the autodiff graph (a trainable parameter), not a result.
                let a = self.a.map(|a| {
                    let grad = a.is_require_grad();
                    let lower = (a.clone() - a.transpose()).tril(-1).detach();
                    if grad { lower.require_grad() } else { lower }
                });
                Rotation { a, ..self }
            }
        }
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

    /// On the f32 path, a warning when the generator's 1-norm has grown past the range
    /// [`expm_skew_f32`] was measured accurate over (one scalar read; once per epoch). None on
    /// the f64 path, or within the range.
    pub fn f32_range_warning(&self) -> Option<String> {
        if self.wide {
            return None;
        }
        let a = self.full_form_generator();
        let norm = norm1(&(a.clone() - a.transpose()));
        (norm > SKEW_F32_MEASURED_NORM).then(|| {
            format!(
                "warning: the rotation generator's 1-norm is {norm:.0}, past the {SKEW_F32_MEASURED_NORM:.0} up to which its f32 \
                 exponential was measured accurate; R may be off exp(A − Aᵀ) (its orthogonality error is still logged)"
            )
        })
    }

    /// max |RᵀR − I| of R as stored in f32, computed in f64 on the host so the check itself
    /// adds no rounding: how far R is from orthogonal.
    pub fn orthogonality_error(&self) -> f64 {
        let r = Mat::from_tensor(self.matrix().detach());
        let d = r.rows;
        r.t().matmul(&r).add_scaled(&Mat::eye(d), -1.0).data.iter().fold(0.0, |m, x| m.max(x.abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn with_a(generator: RotationGenerator, a: Tensor<2>, device: &Device) -> Rotation {
        let r = Rotation::new(6, 9, true, device).with_generator(generator);
        Rotation { a: Param::from_tensor(a), ..r }
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn the_lower_form_uses_the_strict_lower_triangle_only() {
        let device = Device::flex();
        let a = Tensor::<2>::random([6, 6], Distribution::Normal(0.0, 0.3), &device);
        // An A with nothing below the diagonal generates the identity: R = B0.
        let upper = with_a(RotationGenerator::Lower, a.clone().triu(0), &device);
        assert_eq!(values(upper.matrix()), values(upper.base()));
        // tril(A − Aᵀ, −1) under `lower` is exactly A under `full`: the same skew matrix.
        let full = with_a(RotationGenerator::Full, a.clone(), &device);
        let lower = with_a(RotationGenerator::Lower, (a.clone() - a.transpose()).tril(-1), &device);
        assert_eq!(values(full.matrix()), values(lower.matrix()));
    }

    #[test]
    fn the_full_forms_gradient_moves_the_generator_twice_as_far() {
        // With G = ∂loss/∂(skew): ∂loss/∂A is G − Gᵀ for `full` and tril(G − Gᵀ, −1) for
        // `lower`. One SGD step then changes skew = A − Aᵀ by 2·lr·(G − Gᵀ) against lr·(G − Gᵀ).
        let device = Device::flex().autodiff();
        let a = Tensor::<2>::random([6, 6], Distribution::Normal(0.0, 0.3), &device);
        let w = Tensor::<2>::random([6, 6], Distribution::Normal(0.0, 1.0), &device);
        // At the same point: A for `full`, tril(A − Aᵀ, −1) for `lower` (the same skew matrix).
        let grad = |generator, a: Tensor<2>| {
            let r = with_a(generator, a.detach().require_grad(), &device);
            let grads = (r.matrix() * w.clone()).sum().backward();
            r.a.val().grad(&grads).unwrap()
        };
        let gf = grad(RotationGenerator::Full, a.clone());
        let gl = grad(RotationGenerator::Lower, (a.clone() - a.transpose()).tril(-1));
        let skew_step = |g: burn::tensor::Tensor<2>| values(g.clone() - g.transpose());
        for (f, l) in skew_step(gf).iter().zip(skew_step(gl)) {
            assert!((f - 2.0 * l).abs() < 1e-5 * (1.0 + f.abs()), "{f} vs 2·{l}");
        }
    }

    #[test]
    fn the_f32_path_warns_only_past_its_measured_range() {
        let device = Device::flex();
        let r = Rotation::new(8, 3, false, &device).with_generator(RotationGenerator::Full);
        assert_eq!(r.f32_range_warning(), None, "A = 0");
        let big = Tensor::<2>::ones([8, 8], &device).triu(1).mul_scalar(100.0);
        let wide = Rotation { a: Param::from_tensor(big.clone()), ..Rotation::new(8, 3, true, &device) };
        assert_eq!(wide.f32_range_warning(), None, "the f64 path has no such range");
        let r = Rotation { a: Param::from_tensor(big), ..r };
        let warning = r.f32_range_warning().expect("‖A − Aᵀ‖₁ = 700");
        assert!(warning.contains("700"), "{warning}");
    }
}
