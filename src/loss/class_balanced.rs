//! Class-balanced re-weighting by the effective number of samples (Cui et al., CVPR 2019),
//! used by the CB losses and by LDAM's deferred re-weighting.

/// w_j = (1 − β) / (1 − β^{n_j}), normalised to sum to the number of classes.
///
/// β = 0 gives equal weights; β → 1 tends to inverse class frequency.
pub fn effective_number_weights(counts: &[usize], beta: f64) -> Vec<f64> {
    let raw: Vec<f64> = counts.iter().map(|&n| (1.0 - beta) / (1.0 - beta.powi(n as i32)).max(1e-12)).collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|w| w * counts.len() as f64 / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_by_hand() {
        // β = 0.9: raw weights 0.1/(1 − 0.9^10) = 0.15353, 0.1/(1 − 0.9) = 1.0.
        let w = effective_number_weights(&[10, 1], 0.9);
        let r0 = 0.1 / (1.0 - 0.9f64.powi(10));
        assert!((w[0] - 2.0 * r0 / (r0 + 1.0)).abs() < 1e-12);
        assert!((w[1] - 2.0 / (r0 + 1.0)).abs() < 1e-12);
        assert_eq!(effective_number_weights(&[100, 5, 1], 0.0), vec![1.0, 1.0, 1.0]);
    }
}
