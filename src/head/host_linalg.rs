//! Small dense f64 linear algebra on the host: building frames once at start-up and checking
//! device results in tests. Row-major `Vec<f64>` matrices; sizes are a few hundred at most.

use burn::tensor::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// A row-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Entries, row-major.
    pub data: Vec<f64>,
}

impl Mat {
    /// The zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat { rows, cols, data: vec![0.0; rows * cols] }
    }

    /// The identity.
    pub fn eye(n: usize) -> Mat {
        let mut m = Mat::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = 1.0;
        }
        m
    }

    /// Entry (i, j).
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    /// The transpose.
    pub fn t(&self) -> Mat {
        let mut m = Mat::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                m.data[j * self.rows + i] = self.at(i, j);
            }
        }
        m
    }

    /// Matrix product.
    pub fn matmul(&self, o: &Mat) -> Mat {
        assert_eq!(self.cols, o.rows);
        let mut m = Mat::zeros(self.rows, o.cols);
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.at(i, k);
                if a == 0.0 {
                    continue;
                }
                let row = &o.data[k * o.cols..(k + 1) * o.cols];
                let out = &mut m.data[i * o.cols..(i + 1) * o.cols];
                for (x, y) in out.iter_mut().zip(row) {
                    *x += a * y;
                }
            }
        }
        m
    }

    /// `self + s·o`.
    pub fn add_scaled(&self, o: &Mat, s: f64) -> Mat {
        Mat { rows: self.rows, cols: self.cols, data: self.data.iter().zip(&o.data).map(|(a, b)| a + s * b).collect() }
    }

    /// Every entry times `s`.
    pub fn scale(&self, s: f64) -> Mat {
        Mat { rows: self.rows, cols: self.cols, data: self.data.iter().map(|a| a * s).collect() }
    }

    /// Largest absolute column sum.
    pub fn norm1(&self) -> f64 {
        (0..self.cols).map(|j| (0..self.rows).map(|i| self.at(i, j).abs()).sum::<f64>()).fold(0.0, f64::max)
    }

    /// Frobenius norm.
    pub fn frobenius(&self) -> f64 {
        self.data.iter().map(|x| x * x).sum::<f64>().sqrt()
    }

    /// A device matrix read back to the host.
    pub fn from_tensor(t: Tensor<2>) -> Mat {
        let [rows, cols] = t.dims();
        let data: Vec<f32> = crate::transfer::read_f32(t);
        Mat { rows, cols, data: data.into_iter().map(f64::from).collect() }
    }

    /// Euclidean norm of each column.
    pub fn column_norms(&self) -> Vec<f64> {
        (0..self.cols).map(|j| (0..self.rows).map(|i| self.at(i, j).powi(2)).sum::<f64>().sqrt()).collect()
    }

    /// The entries as f32, for building tensors.
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&x| x as f32).collect()
    }

    /// A matrix of independent standard normal entries.
    pub fn gaussian(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Mat {
        Mat { rows, cols, data: (0..rows * cols).map(|_| StandardNormal.sample(rng)).collect() }
    }
}

/// Orthonormalises the columns of `m` (modified Gram–Schmidt, applied twice for accuracy).
/// For a Gaussian `m` the result is Haar-distributed (the QR factor with positive diagonal).
pub fn orthonormal_columns(m: &Mat) -> Mat {
    let (n, k) = (m.rows, m.cols);
    let mut q = m.t(); // rows of q are the columns of m
    for _pass in 0..2 {
        for j in 0..k {
            for i in 0..j {
                let dot: f64 = (0..n).map(|r| q.data[j * n + r] * q.data[i * n + r]).sum();
                for r in 0..n {
                    q.data[j * n + r] -= dot * q.data[i * n + r];
                }
            }
            let norm: f64 = (0..n).map(|r| q.data[j * n + r].powi(2)).sum::<f64>().sqrt();
            for r in 0..n {
                q.data[j * n + r] /= norm;
            }
        }
    }
    q.t()
}

/// A random `rows × cols` matrix with orthonormal columns, from `seed`.
pub fn random_orthonormal(rows: usize, cols: usize, seed: u64) -> Mat {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    orthonormal_columns(&Mat::gaussian(rows, cols, &mut rng))
}

/// Reference matrix exponential in f64: scaling to norm ≤ 1/8, Taylor to degree 30, squaring.
pub fn expm_reference(x: &Mat) -> Mat {
    let norm = x.norm1();
    let s = if norm > 0.125 { (norm / 0.125).log2().ceil() as i32 } else { 0 };
    let xs = x.scale(0.5f64.powi(s));
    let n = x.rows;
    let mut result = Mat::eye(n);
    let mut term = Mat::eye(n);
    for k in 1..=30 {
        term = term.matmul(&xs).scale(1.0 / k as f64);
        result = result.add_scaled(&term, 1.0);
    }
    for _ in 0..s {
        result = result.matmul(&result);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthonormal_columns_are_orthonormal() {
        let q = random_orthonormal(20, 7, 1);
        let g = q.t().matmul(&q);
        assert!(g.add_scaled(&Mat::eye(7), -1.0).frobenius() < 1e-12);
    }

    #[test]
    fn reference_expm_of_a_rotation_generator() {
        let t = 2.5f64;
        let x = Mat { rows: 2, cols: 2, data: vec![0.0, -t, t, 0.0] };
        let e = expm_reference(&x);
        let want = [t.cos(), -t.sin(), t.sin(), t.cos()];
        for (a, b) in e.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-13, "{a} {b}");
        }
    }
}
