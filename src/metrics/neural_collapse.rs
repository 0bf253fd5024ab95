//! Neural-collapse metrics of penultimate features (Papyan, Han and Donoho, "Prevalence of
//! neural collapse during the terminal phase of deep learning training", PNAS 2020).
//!
//! With features h_i of class y_i, class means μ_c, global mean μ_G (mean of the class means,
//! so a long-tailed set does not tilt it), M̃ = [μ_c − μ_G] (d × C) and classifier directions
//! W (d × C):
//! - **NC1** = Tr(Σ_W Σ_B⁺) / C, Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ,
//!   Σ_B = (1/C) M̃ M̃ᵀ. Within-class variability relative to between-class; 0 at collapse.
//! - **NC2 equinorm** = std_c ‖μ_c − μ_G‖ / mean_c ‖μ_c − μ_G‖; 0 at collapse.
//! - **NC2 equiangularity** = std over pairs c ≠ c' of cos(μ_c − μ_G, μ_c' − μ_G), and
//!   **max-angle distance** = mean over pairs of |cos + 1/(C−1)|; both 0 for a simplex ETF.
//! - **NC3 self-duality** = ‖W/‖W‖_F − M̃/‖M̃‖_F‖_F (W after R for RBL); 0 when the classifier
//!   aligns with the centred class means.
//! - **NC4** = fraction of images where the classifier's argmax agrees with the nearest class
//!   mean; 1 at collapse.
//!
//! Σ_B⁺ is never formed: with G = M̃ᵀM̃ (C × C), (M̃M̃ᵀ)⁺ = M̃ G⁺² M̃ᵀ, so
//! Tr(Σ_W Σ_B⁺)/C = Tr(G⁺² A) with A = (1/N) Σ_i v_i v_iᵀ, v_i = M̃ᵀ(h_i − μ_{y_i}).

use serde::{Deserialize, Serialize};

use crate::head::host_linalg::Mat;

/// The metrics of one set of features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NeuralCollapse {
    /// Tr(Σ_W Σ_B⁺)/C.
    pub nc1: f64,
    /// std/mean of the centred class-mean norms.
    pub equinorm: f64,
    /// std of the pairwise cosines of centred class means.
    pub equiangularity: f64,
    /// mean |cos + 1/(C−1)| over pairs.
    pub max_angle_distance: f64,
    /// ‖W/‖W‖ − M̃/‖M̃‖‖_F.
    pub self_duality: f64,
    /// Agreement of the classifier with the nearest-class-mean rule.
    pub ncc_agreement: f64,
}

/// Computes the metrics. `features` row-major `[N, d]`; `labels` in 0..C (every class present);
/// `directions` the classifier `d × C`; `logits` row-major `[N, C]` of the classifier.
pub fn neural_collapse(features: &[f32], labels: &[usize], directions: &Mat, logits: &[f32]) -> NeuralCollapse {
    let (d, c) = (directions.rows, directions.cols);
    let n = labels.len();
    let mut means = Mat::zeros(d, c);
    let mut counts = vec![0usize; c];
    for (i, &y) in labels.iter().enumerate() {
        counts[y] += 1;
        for k in 0..d {
            means.data[k * c + y] += features[i * d + k] as f64;
        }
    }
    for row in means.data.chunks_exact_mut(c) {
        for (m, &n) in row.iter_mut().zip(&counts) {
            *m /= n.max(1) as f64;
        }
    }
    let global: Vec<f64> = (0..d).map(|k| (0..c).map(|y| means.at(k, y)).sum::<f64>() / c as f64).collect();
    let mut centred = means.clone();
    for (row, g) in centred.data.chunks_exact_mut(c).zip(&global) {
        for m in row.iter_mut() {
            *m -= g;
        }
    }

    // NC1 in the span of the class means.
    let g = centred.t().matmul(&centred);
    let g_pinv = pseudo_inverse_sym(&g);
    let g_pinv2 = g_pinv.matmul(&g_pinv);
    let mut a = Mat::zeros(c, c);
    let mut v = vec![0f64; c];
    for (i, &y) in labels.iter().enumerate() {
        for (j, vj) in v.iter_mut().enumerate() {
            *vj = (0..d).map(|k| centred.at(k, j) * (features[i * d + k] as f64 - means.at(k, y))).sum();
        }
        for p in 0..c {
            for q in 0..c {
                a.data[p * c + q] += v[p] * v[q] / n as f64;
            }
        }
    }
    let nc1: f64 = (0..c).map(|p| (0..c).map(|q| g_pinv2.at(p, q) * a.at(q, p)).sum::<f64>()).sum();

    // NC2.
    let norms: Vec<f64> = (0..c).map(|y| g.at(y, y).sqrt()).collect();
    let (nm, ns) = mean_std(&norms);
    let mut cosines = Vec::new();
    for p in 0..c {
        for q in 0..c {
            if p != q {
                cosines.push(g.at(p, q) / (norms[p] * norms[q]).max(1e-300));
            }
        }
    }
    let target = -1.0 / (c as f64 - 1.0);
    let max_angle_distance = cosines.iter().map(|x| (x - target).abs()).sum::<f64>() / cosines.len().max(1) as f64;

    // NC3.
    let (wf, mf) = (directions.frobenius().max(1e-300), centred.frobenius().max(1e-300));
    let self_duality = directions.scale(1.0 / wf).add_scaled(&centred, -1.0 / mf).frobenius();

    // NC4.
    let mut agree = 0usize;
    for i in 0..n {
        let row = &logits[i * c..(i + 1) * c];
        let classifier = (0..c).fold(0, |b, j| if row[j] > row[b] { j } else { b });
        let dist = |y: usize| (0..d).map(|k| (features[i * d + k] as f64 - means.at(k, y)).powi(2)).sum::<f64>();
        let ncc = (0..c).fold(0, |b, y| if dist(y) < dist(b) { y } else { b });
        agree += (classifier == ncc) as usize;
    }

    NeuralCollapse {
        nc1,
        equinorm: ns / nm.max(1e-300),
        equiangularity: mean_std(&cosines).1,
        max_angle_distance,
        self_duality,
        ncc_agreement: agree as f64 / n.max(1) as f64,
    }
}

/// Population mean and standard deviation.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let m = xs.iter().sum::<f64>() / n;
    (m, (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt())
}

/// Moore–Penrose pseudo-inverse of a symmetric matrix (cyclic Jacobi eigendecomposition;
/// eigenvalues below 1e-10 of the largest count as zero).
pub fn pseudo_inverse_sym(m: &Mat) -> Mat {
    let n = m.rows;
    let mut a = m.clone();
    let mut v = Mat::eye(n);
    for _sweep in 0..100 {
        let off: f64 = (0..n).flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q))).map(|(p, q)| a.at(p, q).powi(2)).sum();
        if off < 1e-28 * a.frobenius().powi(2).max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a.at(p, q);
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a.at(q, q) - a.at(p, p)) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (cs, sn) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..n {
                    let (akp, akq) = (a.at(k, p), a.at(k, q));
                    a.data[k * n + p] = cs * akp - sn * akq;
                    a.data[k * n + q] = sn * akp + cs * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a.at(p, k), a.at(q, k));
                    a.data[p * n + k] = cs * apk - sn * aqk;
                    a.data[q * n + k] = sn * apk + cs * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v.at(k, p), v.at(k, q));
                    v.data[k * n + p] = cs * vkp - sn * vkq;
                    v.data[k * n + q] = sn * vkp + cs * vkq;
                }
            }
        }
    }
    let largest = (0..n).map(|i| a.at(i, i).abs()).fold(0.0, f64::max);
    let mut out = Mat::zeros(n, n);
    for e in 0..n {
        let lambda = a.at(e, e);
        if lambda.abs() <= 1e-10 * largest {
            continue;
        }
        for i in 0..n {
            for j in 0..n {
                out.data[i * n + j] += v.at(i, e) * v.at(j, e) / lambda;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::etf::simplex_etf;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    /// Features: class c's ETF vector scaled by `a`, plus a global offset, plus N(0, σ²) noise.
    fn features(c: usize, d: usize, per_class: usize, a: f64, sigma: f64) -> (Vec<f32>, Vec<usize>, Mat, Vec<f32>) {
        let m = simplex_etf(d, c, 5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let noise = Normal::new(0.0, sigma.max(1e-300)).unwrap();
        let (mut f, mut y, mut logits) = (Vec::new(), Vec::new(), Vec::new());
        for class in 0..c {
            for _ in 0..per_class {
                let h: Vec<f64> =
                    (0..d).map(|k| a * m.at(k, class) + 0.3 + if sigma > 0.0 { noise.sample(&mut rng) } else { 0.0 }).collect();
                logits.extend((0..c).map(|j| (0..d).map(|k| h[k] * m.at(k, j)).sum::<f64>() as f32));
                f.extend(h.iter().map(|&x| x as f32));
                y.push(class);
            }
        }
        (f, y, m, logits)
    }

    #[test]
    fn a_perfect_simplex_is_collapsed() {
        let (f, y, m, logits) = features(5, 8, 4, 2.0, 0.0);
        let nc = neural_collapse(&f, &y, &m, &logits);
        assert!(nc.nc1.abs() < 1e-10, "{nc:?}");
        assert!(nc.equinorm < 1e-6 && nc.equiangularity < 1e-6 && nc.max_angle_distance < 1e-6, "{nc:?}");
        assert!(nc.self_duality < 1e-6, "{nc:?}");
        assert_eq!(nc.ncc_agreement, 1.0);
    }

    #[test]
    fn gaussian_noise_gives_the_predicted_nc1() {
        // Σ_W ≈ σ²I and Σ_B has C−1 eigenvalues a²/(C−1), so NC1 ≈ σ²(C−1)²/(a²C).
        let (c, d, a, sigma) = (4, 6, 3.0, 0.5);
        let (f, y, m, logits) = features(c, d, 3000, a, sigma);
        let nc = neural_collapse(&f, &y, &m, &logits);
        let want = sigma * sigma * ((c - 1) * (c - 1)) as f64 / (a * a * c as f64);
        assert!((nc.nc1 - want).abs() < 0.05 * want, "NC1 {} vs {want}", nc.nc1);
        assert!(nc.equiangularity < 0.02 && nc.equinorm < 0.02, "{nc:?}");
        assert!(nc.ncc_agreement > 0.95, "{nc:?}");
    }

    #[test]
    fn pseudo_inverse_of_a_singular_matrix() {
        // The centring projector P = I − 11ᵀ/3 is its own pseudo-inverse.
        let mut p = Mat::eye(3);
        for x in p.data.iter_mut() {
            *x -= 1.0 / 3.0;
        }
        let q = pseudo_inverse_sym(&p);
        assert!(q.add_scaled(&p, -1.0).frobenius() < 1e-10);
    }
}
