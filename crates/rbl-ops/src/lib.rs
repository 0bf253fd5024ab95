//! Operations burn lacks or runs slowly on the CPU, written as kernels on plain slices and
//! plugged into burn as backend extensions with their own backward passes.
//!
//! - `halo*`: the CIFAR ResNet's CPU path. Activations live in the halo layout (channels-last
//!   with a zero ring, [`halo`]); the 3×3 convolution ([`halo_conv_cpu`], inner loops in
//!   [`halo_conv_avx512`] and [`halo_conv_stride2_avx512`]), BatchNorm + residual add + ReLU
//!   ([`halo_norm_cpu`]), the two as one training op ([`halo_conv_norm_op`]) and the blocks'
//!   option-A shortcut ([`halo_shortcut_op`]) run on it; at evaluation the whole network runs
//!   image by image in cache ([`halo_net_cpu`]).
//! - `conv2d_*`, `batch_norm_*`: the same for NCHW tensors (ResNet-50, the projection's norm).
//! - [`matmul_rows`]: a 2-D matrix product split by rows over the pool (the rotation head's
//!   d×d products), with the bits of flex's one-thread product.
//! - [`keep_freed_buffers`]: the process-wide allocator setting both rely on;
//!   [`on_kernel_pool`]: where a training step should run so that their passes fork cheaply.
//!
//! The public surface is the burn-level ops the backbones call; the slice kernels stay inside
//! (the timing programs in `dev/` reach them with `--features dev`). Every `unsafe` block of
//! rbl is in this crate, each with its SAFETY comment.

mod allocator;
mod batch_norm_cpu;
mod batch_norm_op;
mod conv2d_cpu;
mod conv2d_op;
mod cpu_common;
mod cpu_features;
mod halo;
mod halo_conv_avx512;
mod halo_conv_cpu;
mod halo_conv_norm_cpu;
mod halo_conv_norm_op;
mod halo_conv_op;
mod halo_conv_portable;
mod halo_conv_stride2_avx512;
mod halo_net_cpu;
mod halo_net_op;
mod halo_norm_cpu;
mod halo_norm_op;
mod halo_shortcut_op;
mod matmul_rows_op;
mod pool;

pub use allocator::keep_freed_buffers;
pub use batch_norm_op::{batch_norm, update_running_statistics};
pub use conv2d_op::{ConvShape, conv2d_bias_act, conv2d_square};
pub use cpu_features::{CpuFeatures, CpuLevel, LEVEL_VARIABLE, cpu_features, kernel_path, requested_level};
pub use halo::{HaloGeometry, halo_to_nchw, nchw_to_halo};
pub use halo_conv_norm_op::halo_conv_bn_train;
pub use halo_conv_op::{ConvInput, halo_conv, halo_conv_affine};
pub use halo_net_op::{EvalConv, halo_resnet_eval};
pub use halo_norm_op::{halo_affine, halo_bn_train};
pub use halo_shortcut_op::halo_shortcut_a;
pub use matmul_rows_op::matmul_rows;
pub use pool::on_kernel_pool;

/// The slice kernels behind the ops, for the timing programs in `dev/` (`--features dev`).
/// Not an API: they change with the kernels.
#[cfg(feature = "dev")]
#[doc(hidden)]
pub mod dev {
    pub use crate::conv2d_cpu::*;
    pub use crate::halo::ring_is_zero;
    pub use crate::halo_conv_avx512::{available as avx512_available, conv_image};
    pub use crate::halo_conv_cpu::*;
    pub use crate::halo_norm_cpu::*;
}

/// Whether `device` runs on the flex backend (with or without autodiff): the ops above replace
/// burn's there and defer to burn's own everywhere else.
pub fn on_flex(device: &burn::tensor::Device) -> bool {
    device.clone().without_autodiff() == burn::tensor::Device::flex()
}

/// Test helper shared by the ops' tests: the bit patterns of `v`, for comparing results that
/// must be identical (not merely close).
#[cfg(test)]
pub(crate) fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// Test helper shared by the ops' tests: max |a − b| within `tol` times the largest |b| (at
/// least 1).
#[cfg(test)]
pub(crate) fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(worst <= tol * scale, "{what}: max |diff| {worst} (scale {scale})");
}
