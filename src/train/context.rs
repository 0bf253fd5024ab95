//! A run's context: its config, the prepared data sets and augmenters, and the device. Built
//! once per training run and once per command that loads a trained run.

use std::sync::Arc;

use burn::tensor::Device;

use crate::config::ExperimentConfig;
use crate::data::ImageSet;
use crate::data::augment::Augmenter;
use crate::data::card::DatasetCard;
use crate::data::source::{PreparedData, prepare};
use crate::error::Result;
use crate::metrics::ShotBuckets;
use crate::train::evaluate::Evaluator;

/// Everything the epoch loop (and evaluation of a trained run) needs besides the model.
pub struct Context {
    /// The run's config.
    pub cfg: ExperimentConfig,
    /// Training images per class: the prior and the shot buckets.
    pub train_counts: Vec<usize>,
    /// The long-tailed training set.
    pub train: Arc<ImageSet>,
    /// The balanced test set.
    pub test: Arc<ImageSet>,
    /// The balanced validation set, when the config sets one aside.
    pub val: Option<Arc<ImageSet>>,
    /// Training-time augmentation (crop, flip, AutoAugment, Cutout) and normalisation.
    pub train_aug: Arc<Augmenter>,
    /// Evaluation: normalisation only.
    pub eval_aug: Arc<Augmenter>,
    /// Many / medium / few thresholds.
    pub buckets: ShotBuckets,
    /// The plain (no-autodiff) device evaluation runs on.
    pub device: Device,
}

impl Context {
    /// The class names in label order, for legends and tables (`class N` where the dataset's
    /// names cannot be read).
    pub fn class_names(&self) -> Vec<String> {
        let c = self.train_counts.len();
        crate::data::class_names::class_names(&self.cfg.data, c).unwrap_or_else(|_| (0..c).map(|i| format!("class {i}")).collect())
    }

    /// What a model trained in this context knows of its data (stored as the run's
    /// `dataset.json`).
    pub fn dataset_card(&self) -> Result<DatasetCard> {
        let names = crate::data::class_names::class_names(&self.cfg.data, self.train.num_classes)?;
        Ok(DatasetCard::new(names, &self.train, &self.train_counts, &self.eval_aug.mean, &self.eval_aug.std))
    }

    /// How this run evaluates, at logit-adjustment strength `tau`.
    pub fn evaluator(&self, tau: f64) -> Evaluator<'_> {
        Evaluator {
            aug: &self.eval_aug,
            batch_size: self.cfg.eval.batch_size,
            device: &self.device,
            train_counts: &self.train_counts,
            tau,
            buckets: self.buckets,
        }
    }
}

/// Prepares the data of `cfg` and the evaluation context around it.
pub fn context_for(cfg: &ExperimentConfig, device: Device) -> Result<Context> {
    let data = prepare(&cfg.data, cfg.seed)?;
    Ok(context(cfg.clone(), data, device))
}

/// Builds the augmenters and shared sets of a prepared dataset.
pub(crate) fn context(cfg: ExperimentConfig, data: PreparedData, device: Device) -> Context {
    let PreparedData { train, val, test, train_counts, mean, std } = data;
    let train_aug = Augmenter {
        mean,
        std,
        crop_padding: cfg.data.crop_padding,
        flip: cfg.data.flip,
        autoaugment: cfg.data.autoaugment,
        cutout: cfg.data.cutout,
    };
    let eval_aug = Augmenter { crop_padding: 0, flip: false, autoaugment: false, cutout: 0, ..train_aug.clone() };
    Context {
        buckets: ShotBuckets { many: cfg.data.many_threshold, few: cfg.data.few_threshold },
        train: Arc::new(train),
        test: Arc::new(test),
        val: (!val.is_empty()).then(|| Arc::new(val)),
        train_aug: Arc::new(train_aug),
        eval_aug: Arc::new(eval_aug),
        train_counts,
        cfg,
        device,
    }
}
