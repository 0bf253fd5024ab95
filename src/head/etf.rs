//! The simplex equiangular tight frame (Papyan et al. 2020): C unit-free class directions of
//! equal norm and pairwise cosine −1/(C−1), the geometry neural collapse converges to.

use crate::error::{RblError, Result};
use crate::head::host_linalg::{Mat, orthonormal_columns, random_orthonormal};

/// M = sqrt(C/(C−1)) · U · Qᵀ, a d×C frame.
///
/// Q (C × (C−1)) is an orthonormal basis of the vectors orthogonal to 1, so Q·Qᵀ = I − 11ᵀ/C,
/// and U (d × (C−1)) has random orthonormal columns drawn from `seed`. Then
/// MᵀM = C/(C−1) · (I − 11ᵀ/C): the paper's frame, for every d ≥ C−1 (the paper's
/// U·(I − 11ᵀ/C) form needs d ≥ C).
pub fn simplex_etf(dim: usize, classes: usize, seed: u64) -> Result<Mat> {
    if classes < 2 {
        return Err(RblError::Model(format!("a simplex ETF needs at least 2 classes, got {classes}")));
    }
    if dim + 1 < classes {
        return Err(RblError::Model(format!(
            "a simplex ETF of {classes} classes needs a feature dimension of at least {} (C−1), got {dim}; \
             set model.feature_dim",
            classes - 1
        )));
    }
    let mut centred = Mat::eye(classes);
    for x in centred.data.iter_mut() {
        *x -= 1.0 / classes as f64;
    }
    let q = orthonormal_columns(&Mat {
        rows: classes,
        cols: classes - 1,
        data: (0..classes).flat_map(|i| (0..classes - 1).map(move |j| (i, j))).map(|(i, j)| centred.at(i, j)).collect(),
    });
    let u = random_orthonormal(dim, classes - 1, seed);
    Ok(u.matmul(&q.t()).scale((classes as f64 / (classes - 1) as f64).sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_have_equal_norm_and_cosine_minus_one_over_c_minus_one() {
        for (d, c) in [(256, 10), (9, 10), (128, 100), (99, 100)] {
            let m = simplex_etf(d, c, 3).unwrap();
            assert_eq!((m.rows, m.cols), (d, c));
            let g = m.t().matmul(&m);
            for i in 0..c {
                assert!((g.at(i, i) - 1.0).abs() < 1e-10, "norm² {}", g.at(i, i));
                for j in 0..c {
                    if i != j {
                        assert!((g.at(i, j) + 1.0 / (c as f64 - 1.0)).abs() < 1e-10);
                    }
                }
            }
            // Columns sum to zero: the frame is centred.
            for r in 0..d {
                assert!((0..c).map(|j| m.at(r, j)).sum::<f64>().abs() < 1e-10);
            }
        }
        assert_ne!(simplex_etf(16, 10, 1).unwrap(), simplex_etf(16, 10, 2).unwrap());
        let e = simplex_etf(8, 10, 0).unwrap_err().to_string();
        assert!(e.contains("at least 9"), "{e}");
    }
}
