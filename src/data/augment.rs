//! Training-time augmentation (random crop with zero padding, horizontal flip) and the
//! per-channel normalisation applied to every image.

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
}

impl Augmenter {
    /// Writes one image (planar bytes, C × H × W) into `out` as normalised floats; with `rng`
    /// the random crop and flip are applied, without it the image is only normalised.
    pub fn apply<R: Rng>(&self, img: &[u8], c: usize, h: usize, w: usize, rng: Option<&mut R>, out: &mut [f32]) {
        let (dy, dx, flip) = match rng {
            Some(rng) => {
                let p = self.crop_padding as i32;
                let dy = if p > 0 { rng.random_range(-p..=p) as isize } else { 0 };
                let dx = if p > 0 { rng.random_range(-p..=p) as isize } else { 0 };
                (dy, dx, self.flip && rng.random_bool(0.5))
            }
            None => (0, 0, false),
        };
        for ch in 0..c {
            let scale = 1.0 / (255.0 * self.std[ch]);
            let shift = -self.mean[ch] / self.std[ch];
            let plane = &img[ch * h * w..(ch + 1) * h * w];
            let dst = &mut out[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                let sy = y as isize + dy;
                for x in 0..w {
                    let xx = if flip { w - 1 - x } else { x };
                    let sx = xx as isize + dx;
                    let v = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize {
                        plane[sy as usize * w + sx as usize]
                    } else {
                        0
                    };
                    dst[y * w + x] = v as f32 * scale + shift;
                }
            }
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
        let aug = Augmenter { mean: vec![0.5], std: vec![0.5], crop_padding: 0, flip: true };
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
        let aug = Augmenter { mean: vec![0.0], std: vec![1.0 / 255.0], crop_padding: 1, flip: false };
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
}
