//! Which contrasted vectors count for each anchor, and how much: the host side of the
//! contrastive loss ([`super::supcon`]).
//!
//! A batch of B images gives 2B anchors, row i < B the first view of image i and row B + i its
//! second view. The columns are the same 2B projections, then (TSC) the C class targets.
//!
//! - weight W_ij: how many copies of column j the denominator holds: 1 per projection, none
//!   for the anchor itself, `target_repeat` per target;
//! - positives P_ij: the anchor's other view always; then `positives` = k other columns of its
//!   class drawn without replacement (KCL: "k positives", drawn afresh each step; fewer when
//!   the batch holds fewer), or with k = 0 every column of its class (SupCon); and (TSC) the
//!   target assigned to its class, counted `target_repeat` times and weighted by
//!   `target_weight`;
//! - count n_i: the positives' copies, unweighted — what the anchor's sum is divided by.

use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

/// TSC's part of the masks.
#[derive(Debug, Clone, Copy)]
pub struct TargetColumns<'a> {
    /// The target given to each class (`target_of_class[y]`, a permutation of 0..C).
    pub target_of_class: &'a [usize],
    /// Copies of each target among the columns.
    pub repeat: usize,
    /// Weight of the target term in the anchor's mean.
    pub weight: f64,
}

/// The masks of one batch (row-major `[anchors, columns]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastMasks {
    /// Anchors (2B).
    pub anchors: usize,
    /// Columns (2B, plus C with targets).
    pub columns: usize,
    /// W: copies of each column in each anchor's denominator.
    pub weight: Vec<f32>,
    /// P: weight of each column among the anchor's positives.
    pub positive: Vec<f32>,
    /// n: positives per anchor (copies, unweighted).
    pub count: Vec<f32>,
}

/// The masks for a batch labelled `labels` (B images, two views each); `rng` draws the k
/// positives.
pub fn contrast_masks(labels: &[i64], positives: usize, targets: Option<TargetColumns<'_>>, rng: &mut ChaCha8Rng) -> ContrastMasks {
    let b = labels.len();
    let anchors = 2 * b;
    let classes = targets.map_or(0, |t| t.target_of_class.len());
    let columns = anchors + classes;
    let label = |i: usize| labels[i % b];
    let mut weight = vec![0f32; anchors * columns];
    let mut positive = vec![0f32; anchors * columns];
    let mut count = vec![0f32; anchors];
    for (i, count) in count.iter_mut().enumerate() {
        let row = i * columns;
        for j in 0..anchors {
            if j != i {
                weight[row + j] = 1.0;
            }
        }
        let partner = (i + b) % anchors;
        positive[row + partner] = 1.0;
        let same: Vec<usize> = (0..anchors).filter(|&j| j != i && j != partner && label(j) == label(i)).collect();
        let picked: Vec<usize> = if positives == 0 || positives >= same.len() {
            same
        } else {
            sample(rng, same.len(), positives).into_iter().map(|k| same[k]).collect()
        };
        for &j in &picked {
            positive[row + j] = 1.0;
        }
        *count = 1.0 + picked.len() as f32;
        if let Some(t) = targets {
            for c in 0..classes {
                weight[row + anchors + c] = t.repeat as f32;
            }
            let own = t.target_of_class[label(i) as usize];
            positive[row + anchors + own] = (t.weight * t.repeat as f64) as f32;
            *count += t.repeat as f32;
        }
    }
    ContrastMasks { anchors, columns, weight, positive, count }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn k_positives_are_the_other_view_and_k_of_the_class() {
        // Six images: class 0 four times, class 1 twice; 12 anchors.
        let labels = [0i64, 0, 1, 0, 1, 0];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let m = contrast_masks(&labels, 2, None, &mut rng);
        assert_eq!((m.anchors, m.columns), (12, 12));
        for i in 0..12 {
            let row = &m.positive[i * 12..(i + 1) * 12];
            let w = &m.weight[i * 12..(i + 1) * 12];
            assert_eq!(w[i], 0.0, "never the anchor itself");
            assert_eq!(w.iter().sum::<f32>(), 11.0);
            assert_eq!(row[i], 0.0);
            assert_eq!(row[(i + 6) % 12], 1.0, "the other view");
            let y = labels[i % 6];
            let others: Vec<usize> = (0..12).filter(|&j| row[j] > 0.0 && j != (i + 6) % 12).collect();
            assert!(others.iter().all(|&j| labels[j % 6] == y), "positives share the class");
            // Class 0 has 8 views, so 6 candidates besides self and partner: k = 2 of them.
            // Class 1 has 4 views, 2 candidates: both (k ≥ what there is).
            assert_eq!(others.len(), 2, "anchor {i}");
            assert_eq!(m.count[i], 3.0);
        }
        // Drawn afresh: another stream picks other positives somewhere.
        let other = contrast_masks(&labels, 2, None, &mut ChaCha8Rng::seed_from_u64(2));
        assert_ne!(m.positive, other.positive);
        // k = 0 is SupCon: every column of the class.
        let all = contrast_masks(&labels, 0, None, &mut rng);
        for i in 0..12 {
            let want: Vec<usize> = (0..12).filter(|&j| j != i && labels[j % 6] == labels[i % 6]).collect();
            let got: Vec<usize> = (0..12).filter(|&j| all.positive[i * 12 + j] > 0.0).collect();
            assert_eq!(got, want);
            assert_eq!(all.count[i], want.len() as f32);
        }
    }

    #[test]
    fn sampling_is_uniform_over_the_class() {
        // Anchor 0 of class 0 has 6 candidates besides its partner; k = 2 picks each with
        // probability 1/3.
        let labels = [0i64, 0, 0, 0, 1, 1];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut hits = [0usize; 12];
        let draws = 3000;
        for _ in 0..draws {
            let m = contrast_masks(&labels, 2, None, &mut rng);
            for (j, hit) in hits.iter_mut().enumerate() {
                if j != 6 && m.positive[j] > 0.0 {
                    *hit += 1;
                }
            }
        }
        for j in [1, 2, 3, 7, 8, 9] {
            let p = hits[j] as f64 / draws as f64;
            assert!((p - 1.0 / 3.0).abs() < 0.04, "column {j}: {p}");
        }
        assert_eq!(hits[4] + hits[5] + hits[10] + hits[11], 0);
    }

    #[test]
    fn targets_add_columns_positives_and_counts() {
        let labels = [1i64, 0];
        let map = [2usize, 0, 1]; // class 0 → target 2, class 1 → target 0
        let t = TargetColumns { target_of_class: &map, repeat: 3, weight: 0.5 };
        let m = contrast_masks(&labels, 6, Some(t), &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!((m.anchors, m.columns), (4, 7));
        // Anchor 0 (class 1): target 0 is column 4.
        assert_eq!(&m.weight[4..7], &[3.0, 3.0, 3.0]);
        assert_eq!(&m.positive[4..7], &[1.5, 0.0, 0.0]);
        assert_eq!(m.count[0], 1.0 + 3.0);
        // Anchor 1 (class 0): target 2 is column 6.
        assert_eq!(&m.positive[7 + 4..7 + 7], &[0.0, 0.0, 1.5]);
    }
}
