//! Data: file formats, the in-memory image set, long-tail sampling, augmentation and the loader.

pub mod augment;
pub mod cifar;
pub mod image_set;
pub mod idx;
pub mod loader;
pub mod long_tail;
pub mod sampler;
pub mod source;

pub use image_set::ImageSet;
