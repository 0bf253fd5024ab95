//! Defaults from the data: what rbl finds in a user's image-folder tree, and what it chooses
//! for the keys left to it (`data.image_size = 0`, `data.augment = "auto"`, `data.channels =
//! 0`), with the reason and the key to change each. Printed when a run starts and stored in its
//! `dataset.json`, so nothing about the input is silent.
//!
//! The rule, for an image-folder tree (the survey reads the headers of up to 5,000 training
//! images, evenly spread; nothing is decoded):
//! - images of at most 64 px, all of one size → `cifar`: read into memory at their own size,
//!   pad-cropped and flipped as CIFAR is; grey when every one is grey;
//! - anything larger → `imagenet`: decoded each epoch, RandomResizedCrop to 224 (or to the
//!   images' median shorter side when that is smaller: upsampling adds cost, not detail).
//!
//! Built-in datasets need nothing (their format fixes the input); `folder` (split-file)
//! datasets are ImageNet-style at 224.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::config::{Augment, DataConfig, DatasetKind};
use crate::data::image_folder::{Skipped, class_names, image_files};
use crate::error::{RblError, Result};

/// The largest side of images trained `cifar` style when chosen automatically.
pub const SMALL_IMAGE_MAX_SIDE: usize = 64;

/// The input side of `imagenet`-style training when the images are at least this large.
pub const IMAGENET_SIDE: usize = 224;

/// How many training images the survey reads the headers of, at most.
const SURVEY_SAMPLE: usize = 5000;

/// What the survey of a tree found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeSurvey {
    /// The tree (`data.root`).
    pub root: PathBuf,
    /// Class folder names, sorted.
    pub classes: Vec<String>,
    /// Training images per class.
    pub train_counts: Vec<usize>,
    /// Header sizes read (the sample).
    pub sampled: usize,
    /// Smallest and largest side over the sample.
    pub min_side: usize,
    /// Largest side over the sample.
    pub max_side: usize,
    /// Median shorter side over the sample.
    pub median_short_side: usize,
    /// (width, height) when every sampled image has it.
    pub one_size: Option<(usize, usize)>,
    /// Every sampled image is grey (with or without alpha).
    pub all_grey: bool,
}

/// One choice rbl made for a key left to it, with the reason (printed and stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The config key (`data.image_size`).
    pub key: String,
    /// The value chosen, as TOML would write it.
    pub value: String,
    /// Why.
    pub why: String,
}

/// `~` or `~/…` at the start of a path, expanded from `$HOME` (TOML strings are not seen by a
/// shell, so a user's `~/data/…` would otherwise name a folder called `~`).
pub fn expand_home(path: &str) -> String {
    let home = || std::env::var("HOME").ok().filter(|h| !h.is_empty());
    match path.strip_prefix('~') {
        Some("") => home().unwrap_or_else(|| path.into()),
        Some(rest) if rest.starts_with('/') => home().map(|h| format!("{h}{rest}")).unwrap_or_else(|| path.into()),
        _ => path.into(),
    }
}

/// A hint for a `data.root` that does not hold `train/`: the root pointing inside the tree (at
/// `train/` or a class folder), or a path that does not exist.
pub fn root_hint(root: &Path) -> String {
    if !root.exists() {
        return format!("{} does not exist (data.root)", root.display());
    }
    for up in root.ancestors().skip(1).take(2) {
        if up.join("train").is_dir() {
            return format!(
                "data.root points inside the tree: set data.root = \"{}\", the folder that holds train/ and test/",
                up.display()
            );
        }
    }
    format!("{} holds no train/ folder: an image-folder tree is ROOT/train/<class>/<images> and ROOT/test/… (or val/)", root.display())
}

/// Reads the headers of up to [`SURVEY_SAMPLE`] of the tree's training images.
pub fn survey(root: &Path) -> Result<TreeSurvey> {
    if !root.join("train").is_dir() {
        return Err(RblError::Dataset(root_hint(root)));
    }
    let classes = class_names(root)?;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut train_counts = Vec::with_capacity(classes.len());
    let mut skipped = Skipped::default();
    for c in &classes {
        let before = files.len();
        image_files(&root.join("train").join(c), &mut files, &mut skipped)?;
        train_counts.push(files.len() - before);
    }
    let step = files.len().div_ceil(SURVEY_SAMPLE).max(1);
    let mut sizes = Vec::new();
    let mut all_grey = true;
    for path in files.iter().step_by(step) {
        crate::interrupt::check()?;
        // An unreadable header is left to the decode check, which names the file.
        let Some((w, h, grey)) = header(path) else { continue };
        sizes.push((w, h));
        all_grey &= grey;
    }
    if sizes.is_empty() {
        return Err(RblError::Dataset(format!("{}: no readable training image", root.join("train").display())));
    }
    let mut shorts: Vec<usize> = sizes.iter().map(|&(w, h)| w.min(h)).collect();
    shorts.sort_unstable();
    let one_size = sizes.iter().all(|s| *s == sizes[0]).then_some(sizes[0]);
    Ok(TreeSurvey {
        root: root.into(),
        classes,
        train_counts,
        sampled: sizes.len(),
        min_side: sizes.iter().map(|&(w, h)| w.min(h)).min().unwrap_or(0),
        max_side: sizes.iter().map(|&(w, h)| w.max(h)).max().unwrap_or(0),
        median_short_side: shorts[shorts.len() / 2],
        one_size,
        all_grey,
    })
}

/// Width, height and greyness from an image file's header (nothing decoded).
fn header(path: &Path) -> Option<(usize, usize, bool)> {
    use image::ImageDecoder;
    let (file, _) = crate::files::open_regular(path).ok()?;
    let decoder = image::ImageReader::new(BufReader::new(file)).with_guessed_format().ok()?.into_decoder().ok()?;
    let (w, h) = decoder.dimensions();
    let grey = matches!(
        decoder.original_color_type(),
        image::ExtendedColorType::L1
            | image::ExtendedColorType::L2
            | image::ExtendedColorType::L4
            | image::ExtendedColorType::L8
            | image::ExtendedColorType::L16
            | image::ExtendedColorType::La1
            | image::ExtendedColorType::La2
            | image::ExtendedColorType::La4
            | image::ExtendedColorType::La8
            | image::ExtendedColorType::La16
    );
    Some((w as usize, h as usize, grey))
}

/// The data keys left to rbl, filled in from `survey` (image-folder) or the dataset's recipe,
/// with one [`Choice`] per key filled. Keys the config sets are kept as they are.
pub fn resolve(cfg: &mut DataConfig, survey: Option<&TreeSurvey>) -> Vec<Choice> {
    let mut chosen = Vec::new();
    let mut choose = |key: &str, value: String, why: String| chosen.push(Choice { key: key.into(), value, why });
    match (cfg.dataset, survey) {
        (DatasetKind::ImageFolder, Some(s)) => {
            let small = s.max_side <= SMALL_IMAGE_MAX_SIDE && s.one_size.is_some();
            if cfg.augment == Augment::Auto {
                cfg.augment = if small { Augment::Cifar } else { Augment::Imagenet };
                let why = if small {
                    format!("images of at most {SMALL_IMAGE_MAX_SIDE} px, one size: held in memory, pad-crop + flip as for CIFAR")
                } else {
                    format!(
                        "images of {}–{} px{}: decoded each epoch, RandomResizedCrop + flip as for ImageNet",
                        s.min_side,
                        s.max_side,
                        if s.one_size.is_none() { " in several sizes" } else { "" }
                    )
                };
                choose("data.augment", format!("{:?}", crate::config::variant_name(&cfg.augment)), why);
            }
            if cfg.image_size == 0 {
                let (size, why) = match (cfg.augment, s.one_size) {
                    (Augment::Cifar, Some((w, h))) => (w.max(h), "the images' own size".to_string()),
                    (Augment::Cifar, None) => (s.median_short_side, "the images' median shorter side".into()),
                    _ if s.median_short_side >= IMAGENET_SIDE => (IMAGENET_SIDE, "ImageNet's input size".into()),
                    _ => (s.median_short_side, format!("the images' median shorter side (smaller than {IMAGENET_SIDE}: no upsampling)")),
                };
                cfg.image_size = size.max(8);
                choose("data.image_size", cfg.image_size.to_string(), why);
            }
            if cfg.channels == 0 {
                let grey = cfg.augment == Augment::Cifar && s.all_grey;
                cfg.channels = if grey { 1 } else { 3 };
                let why = if grey {
                    "every sampled training image is grey"
                } else if cfg.augment == Augment::Cifar {
                    "the images have colour"
                } else {
                    "images decoded from disk are RGB"
                };
                choose("data.channels", cfg.channels.to_string(), why.into());
            }
            if cfg.augment == Augment::Cifar && cfg.crop_padding > 0 {
                choose("data.crop_padding", cfg.crop_padding.to_string(), "pixels of padding for the random crop (CIFAR's 4)".into());
            }
        }
        (DatasetKind::Folder, _) => {
            if cfg.augment == Augment::Auto {
                cfg.augment = Augment::Imagenet;
                choose("data.augment", "\"imagenet\"".into(), "a split-file dataset is decoded from disk each epoch".into());
            }
            if cfg.image_size == 0 {
                cfg.image_size = IMAGENET_SIDE;
                choose("data.image_size", IMAGENET_SIDE.to_string(), "ImageNet's input size".into());
            }
        }
        _ => {}
    }
    chosen
}

/// The choices as the block printed when a run starts.
pub fn describe(survey: Option<&TreeSurvey>, chosen: &[Choice], extra: &[Choice]) -> String {
    let mut out = String::new();
    if let Some(s) = survey {
        let counts = match (s.train_counts.iter().max(), s.train_counts.iter().min()) {
            (Some(a), Some(b)) => format!("{a} … {b} per class"),
            _ => String::new(),
        };
        let size = match s.one_size {
            Some((w, h)) => format!("{w} × {h} px"),
            None => format!("{}–{} px", s.min_side, s.max_side),
        };
        out += &format!(
            "data: {}: {} training images in {} classes ({counts}), {size}, {}{}\n",
            s.root.display(),
            s.train_counts.iter().sum::<usize>(),
            s.classes.len(),
            if s.all_grey { "grey" } else { "colour" },
            if s.sampled < s.train_counts.iter().sum::<usize>() { format!(" (sizes from {} of them)", s.sampled) } else { String::new() }
        );
    }
    if !chosen.is_empty() || !extra.is_empty() {
        out += "data: chosen from the data (change any with --set KEY=VALUE or in the config):\n";
        let width = chosen.iter().chain(extra).map(|c| c.key.len() + c.value.len()).max().unwrap_or(0) + 3;
        for c in chosen.iter().chain(extra) {
            let kv = format!("{} = {}", c.key, c.value);
            out += &format!("  {kv:<width$}  {}\n", c.why);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, w: u32, h: u32, grey: bool) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if grey {
            image::GrayImage::from_pixel(w, h, image::Luma([90])).save(path).unwrap();
        } else {
            image::RgbImage::from_pixel(w, h, image::Rgb([9, 99, 199])).save(path).unwrap();
        }
    }

    fn tree(dir: &Path, w: u32, h: u32, grey: bool) {
        for (c, n) in [("a", 5), ("b", 2)] {
            for i in 0..n {
                png(&dir.join(format!("train/{c}/{i}.png")), w, h, grey);
            }
            png(&dir.join(format!("test/{c}/0.png")), w, h, grey);
        }
    }

    fn cfg(root: &Path) -> DataConfig {
        DataConfig { dataset: DatasetKind::ImageFolder, root: root.display().to_string(), ..DataConfig::default() }
    }

    #[test]
    fn small_grey_images_train_like_cifar_at_their_own_size() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 28, 28, true);
        let s = survey(dir.path()).unwrap();
        assert_eq!((s.train_counts.clone(), s.one_size, s.all_grey), (vec![5, 2], Some((28, 28)), true));
        let mut c = cfg(dir.path());
        let chosen = resolve(&mut c, Some(&s));
        assert_eq!((c.augment, c.image_size, c.channels), (Augment::Cifar, 28, 1));
        let keys: Vec<&str> = chosen.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["data.augment", "data.image_size", "data.channels", "data.crop_padding"]);
        let text = describe(Some(&s), &chosen, &[]);
        assert!(text.contains("7 training images in 2 classes (5 … 2 per class), 28 × 28 px, grey"), "{text}");
        assert!(text.contains("data.image_size = 28") && text.contains("the images' own size"), "{text}");
    }

    #[test]
    fn large_images_train_like_imagenet_without_upsampling() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 160, 120, false);
        let s = survey(dir.path()).unwrap();
        let mut c = cfg(dir.path());
        resolve(&mut c, Some(&s));
        assert_eq!((c.augment, c.image_size, c.channels), (Augment::Imagenet, 120, 3));
        // What the config sets is kept.
        let mut c = DataConfig { image_size: 96, augment: Augment::Cifar, ..cfg(dir.path()) };
        let chosen = resolve(&mut c, Some(&s));
        assert_eq!((c.augment, c.image_size, c.channels), (Augment::Cifar, 96, 3));
        assert!(chosen.iter().all(|c| c.key != "data.image_size" && c.key != "data.augment"));
    }

    #[test]
    fn roots_inside_the_tree_and_home_get_help() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 8, 8, false);
        let e = survey(&dir.path().join("train")).unwrap_err().to_string();
        assert!(e.contains("points inside the tree") && e.contains(&dir.path().display().to_string()), "{e}");
        let e = survey(&dir.path().join("train/a")).unwrap_err().to_string();
        assert!(e.contains("points inside the tree"), "{e}");
        let e = survey(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let home = std::env::var("HOME").unwrap();
        assert_eq!(expand_home("~/data/x"), format!("{home}/data/x"));
        assert_eq!(expand_home("~"), home);
        assert_eq!(expand_home("/abs/~x"), "/abs/~x");
        assert_eq!(expand_home("~user/x"), "~user/x");
    }
}
