//! The halo layout: an activation stored channels-last with a one-pixel ring of zeros around
//! every image, `[batch, h + 2, w + 2, c]`.
//!
//! In this layout a 3×3, padding-1 convolution needs no im2col: the three horizontal taps of a
//! kernel row are 3·c contiguous values, and output pixel q reads them at a fixed offset from
//! q, so each kernel row is one GEMM whose left operand is the input itself, read with
//! overlapping rows (see [`halo_conv_cpu`](super::halo_conv_cpu)). The price is that every op
//! on such a tensor must keep the ring at zero; the ops here all do, and the gradients they
//! return have zero rings too.

/// The shape of one halo tensor: `batch` images of `h × w` interior pixels and `c` channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaloGeometry {
    /// Images.
    pub batch: usize,
    /// Interior height.
    pub h: usize,
    /// Interior width.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl HaloGeometry {
    /// Rows per image, ring included.
    pub fn hp(&self) -> usize {
        self.h + 2
    }
    /// Pixels per row, ring included.
    pub fn wp(&self) -> usize {
        self.w + 2
    }
    /// Values per image, ring included.
    pub fn image_len(&self) -> usize {
        self.hp() * self.wp() * self.c
    }
    /// Values in the whole tensor.
    pub fn len(&self) -> usize {
        self.batch * self.image_len()
    }
    /// Whether the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Interior pixels per channel over the batch (what batch statistics divide by).
    pub fn count(&self) -> usize {
        self.batch * self.h * self.w
    }
    /// The burn shape of the tensor.
    pub fn shape(&self) -> [usize; 4] {
        [self.batch, self.hp(), self.wp(), self.c]
    }
    /// Reads a burn shape `[b, h + 2, w + 2, c]`.
    pub fn of_shape(shape: &[usize]) -> HaloGeometry {
        assert!(shape.len() == 4 && shape[1] >= 2 && shape[2] >= 2, "halo tensor: shape {shape:?} is not [b, h + 2, w + 2, c]");
        HaloGeometry { batch: shape[0], h: shape[1] - 2, w: shape[2] - 2, c: shape[3] }
    }
    /// Offsets (within one image) of the interior rows, each `w · c` contiguous values.
    pub fn interior_rows(&self) -> impl Iterator<Item = usize> + '_ {
        (1..=self.h).map(move |r| (r * self.wp() + 1) * self.c)
    }
}

crate::cpu_common::vector_builds! {
    /// Sets the ring of one image to zero, in memory order (the pieces between rows).
    pub fn zero_ring(image: &mut [f32], g: &HaloGeometry) {
        for r in 1..=g.h + 1 {
            zero_ring_before_row(image, g, r);
        }
    }
}

/// Zeroes the ring values between interior rows r − 1 and r of one image (r from 1: the top
/// row and row 1's left pixel; r = h + 1: row h's right pixel and the bottom row), which are
/// contiguous. A pass that writes an image row by row calls this before each row and once
/// after the last, so the ring is written in the same sequential stream as the rows:
/// zeroing the whole ring ahead of such a pass touched ~130 scattered cache lines per 32×32
/// image, each a separate miss on a freshly allocated buffer. [`zero_ring`] is these pieces in
/// order.
#[inline(always)]
pub(crate) fn zero_ring_before_row(image: &mut [f32], g: &HaloGeometry, r: usize) {
    let (c, wp) = (g.c, g.wp());
    let start = if r == 1 { 0 } else { (r * wp - 1) * c };
    let end = if r == g.h + 1 { g.image_len() } else { (r * wp + 1) * c };
    // Two pixels between rows: a fixed-size fill (a few vector stores, not a memset call).
    match end - start {
        32 => image[start..][..32].fill(0.0),
        64 => image[start..][..64].fill(0.0),
        128 => image[start..][..128].fill(0.0),
        n => image[start..][..n].fill(0.0),
    }
}

/// Whether the ring of every image is zero. Images are checked on the rayon pool: each
/// convolution's backward asks this of its upstream gradient, and on one thread the scan of
/// every image's border (one cache line per ring pixel) was serial time between parallel passes.
pub fn ring_is_zero(data: &[f32], g: &HaloGeometry) -> bool {
    use rayon::prelude::*;
    let (wp, c, row) = (g.wp(), g.c, g.wp() * g.c);
    data.par_chunks(g.image_len()).all(|image| {
        // ±0 alike: the sign bit is shifted out; an OR over a run vectorises.
        let zero = |s: &[f32]| s.iter().fold(0u32, |a, v| a | (v.to_bits() << 1)) == 0;
        zero(&image[..row])
            && zero(&image[(g.hp() - 1) * row..])
            && (1..=g.h).all(|r| zero(&image[r * row..][..c]) && zero(&image[(r * wp + wp - 1) * c..][..c]))
    })
}

/// `data` with every ring set to zero: borrowed when it already is, else a zeroed copy. The
/// backward kernels read gradients as halo tensors, whose ring values mean nothing (the ring is
/// a constant), so they call this before using one as a padded input.
pub fn with_zero_ring<'a>(data: &'a [f32], g: &HaloGeometry) -> std::borrow::Cow<'a, [f32]> {
    if ring_is_zero(data, g) {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut owned = data.to_vec();
    for image in owned.chunks_mut(g.image_len()) {
        zero_ring(image, g);
    }
    std::borrow::Cow::Owned(owned)
}

/// The geometry of [`shortcut_a_forward`]'s output: x subsampled at `stride` from its first
/// interior pixel, with `pad` more channels on each side.
pub fn shortcut_a_output(g: &HaloGeometry, stride: usize, pad: usize) -> HaloGeometry {
    assert!(stride >= 1, "shortcut: stride {stride}");
    HaloGeometry { batch: g.batch, h: (g.h - 1) / stride + 1, w: (g.w - 1) / stride + 1, c: g.c + 2 * pad }
}

/// The option-A (parameter-free) shortcut of a ResNet block between halo tensors: interior
/// pixel (i, j) of the output is x's interior pixel (i·stride, j·stride), its channels placed at
/// pad..pad + c; the other channels and the ring are zero. One pass per image, where the
/// equivalent burn ops (a strided slice, a zero tensor, a slice assignment) were three, one of
/// them on one thread.
pub fn shortcut_a_forward(x: &[f32], g: &HaloGeometry, stride: usize, pad: usize) -> Vec<f32> {
    assert_eq!(x.len(), g.len(), "shortcut: input size");
    let o = shortcut_a_output(g, stride, pad);
    shortcut_a_copy(x, g.image_len(), o.len(), o.image_len(), g.c, shortcut_a_pixels(g, &o, stride, pad), |(xo, yo)| (xo, yo))
}

/// The gradient of [`shortcut_a_forward`]: each of dy's interior values at channels
/// pad..pad + c back at the pixel it came from; zero at the pixels the stride skips and on the
/// ring (dy's ring and padded channels are ignored).
pub fn shortcut_a_backward(dy: &[f32], g: &HaloGeometry, stride: usize, pad: usize) -> Vec<f32> {
    let o = shortcut_a_output(g, stride, pad);
    assert_eq!(dy.len(), o.len(), "shortcut backward: gradient size");
    shortcut_a_copy(dy, o.image_len(), g.len(), g.image_len(), g.c, shortcut_a_pixels(g, &o, stride, pad), |(xo, yo)| (yo, xo))
}

/// The shortcut's pixel map within one image: for each output interior pixel, the offset of
/// its source pixel in x's image and of its first copied channel (pad) in y's image.
fn shortcut_a_pixels(g: &HaloGeometry, o: &HaloGeometry, stride: usize, pad: usize) -> Vec<(usize, usize)> {
    let mut pairs = Vec::with_capacity(o.h * o.w);
    for i in 0..o.h {
        for j in 0..o.w {
            let in_x = ((1 + i * stride) * g.wp() + 1 + j * stride) * g.c;
            let in_y = ((1 + i) * o.wp() + 1 + j) * o.c + pad;
            pairs.push((in_x, in_y));
        }
    }
    pairs
}

/// Copies `run` values per pixel pair from `src` to a new zeroed-elsewhere tensor of `dst_len`
/// values, image by image in parallel; `direction` turns an (x offset, y offset) pair into
/// (from, to), so the forward (x → y) and the backward (dy → dx) share one loop.
fn shortcut_a_copy(
    src: &[f32],
    src_image: usize,
    dst_len: usize,
    dst_image: usize,
    run: usize,
    pixels: Vec<(usize, usize)>,
    direction: impl Fn((usize, usize)) -> (usize, usize) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    // SAFETY: every image is zero-filled in the pass below before its copies (zeroing the whole
    // vector here was a serial memset on the calling thread).
    let mut dst = unsafe { crate::cpu_common::uninit_f32(dst_len) };
    dst.par_chunks_mut(dst_image).zip(src.par_chunks(src_image)).for_each(|(db, sb)| copy_runs(sb, db, run, &pixels, &direction));
    dst
}

/// One image of [`shortcut_a_copy`]: `db` zeroed, then `run` values per pixel pair copied in.
fn copy_runs(sb: &[f32], db: &mut [f32], run: usize, pixels: &[(usize, usize)], direction: impl Fn((usize, usize)) -> (usize, usize)) {
    db.fill(0.0);
    for &pair in pixels {
        let (from, to) = direction(pair);
        db[to..][..run].copy_from_slice(&sb[from..][..run]);
    }
}

/// [`shortcut_a_forward`] of one image at a time, for passes that run a whole network image by
/// image: the pixel map is made once, and each image's copy is the forward's, value for value.
#[derive(Debug, Clone)]
pub(crate) struct ShortcutA {
    run: usize,
    pixels: Vec<(usize, usize)>,
}

impl ShortcutA {
    /// The shortcut from images of geometry `g` (its batch is ignored).
    pub(crate) fn new(g: &HaloGeometry, stride: usize, pad: usize) -> ShortcutA {
        ShortcutA { run: g.c, pixels: shortcut_a_pixels(g, &shortcut_a_output(g, stride, pad), stride, pad) }
    }
    /// y's image (every value) from x's.
    pub(crate) fn image(&self, xb: &[f32], yb: &mut [f32]) {
        copy_runs(xb, yb, self.run, &self.pixels, |p| p);
    }
}

/// NCHW `[b, c, h, w]` to the halo layout (for tests and for images entering the network).
pub fn nchw_to_halo(x: &[f32], batch: usize, c: usize, h: usize, w: usize) -> Vec<f32> {
    let g = HaloGeometry { batch, h, w, c };
    let mut out = vec![0.0f32; g.len()];
    for (src, dst) in x.chunks_exact(c * h * w).zip(out.chunks_exact_mut(g.image_len())) {
        nchw_image_to_halo(src, &g, dst);
    }
    out
}

/// One image of [`nchw_to_halo`]: every value of `dst` (one halo image of geometry `g`)
/// written, the ring zero, from `src` (`[c, h, w]`).
pub(crate) fn nchw_image_to_halo(src: &[f32], g: &HaloGeometry, dst: &mut [f32]) {
    let (c, h, w) = (g.c, g.h, g.w);
    dst.fill(0.0);
    for y in 0..h {
        for xx in 0..w {
            let d = ((y + 1) * g.wp() + xx + 1) * c;
            for ch in 0..c {
                dst[d + ch] = src[(ch * h + y) * w + xx];
            }
        }
    }
}

/// The halo layout back to NCHW (the ring dropped).
pub fn halo_to_nchw(x: &[f32], g: &HaloGeometry) -> Vec<f32> {
    let (c, h, w) = (g.c, g.h, g.w);
    let mut out = vec![0.0f32; g.batch * c * h * w];
    for b in 0..g.batch {
        let (src, dst) = (&x[b * g.image_len()..][..g.image_len()], &mut out[b * c * h * w..][..c * h * w]);
        for y in 0..h {
            for xx in 0..w {
                let s = ((y + 1) * g.wp() + xx + 1) * c;
                for ch in 0..c {
                    dst[(ch * h + y) * w + xx] = src[s + ch];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `zero_ring` (both builds) zeroes exactly the ring and leaves the interior alone, checked
    /// value by value against the layout's definition (the 2-pixel fills at 16/32/64 channels,
    /// runtime widths, one-pixel images).
    #[test]
    fn zero_ring_is_exactly_the_ring() {
        for (c, h, w) in [(16, 4, 5), (32, 3, 3), (64, 2, 6), (5, 1, 1), (3, 6, 2)] {
            let g = HaloGeometry { batch: 1, h, w, c };
            let expected: Vec<f32> = (0..g.len())
                .map(|i| {
                    let (row, col) = (i / (g.wp() * c), i / c % g.wp());
                    if (1..=h).contains(&row) && (1..=w).contains(&col) { 1.0 } else { 0.0 }
                })
                .collect();
            let (mut dispatched, mut baseline) = (vec![1.0f32; g.len()], vec![1.0f32; g.len()]);
            zero_ring(&mut dispatched, &g);
            zero_ring::baseline(&mut baseline, &g);
            assert_eq!(dispatched, expected, "{c} channels, {h}×{w}");
            assert_eq!(baseline, expected, "{c} channels, {h}×{w}: baseline build");
            assert!(ring_is_zero(&dispatched, &g));
        }
    }

    #[test]
    fn round_trip_and_ring() {
        let (b, c, h, w) = (2, 3, 4, 5);
        let x: Vec<f32> = (0..b * c * h * w).map(|i| i as f32 + 1.0).collect();
        let g = HaloGeometry { batch: b, h, w, c };
        let halo = nchw_to_halo(&x, b, c, h, w);
        assert_eq!(halo.len(), g.len());
        assert!(ring_is_zero(&halo, &g));
        assert_eq!(halo_to_nchw(&halo, &g), x);
        // Every interior value is non-zero here, so the ring is exactly the zeros.
        assert_eq!(halo.iter().filter(|&&v| v == 0.0).count(), b * c * (g.hp() * g.wp() - h * w));
        let mut dirty = halo.clone();
        dirty[g.image_len() + g.wp() * c] = 7.0; // second image, row 1, column 0
        assert!(!ring_is_zero(&dirty, &g));
        assert_eq!(&*with_zero_ring(&dirty, &g), &halo[..]);
        assert!(matches!(with_zero_ring(&halo, &g), std::borrow::Cow::Borrowed(_)));
    }
}
