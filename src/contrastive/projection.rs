//! The projection head of the contrastive methods: z = normalise(W₂·relu(W₁·f + b₁) + b₂), a
//! two-layer MLP from the d-d feature to the p-d unit sphere the contrastive loss works on
//! (SupCon's "mlp" head, as in the KCL/TSC reference code). Only training uses it: the
//! classifier and stage 2 read the feature f before it, and exports leave it out.
//!
//! TSC keeps its class centroids here too, c_y ← normalise(m·c_y + (1 − m)·normalise(mean of the
//! batch's z of class y)), as parameters without gradients: they are the run's state, so they
//! go into every checkpoint with the weights and a resumed run matches one that never stopped.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::head::l2_normalize;

/// The MLP (and TSC's centroids).
#[derive(Module, Debug)]
pub struct Projection {
    /// d → d, followed by ReLU.
    pub hidden: Linear,
    /// d → p.
    pub out: Linear,
    /// TSC: the class centroids `[C, p]` on the sphere (no gradient; updated after each step).
    pub centroids: Option<Param<Tensor<2>>>,
}

impl Projection {
    /// A fresh head from `dim`-d features to the `out_dim`-d sphere; with `centroids_for =
    /// Some((classes, seed))` it also holds TSC's centroids, started at random unit vectors
    /// drawn from `seed` (as the reference starts them).
    pub fn new(dim: usize, out_dim: usize, centroids_for: Option<(usize, u64)>, device: &Device) -> Projection {
        let centroids = centroids_for.map(|(classes, seed)| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut v: Vec<f32> = (0..classes * out_dim).map(|_| StandardNormal.sample(&mut rng)).collect();
            for row in v.chunks_mut(out_dim) {
                let n = row.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
                row.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
            }
            Param::from_tensor(crate::transfer::upload_vec(v, [classes, out_dim], device)).set_require_grad(false)
        });
        Projection { hidden: LinearConfig::new(dim, dim).init(device), out: LinearConfig::new(dim, out_dim).init(device), centroids }
    }

    /// Features `[N, d]` to unit vectors `[N, p]`.
    pub fn forward(&self, features: Tensor<2>) -> Tensor<2> {
        let h = burn::tensor::activation::relu(self.hidden.forward(features));
        l2_normalize(self.out.forward(h), 1)
    }

    /// TSC's centroids as host rows (`None` without them).
    pub fn centroid_rows(&self) -> Option<Vec<Vec<f64>>> {
        let c = self.centroids.as_ref()?.val();
        let [_, p] = c.dims();
        let v = crate::transfer::read_f32(c);
        Some(v.chunks(p).map(|r| r.iter().map(|&x| x as f64).collect()).collect())
    }

    /// The head with its centroids replaced by `rows` (same parameter, so checkpoints and the
    /// optimiser see one identity throughout).
    pub fn with_centroids(mut self, rows: &[Vec<f64>]) -> Projection {
        if let Some(old) = self.centroids.take() {
            let device = old.val().device();
            let p = rows.first().map_or(0, Vec::len);
            let flat: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
            let t = crate::transfer::upload_vec(flat, [rows.len(), p], &device);
            self.centroids = Some(Param::initialized(old.id, t).set_require_grad(false));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_unit_vectors_and_centroids_round_trip() {
        let device = Device::flex();
        let p = Projection::new(6, 4, Some((3, 7)), &device);
        let z = p.forward(Tensor::<2>::random([5, 6], burn::tensor::Distribution::Normal(0.0, 1.0), &device));
        let norms = z.powi_scalar(2).sum_dim(1).into_data().try_to_vec::<f32>().unwrap();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
        let rows = p.centroid_rows().unwrap();
        assert_eq!((rows.len(), rows[0].len()), (3, 4));
        assert!(rows.iter().all(|r| (r.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-6));
        let id = p.centroids.as_ref().unwrap().id;
        let moved: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().map(|x| -x).collect()).collect();
        let p = p.with_centroids(&moved);
        assert_eq!(p.centroids.as_ref().unwrap().id, id, "the same parameter");
        assert_eq!(p.centroid_rows().unwrap(), moved);
        // The same seed starts the same centroids.
        assert_eq!(Projection::new(6, 4, Some((3, 7)), &device).centroid_rows(), Some(rows));
    }
}
