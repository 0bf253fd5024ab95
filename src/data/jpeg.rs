//! JPEG decoding to planar RGB bytes. ImageNet holds grayscale, RGB and CMYK JPEGs (and a few
//! PNGs named .JPEG); all become 3 × H × W, and anything else is an error naming the file.

use std::path::Path;

use crate::error::{RblError, Result};

/// Largest image accepted, in pixels: a header may declare 65535 × 65535 (12 GiB of RGB), and
/// rbl must not allocate that on the word of one file. ImageNet's largest is about 10 MP.
pub const MAX_PIXELS: usize = 64 << 20;

/// The most pixels a JPEG can hold per byte of file. In every scan layout the decoder reads,
/// each 8 × 8 luma block needs at least one bit for its DC coefficient (Huffman codes are at
/// least one bit long), so a file needs at least width · height / 512 bytes. A header declaring
/// more is forged or cut short: the decoder would pad the missing data with grey, and rbl would
/// allocate the declared size on the word of a small file.
pub const MAX_PIXELS_PER_BYTE: usize = 512;

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

/// Decodes JPEG `bytes` (`path` only names the source in errors).
pub fn decode_jpeg(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    let bad = |msg: String| RblError::format(path, msg);
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().map_err(|e| bad(format!("not a decodable JPEG: {e}")))?;
    let info = decoder.info().ok_or_else(|| bad("JPEG without a frame header".into()))?;
    let (width, height) = (info.width as usize, info.height as usize);
    if width == 0 || height == 0 {
        return Err(bad(format!("JPEG of size {width} × {height}")));
    }
    if width * height > MAX_PIXELS {
        return Err(bad(format!("JPEG declares {width} × {height} pixels, over the {MAX_PIXELS}-pixel limit")));
    }
    if width * height > MAX_PIXELS_PER_BYTE * bytes.len() {
        return Err(bad(format!(
            "JPEG declares {width} × {height} pixels but the file holds {} bytes, fewer than any JPEG of that size needs ({}): truncated or forged",
            bytes.len(),
            width * height / MAX_PIXELS_PER_BYTE
        )));
    }
    decoder.set_max_decoding_buffer_size(width * height * 4);
    let raw = decoder.decode().map_err(|e| bad(format!("corrupt JPEG data: {e}")))?;
    let n = width * height;
    let mut pixels = vec![0u8; 3 * n];
    let (r, rest) = pixels.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    use jpeg_decoder::PixelFormat::*;
    let expected = n * info.pixel_format.pixel_bytes();
    if raw.len() < expected {
        return Err(bad(format!("JPEG decoded to {} bytes, expected {expected}", raw.len())));
    }
    match info.pixel_format {
        L8 => {
            r.copy_from_slice(&raw[..n]);
            g.copy_from_slice(&raw[..n]);
            b.copy_from_slice(&raw[..n]);
        }
        L16 => {
            for i in 0..n {
                let v = raw[2 * i]; // big-endian: the high byte
                (r[i], g[i], b[i]) = (v, v, v);
            }
        }
        RGB24 => {
            for (i, px) in raw.chunks_exact(3).take(n).enumerate() {
                (r[i], g[i], b[i]) = (px[0], px[1], px[2]);
            }
        }
        CMYK32 => {
            // Ink amounts (the decoder undoes Adobe's inversion): naive CMYK → RGB.
            for (i, px) in raw.chunks_exact(4).take(n).enumerate() {
                let white = 255 - px[3] as u32;
                let ink = |c: u8| ((255 - c as u32) * white / 255) as u8;
                (r[i], g[i], b[i]) = (ink(px[0]), ink(px[1]), ink(px[2]));
            }
        }
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
        let img = decode_jpeg(&encode(&orange, w, h, ColorType::Rgb), Path::new("rgb.jpg")).unwrap();
        assert_eq!((img.width, img.height, img.pixels.len()), (16, 8, 3 * 128));
        let m = mean_rgb(&img);
        assert!((m[0] - 230.0).abs() < 4.0 && (m[1] - 120.0).abs() < 4.0 && (m[2] - 20.0).abs() < 4.0, "{m:?}");

        let grey: Vec<u8> = vec![77; w as usize * h as usize];
        let img = decode_jpeg(&encode(&grey, w, h, ColorType::Luma), Path::new("grey.jpg")).unwrap();
        let m = mean_rgb(&img);
        assert!(m.iter().all(|v| (v - 77.0).abs() < 2.0), "grey replicated: {m:?}");

        // Pure magenta+yellow ink (no cyan, no black) is red.
        let red_ink: Vec<u8> = (0..w as usize * h as usize).flat_map(|_| [0u8, 255, 255, 0]).collect();
        let img = decode_jpeg(&encode(&red_ink, w, h, ColorType::Cmyk), Path::new("cmyk.jpg")).unwrap();
        let m = mean_rgb(&img);
        assert!(m[0] > 240.0 && m[1] < 15.0 && m[2] < 15.0, "CMYK red: {m:?}");
    }

    #[test]
    fn corrupt_truncated_and_oversized_files_are_errors() {
        let rgb: Vec<u8> = vec![100; 8 * 8 * 3];
        let good = encode(&rgb, 8, 8, ColorType::Rgb);
        for (name, bytes) in [("empty", vec![]), ("text", b"not a jpeg".to_vec()), ("truncated", good[..good.len() / 3].to_vec())] {
            let e = decode_jpeg(&bytes, Path::new(name)).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
        // A frame header declaring 65535 × 65535: refused before any pixel buffer exists.
        let mut huge = good.clone();
        let sof = huge.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        huge[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        let e = decode_jpeg(&huge, Path::new("huge.jpg")).unwrap_err().to_string();
        assert!(e.contains("limit"), "{e}");
        // A 64 × 64 image whose header claims 4000 × 4000 (within the pixel limit): refused from
        // the file's size, before the decoder pads 16 Mpixel with grey.
        let noise: Vec<u8> = (0..64 * 64 * 3).map(|i| (i * 7919 % 251) as u8).collect();
        let small = encode(&noise, 64, 64, ColorType::Rgb);
        let mut forged = small.clone();
        let sof = forged.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        forged[sof + 5..sof + 9].copy_from_slice(&[0x0F, 0xA0, 0x0F, 0xA0]);
        let e = decode_jpeg(&forged, Path::new("forged.jpg")).unwrap_err().to_string();
        assert!(e.contains("forged.jpg") && e.contains("4000 × 4000") && e.contains("truncated or forged"), "{e}");
        // The bound holds for real files: the genuine one, and a flat 512 × 512 image (the most
        // compressible kind), decode.
        assert_eq!(decode_jpeg(&small, Path::new("small.jpg")).unwrap().width, 64);
        let flat = encode(&vec![128; 512 * 512 * 3], 512, 512, ColorType::Rgb);
        assert!(512 * 512 <= MAX_PIXELS_PER_BYTE * flat.len(), "a flat 512 × 512 JPEG has {} bytes", flat.len());
        assert_eq!(decode_jpeg(&flat, Path::new("flat.jpg")).unwrap().height, 512);
    }
}
