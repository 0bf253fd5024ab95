//! Operations burn lacks or runs slowly on the CPU, written as kernels on plain slices and
//! plugged into burn as backend extensions with their own backward passes.
//!
//! - `halo*`: the CIFAR ResNet's CPU path. Activations live in the halo layout (channels-last
//!   with a zero ring, [`halo`]); the 3×3 convolution ([`halo_conv_cpu`], inner loops in
//!   [`halo_conv_avx512`]) and BatchNorm + residual add + ReLU ([`halo_norm_cpu`]) run on it.
//! - `conv2d_*`, `batch_norm_*`: the same for NCHW tensors (ResNet-50, the projection's norm).
//! - [`allocator`] and [`precision`]: process-wide settings for both.

pub mod allocator;
pub mod batch_norm_cpu;
pub mod batch_norm_op;
pub mod conv2d_cpu;
pub mod conv2d_op;
mod cpu_common;
pub mod halo;
pub mod halo_conv_avx512;
pub mod halo_conv_cpu;
pub mod halo_conv_op;
pub mod halo_norm_cpu;
pub mod halo_norm_op;
pub mod precision;

pub use batch_norm_op::batch_norm;
pub use conv2d_op::conv2d_square;

/// Whether `device` runs on the flex backend (with or without autodiff): the ops above replace
/// burn's there and defer to burn's own everywhere else.
pub(crate) fn on_flex(device: &burn::tensor::Device) -> bool {
    device.clone().without_autodiff() == burn::tensor::Device::flex()
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
