//! Image files to planar RGB bytes, through the `image` crate: JPEG (ImageNet, iNaturalist),
//! PNG and WebP (torchvision ImageFolder trees, `rbl predict`). Grey, grey + alpha, RGBA,
//! 16-bit and CMYK images all become 3 × H × W (alpha dropped, as PIL's `convert("RGB")`
//! does); anything else is an error naming the file.

use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, ImageReader, Limits};

use crate::error::{RblError, Result};

/// Largest image accepted, in pixels: a header may declare 65535 × 65535 (12 GiB of RGB), and
/// rbl must not allocate that on the word of one file. ImageNet's largest is about 10 MP.
pub const MAX_PIXELS: usize = 64 << 20;

/// The most pixels a JPEG can hold per byte of file. In every scan layout a decoder reads,
/// each 8 × 8 luma block needs at least one bit for its DC coefficient (Huffman codes are at
/// least one bit long), so a file needs at least width · height / 512 bytes. A header declaring
/// more is forged or cut short: the decoder would pad the missing data with grey, and rbl would
/// allocate the declared size on the word of a small file. (PNG and WebP decoders report
/// missing data as an error, so the bound is JPEG's alone.)
pub const MAX_PIXELS_PER_BYTE: usize = 512;

/// Decode memory all threads may hold at once. Each image within the caps may take up to
/// 8 bytes a pixel while it decodes (0.5 GiB at [`MAX_PIXELS`]); with `data.workers` decoding
/// at once, a folder of such images would need that many times more. Decodes reserve their
/// share of this budget first and wait while it is spent, so the total stays bounded whatever
/// the worker count (one decode always proceeds, whatever its size).
pub const DECODE_BUDGET_BYTES: u64 = 1 << 30;

/// The process's decode memory: bytes reserved by decodes in flight.
struct DecodeBudget {
    used: std::sync::Mutex<u64>,
    freed: std::sync::Condvar,
}

static DECODE_BUDGET: DecodeBudget = DecodeBudget { used: std::sync::Mutex::new(0), freed: std::sync::Condvar::new() };

/// A reservation of decode memory, given back when dropped.
struct Reservation(u64);

impl DecodeBudget {
    /// Waits until `bytes` fit in the budget (or nothing else is reserved), then reserves them.
    fn reserve(&'static self, bytes: u64) -> Reservation {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used > 0 && *used + bytes > DECODE_BUDGET_BYTES {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += bytes;
        Reservation(bytes)
    }

    /// Bytes reserved now (tests).
    #[cfg(test)]
    fn in_use(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut used = DECODE_BUDGET.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= self.0;
        DECODE_BUDGET.freed.notify_all();
    }
}

/// A decoded image, channels-first.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Planar bytes: 3 × height × width (R plane, G plane, B plane).
    pub pixels: Vec<u8>,
}

/// The formats rbl decodes, told from the file's first bytes (not its name: ImageNet has PNGs
/// named .JPEG).
fn format_of(bytes: &[u8]) -> Option<ImageFormat> {
    match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => Some(f),
        _ => None,
    }
}

/// Decodes a JPEG, PNG or WebP file's `bytes` (`path` only names the source in errors).
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let bad = |msg: String| RblError::format(path, msg);
    let format = format_of(bytes).ok_or_else(|| bad("not a JPEG, PNG or WebP image".into()))?;
    let what = format!("{format:?}").to_uppercase();
    let reader = |limits: Limits| {
        let mut r = ImageReader::with_format(Cursor::new(bytes), format);
        r.limits(limits);
        r
    };
    let (w, h) = reader(Limits::default()).into_dimensions().map_err(|e| bad(format!("not a decodable {what}: {e}")))?;
    let (width, height) = (w as usize, h as usize);
    if width == 0 || height == 0 {
        return Err(bad(format!("{what} of size {width} × {height}")));
    }
    if width * height > MAX_PIXELS {
        return Err(bad(format!("{what} declares {width} × {height} pixels, over the {MAX_PIXELS}-pixel limit")));
    }
    if format == ImageFormat::Jpeg && width * height > MAX_PIXELS_PER_BYTE * bytes.len() {
        return Err(bad(format!(
            "JPEG declares {width} × {height} pixels but the file holds {} bytes, fewer than any JPEG of that size needs ({}): truncated or forged",
            bytes.len(),
            width * height / MAX_PIXELS_PER_BYTE
        )));
    }
    let need = (width * height * 8 + (1 << 20)) as u64;
    let mut limits = Limits::default();
    limits.max_alloc = Some(need);
    let _reserved = DECODE_BUDGET.reserve(need);
    let decoded = reader(limits).decode().map_err(|e| bad(format!("corrupt {what} data: {e}")))?;
    let rgb = decoded.into_rgb8();
    let n = width * height;
    if rgb.as_raw().len() != 3 * n {
        return Err(bad(format!("{what} decoded to {} bytes, expected {}", rgb.as_raw().len(), 3 * n)));
    }
    let mut pixels = vec![0u8; 3 * n];
    let (r, rest) = pixels.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for (i, px) in rgb.as_raw().chunks_exact(3).enumerate() {
        (r[i], g[i], b[i]) = (px[0], px[1], px[2]);
    }
    Ok(RgbImage { width, height, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jpeg_encoder::{ColorType, Encoder};

    fn encode(data: &[u8], w: u16, h: u16, color: ColorType) -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::new(&mut out, 95).encode(data, w, h, color).unwrap();
        out
    }

    fn mean_rgb(img: &RgbImage) -> [f64; 3] {
        let n = (img.width * img.height) as f64;
        [0, 1, 2]
            .map(|c| img.pixels[c * img.width * img.height..(c + 1) * img.width * img.height].iter().map(|&v| v as f64).sum::<f64>() / n)
    }

    #[test]
    fn decodes_rgb_grey_and_cmyk_to_planar_rgb() {
        let (w, h) = (16u16, 8u16);
        let orange: Vec<u8> = (0..w as usize * h as usize).flat_map(|_| [230u8, 120, 20]).collect();
        let img = decode_image(&encode(&orange, w, h, ColorType::Rgb), Path::new("rgb.jpg")).unwrap();
        assert_eq!((img.width, img.height, img.pixels.len()), (16, 8, 3 * 128));
        let m = mean_rgb(&img);
        assert!((m[0] - 230.0).abs() < 4.0 && (m[1] - 120.0).abs() < 4.0 && (m[2] - 20.0).abs() < 4.0, "{m:?}");

        let grey: Vec<u8> = vec![77; w as usize * h as usize];
        let img = decode_image(&encode(&grey, w, h, ColorType::Luma), Path::new("grey.jpg")).unwrap();
        let m = mean_rgb(&img);
        assert!(m.iter().all(|v| (v - 77.0).abs() < 2.0), "grey replicated: {m:?}");

        // Pure magenta+yellow ink (no cyan, no black) is red.
        let red_ink: Vec<u8> = (0..w as usize * h as usize).flat_map(|_| [0u8, 255, 255, 0]).collect();
        let img = decode_image(&encode(&red_ink, w, h, ColorType::Cmyk), Path::new("cmyk.jpg")).unwrap();
        let m = mean_rgb(&img);
        assert!(m[0] > 240.0 && m[1] < 15.0 && m[2] < 15.0, "CMYK red: {m:?}");
    }

    #[test]
    fn corrupt_truncated_and_oversized_files_are_errors() {
        let rgb: Vec<u8> = vec![100; 8 * 8 * 3];
        let good = encode(&rgb, 8, 8, ColorType::Rgb);
        for (name, bytes) in [("empty", vec![]), ("text", b"not a jpeg".to_vec()), ("truncated", good[..good.len() / 3].to_vec())] {
            let e = decode_image(&bytes, Path::new(name)).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
        // A frame header declaring 65535 × 65535: refused before any pixel buffer exists.
        let mut huge = good.clone();
        let sof = huge.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        huge[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let e = decode_image(&huge, Path::new("huge.jpg")).unwrap_err().to_string();
        assert!(e.contains("limit"), "{e}");
        // A 64 × 64 image whose header claims 4000 × 4000 (within the pixel limit): refused from
        // the file's size, before the decoder pads 16 Mpixel with grey.
        let noise: Vec<u8> = (0..64 * 64 * 3).map(|i| (i * 7919 % 251) as u8).collect();
        let small = encode(&noise, 64, 64, ColorType::Rgb);
        let mut forged = small.clone();
        let sof = forged.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        forged[sof + 5..sof + 9].copy_from_slice(&[0x0F, 0xA0, 0x0F, 0xA0]);
        let e = decode_image(&forged, Path::new("forged.jpg")).unwrap_err().to_string();
        assert!(e.contains("forged.jpg") && e.contains("4000 × 4000") && e.contains("truncated or forged"), "{e}");
        // The bound holds for real files: the genuine one, and a flat 512 × 512 image (the most
        // compressible kind), decode.
        assert_eq!(decode_image(&small, Path::new("small.jpg")).unwrap().width, 64);
        let flat = encode(&vec![128; 512 * 512 * 3], 512, 512, ColorType::Rgb);
        assert!(512 * 512 <= MAX_PIXELS_PER_BYTE * flat.len(), "a flat 512 × 512 JPEG has {} bytes", flat.len());
        assert_eq!(decode_image(&flat, Path::new("flat.jpg")).unwrap().height, 512);
    }

    #[test]
    fn decodes_share_a_bounded_memory_budget() {
        // Eight threads each holding a reservation of 40 % of the budget: at most two at once.
        let peak = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let r = DECODE_BUDGET.reserve(DECODE_BUDGET_BYTES * 2 / 5);
                    peak.fetch_max(DECODE_BUDGET.in_use(), std::sync::atomic::Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    drop(r);
                });
            }
        });
        let peak = peak.into_inner();
        assert!(peak <= DECODE_BUDGET_BYTES, "{peak} bytes reserved at once");
        // One reservation over the whole budget still proceeds (alone).
        drop(DECODE_BUDGET.reserve(2 * DECODE_BUDGET_BYTES));
    }

    fn encode_with(img: image::DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn png_and_webp_decode_exactly_in_every_colour_layout() {
        use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};
        let (w, h) = (5u32, 3u32);
        let rgb = ImageBuffer::from_fn(w, h, |x, y| Rgb([(x * 40) as u8, (y * 90) as u8, 200 + x as u8]));
        let planar = |f: &dyn Fn(u32, u32) -> [u8; 3]| -> Vec<u8> {
            (0..3).flat_map(|c| (0..h).flat_map(move |y| (0..w).map(move |x| (c, x, y)))).map(|(c, x, y)| f(x, y)[c]).collect()
        };
        let want = planar(&|x, y| [(x * 40) as u8, (y * 90) as u8, 200 + x as u8]);
        let cases = [
            ("rgb.png", encode_with(DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Png)),
            ("rgb.webp", encode_with(DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::WebP)),
            (
                "rgba.png",
                encode_with(
                    DynamicImage::ImageRgba8(ImageBuffer::from_fn(w, h, |x, y| {
                        let p = rgb.get_pixel(x, y).0;
                        Rgba([p[0], p[1], p[2], 17])
                    })),
                    ImageFormat::Png,
                ),
            ),
            // A PNG named .JPEG, as ImageNet has: the bytes decide.
            ("n01739381_1309.JPEG", encode_with(DynamicImage::ImageRgb8(rgb.clone()), ImageFormat::Png)),
        ];
        for (name, bytes) in cases {
            let img = decode_image(&bytes, Path::new(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((img.width, img.height), (5, 3), "{name}");
            assert_eq!(img.pixels, want, "{name}: lossless, planar, alpha dropped");
        }
        let grey = ImageBuffer::from_fn(w, h, |x, y| Luma([(x * 50 + y) as u8]));
        let want_grey = planar(&|x, y| [(x * 50 + y) as u8; 3]);
        for (name, img) in [
            ("grey.png", DynamicImage::ImageLuma8(grey.clone())),
            ("grey-alpha.png", DynamicImage::ImageLumaA8(ImageBuffer::from_fn(w, h, |x, y| LumaA([grey.get_pixel(x, y).0[0], 3])))),
            ("grey16.png", DynamicImage::ImageLuma16(ImageBuffer::from_fn(w, h, |x, y| Luma([grey.get_pixel(x, y).0[0] as u16 * 257])))),
        ] {
            let got = decode_image(&encode_with(img, ImageFormat::Png), Path::new(name)).unwrap();
            assert_eq!(got.pixels, want_grey, "{name}: grey replicated to three planes");
        }
        // A truncated PNG and a GIF are refused, naming the file.
        let png = encode_with(DynamicImage::ImageRgb8(rgb), ImageFormat::Png);
        let e = decode_image(&png[..png.len() - 20], Path::new("cut.png")).unwrap_err().to_string();
        assert!(e.contains("cut.png") && e.contains("PNG"), "{e}");
        let e = decode_image(b"GIF89a\x01\x00\x01\x00", Path::new("anim.gif")).unwrap_err().to_string();
        assert!(e.contains("anim.gif") && e.contains("not a JPEG, PNG or WebP"), "{e}");
    }
}
