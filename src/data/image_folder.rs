//! torchvision's `ImageFolder` convention: `root/train/<class>/<image>`, `root/test/<class>/…`
//! (or `root/val/…`); a class is a sub-folder, labels are the sorted folder names' positions.
//! Images (JPEG, PNG, WebP, by their extension as torchvision filters them) stay on disk and
//! go through the folder datasets' decode, resize, crop and `data.bad_images` path.
//!
//! The split folders: the test set is `test/` when present, else `val/`; with both, `val/` is
//! the validation set (used for selection and post-hoc τ); otherwise a validation set can be set
//! aside from `train/` with `data.val_per_class`. `data.imbalance_ratio = 1` uses `train/` as it
//! is (already long-tailed, as a user's own data usually is); a larger ratio subsamples a
//! balanced tree into a long tail exactly as for the built-in datasets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data::ImageSet;
use crate::data::config::DataConfig;
use crate::data::image_set::FileImages;
use crate::error::{RblError, Result};

/// Extensions read (case-insensitive): the subset of torchvision's `IMG_EXTENSIONS` rbl decodes.
pub const EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// The class names of `root/train`: its sub-folders, sorted by name (byte order, as Python's
/// `sorted` orders them); a class's label is its position.
pub fn class_names(root: &Path) -> Result<Vec<String>> {
    let train = root.join("train");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&train).map_err(|e| RblError::io(&train, e))? {
        let entry = entry.map_err(|e| RblError::io(&train, e))?;
        if entry.path().is_dir() {
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| RblError::format(&train, format!("the class folder {} is not valid UTF-8", n.to_string_lossy())))?;
            if !name.starts_with('.') {
                names.push(name);
            }
        }
    }
    names.sort();
    if names.len() < 2 {
        return Err(RblError::format(&train, format!("{} class folders: an image-folder dataset needs at least 2", names.len())));
    }
    Ok(names)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// What a walk ([`image_files`]) left out, so that it can say so.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Skipped {
    /// Files without an image extension.
    pub other: usize,
    /// Symbolic links to folders: not followed. A link to `.` or to a parent would visit the
    /// same images again (41 copies of every image for one link to `.`), and two such links
    /// make the walk exponential.
    pub linked_folders: Vec<PathBuf>,
    /// Entries with an image name that are not regular files (FIFOs, devices, sockets, broken
    /// links): opening a FIFO blocks until a writer appears, so they are never opened.
    pub not_regular: Vec<PathBuf>,
}

impl Skipped {
    /// Prints one line per kind of thing left out under `dir` (nothing when nothing was).
    pub fn note(&self, dir: &Path) {
        let first = |v: &[PathBuf]| {
            let shown: Vec<String> = v.iter().take(3).map(|p| p.display().to_string()).collect();
            if v.len() > 3 { format!("{} …", shown.join(", ")) } else { shown.join(", ") }
        };
        if self.other > 0 {
            crate::note!("note: {}: {} files without a {} extension left out", dir.display(), self.other, EXTENSIONS.join("/"));
        }
        if !self.linked_folders.is_empty() {
            crate::note!(
                "note: {}: {} symbolic links to folders not followed ({}); link the images themselves, or copy the folder",
                dir.display(),
                self.linked_folders.len(),
                first(&self.linked_folders)
            );
        }
        if !self.not_regular.is_empty() {
            crate::note!(
                "note: {}: {} entries with an image name are not regular files (FIFOs, devices, broken links) and were left out ({})",
                dir.display(),
                self.not_regular.len(),
                first(&self.not_regular)
            );
        }
    }
}

/// Image files under `dir`, recursively, in sorted order (torchvision walks sub-folders too).
/// Only regular files are listed (a symbolic link to one counts); symbolic links to folders
/// are not followed, so every real folder under `dir` is visited once at most. What is left
/// out is counted in `skipped`. The walk stops with an error once an interrupt is requested.
pub fn image_files(dir: &Path, out: &mut Vec<PathBuf>, skipped: &mut Skipped) -> Result<()> {
    crate::interrupt::check()?;
    let mut entries: Vec<(PathBuf, std::fs::FileType)> = std::fs::read_dir(dir)
        .map_err(|e| RblError::io(dir, e))?
        .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))).map_err(|e| RblError::io(dir, e)))
        .collect::<Result<_>>()?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, file_type) in entries {
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        if file_type.is_dir() {
            image_files(&path, out, skipped)?;
            continue;
        }
        // A link is judged by what it points at (a broken link points at nothing).
        let target = if file_type.is_symlink() { std::fs::metadata(&path).ok().map(|m| m.file_type()) } else { Some(file_type) };
        match target {
            Some(t) if t.is_dir() => skipped.linked_folders.push(path),
            Some(t) if t.is_file() && has_image_extension(&path) => out.push(path),
            _ if has_image_extension(&path) => skipped.not_regular.push(path),
            _ => skipped.other += 1,
        }
    }
    Ok(())
}

/// One split folder (`root/<split>`) as an on-disk set labelled by `classes`. A class folder
/// that `train/` does not have is an error naming it (torchvision would silently number the
/// classes differently); a class missing from this split is allowed here and caught where a
/// set must cover every class.
pub fn split_set(cfg: &DataConfig, split: &str, classes: &[String]) -> Result<ImageSet> {
    let root = Path::new(&cfg.root);
    let dir = root.join(split);
    let mut paths = Vec::new();
    let mut labels = Vec::new();
    let mut skipped = Skipped::default();
    let split_dir = std::fs::canonicalize(&dir).map_err(|e| RblError::io(&dir, e))?;
    for entry in std::fs::read_dir(&dir).map_err(|e| RblError::io(&dir, e))? {
        let path = entry.map_err(|e| RblError::io(&dir, e))?.path();
        let raw_name = path.file_name().unwrap_or_default();
        if !path.is_dir() || raw_name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let Some(name) = raw_name.to_str() else {
            return Err(RblError::format(
                &path,
                format!("the class folder name {:?} is not valid UTF-8: rename it", raw_name.to_string_lossy()),
            ));
        };
        let label = classes.binary_search(&name.to_string()).map_err(|_| {
            RblError::format(
                &path,
                format!("class folder {name:?} is not among the {} classes of {}", classes.len(), root.join("train").display()),
            )
        })?;
        // A class folder may be a link (trees are often assembled from links), but not to a
        // folder that holds this split: its images would all be labelled with this class.
        let real = std::fs::canonicalize(&path).map_err(|e| RblError::io(&path, e))?;
        if split_dir.starts_with(&real) {
            return Err(RblError::format(
                &path,
                format!(
                    "the class folder links to {}, which holds {}: a class folder must hold only that class",
                    real.display(),
                    dir.display()
                ),
            ));
        }
        let mut files = Vec::new();
        image_files(&path, &mut files, &mut skipped)?;
        for f in files {
            paths.push((label, f));
        }
    }
    paths.sort();
    skipped.note(&dir);
    if paths.is_empty() {
        return Err(RblError::format(&dir, format!("no images ({}) under its class folders", EXTENSIONS.join(", "))));
    }
    labels.extend(paths.iter().map(|(l, _)| *l as u32));
    let relative = paths.into_iter().map(|(_, p)| p.strip_prefix(root).map(Path::to_path_buf).unwrap_or(p)).collect();
    Ok(ImageSet {
        pixels: Vec::new(),
        labels,
        num_classes: classes.len(),
        channels: 3,
        height: cfg.image_size,
        width: cfg.image_size,
        files: Some(Arc::new(FileImages {
            root: root.into(),
            paths: relative,
            size: cfg.image_size,
            skip_bad: cfg.bad_images == crate::data::config::BadImages::Skip,
        })),
    })
}

/// An on-disk set read into memory as `channels` × `side` × `side` images (each file's
/// shorter side resized to `side`, its centre cropped, grey when `channels` is 1: see
/// [`crate::data::model_input`]), decoded on `workers` threads. A file that cannot be decoded
/// is an error naming the first few, or with `skip` is left out and counted on stderr.
pub fn into_memory(set: &ImageSet, channels: usize, side: usize, workers: usize, skip: bool) -> Result<ImageSet> {
    let Some(files) = &set.files else { return Ok(set.clone()) };
    let n = files.paths.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<(usize, Result<Vec<u8>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.clamp(1, n.max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= n || crate::interrupt::requested() {
                            return out;
                        }
                        let img = crate::data::folder::read_image(&files.root.join(&files.paths[i]));
                        out.push((i, img.map(|img| crate::data::model_input::to_model_input(&img, channels, side, side))));
                    }
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("decoder thread")).collect()
    });
    crate::interrupt::check()?;
    let mut decoded: Vec<Option<Result<Vec<u8>>>> = (0..n).map(|_| None).collect();
    for (i, r) in results {
        decoded[i] = Some(r);
    }
    let mut pixels = Vec::with_capacity(n * channels * side * side);
    let mut labels = Vec::with_capacity(n);
    let mut bad = Vec::new();
    for (i, r) in decoded.into_iter().enumerate() {
        match r.expect("every image decoded") {
            Ok(px) => {
                pixels.extend(px);
                labels.push(set.labels[i]);
            }
            Err(e) => bad.push(e.to_string()),
        }
    }
    if !bad.is_empty() {
        let first: Vec<&str> = bad.iter().take(3).map(String::as_str).collect();
        let msg = format!("{} of {n} images cannot be decoded (first: {})", bad.len(), first.join("; "));
        if !skip {
            return Err(RblError::Dataset(format!("{msg}; set data.bad_images = \"skip\" to leave them out")));
        }
        crate::note!("warning: {msg}; left out");
    }
    Ok(ImageSet { pixels, labels, num_classes: set.num_classes, channels, height: side, width: side, files: None })
}

/// The tree's sets: (training pool, validation set if the tree has its own, test set).
pub fn read_image_folder(cfg: &DataConfig) -> Result<(ImageSet, Option<ImageSet>, ImageSet)> {
    let root = Path::new(&cfg.root);
    if !root.join("train").is_dir() {
        return Err(RblError::Dataset(crate::data::defaults::root_hint(root)));
    }
    let classes = class_names(root)?;
    let pool = split_set(cfg, "train", &classes)?;
    let (has_test, has_val) = (root.join("test").is_dir(), root.join("val").is_dir());
    let (test, val) = match (has_test, has_val) {
        (true, true) => (split_set(cfg, "test", &classes)?, Some(split_set(cfg, "val", &classes)?)),
        (true, false) => (split_set(cfg, "test", &classes)?, None),
        (false, true) => (split_set(cfg, "val", &classes)?, None),
        (false, false) => {
            return Err(RblError::io(
                root,
                std::io::Error::new(std::io::ErrorKind::NotFound, "an image-folder dataset needs train/ and test/ (or val/) sub-folders"),
            ));
        }
    };
    Ok((pool, val, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn classes_are_sorted_folder_names_and_files_filtered_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in
            ["train/zebra/1.png", "train/Ant/a.JPG", "train/Ant/sub/b.webp", "train/Ant/notes.txt", "train/cat/c.jpeg", "test/cat/t.png"]
        {
            touch(&r.join(f));
        }
        touch(&r.join("train/.hidden/x.png"));
        touch(&r.join("train/README"));
        // Byte order, as Python's sorted(): upper case first.
        assert_eq!(class_names(r).unwrap(), vec!["Ant", "cat", "zebra"]);
        let cfg = DataConfig { root: r.display().to_string(), image_size: 32, ..DataConfig::default() };
        let (pool, val, test) = read_image_folder(&cfg).unwrap();
        assert!(val.is_none());
        assert_eq!(pool.labels, vec![0, 0, 1, 2]);
        let paths: Vec<_> = pool.files.as_ref().unwrap().paths.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(paths, vec!["train/Ant/a.JPG", "train/Ant/sub/b.webp", "train/cat/c.jpeg", "train/zebra/1.png"]);
        assert_eq!((test.labels.clone(), test.num_classes, test.height), (vec![1], 3, 32));

        // val/ alone is the test set; with test/ beside it, it is the validation set.
        touch(&r.join("val/zebra/v.png"));
        let (_, val, test) = read_image_folder(&cfg).unwrap();
        assert_eq!((val.unwrap().labels, test.labels), (vec![2], vec![1]));
        std::fs::remove_dir_all(r.join("test")).unwrap();
        let (_, val, test) = read_image_folder(&cfg).unwrap();
        assert_eq!((val.is_none(), test.labels), (true, vec![2]));

        // A test class train/ lacks is named.
        touch(&r.join("val/dog/d.png"));
        let e = read_image_folder(&cfg).unwrap_err().to_string();
        assert!(e.contains("\"dog\"") && e.contains("not among the 3 classes"), "{e}");
        std::fs::remove_dir_all(r.join("val")).unwrap();
        let e = read_image_folder(&cfg).unwrap_err().to_string();
        assert!(e.contains("train/ and test/"), "{e}");
    }

    fn png(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([9, 99, 199]));
        img.save(path).unwrap();
    }

    /// Issue #36 rows 1–3: a class folder holding links to `.` (once gave 41 copies of each
    /// image; two links made the walk exponential) and a FIFO named like an image (blocked
    /// forever): each image counted once, the links and the FIFO named and left out.
    #[test]
    fn links_to_folders_and_fifos_are_left_out_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in ["train/a/1.png", "train/a/2.png", "train/b/3.png", "test/a/t.png", "test/b/u.png"] {
            png(&r.join(f));
        }
        std::os::unix::fs::symlink(".", r.join("train/a/loop")).unwrap();
        std::os::unix::fs::symlink("..", r.join("train/a/up")).unwrap();
        std::os::unix::fs::symlink(".", r.join("train/b/again")).unwrap();
        // A link to an image file is an image.
        std::os::unix::fs::symlink(r.join("train/b/3.png"), r.join("train/b/4.png")).unwrap();
        assert!(std::process::Command::new("mkfifo").arg(r.join("test/a/f.png")).status().unwrap().success());
        std::os::unix::fs::symlink(r.join("nowhere.png"), r.join("test/b/broken.png")).unwrap();

        let mut files = Vec::new();
        let mut skipped = Skipped::default();
        image_files(&r.join("train"), &mut files, &mut skipped).unwrap();
        assert_eq!(files.len(), 4, "{files:?}");
        assert_eq!(skipped.linked_folders.len(), 3, "{skipped:?}");

        let cfg = DataConfig { root: r.display().to_string(), image_size: 32, ..DataConfig::default() };
        let (pool, _, test) = read_image_folder(&cfg).unwrap();
        assert_eq!(pool.class_counts(), vec![2, 2]);
        assert_eq!(test.class_counts(), vec![1, 1], "the FIFO and the broken link are not images");

        // A class folder that links to the split folder itself is refused.
        std::os::unix::fs::symlink(r.join("train"), r.join("train/c")).unwrap();
        let e = read_image_folder(&cfg).unwrap_err().to_string();
        assert!(e.contains("train/c") && e.contains("holds"), "{e}");
    }

    /// A class folder whose name is not UTF-8 is named (it showed as `""`), and a class with no
    /// image is named by index and name (it was by index only).
    #[test]
    fn odd_class_folders_are_named() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in ["train/ant/1.png", "train/bee/2.png", "test/ant/3.png", "test/bee/4.png"] {
            png(&r.join(f));
        }
        let odd = r.join("test").join(std::ffi::OsStr::from_bytes(b"caf\xE9"));
        png(&odd.join("5.png"));
        let cfg = DataConfig { root: r.display().to_string(), image_size: 8, ..DataConfig::default() };
        let e = read_image_folder(&cfg).unwrap_err().to_string();
        assert!(e.contains("not valid UTF-8") && e.contains("caf"), "{e}");
        std::fs::remove_dir_all(&odd).unwrap();
        std::fs::create_dir_all(r.join("train/cat")).unwrap();
        let cfg = DataConfig { dataset: crate::config::DatasetKind::ImageFolder, imbalance_ratio: 1.0, ..cfg };
        let e = crate::data::source::prepare(&cfg, 0).unwrap_err().to_string();
        assert!(e.contains("class 2 (\"cat\") has no training image"), "{e}");
    }
}
