//! The classifier a run trains: backbone then head.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor};

use crate::config::ExperimentConfig;
use crate::error::{RblError, Result};
use crate::head::{Head, HeadKind, l2_normalize};
use crate::model::{ResNetCifar, ResNetCifarConfig};

/// Backbone + head: images to logits.
#[derive(Module, Debug)]
pub struct Network {
    /// Feature extractor.
    pub backbone: ResNetCifar,
    /// BatchNorm1d applied to the feature before L2 normalisation (the "Fixed" paper's
    /// feature; `model.feature_bn_l2`).
    pub feature_norm: Option<BatchNorm>,
    /// Classifier.
    pub head: Head,
}

impl Network {
    /// Builds a freshly initialised network for `cfg` (the caller seeds the device).
    pub fn from_config(cfg: &ExperimentConfig, in_channels: usize, classes: usize, device: &Device) -> Result<Network> {
        let kind = HeadKind::parse(&cfg.model.head).ok_or_else(|| RblError::Model(format!("unknown head '{}'", cfg.model.head)))?;
        let backbone_cfg = ResNetCifarConfig::new(in_channels, cfg.model.widths).with_feature_dim(cfg.model.feature_dim);
        let head = Head::new(kind, backbone_cfg.output_dim(), classes, cfg.seed, cfg.device == "cpu", device)?.with_cosine(cfg.model.cosine);
        let feature_norm = cfg.model.feature_bn_l2.then(|| BatchNormConfig::new(backbone_cfg.output_dim()).init(device));
        Ok(Network { backbone: backbone_cfg.init(device), feature_norm, head })
    }

    /// Images `[B, C, H, W]` to logits `[B, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.features(images))
    }

    /// Images to the features the head sees `[B, d]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let f = self.backbone.forward(images);
        match &self.feature_norm {
            Some(bn) => l2_normalize(bn.forward(f), 1),
            None => f,
        }
    }
}
