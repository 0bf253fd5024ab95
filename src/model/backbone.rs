//! The backbone a config names: the CIFAR ResNet (`resnet32`, any widths) or a bottleneck
//! ImageNet net (`resnet50`, `resnext50_32x4d`) for 224-px input, behind one [`Backbone`].
//!
//! Adding a backbone: its module in its own file (a burn `Module` with `forward(images) →
//! features` and `fold_batch_norms()`), a [`BackboneKind`] variant, a [`Backbone`] variant,
//! its arm in [`Backbone::build`], and one line in each of the two `each_*!` macros below.
//! `Network`, the heads and the kernels stay as they are.

use burn::module::{Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::config::ProjectionInit;
use crate::model::precision::Precision;
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

/// What a backbone is built from besides its kind.
#[derive(Debug, Clone, Copy)]
pub struct BackboneShape {
    /// Input channels (1 for grey, 3 for colour).
    pub in_channels: usize,
    /// Stage widths of the CIFAR ResNet.
    pub widths: [usize; 3],
    /// Linear projection of the pooled feature to this size (0: none).
    pub feature_dim: usize,
    /// Arithmetic of the convolutions.
    pub precision: Precision,
    /// Initialisation of the CIFAR ResNet's projection.
    pub projection_init: ProjectionInit,
}

/// A feature extractor: images `[B, C, H, W]` to features `[B, d]`.
///
/// A burn module whose record paths are those of the network inside it (it enters no
/// sub-module of its own, as `Option` does not), so the CIFAR ResNet's parameters keep the names
/// older checkpoints have (`backbone.stem.weight`, …).
#[derive(Debug, Clone)]
pub enum Backbone {
    /// The CIFAR ResNet.
    ResNetCifar(ResNetCifar),
    /// ResNet-50 / ResNeXt-50.
    ResNetImageNet(ResNetImageNet),
}

/// `$body` with `$m` bound to the inner network, whichever it is.
macro_rules! each_backbone {
    ($value:expr, $m:ident => $body:expr) => {
        match $value {
            Backbone::ResNetCifar($m) => $body,
            Backbone::ResNetImageNet($m) => $body,
        }
    };
}

/// A new backbone of the same variant, from `$body` with `$m` bound to the inner network.
macro_rules! each_backbone_map {
    ($value:expr, $m:ident => $body:expr) => {
        match $value {
            Backbone::ResNetCifar($m) => Backbone::ResNetCifar($body),
            Backbone::ResNetImageNet($m) => Backbone::ResNetImageNet($body),
        }
    };
}

impl Backbone {
    /// A freshly initialised backbone of `kind` (seed the device first) and its feature size.
    pub fn build(kind: BackboneKind, shape: BackboneShape, device: &Device) -> Result<(Backbone, usize)> {
        Ok(match kind {
            BackboneKind::Resnet32 => {
                let cfg = ResNetCifarConfig::new(shape.in_channels, shape.widths)
                    .with_feature_dim(shape.feature_dim)
                    .with_projection_init(shape.projection_init)
                    .with_precision(shape.precision);
                (Backbone::ResNetCifar(cfg.init(device)), cfg.output_dim())
            }
            BackboneKind::Resnet50 | BackboneKind::Resnext50_32x4d => {
                let cfg = if kind == BackboneKind::Resnet50 {
                    ResNetImageNetConfig::resnet50(shape.in_channels)
                } else {
                    ResNetImageNetConfig::resnext50_32x4d(shape.in_channels)
                };
                let cfg = cfg.with_feature_dim(shape.feature_dim).with_precision(shape.precision);
                (Backbone::ResNetImageNet(cfg.init(device)), cfg.output_dim())
            }
        })
    }

    /// Images `[B, C, H, W]` to features `[B, d]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        each_backbone!(self, m => m.forward(images))
    }

    /// The eval-mode backbone with its BatchNorms folded into the convolutions.
    pub fn fold_batch_norms(&self) -> Backbone {
        each_backbone_map!(self, m => m.fold_batch_norms())
    }
}

impl Module for Backbone {
    fn collect_devices(&self, devices: Devices) -> Devices {
        each_backbone!(self, m => m.collect_devices(devices))
    }

    fn fork(self, device: &Device) -> Self {
        each_backbone_map!(self, m => m.fork(device))
    }

    fn to_device(self, device: &Device) -> Self {
        each_backbone_map!(self, m => m.to_device(device))
    }

    fn train(self) -> Self {
        each_backbone_map!(self, m => m.train())
    }

    fn valid(&self) -> Self {
        each_backbone_map!(self, m => m.valid())
    }

    fn materialize(self) -> Self {
        each_backbone_map!(self, m => m.materialize())
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        each_backbone!(self, m => m.visit(visitor))
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        each_backbone_map!(self, m => m.map(mapper))
    }
}

impl ModuleDisplayDefault for Backbone {
    fn content(&self, content: Content) -> Option<Content> {
        each_backbone!(self, m => m.content(content))
    }
}

impl ModuleDisplay for Backbone {}
