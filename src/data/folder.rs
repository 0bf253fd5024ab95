//! "Folder + split file" datasets (ImageNet-LT, Places-LT, iNaturalist): images stay on disk
//! as JPEG files and are decoded when needed, on a pool of worker threads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::decode::{RgbImage, decode_image};
use crate::data::resize::{random_resized_crop_flip, resize_center_crop};
use crate::data::split_file::{SplitEntry, read_split};
use crate::error::Result;

/// Largest image file read: ImageNet's largest JPEG is about 15 MB; a file of this size or
/// more is refused before it is read (the pixel caps of [`crate::data::decode`] bound what it
/// decodes to).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// Reads and decodes the image file at `path` (a regular file of at most [`MAX_IMAGE_BYTES`]).
pub fn read_image(path: &Path) -> Result<RgbImage> {
    let bytes = crate::files::read_capped(path, MAX_IMAGE_BYTES, "an image file")?;
    decode_image(&bytes, path)
}

/// An image as the model sees it: 3 × `size` × `size` bytes, a RandomResizedCrop and flip drawn
/// from `seed` (training), else resized to size·8/7 and centre-cropped (evaluation).
pub fn model_view(img: &RgbImage, size: usize, seed: Option<u64>) -> Vec<u8> {
    match seed {
        Some(seed) => random_resized_crop_flip(img, size, &mut ChaCha8Rng::seed_from_u64(seed)).pixels,
        None => resize_center_crop(img, size * 8 / 7, size).pixels,
    }
}

/// A dataset described by a split file under a root folder.
#[derive(Debug, Clone)]
pub struct FolderDataset {
    /// The folder split paths are relative to.
    pub root: PathBuf,
    /// The split's images.
    pub entries: Vec<SplitEntry>,
    /// Classes the dataset declares.
    pub num_classes: usize,
}

/// One bad image found by [`FolderDataset::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct BadImage {
    /// Index in the split.
    pub index: usize,
    /// The error, naming the file.
    pub error: String,
}

impl FolderDataset {
    /// Reads the split file `split` of the dataset rooted at `root`.
    pub fn open(root: &Path, split: &Path, num_classes: usize) -> Result<FolderDataset> {
        Ok(FolderDataset { root: root.into(), entries: read_split(split, num_classes)?, num_classes })
    }

    /// Reads and decodes image `index`.
    pub fn decode(&self, index: usize) -> Result<RgbImage> {
        read_image(&self.root.join(&self.entries[index].path))
    }

    /// Image `index` as the model sees it (see [`model_view`]).
    pub fn load(&self, index: usize, size: usize, seed: Option<u64>) -> Result<Vec<u8>> {
        Ok(model_view(&self.decode(index)?, size, seed))
    }

    /// Decodes every image on `workers` threads and lists the ones that fail (missing,
    /// unreadable, undecodable), in split order. `progress` is called with the count done.
    /// The workers stop early once an interrupt is requested (the caller checks
    /// [`crate::interrupt::check`] after).
    pub fn check(&self, workers: usize, progress: &(dyn Fn(usize) + Sync)) -> Vec<BadImage> {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let mut bad: Vec<BadImage> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers.max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut found = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= self.entries.len() || crate::interrupt::requested() {
                                return found;
                            }
                            if let Err(e) = self.decode(i) {
                                found.push(BadImage { index: i, error: e.to_string() });
                            }
                            progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                        }
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().expect("decoder thread")).collect()
        });
        bad.sort_by_key(|b| b.index);
        bad
    }
}
