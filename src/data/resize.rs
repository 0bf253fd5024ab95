//! Geometry for full-size photos (ImageNet-LT): bilinear resize, centre crop, and the
//! RandomResizedCrop of Szegedy et al. as torchvision implements it (area 8–100 %, aspect
//! ratio 3/4–4/3, ten tries, then a centre crop).

use rand::Rng;

use crate::data::decode::RgbImage;

/// Bilinear resize (half-pixel centres, edge clamped) of a planar image to `out_w × out_h`.
pub fn resize(img: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    crop_resize(img, (0.0, 0.0, img.width as f64, img.height as f64), out_w, out_h)
}

/// Resamples the window (x, y, w, h) of `img`, in source pixels, to `out_w × out_h`.
pub fn crop_resize(img: &RgbImage, window: (f64, f64, f64, f64), out_w: usize, out_h: usize) -> RgbImage {
    let (x0, y0, cw, ch) = window;
    let (sx, sy) = (cw / out_w as f64, ch / out_h as f64);
    let (w, h) = (img.width, img.height);
    let taps = |scale: f64, offset: f64, n_out: usize, n_in: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let s = (offset + (o as f64 + 0.5) * scale - 0.5).clamp(0.0, (n_in - 1) as f64);
                let i = s.floor() as usize;
                (i, (i + 1).min(n_in - 1), (s - i as f64) as f32)
            })
            .collect()
    };
    let xs = taps(sx, x0, out_w, w);
    let ys = taps(sy, y0, out_h, h);
    let mut pixels = vec![0u8; 3 * out_w * out_h];
    for c in 0..3 {
        let plane = &img.pixels[c * w * h..(c + 1) * w * h];
        let out = &mut pixels[c * out_w * out_h..(c + 1) * out_w * out_h];
        for (oy, &(y1, y2, fy)) in ys.iter().enumerate() {
            for (ox, &(x1, x2, fx)) in xs.iter().enumerate() {
                let p = |y: usize, x: usize| plane[y * w + x] as f32;
                let top = p(y1, x1) * (1.0 - fx) + p(y1, x2) * fx;
                let bottom = p(y2, x1) * (1.0 - fx) + p(y2, x2) * fx;
                out[oy * out_w + ox] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage { width: out_w, height: out_h, pixels }
}

/// Test-time view: shorter side resized to `resize_to` (256), then the central `crop` (224).
pub fn resize_center_crop(img: &RgbImage, resize_to: usize, crop: usize) -> RgbImage {
    let scale = resize_to as f64 / img.width.min(img.height) as f64;
    let (rw, rh) = ((img.width as f64 * scale).round().max(1.0), (img.height as f64 * scale).round().max(1.0));
    // Crop in resized coordinates, mapped back to the source: one resampling, not two.
    let (cx, cy) = (((rw - crop as f64) / 2.0).round(), ((rh - crop as f64) / 2.0).round());
    let (fx, fy) = (img.width as f64 / rw, img.height as f64 / rh);
    crop_resize(img, (cx * fx, cy * fy, crop as f64 * fx, crop as f64 * fy), crop, crop)
}

/// The window (x, y, w, h) of a RandomResizedCrop with area fraction in `scale` and aspect
/// ratio (w/h) in `ratio`, as torchvision chooses it.
pub fn random_resized_window<R: Rng>(
    width: usize,
    height: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> (usize, usize, usize, usize) {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let aspect = rng.random_range(log_lo..=log_hi).exp();
        let w = (target * aspect).sqrt().round() as usize;
        let h = (target / aspect).sqrt().round() as usize;
        if w > 0 && h > 0 && w <= width && h <= height {
            return (rng.random_range(0..=width - w), rng.random_range(0..=height - h), w, h);
        }
    }
    // Fallback: the largest centred window within the ratio bounds.
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (width, (width as f64 / ratio.0).round() as usize)
    } else if in_ratio > ratio.1 {
        ((height as f64 * ratio.1).round() as usize, height)
    } else {
        (width, height)
    };
    ((width - w) / 2, (height - h) / 2, w, h)
}

/// Training view: a RandomResizedCrop to `size × size` and a horizontal flip with p = ½.
pub fn random_resized_crop_flip<R: Rng>(img: &RgbImage, size: usize, rng: &mut R) -> RgbImage {
    let (x, y, w, h) = random_resized_window(img.width, img.height, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), rng);
    let mut out = crop_resize(img, (x as f64, y as f64, w as f64, h as f64), size, size);
    if rng.random_bool(0.5) {
        for row in out.pixels.chunks_exact_mut(size) {
            row.reverse();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A horizontal ramp: R = x, G = y, B = 7.
    fn ramp(w: usize, h: usize) -> RgbImage {
        let mut pixels = Vec::new();
        pixels.extend((0..h).flat_map(|_| (0..w).map(|x| x as u8)));
        pixels.extend((0..h).flat_map(|y| (0..w).map(move |_| y as u8)));
        pixels.extend(std::iter::repeat_n(7u8, w * h));
        RgbImage { width: w, height: h, pixels }
    }

    #[test]
    fn resize_preserves_ramps_and_constants() {
        let img = ramp(200, 100);
        let half = resize(&img, 100, 50);
        assert_eq!(half.pixels.len(), 3 * 100 * 50);
        // Output pixel x samples source 2x + 0.5: the ramp's value there.
        for x in [0, 10, 50, 98] {
            let v = half.pixels[x] as f64;
            assert!((v - (2.0 * x as f64 + 0.5)).abs() <= 0.51, "x {x}: {v}");
        }
        assert!(half.pixels[2 * 5000..].iter().all(|&v| v == 7));
        assert_eq!(resize(&img, 200, 100), img, "identity size is the identity");
    }

    #[test]
    fn centre_crop_takes_the_middle_of_the_resized_image() {
        let img = ramp(256, 128); // shorter side 128 → ×2 → 512 × 256, crop 224 from the middle
        let out = resize_center_crop(&img, 256, 224);
        assert_eq!((out.width, out.height), (224, 224));
        let centre_x = out.pixels[112 * 224 + 112] as f64; // R = source x
        assert!((centre_x - 128.0).abs() <= 1.0, "{centre_x}");
        let centre_y = out.pixels[224 * 224 + 112 * 224 + 112] as f64; // G = source y
        assert!((centre_y - 64.0).abs() <= 1.0, "{centre_y}");
    }

    #[test]
    fn random_windows_respect_area_and_ratio() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..500 {
            let (x, y, w, h) = random_resized_window(500, 375, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(x + w <= 500 && y + h <= 375 && w > 0 && h > 0);
            let area = (w * h) as f64 / (500.0 * 375.0);
            assert!((0.07..=1.0).contains(&area), "{area}");
        }
        // An extreme panorama falls back to a centred window of ratio 4/3.
        let (x, y, w, h) = random_resized_window(1000, 10, (0.99, 1.0), (0.75, 4.0 / 3.0), &mut rng);
        assert_eq!((w, h, y), (13, 10, 0));
        assert_eq!(x, (1000 - 13) / 2);
        let out = random_resized_crop_flip(&ramp(64, 48), 32, &mut rng);
        assert_eq!(out.pixels.len(), 3 * 32 * 32);
    }
}
