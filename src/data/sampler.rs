//! The order in which an epoch visits the training images: instance-balanced (every image once),
//! class-balanced (each draw picks a class uniformly, then an image of it) or square-root
//! (class chosen with probability ∝ √n_c), as compared by Kang et al. (ICLR 2020).

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::ImageSet;

/// How an epoch samples its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// A random permutation: each image once per epoch.
    #[default]
    Instance,
    /// Class uniformly, then an image of it uniformly (with replacement); N draws an epoch.
    ClassBalanced,
    /// Class with probability ∝ √n_c, then an image of it; N draws an epoch.
    Sqrt,
}

impl Sampler {
    /// The indices one epoch visits, in order.
    pub fn epoch_order(&self, set: &ImageSet, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let n = set.len();
        match self {
            Sampler::Instance => {
                let mut order: Vec<usize> = (0..n).collect();
                order.shuffle(rng);
                order
            }
            Sampler::ClassBalanced | Sampler::Sqrt => {
                let by_class: Vec<Vec<usize>> = set.indices_by_class().into_iter().filter(|v| !v.is_empty()).collect();
                let power = if *self == Sampler::Sqrt { 0.5 } else { 0.0 };
                let mass: Vec<f64> = by_class.iter().map(|v| (v.len() as f64).powf(power)).collect();
                let total: f64 = mass.iter().sum();
                let cumulative: Vec<f64> = mass
                    .iter()
                    .scan(0.0, |acc, m| {
                        *acc += m / total;
                        Some(*acc)
                    })
                    .collect();
                (0..n)
                    .map(|_| {
                        let u: f64 = rng.random();
                        let c = cumulative.iter().position(|&p| u < p).unwrap_or(by_class.len() - 1);
                        by_class[c][rng.random_range(0..by_class[c].len())]
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn long_tailed() -> ImageSet {
        // 900, 90, 10 images of classes 0, 1, 2.
        let labels: Vec<u32> = [(0u32, 900), (1, 90), (2, 10)].iter().flat_map(|&(c, n)| std::iter::repeat_n(c, n)).collect();
        ImageSet { pixels: vec![0; labels.len()], labels, num_classes: 3, channels: 1, height: 1, width: 1, files: None }
    }

    fn frequencies(s: Sampler) -> Vec<f64> {
        let set = long_tailed();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0usize; 3];
        let mut draws = 0;
        for _ in 0..100 {
            for i in s.epoch_order(&set, &mut rng) {
                counts[set.labels[i] as usize] += 1;
                draws += 1;
            }
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    #[test]
    fn class_frequencies_over_many_draws() {
        let inst = frequencies(Sampler::Instance);
        assert_eq!(inst, vec![0.9, 0.09, 0.01]);
        for (f, want) in frequencies(Sampler::ClassBalanced).iter().zip([1.0 / 3.0; 3]) {
            assert!((f - want).abs() < 0.01, "{f} vs {want}");
        }
        let s: f64 = [900f64, 90.0, 10.0].iter().map(|n| n.sqrt()).sum();
        for (f, n) in frequencies(Sampler::Sqrt).iter().zip([900f64, 90.0, 10.0]) {
            assert!((f - n.sqrt() / s).abs() < 0.01, "{f} vs {}", n.sqrt() / s);
        }
    }
}
