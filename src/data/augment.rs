//! Training-time augmentation (random crop with zero padding, horizontal flip, optionally
//! AutoAugment's CIFAR policy and Cutout) and the per-channel normalisation applied to every
//! image. The order is the paper's code's: crop, flip, AutoAugment, Cutout, normalise.

use rand::Rng;

/// Turns byte images into normalised floats, optionally augmenting them.
#[derive(Debug, Clone)]
pub struct Augmenter {
    /// Per-channel mean (0–1 scale).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation (0–1 scale).
    pub std: Vec<f32>,
    /// Crop padding in pixels (0 = no crop).
    pub crop_padding: usize,
    /// Random horizontal flip.
    pub flip: bool,
    /// AutoAugment's CIFAR-10 policy after crop and flip.
    pub autoaugment: bool,
    /// Cutout: one square hole of this side (0 = off), black before normalisation; its centre
    /// is uniform over the image and the square is clipped at the border (DeVries and Taylor).
    pub cutout: usize,
}

/// The random choices of one image's augmentation, drawn before any pixel is touched: a
/// batch's draws come from the one stream in image order (what makes a run reproducible), and
/// its pixels can then be rendered on any number of threads with the same result.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    /// Crop shift (dy, dx) and flip.
    geometry: (isize, isize, bool),
    /// The byte stage (AutoAugment, Cutout), when either is on.
    bytes: Option<ByteStage>,
}

/// The drawn AutoAugment operations and Cutout centre of one image.
#[derive(Debug, Clone, PartialEq)]
struct ByteStage {
    policy: Vec<crate::data::autoaugment::DrawnOp>,
    /// Cutout's centre (y, x), when Cutout is on.
    hole: Option<(isize, isize)>,
}

impl Augmenter {
    /// Writes one image (planar bytes, C × H × W) into `out` as normalised floats; with `rng`
    /// the random crop and flip (and AutoAugment and Cutout when on) are applied, without it the
    /// image is only normalised.
    pub fn apply<R: Rng>(&self, img: &[u8], c: usize, h: usize, w: usize, rng: Option<&mut R>, out: &mut [f32]) {
        let draw = rng.map(|rng| self.draw(h, w, rng));
        self.render(img, c, h, w, draw.as_ref(), out);
    }

    /// Draws one image's random choices from `rng` (H × W images), in the order the stream
    /// has always been read: crop dy, dx, flip, then AutoAugment's, then Cutout's centre.
    pub fn draw<R: Rng>(&self, h: usize, w: usize, rng: &mut R) -> Draw {
        let p = self.crop_padding as i32;
        let dy = if p > 0 { rng.random_range(-p..=p) as isize } else { 0 };
        let dx = if p > 0 { rng.random_range(-p..=p) as isize } else { 0 };
        let geometry = (dy, dx, self.flip && rng.random_bool(0.5));
        let bytes = (self.autoaugment || self.cutout > 0).then(|| {
            let policy = if self.autoaugment { crate::data::autoaugment::draw_cifar10_policy(rng) } else { Vec::new() };
            let hole = (self.cutout > 0).then(|| (rng.random_range(0..h) as isize, rng.random_range(0..w) as isize));
            ByteStage { policy, hole }
        });
        Draw { geometry, bytes }
    }

    /// Writes one image into `out` as normalised floats, augmented as `draw` says (`None`:
    /// only normalised).
    pub fn render(&self, img: &[u8], c: usize, h: usize, w: usize, draw: Option<&Draw>, out: &mut [f32]) {
        let affine: Vec<(f32, f32)> = (0..c).map(|ch| (1.0 / (255.0 * self.std[ch]), -self.mean[ch] / self.std[ch])).collect();
        let normalise = |ch: usize, v: u8| v as f32 * affine[ch].0 + affine[ch].1;
        let geometry = draw.map_or((0, 0, false), |d| d.geometry);
        match draw.and_then(|d| d.bytes.as_ref()) {
            Some(stage) => {
                // The policy and the hole work on bytes: geometry first, normalisation last.
                let mut bytes = vec![0u8; c * h * w];
                shift_flip(img, c, h, w, geometry, &mut bytes, |_, v| v);
                crate::data::autoaugment::apply_all(&stage.policy, &mut bytes, c, h, w);
                if let Some(centre) = stage.hole {
                    cutout(&mut bytes, c, h, w, self.cutout, centre);
                }
                shift_flip(&bytes, c, h, w, (0, 0, false), out, normalise);
            }
            None => shift_flip(img, c, h, w, geometry, out, normalise),
        }
    }
}

/// Writes `img` shifted by (dy, dx) with zero fill, mirrored when `flip`, into `out`, each
/// byte of channel `ch` passed through `value(ch, byte)`.
fn shift_flip<T>(
    img: &[u8],
    c: usize,
    h: usize,
    w: usize,
    (dy, dx, flip): (isize, isize, bool),
    out: &mut [T],
    value: impl Fn(usize, u8) -> T,
) {
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        let dst = &mut out[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let sy = y as isize + dy;
            for x in 0..w {
                let xx = if flip { w - 1 - x } else { x };
                let sx = xx as isize + dx;
                let v = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize { plane[sy as usize * w + sx as usize] } else { 0 };
                dst[y * w + x] = value(ch, v);
            }
        }
    }
}

/// Blacks out one `side × side` square (clipped at the border) centred at `(cy, cx)` (drawn
/// uniformly over the image).
fn cutout(img: &mut [u8], c: usize, h: usize, w: usize, side: usize, (cy, cx): (isize, isize)) {
    let half = side as isize / 2;
    let (y0, y1) = ((cy - half).max(0) as usize, ((cy + side as isize - half) as usize).min(h));
    let (x0, x1) = ((cx - half).max(0) as usize, ((cx + side as isize - half) as usize).min(w));
    for ch in 0..c {
        for y in y0..y1 {
            img[ch * h * w + y * w + x0..ch * h * w + y * w + x1].fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn normalises_and_flips() {
        let aug = Augmenter { mean: vec![0.5], std: vec![0.5], crop_padding: 0, flip: true, autoaugment: false, cutout: 0 };
        let img = [0u8, 255, 51, 102];
        let mut out = [0f32; 4];
        aug.apply::<ChaCha8Rng>(&img, 1, 2, 2, None, &mut out);
        let close = |a: &[f32; 4], b: [f32; 4]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(&out, [-1.0, 1.0, -0.6, -0.2]), "{out:?}");
        // With flip on, some seed flips: each row reversed.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut flipped = false;
        for _ in 0..20 {
            aug.apply(&img, 1, 2, 2, Some(&mut rng), &mut out);
            if close(&out, [1.0, -1.0, -0.2, -0.6]) {
                flipped = true;
            } else {
                assert!(close(&out, [-1.0, 1.0, -0.6, -0.2]), "{out:?}");
            }
        }
        assert!(flipped);
    }

    #[test]
    fn crop_shifts_within_padding_and_fills_zero() {
        let aug = Augmenter { mean: vec![0.0], std: vec![1.0 / 255.0], crop_padding: 1, flip: false, autoaugment: false, cutout: 0 };
        let img: Vec<u8> = (1..=9).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut out = [0f32; 9];
        for _ in 0..50 {
            aug.apply(&img, 1, 3, 3, Some(&mut rng), &mut out);
            // The centre pixel always comes from the 3×3 neighbourhood of the original centre.
            assert!((1.0..=9.0).contains(&out[4]));
            let zeros = out.iter().filter(|&&v| v == 0.0).count();
            assert!(zeros == 0 || zeros == 3 || zeros == 5, "{out:?}");
        }
    }

    #[test]
    fn cutout_blacks_one_clipped_square() {
        let aug = Augmenter { mean: vec![0.0], std: vec![1.0 / 255.0], crop_padding: 0, flip: false, autoaugment: false, cutout: 4 };
        let img = vec![200u8; 10 * 10];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut out = vec![0f32; 100];
        for _ in 0..50 {
            aug.apply(&img, 1, 10, 10, Some(&mut rng), &mut out);
            let black = out.iter().filter(|&&v| v == 0.0).count();
            assert!((4..=16).contains(&black), "{black} pixels in a 4 × 4 hole clipped at most to 2 × 2");
            assert!(out.iter().all(|&v| v == 0.0 || v == 200.0));
        }
        // Without an rng (evaluation) nothing is cut.
        aug.apply::<ChaCha8Rng>(&img, 1, 10, 10, None, &mut out);
        assert!(out.iter().all(|&v| v == 200.0));
    }

    #[test]
    fn autoaugment_path_keeps_crop_and_flip_and_is_seeded() {
        let aug = Augmenter { mean: vec![0.5; 3], std: vec![0.25; 3], crop_padding: 4, flip: true, autoaugment: true, cutout: 16 };
        let img: Vec<u8> = (0..3 * 32 * 32).map(|i| (i * 13 % 256) as u8).collect();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut out = vec![0f32; 3 * 32 * 32];
            aug.apply(&img, 3, 32, 32, Some(&mut rng), &mut out);
            out
        };
        assert_eq!(run(4), run(4));
        assert_ne!(run(4), run(5));
        assert!(run(4).iter().all(|v| v.is_finite() && (-2.0..=2.0).contains(v)));
    }
}
