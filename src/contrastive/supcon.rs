//! The supervised contrastive loss with weighted columns, which KCL, TSC and HCL's branch all
//! are (Khosla et al. 2020; Kang et al. 2021; Li et al. 2022):
//!
//!   s_ij = a_i·c_j / τ,   ℓ_ij = s_ij − log Σ_k W_ik exp(s_ik),
//!   L = (1/A) Σ_i −(1/n_i) Σ_j P_ij ℓ_ij,
//!
//! with anchors a (the batch's projections), columns c (the projections, then TSC's targets)
//! and W, P, n from [`super::masks`]. With W = 1 off the diagonal, P the same-class indicator
//! and n its row sums it is SupCon's L^sup_out. The reference's `temperature / base_temperature`
//! factor is 1 in every recipe (both 0.07) and is left out.

use burn::tensor::Tensor;

use super::masks::ContrastMasks;

/// The loss of anchors `[A, p]` against columns `[K, p]` (same device) under `masks`.
pub fn supcon_loss(anchors: Tensor<2>, columns: Tensor<2>, masks: &ContrastMasks, temperature: f64) -> Tensor<1> {
    let device = anchors.device();
    let (a, k) = (masks.anchors, masks.columns);
    let host = |v: &Vec<f32>, shape: [usize; 2]| -> Tensor<2> { crate::transfer::upload_vec(v.clone(), shape, &device) };
    let (w, p, n) = (host(&masks.weight, [a, k]), host(&masks.positive, [a, k]), host(&masks.count, [a, 1]));
    let s = anchors.matmul(columns.transpose()).div_scalar(temperature);
    // log Σ_k W_ik exp(s_ik), shifted by the row maximum (a constant for the gradient).
    let m = s.clone().detach().max_dim(1);
    let lse = (s.clone() - m.clone()).exp().mul(w).sum_dim(1).log() + m;
    let l = s - lse;
    let per_anchor = (l * p).sum_dim(1).div(n).neg();
    per_anchor.mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contrastive::masks::{TargetColumns, contrast_masks};
    use burn::module::{Module, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::Device;
    use burn::tensor::TensorData;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The formula, written out in f64.
    fn reference(anchors: &[Vec<f64>], columns: &[Vec<f64>], m: &ContrastMasks, tau: f64) -> f64 {
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let mut total = 0.0;
        for (i, a) in anchors.iter().enumerate() {
            let s: Vec<f64> = columns.iter().map(|c| dot(a, c) / tau).collect();
            let denom: f64 = s.iter().enumerate().map(|(j, x)| m.weight[i * m.columns + j] as f64 * x.exp()).sum();
            let pos: f64 = s.iter().enumerate().map(|(j, x)| m.positive[i * m.columns + j] as f64 * (x - denom.ln())).sum();
            total += -pos / m.count[i] as f64;
        }
        total / anchors.len() as f64
    }

    fn unit_rows(rng: &mut ChaCha8Rng, n: usize, p: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                let v: Vec<f64> = (0..p).map(|_| rng.random_range(-1.0..1.0)).collect();
                let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                v.into_iter().map(|x| x / norm).collect()
            })
            .collect()
    }

    fn tensor(rows: &[Vec<f64>], device: &Device) -> Tensor<2> {
        let p = rows[0].len();
        Tensor::from_data(TensorData::new(rows.iter().flatten().map(|&x| x as f32).collect::<Vec<f32>>(), [rows.len(), p]), device)
    }

    fn value(t: Tensor<1>) -> f64 {
        t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
    }

    #[derive(Module, Debug)]
    struct Z {
        z: Param<Tensor<2>>,
    }

    #[test]
    fn matches_the_formula_in_f64_for_supcon_kcl_and_tsc() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let labels = [0i64, 1, 0, 2, 1, 0];
        let (b, p, classes) = (labels.len(), 5, 3);
        let z = unit_rows(&mut rng, 2 * b, p);
        let targets = unit_rows(&mut rng, classes, p);
        let map = [1usize, 2, 0];
        let device = Device::flex();
        for (k, with_targets, tau) in [(0, false, 0.07), (1, false, 0.1), (6, false, 0.5), (1, true, 0.07), (0, true, 0.2)] {
            let t = with_targets.then_some(TargetColumns { target_of_class: &map, repeat: 2, weight: 0.2 });
            let masks = contrast_masks(&labels, k, t, &mut rng);
            let mut columns = z.clone();
            if with_targets {
                columns.extend(targets.iter().cloned());
            }
            let want = reference(&z, &columns, &masks, tau);
            let got = value(supcon_loss(tensor(&z, &device), tensor(&columns, &device), &masks, tau));
            assert!((got - want).abs() < 2e-5 * want.abs().max(1.0), "k={k} targets={with_targets}: {got} vs {want}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let labels = [0i64, 1, 1, 0];
        let (b, p) = (labels.len(), 4);
        let z = unit_rows(&mut rng, 2 * b, p);
        let targets = unit_rows(&mut rng, 2, p);
        let map = [1usize, 0];
        let masks = contrast_masks(&labels, 1, Some(TargetColumns { target_of_class: &map, repeat: 1, weight: 0.5 }), &mut rng);
        let tau = 0.5;
        let device = Device::flex().autodiff();
        let model = Z { z: Param::from_tensor(tensor(&z, &device)) };
        let columns = Tensor::cat(vec![model.z.val(), tensor(&targets, &device)], 0);
        let loss = supcon_loss(model.z.val(), columns, &masks, tau);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let g = grads.get::<2>(model.z.id).unwrap().into_data().convert::<f64>().try_to_vec::<f64>().unwrap();
        // The anchors are the projections themselves: a change moves rows and columns alike.
        let f = |zz: &[Vec<f64>]| {
            let mut cols = zz.to_vec();
            cols.extend(targets.iter().cloned());
            reference(zz, &cols, &masks, tau)
        };
        let h = 1e-6;
        for r in 0..2 * b {
            for c in 0..p {
                let (mut up, mut down) = (z.clone(), z.clone());
                up[r][c] += h;
                down[r][c] -= h;
                let numeric = (f(&up) - f(&down)) / (2.0 * h);
                let analytic = g[r * p + c];
                assert!((numeric - analytic).abs() < 1e-3 * numeric.abs().max(1.0), "({r},{c}): {analytic} vs {numeric}");
            }
        }
    }
}
