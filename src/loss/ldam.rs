//! LDAM (Cao et al., NeurIPS 2019): a label-distribution-aware margin m_j ∝ n_j^{−1/4}
//! subtracted from the true-class logit, rarer classes getting larger margins.

/// Margins m_j = C / n_j^{1/4}, with C chosen so the largest margin is `max_margin`.
pub fn ldam_margins(counts: &[usize], max_margin: f64) -> Vec<f64> {
    let raw: Vec<f64> = counts.iter().map(|&n| 1.0 / (n.max(1) as f64).powf(0.25)).collect();
    let largest = raw.iter().cloned().fold(0.0, f64::max);
    raw.iter().map(|m| m * max_margin / largest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_by_hand() {
        let m = ldam_margins(&[16, 1], 0.5);
        assert!((m[1] - 0.5).abs() < 1e-12);
        assert!((m[0] - 0.25).abs() < 1e-12); // 16^{-1/4} = 1/2
    }
}
