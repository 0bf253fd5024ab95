//! Finds a dataset's files on disk and builds the long-tailed training set, the optional
//! validation set and the balanced test set described by a config.

use std::path::{Path, PathBuf};

use crate::data::ImageSet;
use crate::data::cifar::Cifar;
use crate::data::cifar_files::read_cifar_dataset;
use crate::data::config::{Augment, BadImages, DataConfig, DatasetKind};
use crate::data::idx::read_idx;
use crate::data::long_tail::{first_per_class, long_tail_counts_with, sample_long_tail, split_validation};
use crate::error::{RblError, Result};

/// The three sets an experiment uses, plus what the model needs to know about them.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Long-tailed training set.
    pub train: ImageSet,
    /// Balanced validation set (empty when `val_per_class` is 0).
    pub val: ImageSet,
    /// Balanced test set.
    pub test: ImageSet,
    /// Training images per class (the prior for logit adjustment and the shot buckets).
    pub train_counts: Vec<usize>,
    /// Per-channel mean of the training pixels (0–1 scale).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the training pixels (0–1 scale).
    pub std: Vec<f32>,
}

/// Reads an IDX image file and its label file into an [`ImageSet`] of `num_classes` classes.
pub fn read_idx_pair(images: &Path, labels: &Path, num_classes: usize) -> Result<ImageSet> {
    let img = read_idx(images)?;
    let lab = read_idx(labels)?;
    if img.dims.len() != 3 {
        return Err(RblError::format(images, format!("expected 3 dimensions (N, H, W), found {:?}", img.dims)));
    }
    if lab.dims.len() != 1 {
        return Err(RblError::format(labels, format!("expected 1 dimension (N), found {:?}", lab.dims)));
    }
    if img.dims[0] != lab.dims[0] {
        return Err(RblError::format(labels, format!("{} labels for {} images in {}", lab.dims[0], img.dims[0], images.display())));
    }
    if let Some((index, &label)) = lab.data.iter().enumerate().find(|(_, l)| **l as usize >= num_classes) {
        return Err(RblError::LabelRange { path: labels.into(), label: label as i64, index, classes: num_classes });
    }
    Ok(ImageSet {
        pixels: img.data,
        labels: lab.data.iter().map(|&l| l as u32).collect(),
        num_classes,
        channels: 1,
        height: img.dims[1],
        width: img.dims[2],
        files: None,
    })
}

/// `root/name`, or `root/name.gz` if only that exists. (Whatever exists under the name is
/// returned: a FIFO or device there is refused by the read, which names what it is.)
fn find_file(root: &Path, name: &str) -> Result<PathBuf> {
    for candidate in [root.join(name), root.join(format!("{name}.gz"))] {
        if candidate.exists() && !candidate.is_dir() {
            return Ok(candidate);
        }
    }
    Err(RblError::io(
        root.join(format!("{name}[.gz]")),
        std::io::Error::new(std::io::ErrorKind::NotFound, "file not found (is the dataset installed? see README)"),
    ))
}

/// Loads the raw train and test sets the config names.
pub fn load_dataset(cfg: &DataConfig) -> Result<(ImageSet, ImageSet)> {
    let root = Path::new(&cfg.root);
    match cfg.dataset {
        DatasetKind::Cifar10 => read_cifar_dataset(root, Cifar::Ten),
        DatasetKind::Cifar100 => read_cifar_dataset(root, Cifar::Hundred),
        DatasetKind::FashionMnist | DatasetKind::Mnist => load_idx_dataset(root),
        DatasetKind::Folder | DatasetKind::ImageFolder => {
            Err(RblError::Dataset("a folder dataset is read image by image: use prepare".into()))
        }
    }
}

/// Loads the raw (balanced) train and test sets of an IDX dataset.
pub fn load_idx_dataset(root: &Path) -> Result<(ImageSet, ImageSet)> {
    let train = read_idx_pair(&find_file(root, "train-images-idx3-ubyte")?, &find_file(root, "train-labels-idx1-ubyte")?, 10)?;
    let test = read_idx_pair(&find_file(root, "t10k-images-idx3-ubyte")?, &find_file(root, "t10k-labels-idx1-ubyte")?, 10)?;
    Ok((train, test))
}

/// An on-disk set from a split file: labels in memory, images decoded when loaded. Listed
/// files that do not exist are an error naming the first few, or with `data.bad_images =
/// "skip"` are left out and counted on stderr.
pub fn folder_set(cfg: &DataConfig, split: &str) -> Result<ImageSet> {
    let root = Path::new(&cfg.root);
    let split_path = Path::new(split);
    let entries = crate::data::split_file::read_split(split_path, cfg.num_classes)?;
    let (present, missing): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| root.join(&e.path).exists());
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().take(3).map(|e| root.join(&e.path).display().to_string()).collect();
        let msg = format!("{} of {} listed images are missing (first: {})", missing.len(), missing.len() + present.len(), names.join(", "));
        if cfg.bad_images == BadImages::Error {
            return Err(RblError::format(split_path, format!("{msg}; set data.bad_images = \"skip\" to train without them")));
        }
        crate::note!("warning: {}: {msg}; skipped", split_path.display());
    }
    Ok(ImageSet {
        pixels: Vec::new(),
        labels: present.iter().map(|e| e.label).collect(),
        num_classes: cfg.num_classes,
        channels: 3,
        height: cfg.file_image_size(),
        width: cfg.file_image_size(),
        files: Some(std::sync::Arc::new(crate::data::image_set::FileImages {
            root: root.into(),
            paths: present.into_iter().map(|e| e.path).collect(),
            size: cfg.file_image_size(),
            skip_bad: cfg.bad_images == BadImages::Skip,
        })),
    })
}

/// Decodes every image of an on-disk evaluation set (`what`: "test", "validation") on
/// `workers` threads and refuses the set if any fails, naming the first few: evaluation cannot
/// skip an image, and finding it after the first epoch of a long run costs that epoch.
/// In-memory sets pass at once.
pub fn check_decodable(set: &ImageSet, what: &str, workers: usize) -> Result<()> {
    let Some(files) = &set.files else { return Ok(()) };
    let entries = files
        .paths
        .iter()
        .zip(&set.labels)
        .map(|(path, &label)| crate::data::split_file::SplitEntry { path: path.clone(), label })
        .collect();
    let folder = crate::data::folder::FolderDataset { root: files.root.clone(), entries, num_classes: set.num_classes };
    let bad = folder.check(workers, &|_| {});
    crate::interrupt::check()?;
    if bad.is_empty() {
        return Ok(());
    }
    let first: Vec<&str> = bad.iter().take(3).map(|b| b.error.as_str()).collect();
    Err(RblError::Dataset(format!(
        "{} of the {} {what} images cannot be decoded (first: {}); the {what} set is scored whole, so fix or unlist them \
         (rbl data check lists them all)",
        bad.len(),
        set.len(),
        first.join("; ")
    )))
}

/// The sets of a "folder + split files" dataset (ImageNet-LT, Places-LT, iNaturalist): already
/// long-tailed by their split, so no subsampling; the validation split is the dataset's own.
fn prepare_folder(cfg: &DataConfig) -> Result<PreparedData> {
    let train = folder_set(cfg, &cfg.train_split)?;
    let test = folder_set(cfg, &cfg.test_split)?;
    let val = if cfg.val_split.is_empty() { train.subset(&[]) } else { folder_set(cfg, &cfg.val_split)? };
    for (class, &n) in train.class_counts().iter().enumerate() {
        if n == 0 {
            return Err(RblError::Dataset(format!("class {class} has no training image in {}", cfg.train_split)));
        }
    }
    let test = if cfg.test_per_class > 0 { test.subset(&first_per_class(&test, cfg.test_per_class)) } else { test };
    let (mean, std) = normalisation(cfg, &train)?;
    Ok(PreparedData { train_counts: train.class_counts(), train, val, test, mean, std })
}

/// How many images [`sampled_channel_stats`] decodes at most.
pub const STATS_SAMPLE: usize = 2000;

/// Per-channel mean and standard deviation (0–1 scale) of an on-disk set's evaluation views,
/// from up to [`STATS_SAMPLE`] images evenly spread over it, decoded on `workers` threads; an
/// in-memory set's exact statistics. What an image-folder run of large images is normalised
/// with (stored in its config, so evaluation later uses the same numbers).
pub fn sampled_channel_stats(set: &ImageSet, workers: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let Some(files) = &set.files else { return Ok(set.channel_stats()) };
    let step = set.len().div_ceil(STATS_SAMPLE).max(1);
    let picks: Vec<usize> = (0..set.len()).step_by(step).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    // Each image's sums, then added in image order: the same numbers whatever the workers.
    let per_image: Vec<(usize, Option<[[f64; 3]; 2]>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.clamp(1, picks.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if k >= picks.len() || crate::interrupt::requested() {
                            return out;
                        }
                        // Undecodable images are left to the decode check, which names them.
                        let Ok(img) = crate::data::folder::read_image(&files.root.join(&files.paths[picks[k]])) else {
                            out.push((k, None));
                            continue;
                        };
                        let view = crate::data::folder::model_view(&img, files.size, None);
                        let plane = files.size * files.size;
                        let mut acc = [[0f64; 3]; 2];
                        for c in 0..3 {
                            for &p in &view[c * plane..(c + 1) * plane] {
                                let v = p as f64 / 255.0;
                                acc[0][c] += v;
                                acc[1][c] += v * v;
                            }
                        }
                        out.push((k, Some(acc)));
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("stats thread")).collect()
    });
    crate::interrupt::check()?;
    let mut ordered: Vec<Option<[[f64; 3]; 2]>> = vec![None; picks.len()];
    for (k, acc) in per_image {
        ordered[k] = acc;
    }
    let used: Vec<[[f64; 3]; 2]> = ordered.into_iter().flatten().collect();
    if used.is_empty() {
        return Err(RblError::Dataset("no training image could be decoded to compute the normalisation".into()));
    }
    let mut total = [[0f64; 3]; 2];
    for t in &used {
        for c in 0..3 {
            total[0][c] += t[0][c];
            total[1][c] += t[1][c];
        }
    }
    let n = (used.len() * files.size * files.size) as f64;
    let mean: Vec<f64> = (0..3).map(|c| total[0][c] / n).collect();
    let std = (0..3).map(|c| ((total[1][c] / n - mean[c] * mean[c]).max(1e-6)).sqrt() as f32).collect();
    Ok((mean.into_iter().map(|m| m as f32).collect(), std))
}

/// The configured normalisation (`data.mean` / `data.std`) or the training set's statistics.
fn normalisation(cfg: &DataConfig, train: &ImageSet) -> Result<(Vec<f32>, Vec<f32>)> {
    if cfg.mean.is_empty() && cfg.std.is_empty() {
        return Ok(train.channel_stats());
    }
    if cfg.mean.len() != train.channels || cfg.std.len() != train.channels || cfg.std.iter().any(|&s| s.is_nan() || s <= 0.0) {
        return Err(RblError::Config {
            origin: "data.mean / data.std".into(),
            msg: format!("need {} values each (one per channel), std positive", train.channels),
        });
    }
    Ok((cfg.mean.clone(), cfg.std.clone()))
}

/// Builds the experiment's sets from the config: validation split first, then the long tail.
pub fn prepare(cfg: &DataConfig, seed: u64) -> Result<PreparedData> {
    match cfg.dataset {
        DatasetKind::Folder => prepare_folder(cfg),
        DatasetKind::ImageFolder => prepare_image_folder(cfg, seed),
        _ => {
            let (pool, test) = load_dataset(cfg)?;
            prepare_from(pool, test, cfg, seed)
        }
    }
}

/// The sets of an ImageFolder tree ([`crate::data::image_folder`]): its own `val/` when it has
/// one, `train/` as it is at imbalance ratio 1, else the long tail drawn as for built-ins.
fn prepare_image_folder(cfg: &DataConfig, seed: u64) -> Result<PreparedData> {
    // A config whose input keys were left to rbl (one built in code rather than read from a
    // run) is resolved here as a new run would be.
    let resolved;
    let cfg = if cfg.image_size == 0 || cfg.augment == Augment::Auto || cfg.channels == 0 {
        let mut c = cfg.clone();
        let survey = crate::data::defaults::survey(Path::new(&c.root))?;
        crate::data::defaults::resolve(&mut c, Some(&survey));
        resolved = c;
        &resolved
    } else {
        cfg
    };
    let (pool, own_val, test) = crate::data::image_folder::read_image_folder(cfg)?;
    // `cifar` style: the images held in memory at the input size, augmented as CIFAR is.
    let (pool, own_val, test) = if cfg.augment == Augment::Cifar {
        let load = |s: &ImageSet| {
            crate::data::image_folder::into_memory(s, cfg.channels, cfg.image_size, cfg.workers, cfg.bad_images == BadImages::Skip)
        };
        (load(&pool)?, own_val.as_ref().map(load).transpose()?, load(&test)?)
    } else {
        (pool, own_val, test)
    };
    let config_error = |key: &str, msg: String| RblError::Config { origin: key.into(), msg };
    if cfg.num_classes != 0 && cfg.num_classes != pool.num_classes {
        return Err(config_error(
            "data.num_classes",
            format!("{} but {}/train has {} class folders (leave it 0 for image-folder)", cfg.num_classes, cfg.root, pool.num_classes),
        ));
    }
    if own_val.is_some() && cfg.val_per_class > 0 {
        return Err(config_error("data.val_per_class", format!("{} has its own val/ split beside test/: set it to 0", cfg.root)));
    }
    let as_is = cfg.imbalance_ratio == 1.0 && cfg.n_max == 0;
    let mut data = build_sets(pool, test, cfg, seed, !as_is).map_err(|e| match e {
        RblError::Dataset(msg) if !as_is => RblError::Dataset(format!(
            "{msg} (an image-folder tree that is already long-tailed is used as it is with data.imbalance_ratio = 1)"
        )),
        other => other,
    })?;
    if let Some(val) = own_val {
        data.val = val;
    }
    Ok(data)
}

/// A class as messages name it: its index and, where the dataset has names, its name
/// (`class 3 ("Dress")`).
fn class_label(cfg: &DataConfig, num_classes: usize, class: usize) -> String {
    match crate::data::class_names::class_names(cfg, num_classes).ok().and_then(|n| n.get(class).cloned()) {
        Some(name) if name != format!("class {class}") => format!("{class} ({name:?})"),
        _ => class.to_string(),
    }
}

/// Refuses pad-and-crop and Cutout sizes the images cannot hold: a padding of more than half
/// the image's side lets crops fall mostly outside it, and a hole wider than the image blanks
/// it; either trains on blank images and still reports a number.
fn check_augmentation_fits(cfg: &DataConfig, pool: &ImageSet) -> Result<()> {
    let side = pool.height.min(pool.width);
    if cfg.crop_padding > side / 2 {
        return Err(RblError::Config {
            origin: "data.crop_padding".into(),
            msg: format!("{} pixels, more than half the {side}-pixel images (at most {}; CIFAR uses 4)", cfg.crop_padding, side / 2),
        });
    }
    if cfg.cutout > side {
        return Err(RblError::Config {
            origin: "data.cutout".into(),
            msg: format!("{} pixels, wider than the {side}-pixel images (at most {side}; CIFAR uses 16)", cfg.cutout),
        });
    }
    Ok(())
}

/// Refuses a test set whose images differ in shape from the training images: the network
/// would score them anyway (pooling hides the size) and report a meaningless accuracy.
fn same_image_shape(train: &ImageSet, test: &ImageSet) -> Result<()> {
    let shape = |s: &ImageSet| (s.channels, s.height, s.width);
    if shape(train) != shape(test) {
        let (c, h, w) = shape(train);
        let (tc, th, tw) = shape(test);
        return Err(RblError::Dataset(format!("the test images are {tc}×{th}×{tw} (C×H×W) but the training images are {c}×{h}×{w}")));
    }
    Ok(())
}

/// As [`prepare`], from sets already in memory.
pub fn prepare_from(pool: ImageSet, test: ImageSet, cfg: &DataConfig, seed: u64) -> Result<PreparedData> {
    build_sets(pool, test, cfg, seed, true)
}

/// The validation split, then the long tail (or, without `long_tail`, the rest of the pool as
/// it is), then the test subset and the normalisation.
fn build_sets(pool: ImageSet, test: ImageSet, cfg: &DataConfig, seed: u64, long_tail: bool) -> Result<PreparedData> {
    same_image_shape(&pool, &test)?;
    check_augmentation_fits(cfg, &pool)?;
    for (class, &n) in pool.class_counts().iter().enumerate() {
        if n == 0 {
            return Err(RblError::Dataset(format!("class {} has no training image", class_label(cfg, pool.num_classes, class))));
        }
    }
    let (val, pool) = if cfg.val_per_class > 0 {
        let (v, rest) = split_validation(&pool, cfg.val_per_class, seed)?;
        (pool.subset(&v), pool.subset(&rest))
    } else {
        (pool.subset(&[]), pool)
    };
    let train = if long_tail {
        let available = *pool.class_counts().iter().min().unwrap_or(&0);
        let largest = *pool.class_counts().iter().max().unwrap_or(&0);
        if cfg.n_max > largest {
            return Err(RblError::Config {
                origin: "data.n_max".into(),
                msg: format!(
                    "{} images for the head class, but no class of the training pool has more than {largest}: lower it (0 takes {available})",
                    cfg.n_max
                ),
            });
        }
        let n_max = if cfg.n_max == 0 { available } else { cfg.n_max };
        let counts = long_tail_counts_with(n_max, cfg.imbalance_ratio, pool.num_classes, cfg.counts);
        if let Some(c) = counts.iter().position(|&n| n == 0) {
            return Err(RblError::Dataset(format!(
                "class {c} would get 0 images (n_max {n_max}, imbalance ratio {}): raise data.n_max",
                cfg.imbalance_ratio
            )));
        }
        pool.subset(&sample_long_tail(&pool, &counts, seed)?)
    } else {
        pool
    };
    let test = if cfg.test_per_class > 0 { test.subset(&first_per_class(&test, cfg.test_per_class)) } else { test };
    if let Some(c) = test.class_counts().iter().position(|&n| n == 0) {
        return Err(RblError::Dataset(format!("class {} has no test image", class_label(cfg, test.num_classes, c))));
    }
    let (mean, std) = normalisation(cfg, &train)?;
    Ok(PreparedData { train_counts: train.class_counts(), train, val, test, mean, std })
}
