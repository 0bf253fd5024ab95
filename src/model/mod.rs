//! Backbones: networks that turn an image batch into a feature batch.

pub mod backbone;
pub mod config;
pub mod layers;
pub mod precision;
pub mod resnet_cifar;
pub mod resnet_imagenet;
pub mod torch_names;
pub mod weights;

pub use resnet_cifar::{ResNetCifar, ResNetCifarConfig};
pub use resnet_imagenet::{ResNetImageNet, ResNetImageNetConfig};
