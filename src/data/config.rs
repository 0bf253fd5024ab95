//! The `[data]` section of a config: which dataset, how it is made long-tailed, how it is
//! augmented and sampled.

use serde::{Deserialize, Serialize};

use crate::data::long_tail::CountRule;
use crate::data::sampler::Sampler;

/// The datasets rbl reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetKind {
    /// Fashion-MNIST, IDX files (gzipped or not).
    #[serde(rename = "fashion-mnist")]
    FashionMnist,
    /// MNIST, IDX files.
    #[serde(rename = "mnist")]
    Mnist,
    /// CIFAR-10: binary files, torchvision's pickles, or its `.tar.gz` (found from `root`).
    #[serde(rename = "cifar10")]
    Cifar10,
    /// CIFAR-100: binary files, torchvision's pickles, or its `.tar.gz` (found from `root`).
    #[serde(rename = "cifar100")]
    Cifar100,
    /// Images in a folder listed by split files (ImageNet-LT, Places-LT, iNaturalist).
    #[serde(rename = "folder")]
    Folder,
    /// torchvision's ImageFolder tree: `train/<class>/…`, `test/` or `val/` (JPEG, PNG, WebP).
    #[serde(rename = "image-folder")]
    ImageFolder,
}

/// How training images are augmented (and, for image files, brought to the input size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Augment {
    /// Chosen from the data: `cifar` for the built-in datasets and for image-folder trees of
    /// small images (at most 64 px, one size), `imagenet` for larger image files.
    #[default]
    Auto,
    /// Images held in memory at `data.image_size` (their own size when they have it), padded
    /// by `data.crop_padding` and randomly cropped back, flipped (`data.flip`), optionally
    /// AutoAugment and Cutout: the CIFAR recipe.
    Cifar,
    /// Images decoded from disk each epoch: RandomResizedCrop (8–100 % of the area, aspect
    /// 3/4–4/3) to `data.image_size` and flip for training; resize to size·8/7 and centre crop
    /// for evaluation: the ImageNet recipe.
    Imagenet,
}

/// What a missing or undecodable image of a `folder` dataset does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadImages {
    /// Stop, naming the image.
    #[default]
    Error,
    /// Leave it out and count it.
    Skip,
}

/// Which images, how imbalanced, how augmented.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Which dataset ([`DatasetKind`]).
    pub dataset: DatasetKind,
    /// Where the dataset is: the folder with the IDX files (gzipped or not); for CIFAR the
    /// folder with the binary or pickled batches, the folder holding torchvision's
    /// `cifar-10-batches-py/` or `cifar-10-python.tar.gz`, or the archive itself; for
    /// `image-folder` the folder holding `train/` and `test/` (or `val/`); for `folder` the
    /// folder the split files' paths are relative to.
    pub root: String,
    /// Imbalance ratio n_max / n_min (1 … 500). For `image-folder`, 1 uses `train/` as it is.
    pub imbalance_ratio: f64,
    /// Images of the head class; 0 means the per-class count of the training pool.
    pub n_max: usize,
    /// Rounding of the long-tail counts: `standard` (int) or `official-rbl` (ceil, the paper's code).
    pub counts: CountRule,
    /// Balanced validation images per class, set aside before the long-tail subsampling (0 = none).
    pub val_per_class: usize,
    /// Test images per class to evaluate on (0 = the whole balanced test set).
    pub test_per_class: usize,
    /// Zero padding for the random crop (0 disables the crop).
    pub crop_padding: usize,
    /// `folder` datasets: split file of the training images (`path label` lines, paths
    /// relative to `root`), e.g. ImageNet_LT_train.txt.
    pub train_split: String,
    /// `folder` datasets: split file of the test images.
    pub test_split: String,
    /// `folder` datasets: split file of the validation images (optional; used for selection).
    pub val_split: String,
    /// `folder` datasets: number of classes (1000 for ImageNet-LT).
    pub num_classes: usize,
    /// Image files (`folder`, `image-folder`): side of the square input. 0 = from the data:
    /// an image-folder tree's own size for small images, else 224 or the images' median shorter
    /// side when smaller (printed when training starts); 224 for `folder` datasets.
    pub image_size: usize,
    /// How training images are augmented: `auto`, `cifar` or `imagenet` ([`Augment`]).
    pub augment: Augment,
    /// `image-folder` trees trained `cifar` style: 1 (grey) or 3 (RGB) channels; 0 = from the
    /// data (grey when every training image is).
    pub channels: usize,
    /// Loader threads: decoding (`folder` datasets) and augmentation; the batches do not
    /// depend on the count.
    pub workers: usize,
    /// `folder` datasets: `error` stops at a missing or undecodable image, naming it; `skip`
    /// leaves missing files out of the training and test sets and skips training images that
    /// fail to decode, counting them in the epoch log.
    pub bad_images: BadImages,
    /// Per-channel normalisation mean on the 0–1 scale (empty: the training set's own).
    pub mean: Vec<f32>,
    /// Per-channel normalisation standard deviation on the 0–1 scale (empty: the training set's).
    pub std: Vec<f32>,
    /// AutoAugment's CIFAR-10 policy (25 sub-policies) after crop and flip.
    pub autoaugment: bool,
    /// Cutout hole side in pixels (0 = off; the paper's code uses 16 on CIFAR).
    pub cutout: usize,
    /// Random horizontal flip during training.
    pub flip: bool,
    /// How epochs sample the training set: `instance`, `class_balanced` or `sqrt`.
    pub sampler: Sampler,
    /// Classes with more than this many training images are "many-shot".
    pub many_threshold: usize,
    /// Classes with fewer than this many training images are "few-shot".
    pub few_threshold: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::FashionMnist,
            root: "/usr/share/datasets/fashion-mnist".into(),
            imbalance_ratio: 100.0,
            n_max: 0,
            counts: CountRule::Standard,
            val_per_class: 0,
            test_per_class: 0,
            crop_padding: 4,
            flip: true,
            train_split: String::new(),
            test_split: String::new(),
            val_split: String::new(),
            num_classes: 0,
            image_size: 0,
            augment: Augment::Auto,
            channels: 0,
            workers: 4,
            bad_images: BadImages::Error,
            mean: Vec::new(),
            std: Vec::new(),
            autoaugment: false,
            cutout: 0,
            sampler: Sampler::Instance,
            many_threshold: 100,
            few_threshold: 20,
        }
    }
}

impl DataConfig {
    /// Takes the values a run resolved from its data (`stored`, its config) for the keys this
    /// config leaves to rbl: a resumed run keeps what it started with.
    pub fn adopt_resolved(&mut self, stored: &DataConfig) {
        if self.image_size == 0 {
            self.image_size = stored.image_size;
        }
        if self.augment == Augment::Auto {
            self.augment = stored.augment;
        }
        if self.channels == 0 {
            self.channels = stored.channels;
        }
        if self.mean.is_empty() && self.std.is_empty() && self.dataset == DatasetKind::ImageFolder {
            (self.mean, self.std) = (stored.mean.clone(), stored.std.clone());
        }
    }

    /// The input side of a split-file dataset: `image_size`, or ImageNet's 224 for 0.
    pub fn file_image_size(&self) -> usize {
        if self.image_size == 0 { crate::data::defaults::IMAGENET_SIDE } else { self.image_size }
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::config::variant_name(self))
    }
}
