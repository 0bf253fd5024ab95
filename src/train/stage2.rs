//! Two-stage methods on a trained run: the backbone is frozen, features (or logits) are
//! extracted once, and only a small classifier-side module is trained with its own sampler.
//!
//! - cRT (Kang et al., ICLR 2020): a fresh linear classifier, class-balanced sampling, CE.
//! - LWS (Kang et al.): one learned scale per class on the frozen logits, class-balanced, CE.
//! - MARC (Wang et al. 2021): z'_j = ω_j·z_j + β_j·‖w_j‖ (ω = 1, β = 0 at the start), trained with
//!   Balanced Softmax on instance-balanced batches (our reading of the paper: its calibration is
//!   fit with a prior-aware loss; not checked against its released code).
//!
//! Simplification: features come from un-augmented training images (one pass), rather than a
//! forward pass of augmented images every stage-2 epoch.

use std::sync::Arc;

use burn::module::{Module, Param};
use burn::nn::LinearConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::ImageSet;
use crate::data::loader::epoch_seed;
use crate::data::sampler::Sampler;
use crate::error::{RblError, Result};
use crate::head::host_linalg::Mat;
use crate::loss::cross_entropy::mean_cross_entropy;
use crate::loss::{Criterion, LossConfig, LossInputs, LossKind};
use crate::report::EvalSummary;
use crate::train::checkpoint::weights_digest;
use crate::train::evaluate::{forward_all, summarize};
use crate::train::optimizer::build_optimizer;
use crate::train::schedule::learning_rate;
use crate::train::trained_run::TrainedRun;

/// Which two-stage method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stage2 {
    /// Classifier re-training.
    Crt,
    /// Learnable weight scaling.
    Lws,
    /// Margin calibration.
    Marc,
}

/// Stage-2 training settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage2Options {
    /// Epochs over the training set.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Peak learning rate (cosine to 0, no warm-up).
    pub lr: f64,
}

/// What a stage-2 run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage2Result {
    /// The method.
    pub method: Stage2,
    /// Its settings.
    pub options: Stage2Options,
    /// Learned per-class parameters (LWS: scales; MARC: ω then β; cRT: empty).
    pub per_class: Vec<Vec<f32>>,
    /// Test scores of the calibrated model (τ of the run for `adjusted`).
    pub test: EvalSummary,
    /// Digest of the frozen network's weights before and after: equal, or the run is refused.
    pub backbone_crc32: u32,
}

#[derive(Module, Debug)]
struct Scales {
    s: Param<Tensor<1>>,
}

#[derive(Module, Debug)]
struct Marc {
    omega: Param<Tensor<1>>,
    beta: Param<Tensor<1>>,
}

/// Runs `method` on a trained run.
pub fn run_stage2(run: &TrainedRun, method: Stage2, opts: &Stage2Options) -> Result<Stage2Result> {
    let (ctx, net) = (&run.ctx, &run.net);
    let (cfg, device) = (&ctx.cfg, &ctx.device);
    let before = weights_digest(net);
    let counts = ctx.train_counts.clone();
    let c = counts.len();

    // Frozen network outputs, once: features for cRT, logits for LWS / MARC.
    let outputs = |set: &Arc<ImageSet>| -> Result<Vec<f32>> {
        let pass = forward_all(net, set, &ctx.eval_aug, cfg.eval.batch_size, device, method == Stage2::Crt)?;
        Ok(if method == Stage2::Crt { pass.features } else { pass.logits })
    };
    let (train_out, test_out) = (outputs(&ctx.train)?, outputs(&ctx.test)?);
    let width = train_out.len() / ctx.train.len();
    let ad = device.clone().autodiff();
    let to_tensor = |rows: &[f32], n: usize| -> Tensor<2> { crate::transfer::upload_vec(rows.to_vec(), [n, width], &ad) };
    let train_cfg =
        crate::train::config::TrainConfig { epochs: opts.epochs, lr: opts.lr, warmup_epochs: 0, weight_decay: 5e-4, ..cfg.train.clone() };
    let mut optim = build_optimizer(&train_cfg);
    let (sampler, loss) = match method {
        Stage2::Crt | Stage2::Lws => (Sampler::ClassBalanced, LossConfig::default()),
        Stage2::Marc => (Sampler::Instance, LossConfig { name: LossKind::BalancedSoftmax, ..Default::default() }),
    };
    let criterion = Criterion::new(&loss, &counts)?;
    let w_norm: Vec<f32> = Mat::from_tensor(net.head.class_directions()).column_norms().into_iter().map(|n| n as f32).collect();
    let w_norm_t = |dev: &Device| -> Tensor<1> { crate::transfer::upload_vec(w_norm.clone(), [c], dev) };

    // Index-only "image set" so the usual samplers draw the stage-2 batches.
    let labels_only = Arc::new(ImageSet {
        pixels: vec![0; ctx.train.len()],
        labels: ctx.train.labels.clone(),
        num_classes: c,
        channels: 1,
        height: 1,
        width: 1,
        files: None,
    });
    // cRT's fresh classifier is drawn from burn's process-wide generator: seeded from the run,
    // so the same trained run gives the same cRT result in every process.
    ad.seed(cfg.seed ^ 0x57A6E2);
    let mut crt = (method == Stage2::Crt).then(|| LinearConfig::new(width, c).init(&ad));
    let mut lws = (method == Stage2::Lws).then(|| Scales { s: Param::from_tensor(Tensor::ones([c], &ad)) });
    let mut marc = (method == Stage2::Marc)
        .then(|| Marc { omega: Param::from_tensor(Tensor::ones([c], &ad)), beta: Param::from_tensor(Tensor::zeros([c], &ad)) });
    for epoch in 0..opts.epochs {
        let lr = learning_rate(&train_cfg, epoch);
        let mut rng = ChaCha8Rng::seed_from_u64(epoch_seed(cfg.seed ^ 0x57A6E2, epoch));
        let order = sampler.epoch_order(&labels_only, &mut rng);
        for batch in order.chunks(opts.batch_size) {
            let rows: Vec<f32> = batch.iter().flat_map(|&i| train_out[i * width..(i + 1) * width].iter().cloned()).collect();
            let labels: Vec<i64> = batch.iter().map(|&i| ctx.train.labels[i] as i64).collect();
            let x = to_tensor(&rows, batch.len());
            if let Some(m) = crt.take() {
                let l = criterion.forward(&LossInputs::logits(m.forward(x)), &labels, epoch);
                let g = GradientsParams::from_grads(l.backward(), &m);
                crt = Some(optim.step(lr, m, g));
            } else if let Some(m) = lws.take() {
                let l = criterion.forward(&LossInputs::logits(x * m.s.val().reshape([1, c])), &labels, epoch);
                let g = GradientsParams::from_grads(l.backward(), &m);
                lws = Some(optim.step(lr, m, g));
            } else if let Some(m) = marc.take() {
                let z = x * m.omega.val().reshape([1, c]) + (m.beta.val() * w_norm_t(&ad)).reshape([1, c]);
                let l = criterion.forward(&LossInputs::logits(z), &labels, epoch);
                let g = GradientsParams::from_grads(l.backward(), &m);
                marc = Some(optim.step(lr, m, g));
            }
        }
    }

    let n_test = ctx.test.len();
    let x: Tensor<2> = crate::transfer::upload_vec(test_out, [n_test, width], device);
    let (logits, per_class) = match method {
        Stage2::Crt => (crt.expect("trained").valid().forward(x), vec![]),
        Stage2::Lws => {
            let s = lws.expect("trained").s.val().without_autodiff();
            (x * s.clone().reshape([1, c]), vec![vec_of(s)])
        }
        Stage2::Marc => {
            let m = marc.expect("trained");
            let (o, b) = (m.omega.val().without_autodiff(), m.beta.val().without_autodiff());
            (x * o.clone().reshape([1, c]) + (b.clone() * w_norm_t(device)).reshape([1, c]), vec![vec_of(o), vec_of(b)])
        }
    };
    let host: Vec<f32> = crate::transfer::read_f32(logits);
    let loss = mean_cross_entropy(&host, &ctx.test.labels, c);
    let test = summarize(host, loss, &ctx.test, &counts, cfg.eval.tau, ctx.buckets);
    let after = weights_digest(net);
    if before != after {
        return Err(RblError::Model("stage 2 changed the frozen network".into()));
    }
    Ok(Stage2Result { method, options: opts.clone(), per_class, test, backbone_crc32: after })
}

fn vec_of(t: Tensor<1>) -> Vec<f32> {
    crate::transfer::read_f32(t)
}
