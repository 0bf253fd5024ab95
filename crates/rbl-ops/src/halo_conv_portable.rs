//! The AVX-512 halo-convolution kernels' sums ([`halo_conv_avx512`](super::halo_conv_avx512))
//! on CPUs without AVX-512, so that a run gives the same bits on any CPU.
//!
//! Each output of the AVX-512 kernels is one chain of fused multiply-adds in a fixed order:
//!
//! - forward: y[r, o] = fma(x[r + 2·row_step, 3·c_in − 1], w[2][3·c_in − 1][o], … fma(x[r, 0],
//!   w[0][0][o], 0)): kernel row 0's 3·c_in inputs, then row 1's, then row 2's;
//! - weight gradient: taps[ky][j][o] continued by fma(x[r + ky·row_step, j], dy[r, o], ·) over
//!   the rows r in order.
//!
//! The `gemm` crate, which the overlapping-rows products used before those kernels, sums the
//! same terms in other groupings (three K = 3·c_in products added for the forward, depth
//! blocks for the weight gradient), so a CPU without AVX-512 on the `gemm` path trained to
//! other numbers than one with it. Here the same chains run as plain Rust: `f32::mul_add` is
//! one correctly rounded fused multiply-add on every CPU (an FMA instruction where the build
//! or [`fma_twin`](super::cpu_common::fma_twin) enables one, the C library's `fmaf`
//! otherwise), and the lanes of a vector are independent outputs, so vectorising the channel
//! loop changes no sum's order. Register tiles of pixels × channels (forward) and inputs ×
//! channels (weight gradient) keep the accumulators in registers for AVX2's 16.

use super::cpu_common::fma_twin;
use super::halo_conv_avx512::{TapsBlock, WeightRows};

/// Output channels per pass: 16 (two AVX2 vectors), so that a tile's 12 accumulators and one
/// kernel input's weights fit AVX2's 16 registers; 32 and 64 channels take two and four passes
/// (passes of 32 streamed twice the weights from L2 per FMA).
const GROUP: usize = 16;

/// [`halo_conv_avx512::conv_rows`](super::halo_conv_avx512::conv_rows)'s values, bit for bit,
/// on one halo image x (h + 2 rows of w + 2 pixels, c_in channels): y[p, :] = Σ_ky Σ_j
/// x[(p − w − 3 + ky·(w + 2))·c_in + j] · taps[ky][j][:] for each interior pixel p, j < 3·c_in,
/// c_out 16, 32 or 64, leaving y's ring for the caller to zero. Each image row's w pixels are
/// tiled on their own, so the two ring columns between rows, which the rows form computes and
/// throws away (11 % of the work at 16 × 16, 20 % at 8 × 8), are skipped.
pub fn conv_image(x: &[f32], taps: &[f32], y: &mut [f32], h: usize, w: usize, c_in: usize, c_out: usize) {
    let pixels = (h + 2) * (w + 2);
    assert!(
        h >= 1 && w >= 1 && x.len() >= pixels * c_in && taps.len() >= 9 * c_in * c_out && y.len() >= pixels * c_out,
        "conv_image: sizes"
    );
    match c_out {
        16 | 32 | 64 => image::<GROUP>(x, taps, y, h, w, c_in, c_out),
        _ => panic!("conv_image: c_out {c_out}"),
    }
}

fma_twin! {
    /// [`conv_image`] in passes of G output channels, each image row in tiles of
    /// [`row_tiles`].
    fn image<const G: usize>(x: &[f32], taps: &[f32], y: &mut [f32], h: usize, w: usize, c_in: usize, c_out: usize) {
        let wp = w + 2;
        // Output row r of the rows form is pixel wp + 1 + r; interior pixel (i, j) is r = i·wp + j.
        let y = &mut y[(wp + 1) * c_out..];
        for group in (0..c_out).step_by(G) {
            for i in 0..h {
                for (j, n) in row_tiles(w) {
                    let r = i * wp + j;
                    match n {
                        6 => tile::<G, 6>(x, taps, y, r, group, c_in, c_out, wp),
                        5 => tile::<G, 5>(x, taps, y, r, group, c_in, c_out, wp),
                        4 => tile::<G, 4>(x, taps, y, r, group, c_in, c_out, wp),
                        3 => tile::<G, 3>(x, taps, y, r, group, c_in, c_out, wp),
                        2 => tile::<G, 2>(x, taps, y, r, group, c_in, c_out, wp),
                        _ => tile::<G, 1>(x, taps, y, r, group, c_in, c_out, wp),
                    }
                }
            }
        }
    }
}

/// An image row of w pixels as (first, count) tiles of at most 6: sixes while at least 10 or
/// exactly 6 are left, then the last 7–9 as two near-halves and fewer than 6 as one, so that
/// no tile has fewer than 3 pixels unless the row has (a tile of 1 or 2 pixels has too few
/// independent sums to hide the FMA latency).
fn row_tiles(w: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let left = w - at;
        let n = match left {
            0 => return None,
            6 | 10.. => 6,
            7..=9 => left - left / 2,
            _ => left,
        };
        at += n;
        Some((at - n, n))
    })
}

/// Rows r0..r0 + P, channels group..group + G of the forward, each output one chain from zero
/// over (ky, j).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<const G: usize, const P: usize>(
    x: &[f32],
    taps: &[f32],
    y: &mut [f32],
    r0: usize,
    group: usize,
    c_in: usize,
    c_out: usize,
    row_step: usize,
) {
    let k = 3 * c_in;
    let mut acc = [[0.0f32; G]; P];
    for ky in 0..3 {
        let xs = &x[(r0 + ky * row_step) * c_in..][..(P - 1) * c_in + k];
        let ws = &taps[ky * k * c_out..][..k * c_out];
        for j in 0..k {
            // A copy, so that the kernel input's weights are loaded once for the P pixels.
            let w: [f32; G] = ws[j * c_out + group..][..G].try_into().expect("G values");
            for (p, a) in acc.iter_mut().enumerate() {
                // SAFETY: p < P and j < k = 3·c_in, so p·c_in + j < (P − 1)·c_in + k = xs.len()
                // (unchecked: the checks were a third of the loop's instructions).
                let b = unsafe { *xs.get_unchecked(p * c_in + j) };
                for c in 0..G {
                    a[c] = b.mul_add(w[c], a[c]);
                }
            }
        }
    }
    for (p, a) in acc.iter().enumerate() {
        y[(r0 + p) * c_out + group..][..G].copy_from_slice(a);
    }
}

/// [`halo_conv_avx512::weight_grad_rows`](super::halo_conv_avx512::weight_grad_rows)'s values,
/// bit for bit: taps[ky − kys.start][j − inputs.start][:] += Σ_r x[(r + ky·row_step)·c_in + j]
/// · dy[r, :] for the taps of `block` over the rows of `rows` in order, each entry one chain of
/// fused multiply-adds continuing from what taps holds; c_out 16, 32 or 64.
#[allow(clippy::too_many_arguments)]
pub fn weight_grad_rows(
    x: &[f32],
    dy: &[f32],
    taps: &mut [f32],
    rows: WeightRows,
    c_in: usize,
    c_out: usize,
    row_step: usize,
    block: &TapsBlock,
) {
    let end = rows.end(row_step);
    assert!(
        end >= 1
            && block.kys.end <= 3
            && block.inputs.end <= 3 * c_in
            && x.len() >= (end - 1 + 2 * row_step) * c_in + 3 * c_in
            && dy.len() >= end * c_out
            && taps.len() >= block.len(c_out),
        "weight_grad_rows: sizes"
    );
    match c_out {
        16 | 32 | 64 => weight_rows::<GROUP, 6>(x, dy, taps, rows, c_in, c_out, row_step, block),
        _ => panic!("weight_grad_rows: c_out {c_out}"),
    }
}

fma_twin! {
    /// [`weight_grad_rows`] in passes of G output channels, J kernel inputs per tile (J·G/8
    /// accumulators: 12), in the AVX-512 kernel's row blocks so that each block's rows of
    /// x and dy stay in cache while the tiles pass over them.
    fn weight_rows<const G: usize, const J: usize>(
        x: &[f32],
        dy: &[f32],
        taps: &mut [f32],
        rows: WeightRows,
        c_in: usize,
        c_out: usize,
        row_step: usize,
        block: &TapsBlock,
    ) {
        let (first, inputs) = (block.inputs.start, block.inputs.len());
        for (r0, runs) in rows.blocks(row_step) {
            for ky in block.kys.clone() {
                let xk = &x[(r0 + ky * row_step) * c_in + first..];
                let dst = &mut taps[(ky - block.kys.start) * inputs * c_out..][..inputs * c_out];
                for group in (0..c_out).step_by(G) {
                    let d = &dy[r0 * c_out + group..];
                    let mut j0 = 0;
                    while j0 + J <= inputs {
                        weight_tile::<G, J>(&xk[j0..], d, &mut dst[j0 * c_out + group..], runs, c_in, c_out);
                        j0 += J;
                    }
                    while j0 < inputs {
                        weight_tile::<G, 1>(&xk[j0..], d, &mut dst[j0 * c_out + group..], runs, c_in, c_out);
                        j0 += 1;
                    }
                }
            }
        }
    }
}

/// J kernel inputs × G channels of the weight gradient over one block's rows, in order; x from
/// the tile's first input, dy and taps from its first channel (rows c_out apart).
#[inline(always)]
fn weight_tile<const G: usize, const J: usize>(
    x: &[f32],
    dy: &[f32],
    taps: &mut [f32],
    runs: super::halo_conv_avx512::Runs,
    c_in: usize,
    c_out: usize,
) {
    let mut acc = [[0.0f32; G]; J];
    for (jj, a) in acc.iter_mut().enumerate() {
        a.copy_from_slice(&taps[jj * c_out..][..G]);
    }
    for run in 0..runs.count {
        for r in run * runs.step..run * runs.step + runs.len {
            let d: &[f32; G] = dy[r * c_out..][..G].try_into().expect("G values");
            let xr = &x[r * c_in..][..J];
            for (a, &b) in acc.iter_mut().zip(xr) {
                for c in 0..G {
                    a[c] = b.mul_add(d[c], a[c]);
                }
            }
        }
    }
    for (jj, a) in acc.iter().enumerate() {
        taps[jj * c_out..][..G].copy_from_slice(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 0.37).collect()
    }

    /// The forward's chains written out one interior output at a time in f32, and the sums
    /// checked against f64: the tile sizes, the passes and every channel width give the same
    /// bits, and the ring is left alone.
    #[test]
    fn conv_image_is_one_fused_chain_per_output_in_kernel_order() {
        for (c_in, c_out, h, w) in [
            (16, 16, 3, 32),
            (32, 32, 2, 16),
            (64, 64, 3, 8),
            (16, 32, 2, 7),
            (8, 16, 2, 9),
            (3, 16, 2, 5),
            (16, 64, 1, 1),
            (4, 16, 2, 28),
            (4, 32, 3, 14),
        ] {
            let (wp, k) = (w + 2, 3 * c_in);
            let x = values((h + 2) * wp * c_in, 1);
            let taps = values(9 * c_in * c_out, 2);
            let mut y = vec![f32::NAN; (h + 2) * wp * c_out];
            conv_image(&x, &taps, &mut y, h, w, c_in, c_out);
            for p in 0..(h + 2) * wp {
                let interior = (1..=h).contains(&(p / wp)) && (1..=w).contains(&(p % wp));
                for o in 0..c_out {
                    if !interior {
                        assert!(y[p * c_out + o].is_nan(), "{c_in}→{c_out} {h}×{w}: ring pixel {p} written");
                        continue;
                    }
                    let (mut chain, mut exact) = (0.0f32, 0.0f64);
                    for ky in 0..3 {
                        for j in 0..k {
                            let (a, b) = (x[(p - wp - 1 + ky * wp) * c_in + j], taps[(ky * k + j) * c_out + o]);
                            chain = a.mul_add(b, chain);
                            exact += a as f64 * b as f64;
                        }
                    }
                    assert_eq!(y[p * c_out + o].to_bits(), chain.to_bits(), "{c_in}→{c_out} {h}×{w} pixel {p} channel {o}");
                    assert!((chain as f64 - exact).abs() < 1e-4, "{chain} vs {exact}");
                }
            }
        }
    }

    /// The tiles cover each row once, in order, none larger than 6 and none under 3 in rows of 3
    /// or more.
    #[test]
    fn row_tiles_cover_the_row() {
        for w in 1..70 {
            let tiles: Vec<(usize, usize)> = row_tiles(w).collect();
            let mut at = 0;
            for &(first, n) in &tiles {
                assert_eq!(first, at, "w {w}: {tiles:?}");
                assert!((1..=6).contains(&n) && (w < 3 || n >= 3), "w {w}: {tiles:?}");
                at += n;
            }
            assert_eq!(at, w, "w {w}: {tiles:?}");
        }
    }

    /// The weight gradient continues each entry's chain over the rows in order (here from a
    /// nonzero start), whether all rows or an image's interior pixels, for a subset of kernel
    /// rows too; the interior form equals the all-rows form where dy's ring is zero.
    #[test]
    fn weight_grad_rows_continues_one_chain_per_entry_over_the_rows() {
        for (c_in, c_out, h, w) in [(8, 16, 5, 6), (16, 32, 3, 4), (4, 64, 2, 3), (3, 16, 20, 20)] {
            let (k, row_step) = (3 * c_in, w + 2);
            let n = (h - 1) * row_step + w;
            let x = values((n - 1 + 2 * row_step) * c_in + k, 3);
            // dy zero on the two ring columns between image rows, as the caller's is.
            let mut dy = values(n * c_out, 4);
            for r in 0..n {
                if r % row_step >= w {
                    dy[r * c_out..][..c_out].fill(0.0);
                }
            }
            let start = values(9 * c_in * c_out, 5);
            for block in [TapsBlock::all(c_in), TapsBlock { kys: 1..2, inputs: 0..k }, TapsBlock { kys: 0..2, inputs: 1..k - 2 }] {
                let (kys, inputs) = (block.kys.clone(), block.inputs.clone());
                let len = block.len(c_out);
                let mut all = start[..len].to_vec();
                weight_grad_rows(&x, &dy, &mut all, WeightRows::All(n), c_in, c_out, row_step, &block);
                let mut interior = start[..len].to_vec();
                weight_grad_rows(&x, &dy, &mut interior, WeightRows::Interior { h, w }, c_in, c_out, row_step, &block);
                assert_eq!(bits(&all), bits(&interior), "{c_in}→{c_out} {h}×{w}");
                for (ky, j, o) in kys.clone().flat_map(|ky| inputs.clone().flat_map(move |j| (0..c_out).map(move |o| (ky, j, o)))) {
                    let at = ((ky - kys.start) * inputs.len() + j - inputs.start) * c_out + o;
                    let mut chain = start[at];
                    for r in 0..n {
                        chain = x[(r + ky * row_step) * c_in + j].mul_add(dy[r * c_out + o], chain);
                    }
                    assert_eq!(all[at].to_bits(), chain.to_bits(), "{c_in}→{c_out} entry {ky} {j} {o}");
                }
            }
        }
    }

    /// On a CPU with AVX-512 the two builds meet: the portable sums are the AVX-512 kernels'
    /// bits (elsewhere the test has nothing to compare and the chains above stand alone).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_avx512_kernels_give_the_same_bits() {
        if !crate::halo_conv_avx512::available() {
            return;
        }
        for (c_in, c_out, h, w) in [(16, 16, 5, 8), (8, 32, 3, 8), (16, 64, 2, 6)] {
            let (row_step, m) = (w + 2, (h - 1) * (w + 2) + w);
            let x = values((h + 2) * row_step * c_in, 6);
            let taps = values(9 * c_in * c_out, 7);
            let (mut a, mut b) = (vec![0.0f32; (h + 2) * row_step * c_out], vec![0.0f32; (h + 2) * row_step * c_out]);
            conv_image(&x, &taps, &mut a, h, w, c_in, c_out);
            // SAFETY: the feature is detected; x holds the image, y from pixel w + 3 m rows.
            unsafe {
                crate::halo_conv_avx512::conv_rows(&x, &taps, &mut b[(row_step + 1) * c_out..][..m * c_out], m, c_in, c_out, row_step)
            };
            for p in 0..(h + 2) * row_step {
                if (1..=h).contains(&(p / row_step)) && (1..=w).contains(&(p % row_step)) {
                    assert_eq!(bits(&a[p * c_out..][..c_out]), bits(&b[p * c_out..][..c_out]), "forward {c_in}→{c_out} pixel {p}");
                }
            }
            let dy = values(m * c_out, 8);
            // Every tap, and a block of one kernel row's inputs split off for another thread
            // (whole tiles, then the smaller ones).
            let split = TapsBlock { kys: 1..2, inputs: crate::halo_conv_avx512::weight_block_inputs(c_out / 16)..3 * c_in };
            for block in [TapsBlock::all(c_in), split] {
                let len = block.len(c_out);
                let (mut ta, mut tb) = (values(len, 9), values(len, 9));
                weight_grad_rows(&x, &dy, &mut ta, WeightRows::All(m), c_in, c_out, row_step, &block);
                // SAFETY: as above.
                unsafe { crate::halo_conv_avx512::weight_grad_rows(&x, &dy, &mut tb, WeightRows::All(m), c_in, c_out, row_step, &block) };
                assert_eq!(bits(&ta), bits(&tb), "weight gradient {c_in}→{c_out} {block:?}");
            }
        }
    }
}
