//! Seesaw loss (Wang, Zhang, Zang, Gao, Feng, Loy, Lin: "Seesaw Loss for Long-Tailed Instance
//! Segmentation", CVPR 2021): softmax cross-entropy whose negative terms are scaled, per image
//! of class i and other class j, by S_ij = M_ij · C_ij:
//!
//! ```text
//!   z̃_j = z_j + log S_ij   (j ≠ i),   z̃_i = z_i,   loss = mean over the batch of CE(z̃, i)
//!   M_ij = (N_j / N_i)^p   if N_j < N_i, else 1      mitigation: a head class's images push
//!                                                    less on the tail classes' logits
//!   C_ij = (σ_j / σ_i)^q   if σ_j > σ_i, else 1      compensation: a class that wins wrongly
//!                                                    is pushed down harder
//! ```
//!
//! N_k is the number of images of class k the loss has seen so far in training (accumulated
//! from the first step, so it starts uniform-ish and tends to the training distribution), σ the
//! softmax of the logits (not differentiated), σ_i floored at ε = 0.01; p = 0.8, q = 2 in the
//! paper. The factors are constants of the step: the gradient flows through z alone.

use burn::tensor::{Int, Tensor, activation::softmax};

use crate::loss::cross_entropy::cross_entropy;

/// σ_i's floor in the compensation factor (the reference implementation's).
pub const EPS: f64 = 1e-2;

/// log M_ij for each image (row) and class (column), row-major `[B, C]`: from the accumulated
/// counts `seen` (each at least 1), 0 on the image's own class.
pub fn log_mitigation(labels: &[i64], seen: &[f64], p: f64) -> Vec<f32> {
    let c = seen.len();
    let mut out = vec![0f32; labels.len() * c];
    for (b, &y) in labels.iter().enumerate() {
        let ni = seen[y as usize].max(1.0);
        for j in 0..c {
            let nj = seen[j].max(1.0);
            if j != y as usize && nj < ni {
                out[b * c + j] = (p * (nj / ni).ln()) as f32;
            }
        }
    }
    out
}

/// The Seesaw loss of `logits` `[B, C]` for `labels`, with the accumulated class counts `seen`.
pub fn seesaw(logits: Tensor<2>, labels: &[i64], seen: &[f64], p: f64, q: f64) -> Tensor<1> {
    let device = logits.device();
    let b = labels.len();
    let y: Tensor<1, Int> = crate::transfer::upload_vec(labels.to_vec(), [b], &device);
    cross_entropy(seesaw_logits(logits, labels, seen, p, q), y)
}

/// The logits z̃ whose cross-entropy is the Seesaw loss (the factors S held constant).
pub fn seesaw_logits(logits: Tensor<2>, labels: &[i64], seen: &[f64], p: f64, q: f64) -> Tensor<2> {
    let device = logits.device();
    let [b, c] = logits.dims();
    let one_hot: Vec<f32> = (0..b * c).map(|k| (labels[k / c] as usize == k % c) as u8 as f32).collect();
    let others = crate::transfer::upload_vec::<2, burn::tensor::Float, _>(one_hot, [b, c], &device).neg().add_scalar(1.0);
    let mut log_s: Tensor<2> = crate::transfer::upload_vec(log_mitigation(labels, seen, p), [b, c], &device);
    if q > 0.0 {
        let sigma = softmax(logits.clone().detach(), 1);
        let y: Tensor<2, Int> = crate::transfer::upload_vec(labels.to_vec(), [b, 1], &device);
        let own = sigma.clone().gather(1, y).clamp_min(EPS);
        // q · log max(σ_j / σ_i, 1): the factor where it exceeds 1, 0 (a factor of 1) elsewhere.
        let ratio = sigma / own;
        log_s = log_s + ratio.clamp_min(1.0).log().mul_scalar(q);
    }
    logits + log_s * others
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use burn::tensor::TensorData;

    /// The loss in f64, straight from the formulas above.
    fn by_hand(z: &[Vec<f64>], labels: &[usize], seen: &[f64], p: f64, q: f64) -> f64 {
        let mut total = 0.0;
        for (row, &i) in z.iter().zip(labels) {
            let m = row.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            let sigma: Vec<f64> = e.iter().map(|v| v / s).collect();
            let shifted: Vec<f64> = (0..row.len())
                .map(|j| {
                    if j == i {
                        return row[j];
                    }
                    let mitigation = if seen[j] < seen[i] { (seen[j] / seen[i]).powf(p) } else { 1.0 };
                    let ratio = sigma[j] / sigma[i].max(EPS);
                    let compensation = if ratio > 1.0 { ratio.powf(q) } else { 1.0 };
                    row[j] + (mitigation * compensation).ln()
                })
                .collect();
            let lse = shifted.iter().map(|v| v.exp()).sum::<f64>().ln();
            total += lse - shifted[i];
        }
        total / z.len() as f64
    }

    fn tensor(z: &[Vec<f64>]) -> Tensor<2> {
        let flat: Vec<f32> = z.iter().flatten().map(|&v| v as f32).collect();
        Tensor::from_data(TensorData::new(flat, [z.len(), z[0].len()]), &Device::flex())
    }

    #[test]
    fn matches_the_formulas_in_f64() {
        // Image 0 (class 0, the head) has a wrong winner (class 2) to compensate; image 1 (class
        // 2, the tail) pushes on classes 0 and 1 unmitigated.
        let z = vec![vec![1.0, 0.5, 2.5, -1.0], vec![0.2, 1.7, 0.9, 0.0], vec![3.0, -2.0, 0.1, 0.4]];
        let labels = [0usize, 2, 1];
        let seen = [500.0, 120.0, 15.0, 3.0];
        let got: f32 = seesaw(tensor(&z), &labels.map(|l| l as i64), &seen, 0.8, 2.0).into_scalar();
        let want = by_hand(&z, &labels, &seen, 0.8, 2.0);
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
        // p = q = 0 is plain cross-entropy; balanced counts leave only the compensation.
        let ce = by_hand(&z, &labels, &[1.0; 4], 0.0, 0.0);
        let plain: f32 = seesaw(tensor(&z), &labels.map(|l| l as i64), &seen, 0.0, 0.0).into_scalar();
        assert!((plain as f64 - ce).abs() < 1e-5);
        let balanced: f32 = seesaw(tensor(&z), &labels.map(|l| l as i64), &[9.0; 4], 0.8, 2.0).into_scalar();
        assert!((balanced as f64 - by_hand(&z, &labels, &[9.0; 4], 0.0, 2.0)).abs() < 1e-5);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // The factors are constants of the step: the analytic gradient (through z only) is the
        // derivative of CE(z + log S) with S held fixed at z's values.
        let z: Vec<Vec<f64>> = vec![vec![0.3, 1.1, -0.4], vec![2.0, 0.1, 0.6]];
        let labels = [1i64, 0];
        let seen = [40.0, 7.0, 2.0];
        let device = Device::flex().autodiff();
        let flat: Vec<f32> = z.iter().flatten().map(|&v| v as f32).collect();
        let x = Tensor::<2>::from_data(TensorData::new(flat.clone(), [2, 3]), &device).require_grad();
        let grads = seesaw(x.clone(), &labels, &seen, 0.8, 2.0).backward();
        let analytic: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
        // S held fixed: its log from the unperturbed logits, in f64.
        let fixed_log_s: Vec<f64> = {
            let mut out = vec![0.0; 6];
            for (b, row) in z.iter().enumerate() {
                let e: Vec<f64> = row.iter().map(|v| v.exp()).collect();
                let s: f64 = e.iter().sum();
                let i = labels[b] as usize;
                for j in 0..3 {
                    if j == i {
                        continue;
                    }
                    let m = if seen[j] < seen[i] { (seen[j] / seen[i]).powf(0.8) } else { 1.0 };
                    let r = (e[j] / s) / (e[i] / s).max(EPS);
                    out[b * 3 + j] = (m * if r > 1.0 { r.powi(2) } else { 1.0 }).ln();
                }
            }
            out
        };
        let loss_at = |v: &[f64]| -> f64 {
            (0..2)
                .map(|b| {
                    let row: Vec<f64> = (0..3).map(|j| v[b * 3 + j] + fixed_log_s[b * 3 + j]).collect();
                    row.iter().map(|x| x.exp()).sum::<f64>().ln() - row[labels[b] as usize]
                })
                .sum::<f64>()
                / 2.0
        };
        let base: Vec<f64> = flat.iter().map(|&v| v as f64).collect();
        for k in 0..6 {
            let (mut up, mut down) = (base.clone(), base.clone());
            up[k] += 1e-6;
            down[k] -= 1e-6;
            let numeric = (loss_at(&up) - loss_at(&down)) / 2e-6;
            assert!((analytic[k] as f64 - numeric).abs() < 1e-4, "d/dz[{k}]: {} vs {numeric}", analytic[k]);
        }
    }
}
