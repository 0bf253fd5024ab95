//! The confusion matrix of a test set: entry (i, j) counts the images of class i predicted as
//! class j, for the raw and for the logit-adjusted predictions. On a long-tailed training set
//! the raw matrix shows the pull towards the head classes (mass in the first columns) that
//! subtracting τ·log π removes.

use serde::{Deserialize, Serialize};

/// Confusion matrices of one evaluation, row-major `classes × classes`, rows the true class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// Number of classes.
    pub classes: usize,
    /// Counts for the raw predictions.
    pub raw: Vec<u32>,
    /// Counts for the logit-adjusted predictions (z − τ·log π).
    pub adjusted: Vec<u32>,
}

/// The counts of `predictions` against `labels` over `classes` classes.
pub fn confusion_counts(predictions: &[usize], labels: &[usize], classes: usize) -> Vec<u32> {
    let mut m = vec![0u32; classes * classes];
    for (&p, &y) in predictions.iter().zip(labels) {
        m[y * classes + p] += 1;
    }
    m
}

impl Confusion {
    /// Row `i` (the images of class `i`) of the raw or adjusted matrix.
    pub fn row(&self, adjusted: bool, i: usize) -> &[u32] {
        let m = if adjusted { &self.adjusted } else { &self.raw };
        &m[i * self.classes..(i + 1) * self.classes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_true_classes_and_columns_predictions() {
        // Three images of class 0 (two right, one called 2), one of class 1 called 0.
        let m = confusion_counts(&[0, 0, 2, 0], &[0, 0, 0, 1], 3);
        assert_eq!(m, vec![2, 0, 1, 1, 0, 0, 0, 0, 0]);
        let c = Confusion { classes: 3, raw: m.clone(), adjusted: m };
        assert_eq!(c.row(false, 0), &[2, 0, 1]);
        assert_eq!(c.row(true, 1).iter().sum::<u32>(), 1);
    }
}
