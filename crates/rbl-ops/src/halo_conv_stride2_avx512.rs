//! The stride-2 convolution's two backward passes written for AVX-512, giving the bits of the
//! column path (im2col + the `gemm` crate + col2im) they replace.
//!
//! With c_in, c_out the convolution's channels, k = 9·c_in and q an output pixel:
//!
//! - input gradient: dcol[q, kk] = Σ_co dy[q, co] · taps[kk, co], then each dcol row added onto
//!   the input pixels its kernel covers (col2im). `gemm` sums each dcol entry as one chain of
//!   fused multiply-adds from zero over co (K = c_out ≤ 64, one depth block); [`columns_of_row`]
//!   computes the same chains for one output row at a time, into a column buffer that stays in
//!   the L1 cache, and the caller adds them in col2im's order.
//! - weight gradient: taps[kk, co] += Σ_q col[q, kk] · dy[q, co] per image, one chain from zero
//!   over the image's output pixels in order (K = the GEMM's rows, at most
//!   [`WEIGHT_MAX_ROWS`]: one depth block), then added onto what taps holds (`gemm` with its
//!   destination read). [`weight_grad_image`] forms the same chains reading the input where it
//!   lies, every other pixel, without a column matrix; the ring's positions it skips are rows
//!   where both the column and dy are zero, and a chain from +0 never becomes −0, so skipping
//!   them changes no bit.
//!
//! The column path ran these two passes at 40–52 % of the FMA peak (packing, and a column
//! matrix written and read back per image); both are tested bit for bit against it.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output vectors (of 16 column entries) per tile of [`columns_of_row`]: 3 × P pixels of
/// accumulators plus 3 weight vectors and a broadcast within the 32 registers; k = 9·c_in is
/// 9 or 18 vectors for 16 or 32 input channels.
const COLUMN_VECTORS: usize = 3;

/// The largest GEMM depth (output rows per image, ring columns included) for which the weight
/// gradient replaces the column path: `gemm` sums up to here in one depth block (measured up
/// to K = 504 on a 48 KiB-L1 CPU; the stride-2 forward relies on K = 288 on every CPU rbl has
/// run on), so one chain per image gives its bits. The ResNets' stride-2 layers have 61–286.
pub const WEIGHT_MAX_ROWS: usize = 288;

/// Pixels per tile of [`columns_of_row`] for a row of `pixels`: 8 or 7 where it divides the
/// row (each weight vector loaded serves P pixels), else 4 with the last tile moved back.
fn column_tile_pixels(pixels: usize) -> usize {
    if pixels.is_multiple_of(8) {
        8
    } else if pixels.is_multiple_of(7) {
        7
    } else {
        4
    }
}

/// Whether [`columns_of_row`] takes rows of `pixels` output pixels and k = 9·c_in columns.
pub fn columns_fit(pixels: usize, c_in: usize) -> bool {
    (9 * c_in).is_multiple_of(16 * COLUMN_VECTORS) && pixels >= column_tile_pixels(pixels)
}

/// col[p, kk] = Σ_co dy[p, co] · taps_t[co, kk] for p < pixels and kk < k, each a chain of
/// fused multiply-adds from zero over co in order: the column matrix's rows of the input
/// gradient for `pixels` consecutive output pixels, with `taps_t` the taps transposed to
/// `[c_out][k]`.
///
/// # Safety
/// `available()` ([`super::halo_conv_avx512::available`]) must hold, and
/// [`columns_fit`]`(pixels, k / 9)`; dy must hold pixels·c_out values, taps_t c_out·k, col
/// pixels·k.
#[cfg(target_arch = "x86_64")]
pub unsafe fn columns_of_row(dy: &[f32], taps_t: &[f32], col: &mut [f32], pixels: usize, c_out: usize, k: usize) {
    assert!(k.is_multiple_of(9) && columns_fit(pixels, k / 9), "columns_of_row: {pixels} pixels, k {k}");
    assert!(dy.len() >= pixels * c_out && taps_t.len() >= c_out * k && col.len() >= pixels * k, "columns_of_row: sizes");
    // SAFETY: sizes asserted above; the feature is the caller's promise.
    unsafe {
        match column_tile_pixels(pixels) {
            8 => columns::<8>(dy, taps_t, col, pixels, c_out, k),
            7 => columns::<7>(dy, taps_t, col, pixels, c_out, k),
            _ => columns::<4>(dy, taps_t, col, pixels, c_out, k),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn columns<const P: usize>(dy: &[f32], taps_t: &[f32], col: &mut [f32], pixels: usize, c_out: usize, k: usize) {
    const V: usize = COLUMN_VECTORS;
    for kk0 in (0..k).step_by(16 * V) {
        let mut p0 = 0;
        loop {
            // The last tile moves back to end at the row's end; the columns it recomputes come
            // out the same.
            let first = p0.min(pixels - P);
            let mut acc = [[_mm512_setzero_ps(); V]; P];
            // SAFETY (whole block): pixels first..first + P < pixels of dy and col, columns
            // kk0..kk0 + 16·V ≤ k of taps_t and col, inside the sizes the caller asserted.
            unsafe {
                let d = dy.as_ptr().add(first * c_out);
                for co in 0..c_out {
                    let mut w = [_mm512_setzero_ps(); V];
                    for (v, wv) in w.iter_mut().enumerate() {
                        *wv = _mm512_loadu_ps(taps_t.as_ptr().add(co * k + kk0 + 16 * v));
                    }
                    for (p, a) in acc.iter_mut().enumerate() {
                        let b = _mm512_set1_ps(*d.add(p * c_out + co));
                        for v in 0..V {
                            a[v] = _mm512_fmadd_ps(b, w[v], a[v]);
                        }
                    }
                }
                for (p, a) in acc.iter().enumerate() {
                    for (v, av) in a.iter().enumerate() {
                        _mm512_storeu_ps(col.as_mut_ptr().add((first + p) * k + kk0 + 16 * v), *av);
                    }
                }
            }
            if first + P >= pixels {
                break;
            }
            p0 += P;
        }
    }
}

/// Whether [`weight_grad_image`] takes a stride-2 convolution of an h_in × w_in input with
/// these channels: c_out 16, 32 or 64, 3·c_in a whole number of the tile's kernel inputs, and
/// the column path's GEMM depth within [`WEIGHT_MAX_ROWS`].
pub fn weight_fits(h_in: usize, w_in: usize, c_in: usize, c_out: usize) -> bool {
    let (h, w) = ((h_in - 1) / 2 + 1, (w_in - 1) / 2 + 1);
    let rows = h * (w + 2) - 2;
    matches!(c_out, 16 | 32 | 64)
        && c_in > 0
        && (3 * c_in).is_multiple_of(super::halo_conv_avx512::weight_tile_inputs(c_out / 16))
        && rows <= WEIGHT_MAX_ROWS
}

/// taps[ky][kx·c_in + c][:] += Σ_(i, j) x[2i + ky][2j + kx][c] · dy[i][j][:] over the output's
/// interior pixels (i, j) in order, the sum formed from zero and then added onto taps: one
/// image's share of the stride-2 weight gradient, as the column path adds it. x is one halo
/// input image (h_in × w_in interior), dy the halo output image (its ring is not read), taps
/// `[ky][kx][c_in][c_out]`.
///
/// # Safety
/// `available()` ([`super::halo_conv_avx512::available`]) must hold and
/// [`weight_fits`]`(h_in, w_in, c_in, c_out)`.
#[cfg(target_arch = "x86_64")]
pub unsafe fn weight_grad_image(x: &[f32], dy: &[f32], taps: &mut [f32], h_in: usize, w_in: usize, c_in: usize, c_out: usize) {
    assert!(weight_fits(h_in, w_in, c_in, c_out), "weight_grad_image: {h_in}×{w_in}, {c_in}→{c_out}");
    let (h, w) = ((h_in - 1) / 2 + 1, (w_in - 1) / 2 + 1);
    assert!(
        x.len() >= (h_in + 2) * (w_in + 2) * c_in && dy.len() >= (h + 2) * (w + 2) * c_out && taps.len() >= 9 * c_in * c_out,
        "weight_grad_image: sizes"
    );
    let s = Stride2 { h, w, wp_in: w_in + 2, wp_out: w + 2, c_in };
    // SAFETY: sizes and fit asserted above; the feature is the caller's promise.
    unsafe {
        match c_out / 16 {
            1 => weight_image::<1, 24>(x, dy, taps, s),
            2 => weight_image::<2, 12>(x, dy, taps, s),
            _ => weight_image::<4, 6>(x, dy, taps, s),
        }
    }
}

/// The output's interior (h × w), the padded row widths, and the input channels.
#[derive(Debug, Clone, Copy)]
struct Stride2 {
    h: usize,
    w: usize,
    wp_in: usize,
    wp_out: usize,
    c_in: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_image<const CB: usize, const J: usize>(x: &[f32], dy: &[f32], taps: &mut [f32], s: Stride2) {
    let Stride2 { h, w, wp_in, wp_out, c_in } = s;
    let (c_out, k) = (CB * 16, 3 * c_in);
    debug_assert_eq!(J, super::halo_conv_avx512::weight_tile_inputs(CB));
    for ky in 0..3 {
        for j0 in (0..k).step_by(J) {
            let mut acc = [[_mm512_setzero_ps(); CB]; J];
            // SAFETY (whole block): output pixel (i, j) reads dy's interior pixel (i + 1, j + 1)
            // and x's padded pixels 2j..2j + 3 of row 2i + ky, values j0..j0 + J < 3·c_in from
            // the first: inside the images `weight_grad_image` asserted; taps rows
            // ky·k + j0.. < 9·c_in.
            unsafe {
                for i in 0..h {
                    let xr = x.as_ptr().add(((2 * i + ky) * wp_in) * c_in + j0);
                    let dr = dy.as_ptr().add(((i + 1) * wp_out + 1) * c_out);
                    for j in 0..w {
                        let mut d = [_mm512_setzero_ps(); CB];
                        for (cb, dv) in d.iter_mut().enumerate() {
                            *dv = _mm512_loadu_ps(dr.add(j * c_out + cb * 16));
                        }
                        let xp = xr.add(2 * j * c_in);
                        for (jj, a) in acc.iter_mut().enumerate() {
                            let b = _mm512_set1_ps(*xp.add(jj));
                            for cb in 0..CB {
                                a[cb] = _mm512_fmadd_ps(b, d[cb], a[cb]);
                            }
                        }
                    }
                }
                let t = taps.as_mut_ptr().add((ky * k + j0) * c_out);
                for (jj, a) in acc.iter().enumerate() {
                    for (cb, v) in a.iter().enumerate() {
                        let at = t.add(jj * c_out + cb * 16);
                        _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), *v));
                    }
                }
            }
        }
    }
}
