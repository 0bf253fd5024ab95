//! Operations burn lacks or runs slowly, written as kernels on plain slices.

pub mod conv2d_cpu;
pub mod conv2d_op;

pub use conv2d_op::conv2d_square;
