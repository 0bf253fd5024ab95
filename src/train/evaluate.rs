//! Evaluation of a network on a set: logits, loss, raw and adjusted accuracy.

use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use crate::data::ImageSet;
use crate::data::augment::Augmenter;
use crate::data::loader::{Loader, LoaderPlan};
use crate::error::{RblError, Result};
use crate::loss::cross_entropy::mean_cross_entropy;
use crate::metrics::accuracy::argmax_rows;
use crate::metrics::confusion::{Confusion, confusion_counts};
use crate::metrics::{ClassificationReport, ShotBuckets, adjust_logits, log_prior};
use crate::network::Network;
use crate::report::EvalSummary;

/// One pass of a frozen network over a set, in set order.
pub struct ForwardPass {
    /// Features the head sees, row-major `[N, d]` (empty unless asked for).
    pub features: Vec<f32>,
    /// Logits, row-major `[N, C]`.
    pub logits: Vec<f32>,
    /// Mean cross-entropy of the logits.
    pub loss: f64,
}

/// Runs `net` (in eval mode, `Module::valid`, on the plain `device`) over every image of `set`
/// without augmentation; keeps the features when `keep_features`.
pub fn forward_all(
    net: &Network,
    set: &Arc<ImageSet>,
    aug: &Arc<Augmenter>,
    batch_size: usize,
    device: &Device,
    keep_features: bool,
) -> Result<ForwardPass> {
    let world = crate::distributed::world();
    if world.size > 1 {
        return forward_sharded(world, net, set, aug, batch_size, device, keep_features);
    }
    forward_one(net, set, aug, batch_size, device, keep_features)
}

/// [`forward_all`] over several ranks: each scores its contiguous slice of the set, and the
/// logits (and features) are completed from every rank's, so every rank holds the whole pass.
fn forward_sharded(
    world: &crate::distributed::World,
    net: &Network,
    set: &Arc<ImageSet>,
    aug: &Arc<Augmenter>,
    batch_size: usize,
    device: &Device,
    keep_features: bool,
) -> Result<ForwardPass> {
    let range = world.shard(set.len());
    let mine: Vec<usize> = range.clone().collect();
    let part = forward_one(net, &Arc::new(set.subset(&mine)), aug, batch_size, device, keep_features)?;
    let classes = set.num_classes;
    let logits = world.gather_rows(&part.logits, range.clone(), set.len(), classes);
    let features = if keep_features {
        // The features the head sees are d-dimensional, d the rows of its directions.
        let width = net.head.class_directions().dims()[0];
        world.gather_rows(&part.features, range, set.len(), width)
    } else {
        Vec::new()
    };
    let loss = mean_cross_entropy(&logits, &set.labels, classes);
    Ok(ForwardPass { features, logits, loss })
}

/// [`forward_all`] on this process alone.
fn forward_one(
    net: &Network,
    set: &Arc<ImageSet>,
    aug: &Arc<Augmenter>,
    batch_size: usize,
    device: &Device,
    keep_features: bool,
) -> Result<ForwardPass> {
    let mut loader = Loader::start(
        set.clone(),
        aug.clone(),
        LoaderPlan {
            batch_size,
            seed: None,
            drop_last: false,
            sampler: Default::default(),
            skip: 0,
            mixup_alpha: 0.0,
            unimix_tau: None,
            workers: 4,
            shard: (0, 1),
            two_views: false,
        },
    );
    let (c, h, w) = (set.channels, set.height, set.width);
    let mut pass = ForwardPass { features: Vec::new(), logits: Vec::with_capacity(set.len() * set.num_classes), loss: 0.0 };
    // BatchNorms folded into their convolutions, and the head's directions (RBL's rotation)
    // computed once: the network is frozen for the whole pass.
    let folded = net.fold_batch_norms();
    let net = &folded;
    let directions = net.head.class_directions();
    for batch in loader.by_ref() {
        let b = batch.len();
        let x: Tensor<4> = crate::transfer::upload_vec(batch.images, [b, c, h, w], device);
        let features = net.features(x);
        let out = net.head.logits_with(features.clone(), directions.clone());
        pass.logits.extend(crate::transfer::read_f32(out));
        if keep_features {
            pass.features.extend(crate::transfer::read_f32(features));
        }
    }
    if let Some(e) = loader.failure() {
        return Err(RblError::Dataset(e));
    }
    pass.loss = mean_cross_entropy(&pass.logits, &set.labels, set.num_classes);
    Ok(pass)
}

/// Logits of every image of `set`, row-major `[N, C]`, and the mean cross-entropy.
pub fn predict(net: &Network, set: &Arc<ImageSet>, aug: &Arc<Augmenter>, batch_size: usize, device: &Device) -> Result<(Vec<f32>, f64)> {
    let pass = forward_all(net, set, aug, batch_size, device, false)?;
    Ok((pass.logits, pass.loss))
}

/// Scores logits against the set's labels, raw and adjusted by τ·log π (π from `train_counts`).
pub fn summarize(mut logits: Vec<f32>, loss: f64, set: &ImageSet, train_counts: &[usize], tau: f64, buckets: ShotBuckets) -> EvalSummary {
    let labels: Vec<usize> = set.labels.iter().map(|&l| l as usize).collect();
    let classes = train_counts.len();
    let raw_predictions = argmax_rows(&logits, classes);
    let raw = ClassificationReport::new(&raw_predictions, &labels, train_counts, buckets);
    adjust_logits(&mut logits, &log_prior(train_counts), tau);
    let adjusted_predictions = argmax_rows(&logits, classes);
    let adjusted = ClassificationReport::new(&adjusted_predictions, &labels, train_counts, buckets);
    let confusion = Confusion {
        classes,
        raw: confusion_counts(&raw_predictions, &labels, classes),
        adjusted: confusion_counts(&adjusted_predictions, &labels, classes),
    };
    EvalSummary { loss, raw, adjusted, tau, images: set.len(), confusion: Some(confusion) }
}

/// Everything an evaluation needs besides the network and the set.
pub struct Evaluator<'a> {
    /// Normalisation (no augmentation).
    pub aug: &'a Arc<Augmenter>,
    /// Images per batch.
    pub batch_size: usize,
    /// The plain device the eval-mode network lives on.
    pub device: &'a Device,
    /// Training images per class: the prior and the shot buckets.
    pub train_counts: &'a [usize],
    /// Logit-adjustment strength.
    pub tau: f64,
    /// Shot thresholds.
    pub buckets: ShotBuckets,
}

impl Evaluator<'_> {
    /// [`predict`] then [`summarize`].
    pub fn evaluate(&self, net: &Network, set: &Arc<ImageSet>) -> Result<EvalSummary> {
        let (logits, loss) = predict(net, set, self.aug, self.batch_size, self.device)?;
        Ok(summarize(logits, loss, set, self.train_counts, self.tau, self.buckets))
    }

    /// [`summarize`] of a pass already made over `set` (one that also kept its features).
    pub fn summarize_pass(&self, pass: &ForwardPass, set: &ImageSet) -> EvalSummary {
        summarize(pass.logits.clone(), pass.loss, set, self.train_counts, self.tau, self.buckets)
    }
}
