//! Losses that add the log prior to the logits during training, so the network learns the
//! balanced posterior: the logit-adjusted loss (Menon et al., ICLR 2021) and Balanced Softmax
//! (Ren et al., NeurIPS 2020).

use burn::tensor::Tensor;

/// Logits shifted by `scale`·`log_prior` (broadcast over the batch): the input of
/// cross-entropy for the logit-adjusted loss (`scale` = τ) and Balanced Softmax.
///
/// Balanced Softmax adds log n_y; that differs from log π_y = log n_y − log N by a constant,
/// which softmax ignores, so Balanced Softmax is the logit-adjusted loss at τ = 1.
pub fn shift_by_prior(logits: Tensor<2>, log_prior: Tensor<1>, scale: f64) -> Tensor<2> {
    let [_, c] = logits.dims();
    logits + log_prior.reshape([1, c]).mul_scalar(scale)
}
