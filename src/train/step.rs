//! One optimisation step: forward, loss, backward, SGD update, and a single device→host read
//! of the loss and the number of correct predictions. The training loop and the step
//! benchmark (`rbl-bench`) both run exactly this.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::loss::Criterion;
use crate::network::Network;

/// What one step reports back to the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The batch's mean loss before the update.
    pub loss: f32,
    /// Correct top-1 predictions of the batch (raw logits).
    pub correct: usize,
}

/// Runs one step on `images` (`[B, C, H, W]` on the autodiff `device`) with `labels`; `epoch`
/// is 0-based (deferred re-weighting uses it). Returns the updated network and the stats; the
/// caller checks `loss` for NaN before trusting the update.
pub fn train_step(
    net: Network,
    optim: &mut burn::optim::ModuleOptimizer,
    criterion: &Criterion,
    images: Tensor<4>,
    labels: &[i64],
    epoch: usize,
    lr: f64,
    device: &Device,
) -> (Network, StepStats) {
    let b = labels.len();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [b]), device);
    let (logits, loss) = if criterion.needs_features() {
        let features = net.features(images);
        let directions = net.head.class_directions();
        let logits = net.head.logits_with(features.clone(), directions.clone());
        (logits, criterion.forward_features(features, directions, labels))
    } else {
        let logits = net.forward(images);
        let loss = criterion.forward(logits.clone(), labels, epoch);
        (logits, loss)
    };
    // One device→host read per step: the loss and the number of correct predictions.
    let correct = logits.detach().argmax(1).reshape([b]).equal(y).int().sum().float();
    let stats: Vec<f32> = Tensor::cat(vec![loss.clone().detach().reshape([1]), correct], 0).into_data().try_to_vec().expect("f32 stats");
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let net = optim.step(lr, net, grads);
    (net, StepStats { loss: stats[0], correct: stats[1] as usize })
}
