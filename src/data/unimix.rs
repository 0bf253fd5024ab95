//! UniMix (Xu, Chai, Yuan: "Towards Calibrated Model for Long-Tailed Visual Recognition from
//! Prior Perspective", NeurIPS 2021): mixup whose partners and mixing factors favour the
//! minority classes.
//!
//! ```text
//!   partner p_k of image k: drawn (with replacement) from the batch with probability ∝ n_{y_p}^τ
//!                           (τ < 0: images of rare classes are picked more often)
//!   λ_k = frac( n_{y_p} / (n_{y_k} + n_{y_p}) + β_k ),   β_k ~ Beta(α, α)
//!   x̃_k = λ_k · x_k + (1 − λ_k) · x_{p_k},   loss_k = λ_k · ℓ(z_k, y_k) + (1 − λ_k) · ℓ(z_k, y_{p_k})
//! ```
//!
//! n_y are the training counts. The offset n_p / (n_k + n_p) moves λ_k towards the rarer of the
//! two classes (an image of a head class mixed with a tail image keeps mostly the tail one's
//! label), and "frac" (subtracting 1 when the sum passes 1) keeps λ in [0, 1). τ = 0 and α = 1 is
//! close to plain mixup (but with a λ per image). The reference draws the partners first, then the
//! Beta variates; so does this.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// λ of an image of a class with `n_own` training images mixed with a partner of a class with
/// `n_partner`, given the Beta variate `beta`.
pub fn factor(n_own: f64, n_partner: f64, beta: f64) -> f64 {
    let lambda = n_partner / (n_own + n_partner) + beta;
    if lambda > 1.0 { lambda - 1.0 } else { lambda }
}

/// Each image's partner (an index into the batch) and λ, for a batch whose images have the
/// training counts `counts` (n of each image's class), drawn from `rng`.
pub fn draw(counts: &[f64], alpha: f64, tau: f64, rng: &mut ChaCha8Rng) -> (Vec<usize>, Vec<f32>) {
    use rand_distr::{Beta, Distribution};
    let n = counts.len();
    let weights: Vec<f64> = counts.iter().map(|&c| c.max(1.0).powf(tau)).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(n);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cumulative.push(acc);
    }
    let partners: Vec<usize> = (0..n)
        .map(|_| {
            let u: f64 = rng.random();
            cumulative.iter().position(|&c| u < c).unwrap_or(n - 1)
        })
        .collect();
    let beta = Beta::new(alpha, alpha).expect("alpha > 0");
    let lambdas = (0..n).map(|k| factor(counts[k], counts[partners[k]], beta.sample(rng)) as f32).collect();
    (partners, lambdas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_factor_leans_to_the_rarer_class_and_wraps_into_the_unit_interval() {
        // A head image (900) mixed with a tail one (100): λ = 0.1 + β, mostly the partner's.
        assert!((factor(900.0, 100.0, 0.25) - 0.35).abs() < 1e-12);
        // The other way round: 0.9 + 0.25 passes 1 and wraps to 0.15.
        assert!((factor(100.0, 900.0, 0.25) - 0.15).abs() < 1e-12);
        assert!((factor(5.0, 5.0, 0.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn partners_are_drawn_in_proportion_to_n_to_the_tau() {
        // Two images of a class of 400 and two of a class of 25, τ = -0.5: weights 1/20 and 1/5,
        // so each tail image is a partner with probability 0.4, each head image 0.1.
        let counts = [400.0, 400.0, 25.0, 25.0];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut hits = [0usize; 4];
        let draws = 20_000;
        for _ in 0..draws / 4 {
            let (partners, lambdas) = draw(&counts, 0.8, -0.5, &mut rng);
            assert!(lambdas.iter().all(|l| (0.0..1.0).contains(l)));
            for p in partners {
                hits[p] += 1;
            }
        }
        for (k, want) in [0.1, 0.1, 0.4, 0.4].iter().enumerate() {
            let got = hits[k] as f64 / draws as f64;
            assert!((got - want).abs() < 0.015, "image {k}: {got} vs {want}");
        }
        // The same seed, the same draws.
        let again = |seed| draw(&counts, 0.8, -0.5, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(again(3), again(3));
    }
}
