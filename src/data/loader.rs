//! A batch loader that shuffles, augments and normalises the next batch on its own thread
//! while the model trains on the current one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::ImageSet;
use crate::data::augment::{Augmenter, Draw};
use crate::data::image_set::FileImages;
use crate::data::sampler::Sampler;

/// One batch as flat host memory, ready to become tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBatch {
    /// Normalised images, B × C × H × W.
    pub images: Vec<f32>,
    /// Labels, B.
    pub labels: Vec<i64>,
    /// Mixup (Zhang et al. 2018): the images are λ·x + (1 − λ)·x[perm]; the loss mixes the
    /// labels' losses by the same λ.
    pub mix: Option<Mix>,
    /// Images of the whole global batch this batch is a slice of (the batch itself on one
    /// process): what a rank's share of the gradient is weighted by.
    pub global_len: usize,
    /// The contrastive methods' second view of every image (`LoaderPlan::two_views`).
    pub second_view: Option<SecondView>,
}

/// A second augmented view of each image of a batch, drawn from its own stream, and the seed
/// of the batch's other contrastive draws (KCL's k positives).
#[derive(Debug, Clone, PartialEq)]
pub struct SecondView {
    /// Normalised images, B × C × H × W, in the batch's order.
    pub images: Vec<f32>,
    /// Seeds the batch's positive sampling.
    pub pair_seed: u64,
}

/// Offset of the second view's stream from the epoch seed: the first view's order,
/// augmentation and everything else drawn from the epoch stream are the same with and without
/// a second view.
const SECOND_VIEW_STREAM: u64 = 0x2_71E3_5EC0;

/// The mixing of one mixup batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Weight of the batch's own images and labels (mixup: one for the batch).
    pub lambda: f32,
    /// Labels of the partner images (`labels[perm]`).
    pub partner_labels: Vec<i64>,
    /// UniMix: each image's own weight (then `lambda` is not used).
    pub lambdas: Option<Vec<f32>>,
}

impl HostBatch {
    /// Number of images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// How one pass over a set is ordered and transformed.
#[derive(Debug, Clone)]
pub struct LoaderPlan {
    /// Images per batch.
    pub batch_size: usize,
    /// Shuffle and augment with this seed; `None` keeps set order, no augmentation.
    pub seed: Option<u64>,
    /// Drop the last incomplete batch.
    pub drop_last: bool,
    /// Which images the pass visits (with a seed; without one, every image in set order).
    pub sampler: Sampler,
    /// Batches to produce but not deliver at the start (resuming mid-epoch): they are still
    /// augmented, so the random stream and every later batch are the same as without a skip.
    pub skip: usize,
    /// Mixup's Beta(α, α) parameter (0 = off); needs a seed (training).
    pub mixup_alpha: f64,
    /// UniMix's τ: with it, mixup draws partners ∝ n^τ and a λ per image
    /// ([`crate::data::unimix`]); `None` is plain mixup.
    pub unimix_tau: Option<f64>,
    /// Loader threads: decoding for on-disk sets, augmentation and normalisation for in-memory
    /// ones (a batch is the same whatever the count).
    pub workers: usize,
    /// (rank, ranks): with several ranks each takes its slice of every (global) batch
    /// ([`crate::distributed::shard`]); the order, the augmentation draws and mixup's partners
    /// are drawn for the whole batch from the one stream, so the images do not depend on the
    /// number of ranks. (0, 1) on one process.
    pub shard: (usize, usize),
    /// Draw a second augmented view of every image ([`SecondView`]; needs a seed, one rank).
    pub two_views: bool,
}

/// The seed of epoch `epoch` of a run seeded `seed`: every epoch's order and augmentation
/// depend only on these two numbers, which is what makes resumed runs match.
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(epoch as u64 + 1)
}

/// Iterates over batches produced by a background thread; records how long the consumer
/// waited, so a slow loader shows up in the log.
pub struct Loader {
    rx: Receiver<HostBatch>,
    handle: Option<JoinHandle<()>>,
    waited: Duration,
    batches: usize,
    /// Why the producer stopped early (an image that cannot be used), if it did.
    failure: Arc<Mutex<Option<String>>>,
    /// Training images skipped because they failed to decode (`data.bad_images = "skip"`).
    skipped: Arc<AtomicUsize>,
}

impl Loader {
    /// Starts producing the batches of one pass over `set`.
    pub fn start(set: Arc<ImageSet>, aug: Arc<Augmenter>, plan: LoaderPlan) -> Loader {
        let batches = batch_count(set.len(), plan.batch_size, plan.drop_last);
        let plan_skip = plan.skip.min(batches);
        let (tx, rx) = sync_channel(2);
        let failure = Arc::new(Mutex::new(None));
        let skipped = Arc::new(AtomicUsize::new(0));
        let (failure_w, skipped_w) = (failure.clone(), skipped.clone());
        let handle = std::thread::spawn(move || {
            let mut rng = plan.seed.map(ChaCha8Rng::seed_from_u64);
            let mut second_rng = plan.seed.filter(|_| plan.two_views).map(|s| ChaCha8Rng::seed_from_u64(s ^ SECOND_VIEW_STREAM));
            // UniMix weighs images by their class's training count.
            let class_counts: Vec<f64> =
                if plan.unimix_tau.is_some() { set.class_counts().iter().map(|&c| c as f64).collect() } else { Vec::new() };
            let order: Vec<usize> = match rng.as_mut() {
                Some(rng) => plan.sampler.epoch_order(&set, rng),
                None => (0..set.len()).collect(),
            };
            let (c, h, w) = (set.channels, set.height, set.width);
            let n = set.image_len();
            for b in 0..batches {
                let idx = &order[b * plan.batch_size..((b + 1) * plan.batch_size).min(order.len())];
                if plan.shard.1 > 1 {
                    let batch = match sharded_batch(&set, &aug, idx, rng.as_mut(), &plan, &skipped_w) {
                        Ok(batch) => batch,
                        Err(e) => {
                            *failure_w.lock().expect("failure slot") = Some(e.to_string());
                            return;
                        }
                    };
                    if b < plan.skip || batch.labels.is_empty() {
                        continue;
                    }
                    if tx.send(batch).is_err() {
                        return;
                    }
                    continue;
                }
                let (mut images, labels, second_view) = match set.files.as_deref() {
                    None => {
                        // The draws in image order from the one stream, the pixels on `workers`
                        // threads: the same batch whatever the thread count.
                        let draws: Vec<Option<Draw>> = idx.iter().map(|_| rng.as_mut().map(|r| aug.draw(h, w, r))).collect();
                        let mut images = vec![0f32; idx.len() * n];
                        render_batch(&set, &aug, idx, &draws, plan.workers, &mut images);
                        let second = second_rng.as_mut().map(|r| {
                            let draws: Vec<Option<Draw>> = idx.iter().map(|_| Some(aug.draw(h, w, r))).collect();
                            let mut images = vec![0f32; idx.len() * n];
                            render_batch(&set, &aug, idx, &draws, plan.workers, &mut images);
                            SecondView { images, pair_seed: r.random() }
                        });
                        (images, idx.iter().map(|&i| set.labels[i] as i64).collect::<Vec<i64>>(), second)
                    }
                    Some(files) => {
                        // One seed per image, drawn in order: the augmentation does not depend on
                        // which worker decodes which image.
                        let seeds: Vec<Option<u64>> = idx.iter().map(|_| rng.as_mut().map(|r| r.random())).collect();
                        let mut images = Vec::with_capacity(idx.len() * n);
                        let mut labels = Vec::with_capacity(idx.len());
                        let mut kept = Vec::with_capacity(idx.len());
                        for ((&i, seed), decoded) in idx.iter().zip(&seeds).zip(decode_files(files, idx, &seeds, plan.workers)) {
                            match decoded {
                                Ok(bytes) => {
                                    let start = images.len();
                                    images.resize(start + n, 0.0);
                                    aug.apply::<ChaCha8Rng>(&bytes, c, h, w, None, &mut images[start..]);
                                    labels.push(set.labels[i] as i64);
                                    kept.push(i);
                                }
                                Err(_) if files.skip_bad && seed.is_some() => {
                                    skipped_w.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => {
                                    *failure_w.lock().expect("failure slot") = Some(e.to_string());
                                    return;
                                }
                            }
                        }
                        // The second view: a seed per image from its own stream, the images that
                        // decoded decoded again.
                        let second = match second_rng.as_mut() {
                            None => None,
                            Some(r) => {
                                let seeds: Vec<Option<u64>> = idx.iter().map(|_| Some(r.random())).collect();
                                let kept_seeds: Vec<Option<u64>> =
                                    idx.iter().zip(&seeds).filter(|(i, _)| kept.contains(i)).map(|(_, s)| *s).collect();
                                let mut second = Vec::with_capacity(kept.len() * n);
                                for decoded in decode_files(files, &kept, &kept_seeds, plan.workers) {
                                    match decoded {
                                        Ok(bytes) => {
                                            let start = second.len();
                                            second.resize(start + n, 0.0);
                                            aug.apply::<ChaCha8Rng>(&bytes, c, h, w, None, &mut second[start..]);
                                        }
                                        Err(e) => {
                                            *failure_w.lock().expect("failure slot") = Some(e.to_string());
                                            return;
                                        }
                                    }
                                }
                                Some(SecondView { images: second, pair_seed: r.random() })
                            }
                        };
                        (images, labels, second)
                    }
                };
                if labels.is_empty() {
                    continue; // every image of the batch was skipped as undecodable
                }
                let mix = rng.as_mut().filter(|_| plan.mixup_alpha > 0.0).map(|rng| {
                    let draw = draw_mix_kind(&labels, &class_counts, &plan, rng);
                    mix_batch(&mut images, &labels, n, draw)
                });
                if b < plan.skip {
                    continue;
                }
                let global_len = labels.len();
                if tx.send(HostBatch { images, labels, mix, global_len, second_view }).is_err() {
                    return;
                }
            }
        });
        Loader { rx, handle: Some(handle), waited: Duration::ZERO, batches: batches.saturating_sub(plan_skip), failure, skipped }
    }

    /// The error that stopped the pass early, if any: the caller must check it after the last
    /// batch (a short pass is not a finished one).
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("failure slot").clone()
    }

    /// Training images skipped so far because they could not be decoded.
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Number of batches this pass yields.
    pub fn len(&self) -> usize {
        self.batches
    }

    /// True when the pass yields no batch.
    pub fn is_empty(&self) -> bool {
        self.batches == 0
    }

    /// Total time the consumer spent waiting for batches.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Iterator for Loader {
    type Item = HostBatch;

    fn next(&mut self) -> Option<HostBatch> {
        let t = Instant::now();
        let batch = self.rx.recv().ok();
        self.waited += t.elapsed();
        batch
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Drain so the producer is not blocked on a full channel, then join it.
        while self.rx.try_recv().is_ok() {}
        let rx = std::mem::replace(&mut self.rx, sync_channel(0).1);
        drop(rx);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Reads and transforms the images `idx` of an on-disk set on `workers` threads: with a seed,
/// RandomResizedCrop and flip (training); without, resize and centre crop.
fn decode_files(files: &FileImages, idx: &[usize], seeds: &[Option<u64>], workers: usize) -> Vec<crate::error::Result<Vec<u8>>> {
    let load = |k: usize| -> crate::error::Result<Vec<u8>> {
        let img = crate::data::folder::read_image(&files.root.join(&files.paths[idx[k]]))?;
        Ok(crate::data::folder::model_view(&img, files.size, seeds[k]))
    };
    let workers = workers.clamp(1, idx.len().max(1));
    let mut out: Vec<Option<crate::error::Result<Vec<u8>>>> = (0..idx.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..workers).map(|t| s.spawn(move || (t..idx.len()).step_by(workers).map(|k| (k, load(k))).collect::<Vec<_>>())).collect();
        for h in handles {
            for (k, r) in h.join().expect("decoder thread") {
                out[k] = Some(r);
            }
        }
    });
    out.into_iter().map(|r| r.expect("every image decoded")).collect()
}

/// Draws mixup's λ ~ Beta(α, α) and the partner of each of `n` images (a random permutation).
fn draw_mix(n: usize, alpha: f64, rng: &mut ChaCha8Rng) -> (f32, Vec<usize>) {
    use rand::seq::SliceRandom;
    use rand_distr::{Beta, Distribution};
    let lambda = Beta::new(alpha, alpha).expect("alpha > 0").sample(rng) as f32;
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    (lambda, perm)
}

/// λ·own + (1 − λ)·partner, in place.
fn mix_into(dst: &mut [f32], partner: &[f32], lambda: f32) {
    for (d, &s) in dst.iter_mut().zip(partner) {
        *d = lambda * *d + (1.0 - lambda) * s;
    }
}

/// The partners and weights of one mixup batch: plain mixup's one λ and permutation, or
/// UniMix's partner and λ per image.
enum MixDraw {
    /// λ ~ Beta(α, α) for the batch, partners a permutation.
    Uniform { lambda: f32, perm: Vec<usize> },
    /// UniMix ([`crate::data::unimix`]).
    PerImage { partners: Vec<usize>, lambdas: Vec<f32> },
}

impl MixDraw {
    fn partner(&self, k: usize) -> usize {
        match self {
            MixDraw::Uniform { perm, .. } => perm[k],
            MixDraw::PerImage { partners, .. } => partners[k],
        }
    }

    fn lambda(&self, k: usize) -> f32 {
        match self {
            MixDraw::Uniform { lambda, .. } => *lambda,
            MixDraw::PerImage { lambdas, .. } => lambdas[k],
        }
    }

    /// The batch's [`Mix`] for its images `own` (positions in the drawn batch), their partners'
    /// labels given.
    fn mix(&self, own: impl Iterator<Item = usize>, partner_labels: Vec<i64>) -> Mix {
        match self {
            MixDraw::Uniform { lambda, .. } => Mix { lambda: *lambda, partner_labels, lambdas: None },
            MixDraw::PerImage { lambdas, .. } => Mix { lambda: f32::NAN, partner_labels, lambdas: Some(own.map(|k| lambdas[k]).collect()) },
        }
    }
}

/// Draws the mixing of a batch of `labels` (plain mixup, or UniMix with the training counts
/// `class_counts` of each class).
fn draw_mix_kind(labels: &[i64], class_counts: &[f64], plan: &LoaderPlan, rng: &mut ChaCha8Rng) -> MixDraw {
    match plan.unimix_tau {
        None => {
            let (lambda, perm) = draw_mix(labels.len(), plan.mixup_alpha, rng);
            MixDraw::Uniform { lambda, perm }
        }
        Some(tau) => {
            let counts: Vec<f64> = labels.iter().map(|&l| class_counts[l as usize]).collect();
            let (partners, lambdas) = crate::data::unimix::draw(&counts, plan.mixup_alpha, tau, rng);
            MixDraw::PerImage { partners, lambdas }
        }
    }
}

/// Mixes a batch in place as `draw` says.
fn mix_batch(images: &mut [f32], labels: &[i64], image_len: usize, draw: MixDraw) -> Mix {
    let original = images.to_vec();
    for k in 0..labels.len() {
        let p = draw.partner(k);
        mix_into(&mut images[k * image_len..(k + 1) * image_len], &original[p * image_len..(p + 1) * image_len], draw.lambda(k));
    }
    let partner_labels = (0..labels.len()).map(|k| labels[draw.partner(k)]).collect();
    draw.mix(0..labels.len(), partner_labels)
}

/// A rank's slice of the global batch `idx`: the augmentation draws (or decode seeds) and
/// mixup's λ and partners are drawn for the whole batch, in the order one process draws them,
/// and only the slice's images and their mixup partners are rendered. (With `skip` for bad
/// files, a training image that fails to decode is left out of its slice; a failed partner is
/// replaced by the image itself, where one process would have drawn the partners among the
/// images that decoded.)
fn sharded_batch(
    set: &ImageSet,
    aug: &Augmenter,
    idx: &[usize],
    mut rng: Option<&mut ChaCha8Rng>,
    plan: &LoaderPlan,
    skipped: &AtomicUsize,
) -> crate::error::Result<HostBatch> {
    let (c, h, w, n) = (set.channels, set.height, set.width, set.image_len());
    let (rank, ranks) = plan.shard;
    let mine = crate::distributed::shard::slice(rank, ranks, idx.len());
    // The same draws, in the same order, as the one-process path.
    enum Draws {
        Pixels(Vec<Option<Draw>>),
        Seeds(Vec<Option<u64>>),
    }
    let draws = match set.files {
        None => Draws::Pixels(idx.iter().map(|_| rng.as_mut().map(|r| aug.draw(h, w, r))).collect()),
        Some(_) => Draws::Seeds(idx.iter().map(|_| rng.as_mut().map(|r| r.random())).collect()),
    };
    let mix = rng.filter(|_| plan.mixup_alpha > 0.0).map(|rng| {
        let labels: Vec<i64> = idx.iter().map(|&i| set.labels[i] as i64).collect();
        let counts: Vec<f64> = if plan.unimix_tau.is_some() { set.class_counts().iter().map(|&c| c as f64).collect() } else { Vec::new() };
        draw_mix_kind(&labels, &counts, plan, rng)
    });
    // The positions (in the global batch) whose images this rank needs.
    let mut needed: Vec<usize> = mine.clone().collect();
    if let Some(draw) = &mix {
        needed.extend(mine.clone().map(|k| draw.partner(k)));
        needed.sort_unstable();
        needed.dedup();
    }
    let positions: Vec<usize> = needed.iter().map(|&k| idx[k]).collect();
    let mut rendered: std::collections::HashMap<usize, Vec<f32>> = std::collections::HashMap::new();
    match (&draws, set.files.as_deref()) {
        (Draws::Pixels(d), _) => {
            let sub: Vec<Option<Draw>> = needed.iter().map(|&k| d[k].clone()).collect();
            let mut images = vec![0f32; needed.len() * n];
            render_batch(set, aug, &positions, &sub, plan.workers, &mut images);
            for (j, &k) in needed.iter().enumerate() {
                rendered.insert(k, images[j * n..(j + 1) * n].to_vec());
            }
        }
        (Draws::Seeds(seeds), Some(files)) => {
            let sub: Vec<Option<u64>> = needed.iter().map(|&k| seeds[k]).collect();
            for ((&k, seed), decoded) in needed.iter().zip(&sub).zip(decode_files(files, &positions, &sub, plan.workers)) {
                match decoded {
                    Ok(bytes) => {
                        let mut img = vec![0f32; n];
                        aug.apply::<ChaCha8Rng>(&bytes, c, h, w, None, &mut img);
                        rendered.insert(k, img);
                    }
                    Err(_) if files.skip_bad && seed.is_some() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        (Draws::Seeds(_), None) => unreachable!("seeds are drawn for on-disk sets"),
    }
    let mut images = Vec::with_capacity(mine.len() * n);
    let mut labels = Vec::with_capacity(mine.len());
    let mut partner_labels = Vec::new();
    let mut kept = Vec::with_capacity(mine.len());
    for k in mine {
        let Some(own) = rendered.get(&k) else {
            skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let start = images.len();
        images.extend_from_slice(own);
        labels.push(set.labels[idx[k]] as i64);
        kept.push(k);
        if let Some(draw) = &mix {
            let p = if rendered.contains_key(&draw.partner(k)) { draw.partner(k) } else { k };
            mix_into(&mut images[start..], &rendered[&p], draw.lambda(k));
            partner_labels.push(set.labels[idx[p]] as i64);
        }
    }
    let mix = mix.map(|draw| draw.mix(kept.into_iter(), partner_labels));
    Ok(HostBatch { images, labels, mix, global_len: idx.len(), second_view: None })
}

/// Images rendered per thread at least: below this a thread costs more than it saves.
const IMAGES_PER_THREAD: usize = 16;

/// Renders the batch's images `idx` of the in-memory `set` into `out` (one image after
/// another), as `draws` say, on up to `workers` threads, each a contiguous run of images.
fn render_batch(set: &ImageSet, aug: &Augmenter, idx: &[usize], draws: &[Option<Draw>], workers: usize, out: &mut [f32]) {
    let (c, h, w, n) = (set.channels, set.height, set.width, set.image_len());
    let render = |first: usize, out: &mut [f32]| {
        for (k, dst) in out.chunks_exact_mut(n).enumerate() {
            aug.render(set.image(idx[first + k]), c, h, w, draws[first + k].as_ref(), dst);
        }
    };
    let threads = workers.min(idx.len() / IMAGES_PER_THREAD).max(1);
    if threads == 1 {
        return render(0, out);
    }
    let per = idx.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (t, chunk) in out.chunks_mut(per * n).enumerate() {
            let render = &render;
            scope.spawn(move || render(t * per, chunk));
        }
    });
}

/// Batches in one pass over `n` images.
pub fn batch_count(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last { n / batch_size } else { n.div_ceil(batch_size) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_every_image_once_in_a_seeded_order() {
        let set = Arc::new(ImageSet {
            pixels: (0..10u8).collect(),
            labels: (0..10).collect(),
            num_classes: 10,
            channels: 1,
            height: 1,
            width: 1,
            files: None,
        });
        let aug =
            Arc::new(Augmenter { mean: vec![0.0], std: vec![1.0 / 255.0], crop_padding: 0, flip: false, autoaugment: false, cutout: 0 });
        let run = |seed, drop_last| {
            let plan = LoaderPlan {
                batch_size: 4,
                seed,
                drop_last,
                sampler: Sampler::Instance,
                skip: 0,
                mixup_alpha: 0.0,
                unimix_tau: None,
                workers: 1,
                shard: (0, 1),
                two_views: false,
            };
            Loader::start(set.clone(), aug.clone(), plan).flat_map(|b| b.labels).collect::<Vec<_>>()
        };
        assert_eq!(run(None, false), (0..10).collect::<Vec<i64>>());
        let a = run(Some(5), false);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<i64>>());
        assert_eq!(a, run(Some(5), false));
        assert_ne!(a, run(Some(6), false));
        assert_eq!(run(Some(5), true).len(), 8);
        assert_eq!(batch_count(10, 4, true), 2);
        assert_eq!(batch_count(10, 4, false), 3);
    }

    /// Issue #33: the slices of a global batch over 2 and 3 ranks, put together in rank order,
    /// are the one-process batch bit for bit: the same images, augmentation, mixup partners and
    /// λ (in-memory and on-disk sets).
    #[test]
    fn rank_slices_tile_the_one_process_batch() {
        let memory = Arc::new(ImageSet {
            pixels: (0..30 * 3 * 64).map(|i| (i * 41 % 251) as u8).collect(),
            labels: (0..30).map(|i| i % 7).collect(),
            num_classes: 7,
            channels: 3,
            height: 8,
            width: 8,
            files: None,
        });
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<std::path::PathBuf> = (0..30)
            .map(|i| {
                let p = std::path::PathBuf::from(format!("{i}.png"));
                image::RgbImage::from_fn(11, 9, |x, y| image::Rgb([(x * 20 + i) as u8, (y * 25) as u8, (i * 8) as u8]))
                    .save(dir.path().join(&p))
                    .unwrap();
                p
            })
            .collect();
        let files = Arc::new(ImageSet {
            pixels: Vec::new(),
            files: Some(Arc::new(FileImages { root: dir.path().into(), paths, size: 8, skip_bad: false })),
            ..(*memory).clone()
        });
        let aug = Arc::new(Augmenter { mean: vec![0.4; 3], std: vec![0.2; 3], crop_padding: 2, flip: true, autoaugment: true, cutout: 3 });
        let cases = [
            (&memory, 0.0, None),
            (&memory, 1.0, None),
            (&memory, 0.8, Some(-0.5)),
            (&files, 0.0, None),
            (&files, 0.4, None),
            (&files, 0.8, Some(-0.5)),
        ];
        for (set, mixup_alpha, unimix_tau) in cases {
            let run = |shard: (usize, usize)| {
                let plan = LoaderPlan {
                    batch_size: 12,
                    seed: Some(4),
                    drop_last: false,
                    sampler: Sampler::Instance,
                    skip: 0,
                    mixup_alpha,
                    unimix_tau,
                    workers: 2,
                    shard,
                    two_views: false,
                };
                Loader::start(set.clone(), aug.clone(), plan).collect::<Vec<_>>()
            };
            let whole = run((0, 1));
            for ranks in [2, 3] {
                let parts: Vec<Vec<HostBatch>> = (0..ranks).map(|r| run((r, ranks))).collect();
                for (b, one) in whole.iter().enumerate() {
                    let images: Vec<f32> = parts.iter().flat_map(|p| p[b].images.clone()).collect();
                    let labels: Vec<i64> = parts.iter().flat_map(|p| p[b].labels.clone()).collect();
                    assert_eq!((&images, &labels), (&one.images, &one.labels), "batch {b}, {ranks} ranks, mixup {mixup_alpha}");
                    assert!(parts.iter().all(|p| p[b].global_len == one.len()));
                    if let Some(m) = &one.mix {
                        let partners: Vec<i64> = parts.iter().flat_map(|p| p[b].mix.as_ref().unwrap().partner_labels.clone()).collect();
                        assert_eq!(partners, m.partner_labels);
                        assert!(parts.iter().all(|p| p[b].mix.as_ref().unwrap().lambda.to_bits() == m.lambda.to_bits()));
                        let lambdas: Option<Vec<f32>> = m
                            .lambdas
                            .as_ref()
                            .map(|_| parts.iter().flat_map(|p| p[b].mix.as_ref().unwrap().lambdas.clone().unwrap()).collect());
                        assert_eq!(lambdas, m.lambdas, "per-image λ of UniMix");
                    }
                }
            }
        }
    }

    #[test]
    fn batches_do_not_depend_on_the_thread_count_and_keep_the_one_stream() {
        // 40 RGB 8×8 images, every augmentation on: the batches are the same on 1, 3 and 8
        // threads, and the same as augmenting image after image from the one stream (how the
        // loader has always drawn), so runs from before the threads reproduce to the bit.
        let set = Arc::new(ImageSet {
            pixels: (0..40 * 3 * 64).map(|i| (i * 37 % 253) as u8).collect(),
            labels: (0..40).map(|i| i % 10).collect(),
            num_classes: 10,
            channels: 3,
            height: 8,
            width: 8,
            files: None,
        });
        let aug = Arc::new(Augmenter { mean: vec![0.4; 3], std: vec![0.2; 3], crop_padding: 2, flip: true, autoaugment: true, cutout: 3 });
        let run = |workers| {
            let plan = LoaderPlan {
                batch_size: 36,
                seed: Some(9),
                drop_last: false,
                sampler: Sampler::Instance,
                skip: 0,
                mixup_alpha: 0.0,
                unimix_tau: None,
                workers,
                shard: (0, 1),
                two_views: false,
            };
            Loader::start(set.clone(), aug.clone(), plan).map(|b| (b.images, b.labels)).collect::<Vec<_>>()
        };
        let one = run(1);
        assert_eq!(one.len(), 2);
        assert_eq!(one, run(3));
        assert_eq!(one, run(8));
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let order = Sampler::Instance.epoch_order(&set, &mut rng);
        let n = set.image_len();
        let mut sequential = vec![0f32; order.len() * n];
        for (k, &i) in order.iter().enumerate() {
            aug.apply(set.image(i), 3, 8, 8, Some(&mut rng), &mut sequential[k * n..(k + 1) * n]);
        }
        let batched: Vec<f32> = one.iter().flat_map(|(images, _)| images.iter().copied()).collect();
        assert_eq!(batched, sequential);
    }

    #[test]
    fn skipping_batches_leaves_the_rest_unchanged() {
        // Augmentation draws from the same stream as the order: a skip must still draw for the
        // skipped batches, or every later crop and flip would change on resume.
        let set = Arc::new(ImageSet {
            pixels: (0..10 * 16).map(|i| (i * 7 % 251) as u8).collect(),
            labels: (0..10).collect(),
            num_classes: 10,
            channels: 1,
            height: 4,
            width: 4,
            files: None,
        });
        let aug = Arc::new(Augmenter { mean: vec![0.0], std: vec![1.0], crop_padding: 1, flip: true, autoaugment: false, cutout: 0 });
        let run = |skip| {
            let plan = LoaderPlan {
                batch_size: 3,
                seed: Some(9),
                drop_last: false,
                sampler: Sampler::Instance,
                skip,
                mixup_alpha: 0.0,
                unimix_tau: None,
                workers: 1,
                shard: (0, 1),
                two_views: false,
            };
            let loader = Loader::start(set.clone(), aug.clone(), plan);
            let len = loader.len();
            let batches: Vec<(Vec<f32>, Vec<i64>)> = loader.map(|b| (b.images, b.labels)).collect();
            assert_eq!(batches.len(), len);
            batches
        };
        let all = run(0);
        assert_eq!(all.len(), 4);
        assert_eq!(run(2), all[2..].to_vec());
        assert!(run(9).is_empty());
    }

    #[test]
    fn mixup_mixes_images_and_labels_by_one_lambda() {
        let set = Arc::new(ImageSet {
            pixels: (0..8).map(|i| i * 30).collect(),
            labels: (0..8).collect(),
            num_classes: 8,
            channels: 1,
            height: 1,
            width: 1,
            files: None,
        });
        let aug =
            Arc::new(Augmenter { mean: vec![0.0], std: vec![1.0 / 255.0], crop_padding: 0, flip: false, autoaugment: false, cutout: 0 });
        let plan = LoaderPlan {
            batch_size: 8,
            seed: Some(1),
            drop_last: false,
            sampler: Sampler::Instance,
            skip: 0,
            mixup_alpha: 1.0,
            unimix_tau: None,
            workers: 1,
            shard: (0, 1),
            two_views: false,
        };
        let batch = Loader::start(set.clone(), aug.clone(), plan.clone()).next().unwrap();
        let mix = batch.mix.clone().expect("mixup on");
        assert!((0.0..=1.0).contains(&mix.lambda));
        let mut partners = mix.partner_labels.clone();
        partners.sort();
        assert_eq!(partners, (0..8).collect::<Vec<i64>>(), "a permutation of the batch");
        for k in 0..8 {
            let (a, b) = (batch.labels[k] as f32 * 30.0, mix.partner_labels[k] as f32 * 30.0);
            assert!((batch.images[k] - (mix.lambda * a + (1.0 - mix.lambda) * b)).abs() < 1e-3);
        }
        assert_eq!(Loader::start(set.clone(), aug.clone(), plan.clone()).next().unwrap(), batch, "seeded");
        let eval = LoaderPlan { seed: None, ..plan };
        assert!(Loader::start(set, aug, eval).next().unwrap().mix.is_none(), "never at evaluation");
    }

    /// Issue #35: a second view changes nothing of the first (its own stream), is another
    /// augmentation of the same images, and is drawn from the seed (in-memory and on-disk sets).
    #[test]
    fn a_second_view_is_another_draw_of_the_same_images() {
        let memory = Arc::new(ImageSet {
            pixels: (0..12 * 3 * 64).map(|i| (i * 37 % 251) as u8).collect(),
            labels: (0..12).map(|i| i % 3).collect(),
            num_classes: 3,
            channels: 3,
            height: 8,
            width: 8,
            files: None,
        });
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<std::path::PathBuf> = (0..12)
            .map(|i| {
                let p = std::path::PathBuf::from(format!("{i}.png"));
                image::RgbImage::from_fn(13, 10, |x, y| image::Rgb([(x * 19 + i) as u8, (y * 23) as u8, (i * 9) as u8]))
                    .save(dir.path().join(&p))
                    .unwrap();
                p
            })
            .collect();
        let files = Arc::new(ImageSet {
            pixels: Vec::new(),
            files: Some(Arc::new(FileImages { root: dir.path().into(), paths, size: 8, skip_bad: false })),
            ..(*memory).clone()
        });
        let aug = Arc::new(Augmenter { mean: vec![0.4; 3], std: vec![0.2; 3], crop_padding: 2, flip: true, autoaugment: false, cutout: 0 });
        for set in [&memory, &files] {
            let run = |two_views: bool, seed: u64| {
                let plan = LoaderPlan {
                    batch_size: 5,
                    seed: Some(seed),
                    drop_last: false,
                    sampler: Sampler::Instance,
                    skip: 0,
                    mixup_alpha: 0.0,
                    unimix_tau: None,
                    workers: 2,
                    shard: (0, 1),
                    two_views,
                };
                Loader::start(set.clone(), aug.clone(), plan).collect::<Vec<_>>()
            };
            let (one, two) = (run(false, 3), run(true, 3));
            assert_eq!(one.len(), two.len());
            for (a, b) in one.iter().zip(&two) {
                assert_eq!((&a.images, &a.labels), (&b.images, &b.labels), "the first view is untouched");
                assert!(a.second_view.is_none());
                let second = b.second_view.as_ref().expect("two views");
                assert_eq!(second.images.len(), b.images.len());
                assert_ne!(second.images, b.images, "another augmentation");
            }
            // Deterministic from the seed; another seed draws another second view.
            assert_eq!(run(true, 3), two);
            let other = run(true, 4);
            assert_ne!(other[0].second_view, two[0].second_view);
        }
        // The un-augmented views of an image are equal: the second view shows the same image.
        let plain = Arc::new(Augmenter { crop_padding: 0, flip: false, ..(*aug).clone() });
        let plan = LoaderPlan {
            batch_size: 12,
            seed: Some(1),
            drop_last: false,
            sampler: Sampler::Instance,
            skip: 0,
            mixup_alpha: 0.0,
            unimix_tau: None,
            workers: 1,
            shard: (0, 1),
            two_views: true,
        };
        let batch = Loader::start(memory.clone(), plain, plan).next().unwrap();
        assert_eq!(batch.second_view.unwrap().images, batch.images);
    }
}
