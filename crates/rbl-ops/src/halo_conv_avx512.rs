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

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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

/// Weight-gradient tile: J kernel inputs × CB vectors of output channels, for each c_out.
pub fn weight_tile_inputs(vectors: usize) -> usize {
    tile_pixels(vectors)
}

/// Rows per block of the weight gradient's sum: the block's rows of x and dy stay in the L1/L2
/// cache while every tile of the kernel passes over them.
const WEIGHT_ROW_BLOCK: usize = 256;

/// taps[ky][j][:] = Σ_r x[(r + ky·row_step)·c_in + j] · dy[r, :] for j < 3·c_in and r < rows,
/// overwriting taps; c_out = 16·vectors (1, 2 or 4) and 3·c_in a multiple of
/// [`weight_tile_inputs`]. The sum over r runs in order (blocks carry their partial sums), so
/// the result does not depend on the blocking.
///
/// # Safety
/// `available()` must hold; x must hold (rows − 1 + 2·row_step)·c_in + 3·c_in values, dy
/// rows·c_out, taps 9·c_in·c_out.
#[cfg(target_arch = "x86_64")]
pub unsafe fn weight_grad_rows(x: &[f32], dy: &[f32], taps: &mut [f32], rows: usize, c_in: usize, c_out: usize, row_step: usize) {
    let vectors = c_out / 16;
    assert!(c_out.is_multiple_of(16) && matches!(vectors, 1 | 2 | 4), "weight_grad_rows: c_out {c_out}");
    assert!((3 * c_in).is_multiple_of(weight_tile_inputs(vectors)), "weight_grad_rows: c_in {c_in}");
    assert!(
        rows >= 1 && x.len() >= (rows - 1 + 2 * row_step) * c_in + 3 * c_in && dy.len() >= rows * c_out && taps.len() >= 9 * c_in * c_out,
        "weight_grad_rows: sizes"
    );
    taps[..9 * c_in * c_out].fill(0.0);
    // SAFETY: sizes asserted above; the feature is the caller's promise.
    unsafe {
        match vectors {
            1 => weight_rows::<1, 24>(x, dy, taps, rows, c_in, row_step),
            2 => weight_rows::<2, 12>(x, dy, taps, rows, c_in, row_step),
            _ => weight_rows::<4, 6>(x, dy, taps, rows, c_in, row_step),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_rows<const CB: usize, const J: usize>(x: &[f32], dy: &[f32], taps: &mut [f32], rows: usize, c_in: usize, row_step: usize) {
    let (c_out, k) = (CB * 16, 3 * c_in);
    for r0 in (0..rows).step_by(WEIGHT_ROW_BLOCK) {
        let n = WEIGHT_ROW_BLOCK.min(rows - r0);
        for ky in 0..3 {
            for j0 in (0..k).step_by(J) {
                // SAFETY: rows r0..r0 + n of x (from kernel row ky, inputs j0..j0 + J) and of
                // dy, and taps rows ky·k + j0.., all inside the bounds `weight_grad_rows`
                // asserted.
                unsafe {
                    weight_tile::<CB, J>(
                        x.as_ptr().add((r0 + ky * row_step) * c_in + j0),
                        dy.as_ptr().add(r0 * c_out),
                        taps.as_mut_ptr().add((ky * k + j0) * c_out),
                        n,
                        c_in,
                    )
                };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn weight_tile<const CB: usize, const J: usize>(x: *const f32, dy: *const f32, taps: *mut f32, n: usize, c_in: usize) {
    let c_out = CB * 16;
    let mut acc = [[_mm512_setzero_ps(); CB]; J];
    // SAFETY (whole function): offsets inside the block `weight_rows` hands over.
    unsafe {
        for (jj, a) in acc.iter_mut().enumerate() {
            for (cb, v) in a.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(taps.add(jj * c_out + cb * 16));
            }
        }
        for r in 0..n {
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
        for (jj, a) in acc.iter().enumerate() {
            for (cb, v) in a.iter().enumerate() {
                _mm512_storeu_ps(taps.add(jj * c_out + cb * 16), *v);
            }
        }
    }
}
