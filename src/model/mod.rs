//! Backbones: networks that turn an image batch into a feature batch.

pub mod resnet_cifar;

pub use resnet_cifar::{ResNetCifar, ResNetCifarConfig};
