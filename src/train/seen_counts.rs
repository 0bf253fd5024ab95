//! The images of each class fed to the loss since the run began: Seesaw's accumulated counts
//! (`loss.name = "seesaw"`). They are a function of the run's epoch orders, which depend only on
//! the seed and the epoch, so a run that resumes recomputes them from the orders rather than
//! storing them, and continues with the very counts an uninterrupted run had.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::config::ExperimentConfig;
use crate::data::ImageSet;
use crate::data::loader::{batch_count, epoch_seed};

/// The counts after `epochs` whole epochs and `steps` batches of the next, over `set` as the
/// training loop draws it (every rank's share of each global batch).
pub(crate) fn replay(set: &ImageSet, cfg: &ExperimentConfig, epochs: usize, steps: usize) -> Vec<f64> {
    let mut seen = vec![0f64; set.num_classes];
    let batch = cfg.train.batch_size;
    let batches = batch_count(set.len(), batch, cfg.train.drop_last);
    for epoch in 0..=epochs {
        let take = if epoch < epochs { batches } else { steps.min(batches) };
        if take == 0 {
            continue;
        }
        let order = cfg.data.sampler.epoch_order(set, &mut ChaCha8Rng::seed_from_u64(epoch_seed(cfg.seed, epoch)));
        for &i in &order[..(take * batch).min(order.len())] {
            seen[set.labels[i] as usize] += 1.0;
        }
    }
    seen
}

/// Adds a batch's labels (over every rank: each has its slice) to `seen`.
pub(crate) fn add_batch(seen: &mut [f64], labels: &[i64], world: &crate::distributed::World) {
    let mut batch = vec![0f64; seen.len()];
    for &l in labels {
        batch[l as usize] += 1.0;
    }
    world.all_reduce_sum_f64(&mut batch);
    for (s, b) in seen.iter_mut().zip(batch) {
        *s += b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::Augmenter;
    use crate::data::loader::{Loader, LoaderPlan};
    use std::sync::Arc;

    /// Replaying the orders gives what the loader's batches add up to, mid-epoch included.
    #[test]
    fn replay_equals_the_batches_the_loader_gives() {
        let set = Arc::new(ImageSet {
            pixels: vec![0; 23],
            labels: (0..23).map(|i| [0, 0, 0, 1, 1, 2][i % 6]).collect(),
            num_classes: 3,
            channels: 1,
            height: 1,
            width: 1,
            files: None,
        });
        let mut cfg = ExperimentConfig { seed: 5, ..Default::default() };
        cfg.train.batch_size = 4;
        let aug = Arc::new(Augmenter { mean: vec![0.0], std: vec![1.0], crop_padding: 0, flip: false, autoaugment: false, cutout: 0 });
        let mut seen = vec![0f64; 3];
        let world = crate::distributed::World { rank: 0, size: 1, local_rank: 0 };
        for epoch in 0..3 {
            let plan = LoaderPlan {
                batch_size: 4,
                seed: Some(epoch_seed(5, epoch)),
                drop_last: true,
                sampler: cfg.data.sampler,
                skip: 0,
                mixup_alpha: 0.0,
                unimix_tau: None,
                workers: 1,
                shard: (0, 1),
                two_views: false,
            };
            for (step, batch) in Loader::start(set.clone(), aug.clone(), plan).enumerate() {
                assert_eq!(replay(&set, &cfg, epoch, step), seen, "before epoch {epoch} step {step}");
                add_batch(&mut seen, &batch.labels, &world);
            }
        }
        assert_eq!(replay(&set, &cfg, 3, 0), seen);
        assert_eq!(seen.iter().sum::<f64>(), 3.0 * 20.0, "5 whole batches of 4 per epoch");
    }
}
