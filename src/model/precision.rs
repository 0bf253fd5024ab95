//! Mixed precision: the convolutions in 16-bit floats, everything else in f32.
//!
//! The weights stay f32 (the optimizer's "master" copy); each convolution casts its input and
//! weight to the half type, runs there, and casts its output back, so BatchNorm, the head, the
//! loss and the optimizer see f32. burn's cast is differentiable, so the backward pass runs
//! the convolution gradients in half precision too and hands f32 gradients to the weights.
//! f16 has five exponent bits: small gradients underflow to zero, which is why the loss is
//! scaled up before the backward pass and the gradients scaled back down (`train.loss_scale`).
//! bf16 has f32's exponent range and needs no scaling, where the backend has it.

use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

/// The arithmetic of the convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Convolutions in IEEE half precision.
    F16,
    /// Convolutions in bfloat16.
    Bf16,
}

impl Precision {
    /// The 16-bit type of the convolutions, or `None` for f32.
    pub fn half(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::F16 => Some(FloatDType::F16),
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }

    /// The loss scale `train.loss_scale = 0` stands for: 1024 for f16, 1 otherwise.
    pub fn default_loss_scale(self) -> f64 {
        if self == Precision::F16 { 1024.0 } else { 1.0 }
    }
}
