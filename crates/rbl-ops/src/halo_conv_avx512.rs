//! The stride-1 halo convolution's inner loop written for AVX-512, for output widths that are
//! multiples of 16 channels.
//!
//! Given to the `gemm` crate, the overlapping-rows product (K = 3·c_in, N = c_out) is packed
//! first: the input rows are copied into panels, nine copies of the input per image, which is
//! the im2col the layout was meant to avoid; and with the output channel-contiguous, the crate
//! puts the channels on the vector axis and picks a 16×6 tile for 16 channels, too few
//! accumulators to hide the FMA latency. This kernel reads the input where it lies and
//! broadcasts each value against 1, 2 or 4 vectors of weights, keeping P pixels × CB vectors
//! of accumulators in registers (24 of the 32), so there is no packing and each input value
//! is loaded once per kernel tap it meets.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether this CPU runs the kernel (it has AVX-512F and `RBL_CPU_LEVEL` allows it).
pub fn available() -> bool {
    crate::cpu_common::has_avx512f()
}

/// Pixels per register tile for `vectors` 16-channel output vectors.
pub fn tile_pixels(vectors: usize) -> usize {
    match vectors {
        1 => 24,
        2 => 12,
        _ => 6,
    }
}

/// y[r, :] = Σ_ky Σ_j x[(r + ky·row_step)·c_in + j] · taps[ky][j][:] for r in 0..m, with
/// j < 3·c_in and c_out = 16·vectors (1, 2 or 4), overwriting y. Rows are done in tiles of
/// [`tile_pixels`]; the last tile is moved back to end at m (its overlap is recomputed to the
/// same values), so m must be at least one tile.
///
/// # Safety
/// `available()` must hold; x must hold (m − 1 + 2·row_step)·c_in + 3·c_in values, taps
/// 9·c_in·c_out, y m·c_out.
#[cfg(target_arch = "x86_64")]
pub unsafe fn conv_rows(x: &[f32], taps: &[f32], y: &mut [f32], m: usize, c_in: usize, c_out: usize, row_step: usize) {
    assert!(c_out.is_multiple_of(16) && matches!(c_out / 16, 1 | 2 | 4), "conv_rows: c_out {c_out}");
    let p = tile_pixels(c_out / 16);
    assert!(m >= p, "conv_rows: {m} rows, fewer than one tile");
    assert!(
        x.len() >= (m - 1 + 2 * row_step) * c_in + 3 * c_in && taps.len() >= 9 * c_in * c_out && y.len() >= m * c_out,
        "conv_rows: sizes"
    );
    // SAFETY: sizes asserted above; the feature is the caller's promise.
    unsafe {
        match c_out / 16 {
            1 => rows::<1, 24>(x, taps, y, m, c_in, row_step),
            2 => rows::<2, 12>(x, taps, y, m, c_in, row_step),
            _ => rows::<4, 6>(x, taps, y, m, c_in, row_step),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows<const CB: usize, const P: usize>(x: &[f32], taps: &[f32], y: &mut [f32], m: usize, c_in: usize, row_step: usize) {
    let c_out = CB * 16;
    let k = 3 * c_in;
    let mut r0 = 0;
    loop {
        let start = r0.min(m - P);
        // SAFETY: rows start..start + P < m, so every read is inside x (the caller's bound)
        // and every write inside y.
        unsafe { tile::<CB, P>(x.as_ptr().add(start * c_in), taps.as_ptr(), y.as_mut_ptr().add(start * c_out), c_in, k, row_step) };
        if start + P >= m {
            break;
        }
        r0 += P;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const CB: usize, const P: usize>(x: *const f32, taps: *const f32, y: *mut f32, c_in: usize, k: usize, row_step: usize) {
    let c_out = CB * 16;
    let mut acc = [[_mm512_setzero_ps(); CB]; P];
    for ky in 0..3 {
        // SAFETY (whole block): offsets stay inside the ranges `rows` established.
        unsafe {
            let xs = x.add(ky * row_step * c_in);
            let ws = taps.add(ky * k * c_out);
            for j in 0..k {
                let mut w = [_mm512_setzero_ps(); CB];
                for (cb, wv) in w.iter_mut().enumerate() {
                    *wv = _mm512_loadu_ps(ws.add(j * c_out + cb * 16));
                }
                for (px, a) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*xs.add(px * c_in + j));
                    for cb in 0..CB {
                        a[cb] = _mm512_fmadd_ps(b, w[cb], a[cb]);
                    }
                }
            }
        }
    }
    for (px, a) in acc.iter().enumerate() {
        for (cb, v) in a.iter().enumerate() {
            // SAFETY: row px of the tile, inside y.
            unsafe { _mm512_storeu_ps(y.add(px * c_out + cb * 16), *v) };
        }
    }
}

/// The register tile of [`conv_image`] for `vectors` 16-channel output vectors and an
/// interior width w: (vectors per pass CB, output rows R, pixels P), R·P·CB accumulators plus
/// up to 3·CB weights within the 32 registers, and P dividing w where one of the choices does
/// (a column block moved back at the edge recomputes pixels). Each weight vector loaded serves
/// P pixels, so P = 8 with two vectors per pass beats P = 4 with four at 32 and 64 channels
/// (in cache, one thread: 64 channels at 8×8 120 → 142 GFLOP/s, at 7×7 105 → 130; 32 at
/// 14×14 146 → 174 with P = 7): the 64-channel taps (147 KB) do not fit the L1 cache and are
/// streamed from L2 once per tile; in two passes of 32 channels, half as often per FMA.
fn image_tile(vectors: usize, w: usize) -> (usize, usize, usize) {
    let sevens = w.is_multiple_of(7) && !w.is_multiple_of(8);
    match vectors {
        1 if sevens => (1, 3, 7),
        1 => (1, 3, 8),
        _ if sevens => (2, 1, 7),
        _ if w.is_multiple_of(8) => (2, 1, 8),
        2 => (2, 2, 4),
        _ => (4, 1, 4),
    }
}

/// Whether [`conv_image`] takes an image of this interior size with c_out output channels.
pub fn image_kernel_fits(c_out: usize, h: usize, w: usize) -> bool {
    fits(c_out, h, w, image_tile)
}

/// Whether an output of h × w interior pixels and c_out channels (16, 32 or 64) holds at least
/// one register tile of the kind `tile` picks for its vectors and width.
fn fits(c_out: usize, h: usize, w: usize, tile: fn(usize, usize) -> (usize, usize, usize)) -> bool {
    if !(c_out.is_multiple_of(16) && matches!(c_out / 16, 1 | 2 | 4)) {
        return false;
    }
    let (_, r, p) = tile(c_out / 16, w);
    h >= r && w >= p
}

/// The same values as [`conv_rows`] (bit for bit) for one whole halo image, computed in tiles
/// of R output rows × P pixels × CB output vectors that share their input rows, one pass over
/// the image per group of 16·CB output channels ([`image_tile`]).
///
/// [`conv_rows`] with one output vector per pixel loads a broadcast input value for every FMA
/// (24 pixels × 1 vector): the load ports, not the FMA units, set its pace; and its rows run
/// through the ring's columns (junk, zeroed after: 6 % of the work at 32×32, 22 % at 8×8). An
/// input value of padded row i feeds output rows i − 2, i − 1 and i (kernel rows 2, 1, 0), so
/// with R = 3 output rows each broadcast serves up to three accumulators, about two thirds of a
/// load per FMA at 16 channels; and a tile covers interior pixels only. Input rows are taken in
/// order, and within one the 3·c_in kernel inputs in order, so every output sums its 9·c_in
/// products in the order [`conv_rows`] does: kernel row 0's inputs, then row 1's, then row 2's.
/// Only interior pixels are written; the caller zeroes the ring.
///
/// # Safety
/// `available()` must hold and [`image_kernel_fits`]`(c_out, h, w)`; x must hold one input
/// image ((h + 2)·(w + 2)·c_in values), taps 9·c_in·c_out, y one output image
/// ((h + 2)·(w + 2)·c_out).
#[cfg(target_arch = "x86_64")]
pub unsafe fn conv_image(x: &[f32], taps: &[f32], y: &mut [f32], h: usize, w: usize, c_in: usize, c_out: usize) {
    let wp = w + 2;
    assert!(image_kernel_fits(c_out, h, w), "conv_image: {h}×{w} image, {c_out} channels");
    assert!(x.len() >= (h + 2) * wp * c_in && taps.len() >= 9 * c_in * c_out && y.len() >= (h + 2) * wp * c_out, "conv_image: sizes");
    // SAFETY: sizes and fit asserted above; the feature is the caller's promise.
    unsafe {
        let s = Shape { h, w, wp_in: wp, wp_out: wp, c_in, c_out };
        match image_tile(c_out / 16, w) {
            (1, 3, 7) => image::<1, 3, 7, 1>(x, taps, y, s),
            (1, _, _) => image::<1, 3, 8, 1>(x, taps, y, s),
            (2, 1, 7) => image::<2, 1, 7, 1>(x, taps, y, s),
            (2, 1, 8) => image::<2, 1, 8, 1>(x, taps, y, s),
            (2, _, _) => image::<2, 2, 4, 1>(x, taps, y, s),
            _ => image::<4, 1, 4, 1>(x, taps, y, s),
        }
    }
}

/// The register tile of [`conv_image_stride2`]: (vectors per pass, 1 output row, P pixels),
/// P = 8 or 7 where it divides the output width (each weight vector loaded serves P pixels),
/// else 4. Stride 2 shares no input row between output rows, so one output row per tile.
fn stride2_tile(vectors: usize, w_out: usize) -> (usize, usize, usize) {
    let cb = vectors.min(2);
    if w_out.is_multiple_of(8) {
        (cb, 1, 8)
    } else if w_out.is_multiple_of(7) {
        (cb, 1, 7)
    } else {
        (cb, 1, 4)
    }
}

/// Whether [`conv_image_stride2`] takes an output of this interior size with c_out channels.
pub fn stride2_kernel_fits(c_out: usize, h_out: usize, w_out: usize) -> bool {
    fits(c_out, h_out, w_out, stride2_tile)
}

/// The stride-2 convolution of one halo image: output pixel (i, j) sums its 9·c_in products
/// x[2i + ky][2j + kx][c]·w[ky][kx][c] in (ky, kx, c) order with fused multiply-adds from
/// zero, the order in which the `gemm` crate's microkernel sums each row of the column matrix
/// (one depth block: K = 9·c_in is 144 or 288 here), so the bits of the column path it
/// replaces (tested). No column matrix: the input is read where it lies, every other pixel.
/// Only interior pixels are written; the caller zeroes the ring.
///
/// # Safety
/// `available()` must hold and [`stride2_kernel_fits`]`(c_out, h_out, w_out)` for the output
/// of an h_in × w_in input ((h_in − 1)/2 + 1 rows, likewise columns); x must hold one input
/// image ((h_in + 2)·(w_in + 2)·c_in values), taps 9·c_in·c_out, y one output image.
#[cfg(target_arch = "x86_64")]
pub unsafe fn conv_image_stride2(x: &[f32], taps: &[f32], y: &mut [f32], h_in: usize, w_in: usize, c_in: usize, c_out: usize) {
    let (h, w) = ((h_in - 1) / 2 + 1, (w_in - 1) / 2 + 1);
    let (wp_in, wp_out) = (w_in + 2, w + 2);
    assert!(stride2_kernel_fits(c_out, h, w), "conv_image_stride2: {h}×{w} output, {c_out} channels");
    assert!(
        x.len() >= (h_in + 2) * wp_in * c_in && taps.len() >= 9 * c_in * c_out && y.len() >= (h + 2) * wp_out * c_out,
        "conv_image_stride2: sizes"
    );
    let s = Shape { h, w, wp_in, wp_out, c_in, c_out };
    // SAFETY: sizes and fit asserted above (output pixel (i, j) reads padded input rows 2i..2i + 3
    // and pixels 2j..2j + 3, inside x); the feature is the caller's promise.
    unsafe {
        match stride2_tile(c_out / 16, w) {
            (1, _, 8) => image::<1, 1, 8, 2>(x, taps, y, s),
            (1, _, 7) => image::<1, 1, 7, 2>(x, taps, y, s),
            (1, _, _) => image::<1, 1, 4, 2>(x, taps, y, s),
            (_, _, 8) => image::<2, 1, 8, 2>(x, taps, y, s),
            (_, _, 7) => image::<2, 1, 7, 2>(x, taps, y, s),
            _ => image::<2, 1, 4, 2>(x, taps, y, s),
        }
    }
}

/// The sizes an image kernel works with: the output's interior (h × w), the padded widths of
/// input and output rows, and the channels.
#[derive(Debug, Clone, Copy)]
struct Shape {
    h: usize,
    w: usize,
    wp_in: usize,
    wp_out: usize,
    c_in: usize,
    c_out: usize,
}

/// Tiles of R output rows × P pixels × CB vectors over the output's interior, one pass per
/// group of 16·CB output channels; input pixels S apart (the stride).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn image<const CB: usize, const R: usize, const P: usize, const S: usize>(x: &[f32], taps: &[f32], y: &mut [f32], s: Shape) {
    let Shape { h, w, wp_in, wp_out, c_in, c_out } = s;
    let (in_row, out_row) = (wp_in * c_in, wp_out * c_out);
    let tiles = w.div_ceil(P);
    // Output channels in groups of 16·CB, each over the whole image: a group's taps
    // (9·c_in·16·CB values) stay in the L1 cache while its tiles pass over the image.
    for group in 0..c_out / (16 * CB) {
        let mut y0 = 0;
        loop {
            // The last band and the last column block move back to end at the image's edge; the
            // outputs they recompute come out the same.
            let top = y0.min(h - R);
            // The rows the next band reads beyond this one's, and the output rows it writes,
            // past the image's end for the last band (the next image of a batch, when there is
            // one): asked for a tile's share at a time, so that they arrive while this band
            // computes (a batch's images come from memory; without this ~20 % of the time went
            // to waiting for them).
            let next_in = (S * top + S * (R - 1) + 3) * in_row;
            let next_out = (top + 1 + R) * out_row;
            let mut x0 = 0;
            let mut t = 0;
            loop {
                let left = x0.min(w - P);
                prefetch_share::<_MM_HINT_T1>(x.as_ptr(), next_in, S * R * in_row, t, tiles);
                prefetch_share::<_MM_HINT_T1>(y.as_ptr(), next_out, R * out_row, t, tiles);
                t += 1;
                // SAFETY: the tile's outputs are interior pixels (top + 1 + r, left + 1 + p) with
                // r < R, p < P, channels of the group, inside y; its inputs are padded rows
                // S·top..S·(top + R − 1) + 3 and pixels S·left..S·(left + P − 1) + 3 of them,
                // inside x; taps holds 9·c_in·c_out.
                unsafe {
                    image_block::<CB, R, P, S>(
                        x.as_ptr().add((S * top * wp_in + S * left) * c_in),
                        taps.as_ptr().add(group * 16 * CB),
                        y.as_mut_ptr().add(((top + 1) * wp_out + left + 1) * c_out + group * 16 * CB),
                        s,
                    )
                };
                if left + P >= w {
                    break;
                }
                x0 += P;
            }
            if top + R >= h {
                break;
            }
            y0 += R;
        }
    }
}

/// Asks the caches for share t of `shares` of the `len` values from `start` past `base` (a
/// hint: addresses past the slice are never dereferenced; a prefetch does not fault).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_share<const HINT: i32>(base: *const f32, start: usize, len: usize, t: usize, shares: usize) {
    let lines = len.div_ceil(16);
    for line in t * lines / shares..(t + 1) * lines / shares {
        // SAFETY: prefetching reads nothing into the program and cannot fault; the address is
        // formed with wrapping arithmetic, never dereferenced.
        unsafe { _mm_prefetch::<HINT>(base.wrapping_add(start + line * 16).cast::<i8>()) };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn image_block<const CB: usize, const R: usize, const P: usize, const S: usize>(
    x: *const f32,
    taps: *const f32,
    y: *mut f32,
    s: Shape,
) {
    let Shape { wp_in, wp_out, c_in, c_out, .. } = s;
    let mut acc = [[[_mm512_setzero_ps(); CB]; P]; R];
    // SAFETY (whole block): offsets inside the tile `image` hands over.
    unsafe {
        // Written out rather than looped, so that each call's row index is a constant and the
        // accumulators stay in registers; rows past R + 1 do not exist (the ifs fold away).
        // With stride 2 an input row feeds one output row at most, so one output row a tile.
        const { assert!(R >= 1 && R <= 3 && (S == 1 || R == 1)) };
        input_row::<CB, R, P, 0, S>(x, taps, &mut acc, c_in, c_out);
        input_row::<CB, R, P, 1, S>(x.add(wp_in * c_in), taps, &mut acc, c_in, c_out);
        input_row::<CB, R, P, 2, S>(x.add(2 * wp_in * c_in), taps, &mut acc, c_in, c_out);
        if R >= 2 {
            input_row::<CB, R, P, 3, S>(x.add(3 * wp_in * c_in), taps, &mut acc, c_in, c_out);
        }
        if R >= 3 {
            input_row::<CB, R, P, 4, S>(x.add(4 * wp_in * c_in), taps, &mut acc, c_in, c_out);
        }
        for (r, row) in acc.iter().enumerate() {
            for (p, px) in row.iter().enumerate() {
                for (cb, v) in px.iter().enumerate() {
                    _mm512_storeu_ps(y.add((r * wp_out + p) * c_out + cb * 16), *v);
                }
            }
        }
    }
}

/// Padded input row I of a tile: each of its P pixels' 3·c_in kernel inputs, in order, against
/// kernel row ky into output row I − ky, for the kernel rows that land in the tile; the tile's
/// pixels read input pixels S apart (the stride).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
// Indexing the accumulators by (I − ky, p, cb), all constants once unrolled, is the point: it
// keeps them in registers.
#[allow(clippy::needless_range_loop)]
unsafe fn input_row<const CB: usize, const R: usize, const P: usize, const I: usize, const S: usize>(
    xs: *const f32,
    taps: *const f32,
    acc: &mut [[[__m512; CB]; P]; R],
    c_in: usize,
    c_out: usize,
) {
    let k = 3 * c_in;
    // Kernel row ky sends this input row to output row I − ky, when that is in the tile.
    let lands = |ky: usize| ky <= I && I - ky < R;
    // SAFETY (whole block): xs is the row's first pixel, S·(P − 1) + 3 pixels of c_in values follow;
    // taps (from the group's first channel) holds 9·c_in rows of c_out, of which 16·CB are read.
    unsafe {
        for j in 0..k {
            let mut wv = [[_mm512_setzero_ps(); CB]; 3];
            for (ky, v) in wv.iter_mut().enumerate() {
                if lands(ky) {
                    for (cb, vv) in v.iter_mut().enumerate() {
                        *vv = _mm512_loadu_ps(taps.add((ky * k + j) * c_out + cb * 16));
                    }
                }
            }
            for p in 0..P {
                let b = _mm512_set1_ps(*xs.add(p * S * c_in + j));
                for (ky, wk) in wv.iter().enumerate() {
                    if lands(ky) {
                        for cb in 0..CB {
                            acc[I - ky][p][cb] = _mm512_fmadd_ps(b, wk[cb], acc[I - ky][p][cb]);
                        }
                    }
                }
            }
        }
    }
}

/// Weight-gradient tile: J kernel inputs × CB vectors of output channels, for each c_out.
pub fn weight_tile_inputs(vectors: usize) -> usize {
    tile_pixels(vectors)
}

/// Rows per block of the weight gradient's sum: the block's rows of x and dy stay in the L1/L2
/// cache while every tile of the kernel passes over them.
const WEIGHT_ROW_BLOCK: usize = 256;

/// Which rows r of the weight gradient's sum one call covers (r counts pixels of the padded
/// grid from the first interior pixel, as the caller slices x and dy).
#[derive(Debug, Clone, Copy)]
pub enum WeightRows {
    /// r < n, contiguous: ring columns included (dy is zero there).
    All(usize),
    /// The interior pixels of an image of h × w: r = y·row_step + p for y < h, p < w, the
    /// ring's two columns between image rows skipped.
    Interior {
        /// Interior rows.
        h: usize,
        /// Interior width (at most row_step).
        w: usize,
    },
}

impl WeightRows {
    /// One past the last row r the sum reads.
    pub(crate) fn end(self, row_step: usize) -> usize {
        match self {
            WeightRows::All(n) => n,
            WeightRows::Interior { h, w } => (h - 1) * row_step + w,
        }
    }

    /// The blocks of about [`WEIGHT_ROW_BLOCK`] rows the sum runs in, each (first row, runs);
    /// every tile of the kernel passes over a block while its rows of x and dy are in cache.
    pub(crate) fn blocks(self, row_step: usize) -> impl Iterator<Item = (usize, Runs)> {
        let (band, count, len, step) = match self {
            WeightRows::All(n) => (WEIGHT_ROW_BLOCK, n, 1, 1),
            WeightRows::Interior { h, w } => ((WEIGHT_ROW_BLOCK / w).max(1), h, w, row_step),
        };
        (0..count).step_by(band).map(move |first| {
            let runs = match self {
                WeightRows::All(_) => Runs { count: 1, len: band.min(count - first), step: 0 },
                WeightRows::Interior { .. } => Runs { count: band.min(count - first), len, step },
            };
            (first * step, runs)
        })
    }
}

/// The block of the weight gradient's taps one call forms: the kernel rows `kys` (of 0..3) ×
/// the kernel inputs `inputs` of each (j < 3·c_in: kernel column j / c_in, input channel
/// j % c_in) × every output channel, laid out [ky − kys.start][j − inputs.start][c_out]. Each
/// tap is its own chain of multiply-adds over the rows, so a pool with more threads than image
/// tasks can hand the blocks of one image task to different threads without changing a bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapsBlock {
    /// Kernel rows.
    pub kys: std::ops::Range<usize>,
    /// Kernel inputs of each row.
    pub inputs: std::ops::Range<usize>,
}

impl TapsBlock {
    /// Every tap of a convolution with `c_in` input channels.
    pub fn all(c_in: usize) -> TapsBlock {
        TapsBlock { kys: 0..3, inputs: 0..3 * c_in }
    }

    /// Values the block holds for `c_out` output channels.
    pub fn len(&self, c_out: usize) -> usize {
        self.kys.len() * self.inputs.len() * c_out
    }
}

/// The granularity of [`TapsBlock::inputs`] the kernel takes for `vectors` 16-channel output
/// vectors: a third of [`weight_tile_inputs`] (a block's inputs are whole tiles, then tiles
/// of this size).
pub fn weight_block_inputs(vectors: usize) -> usize {
    weight_tile_inputs(vectors) / 3
}

/// taps[ky − kys.start][j − inputs.start][:] += Σ_r x[(r + ky·row_step)·c_in + j] · dy[r, :]
/// for the taps of `block` ([`TapsBlock`]) and the rows r of `rows`; c_out = 16·vectors (1, 2
/// or 4), 3·c_in a multiple of [`weight_tile_inputs`] and the block's inputs a multiple of
/// [`weight_block_inputs`]. The sum over r runs in order onto what taps holds (blocks carry
/// their partial sums), so the result does not depend on the row blocking or on which taps
/// one call covers, and consecutive calls over consecutive row ranges give the bits of one
/// call over their union. With [`WeightRows::Interior`] the skipped ring columns are rows
/// where dy is zero (the caller zeroes dy's ring); a sum that starts at +0 is never −0, so the
/// skipped x·0 terms (x finite) would change no bit: the bits of [`WeightRows::All`] over the
/// same range (tested), with 6 % (32×32) to 18 % (8×8) fewer multiply-adds.
///
/// # Safety
/// `available()` must hold; with e = rows.end(row_step), x must hold (e − 1 + 2·row_step)·c_in
/// + 3·c_in values, dy e·c_out, taps block.len(c_out).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn weight_grad_rows(
    x: &[f32],
    dy: &[f32],
    taps: &mut [f32],
    rows: WeightRows,
    c_in: usize,
    c_out: usize,
    row_step: usize,
    block: &TapsBlock,
) {
    let vectors = c_out / 16;
    assert!(c_out.is_multiple_of(16) && matches!(vectors, 1 | 2 | 4), "weight_grad_rows: c_out {c_out}");
    assert!((3 * c_in).is_multiple_of(weight_tile_inputs(vectors)), "weight_grad_rows: c_in {c_in}");
    assert!(block.inputs.len().is_multiple_of(weight_block_inputs(vectors)), "weight_grad_rows: inputs {:?}", block.inputs);
    let shape_ok = match rows {
        WeightRows::All(n) => n >= 1,
        WeightRows::Interior { h, w } => h >= 1 && (1..=row_step).contains(&w),
    };
    let end = if shape_ok { rows.end(row_step) } else { 0 };
    assert!(
        shape_ok
            && block.kys.end <= 3
            && block.inputs.end <= 3 * c_in
            && x.len() >= (end - 1 + 2 * row_step) * c_in + 3 * c_in
            && dy.len() >= end * c_out
            && taps.len() >= block.len(c_out),
        "weight_grad_rows: sizes"
    );
    // SAFETY: sizes asserted above; the feature is the caller's promise.
    unsafe {
        match vectors {
            1 => weight_rows::<1, 24, 8>(x, dy, taps, rows, c_in, row_step, block),
            2 => weight_rows::<2, 12, 4>(x, dy, taps, rows, c_in, row_step, block),
            _ => weight_rows::<4, 6, 2>(x, dy, taps, rows, c_in, row_step, block),
        }
    }
}

/// The block's taps in tiles of J inputs, the rest (a block split off for another thread) in
/// tiles of JS = J / 3.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_rows<const CB: usize, const J: usize, const JS: usize>(
    x: &[f32],
    dy: &[f32],
    taps: &mut [f32],
    rows: WeightRows,
    c_in: usize,
    row_step: usize,
    block: &TapsBlock,
) {
    let c_out = CB * 16;
    let (first, inputs) = (block.inputs.start, block.inputs.len());
    for (r0, runs) in rows.blocks(row_step) {
        for ky in block.kys.clone() {
            let row_taps = (ky - block.kys.start) * inputs;
            let mut j = 0;
            while j < inputs {
                // SAFETY: offsets of the block's rows from r0 of x (kernel row ky, input
                // first + j) and of dy, and taps row row_taps + j: all inside the bounds
                // `weight_grad_rows` asserted (j < inputs).
                let (xt, dyt, tt) = unsafe {
                    (
                        x.as_ptr().add((r0 + ky * row_step) * c_in + first + j),
                        dy.as_ptr().add(r0 * c_out),
                        taps.as_mut_ptr().add((row_taps + j) * c_out),
                    )
                };
                if j + J <= inputs {
                    // SAFETY: J inputs from first + j lie inside the block (checked just above).
                    unsafe { weight_tile::<CB, J>(xt, dyt, tt, runs, c_in) };
                    j += J;
                } else {
                    // SAFETY: the block's inputs are a multiple of JS (asserted by the caller).
                    unsafe { weight_tile::<CB, JS>(xt, dyt, tt, runs, c_in) };
                    j += JS;
                }
            }
        }
    }
}

/// The rows of one block as the tile walks them, from the block's first row: `count` runs of
/// `len` rows, each run `step` rows after the previous (a contiguous block is a single run).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Runs {
    /// Runs in the block.
    pub(crate) count: usize,
    /// Rows per run.
    pub(crate) len: usize,
    /// Rows from one run's first row to the next's.
    pub(crate) step: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn weight_tile<const CB: usize, const J: usize>(x: *const f32, dy: *const f32, taps: *mut f32, runs: Runs, c_in: usize) {
    let c_out = CB * 16;
    let mut acc = [[_mm512_setzero_ps(); CB]; J];
    // SAFETY (whole function): offsets inside the block `weight_rows` hands over.
    unsafe {
        for (jj, a) in acc.iter_mut().enumerate() {
            for (cb, v) in a.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(taps.add(jj * c_out + cb * 16));
            }
        }
        for y in 0..runs.count {
            for r in y * runs.step..y * runs.step + runs.len {
                let mut d = [_mm512_setzero_ps(); CB];
                for (cb, dv) in d.iter_mut().enumerate() {
                    *dv = _mm512_loadu_ps(dy.add(r * c_out + cb * 16));
                }
                let xr = x.add(r * c_in);
                for (jj, a) in acc.iter_mut().enumerate() {
                    let b = _mm512_set1_ps(*xr.add(jj));
                    for cb in 0..CB {
                        a[cb] = _mm512_fmadd_ps(b, d[cb], a[cb]);
                    }
                }
            }
        }
        for (jj, a) in acc.iter().enumerate() {
            for (cb, v) in a.iter().enumerate() {
                _mm512_storeu_ps(taps.add(jj * c_out + cb * 16), *v);
            }
        }
    }
}
