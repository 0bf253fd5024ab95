//! An in-memory set of 8-bit images with class labels.

/// Images stored planar (N × C × H × W, bytes 0–255) with one label each.
///
/// Kept as bytes rather than floats: a 60k-image set stays at 47 MB, and augmentation reads
/// bytes anyway.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Pixel bytes, N × C × H × W.
    pub pixels: Vec<u8>,
    /// Class label of each image, in `0..num_classes`.
    pub labels: Vec<u32>,
    /// Number of classes the dataset declares (not only those present).
    pub num_classes: usize,
    /// Channels per image (1 or 3).
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Set for datasets that stay on disk ("folder + split file"): the images are decoded when
    /// loaded, and `pixels` is empty.
    pub files: Option<std::sync::Arc<FileImages>>,
}

/// The files of an on-disk image set, in set order, and how to turn them into model input.
#[derive(Debug, Clone, PartialEq)]
pub struct FileImages {
    /// Root folder the paths are relative to.
    pub root: std::path::PathBuf,
    /// Path of each image, relative to `root`.
    pub paths: Vec<std::path::PathBuf>,
    /// Side of the square model input (224 for ImageNet).
    pub size: usize,
    /// Skip (and count) images that fail to decode during training instead of stopping.
    pub skip_bad: bool,
}

impl ImageSet {
    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i` (in-memory sets only).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Images per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Indices of the images of each class, in set order.
    pub fn indices_by_class(&self) -> Vec<Vec<usize>> {
        let mut by = vec![Vec::new(); self.num_classes];
        for (i, &l) in self.labels.iter().enumerate() {
            by[l as usize].push(i);
        }
        by
    }

    /// A new set holding the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let files = self.files.as_ref().map(|f| {
            let paths = indices.iter().map(|&i| f.paths[i].clone()).collect();
            std::sync::Arc::new(FileImages { root: f.root.clone(), paths, size: f.size, skip_bad: f.skip_bad })
        });
        let mut pixels = Vec::with_capacity(if files.is_some() { 0 } else { indices.len() * self.image_len() });
        if files.is_none() {
            for &i in indices {
                pixels.extend_from_slice(self.image(i));
            }
        }
        ImageSet {
            files,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            num_classes: self.num_classes,
            channels: self.channels,
            height: self.height,
            width: self.width,
        }
    }

    /// Per-channel mean and standard deviation of the pixels scaled to 0–1.
    /// For on-disk sets these are ImageNet's (0.485, 0.456, 0.406) and (0.229, 0.224, 0.225),
    /// as every ImageNet-LT recipe uses, rather than a pass over the files.
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        if self.files.is_some() {
            return (vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225]);
        }
        let plane = self.height * self.width;
        let mut sum = vec![0f64; self.channels];
        let mut sq = vec![0f64; self.channels];
        for img in self.pixels.chunks_exact(self.image_len()) {
            for c in 0..self.channels {
                for &p in &img[c * plane..(c + 1) * plane] {
                    let v = p as f64 / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
            }
        }
        let n = (self.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq.iter().zip(&mean).map(|(s, m)| ((s / n - m * m).max(1e-12)).sqrt() as f32).collect();
        (mean.into_iter().map(|m| m as f32).collect(), std)
    }
}
