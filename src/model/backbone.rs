//! The backbone a config names: the CIFAR ResNet (`resnet32`, any widths) or a bottleneck
//! ImageNet net (`resnet50`, `resnext50_32x4d`) for 224-px input.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{ResNetCifar, ResNetCifarConfig, ResNetImageNet, ResNetImageNetConfig};

/// Which backbone (`model.backbone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum BackboneKind {
    /// The CIFAR ResNet of He et al. with five basic blocks per stage (`model.widths`).
    #[default]
    #[serde(rename = "resnet32")]
    #[value(name = "resnet32")]
    Resnet32,
    /// ResNet-50 for 224-px input.
    #[serde(rename = "resnet50")]
    #[value(name = "resnet50")]
    Resnet50,
    /// ResNeXt-50 32×4d for 224-px input (the paper's ImageNet-LT backbone).
    #[serde(rename = "resnext50_32x4d")]
    #[value(name = "resnext50_32x4d")]
    Resnext50_32x4d,
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::config::variant_name(self))
    }
}

/// Builds backbone `kind` for `in_channels`-channel input; `widths` shape the CIFAR ResNet,
/// `feature_dim` > 0 adds a linear projection. Returns (CIFAR net, ImageNet net), exactly one
/// set, and the feature size.
///
/// The network holds the two as optional fields rather than one enum module: burn's derived
/// enum modules put the variant's name into every parameter's record path, which would have made
/// checkpoints written before the ImageNet backbones existed unloadable. `Option` is transparent
/// in the path, so the CIFAR ResNet's parameters keep their names (`backbone.stem.weight`, …).
#[allow(clippy::type_complexity)]
pub fn build_backbone(
    kind: BackboneKind,
    in_channels: usize,
    widths: [usize; 3],
    feature_dim: usize,
    device: &Device,
) -> Result<((Option<ResNetCifar>, Option<ResNetImageNet>), usize)> {
    Ok(match kind {
        BackboneKind::Resnet32 => {
            let cfg = ResNetCifarConfig::new(in_channels, widths).with_feature_dim(feature_dim);
            ((Some(cfg.init(device)), None), cfg.output_dim())
        }
        BackboneKind::Resnet50 | BackboneKind::Resnext50_32x4d => {
            let cfg = if kind == BackboneKind::Resnet50 {
                ResNetImageNetConfig::resnet50(in_channels)
            } else {
                ResNetImageNetConfig::resnext50_32x4d(in_channels)
            };
            let cfg = cfg.with_feature_dim(feature_dim);
            ((None, Some(cfg.init(device))), cfg.output_dim())
        }
    })
}
