//! TSC's class targets: C points spread uniformly on the unit sphere of the projection, and the
//! online choice of which class goes to which.
//!
//! Uniform means minimising the uniformity loss L_u = (1/C) Σ_i log Σ_j exp(t_i·t_j / 0.07)
//! over unit vectors (the reference's `target_generation.py`; rbl's optimiser sums over j ≠ i,
//! see [`spread_on_sphere`]). For C ≤ p + 1 its minimum is the
//! regular simplex — every pair at cosine −1/(C−1), the largest equal separation there is —
//! which is exactly the simplex ETF rbl already builds ([`crate::head::etf`]); for more classes
//! than that (ImageNet-LT's 1000 in 128-d) the points are found by Adam on L_u from random
//! starts, as the reference finds them.
//!
//! Assignment: each class keeps a centroid c_y on the sphere, moved after every step towards
//! the normalised mean of the batch's projections of class y: c_y ← normalise(m·c_y + (1 − m)·
//! normalise(mean z)). The classes then take the targets that maximise Σ_y cos(c_y, t_σ(y))
//! over permutations σ ([`super::hungarian`]), so the classes' order on the sphere follows
//! where the features already are.

use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::Result;
use crate::head::etf::simplex_etf;
use crate::head::l2_normalize;

/// Temperature of the uniformity loss the targets minimise (the reference's).
pub const UNIFORMITY_TEMPERATURE: f64 = 0.07;

/// Adam steps for more targets than a simplex holds.
const SPREAD_STEPS: usize = 1000;

/// `classes` unit vectors of dimension `dim`, uniform on the sphere in the sense above; drawn
/// from `seed` (the simplex's orientation, or the random start).
pub fn uniform_targets(classes: usize, dim: usize, seed: u64) -> Result<Vec<Vec<f64>>> {
    if classes >= 2 && classes <= dim + 1 {
        let m = simplex_etf(dim, classes, seed)?;
        return Ok((0..classes).map(|j| (0..dim).map(|i| m.at(i, j)).collect()).collect());
    }
    Ok(spread_on_sphere(classes, dim, seed, SPREAD_STEPS))
}

/// The uniformity loss of unit rows `t`, in f64.
pub fn uniformity_loss(t: &[Vec<f64>]) -> f64 {
    let c = t.len();
    let mut total = 0.0;
    for a in t {
        let s: Vec<f64> = t.iter().map(|b| dot(a, b) / UNIFORMITY_TEMPERATURE).collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        total += m + s.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    }
    total / c as f64
}

#[derive(Module, Debug)]
struct Points {
    x: Param<Tensor<2>>,
}

/// Minimises the uniformity loss (over pairs j ≠ i) by Adam (learning rate 0.01) from Gaussian
/// starts, keeping the best points met.
pub fn spread_on_sphere(classes: usize, dim: usize, seed: u64, steps: usize) -> Vec<Vec<f64>> {
    let device = Device::flex().autodiff();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start: Vec<f32> = (0..classes * dim).map(|_| StandardNormal.sample(&mut rng)).collect();
    let mut points = Points { x: Param::from_tensor(crate::transfer::upload_vec(start, [classes, dim], &device)) };
    let mut optim = AdamConfig::new().init();
    let mut best: Option<(f64, Vec<f32>)> = None;
    // The self-similarity 1/τ is left out of the sums: it is a constant that would swamp the
    // others in f32 (e^14.3 beside e^2.9) and leave the loss nothing to resolve; without it the
    // minimiser is still the regular simplex where one exists (tested).
    let off_diagonal = Tensor::<2>::eye(classes, &device).mul_scalar(-1e4);
    for _ in 0..=steps {
        let t = l2_normalize(points.x.val(), 1);
        let s = t.clone().matmul(t.clone().transpose()).div_scalar(UNIFORMITY_TEMPERATURE) + off_diagonal.clone();
        let m = s.clone().detach().max_dim(1);
        let loss = ((s - m.clone()).exp().sum_dim(1).log() + m).mean();
        let value = crate::transfer::read(loss.clone()).try_into_vec_as::<f64>().expect("a float loss")[0];
        if best.as_ref().is_none_or(|(b, _)| value < *b) {
            best = Some((value, crate::transfer::read_f32(t.detach())));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &points);
        points = optim.step(0.01, points, grads);
    }
    let (_, rows) = best.expect("at least one step");
    rows.chunks(dim)
        .map(|r| {
            let n = r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
            r.iter().map(|&x| x as f64 / n).collect()
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalise(v: &mut [f64]) {
    let n = dot(v, v).sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

/// Moves the centroids of the classes present in `labels` towards the normalised mean of their
/// rows of `z` (`n × p`, row-major), with momentum `momentum`.
pub fn update_centroids(centroids: &mut [Vec<f64>], z: &[f32], labels: &[i64], momentum: f64) {
    let p = centroids.first().map_or(0, Vec::len);
    let mut sums = vec![vec![0.0f64; p]; centroids.len()];
    let mut present = vec![false; centroids.len()];
    for (row, &y) in z.chunks(p).zip(labels) {
        let y = y as usize;
        present[y] = true;
        sums[y].iter_mut().zip(row).for_each(|(s, &x)| *s += x as f64);
    }
    for ((c, mut mean), here) in centroids.iter_mut().zip(sums).zip(present) {
        if !here {
            continue;
        }
        normalise(&mut mean);
        c.iter_mut().zip(&mean).for_each(|(c, m)| *c = momentum * *c + (1.0 - momentum) * m);
        normalise(c);
    }
}

/// The target of each class: the permutation maximising Σ_y cos(c_y, t_σ(y)).
pub fn assign(centroids: &[Vec<f64>], targets: &[Vec<f64>]) -> Vec<usize> {
    let costs: Vec<Vec<f64>> = centroids.iter().map(|c| targets.iter().map(|t| -dot(c, t)).collect()).collect();
    super::hungarian::min_cost_assignment(&costs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_cos(t: &[Vec<f64>]) -> f64 {
        let mut m = f64::NEG_INFINITY;
        for (i, a) in t.iter().enumerate() {
            for b in &t[i + 1..] {
                m = m.max(dot(a, b));
            }
        }
        m
    }

    #[test]
    fn few_targets_are_the_regular_simplex() {
        let t = uniform_targets(10, 128, 4).unwrap();
        assert_eq!((t.len(), t[0].len()), (10, 128));
        for (i, a) in t.iter().enumerate() {
            assert!((dot(a, a) - 1.0).abs() < 1e-12);
            for b in &t[i + 1..] {
                assert!((dot(a, b) + 1.0 / 9.0).abs() < 1e-12, "cos −1/(C−1)");
            }
        }
    }

    #[test]
    fn adam_finds_the_known_optima() {
        // Four points in 3-d: the regular tetrahedron (cos −1/3), found from random starts.
        let t = spread_on_sphere(4, 3, 1, 400);
        assert!((max_cos(&t) + 1.0 / 3.0).abs() < 0.02, "tetrahedron: max cos {}", max_cos(&t));
        let simplex = uniform_targets(4, 3, 1).unwrap();
        assert!(uniformity_loss(&t) - uniformity_loss(&simplex) < 1e-3, "reaches the simplex's loss");
        // Six points in 3-d, more than a simplex holds: the octahedron (pairs at 90° or 180°).
        let t = uniform_targets(6, 3, 2).unwrap();
        assert!(max_cos(&t) < 0.03, "octahedron: max cos {}", max_cos(&t));
        assert!(t.iter().all(|r| (dot(r, r) - 1.0).abs() < 1e-9));
    }

    #[test]
    fn centroids_move_by_their_momentum_and_assignment_follows_them() {
        let mut c = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, 0.0]];
        // Class 0's batch mean points along y; class 2 is absent and stays.
        let z = [0.0f32, 2.0, 0.0, 4.0, 1.0, 0.0];
        update_centroids(&mut c, &z, &[0, 0, 1], 0.9);
        let s = (0.81f64 + 0.01).sqrt();
        assert!((c[0][0] - 0.9 / s).abs() < 1e-12 && (c[0][1] - 0.1 / s).abs() < 1e-12, "{:?}", c[0]);
        assert!((c[1][0] - 0.1 / s).abs() < 1e-12 && (c[1][1] - 0.9 / s).abs() < 1e-12, "{:?}", c[1]);
        assert_eq!(c[2], vec![-1.0, 0.0]);
        // Targets along the axes: each centroid takes the one nearest it, overall.
        let targets = vec![vec![-1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0]];
        let centroids = vec![vec![0.9, 0.1], vec![0.1, 0.9], vec![-0.8, -0.2]];
        assert_eq!(assign(&centroids, &targets), vec![2, 1, 0]);
    }
}
