//! Operations burn lacks or runs slowly on the CPU, written as kernels on plain slices and
//! plugged into burn as backend extensions with their own backward passes.

pub mod conv2d_cpu;
pub mod conv2d_op;
pub mod precision;

pub use conv2d_op::conv2d_square;
pub mod allocator;
pub mod batch_norm_cpu;
pub mod batch_norm_op;

pub use batch_norm_op::batch_norm;
