//! Human-readable class names (`rbl predict`): the datasets' published label names, an
//! image-folder tree's folder names, `class N` for split-file datasets (their split files
//! carry numbers only).

use std::path::Path;

use crate::data::config::{DataConfig, DatasetKind};
use crate::error::Result;

/// Fashion-MNIST's labels 0–9 (Xiao et al. 2017).
pub const FASHION_MNIST: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// CIFAR-10's `label_names` (batches.meta).
pub const CIFAR10: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// CIFAR-100's `fine_label_names` (meta), in label order.
pub const CIFAR100: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// The names of the `num_classes` classes of the dataset `cfg` describes.
pub fn class_names(cfg: &DataConfig, num_classes: usize) -> Result<Vec<String>> {
    let fixed = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
    let names: Vec<String> = match cfg.dataset {
        DatasetKind::FashionMnist => fixed(&FASHION_MNIST),
        DatasetKind::Mnist => (0..10).map(|d| d.to_string()).collect(),
        DatasetKind::Cifar10 => fixed(&CIFAR10),
        DatasetKind::Cifar100 => fixed(&CIFAR100),
        DatasetKind::ImageFolder => crate::data::image_folder::class_names(Path::new(&cfg.root))?,
        DatasetKind::Folder => Vec::new(),
    };
    if names.len() == num_classes { Ok(names) } else { Ok((0..num_classes).map(|c| format!("class {c}")).collect()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_complete_and_in_label_order() {
        assert_eq!(CIFAR100.len(), 100);
        let mut sorted = CIFAR100;
        sorted.sort();
        assert_eq!(sorted, CIFAR100, "CIFAR-100's fine labels are numbered alphabetically");
        assert_eq!((CIFAR100[0], CIFAR100[99]), ("apple", "worm"));
        let cfg = DataConfig { dataset: DatasetKind::Folder, ..DataConfig::default() };
        assert_eq!(class_names(&cfg, 3).unwrap(), vec!["class 0", "class 1", "class 2"]);
        let cfg = DataConfig::default();
        assert_eq!(class_names(&cfg, 10).unwrap()[9], "Ankle boot");
    }
}
