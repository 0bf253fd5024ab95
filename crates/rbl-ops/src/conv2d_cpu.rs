//! 2-D convolution on the CPU as per-image im2col + GEMM, forward and both backward passes, on
//! NCHW data, in channel groups: the layers of the 224-px ImageNet nets (the CIFAR ResNet runs
//! the halo kernels instead, `halo_conv_cpu`).
//!
//! burn's flex backend runs a 2-D convolution through its 3-D path (an NHWC copy, then im2col in
//! tiles) and computes the weight gradient as a convolution of the input by the output gradient
//! — a kernel the size of the feature map, which turns into a tall, 9-column GEMM. Here every
//! pass is one GEMM per image and channel group:
//!
//! - forward:      Y_b[co, p]  = W[co, k] · col(X_b)[k, p]   (a 1×1 convolution's col is X_b)
//! - input grad:   dX_b        = col2im(Wᵀ[k, co] · dY_b[co, p]), or at stride 1 the forward
//!   convolution of dY_b by the flipped, transposed kernel
//! - weight grad:  dW[co, k]   = Σ_b dY_b[co, p] · col(X_b)ᵀ[p, k]
//!
//! with k = (c_in, ky, kx) and p = (oy, ox). The forward and input-gradient passes split the
//! images over the rayon pool, each worker owning one column buffer; the weight gradient splits
//! into fixed (image group × input-channel block) tasks whose partial sums are added in order.
//! No split changes the arithmetic: every pass is bitwise the same on any number of threads
//! (tested).

use rayon::prelude::*;

use super::cpu_common::{gemm_f32, images_per_task, uninit_f32};

/// The geometry of one convolution (dilation 1, the same padding on every side).
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
    /// Channel groups (1: an ordinary convolution; 32 in ResNeXt's 3×3 layers): output
    /// channel group i sees input channel group i only. Divides c_in and c_out.
    pub groups: usize,
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
    /// Input channels per group.
    fn ci_g(&self) -> usize {
        self.c_in / self.groups
    }
    /// Output channels per group.
    fn co_g(&self) -> usize {
        self.c_out / self.groups
    }
    /// Column-matrix rows of one group, and the length of one output channel's weights:
    /// (c_in / groups) · kh · kw.
    fn k_g(&self) -> usize {
        self.ci_g() * self.kh * self.kw
    }
    fn check(&self) {
        assert!(
            self.groups > 0 && self.c_in.is_multiple_of(self.groups) && self.c_out.is_multiple_of(self.groups),
            "conv2d: {} groups of {} → {} channels",
            self.groups,
            self.c_in,
            self.c_out
        );
    }
    /// Output pixels per channel.
    fn p(&self) -> usize {
        self.oh() * self.ow()
    }
    /// A 1×1 convolution at stride 1 without padding: its column matrix is its input.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
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

/// Forward pass: y[b, co, oy, ox] for x [b, c_in, h, w] and weight [c_out, c_in / groups, kh, kw].
pub fn conv2d_forward(x: &[f32], weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    conv2d_forward_then(x, weight, g, None)
}

/// What the forward pass applies to each image's output while it is still in cache:
/// y ← act(y + bias[c] (+ residual)). Evaluation runs the 224-px nets with every BatchNorm
/// folded into its convolution's bias; as separate ops the bias, the shortcut's add and the
/// ReLU were three more passes over each activation (100 MB at batch 32 in the first stage).
/// The sums are those of the separate ops, in their order: (y + bias) + residual.
#[derive(Debug, Clone, Copy)]
pub struct BiasAct<'a> {
    /// Per output channel.
    pub bias: &'a [f32],
    /// A tensor of the output's shape to add after the bias.
    pub residual: Option<&'a [f32]>,
    /// ReLU after the adds.
    pub relu: bool,
}

impl BiasAct<'_> {
    /// Applies the epilogue to image `b`'s output `yb`.
    fn apply(&self, yb: &mut [f32], b: usize, p: usize) {
        let residual = self.residual.map(|r| &r[b * yb.len()..][..yb.len()]);
        for (c, plane) in yb.chunks_mut(p).enumerate() {
            let bias = self.bias[c];
            match residual {
                Some(r) => {
                    for (v, r) in plane.iter_mut().zip(&r[c * p..][..p]) {
                        *v = (*v + bias) + r;
                    }
                }
                None => plane.iter_mut().for_each(|v| *v += bias),
            }
            if self.relu {
                plane.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }
}

/// [`conv2d_forward`] followed, image by image, by `epilogue`.
pub fn conv2d_forward_then(x: &[f32], weight: &[f32], g: &ConvGeometry, epilogue: Option<BiasAct>) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    g.check();
    assert_eq!(x.len(), g.batch * g.x_len(), "conv2d: input size");
    assert_eq!(weight.len(), g.c_out * g.k_g(), "conv2d: weight size");
    if let Some(e) = &epilogue {
        assert_eq!(e.bias.len(), g.c_out, "conv2d: bias size");
        assert!(e.residual.is_none_or(|r| r.len() == g.batch * g.y_len()), "conv2d: residual size");
    }
    let (kg, cog) = (g.k_g(), g.co_g());
    // SAFETY: every image's output is written in full below: the groups' GEMMs (accumulate
    // false: dst is written, not read) cover its c_out rows of p values, and the chunks cover
    // the batch; nothing reads y before that.
    let mut y = unsafe { uninit_f32(g.batch * g.y_len()) };
    let per = chunk(g.batch);
    y.par_chunks_mut(per * g.y_len()).zip(x.par_chunks(per * g.x_len())).enumerate().for_each_init(
        || if g.is_pointwise() { Vec::new() } else { vec![0.0f32; k * p] },
        |col, (task, (ys, xs))| {
            for (n, (yb, xb)) in ys.chunks_mut(g.y_len()).zip(xs.chunks(g.x_len())).enumerate() {
                // A pointwise convolution's column matrix is the image itself.
                let col: &[f32] = if g.is_pointwise() {
                    xb
                } else {
                    im2col(xb, g, col);
                    col
                };
                // Group i: y_b[i's channels] = W[i's channels] · col[i's rows].
                for i in 0..g.groups {
                    let (yi, wi, ci) =
                        (&mut yb[i * cog * p..][..cog * p], &weight[i * cog * kg..][..cog * kg], &col[i * kg * p..][..kg * p]);
                    gemm_f32(cog, p, kg, yi, false, (wi, 1, kg as isize), (ci, 1, p as isize));
                }
                if let Some(e) = &epilogue {
                    e.apply(yb, task * per + n, p);
                }
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
    g.check();
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
            groups: g.groups,
        };
        return conv2d_forward(dy, &flipped, &t);
    }
    conv2d_input_grad_col2im(dy, weight, g)
}

/// W'[ci, co, ky, kx] = W[co, ci, kh − 1 − ky, kw − 1 − kx] within each group (ci and co
/// counted inside the group; W' is [c_in, c_out / groups, kh, kw]).
fn flip_transpose(weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (kh, kw, cig, cog) = (g.kh, g.kw, g.ci_g(), g.co_g());
    let mut out = vec![0.0f32; weight.len()];
    for i in 0..g.groups {
        for co in 0..cog {
            for ci in 0..cig {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let (o, w) = ((i * cig + ci) * cog + co, (i * cog + co) * cig + ci);
                        out[(o * kh + ky) * kw + kx] = weight[(w * kh + (kh - 1 - ky)) * kw + (kw - 1 - kx)];
                    }
                }
            }
        }
    }
    out
}

/// Input gradient through the column matrix: any stride.
fn conv2d_input_grad_col2im(dy: &[f32], weight: &[f32], g: &ConvGeometry) -> Vec<f32> {
    let (k, p, kg, cog) = (g.k(), g.p(), g.k_g(), g.co_g());
    let mut dx = vec![0.0f32; g.batch * g.x_len()];
    let per = chunk(g.batch);
    dx.par_chunks_mut(per * g.x_len()).zip(dy.par_chunks(per * g.y_len())).for_each_init(
        || vec![0.0f32; k * p],
        |col, (dxs, dys)| {
            for (dxb, dyb) in dxs.chunks_mut(g.x_len()).zip(dys.chunks(g.y_len())) {
                // dcol[i's rows] = W[i's channels]ᵀ · dy_b[i's channels], group by group.
                for i in 0..g.groups {
                    let (ci, wi, dyi) =
                        (&mut col[i * kg * p..][..kg * p], &weight[i * cog * kg..][..cog * kg], &dyb[i * cog * p..][..cog * p]);
                    gemm_f32(kg, p, cog, ci, false, (wi, kg as isize, 1), (dyi, 1, p as isize));
                }
                col2im_add(col, g, dxb);
            }
        },
    );
    dx
}

/// Images per weight-gradient task. The 224-px nets train at batch 32 or less, so the 32 of
/// the halo kernels' tasks (`WEIGHT_GRAD_TASK_IMAGES`) made one task per layer. Like every split
/// here it is fixed, never derived from the thread count, so the gradient is bitwise the same
/// on any number of threads.
const WEIGHT_GRAD_IMAGES: usize = 8;

/// Input channels per weight-gradient task: the tasks also split the column matrix's rows (and
/// dW's columns) by input channel, so that each builds only its own rows and no work repeats:
/// an eighth of the channels, but at least 64 columns of dW (one 64-wide block for a 1×1
/// convolution of 64 channels), below which the GEMM's edge kernels took a fifth of the pass.
/// Measured on ResNet-50's layers at batch 32 (`dev/imagenet_conv_layers.rs`): the whole
/// weight-gradient pass 1.77 → 1.39 s against 32 images and an eighth of the channels alone.
fn weight_grad_channels(c_in: usize, taps: usize) -> usize {
    c_in.div_ceil(8).max(64usize.div_ceil(taps))
}

/// Weight gradient: dW [c_out, c_in, kh, kw] from x and dy.
///
/// dW[co, (c, ky, kx)] = Σ_b Σ_p dy_b[co, p] · col(x_b)[(c, ky, kx), p]: per image one GEMM
/// whose sum runs over the output pixels, the contiguous axis of both operands. Tasks are
/// (a fixed group of images) × (a block of input channels): with 32-image tasks alone the
/// 224-px nets (batch 32 or less) made one task, and the whole pass ran on one thread. Each
/// task builds the column rows of its own channels (none for a pointwise convolution, whose
/// column matrix is the image), the images of a group are summed in order, the groups' partial
/// sums added in order.
pub fn conv2d_weight_grad(x: &[f32], dy: &[f32], g: &ConvGeometry) -> Vec<f32> {
    g.check();
    let (p, taps, kg, cig, cog) = (g.p(), g.kh * g.kw, g.k_g(), g.ci_g(), g.co_g());
    assert_eq!(x.len(), g.batch * g.x_len(), "conv2d backward: input size");
    assert_eq!(dy.len(), g.batch * g.y_len(), "conv2d backward: output-gradient size");
    let per = WEIGHT_GRAD_IMAGES;
    let image_groups = g.batch.div_ceil(per);
    // Blocks of input channels inside each channel group.
    let cb = weight_grad_channels(g.c_in, taps).min(cig);
    let per_group = cig.div_ceil(cb);
    let blocks = g.groups * per_group;
    // Block j covers input channels c0..c1 of channel group i: its partial is
    // dW[i's output channels, (c0..c1, ky, kx)], cog × kb, row-major.
    let block = |j: usize| {
        let i = j / per_group;
        let c0 = i * cig + (j % per_group) * cb;
        (i, c0, (c0 + cb).min((i + 1) * cig))
    };
    let partials: Vec<Vec<f32>> = (0..image_groups * blocks)
        .into_par_iter()
        .map(|task| {
            let (images, (i, c0, c1)) = (task / blocks, block(task % blocks));
            let kb = (c1 - c0) * taps;
            let part = ConvGeometry { c_in: c1 - c0, batch: 1, groups: 1, ..*g };
            let mut col = if g.is_pointwise() { Vec::new() } else { vec![0.0f32; kb * p] };
            let mut dw = vec![0.0f32; cog * kb];
            for (n, b) in (images * per..((images + 1) * per).min(g.batch)).enumerate() {
                let xb = &x[b * g.x_len() + c0 * g.h * g.w..][..(c1 - c0) * g.h * g.w];
                let dyb = &dy[b * g.y_len() + i * cog * p..][..cog * p];
                let col: &[f32] = if g.is_pointwise() {
                    xb
                } else {
                    im2col(xb, &part, &mut col);
                    &col
                };
                // dW_block[cog × kb] += dy_b[i's channels, p] · col_blockᵀ[p × kb]
                gemm_f32(cog, kb, p, &mut dw, n > 0, (dyb, 1, p as isize), (col, p as isize, 1));
            }
            dw
        })
        .collect();
    let mut dw = vec![0.0f32; g.c_out * kg];
    for (task, part) in partials.iter().enumerate() {
        let (i, c0, c1) = block(task % blocks);
        let kb = (c1 - c0) * taps;
        for co in 0..cog {
            let row = &mut dw[(i * cog + co) * kg + (c0 - i * cig) * taps..][..kb];
            for (d, s) in row.iter_mut().zip(&part[co * kb..][..kb]) {
                *d += s;
            }
        }
    }
    dw
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
        let g = ConvGeometry { batch: 1, c_in: 1, h: 3, w: 3, c_out: 1, kh: 3, kw: 3, stride: 1, pad: 1, groups: 1 };
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

    /// The three passes by their definition, in f64: y[b, co, o] = Σ_{c, ky, kx} w · x at
    /// o·s + k − pad, c running over co's group; dx and dW are the same sums read the other
    /// way round.
    fn direct_f64(x: &[f32], w: &[f32], dy: &[f32], g: &ConvGeometry) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (oh, ow) = (g.oh(), g.ow());
        let mut y = vec![0.0f64; g.batch * g.y_len()];
        let mut dx = vec![0.0f64; g.batch * g.x_len()];
        let (cig, cog) = (g.c_in / g.groups, g.c_out / g.groups);
        let mut dw = vec![0.0f64; g.c_out * cig * g.kh * g.kw];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                    let yi = ((b * g.c_out + co) * oh + oy) * ow + ox;
                    for (c, ky, kx) in (co / cog * cig..(co / cog + 1) * cig)
                        .flat_map(|c| (0..g.kh).flat_map(move |ky| (0..g.kw).map(move |kx| (c, ky, kx))))
                    {
                        let (iy, ix) = ((oy * g.stride + ky) as isize - g.pad as isize, (ox * g.stride + kx) as isize - g.pad as isize);
                        if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                            continue;
                        }
                        let xi = ((b * g.c_in + c) * g.h + iy as usize) * g.w + ix as usize;
                        let wi = ((co * cig + c % cig) * g.kh + ky) * g.kw + kx;
                        y[yi] += w[wi] as f64 * x[xi] as f64;
                        dx[xi] += w[wi] as f64 * dy[yi] as f64;
                        dw[wi] += x[xi] as f64 * dy[yi] as f64;
                    }
                }
            }
        }
        (y, dx, dw)
    }

    #[test]
    fn every_pass_matches_its_definition() {
        let values = |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7919 + seed) % 2003) as f32 / 1001.0 - 1.0).collect() };
        // (c_in, side, c_out, kernel, stride, pad, groups): the ImageNet nets' pointwise,
        // pointwise stride-2 (shortcut), 3×3 and 7×7 stem shapes, and ResNeXt's grouped 3×3
        // at stride 1 and 2. Weight-gradient blocks: 130 channels 1×1 in 64 + 64 + 2, 20
        // channels 3×3 in 8 + 8 + 4, and the same inside each of 2 groups of 20; 10 images in
        // groups of 8 + 2.
        for (c_in, side, c_out, k, stride, pad, groups) in [
            (130, 3, 4, 1, 1, 0, 1),
            (20, 5, 3, 3, 1, 1, 1),
            (40, 5, 6, 3, 1, 1, 2),
            (9, 6, 5, 1, 1, 0, 1),
            (21, 7, 4, 1, 2, 0, 1),
            (9, 7, 6, 3, 1, 1, 1),
            (3, 11, 4, 7, 2, 3, 1),
            (21, 5, 3, 3, 2, 1, 1),
            (24, 6, 12, 3, 1, 1, 3),
            (24, 7, 6, 3, 2, 1, 3),
            (8, 5, 8, 3, 1, 1, 8),
        ] {
            let g = ConvGeometry { batch: 10, c_in, h: side, w: side, c_out, kh: k, kw: k, stride, pad, groups };
            let (x, w, dy) = (values(g.batch * g.x_len(), 1), values(g.c_out * g.k_g(), 2), values(g.batch * g.y_len(), 3));
            let (y, dx, dw) = direct_f64(&x, &w, &dy, &g);
            let close = |what: &str, got: &[f32], want: &[f64]| {
                assert_eq!(got.len(), want.len(), "{what}");
                for (i, (a, b)) in got.iter().zip(want).enumerate() {
                    assert!((*a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()), "{what} {g:?} [{i}]: {a} vs {b}");
                }
            };
            close("forward", &conv2d_forward(&x, &w, &g), &y);
            close("input gradient", &conv2d_input_grad(&dy, &w, &g), &dx);
            close("weight gradient", &conv2d_weight_grad(&x, &dy, &g), &dw);
        }
    }

    #[test]
    fn epilogue_equals_the_separate_ops_bit_for_bit() {
        let g = ConvGeometry { batch: 5, c_in: 6, h: 7, w: 7, c_out: 4, kh: 3, kw: 3, stride: 2, pad: 1, groups: 2 };
        let values = |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7919 + seed) % 2003) as f32 / 1001.0 - 1.0).collect() };
        let (x, w, bias, r) =
            (values(g.batch * g.x_len(), 1), values(g.c_out * g.k_g(), 2), values(g.c_out, 3), values(g.batch * g.y_len(), 4));
        let plain = conv2d_forward(&x, &w, &g);
        let p = g.p();
        for (residual, relu) in [(None, false), (None, true), (Some(&r[..]), false), (Some(&r[..]), true)] {
            let want: Vec<f32> = plain
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let v = v + bias[i / p % g.c_out];
                    let v = residual.map_or(v, |r| v + r[i]);
                    if relu { v.max(0.0) } else { v }
                })
                .collect();
            let got = conv2d_forward_then(&x, &w, &g, Some(BiasAct { bias: &bias, residual, relu }));
            assert_eq!(bits(&got), bits(&want), "residual {}, relu {relu}", residual.is_some());
            if relu {
                assert!(got.contains(&0.0) && got.iter().any(|&v| v > 0.0), "the ReLU case exercises both sides");
            }
        }
    }

    #[test]
    fn every_pass_is_bitwise_the_same_on_any_number_of_threads() {
        // 70 images: 9 weight-gradient image groups; the second shape also splits its
        // channels (2 groups of 20, blocks of 8 + 8 + 4) and takes the stride-2 input gradient.
        let shapes = [
            ConvGeometry { batch: 70, c_in: 5, h: 9, w: 9, c_out: 6, kh: 3, kw: 3, stride: 1, pad: 1, groups: 1 },
            ConvGeometry { batch: 70, c_in: 40, h: 5, w: 5, c_out: 6, kh: 3, kw: 3, stride: 2, pad: 1, groups: 2 },
        ];
        for g in shapes {
            let values =
                |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| (((i * 7919 + seed) % 2003) as f32 / 1001.0 - 1.0) * 0.37).collect() };
            let (x, w) = (values(g.batch * g.x_len(), 1), values(g.c_out * g.k_g(), 2));
            let dy = values(g.batch * g.y_len(), 3);
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| (conv2d_forward(&x, &w, &g), conv2d_input_grad(&dy, &w, &g), conv2d_weight_grad(&x, &dy, &g)))
            };
            let (y1, dx1, dw1) = on(1);
            for threads in [2, 3, 5] {
                let (y, dx, dw) = on(threads);
                assert_eq!((bits(&y), bits(&dx), bits(&dw)), (bits(&y1), bits(&dx1), bits(&dw1)), "{g:?}: {threads} threads");
            }
        }
    }
}
