//! AutoAugment's CIFAR-10 policy (Cubuk et al., CVPR 2019) as the paper's code applies it
//! (the widely used `CIFAR10Policy` port to PIL): 25 sub-policies of two operations each, every
//! operation applied with its own probability at one of ten magnitudes. The search space has 14
//! operations; the CIFAR-10 policy uses 13 of them (not ShearX).
//!
//! Operations work on planar bytes (C × H × W, C = 1 or 3) and follow PIL's definitions:
//! affine maps sample the source at (a·x + b·y + c, d·x + e·y + f) with pixel centres and fill
//! grey 128; enhancements blend with a degenerate image (grey, mean grey, black, SMOOTH-filtered)
//! by factor 1 ± magnitude. Two deliberate differences from PIL: shears sample bilinearly
//! (PIL: bicubic) and blends round rather than truncate.

use rand::Rng;

/// The 14 operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// x' = x + m·y (random sign).
    ShearX,
    /// y' = y + m·x (random sign).
    ShearY,
    /// Shift by m · width (random sign).
    TranslateX,
    /// Shift by m · height (random sign).
    TranslateY,
    /// Counter-clockwise rotation by m degrees about the centre.
    Rotate,
    /// Saturation: blend with the grey image by 1 ± m.
    Color,
    /// Keep the top m bits.
    Posterize,
    /// Invert values at or above the threshold m.
    Solarize,
    /// Blend with the mean grey by 1 ± m.
    Contrast,
    /// Blend with the SMOOTH-filtered image by 1 ± m.
    Sharpness,
    /// Blend with black by 1 ± m.
    Brightness,
    /// Stretch each channel to 0 … 255.
    AutoContrast,
    /// Histogram-equalise each channel.
    Equalize,
    /// 255 − v.
    Invert,
}

/// One sub-policy: (probability, operation, magnitude bin 0–9) twice.
type SubPolicy = [(f64, Op, usize); 2];

/// The CIFAR-10 policy: 25 sub-policies.
pub const CIFAR10_POLICY: [SubPolicy; 25] = {
    use Op::*;
    [
        [(0.1, Invert, 7), (0.2, Contrast, 6)],
        [(0.7, Rotate, 2), (0.3, TranslateX, 9)],
        [(0.8, Sharpness, 1), (0.9, Sharpness, 3)],
        [(0.5, ShearY, 8), (0.7, TranslateY, 9)],
        [(0.5, AutoContrast, 8), (0.9, Equalize, 2)],
        [(0.2, ShearY, 7), (0.3, Posterize, 7)],
        [(0.4, Color, 3), (0.6, Brightness, 7)],
        [(0.3, Sharpness, 9), (0.7, Brightness, 9)],
        [(0.6, Equalize, 5), (0.5, Equalize, 1)],
        [(0.6, Contrast, 7), (0.6, Sharpness, 5)],
        [(0.7, Color, 7), (0.5, TranslateX, 8)],
        [(0.3, Equalize, 7), (0.4, AutoContrast, 8)],
        [(0.4, TranslateY, 3), (0.2, Sharpness, 6)],
        [(0.9, Brightness, 6), (0.2, Color, 8)],
        [(0.5, Solarize, 2), (0.0, Invert, 3)],
        [(0.2, Equalize, 0), (0.6, AutoContrast, 0)],
        [(0.2, Equalize, 8), (0.6, Equalize, 4)],
        [(0.9, Color, 9), (0.6, Equalize, 6)],
        [(0.8, AutoContrast, 4), (0.2, Solarize, 8)],
        [(0.1, Brightness, 3), (0.7, Color, 0)],
        [(0.4, Solarize, 5), (0.9, AutoContrast, 3)],
        [(0.9, TranslateY, 9), (0.7, TranslateY, 9)],
        [(0.9, AutoContrast, 2), (0.8, Solarize, 3)],
        [(0.8, Equalize, 8), (0.1, Invert, 3)],
        [(0.7, TranslateY, 9), (0.9, AutoContrast, 1)],
    ]
};

/// The value of magnitude bin `bin` (0–9) for `op`: the policy's `linspace` ranges.
pub fn magnitude(op: Op, bin: usize) -> f64 {
    let t = bin.min(9) as f64 / 9.0;
    match op {
        Op::ShearX | Op::ShearY => 0.3 * t,
        Op::TranslateX | Op::TranslateY => 150.0 / 331.0 * t,
        Op::Rotate => 30.0 * t,
        Op::Color | Op::Contrast | Op::Sharpness | Op::Brightness => 0.9 * t,
        Op::Posterize => (8.0 - 4.0 * t).round(),
        Op::Solarize => 256.0 * (1.0 - t),
        Op::AutoContrast | Op::Equalize | Op::Invert => 0.0,
    }
}

/// Applies a random sub-policy of [`CIFAR10_POLICY`] to `img` (C × H × W bytes) in place.
pub fn cifar10_policy<R: Rng>(img: &mut [u8], c: usize, h: usize, w: usize, rng: &mut R) {
    apply_all(&draw_cifar10_policy(rng), img, c, h, w);
}

/// One operation as drawn: which, at what magnitude, with which sign.
pub type DrawnOp = (Op, f64, f64);

/// The random choices of [`cifar10_policy`] for one image (the sub-policy, then for each of
/// its operations whether it applies and its sign), made without touching pixels: they depend
/// on the stream only, so a batch's draws can be made in order and its pixels on many threads.
pub fn draw_cifar10_policy<R: Rng>(rng: &mut R) -> Vec<DrawnOp> {
    let sub = CIFAR10_POLICY[rng.random_range(0..CIFAR10_POLICY.len())];
    let mut ops = Vec::with_capacity(sub.len());
    for (p, op, bin) in sub {
        if rng.random::<f64>() < p {
            let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            ops.push((op, magnitude(op, bin), sign));
        }
    }
    ops
}

/// Applies drawn operations in order.
pub fn apply_all(ops: &[DrawnOp], img: &mut [u8], c: usize, h: usize, w: usize) {
    for &(op, m, sign) in ops {
        apply(op, m, sign, img, c, h, w);
    }
}

/// Applies `op` at `magnitude` (`sign` ±1 for the operations with a random direction).
pub fn apply(op: Op, magnitude: f64, sign: f64, img: &mut [u8], c: usize, h: usize, w: usize) {
    let m = magnitude;
    match op {
        Op::ShearX => affine(img, c, h, w, [1.0, m * sign, 0.0, 0.0, 1.0, 0.0], true),
        Op::ShearY => affine(img, c, h, w, [1.0, 0.0, 0.0, m * sign, 1.0, 0.0], true),
        Op::TranslateX => affine(img, c, h, w, [1.0, 0.0, m * w as f64 * sign, 0.0, 1.0, 0.0], false),
        Op::TranslateY => affine(img, c, h, w, [1.0, 0.0, 0.0, 0.0, 1.0, m * h as f64 * sign], false),
        Op::Rotate => {
            // PIL: angle counter-clockwise; the inverse map rotates output coordinates by −angle.
            let a = -m.to_radians();
            let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
            let (cs, sn) = (a.cos(), a.sin());
            affine(img, c, h, w, [cs, sn, cx - cs * cx - sn * cy, -sn, cs, cy + sn * cx - cs * cy], false);
        }
        Op::Color => {
            if c == 3 {
                let grey = luma(img, h * w);
                blend(img, |i| grey[i % (h * w)], 1.0 + m * sign);
            }
        }
        Op::Posterize => {
            let mask = !((1u16 << (8 - m as u16).min(8)) - 1) as u8;
            img.iter_mut().for_each(|v| *v &= mask);
        }
        Op::Solarize => img.iter_mut().for_each(|v| {
            if *v as f64 >= m {
                *v = 255 - *v;
            }
        }),
        Op::Contrast => {
            let grey = if c == 3 { luma(img, h * w) } else { img.to_vec() };
            let mean = (grey.iter().map(|&v| v as f64).sum::<f64>() / grey.len().max(1) as f64 + 0.5).floor() as u8;
            blend(img, |_| mean, 1.0 + m * sign);
        }
        Op::Sharpness => {
            let smooth = smooth(img, c, h, w);
            blend(img, |i| smooth[i], 1.0 + m * sign);
        }
        Op::Brightness => blend(img, |_| 0, 1.0 + m * sign),
        Op::AutoContrast => {
            for plane in img.chunks_exact_mut(h * w) {
                let (lo, hi) = plane.iter().fold((255u8, 0u8), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                if hi > lo {
                    let scale = 255.0 / (hi - lo) as f64;
                    plane.iter_mut().for_each(|v| *v = ((*v - lo) as f64 * scale).clamp(0.0, 255.0) as u8);
                }
            }
        }
        Op::Equalize => {
            for plane in img.chunks_exact_mut(h * w) {
                let lut = equalize_lut(plane);
                plane.iter_mut().for_each(|v| *v = lut[*v as usize]);
            }
        }
        Op::Invert => img.iter_mut().for_each(|v| *v = 255 - *v),
    }
}

/// PIL's "L" conversion: (299 R + 587 G + 114 B) / 1000, rounded.
fn luma(img: &[u8], n: usize) -> Vec<u8> {
    (0..n).map(|i| ((img[i] as u32 * 19595 + img[n + i] as u32 * 38470 + img[2 * n + i] as u32 * 7471 + 0x8000) >> 16) as u8).collect()
}

/// img ← degenerate + factor · (img − degenerate), rounded and clipped; `degenerate(i)` is
/// the degenerate image's value at index i.
fn blend(img: &mut [u8], degenerate: impl Fn(usize) -> u8, factor: f64) {
    for (i, v) in img.iter_mut().enumerate() {
        let d = degenerate(i) as f64;
        *v = (d + factor * (*v as f64 - d)).round().clamp(0.0, 255.0) as u8;
    }
}

/// PIL's SMOOTH filter ([1 1 1; 1 5 1; 1 1 1] / 13); the border keeps its pixels.
fn smooth(img: &[u8], c: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = img.to_vec();
    for ch in 0..c {
        let p = &img[ch * h * w..(ch + 1) * h * w];
        for y in 1..h.saturating_sub(1) {
            for x in 1..w.saturating_sub(1) {
                let mut s = 4 * p[y * w + x] as u32;
                for dy in 0..3 {
                    for dx in 0..3 {
                        s += p[(y + dy - 1) * w + x + dx - 1] as u32;
                    }
                }
                out[ch * h * w + y * w + x] = ((s as f64 / 13.0).round()) as u8;
            }
        }
    }
    out
}

/// PIL's equalisation table for one channel.
fn equalize_lut(plane: &[u8]) -> [u8; 256] {
    let mut hist = [0usize; 256];
    plane.iter().for_each(|&v| hist[v as usize] += 1);
    let mut lut = [0u8; 256];
    for (i, l) in lut.iter_mut().enumerate() {
        *l = i as u8;
    }
    let nonzero: Vec<usize> = hist.iter().copied().filter(|&n| n > 0).collect();
    if nonzero.len() <= 1 {
        return lut;
    }
    let step = (nonzero.iter().sum::<usize>() - nonzero[nonzero.len() - 1]) / 255;
    if step == 0 {
        return lut;
    }
    let mut n = step / 2;
    for (i, l) in lut.iter_mut().enumerate() {
        *l = (n / step).min(255) as u8;
        n += hist[i];
    }
    lut
}

/// Resamples every channel through the inverse map `m` (source = (m0·x + m1·y + m2,
/// m3·x + m4·y + m5) at pixel centres), filling grey 128 outside; bilinear or nearest.
fn affine(img: &mut [u8], c: usize, h: usize, w: usize, m: [f64; 6], bilinear: bool) {
    let src = img.to_vec();
    for ch in 0..c {
        let p = &src[ch * h * w..(ch + 1) * h * w];
        let out = &mut img[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f64 + 0.5, y as f64 + 0.5);
                let sx = m[0] * fx + m[1] * fy + m[2] - 0.5;
                let sy = m[3] * fx + m[4] * fy + m[5] - 0.5;
                out[y * w + x] = if bilinear { sample_bilinear(p, h, w, sx, sy) } else { sample_nearest(p, h, w, sx, sy) };
            }
        }
    }
}

const FILL: u8 = 128;

fn sample_nearest(p: &[u8], h: usize, w: usize, sx: f64, sy: f64) -> u8 {
    let (ix, iy) = ((sx + 0.5).floor(), (sy + 0.5).floor());
    if ix < 0.0 || iy < 0.0 || ix >= w as f64 || iy >= h as f64 { FILL } else { p[iy as usize * w + ix as usize] }
}

fn sample_bilinear(p: &[u8], h: usize, w: usize, sx: f64, sy: f64) -> u8 {
    if sx < -0.5 || sy < -0.5 || sx > w as f64 - 0.5 || sy > h as f64 - 0.5 {
        return FILL;
    }
    let (x0, y0) = (sx.floor(), sy.floor());
    let (ax, ay) = (sx - x0, sy - y0);
    let at = |x: f64, y: f64| -> f64 {
        let (x, y) = (x.clamp(0.0, (w - 1) as f64) as usize, y.clamp(0.0, (h - 1) as f64) as usize);
        p[y * w + x] as f64
    };
    let top = at(x0, y0) * (1.0 - ax) + at(x0 + 1.0, y0) * ax;
    let bottom = at(x0, y0 + 1.0) * (1.0 - ax) + at(x0 + 1.0, y0 + 1.0) * ax;
    (top * (1.0 - ay) + bottom * ay).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A 1-channel 4 × 4 image with values 0, 16, …, 240 row by row.
    fn ramp() -> Vec<u8> {
        (0..16).map(|i| (i * 16) as u8).collect()
    }

    #[test]
    fn magnitudes_follow_the_policy_ranges() {
        assert_eq!(magnitude(Op::ShearX, 9), 0.3);
        assert!((magnitude(Op::TranslateY, 9) - 150.0 / 331.0).abs() < 1e-12);
        assert_eq!(magnitude(Op::Rotate, 3), 10.0);
        assert_eq!((0..10).map(|b| magnitude(Op::Posterize, b) as u8).collect::<Vec<_>>(), [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]);
        assert_eq!(magnitude(Op::Solarize, 0), 256.0);
        assert_eq!(magnitude(Op::Solarize, 9), 0.0);
        assert_eq!(magnitude(Op::Brightness, 9), 0.9);
        assert_eq!(CIFAR10_POLICY.len(), 25);
        let used: std::collections::HashSet<_> = CIFAR10_POLICY.iter().flat_map(|s| s.iter().map(|t| format!("{:?}", t.1))).collect();
        // 13 of the 14 operations: ShearX belongs to the search space (and the SVHN policy) only.
        assert_eq!(used.len(), 13, "{used:?}");
        assert!(!used.contains("ShearX"));
    }

    #[test]
    fn pixel_operations_on_a_known_image() {
        let run = |op, m, sign| {
            let mut img = ramp();
            apply(op, m, sign, &mut img, 1, 4, 4);
            img
        };
        assert_eq!(run(Op::Invert, 0.0, 1.0), ramp().iter().map(|v| 255 - v).collect::<Vec<_>>());
        assert_eq!(run(Op::Posterize, 4.0, 1.0), ramp(), "multiples of 16 keep their top 4 bits");
        assert_eq!(run(Op::Posterize, 1.0, 1.0), ramp().iter().map(|&v| v & 0x80).collect::<Vec<_>>());
        assert_eq!(run(Op::Solarize, 128.0, 1.0), ramp().iter().map(|&v| if v >= 128 { 255 - v } else { v }).collect::<Vec<_>>());
        assert_eq!(run(Op::Solarize, 256.0, 1.0), ramp(), "threshold 256 changes nothing");
        assert_eq!(run(Op::Brightness, 0.5, -1.0), ramp().iter().map(|&v| (v as f64 * 0.5).round() as u8).collect::<Vec<_>>());
        assert_eq!(run(Op::Contrast, 1.0, -1.0), vec![120; 16], "factor 0: the mean grey (120)");
        assert_eq!(run(Op::Sharpness, 0.0, 1.0), ramp(), "factor 1 is the identity");
        let auto = run(Op::AutoContrast, 0.0, 1.0);
        assert_eq!((auto[0], auto[15]), (0, 255));
        assert_eq!(auto[1], (16.0 * 255.0 / 240.0) as u8);
        // Equalising a uniform histogram of 16 levels spreads them over 0 … 255.
        let eq = run(Op::Equalize, 0.0, 1.0);
        assert_eq!(eq[0], 0);
        assert!(eq.windows(2).all(|p| p[1] > p[0]) && eq[15] >= 225, "{eq:?}");
        // Colour on a grey image, and on one channel, changes nothing.
        assert_eq!(run(Op::Color, 0.9, 1.0), ramp());
    }

    #[test]
    fn sharpness_shear_y_and_equalize_on_known_images() {
        // A bright centre on black, 3 × 3: factor 0 is PIL's SMOOTH, (1·0 × 8 + 5·130) / 13 = 50
        // at the centre; the border keeps its pixels.
        let mut img = vec![0, 0, 0, 0, 130, 0, 0, 0, 0];
        apply(Op::Sharpness, 1.0, -1.0, &mut img, 1, 3, 3);
        assert_eq!(img, [0, 0, 0, 0, 50, 0, 0, 0, 0]);
        // Factor 2 sharpens: 50 + 2 · (130 − 50) = 210.
        let mut img = vec![0, 0, 0, 0, 130, 0, 0, 0, 0];
        apply(Op::Sharpness, 1.0, 1.0, &mut img, 1, 3, 3);
        assert_eq!(img[4], 210);
        // ShearY by 0.5 on a column ramp: output (x, y) samples (x, y + 0.5·x) at pixel centres.
        let mut img: Vec<u8> = (0..16).map(|i| (i / 4 * 10) as u8).collect(); // row y has value 10·y
        apply(Op::ShearY, 0.5, 1.0, &mut img, 1, 4, 4);
        assert_eq!(img[0], 3, "x = 0: source y = 0.25, bilinear between rows 0 and 1 → 2.5 → 3");
        assert_eq!(img[4 + 2], 23, "x = 2, y = 1: source y = 2.25 → 22.5 → 23");
        assert_eq!(img[12 + 3], 128, "x = 3, y = 3: source y = 4.75 is outside: grey");
        // Equalize a two-level image with 12 dark and 4 bright pixels: PIL's table maps
        // 10 → 0 and 200 → (step/2 + 12) / step with step = (16 − 4) / 255 = 0 → identity.
        let mut img: Vec<u8> = [vec![10; 12], vec![200; 4]].concat();
        apply(Op::Equalize, 0.0, 1.0, &mut img, 1, 4, 4);
        assert_eq!(img, [vec![10; 12], vec![200; 4]].concat(), "too few pixels for a step: unchanged, as PIL");
        // 1020 pixels at 0 and 1020 at 255 plus 510 at 100: step = (2550 − 1020) / 255 = 6.
        let mut img: Vec<u8> = [vec![0; 1020], vec![100; 510], vec![255; 1020]].concat();
        apply(Op::Equalize, 0.0, 1.0, &mut img, 1, 50, 51);
        assert_eq!((img[0], img[1020], img[1530]), (0, 170, 255), "lut[v] = (3 + pixels below v) / 6");
    }

    #[test]
    fn colour_and_contrast_blend_towards_grey() {
        // One red pixel, 3 channels 1 × 1: colour factor 0 gives PIL's luma, 76.
        let mut img = vec![255, 0, 0];
        apply(Op::Color, 1.0, -1.0, &mut img, 3, 1, 1);
        assert_eq!(img, [76, 76, 76]);
        let mut img = vec![255, 0, 0];
        apply(Op::Color, 0.5, 1.0, &mut img, 3, 1, 1);
        assert_eq!(img, [255, 0, 0], "saturating further clips");
    }

    #[test]
    fn geometric_operations_move_pixels_and_fill_grey() {
        let run = |op, m, sign| {
            let mut img = ramp();
            apply(op, m, sign, &mut img, 1, 4, 4);
            img
        };
        // Translate by a quarter of the width: each row shifts left by one, grey enters at right.
        let t = run(Op::TranslateX, 0.25, 1.0);
        for y in 0..4 {
            assert_eq!(&t[y * 4..y * 4 + 4], &[ramp()[y * 4 + 1], ramp()[y * 4 + 2], ramp()[y * 4 + 3], 128]);
        }
        let t = run(Op::TranslateY, 0.25, -1.0);
        assert_eq!(&t[..4], &[128; 4]);
        assert_eq!(&t[4..], &ramp()[..12]);
        // A 90° rotation (counter-clockwise) is a permutation: the top-right corner goes top-left.
        let r = run(Op::Rotate, 90.0, 1.0);
        let mut sorted = r.clone();
        sorted.sort();
        assert_eq!(sorted, ramp());
        assert_eq!(r[0], ramp()[3]);
        assert_eq!(r[12], ramp()[0]);
        // Shear of a constant image stays constant where it samples inside; grey enters elsewhere.
        let mut flat = vec![50u8; 64];
        apply(Op::ShearX, 0.3, 1.0, &mut flat, 1, 8, 8);
        assert!(flat.iter().all(|&v| v == 50 || v == 128 || (50..=128).contains(&v)));
        assert_eq!(flat[0], 50);
        assert!(flat[63] > 50, "bottom-right samples beyond the edge");
    }

    #[test]
    fn the_policy_is_deterministic_under_a_seed_and_keeps_the_shape() {
        let img: Vec<u8> = (0..3 * 32 * 32).map(|i| (i * 37 % 256) as u8).collect();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..20)
                .map(|_| {
                    let mut x = img.clone();
                    cifar10_policy(&mut x, 3, 32, 32, &mut rng);
                    x
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (run(1), run(1));
        assert_eq!(a, b);
        assert!(a.iter().any(|x| x != &img), "some sub-policy changes the image");
        assert_ne!(a, run(2));
    }
}
