//! Post-hoc logit adjustment (Menon et al. 2021): subtract τ·log π_y, π the training prior,
//! so that the argmax no longer favours head classes.

/// log(N_i / N) for each class i.
pub fn log_prior(counts: &[usize]) -> Vec<f64> {
    let total: usize = counts.iter().sum();
    counts.iter().map(|&n| (n as f64 / total as f64).ln()).collect()
}

/// logits − τ·log π, in place, for a row-major `[B, C]` buffer.
pub fn adjust_logits(logits: &mut [f32], log_prior: &[f64], tau: f64) {
    for row in logits.chunks_exact_mut(log_prior.len()) {
        for (x, lp) in row.iter_mut().zip(log_prior) {
            *x -= (tau * lp) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjustment_arithmetic() {
        let lp = log_prior(&[90, 10]);
        assert!((lp[0] - 0.9f64.ln()).abs() < 1e-12 && (lp[1] - 0.1f64.ln()).abs() < 1e-12);
        // The head class wins raw by 1.0; log(0.9/0.1) = 2.197 > 1 flips it at τ = 1.
        let mut logits = vec![1.0f32, 0.0];
        adjust_logits(&mut logits, &lp, 1.0);
        assert!((logits[0] - (1.0 - 0.9f32.ln())).abs() < 1e-6);
        assert!((logits[1] - (0.0 - 0.1f32.ln())).abs() < 1e-6);
        assert!(logits[1] > logits[0]);
        let mut same = vec![1.0f32, 0.0];
        adjust_logits(&mut same, &lp, 0.0);
        assert_eq!(same, vec![1.0, 0.0]);
    }
}
