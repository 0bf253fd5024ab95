//! Accuracy overall, per class and per shot bucket (many / medium / few by training-class size).

use serde::{Deserialize, Serialize};

/// Classes split by training-set size: many > `many`, few < `few`, medium otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShotBuckets {
    /// Strictly more than this many training images is many-shot (100 by convention).
    pub many: usize,
    /// Strictly fewer than this many is few-shot (20 by convention).
    pub few: usize,
}

/// Which bucket a class of `n` training images falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shot {
    /// More than `many` images.
    Many,
    /// Between `few` and `many` inclusive.
    Medium,
    /// Fewer than `few`.
    Few,
}

impl ShotBuckets {
    /// The bucket of a class with `n` training images.
    pub fn bucket(&self, n: usize) -> Shot {
        if n > self.many {
            Shot::Many
        } else if n < self.few {
            Shot::Few
        } else {
            Shot::Medium
        }
    }
}

/// Accuracy figures of one set of predictions. Percentages; `None` where a bucket is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Top-1 accuracy over all images (%).
    pub top1: f64,
    /// Accuracy over images of many-shot classes (%).
    pub many: Option<f64>,
    /// Accuracy over images of medium-shot classes (%).
    pub medium: Option<f64>,
    /// Accuracy over images of few-shot classes (%).
    pub few: Option<f64>,
    /// Accuracy of each class (%); `None` for a class with no test image.
    pub per_class: Vec<Option<f64>>,
}

impl ClassificationReport {
    /// Scores `predictions` against `labels`; buckets from the training counts.
    pub fn new(predictions: &[usize], labels: &[usize], train_counts: &[usize], buckets: ShotBuckets) -> Self {
        let c = train_counts.len();
        let (mut hit, mut tot) = (vec![0usize; c], vec![0usize; c]);
        for (&p, &y) in predictions.iter().zip(labels) {
            tot[y] += 1;
            hit[y] += (p == y) as usize;
        }
        let pct = |h: usize, t: usize| (t > 0).then(|| 100.0 * h as f64 / t as f64);
        let bucket = |s: Shot| {
            let (h, t) = (0..c).filter(|&i| buckets.bucket(train_counts[i]) == s).fold((0, 0), |(h, t), i| (h + hit[i], t + tot[i]));
            pct(h, t)
        };
        ClassificationReport {
            top1: pct(hit.iter().sum(), tot.iter().sum()).unwrap_or(0.0),
            many: bucket(Shot::Many),
            medium: bucket(Shot::Medium),
            few: bucket(Shot::Few),
            per_class: (0..c).map(|i| pct(hit[i], tot[i])).collect(),
        }
    }
}

/// Index of the largest entry of each row of a row-major `[B, C]` buffer.
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks_exact(classes)
        .map(|row| row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_thresholds() {
        let b = ShotBuckets { many: 100, few: 20 };
        assert_eq!(b.bucket(101), Shot::Many);
        assert_eq!(b.bucket(100), Shot::Medium);
        assert_eq!(b.bucket(20), Shot::Medium);
        assert_eq!(b.bucket(19), Shot::Few);
    }

    #[test]
    fn report_counts_per_class_and_bucket() {
        // Classes: 0 many (500), 1 medium (50), 2 few (5); two test images each.
        let counts = [500, 50, 5];
        let labels = [0, 0, 1, 1, 2, 2];
        let preds = [0, 0, 1, 0, 0, 0];
        let r = ClassificationReport::new(&preds, &labels, &counts, ShotBuckets { many: 100, few: 20 });
        assert!((r.top1 - 50.0).abs() < 1e-12);
        assert_eq!((r.many, r.medium, r.few), (Some(100.0), Some(50.0), Some(0.0)));
        assert_eq!(r.per_class, vec![Some(100.0), Some(50.0), Some(0.0)]);
        let r = ClassificationReport::new(&[0], &[0], &[500, 50], ShotBuckets { many: 100, few: 20 });
        assert_eq!((r.few, r.per_class[1]), (None, None));
        assert_eq!(argmax_rows(&[0.1, 0.9, 0.3, 2.0, -1.0, 0.0], 3), vec![1, 0]);
    }
}
