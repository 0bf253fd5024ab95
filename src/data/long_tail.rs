//! Long-tailed subsampling of a balanced training pool (the CIFAR-LT rule of Cao et al. 2019).

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::data::ImageSet;
use crate::error::{RblError, Result};

/// How the per-class count is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountRule {
    /// `int()` (truncation): the standard benchmark (LDAM-DRW), CIFAR-100 IR100 = 10,847.
    #[default]
    Standard,
    /// `ceil()`: the RBL paper's released code, CIFAR-100 IR100 = 10,945.
    OfficialRbl,
}

/// Images kept for each class: `int(n_max · IR^(−i/(C−1)))` for class i.
pub fn long_tail_counts(n_max: usize, imbalance_ratio: f64, num_classes: usize) -> Vec<usize> {
    long_tail_counts_with(n_max, imbalance_ratio, num_classes, CountRule::Standard)
}

/// As [`long_tail_counts`], rounding by `rule`.
pub fn long_tail_counts_with(n_max: usize, imbalance_ratio: f64, num_classes: usize, rule: CountRule) -> Vec<usize> {
    if num_classes == 1 {
        return vec![n_max];
    }
    (0..num_classes)
        .map(|i| {
            // The same floating-point expression as the reference code (LDAM-DRW's
            // `img_max * (imb_factor ** (cls_idx / (cls_num - 1.0)))`, imb_factor = 1/IR),
            // so int() truncates exactly where it does.
            let f = (1.0 / imbalance_ratio).powf(i as f64 / (num_classes as f64 - 1.0));
            match rule {
                CountRule::Standard => (n_max as f64 * f) as usize,
                CountRule::OfficialRbl => (n_max as f64 * f).ceil() as usize,
            }
        })
        .collect()
}

/// Picks `counts[c]` images of each class c: each class shuffled with `seed`, first ones kept.
///
/// Fails, naming the class, if a class has fewer images than asked for (a missing class
/// included), rather than silently producing a different imbalance.
pub fn sample_long_tail(set: &ImageSet, counts: &[usize], seed: u64) -> Result<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let by_class = set.indices_by_class();
    // Every count is checked before anything is allocated for it.
    for (class, idx) in by_class.iter().enumerate() {
        let want = counts[class];
        if idx.len() < want {
            return Err(RblError::Dataset(format!("class {class} has {} training images, the long-tail rule asks for {want}", idx.len())));
        }
    }
    let mut keep = Vec::with_capacity(counts.iter().sum());
    for (class, mut idx) in by_class.into_iter().enumerate() {
        let want = counts[class];
        idx.shuffle(&mut rng);
        keep.extend_from_slice(&idx[..want]);
    }
    Ok(keep)
}

/// Splits a balanced validation set of `per_class` images per class off the training pool,
/// before any long-tail subsampling. Returns (validation indices, remaining pool indices).
pub fn split_validation(set: &ImageSet, per_class: usize, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0f7a_11d0);
    let (mut val, mut rest) = (Vec::new(), Vec::new());
    for (class, mut idx) in set.indices_by_class().into_iter().enumerate() {
        if idx.len() <= per_class {
            return Err(RblError::Dataset(format!(
                "class {class} has {} training images, too few to set {per_class} aside for validation",
                idx.len()
            )));
        }
        idx.shuffle(&mut rng);
        val.extend_from_slice(&idx[..per_class]);
        rest.extend_from_slice(&idx[per_class..]);
    }
    rest.sort_unstable();
    Ok((val, rest))
}

/// The first `per_class` images of each class, in set order (a smaller balanced test set).
pub fn first_per_class(set: &ImageSet, per_class: usize) -> Vec<usize> {
    let mut keep: Vec<usize> = set.indices_by_class().into_iter().flat_map(|idx| idx.into_iter().take(per_class)).collect();
    keep.sort_unstable();
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_standard_rule() {
        let c = long_tail_counts(6000, 100.0, 10);
        assert_eq!(c, vec![6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]);
        assert_eq!(c.iter().sum::<usize>(), 14_886);
        assert_eq!(long_tail_counts(5000, 100.0, 10).iter().sum::<usize>(), 12_406);
        assert_eq!(long_tail_counts(500, 100.0, 100).iter().sum::<usize>(), 10_847);
        assert_eq!(long_tail_counts(50, 1.0, 4), vec![50; 4]);
        let official = |n, ir, c| long_tail_counts_with(n, ir, c, CountRule::OfficialRbl).iter().sum::<usize>();
        assert_eq!(official(500, 100.0, 100), 10_945);
        assert_eq!(long_tail_counts(500, 50.0, 100).iter().sum::<usize>(), 12_608);
        assert_eq!(long_tail_counts(500, 200.0, 100).iter().sum::<usize>(), 9_502);
    }

    fn toy(per_class: usize, classes: usize) -> ImageSet {
        let labels: Vec<u32> = (0..per_class * classes).map(|i| (i % classes) as u32).collect();
        ImageSet {
            pixels: (0..labels.len()).map(|i| i as u8).collect(),
            labels,
            num_classes: classes,
            channels: 1,
            height: 1,
            width: 1,
            files: None,
        }
    }

    #[test]
    fn sampling_is_seeded_and_exact() {
        let set = toy(50, 4);
        let counts = long_tail_counts(50, 10.0, 4);
        let a = sample_long_tail(&set, &counts, 7).unwrap();
        assert_eq!(a, sample_long_tail(&set, &counts, 7).unwrap());
        assert_ne!(a, sample_long_tail(&set, &counts, 8).unwrap());
        assert_eq!(set.subset(&a).class_counts(), counts);
        let e = sample_long_tail(&set, &[51, 1, 1, 1], 0).unwrap_err().to_string();
        assert!(e.contains("class 0"), "{e}");
    }

    #[test]
    fn validation_is_disjoint_and_balanced() {
        let set = toy(30, 3);
        let (val, rest) = split_validation(&set, 5, 1).unwrap();
        assert_eq!(set.subset(&val).class_counts(), vec![5, 5, 5]);
        assert!(val.iter().all(|v| !rest.contains(v)));
        assert_eq!(val.len() + rest.len(), 90);
        assert_eq!(set.subset(&first_per_class(&set, 2)).class_counts(), vec![2, 2, 2]);
    }
}
