//! The `[model]` section of a config: backbone and classifier head.

use serde::{Deserialize, Serialize};

use crate::head::HeadKind;
use crate::head::rotation::RotationGenerator;
use crate::model::backbone::BackboneKind;

/// How the CIFAR ResNet's projection Linear(widths[2] → feature_dim) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionInit {
    /// PyTorch's nn.Linear default, weight and bias U(±1/√fan_in): what the released code
    /// gets (its He initialisation is applied inside the ResNet only).
    #[default]
    Torch,
    /// He-normal weight and bias (std √(2/fan_in)): rbl's earlier default.
    He,
}

/// Backbone and classifier head.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Backbone: `resnet32` (CIFAR ResNet, `widths`), `resnet50` or `resnext50_32x4d` (224-px input).
    pub backbone: BackboneKind,
    /// Channel widths of the three stages.
    pub widths: [usize; 3],
    /// Linear projection to this feature dimension (0 = none, the feature is the last width).
    pub feature_dim: usize,
    /// `linear` (learned), `etf` (fixed simplex ETF, "Fixed") or `rbl` (ETF + learned rotation).
    pub head: HeadKind,
    /// Cosine logits (normalised features and class directions); LDAM's scale assumes them.
    pub cosine: bool,
    /// BatchNorm1d then L2 normalisation of the feature (the "Fixed" paper's dot-regression setup).
    pub feature_bn_l2: bool,
    /// Seed of the frame's directions (the ETF's U and RBL's base B0); unset: the run's seed.
    /// Lets an experiment change only where the fixed classifier points (`rbl experiment
    /// frame-directions`), keeping the backbone's initialisation and the data order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_seed: Option<u64>,
    /// Start from these weights instead of a fresh initialisation: a `.safetensors` or PyTorch
    /// `.pth` file under PyTorch names (torchvision's `resnet50-*.pth`, or `rbl export`'s
    /// output). What the file lacks (e.g. the projection) is initialised fresh; what the network
    /// lacks (torchvision's `fc`) is skipped; both are listed when the run starts.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub init_weights: String,
    /// RBL's rotation generator: `lower` (exp(L − Lᵀ), L = tril(A, −1), the released code) or
    /// `full` (exp(A − Aᵀ), the paper's formula; twice the step on the skew matrix under SGD).
    pub rotation_generator: RotationGenerator,
    /// Initialisation of the CIFAR ResNet's projection: `torch` (PyTorch's default, the
    /// released code's) or `he` (He-normal).
    pub projection_init: ProjectionInit,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::Resnet32,
            widths: [16, 32, 64],
            feature_dim: 256,
            head: HeadKind::Rbl,
            cosine: false,
            feature_bn_l2: false,
            frame_seed: None,
            init_weights: String::new(),
            rotation_generator: RotationGenerator::Lower,
            projection_init: ProjectionInit::Torch,
        }
    }
}
