//! The CIFAR-10 and CIFAR-100 binary distributions (Krizhevsky 2009).
//!
//! A record is the label byte(s) then 3072 pixel bytes: 1024 red, 1024 green, 1024 blue, each
//! row-major 32×32. CIFAR-10 has one label byte (files `data_batch_1.bin` … `data_batch_5.bin`,
//! `test_batch.bin`); CIFAR-100 has two, coarse then fine (files `train.bin`, `test.bin`), and rbl
//! uses the fine label.

use std::path::{Path, PathBuf};

use crate::data::ImageSet;
use crate::error::{RblError, Result};

/// Which distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar {
    /// 10 classes, one label byte.
    Ten,
    /// 100 fine classes, coarse + fine label bytes.
    Hundred,
}

const PIXELS: usize = 3 * 32 * 32;

impl Cifar {
    fn label_bytes(self) -> usize {
        match self {
            Cifar::Ten => 1,
            Cifar::Hundred => 2,
        }
    }

    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            Cifar::Ten => 10,
            Cifar::Hundred => 100,
        }
    }

    /// "CIFAR-10" or "CIFAR-100", for messages.
    pub fn name(self) -> &'static str {
        match self {
            Cifar::Ten => "CIFAR-10",
            Cifar::Hundred => "CIFAR-100",
        }
    }

    /// The binary distribution's training and test files under `root`.
    pub fn files(self, root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
        match self {
            Cifar::Ten => ((1..=5).map(|i| root.join(format!("data_batch_{i}.bin"))).collect(), vec![root.join("test_batch.bin")]),
            Cifar::Hundred => (vec![root.join("train.bin")], vec![root.join("test.bin")]),
        }
    }
}

/// Parses the records of one file; `path` names it in errors.
pub fn parse_cifar(bytes: &[u8], kind: Cifar, path: &Path) -> Result<ImageSet> {
    let record = kind.label_bytes() + PIXELS;
    if !bytes.len().is_multiple_of(record) {
        return Err(RblError::format(
            path,
            format!(
                "truncated: {} bytes is not a whole number of {record}-byte records (record {} is cut short)",
                bytes.len(),
                bytes.len() / record
            ),
        ));
    }
    let n = bytes.len() / record;
    let mut set = ImageSet {
        pixels: Vec::with_capacity(n * PIXELS),
        labels: Vec::with_capacity(n),
        num_classes: kind.classes(),
        channels: 3,
        height: 32,
        width: 32,
        files: None,
    };
    for (index, r) in bytes.chunks_exact(record).enumerate() {
        let label = r[kind.label_bytes() - 1] as u32;
        if label as usize >= kind.classes() {
            return Err(RblError::LabelRange { path: path.into(), label: label as i64, index, classes: kind.classes() });
        }
        set.labels.push(label);
        set.pixels.extend_from_slice(&r[kind.label_bytes()..]);
    }
    Ok(set)
}

/// Encodes images as CIFAR records (for tests and tools): `labels` are (coarse, fine) for
/// CIFAR-100, the fine one ignored for CIFAR-10.
pub fn encode_cifar(images: &[Vec<u8>], labels: &[(u8, u8)], kind: Cifar) -> Vec<u8> {
    let mut out = Vec::new();
    for (img, &(coarse, fine)) in images.iter().zip(labels) {
        match kind {
            Cifar::Ten => out.push(coarse),
            Cifar::Hundred => out.extend_from_slice(&[coarse, fine]),
        }
        out.extend_from_slice(img);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(seed: u8) -> Vec<u8> {
        (0..PIXELS).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect()
    }

    #[test]
    fn cifar10_and_cifar100_round_trip_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let imgs = vec![image(1), image(2), image(3)];
        // CIFAR-10: five training batches and a test batch, as the distribution names them.
        for (i, p) in Cifar::Ten.files(dir.path()).0.iter().enumerate() {
            std::fs::write(p, encode_cifar(&imgs, &[(i as u8, 0), (9, 0), (0, 0)], Cifar::Ten)).unwrap();
        }
        let (train, _) = Cifar::Ten.files(dir.path());
        let set = crate::data::cifar_files::read_batches(&train, Cifar::Ten).unwrap();
        assert_eq!(set.len(), 15);
        assert_eq!(&set.labels[..3], &[0, 9, 0]);
        assert_eq!(set.labels[3], 1);
        assert_eq!(set.image(1), &imgs[1][..]);
        // The first plane is red: pixel (0, 0) of each channel sits 1024 bytes apart.
        assert_eq!(set.image(2)[1024], imgs[2][1024]);
        // CIFAR-100: the fine label is used, not the coarse one.
        let p = dir.path().join("train.bin");
        std::fs::write(&p, encode_cifar(&imgs, &[(3, 77), (19, 5), (0, 99)], Cifar::Hundred)).unwrap();
        let set = crate::data::cifar_files::read_batches(&[p], Cifar::Hundred).unwrap();
        assert_eq!(set.labels, vec![77, 5, 99]);
        assert_eq!(set.num_classes, 100);
    }

    #[test]
    fn truncated_records_and_bad_labels_are_named() {
        let p = Path::new("data_batch_1.bin");
        let good = encode_cifar(&[image(0), image(1)], &[(1, 0), (2, 0)], Cifar::Ten);
        let e = parse_cifar(&good[..good.len() - 10], Cifar::Ten, p).unwrap_err().to_string();
        assert!(e.contains("data_batch_1.bin") && e.contains("truncated") && e.contains("record 1"), "{e}");
        let bad = encode_cifar(&[image(0)], &[(10, 0)], Cifar::Ten);
        let e = parse_cifar(&bad, Cifar::Ten, p).unwrap_err().to_string();
        assert!(e.contains("label 10") && e.contains("0..10"), "{e}");
        let bad = encode_cifar(&[image(0)], &[(0, 100)], Cifar::Hundred);
        let e = parse_cifar(&bad, Cifar::Hundred, Path::new("train.bin")).unwrap_err().to_string();
        assert!(e.contains("train.bin") && e.contains("label 100"), "{e}");
        let e = crate::data::cifar_files::read_batches(&[PathBuf::from("/no/such/test_batch.bin")], Cifar::Ten).unwrap_err().to_string();
        assert!(e.contains("/no/such/test_batch.bin"), "{e}");
    }
}
