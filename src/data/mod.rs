//! Data: file formats, the in-memory image set, long-tail sampling, augmentation and the loader.

pub mod augment;
pub mod autoaugment;
pub mod card;
pub mod cifar;
pub mod cifar_files;
pub mod cifar_pickle;
pub mod class_names;
pub mod config;
pub mod decode;
pub mod defaults;
pub mod folder;
pub mod idx;
pub mod image_folder;
pub mod image_set;
pub mod loader;
pub mod long_tail;
pub mod model_input;
pub mod resize;
pub mod sampler;
pub mod source;
pub mod split_file;
pub mod unimix;

pub use image_set::ImageSet;
