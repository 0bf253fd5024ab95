//! A two-component principal-component analysis of penultimate features, for the paper's
//! feature pictures: where the classes sit in the plane of largest variance, and how the
//! classifier's directions project onto it.
//!
//! The covariance is formed in f64 (d is a few hundred) and its top eigenvectors are found by
//! power iteration with deflation, each followed by a Rayleigh quotient for the variance.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::head::host_linalg::Mat;

/// The plane of the two largest principal components of a feature set.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca2 {
    /// Feature mean, length d.
    pub mean: Vec<f64>,
    /// Unit principal axes, each of length d, largest variance first.
    pub axes: [Vec<f64>; 2],
    /// Fraction of the total variance along each axis.
    pub explained: [f64; 2],
}

impl Pca2 {
    /// Fits the plane to `features`, row-major `[N, dim]` (N ≥ 2).
    pub fn fit(features: &[f32], dim: usize) -> Pca2 {
        let n = features.len() / dim.max(1);
        let mut mean = vec![0.0; dim];
        for row in features.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let mut cov = Mat::zeros(dim, dim);
        let mut centred = vec![0.0; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &x), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = x as f64 - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                let out = &mut cov.data[i * dim..(i + 1) * dim];
                for (o, &cj) in out[i..].iter_mut().zip(&centred[i..]) {
                    *o += ci * cj;
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let v = cov.data[i * dim + j] / (n.max(2) - 1) as f64;
                cov.data[i * dim + j] = v;
                cov.data[j * dim + i] = v;
            }
        }
        let total: f64 = (0..dim).map(|i| cov.at(i, i)).sum();
        let (first, var1) = top_eigenvector(&cov, &[], 1);
        let (second, var2) = top_eigenvector(&cov, std::slice::from_ref(&first), 2);
        let share = |v: f64| if total > 0.0 { v / total } else { 0.0 };
        Pca2 { mean, axes: [first, second], explained: [share(var1), share(var2)] }
    }

    /// Coordinates of each feature row in the plane (centred on the mean).
    pub fn project(&self, features: &[f32]) -> Vec<(f64, f64)> {
        let dim = self.mean.len();
        features
            .chunks_exact(dim)
            .map(|row| {
                let (mut a, mut b) = (0.0, 0.0);
                for (((&x, &m), &u), &v) in row.iter().zip(&self.mean).zip(&self.axes[0]).zip(&self.axes[1]) {
                    let c = x as f64 - m;
                    a += c * u;
                    b += c * v;
                }
                (a, b)
            })
            .collect()
    }

    /// The components of a direction (not a point: no centring) along the two axes.
    pub fn project_direction(&self, direction: &[f64]) -> (f64, f64) {
        let dot = |axis: &[f64]| axis.iter().zip(direction).map(|(a, d)| a * d).sum::<f64>();
        (dot(&self.axes[0]), dot(&self.axes[1]))
    }
}

/// The unit eigenvector of the largest eigenvalue of symmetric `m` orthogonal to `deflate`,
/// and that eigenvalue.
fn top_eigenvector(m: &Mat, deflate: &[Vec<f64>], seed: u64) -> (Vec<f64>, f64) {
    let n = m.rows;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    let orthogonalise = |v: &mut Vec<f64>| {
        for u in deflate {
            let p: f64 = u.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(x, a)| *x -= p * a);
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
    };
    orthogonalise(&mut v);
    let times = |v: &[f64]| -> Vec<f64> { (0..n).map(|i| m.data[i * n..(i + 1) * n].iter().zip(v).map(|(a, b)| a * b).sum()).collect() };
    for _ in 0..1000 {
        let mut w = times(&v);
        orthogonalise(&mut w);
        let change: f64 = w.iter().zip(&v).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        v = w;
        if change < 1e-12 {
            break;
        }
    }
    // Fix the sign so the picture does not flip between runs of the same features.
    if let Some(big) = v.iter().cloned().max_by(|a, b| a.abs().total_cmp(&b.abs()))
        && big < 0.0
    {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    let value = times(&v).iter().zip(&v).map(|(a, b)| a * b).sum();
    (v, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points spread with standard deviations 5, 2 and 0.1 along three orthonormal axes of R⁴.
    fn spread() -> (Vec<f32>, [[f64; 4]; 3]) {
        let s = 0.5f64;
        let axes = [[s, s, s, s], [s, -s, s, -s], [s, s, -s, -s]];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut out = Vec::new();
        for _ in 0..4000 {
            let z: [f64; 3] = [5.0, 2.0, 0.1].map(|sd| {
                let z: f64 = StandardNormal.sample(&mut rng);
                sd * z
            });
            for k in 0..4 {
                out.push((3.0 + z.iter().zip(&axes).map(|(z, axis)| z * axis[k]).sum::<f64>()) as f32);
            }
        }
        (out, axes)
    }

    #[test]
    fn finds_the_axes_of_largest_variance() {
        let (x, axes) = spread();
        let p = Pca2::fit(&x, 4);
        for (found, truth) in p.axes.iter().zip(&axes[..2]) {
            let cos: f64 = found.iter().zip(truth).map(|(a, b)| a * b).sum();
            assert!(cos.abs() > 0.999, "axis off by cos {cos}");
        }
        // Variances 25, 4, 0.01 of 29.01 in all.
        assert!((p.explained[0] - 25.0 / 29.01).abs() < 0.03, "{:?}", p.explained);
        assert!((p.explained[1] - 4.0 / 29.01).abs() < 0.02, "{:?}", p.explained);
        assert!(p.mean.iter().all(|m| (m - 3.0).abs() < 0.3));
    }

    #[test]
    fn projection_is_centred_and_directions_are_not() {
        let (x, axes) = spread();
        let p = Pca2::fit(&x, 4);
        let pts = p.project(&x);
        let mean_a = pts.iter().map(|q| q.0).sum::<f64>() / pts.len() as f64;
        assert!(mean_a.abs() < 1e-6);
        let (a, b) = p.project_direction(&axes[0]);
        assert!((a.abs() - 1.0).abs() < 1e-3 && b.abs() < 1e-3, "{a} {b}");
        let (a, b) = p.project_direction(&axes[2]);
        assert!(a.abs() < 1e-2 && b.abs() < 1e-2, "the third axis lies off the plane: {a} {b}");
    }
}
