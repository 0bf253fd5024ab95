//! A decoded image file as an in-memory dataset's image: the shorter side resized to the
//! set's side and the centre cropped (bilinear, [`crate::data::resize`]), and grey where the set
//! is grey (PIL's `convert("L")`). Used where image files meet in-memory sets: `rbl predict` on
//! a Fashion-MNIST or CIFAR run, and image-folder trees of small images, which are read into
//! memory and trained like CIFAR.

use crate::data::decode::RgbImage;
use crate::data::resize::{resize, resize_center_crop};

/// PIL's `convert("L")`: L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16 (ITU-R 601 weights).
pub fn grey(img: &RgbImage) -> Vec<u8> {
    let n = img.width * img.height;
    let (r, g, b) = (&img.pixels[..n], &img.pixels[n..2 * n], &img.pixels[2 * n..]);
    (0..n).map(|i| ((19595 * r[i] as u32 + 38470 * g[i] as u32 + 7471 * b[i] as u32 + 32768) >> 16) as u8).collect()
}

/// A decoded file as an in-memory dataset image of `channels` × `height` × `width`: square
/// sets by resizing the shorter side and cropping the centre (nothing changes for an image of
/// that size already), others by resizing to the shape.
pub fn to_model_input(img: &RgbImage, channels: usize, height: usize, width: usize) -> Vec<u8> {
    let same = img.width == width && img.height == height;
    let sized = if same {
        img.clone()
    } else if height == width {
        resize_center_crop(img, height, height)
    } else {
        resize(img, width, height)
    };
    if channels == 1 { grey(&sized) } else { sized.pixels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_matches_pils_integer_formula() {
        // PIL: L = R*299/1000 + G*587/1000 + B*114/1000, as (19595, 38470, 7471) / 65536 rounded.
        let img = RgbImage { width: 3, height: 1, pixels: vec![255, 0, 10, 0, 255, 20, 0, 0, 30] };
        let by_hand = |r: f64, g: f64, b: f64| (0.299 * r + 0.587 * g + 0.114 * b).round() as u8;
        assert_eq!(grey(&img), vec![by_hand(255.0, 0.0, 0.0), by_hand(0.0, 255.0, 0.0), by_hand(10.0, 20.0, 30.0)]);
    }

    #[test]
    fn an_image_of_the_sets_size_is_kept_as_it_is() {
        let img = RgbImage { width: 2, height: 2, pixels: (0..12).collect() };
        assert_eq!(to_model_input(&img, 3, 2, 2), img.pixels);
        assert_eq!(to_model_input(&img, 1, 2, 2).len(), 4);
        assert_eq!(to_model_input(&img, 3, 4, 4).len(), 48);
    }
}
