//! The backbone a config names: the CIFAR ResNet (`resnet32`, any widths) or a bottleneck
//! ImageNet net (`resnet50`, `resnext50_32x4d`) for 224-px input.

use burn::tensor::Device;

use crate::error::{RblError, Result};
use crate::model::{ResNetCifar, ResNetCifarConfig, ResNetImageNet, ResNetImageNetConfig};

/// Backbone names `model.backbone` accepts.
pub const BACKBONES: [&str; 3] = ["resnet32", "resnet50", "resnext50_32x4d"];

/// Builds backbone `name` for `in_channels`-channel input; `widths` shape the CIFAR ResNet,
/// `feature_dim` > 0 adds a linear projection. Returns (CIFAR net, ImageNet net), exactly one
/// set, and the feature size.
///
/// The network holds the two as optional fields rather than one enum module: burn's derived
/// enum modules put the variant's name into every parameter's record path, which would have made
/// checkpoints written before the ImageNet backbones existed unloadable. `Option` is transparent
/// in the path, so the CIFAR ResNet's parameters keep their names (`backbone.stem.weight`, …).
pub fn build_backbone(
    name: &str,
    in_channels: usize,
    widths: [usize; 3],
    feature_dim: usize,
    device: &Device,
) -> Result<((Option<ResNetCifar>, Option<ResNetImageNet>), usize)> {
    Ok(match name {
        "resnet32" => {
            let cfg = ResNetCifarConfig::new(in_channels, widths).with_feature_dim(feature_dim);
            ((Some(cfg.init(device)), None), cfg.output_dim())
        }
        "resnet50" | "resnext50_32x4d" => {
            let cfg = if name == "resnet50" {
                ResNetImageNetConfig::resnet50(in_channels)
            } else {
                ResNetImageNetConfig::resnext50_32x4d(in_channels)
            };
            let cfg = cfg.with_feature_dim(feature_dim);
            ((None, Some(cfg.init(device))), cfg.output_dim())
        }
        other => return Err(RblError::Model(format!("unknown backbone '{other}' ({})", BACKBONES.join(", ")))),
    })
}
