//! One optimisation step: forward, loss, backward, SGD update, and a single device→host read
//! of the loss and the number of correct predictions. The training loop and the step
//! benchmark (`rbl-bench`) both run exactly this.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::data::loader::Mix;
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
/// is 0-based (deferred re-weighting uses it). With `mix` (mixup) the loss is
/// λ·loss(labels) + (1 − λ)·loss(partner labels) and the correct count is the same mixture,
/// rounded. Returns the updated network and the stats; the
/// caller checks `loss` for NaN before trusting the update.
pub fn train_step(
    net: Network,
    optim: &mut burn::optim::ModuleOptimizer,
    criterion: &Criterion,
    images: Tensor<4>,
    labels: &[i64],
    mix: Option<&Mix>,
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
        let loss = |l: &[i64]| criterion.forward_features(features.clone(), directions.clone(), l);
        let loss = match mix {
            Some(m) => loss(labels).mul_scalar(m.lambda) + loss(&m.partner_labels).mul_scalar(1.0 - m.lambda),
            None => loss(labels),
        };
        (logits, loss)
    } else {
        let logits = net.forward(images);
        let loss = |l: &[i64]| criterion.forward(logits.clone(), l, epoch);
        let loss = match mix {
            Some(m) => loss(labels).mul_scalar(m.lambda) + loss(&m.partner_labels).mul_scalar(1.0 - m.lambda),
            None => loss(labels),
        };
        (logits, loss)
    };
    // One device→host read per step: the loss and the number of correct predictions.
    let predicted = logits.detach().argmax(1).reshape([b]);
    let correct = match mix {
        Some(m) => {
            let partner = Tensor::<1, Int>::from_data(TensorData::new(m.partner_labels.clone(), [b]), device);
            let hits = |t: Tensor<1, Int>| predicted.clone().equal(t).int().sum().float();
            hits(y).mul_scalar(m.lambda) + hits(partner).mul_scalar(1.0 - m.lambda)
        }
        None => predicted.equal(y).int().sum().float(),
    };
    let stats: Vec<f32> = Tensor::cat(vec![loss.clone().detach().reshape([1]), correct], 0).into_data().try_to_vec().expect("f32 stats");
    let grads = GradientsParams::from_grads(loss.backward(), &net);
    let net = optim.step(lr, net, grads);
    (net, StepStats { loss: stats[0], correct: stats[1].round() as usize })
}
