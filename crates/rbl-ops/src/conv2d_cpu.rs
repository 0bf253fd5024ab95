//! 2-D convolution on the CPU as per-image im2col + GEMM, forward and both backward passes.
//!
//! burn's flex backend runs a 2-D convolution through its 3-D path (an NHWC copy, then im2col in
//! tiles) and computes the weight gradient as a convolution of the input by the output gradient
//! — a kernel the size of the feature map, which turns into a tall, 9-column GEMM. The CIFAR
//! ResNet spends most of its step there. Here every pass is one GEMM per image on NCHW data:
//!
//! - forward:      Y_b[co, p]  = W[co, k] · col(X_b)[k, p]
//! - input grad:   dX_b        = col2im(Wᵀ[k, co] · dY_b[co, p])
//! - weight grad:  dW[co, k]   = Σ_b dY_b[co, p] · col(X_b)ᵀ[p, k]
//!
//! with k = (c_in, ky, kx) and p = (oy, ox). Images are split over the rayon pool; each worker
//! owns one column buffer (and, for the weight gradient, one partial sum).

use rayon::prelude::*;

use super::cpu_common::{WEIGHT_GRAD_TASK_IMAGES, gemm_f32, images_per_task};

/// The geometry of one convolution (groups 1, dilation 1, the same padding on every side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding (every side).
    pub pad: usize,
}

impl ConvGeometry {
    /// Output height.
    pub fn oh(&self) -> usize {
        (self.h + 2 * self.pad - self.kh) / self.stride + 1
    }
    /// Output width.
    pub fn ow(&self) -> usize {
        (self.w + 2 * self.pad - self.kw) / self.stride + 1
    }
    /// Rows of the column matrix: c_in · kh · kw.
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
    /// Output pixels per channel.
    fn p(&self) -> usize {
        self.oh() * self.ow()
    }
    fn x_len(&self) -> usize {
        self.c_in * self.h * self.w
    }
    fn y_len(&self) -> usize {
        self.c_out * self.p()
    }
    /// The [valid start, valid end) of output coordinates whose input coordinate
    /// o·stride + offset − pad lies inside 0..extent.
    fn valid(&self, offset: usize, extent: usize, out: usize) -> (usize, usize) {
        let s = self.stride as isize;
        let shift = offset as isize - self.pad as isize;
        let lo = if shift >= 0 { 0 } else { ((-shift) + s - 1) / s };
        let hi = ((extent as isize - shift) + s - 1) / s;
        (lo.max(0) as usize, (hi.max(0) as usize).min(out).max(lo.max(0) as usize))
    }
}

/// Column matrix of one image: col[(c, ky, kx), (oy, ox)] = x[c, oy·s + ky − pad, ox·s + kx − pad].
fn im2col(x: &[f32], g: &ConvGeometry, col: &mut [f32]) {
    let (oh, ow, p) = (g.oh(), g.ow(), g.p());
    for c in 0..g.c_in {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let (y0, y1) = g.valid(ky, g.h, oh);
            for kx in 0..g.kw {
                let (x0, x1) = g.valid(kx, g.w, ow);
                let row = &mut col[((c * g.kh + ky) * g.kw + kx) * p..][..p];
                row[..y0 * ow].fill(0.0);
                row[y1 * ow..].fill(0.0);
                if g.stride == 1 && ow == g.w && y1 > y0 {
                    // A same-size convolution: this tap's rows y0..y1 are the input rows shifted
                    // by kx − pad columns, so one block copy does them all; the values that
                    // wrapped around from the neighbouring row are then zeroed (the padding).
                    let shift = kx as isize - g.pad as isize;
                    let (dst0, src0) = ((y0 * ow) as isize, ((y0 + ky - g.pad) * g.w) as isize);
                    let len = ((y1 - y0) * ow) as isize - shift.abs();
                    let (d, s) = if shift < 0 { (dst0 - shift, src0) } else { (dst0, src0 + shift) };
                    row[d as usize..(d + len) as usize].copy_from_slice(&plane[s as usize..(s + len) as usize]);
                    for oy in y0..y1 {
                        let out = &mut row[oy * ow..(oy + 1) * ow];
                        out[..x0].fill(0.0);
                        out[x1..].fill(0.0);
                    }
                    continue;
                }
                for oy in y0..y1 {
                    let iy = oy * g.stride + ky - g.pad;
                    let out = &mut row[oy * ow..(oy + 1) * ow];
                    out[..x0].fill(0.0);
                    out[x1..].fill(0.0);
                    let src = &plane[iy * g.w..(iy + 1) * g.w];
                    if g.stride == 1 {
                        let ix0 = x0 + kx - g.pad;
                        out[x0..x1].copy_from_slice(&src[ix0..ix0 + (x1 - x0)]);
                    } else {
                        for ox in x0..x1 {
                            out[ox] = src[ox * g.stride + kx - g.pad];
                        }
                    }
                }
            }
        }
    }
}

/// Adds a column-matrix gradient back onto the image it came from (the adjoint of [`im2col`]).
fn col2im_add(col: &[f32], g: &ConvGeometry, x: &mut [f32]) {
    let (oh, ow, p) = (g.oh(), g.ow(), g.p());
    for c in 0..g.c_in {
        let plane = &mut x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..g.kh {
            let (y0, y1) = g.valid(ky, g.h, oh);
            for kx in 0..g.kw {
                let (x0, x1) = g.valid(kx, g.w, ow);
                let row = &col[((c * g.kh + ky) * g.kw + kx) * p..][..p];
                for oy in y0..y1 {
                    let iy = oy * g.stride + ky - g.pad;
                    let src = &row[oy * ow..(oy + 1) * ow];
                    let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                    if g.stride == 1 {
                        let ix0 = x0 + kx - g.pad;
                        for (d, s) in dst[ix0..ix0 + (x1 - x0)].iter_mut().zip(&src[x0..x1]) {
                            *d += s;
                        }
                    } else {
                        for ox in x0..x1 {
                            dst[ox * g.stride + kx - g.pad] += src[ox];
                        }
                    }
                }
            }
        }
    }
}

/// Images per rayon task of the forward and input-gradient passes: two tasks per worker, few
/// enough that the (large, for ImageNet-sized inputs) column buffers are reused.
fn chunk(batch: usize) -> usize {
    images_per_task(batch, 2)
}

/// Forward pass: y[b, co, oy, ox] for x [b, c_in, h, w] and weight [c_out, c_in, kh, kw].
pub fn conv2d_forward(x: &[f32], weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    assert_eq!(x.len(), g.batch * g.x_len(), "conv2d: input size");
    assert_eq!(weight.len(), g.c_out * k, "conv2d: weight size");
    let mut y = vec![0.0f32; g.batch * g.y_len()];
    let per = chunk(g.batch);
    y.par_chunks_mut(per * g.y_len()).zip(x.par_chunks(per * g.x_len())).for_each_init(
        || vec![0.0f32; k * p],
        |col, (ys, xs)| {
            for (yb, xb) in ys.chunks_mut(g.y_len()).zip(xs.chunks(g.x_len())) {
                im2col(xb, g, col);
                gemm_f32(g.c_out, p, k, yb, false, (weight, 1, k as isize), (col, 1, p as isize));
            }
        },
    );
    y
}

/// Input gradient: dx [b, c_in, h, w] from dy [b, c_out, oh, ow].
///
/// At stride 1 (square kernel) this is itself a forward convolution: dy, padded by
/// k − 1 − pad, convolved with the weight flipped in space and with its channel axes swapped.
/// That avoids the column-matrix round trip (a K = c_out GEMM writing c_in·k² rows, then a
/// scatter-add), which is memory-bound for narrow layers.
pub fn conv2d_input_grad(dy: &[f32], weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    assert_eq!(dy.len(), g.batch * g.y_len(), "conv2d backward: output-gradient size");
    if g.stride == 1 && g.kh == g.kw && g.pad < g.kh {
        let flipped = flip_transpose(weight, g);
        let t = ConvGeometry {
            batch: g.batch,
            c_in: g.c_out,
            h: g.oh(),
            w: g.ow(),
            c_out: g.c_in,
            kh: g.kh,
            kw: g.kw,
            stride: 1,
            pad: g.kh - 1 - g.pad,
        };
        return conv2d_forward(dy, &flipped, &t);
    }
    conv2d_input_grad_col2im(dy, weight, g)
}

/// W'[ci, co, ky, kx] = W[co, ci, kh − 1 − ky, kw − 1 − kx].
fn flip_transpose(weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (kh, kw) = (g.kh, g.kw);
    let mut out = vec![0.0f32; weight.len()];
    for co in 0..g.c_out {
        for ci in 0..g.c_in {
            for ky in 0..kh {
                for kx in 0..kw {
                    out[((ci * g.c_out + co) * kh + ky) * kw + kx] = weight[((co * g.c_in + ci) * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)];
                }
            }
        }
    }
    out
}

/// Input gradient through the column matrix: any stride.
fn conv2d_input_grad_col2im(dy: &[f32], weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    let mut dx = vec![0.0f32; g.batch * g.x_len()];
    let per = chunk(g.batch);
    dx.par_chunks_mut(per * g.x_len()).zip(dy.par_chunks(per * g.y_len())).for_each_init(
        || vec![0.0f32; k * p],
        |col, (dxs, dys)| {
            for (dxb, dyb) in dxs.chunks_mut(g.x_len()).zip(dys.chunks(g.y_len())) {
                // dcol[k×p] = Wᵀ[k×c_out] · dy_b[c_out×p]
                gemm_f32(k, p, g.c_out, col, false, (weight, k as isize, 1), (dyb, 1, p as isize));
                col2im_add(col, g, dxb);
            }
        },
    );
    dx
}

/// Images whose pixels one weight-gradient GEMM sums over at once (pixel-major operands of
/// consecutive images are contiguous, so a group is one product with a longer sum).
const WG_IMAGES: usize = 8;

/// Weight gradient: dW [c_out, c_in, kh, kw] from x and dy.
///
/// The sum runs over output pixels, which are the contiguous axis of both im2col's rows and
/// dy's channels; a GEMM packs such operands with strided reads, and that, not the arithmetic,
/// was the cost (16 × 144 outputs from 1,024 pixels per image in the first stage). So each
/// image's operands are built pixel-major (col [pix, (ky, kx, c)] from the image in (h, w, c)
/// order, dy [pix, c_out]), the layout GEMM packs fastest, and consecutive images' pixels sit
/// side by side in one product.
pub fn conv2d_weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    assert_eq!(x.len(), g.batch * g.x_len(), "conv2d backward: input size");
    assert_eq!(dy.len(), g.batch * g.y_len(), "conv2d backward: output-gradient size");
    let per = WEIGHT_GRAD_TASK_IMAGES;
    let partials: Vec<Vec<f32>> = x
        .par_chunks(per * g.x_len())
        .zip(dy.par_chunks(per * g.y_len()))
        .map(|(xs, dys)| {
            let images = xs.len() / g.x_len();
            let group = WG_IMAGES.min(images);
            let mut x_hwc = vec![0.0f32; g.x_len()];
            let mut col_t = vec![0.0f32; group * p * k];
            let mut dy_t = vec![0.0f32; group * p * g.c_out];
            // Accumulated in (ky, kx, c) order, the order of a pixel-major column row.
            let mut dw_hwc = vec![0.0f32; g.c_out * k];
            for (n, (xg, dyg)) in xs.chunks(group * g.x_len()).zip(dys.chunks(group * g.y_len())).enumerate() {
                let m = xg.len() / g.x_len();
                for (i, (xb, dyb)) in xg.chunks(g.x_len()).zip(dyg.chunks(g.y_len())).enumerate() {
                    transpose(xb, g.c_in, g.h * g.w, &mut x_hwc);
                    im2col_pixel_major(&x_hwc, g, &mut col_t[i * p * k..][..p * k]);
                    transpose(dyb, g.c_out, p, &mut dy_t[i * p * g.c_out..][..p * g.c_out]);
                }
                // dW[c_out×k] += dy_tᵀ[c_out×mp] · col_t[mp×k], the m images' pixels side by side.
                gemm_f32(g.c_out, k, m * p, &mut dw_hwc, n > 0, (&dy_t, g.c_out as isize, 1), (&col_t, 1, k as isize));
            }
            dw_hwc
        })
        .collect();
    let mut dw_hwc = vec![0.0f32; g.c_out * k];
    for part in partials {
        for (d, s) in dw_hwc.iter_mut().zip(part) {
            *d += s;
        }
    }
    // (ky, kx, c) → (c, ky, kx) within each output channel.
    let taps = g.kh * g.kw;
    let mut dw = vec![0.0f32; g.c_out * k];
    for co in 0..g.c_out {
        transpose(&dw_hwc[co * k..][..k], taps, g.c_in, &mut dw[co * k..][..k]);
    }
    dw
}

/// Column matrix of one image in pixel-major order, from the image in (h, w, c) order:
/// col_t[(oy, ox), (ky, kx, c)] = x[oy·s + ky − pad, ox·s + kx − pad, c]; each tap copies one
/// contiguous run of c_in values.
fn im2col_pixel_major(x_hwc: &[f32], g: &ConvGeometry, col_t: &mut [f32]) {
    let (oh, ow, c, k) = (g.oh(), g.ow(), g.c_in, g.k());
    for oy in 0..oh {
        for ox in 0..ow {
            let row = &mut col_t[(oy * ow + ox) * k..][..k];
            for ky in 0..g.kh {
                let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                for kx in 0..g.kw {
                    let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                    let dst = &mut row[(ky * g.kw + kx) * c..][..c];
                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                        dst.fill(0.0);
                    } else {
                        dst.copy_from_slice(&x_hwc[(iy as usize * g.w + ix as usize) * c..][..c]);
                    }
                }
            }
        }
    }
}

/// out[c, r] = a[r, c] for a rows × cols, in cache-sized tiles.
fn transpose(a: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    const T: usize = 32;
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    out[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits;

    #[test]
    fn hand_computed_3x3_with_padding() {
        // x = 1..9 on a 3×3 grid, an all-ones 3×3 kernel, padding 1: each output is the sum of
        // its 3×3 neighbourhood.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let g = ConvGeometry { batch: 1, c_in: 1, h: 3, w: 3, c_out: 1, kh: 3, kw: 3, stride: 1, pad: 1 };
        let y = conv2d_forward(&x, &[1.0; 9], &g);
        assert_eq!(y, vec![12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0]);
        // Stride 2 keeps the corners.
        let g2 = ConvGeometry { stride: 2, ..g };
        assert_eq!((g2.oh(), g2.ow()), (2, 2));
        assert_eq!(conv2d_forward(&x, &[1.0; 9], &g2), vec![12.0, 16.0, 24.0, 28.0]);
        // dL/dx for L = Σ y: how many outputs see each pixel (4 at corners, 6 on edges, 9 centre).
        let dx = conv2d_input_grad(&[1.0; 9], &[1.0; 9], &g);
        assert_eq!(dx, vec![4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0]);
        // dL/dw[ky, kx] for L = Σ y: the sum of the pixels that kernel tap touches.
        let dw = conv2d_weight_grad(&x, &[1.0; 9], &g);
        assert_eq!(dw, vec![12.0, 21.0, 16.0, 27.0, 45.0, 33.0, 24.0, 39.0, 28.0]);
    }

    #[test]
    fn every_pass_is_bitwise_the_same_on_any_number_of_threads() {
        let g = ConvGeometry { batch: 70, c_in: 5, h: 9, w: 9, c_out: 6, kh: 3, kw: 3, stride: 1, pad: 1 };
        let values =
            |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| (((i * 7919 + seed) % 2003) as f32 / 1001.0 - 1.0) * 0.37).collect() };
        let (x, w) = (values(g.batch * g.x_len(), 1), values(g.c_out * g.k(), 2));
        let dy = values(g.batch * g.y_len(), 3);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| (conv2d_forward(&x, &w, &g), conv2d_input_grad(&dy, &w, &g), conv2d_weight_grad(&x, &dy, &g)))
        };
        let (y1, dx1, dw1) = on(1);
        for threads in [2, 3, 5] {
            let (y, dx, dw) = on(threads);
            assert_eq!((bits(&y), bits(&dx), bits(&dw)), (bits(&y1), bits(&dx1), bits(&dw1)), "{threads} threads");
        }
    }
}
