//! One optimisation step: forward, loss, backward, SGD update. The step's loss and number of
//! correct predictions stay on the device ([`StepReadings`]); the caller reads them when it
//! chooses ([`super::step_log`]), so a GPU is not made to drain its queue after every step.
//! The training loop and the step benchmark (`rbl-bench`) both run exactly this.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor};

use crate::contrastive::ContrastiveTraining;
use crate::data::loader::Mix;
use crate::loss::{Criterion, LossInputs};
use crate::network::Network;

/// A step's loss and weighted hit count, still on the device: `[loss, correct]`.
#[derive(Debug, Clone)]
pub struct StepReadings {
    /// `[loss, correct]` (f32, detached).
    pub values: Tensor<1>,
    /// Images of the step.
    pub batch: usize,
}

/// What one step reports back to the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The batch's mean loss before the update.
    pub loss: f32,
    /// Correct top-1 predictions of the batch (raw logits).
    pub correct: usize,
}

impl StepStats {
    /// The stats of a step from its read `[loss, correct]` pair (the weighted mixup count
    /// rounded).
    pub fn from_pair(loss: f32, correct: f32) -> StepStats {
        StepStats { loss, correct: correct.round() as usize }
    }
}

/// One batch of a step: images `[B, C, H, W]` on the autodiff device, their labels, and the
/// mixup partner when mixup is on.
pub struct StepBatch<'a> {
    /// The images.
    pub images: Tensor<4>,
    /// Their labels (also on the host).
    pub labels: &'a [i64],
    /// Mixup: partner labels and λ.
    pub mix: Option<&'a Mix>,
    /// Images of the whole global batch this is a rank's slice of (its own size on one
    /// process): the gradients are averaged over the ranks weighted by slice size.
    pub global: usize,
    /// Images of each class seen so far, this batch's included (losses that need them).
    pub seen: Option<&'a [f64]>,
    /// Contrastive methods: the second view of the images (same shape) and the seed of the
    /// batch's positive sampling.
    pub second_view: Option<(Tensor<4>, u64)>,
}

/// What a step is run with besides the batch.
pub struct StepSettings<'a> {
    /// The loss.
    pub criterion: &'a Criterion,
    /// 0-based epoch (deferred re-weighting uses it).
    pub epoch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Loss scale (mixed precision; 1 leaves the gradients alone).
    pub loss_scale: f64,
    /// The contrastive method's step state, when the run has one.
    pub contrast: Option<&'a ContrastiveTraining>,
}

/// Runs one step on `batch`. With mixup the loss is λ·loss(labels) + (1 − λ)·loss(partner
/// labels) and the correct count is the same mixture, rounded. The backward pass runs on
/// `loss_scale`·loss and the gradients are divided by `loss_scale` before the update. Returns
/// the updated network and the step's readings, on the device; the caller checks the loss for
/// NaN when it reads them, before trusting the network.
///
/// With a contrastive method both views go through the backbone as one batch of 2B images;
/// the loss is w_con·L_con + w_cls·L_cls ([`crate::contrastive`]), the classifier's on the first
/// views (detached for KCL and TSC), and the hit count is the classifier's on the first views.
pub fn train_step(
    net: Network,
    optim: &mut burn::optim::ModuleOptimizer,
    batch: StepBatch<'_>,
    settings: &StepSettings<'_>,
) -> (Network, StepReadings) {
    let StepBatch { images, labels, mix, global, seen, second_view } = batch;
    let StepSettings { criterion, epoch, lr, loss_scale, contrast } = *settings;
    let mut net = net;
    let device = &images.device();
    let b = labels.len();
    // The labels the loss and the hit count are taken against, with their weights.
    let targets: Vec<(&[i64], f32)> = match mix {
        Some(m) => vec![(labels, m.lambda), (&m.partner_labels, 1.0 - m.lambda)],
        None => vec![(labels, 1.0)],
    };
    let weighted = |t: Tensor<1>, w: f32| if w == 1.0 { t } else { t.mul_scalar(w) };
    let (features, contrastive) = match (contrast, second_view) {
        (Some(c), Some((second, pair_seed))) => {
            let both = net.features(Tensor::cat(vec![images, second], 0));
            let projection = net.projection.take().expect("a contrastive network has a projection head");
            let z = projection.forward(both.clone());
            let step = c.loss(projection, z, labels, pair_seed);
            net.projection = Some(step.projection);
            let first = both.narrow(0, 0, b);
            let first = if c.cfg.method.feature_only() { first.detach() } else { first };
            (first, Some((step.loss, c.weights(epoch))))
        }
        _ => (net.features(images), None),
    };
    let directions = net.head.class_directions();
    let logits = net.head.logits_with(features.clone(), directions.clone());
    let inputs = LossInputs { logits: logits.clone(), features: Some((features, directions)), seen: seen.map(<[f64]>::to_vec) };
    let predicted = logits.detach().argmax(1).reshape([b]);
    let hits = |l: &[i64]| {
        let y: Tensor<1, Int> = crate::transfer::upload_vec(l.to_vec(), [b], device);
        predicted.clone().equal(y).int().float()
    };
    let (loss, correct) = match mix.and_then(|m| m.lambdas.as_ref().map(|l| (m, l))) {
        // UniMix: a λ per image, on each image's own loss.
        Some((m, lambdas)) => {
            let lam: Tensor<1> = crate::transfer::upload_vec(lambdas.clone(), [b], device);
            let rest = lam.clone().neg().add_scalar(1.0);
            let own = criterion.per_image(&inputs, labels).expect("unimix needs a per-image loss (validated)");
            let partner = criterion.per_image(&inputs, &m.partner_labels).expect("unimix needs a per-image loss (validated)");
            let loss = (own * lam.clone() + partner * rest.clone()).mean();
            let correct = (hits(labels) * lam + hits(&m.partner_labels) * rest).sum();
            (loss, correct)
        }
        None => {
            let loss = targets
                .iter()
                .map(|&(l, w)| weighted(criterion.forward(&inputs, l, epoch), w))
                .reduce(|a, b| a + b)
                .expect("at least one target");
            // The loss and the number of correct predictions, left on the device.
            let correct = targets.iter().map(|&(l, w)| weighted(hits(l).sum(), w)).reduce(|a, b| a + b).expect("at least one target");
            (loss, correct)
        }
    };
    let loss = match contrastive {
        Some((con, (w_con, w_cls))) => con.mul_scalar(w_con) + loss.mul_scalar(w_cls),
        None => loss,
    };
    let values = Tensor::cat(vec![loss.clone().detach().reshape([1]), correct], 0);
    let grads = if loss_scale == 1.0 {
        GradientsParams::from_grads(loss.backward(), &net)
    } else {
        let mut grads = GradientsParams::from_grads(loss.mul_scalar(loss_scale).backward(), &net);
        net.visit(&mut Unscale { grads: &mut grads, factor: 1.0 / loss_scale });
        grads
    };
    let mut grads = grads;
    crate::distributed::gradients::average(crate::distributed::world(), &net, &mut grads, b, global);
    let net = optim.step(lr, net, grads);
    (net, StepReadings { values, batch: b })
}

/// Divides every parameter's gradient by the loss scale.
struct Unscale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Unscale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}
