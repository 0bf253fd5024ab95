//! 3×3, padding-1 convolution on halo tensors ([`halo`](super::halo)), forward and both
//! backward passes, at stride 1 or 2.
//!
//! Stride 1 (every convolution of the CIFAR ResNet but two): with q an output pixel in the
//! flattened ring-included grid and `wp` the padded row length, kernel row ky reads the 3·c_in
//! contiguous input values starting at pixel q + (ky − 1)·wp − 1. So
//!
//! - forward:     Y[q, :]   = Σ_ky X[q + (ky−1)·wp − 1 .. +3, :] · W_ky      (3 GEMMs, K = 3·c_in)
//! - input grad:  the forward of dY with the kernel flipped and its channel axes swapped
//! - weight grad: W_ky      = Σ_q X[q + (ky−1)·wp − 1 .. +3, :]ᵀ · dY[q, :]   (3 GEMMs, K = pixels)
//!
//! where the left operands are the tensors themselves read with overlapping rows (row stride
//! c_in, 3·c_in columns): no im2col, no transposes. The ring's columns inside the row range
//! come out as junk and are zeroed after. Stride 2 and narrow inputs (the 1- or 3-channel stem)
//! go through a column matrix (K = 9·c_in) instead, except where the AVX-512 stride-2 kernels
//! take them (the forward in `halo_conv_avx512`, both backward passes in
//! `halo_conv_stride2_avx512`), which give the column path's bits.
//!
//! Weights are taken in burn's `[c_out, c_in, 3, 3]` and rearranged to `[ky][kx][c_in][c_out]`
//! (the GEMM's right operand) on each call; they are small.

use rayon::prelude::*;

use super::cpu_common::{WEIGHT_GRAD_TASK_IMAGES, gemm_f32, images_per_task, uninit_f32};
use super::halo::{HaloGeometry, with_zero_ring, zero_ring};
use super::halo_conv_avx512::{TapsBlock, WeightRows};

/// One 3×3, padding-1 convolution between halo tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaloConv {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input interior height.
    pub h: usize,
    /// Input interior width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// 1 or 2.
    pub stride: usize,
}

impl HaloConv {
    /// The input's geometry.
    pub fn input(&self) -> HaloGeometry {
        HaloGeometry { batch: self.batch, h: self.h, w: self.w, c: self.c_in }
    }
    /// The output's geometry.
    pub fn output(&self) -> HaloGeometry {
        HaloGeometry { batch: self.batch, h: (self.h - 1) / self.stride + 1, w: (self.w - 1) / self.stride + 1, c: self.c_out }
    }
    /// Whether this convolution goes through the column matrix rather than overlapping rows.
    fn via_columns(&self) -> bool {
        self.stride != 1 || (self.c_in < 8 && !use_halo_kernels(self.c_out, self.rows().1))
    }
    /// Output rows the GEMMs write, from the first interior pixel to the last: (first, count).
    fn rows(&self) -> (usize, usize) {
        let o = self.output();
        (o.wp() + 1, o.h * o.wp() - 2)
    }
}

/// burn's `[c_out, c_in, 3, 3]` to `[ky][kx][c_in][c_out]`.
pub fn weight_to_taps(weight: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    assert_eq!(weight.len(), c_out * c_in * 9, "halo conv: weight size");
    let mut taps = vec![0.0f32; weight.len()];
    for co in 0..c_out {
        for ci in 0..c_in {
            for t in 0..9 {
                taps[(t * c_in + ci) * c_out + co] = weight[(co * c_in + ci) * 9 + t];
            }
        }
    }
    taps
}

/// `[ky][kx][c_in][c_out]` back to burn's `[c_out, c_in, 3, 3]`.
fn taps_to_weight(taps: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let mut weight = vec![0.0f32; taps.len()];
    for co in 0..c_out {
        for ci in 0..c_in {
            for t in 0..9 {
                weight[(co * c_in + ci) * 9 + t] = taps[(t * c_in + ci) * c_out + co];
            }
        }
    }
    weight
}

/// The taps of the input gradient's convolution: W'[ky][kx][co][ci] = W[co][ci][2 − ky][2 − kx].
fn flipped_taps(weight: &[f32], c_in: usize, c_out: usize) -> Vec<f32> {
    let mut taps = vec![0.0f32; weight.len()];
    for co in 0..c_out {
        for ci in 0..c_in {
            for t in 0..9 {
                taps[((8 - t) * c_out + co) * c_in + ci] = weight[(co * c_in + ci) * 9 + t];
            }
        }
    }
    taps
}

/// Images per rayon task of the per-image passes: eight tasks per worker (the scratch here is
/// small, and finer tasks balance the two workers better).
fn chunk(batch: usize) -> usize {
    images_per_task(batch, 8)
}

/// Stride-1 forward of one image through overlapping rows: writes y's interior pixels (the
/// AVX-512 image kernel, where the CPU has it and the image fits its tile, or the portable
/// twin on CPUs without AVX-512), or rows q0..q0 + m with junk in the ring's columns among
/// them (the AVX-512 row kernel, or the `gemm` crate where the halo kernels do not take the
/// shape); the caller zeroes the ring.
fn forward_rows(x: &[f32], taps: &[f32], g: &HaloConv, y: &mut [f32], kernels: bool) {
    let (q0, m) = g.rows();
    let (wp, ci, co) = (g.input().wp(), g.c_in, g.c_out);
    #[cfg(target_arch = "x86_64")]
    if kernels && super::halo_conv_avx512::available() && super::halo_conv_avx512::image_kernel_fits(co, g.h, g.w) {
        // SAFETY: the feature is detected and the image fits the kernel; x and y are one
        // image each, taps 9·c_in·c_out.
        unsafe { super::halo_conv_avx512::conv_image(x, taps, y, g.h, g.w, ci, co) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if kernels && super::halo_conv_avx512::available() {
        // SAFETY: the feature is detected; x holds the image ((h + 2)·wp pixels ≥ m − 1 + 2·wp
        // + 3), taps 9·c_in·c_out, and y from pixel q0 holds m rows.
        unsafe { super::halo_conv_avx512::conv_rows(x, taps, &mut y[q0 * co..][..m * co], m, ci, co, wp) };
        return;
    }
    if kernels {
        super::halo_conv_portable::conv_image(x, taps, y, g.h, g.w, ci, co);
        return;
    }
    for ky in 0..3 {
        // Rows r·c_in .. r·c_in + 3·c_in of the input from kernel row ky: overlapping rows.
        let rhs = &taps[ky * 3 * ci * co..][..3 * ci * co];
        gemm_f32(m, co, 3 * ci, &mut y[q0 * co..][..m * co], ky > 0, (&x[ky * wp * ci..], 1, ci as isize), (rhs, 1, co as isize));
    }
}

/// Input channels up to which the stride-2 image kernel replaces the column path: the `gemm`
/// crate sums K = 9·c_in in one depth block up to here (measured: up to K = 504 on this
/// machine's 48 KiB L1, split into blocks from 540), so the image kernel's single pass gives
/// its bits; beyond, gemm's blocks would make the two differ, and the column path stays.
const STRIDE2_IMAGE_MAX_C_IN: usize = 32;

/// Whether the AVX-512 stride-2 image kernel takes this convolution.
fn stride2_fits(g: &HaloConv) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let o = g.output();
        g.c_in <= STRIDE2_IMAGE_MAX_C_IN && super::halo_conv_avx512::stride2_kernel_fits(g.c_out, o.h, o.w)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = g;
        false
    }
}

/// Stride-2 forward of one image with the AVX-512 image kernel: writes y's interior pixels;
/// the caller zeroes the ring. Only called where [`stride2_fits`] and [`use_halo_kernels`]
/// hold and the CPU has AVX-512 (elsewhere the column path gives the same bits).
fn forward_stride2(x: &[f32], taps: &[f32], g: &HaloConv, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked the feature and the fit; x and y are one image each, taps
    // 9·c_in·c_out.
    unsafe {
        super::halo_conv_avx512::conv_image_stride2(x, taps, y, g.h, g.w, g.c_in, g.c_out)
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("stride-2 image kernel without x86-64 ({x:p}, {taps:p}, {g:?}, {y:p})");
}

/// Whether the stride-2 backward passes take their AVX-512 kernels
/// ([`halo_conv_stride2_avx512`](super::halo_conv_stride2_avx512); the column path's bits,
/// tested): stride 2, the halo kernels on ([`use_halo_kernels`]: `RBL_GEMM_CONV` keeps the
/// column path) and the CPU has AVX-512. Each pass checks its own fit besides. Elsewhere the
/// column path gives the same bits.
fn stride2_backward_kernels(g: &HaloConv) -> bool {
    g.stride == 2 && use_halo_kernels(g.c_out, g.rows().1) && super::halo_conv_avx512::available()
}

/// One output row's rows of the input gradient's column matrix (`pixels` output pixels from
/// dy) by the AVX-512 kernel. Only where [`stride2_backward_kernels`] and the kernel's
/// `columns_fit` hold.
fn input_columns_of_row(dy: &[f32], taps_t: &[f32], col: &mut [f32], pixels: usize, c_out: usize, k: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked the feature and the fit; the kernel asserts the sizes.
    unsafe {
        super::halo_conv_stride2_avx512::columns_of_row(dy, taps_t, col, pixels, c_out, k)
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("stride-2 column kernel without x86-64 ({dy:p}, {taps_t:p}, {col:p}, {pixels}, {c_out}, {k})");
}

/// One image's share of the stride-2 weight gradient added onto `taps` by the AVX-512 kernel.
/// Only where [`stride2_backward_kernels`] and the kernel's `weight_fits` hold.
fn weight_grad_image_stride2(xb: &[f32], dyb: &[f32], taps: &mut [f32], g: &HaloConv) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller checked the feature and the fit; the kernel asserts the sizes.
    unsafe {
        super::halo_conv_stride2_avx512::weight_grad_image(xb, dyb, taps, g.h, g.w, g.c_in, g.c_out)
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("stride-2 weight kernel without x86-64 ({xb:p}, {dyb:p}, {taps:p}, {g:?})");
}

/// Whether the overlapping-rows products take the halo kernels' sums: c_out is 16, 32 or 64,
/// the image has at least one AVX-512 register tile of rows, and `RBL_GEMM_CONV` is not set
/// (which keeps the `gemm` crate's path, for comparison). A question of shape alone, never of
/// the CPU: where it holds, the AVX-512 kernels run if the CPU has them and their portable
/// twins ([`halo_conv_portable`](super::halo_conv_portable)) if not, with the same bits, so a
/// run trains to the same numbers on any CPU.
fn use_halo_kernels(c_out: usize, m: usize) -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var_os("RBL_GEMM_CONV").is_none());
    on && matches!(c_out, 16 | 32 | 64) && m >= super::halo_conv_avx512::tile_pixels(c_out / 16)
}

/// The column matrix of one image: for each output row q of the GEMM range, the 9·c_in input
/// values its kernel covers in (ky, kx, c) order; zeros for the ring's columns.
fn im2col(x: &[f32], g: &HaloConv, col: &mut [f32]) {
    let (q0, m) = g.rows();
    let (o, wp, ci, s) = (g.output(), g.input().wp(), g.c_in, g.stride);
    for (row, q) in col.chunks_exact_mut(9 * ci).zip(q0..q0 + m) {
        let (r, cpos) = (q / o.wp(), q % o.wp());
        if cpos == 0 || cpos == o.wp() - 1 {
            row.fill(0.0);
            continue;
        }
        let (oy, ox) = (r - 1, cpos - 1);
        for ky in 0..3 {
            let src = ((oy * s + ky) * wp + ox * s) * ci;
            row[ky * 3 * ci..][..3 * ci].copy_from_slice(&x[src..][..3 * ci]);
        }
    }
}

super::cpu_common::vector_builds! {
    /// Adds a column-matrix gradient back onto the input it came from (the adjoint of
    /// [`im2col`]): col holds the rows of output pixels `qs` (all of them: `g.rows()`, or one
    /// output row's interior), added in order; runs of 3·c_in additions, compiled for AVX-512
    /// where the CPU has it.
    fn col2im_add(col: &[f32], g: &HaloConv, qs: std::ops::Range<usize>, dx: &mut [f32]) {
        let (o, wp, ci, s) = (g.output(), g.input().wp(), g.c_in, g.stride);
        for (row, q) in col.chunks_exact(9 * ci).zip(qs) {
            let (r, cpos) = (q / o.wp(), q % o.wp());
            if cpos == 0 || cpos == o.wp() - 1 {
                continue;
            }
            let (oy, ox) = (r - 1, cpos - 1);
            for ky in 0..3 {
                let dst = &mut dx[((oy * s + ky) * wp + ox * s) * ci..][..3 * ci];
                for (d, v) in dst.iter_mut().zip(&row[ky * 3 * ci..][..3 * ci]) {
                    *d += v;
                }
            }
        }
    }
}

/// Forward of one image through the column matrix: writes rows q0..q0 + m of y, like
/// [`forward_rows`].
fn forward_columns(x: &[f32], taps: &[f32], g: &HaloConv, col: &mut [f32], y: &mut [f32]) {
    let (q0, m) = g.rows();
    let (k, co) = (9 * g.c_in, g.c_out);
    im2col(x, g, col);
    gemm_f32(m, co, k, &mut y[q0 * co..][..m * co], false, (col, 1, k as isize), (taps, 1, co as isize));
}

/// Forward pass: y (halo, `[b, oh + 2, ow + 2, c_out]`) from x (halo, `[b, h + 2, w + 2,
/// c_in]`, zero ring) and burn's weight `[c_out, c_in, 3, 3]`.
pub fn halo_conv_forward(x: &[f32], weight: &[f32], g: &HaloConv) -> Vec<f32> {
    halo_conv_forward_then(x, weight, g, None)
}

/// What to apply to each output image as soon as it is computed, while it is in cache:
/// act(y·scale + shift [+ residual]) per channel (BatchNorm at evaluation, or a folded
/// convolution's bias, then the shortcut's add and ReLU), exactly as
/// [`halo_affine_forward`](super::halo_norm_cpu::halo_affine_forward) would.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// Per-channel scale.
    pub scale: &'a [f32],
    /// Per-channel shift.
    pub shift: &'a [f32],
    /// A halo tensor of the output's shape to add.
    pub residual: Option<&'a [f32]>,
    /// ReLU after the add.
    pub relu: bool,
}

/// [`halo_conv_forward`] followed, image by image, by `epilogue`.
pub fn halo_conv_forward_then(x: &[f32], weight: &[f32], g: &HaloConv, epilogue: Option<Epilogue>) -> Vec<f32> {
    let (i, o) = (g.input(), g.output());
    assert_eq!(x.len(), i.len(), "halo conv: input size");
    if let Some(e) = &epilogue {
        assert!(
            e.scale.len() == g.c_out && e.shift.len() == g.c_out && e.residual.is_none_or(|r| r.len() == o.len()),
            "halo conv: epilogue sizes"
        );
    }
    let taps = weight_to_taps(weight, g.c_in, g.c_out);
    forward_with_taps(x, &taps, g, &i, &o, epilogue.map_or(Finish::Nothing, Finish::Affine))
}

/// What the per-image pass does to each output image right after computing it, in cache.
#[derive(Debug, Clone, Copy)]
enum Finish<'a> {
    /// Nothing more.
    Nothing,
    /// The [`Epilogue`].
    Affine(Epilogue<'a>),
    /// y + other (a halo tensor of y's shape, zero ring): the other of a tensor's two
    /// gradients, added as burn's gradient accumulation adds it (own + other), but per image.
    Add(&'a [f32]),
}

/// How each image of a convolution is computed: decided once per call (a question of shape and
/// CPU), so that every image of a pass, and every pass of one shape, takes the same path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImagePath {
    /// The halo kernels' sums ([`use_halo_kernels`]).
    kernels: bool,
    /// Stride 2 through its own AVX-512 image kernel (the column path's bits, tested).
    stride2_image: bool,
    /// Through the column matrix and the `gemm` crate.
    columns: bool,
}

impl ImagePath {
    /// The path for convolutions of this shape on this CPU.
    pub(crate) fn of(g: &HaloConv) -> ImagePath {
        let kernels = use_halo_kernels(g.c_out, g.rows().1);
        let stride2_image = g.stride == 2 && kernels && super::halo_conv_avx512::available() && stride2_fits(g);
        ImagePath { kernels, stride2_image, columns: g.via_columns() && !stride2_image }
    }
    /// Scratch values one image needs: the column matrix where it is taken.
    pub(crate) fn scratch_len(&self, g: &HaloConv) -> usize {
        if self.columns { g.rows().1 * 9 * g.c_in } else { 0 }
    }
}

/// One image of the forward: y's image, interior and ring, from x's (`col`: at least
/// [`ImagePath::scratch_len`] values of scratch).
pub(crate) fn forward_image(xb: &[f32], taps: &[f32], g: &HaloConv, path: ImagePath, col: &mut [f32], yb: &mut [f32]) {
    if path.stride2_image {
        forward_stride2(xb, taps, g, yb);
    } else if path.columns {
        forward_columns(xb, taps, g, &mut col[..path.scratch_len(g)], yb);
    } else {
        forward_rows(xb, taps, g, yb, path.kernels);
    }
    zero_ring(yb, &g.output());
}

fn forward_with_taps(x: &[f32], taps: &[f32], g: &HaloConv, i: &HaloGeometry, o: &HaloGeometry, finish: Finish) -> Vec<f32> {
    // SAFETY: every value is written before y is read or returned: rows q0..q0 + m by the
    // product, the ring by zero_ring (forward_image).
    let mut y = unsafe { uninit_f32(o.len()) };
    let per = chunk(g.batch);
    let path = ImagePath::of(g);
    y.par_chunks_mut(per * o.image_len()).zip(x.par_chunks(per * i.image_len())).enumerate().for_each_init(
        || vec![0.0f32; path.scratch_len(g)],
        |col, (task, (ys, xs))| {
            for (n, (yb, xb)) in ys.chunks_mut(o.image_len()).zip(xs.chunks(i.image_len())).enumerate() {
                forward_image(xb, taps, g, path, col, yb);
                let image = task * per + n;
                match finish {
                    Finish::Nothing => {}
                    Finish::Affine(e) => {
                        let residual = e.residual.map(|r| &r[image * o.image_len()..][..o.image_len()]);
                        super::halo_norm_cpu::halo_affine_in_place(yb, residual, e.scale, e.shift, e.relu, o);
                    }
                    Finish::Add(other) => add_in_place(yb, &other[image * o.image_len()..][..o.image_len()]),
                }
            }
        },
    );
    y
}

/// Which gradients [`halo_conv_backward`] computes.
#[derive(Debug, Clone, Copy)]
pub enum Wanted<'a> {
    /// dx alone, or dx + `other` when given (`other`: a halo tensor of x's shape with a zero
    /// ring, another gradient of x, added to each image of dx while it is in cache).
    InputGrad(Option<&'a [f32]>),
    /// dw alone.
    WeightGrad,
    /// Both, dx as in `InputGrad`.
    Both(Option<&'a [f32]>),
}

impl<'a> Wanted<'a> {
    /// (dx wanted, with the other gradient to add if any; dw wanted).
    fn parts(self) -> (Option<Option<&'a [f32]>>, bool) {
        match self {
            Wanted::InputGrad(plus) => (Some(plus), false),
            Wanted::WeightGrad => (None, true),
            Wanted::Both(plus) => (Some(plus), true),
        }
    }
}

/// Both gradients at once, as the op's backward wants them: (dx if asked, dw if asked), with
/// dy's ring checked (and zeroed in a copy if needed) once for both.
pub fn halo_conv_backward(x: &[f32], dy: &[f32], weight: &[f32], g: &HaloConv, wanted: Wanted) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    assert_eq!(dy.len(), g.output().len(), "halo conv backward: output-gradient size");
    let dy = with_zero_ring(dy, &g.output());
    let (dx_plus, want_dw) = wanted.parts();
    if let Some(Some(other)) = dx_plus {
        assert_eq!(other.len(), g.input().len(), "halo conv backward: size of the gradient to add");
    }
    (dx_plus.map(|plus| input_grad(&dy, weight, g, plus)), want_dw.then(|| weight_grad(x, &dy, g)))
}

/// A convolution's (input gradient, weight gradient), each if asked.
pub(crate) type ConvGrads = (Option<Vec<f32>>, Option<Vec<f32>>);

/// Writes output image `n`'s gradient (halo, zero ring) into the first buffer, and, when the
/// caller asked for one, the same image of a side output into the second.
pub(crate) type DyImage<'a> = &'a (dyn Fn(usize, &mut [f32], Option<&mut [f32]>) + Sync);

/// [`halo_conv_backward`] for a dy that is never stored whole: `dy_image` writes each image's
/// dy into a buffer in cache, and both gradients' terms for that image are taken from it at
/// once (BatchNorm's gradient, applied image by image: `halo_conv_norm_cpu`). The images run
/// in the weight gradient's tasks of [`WEIGHT_GRAD_TASK_IMAGES`], in order, so every sum is the
/// one the two separate passes form: the same bits. `side`, when given (a halo tensor of the
/// output's shape), is handed to `dy_image` image by image. `None` where the separate passes
/// would not take the per-image kernels (stride 2, the column path, a weight gradient split by
/// kernel row because the pool has more threads than tasks): the caller then stores dy and
/// calls [`halo_conv_backward`].
pub(crate) fn halo_conv_backward_by_image(
    x: &[f32],
    weight: &[f32],
    g: &HaloConv,
    wanted: Wanted,
    side: Option<&mut [f32]>,
    dy_image: DyImage,
) -> Option<ConvGrads> {
    let (i, o) = (g.input(), g.output());
    let (ci, co) = (g.c_in, g.c_out);
    let (q0, _) = g.rows();
    let (dx_plus, want_dw) = wanted.parts();
    let tasks = g.batch.div_ceil(WEIGHT_GRAD_TASK_IMAGES);
    // The input gradient's geometry, as `input_grad` forms it.
    let t = HaloConv { c_in: co, c_out: ci, ..*g };
    // weight_grad's choice for every task: per image unless split into taps blocks (the last
    // task is the smallest, and a task fits if its rows do).
    let smallest_task = g.batch - (tasks - 1) * WEIGHT_GRAD_TASK_IMAGES;
    let fits = g.stride == 1
        && !g.via_columns()
        && (dx_plus.is_none() || !t.via_columns())
        && (!want_dw || (!weight_grad_split_by_taps(g) && weight_kernel_fits(g, task_rows(g, smallest_task))));
    if !fits {
        return None;
    }
    assert_eq!(x.len(), i.len(), "halo conv backward: input size");
    if let Some(Some(other)) = dx_plus {
        assert_eq!(other.len(), i.len(), "halo conv backward: size of the gradient to add");
    }
    assert!(side.as_ref().is_none_or(|s| s.len() == o.len()), "halo conv backward: side output size");
    let flipped = dx_plus.map(|_| flipped_taps(weight, ci, co));
    let kernels = use_halo_kernels(t.c_out, t.rows().1);
    // SAFETY: every image of dx is written below (forward_rows and zero_ring, as in
    // forward_with_taps) before it is returned.
    let mut dx = dx_plus.map(|_| unsafe { uninit_f32(i.len()) });
    let dx_shares = task_shares(dx.as_deref_mut(), WEIGHT_GRAD_TASK_IMAGES * i.image_len(), tasks);
    let side_shares = task_shares(side, WEIGHT_GRAD_TASK_IMAGES * o.image_len(), tasks);
    let partials: Vec<Vec<f32>> = dx_shares
        .into_par_iter()
        .zip(side_shares)
        .enumerate()
        .map(|(task, (mut dxs, mut sides))| {
            let mut taps = vec![0.0f32; if want_dw { 9 * ci * co } else { 0 }];
            let mut dyb = vec![0.0f32; o.image_len()];
            let first = task * WEIGHT_GRAD_TASK_IMAGES;
            for n in 0..WEIGHT_GRAD_TASK_IMAGES.min(g.batch - first) {
                let image = first + n;
                let side_image = sides.as_deref_mut().map(|s| &mut s[n * o.image_len()..][..o.image_len()]);
                dy_image(image, &mut dyb, side_image);
                if let (Some(dxs), Some(flipped)) = (dxs.as_deref_mut(), &flipped) {
                    let dxb = &mut dxs[n * i.image_len()..][..i.image_len()];
                    forward_rows(&dyb, flipped, &t, dxb, kernels);
                    zero_ring(dxb, &i);
                    if let Some(Some(other)) = dx_plus {
                        add_in_place(dxb, &other[image * i.image_len()..][..i.image_len()]);
                    }
                }
                if want_dw {
                    let xb = &x[image * i.image_len()..][..i.image_len()];
                    weight_grad_image(xb, &dyb[q0 * co..], &mut taps, g, &TapsBlock::all(ci));
                }
            }
            taps
        })
        .collect();
    let dw = want_dw.then(|| taps_to_weight(&sum_in_order(partials, 9 * ci * co), ci, co));
    Some((dx, dw))
}

/// Each task's share (`per` values) of an optional output, or None for each of the `tasks`.
fn task_shares(buf: Option<&mut [f32]>, per: usize, tasks: usize) -> Vec<Option<&mut [f32]>> {
    match buf {
        Some(b) => b.chunks_mut(per).map(Some).collect(),
        None => (0..tasks).map(|_| None).collect(),
    }
}

/// Input gradient: dx (halo, zero ring) from dy (halo; its ring is ignored). For tests and the
/// timing programs; the op asks [`halo_conv_backward`] for both gradients at once.
#[cfg(any(test, feature = "dev"))]
pub fn halo_conv_input_grad(dy: &[f32], weight: &[f32], g: &HaloConv) -> Vec<f32> {
    halo_conv_backward(&[], dy, weight, g, Wanted::InputGrad(None)).0.expect("asked for")
}

/// Weight gradient, in burn's `[c_out, c_in, 3, 3]`, from x (halo, zero ring) and dy (halo;
/// its ring is ignored). For tests and the timing programs.
#[cfg(any(test, feature = "dev"))]
pub fn halo_conv_weight_grad(x: &[f32], dy: &[f32], g: &HaloConv) -> Vec<f32> {
    halo_conv_backward(x, dy, &[], g, Wanted::WeightGrad).1.expect("asked for")
}

/// [`halo_conv_input_grad`] for a dy whose ring is zero, plus `other` when given.
fn input_grad(dy: &[f32], weight: &[f32], g: &HaloConv, other: Option<&[f32]>) -> Vec<f32> {
    let (i, o) = (g.input(), g.output());
    if !g.via_columns() {
        // A stride-1 3×3 padding-1 convolution's input gradient is the forward convolution of
        // dy with the flipped, channel-swapped kernel, at the same geometry.
        let t = HaloConv { c_in: g.c_out, c_out: g.c_in, ..*g };
        let taps = flipped_taps(weight, g.c_in, g.c_out);
        return forward_with_taps(dy, &taps, &t, &o, &i, other.map_or(Finish::Nothing, Finish::Add));
    }
    let taps = weight_to_taps(weight, g.c_in, g.c_out);
    let (q0, m) = g.rows();
    let (k, co) = (9 * g.c_in, g.c_out);
    let by_rows = stride2_backward_kernels(g) && super::halo_conv_stride2_avx512::columns_fit(o.w, g.c_in);
    // The taps as `[c_out][k]` for the row kernel (a vector of column entries per c_out).
    let taps_t: Vec<f32> = if by_rows { (0..co).flat_map(|c| taps.iter().skip(c).step_by(co).copied()).collect() } else { Vec::new() };
    // SAFETY: each image is zero-filled below before col2im adds into it (a zeroed vec![] here
    // was a serial memset of the whole gradient on the calling thread).
    let mut dx = unsafe { uninit_f32(i.len()) };
    let per = chunk(g.batch);
    dx.par_chunks_mut(per * i.image_len()).zip(dy.par_chunks(per * o.image_len())).enumerate().for_each_init(
        || vec![0.0f32; if by_rows { o.w * k } else { m * k }],
        |col, (task, (dxs, dys))| {
            for (n, (dxb, dyb)) in dxs.chunks_mut(i.image_len()).zip(dys.chunks(o.image_len())).enumerate() {
                dxb.fill(0.0);
                if by_rows {
                    // One output row at a time: its column rows (in cache) added at once, in
                    // col2im's order.
                    for r in 1..=o.h {
                        let first = r * o.wp() + 1;
                        input_columns_of_row(&dyb[first * co..][..o.w * co], &taps_t, col, o.w, co, k);
                        col2im_add(col, g, first..first + o.w, dxb);
                    }
                } else {
                    // dcol (m×k) = dY rows (m×c_out) · tapsᵀ (c_out×k).
                    gemm_f32(m, k, co, col, false, (&dyb[q0 * co..][..m * co], 1, co as isize), (&taps, co as isize, 1));
                    col2im_add(col, g, q0..q0 + m, dxb);
                }
                zero_ring(dxb, &i);
                if let Some(other) = other {
                    add_in_place(dxb, &other[(task * per + n) * i.image_len()..][..i.image_len()]);
                }
            }
        },
    );
    dx
}

super::cpu_common::vector_builds! {
    /// own[j] = own[j] + other[j]: burn-flex's in-place add (its gradient accumulation), the
    /// same IEEE operation per value.
    fn add_in_place(own: &mut [f32], other: &[f32]) {
        assert_eq!(own.len(), other.len(), "add: sizes");
        for (a, &b) in own.iter_mut().zip(other) {
            *a += b;
        }
    }
}

/// [`halo_conv_weight_grad`] for a dy whose ring is zero.
fn weight_grad(x: &[f32], dy: &[f32], g: &HaloConv) -> Vec<f32> {
    let (i, o) = (g.input(), g.output());
    assert_eq!(x.len(), i.len(), "halo conv backward: input size");
    let (ci, co, wp) = (g.c_in, g.c_out, i.wp());
    let (q0, m) = g.rows();
    let k = 9 * ci;
    if weight_grad_split_by_taps(g) {
        return taps_to_weight(&weight_grad_split(x, dy, g), ci, co);
    }
    let partials: Vec<Vec<f32>> = x
        .par_chunks(WEIGHT_GRAD_TASK_IMAGES * i.image_len())
        .zip(dy.par_chunks(WEIGHT_GRAD_TASK_IMAGES * o.image_len()))
        .map(|(xs, dys)| {
            let mut taps = vec![0.0f32; k * co];
            if g.via_columns() {
                if stride2_backward_kernels(g) && super::halo_conv_stride2_avx512::weight_fits(g.h, g.w, ci, co) {
                    for (xb, dyb) in xs.chunks(i.image_len()).zip(dys.chunks(o.image_len())) {
                        weight_grad_image_stride2(xb, dyb, &mut taps, g);
                    }
                    return taps;
                }
                let mut col = vec![0.0f32; m * k];
                for (n, (xb, dyb)) in xs.chunks(i.image_len()).zip(dys.chunks(o.image_len())).enumerate() {
                    im2col(xb, g, &mut col);
                    // taps (k×c_out) += colᵀ (k×m) · dY rows (m×c_out).
                    gemm_f32(k, co, m, &mut taps, n > 0, (&col, k as isize, 1), (&dyb[q0 * co..][..m * co], 1, co as isize));
                }
            } else {
                // The task's images are contiguous, so their rows form one long sum: from the
                // first image's first interior pixel to the last image's last; the rows between
                // images are ring rows, where dy is zero.
                let rows = task_rows(g, xs.len() / i.image_len());
                if weight_kernel_fits(g, rows) {
                    // One sum per kernel entry over the task's images in order, each image from
                    // its first interior pixel to its last: the ring rows between images, where
                    // dy is zero, are skipped (a fifth of the rows at 8×8), and in narrow images
                    // the ring columns between rows too. Adding x·0 to a sum that starts at +0
                    // changes no bit, so this equals the one long sum over the task's
                    // contiguous rows (tested).
                    for (xb, dyb) in xs.chunks(i.image_len()).zip(dys.chunks(o.image_len())) {
                        weight_grad_image(xb, &dyb[q0 * co..], &mut taps, g, &TapsBlock::all(ci));
                    }
                    return taps;
                }
                for ky in 0..3 {
                    // taps_ky (3·c_in × c_out) = Xᵀ (3·c_in × rows) · dY (rows × c_out), X read
                    // with overlapping rows of stride c_in.
                    let dst = &mut taps[ky * 3 * ci * co..][..3 * ci * co];
                    gemm_f32(3 * ci, co, rows, dst, false, (&xs[ky * wp * ci..], ci as isize, 1), (&dys[q0 * co..], 1, co as isize));
                }
            }
            taps
        })
        .collect();
    taps_to_weight(&sum_in_order(partials, k * co), ci, co)
}

/// The tasks' partial weight gradients added in task order onto zeros: the one order, whatever
/// the pool, so the bits do not depend on the thread count.
fn sum_in_order(partials: Vec<Vec<f32>>, len: usize) -> Vec<f32> {
    let mut taps = vec![0.0f32; len];
    for part in partials {
        for (d, s) in taps.iter_mut().zip(part) {
            *d += s;
        }
    }
    taps
}

/// Whether [`weight_grad`] splits its image tasks into taps blocks: a pool with more threads than
/// tasks, and the halo kernels' sums.
fn weight_grad_split_by_taps(g: &HaloConv) -> bool {
    rayon::current_num_threads() > g.batch.div_ceil(WEIGHT_GRAD_TASK_IMAGES) && !g.via_columns() && weight_kernel_fits(g, g.rows().1)
}

/// The rows of the weight gradient's one long sum over a task of `images` contiguous images
/// (stride 1): from the first image's first interior pixel to the last image's last.
fn task_rows(g: &HaloConv, images: usize) -> usize {
    let i = g.input();
    images * i.hp() * i.wp() - 2 * g.rows().0
}

/// Whether the weight gradient of `g` over `rows` rows takes the halo kernels' sums
/// ([`use_halo_kernels`], and 3·c_in a whole number of the kernel's register tiles).
fn weight_kernel_fits(g: &HaloConv, rows: usize) -> bool {
    use_halo_kernels(g.c_out, rows) && (3 * g.c_in).is_multiple_of(super::halo_conv_avx512::weight_tile_inputs(g.c_out / 16))
}

/// Interior widths up to which the AVX-512 weight gradient skips the ring's columns between
/// image rows: there they are 11 % (16×16) to 22 % (7×7) of the rows and skipping them makes
/// the 32- and 64-channel passes 5–15 % faster; at 28×28 and 32×32 (6–7 %) the shorter runs
/// cost more than they save (the 16-channel pass ran 10–15 % slower).
const SKIP_RING_COLUMNS_MAX_W: usize = 16;

/// One image's weight-gradient terms added onto `taps` by the AVX-512 kernel where the CPU has
/// it, else by its portable twin (the same bits), for the taps of `block`: dy from the first
/// interior pixel; the ring's columns skipped where the image is narrow
/// ([`SKIP_RING_COLUMNS_MAX_W`]; always by the twin, which has no wide runs to keep), the same
/// bits either way (dy's ring is zero). Only where [`weight_kernel_fits`] holds; xb is one
/// input image, dy holds the output image's rows from q0, taps block.len(c_out) values (the
/// kernels assert the sizes).
fn weight_grad_image(xb: &[f32], dy: &[f32], taps: &mut [f32], g: &HaloConv, block: &TapsBlock) {
    let (ci, co, wp) = (g.c_in, g.c_out, g.input().wp());
    let interior = WeightRows::Interior { h: g.h, w: g.w };
    #[cfg(target_arch = "x86_64")]
    if super::halo_conv_avx512::available() {
        let rows = if g.w <= SKIP_RING_COLUMNS_MAX_W { interior } else { WeightRows::All(g.rows().1) };
        // SAFETY: the feature is detected; c_out and c_in fit the kernel's tiles (the caller's
        // `weight_kernel_fits`), the block's inputs its smaller tiles (`taps_blocks`); the
        // kernel asserts the sizes, for either set of rows (both end at the image's last
        // interior pixel).
        unsafe { super::halo_conv_avx512::weight_grad_rows(xb, dy, taps, rows, ci, co, wp, block) };
        return;
    }
    super::halo_conv_portable::weight_grad_rows(xb, dy, taps, interior, ci, co, wp, block);
}

/// Most blocks one kernel row's taps are cut into ([`taps_blocks`]): 72 tasks at batch 128
/// (4 image tasks × 3 kernel rows × 6); more would shrink a block below a few register tiles.
const MAX_BLOCKS_PER_KERNEL_ROW: usize = 6;

/// The taps blocks each image task of [`weight_grad_split`] is cut into for a pool of
/// `threads`: by kernel row, then each row's inputs into p equal runs of the kernel's smaller
/// tile ([`weight_block_inputs`](super::halo_conv_avx512::weight_block_inputs)), p a divisor of
/// the runs available and at most [`MAX_BLOCKS_PER_KERNEL_ROW`], the one whose equal tasks the
/// pool finishes in the least time (⌈tasks / threads⌉ rounds of 1 / tasks of the pass; the
/// smaller p on a tie: fewer passes over x and dy). Which blocks there are changes no bit (each
/// tap is its own sum); only how many threads can share the pass.
fn taps_blocks(g: &HaloConv, threads: usize) -> Vec<TapsBlock> {
    let image_tasks = g.batch.div_ceil(WEIGHT_GRAD_TASK_IMAGES);
    let unit = super::halo_conv_avx512::weight_block_inputs(g.c_out / 16);
    let units = 3 * g.c_in / unit;
    // Time in units of the whole pass: rounds / tasks, compared as fractions r1·t2 < r2·t1.
    let time = |p: usize| {
        let tasks = image_tasks * 3 * p;
        (tasks.div_ceil(threads.max(1)), tasks)
    };
    let per_row = (1..=MAX_BLOCKS_PER_KERNEL_ROW.min(units))
        .filter(|p| units.is_multiple_of(*p))
        .reduce(|best, p| {
            let ((rb, tb), (rp, tp)) = (time(best), time(p));
            if rp * tb < rb * tp { p } else { best }
        })
        .unwrap_or(1);
    (0..3)
        .flat_map(|ky| {
            (0..per_row).map(move |b| TapsBlock { kys: ky..ky + 1, inputs: b * units / per_row * unit..(b + 1) * units / per_row * unit })
        })
        .collect()
}

/// The halo kernels' weight gradient of [`weight_grad`] with each image task split into taps
/// blocks ([`taps_blocks`]), for pools with more threads than image tasks (4 at batch 128,
/// whatever the core count: the image tasks are fixed so that the bits do not depend on the
/// pool): 12 to 72 tasks at batch 128. Every taps entry is the same sum in the same order,
/// over the same images, the image tasks' partial sums added in the same order, so the result
/// is bitwise that of the unsplit pass (tested). Not used on fewer threads: on 2 cores
/// splitting by kernel row cost 6–7 % (the blocks no longer share their rows of x and dy in
/// cache).
fn weight_grad_split(x: &[f32], dy: &[f32], g: &HaloConv) -> Vec<f32> {
    let (i, o) = (g.input(), g.output());
    let (ci, co) = (g.c_in, g.c_out);
    let (q0, _) = g.rows();
    let k = 3 * ci;
    let blocks = taps_blocks(g, rayon::current_num_threads());
    let (xs, dys) = (x.chunks(WEIGHT_GRAD_TASK_IMAGES * i.image_len()), dy.chunks(WEIGHT_GRAD_TASK_IMAGES * o.image_len()));
    let tasks: Vec<(&[f32], &[f32], &TapsBlock)> = xs.zip(dys).flat_map(|(x, dy)| blocks.iter().map(move |b| (x, dy, b))).collect();
    let parts: Vec<Vec<f32>> = tasks
        .into_par_iter()
        .map(|(xs, dys, block)| {
            let mut taps = vec![0.0f32; block.len(co)];
            for (xb, dyb) in xs.chunks(i.image_len()).zip(dys.chunks(o.image_len())) {
                // xb is one image, dyb from q0 holds m rows.
                weight_grad_image(xb, &dyb[q0 * co..], &mut taps, g, block);
            }
            taps
        })
        .collect();
    // Image task by image task, in order, as the unsplit pass adds its partial sums.
    let mut taps = vec![0.0f32; 9 * ci * co];
    for (part, block) in parts.iter().zip(blocks.iter().cycle()) {
        let ky = block.kys.start;
        let dst = &mut taps[(ky * k + block.inputs.start) * co..][..block.inputs.len() * co];
        for (d, s) in dst.iter_mut().zip(part) {
            *d += s;
        }
    }
    taps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits;
    use crate::conv2d_cpu::{ConvGeometry, conv2d_forward, conv2d_input_grad, conv2d_weight_grad};
    use crate::halo::{halo_to_nchw, nchw_to_halo, ring_is_zero};

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0) * 0.37).collect()
    }

    fn assert_close(what: &str, a: &[f32], b: &[f32]) {
        crate::assert_close(what, a, b, 2e-5);
    }

    /// All three passes against the NCHW kernels (themselves tested against burn's conv2d).
    fn check(batch: usize, c_in: usize, h: usize, w: usize, c_out: usize, stride: usize) {
        let what = format!("b{batch} {c_in}→{c_out} {h}×{w} s{stride}");
        let g = HaloConv { batch, c_in, h, w, c_out, stride };
        let r = ConvGeometry { batch, c_in, h, w, c_out, kh: 3, kw: 3, stride, pad: 1, groups: 1 };
        let (x, wt) = (values(batch * c_in * h * w, 1), values(c_out * c_in * 9, 2));
        let dy = values(batch * c_out * r.oh() * r.ow(), 3);
        let (i, o) = (g.input(), g.output());
        let (xh, dyh) = (nchw_to_halo(&x, batch, c_in, h, w), nchw_to_halo(&dy, batch, c_out, r.oh(), r.ow()));
        let y = halo_conv_forward(&xh, &wt, &g);
        assert!(ring_is_zero(&y, &o), "{what}: forward ring");
        assert_close(&format!("{what} forward"), &halo_to_nchw(&y, &o), &conv2d_forward(&x, &wt, &r));
        // A junk ring on dy must not matter.
        let mut dirty = dyh.clone();
        dirty[0] = 5.0;
        dirty[o.image_len() - 1] = -3.0;
        let dx = halo_conv_input_grad(&dirty, &wt, &g);
        assert!(ring_is_zero(&dx, &i), "{what}: input-gradient ring");
        assert_close(&format!("{what} dx"), &halo_to_nchw(&dx, &i), &conv2d_input_grad(&dy, &wt, &r));
        assert_close(&format!("{what} dw"), &halo_conv_weight_grad(&xh, &dirty, &g), &conv2d_weight_grad(&x, &dy, &r));
    }

    #[test]
    fn matches_the_nchw_kernels() {
        check(3, 16, 8, 8, 16, 1); // overlapping rows
        check(2, 8, 5, 7, 12, 1); // odd, unequal sides
        check(2, 16, 6, 6, 32, 1); // 32 and 64 output channels: the AVX-512 kernel's other tiles
        check(2, 8, 4, 5, 64, 1);
        check(2, 3, 6, 6, 16, 1); // a narrow stem
        check(2, 3, 6, 6, 8, 1); // a narrow stem: column matrix
        check(3, 8, 8, 8, 16, 2); // stride 2
        check(2, 8, 7, 5, 8, 2); // stride 2, odd sides
        check(WEIGHT_GRAD_TASK_IMAGES + 3, 8, 4, 4, 8, 1); // more than one weight-gradient task
        check(WEIGHT_GRAD_TASK_IMAGES + 3, 8, 6, 6, 16, 1); // and longer than one AVX-512 row block
    }

    /// The column matrix's adjoint compiled for AVX-512 adds the same bits as the baseline
    /// build (overlapping windows at stride 1 and 2, a runtime channel count).
    #[test]
    fn col2im_avx512_build_gives_the_baseline_bits() {
        for (c_in, stride) in [(8, 2), (16, 2), (3, 1), (5, 2)] {
            let g = HaloConv { batch: 1, c_in, h: 7, w: 6, c_out: 8, stride };
            let col = values(g.rows().1 * 9 * c_in, 18);
            let (mut wide, mut base) = (values(g.input().len(), 19), values(g.input().len(), 19));
            let (q0, m) = g.rows();
            col2im_add(&col, &g, q0..q0 + m, &mut wide);
            col2im_add::baseline(&col, &g, q0..q0 + m, &mut base);
            assert_eq!(bits(&wide), bits(&base), "{c_in} channels, stride {stride}");
        }
    }

    /// The input gradient with another gradient added image by image is, bit for bit, the
    /// input gradient then that add over the whole tensor (burn's accumulation), at both
    /// strides and through both paths; and the add's AVX-512 build gives the baseline's bits
    /// (−0 and +0 included).
    #[test]
    fn input_gradient_plus_another_is_the_separate_add() {
        for (c_in, c_out, stride) in [(16, 16, 1), (8, 16, 2), (5, 12, 1)] {
            let g = HaloConv { batch: 5, c_in, h: 7, w: 6, c_out, stride };
            let (i, o) = (g.input(), g.output());
            let dy = nchw_to_halo(&values(5 * c_out * o.h * o.w, 21), 5, c_out, o.h, o.w);
            let w = values(c_out * c_in * 9, 22);
            let other = nchw_to_halo(&values(5 * c_in * 42, 23), 5, c_in, 7, 6);
            let fused = halo_conv_backward(&[], &dy, &w, &g, Wanted::InputGrad(Some(&other))).0.unwrap();
            let mut separate = halo_conv_input_grad(&dy, &w, &g);
            for (a, b) in separate.iter_mut().zip(&other) {
                *a += b;
            }
            assert_eq!(fused.len(), i.len());
            assert_eq!(bits(&fused), bits(&separate), "{c_in}→{c_out}, stride {stride}");
        }
        let (mut own, mut other) = (values(1003, 24), values(1003, 25));
        own[..4].copy_from_slice(&[0.0, -0.0, 0.0, -0.0]);
        other[..4].copy_from_slice(&[-0.0, -0.0, 0.0, 0.0]);
        let mut base = own.clone();
        add_in_place(&mut own, &other);
        add_in_place::baseline(&mut base, &other);
        assert_eq!(bits(&own), bits(&base), "add: the two builds");
    }

    /// The fused evaluation form gives the same bits as the convolution then the affine op.
    #[test]
    fn epilogue_equals_the_separate_affine_op() {
        use crate::halo_norm_cpu::halo_affine_forward;
        for (c_out, stride) in [(16, 1), (12, 1), (16, 2)] {
            let g = HaloConv { batch: 5, c_in: 8, h: 7, w: 6, c_out, stride };
            let (i, o) = (g.input(), g.output());
            let x = nchw_to_halo(&values(5 * 8 * 42, 7), 5, 8, 7, 6);
            let w = values(c_out * 8 * 9, 8);
            let (scale, shift) = (values(c_out, 9), values(c_out, 10));
            let residual = nchw_to_halo(&values(5 * c_out * o.h * o.w, 11), 5, c_out, o.h, o.w);
            assert_eq!(x.len(), i.len());
            for (res, relu) in [(None, true), (Some(&residual[..]), true), (Some(&residual[..]), false)] {
                let fused = halo_conv_forward_then(&x, &w, &g, Some(Epilogue { scale: &scale, shift: &shift, residual: res, relu }));
                let separate = halo_affine_forward(&halo_conv_forward(&x, &w, &g), &scale, &shift, res, relu, &o);
                assert_eq!(bits(&fused), bits(&separate), "{c_out} out, stride {stride}, residual {}, relu {relu}", res.is_some());
            }
        }
    }

    /// The image kernel gives the bits of the row kernel it replaced, interior pixels at every
    /// size and width it takes (bands and column blocks moved back at the edges), for each
    /// register tile.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn image_kernel_equals_the_row_kernel_bit_for_bit() {
        use crate::halo_conv_avx512::{conv_image, conv_rows, image_kernel_fits};
        if !crate::halo_conv_avx512::available() {
            return;
        }
        let cases = [
            (16, 16, 32, 32),
            (16, 16, 28, 28),
            (16, 16, 3, 8),
            (8, 16, 7, 11),
            (3, 16, 5, 9),
            (32, 16, 4, 17),
            (16, 32, 16, 16),
            (32, 32, 14, 14),
            (32, 32, 5, 13),
            (32, 64, 8, 8),
            (64, 64, 7, 7),
            (8, 64, 2, 6),
            (16, 64, 3, 16),
        ];
        for (c_in, c_out, h, w) in cases {
            assert!(image_kernel_fits(c_out, h, w), "{c_out} channels, {h}×{w}");
            let g = HaloConv { batch: 1, c_in, h, w, c_out, stride: 1 };
            let (i, o) = (g.input(), g.output());
            let x = nchw_to_halo(&values(c_in * h * w, 14), 1, c_in, h, w);
            let taps = weight_to_taps(&values(c_out * c_in * 9, 15), c_in, c_out);
            let (q0, m) = g.rows();
            let mut rows = vec![0.0f32; o.len()];
            // SAFETY: the feature is detected; x is one image, rows from q0 holds m rows.
            unsafe { conv_rows(&x, &taps, &mut rows[q0 * c_out..][..m * c_out], m, c_in, c_out, i.wp()) };
            let mut image = vec![f32::NAN; o.len()];
            // SAFETY: the feature is detected, the image fits; sizes are one image each.
            unsafe { conv_image(&x, &taps, &mut image, h, w, c_in, c_out) };
            zero_ring(&mut rows, &o);
            zero_ring(&mut image, &o);
            assert_eq!(bits(&image), bits(&rows), "{c_in}→{c_out}, {h}×{w}");
        }
    }

    /// The AVX-512 weight gradient sums each image's interior pixels only, skipping the ring
    /// rows between images and the ring columns between image rows: the bits of the one long
    /// sum over the task's contiguous rows, which it replaced (x·0 added to a sum that starts
    /// at +0 changes none), at 8×8 to 32×32 and in bands of image rows (32×32).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn skipping_the_ring_rows_between_images_changes_no_bit() {
        if !crate::halo_conv_avx512::available() {
            return;
        }
        for (c_in, c_out, side) in [(16, 16, 8), (16, 32, 6), (32, 64, 8), (16, 16, 32), (32, 32, 16), (64, 64, 7), (8, 16, 28)] {
            let g = HaloConv { batch: 5, c_in, h: side, w: side, c_out, stride: 1 };
            let (i, o) = (g.input(), g.output());
            let x = nchw_to_halo(&values(5 * c_in * side * side, 12), 5, c_in, side, side);
            let dy = nchw_to_halo(&values(5 * c_out * side * side, 13), 5, c_out, side, side);
            let (q0, _) = g.rows();
            let rows = 5 * i.hp() * i.wp() - 2 * q0;
            let mut long = vec![0.0f32; 9 * c_in * c_out];
            // SAFETY: the feature is detected; x holds the whole batch, dy from q0 holds `rows`
            // rows, long 9·c_in·c_out.
            unsafe {
                crate::halo_conv_avx512::weight_grad_rows(
                    &x,
                    &dy[q0 * c_out..],
                    &mut long,
                    WeightRows::All(rows),
                    c_in,
                    c_out,
                    i.wp(),
                    &TapsBlock::all(c_in),
                )
            };
            assert_eq!(o.len(), dy.len());
            assert_eq!(
                bits(&halo_conv_weight_grad(&x, &dy, &g)),
                bits(&taps_to_weight(&long, c_in, c_out)),
                "{c_in}→{c_out} at {side}×{side}"
            );
        }
    }

    #[test]
    fn bitwise_the_same_on_any_number_of_threads() {
        // 16 output channels: the AVX-512 kernels where the CPU has them; 8: the gemm crate;
        // stride 2 with 16 → 32 channels: the stride-2 backward kernels; 16 → 16 and 16 → 32
        // split each kernel row's taps into up to 6 blocks (both tile sizes).
        for (stride, c_in, c_out, side) in [(1, 8, 16, 6), (1, 16, 16, 5), (1, 16, 32, 4), (1, 8, 8, 6), (2, 8, 8, 6), (2, 16, 32, 8)] {
            let g = HaloConv { batch: 70, c_in, h: side, w: side, c_out, stride };
            let x = nchw_to_halo(&values(70 * c_in * side * side, 4), 70, c_in, side, side);
            let o = g.output();
            let dy = nchw_to_halo(&values(70 * c_out * o.h * o.w, 5), 70, c_out, o.h, o.w);
            let w = values(c_out * c_in * 9, 6);
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                pool.install(|| (halo_conv_forward(&x, &w, &g), halo_conv_input_grad(&dy, &w, &g), halo_conv_weight_grad(&x, &dy, &g)))
            };
            let (y1, dx1, dw1) = on(1);
            // 70 images are 3 weight-gradient tasks: from 4 threads on, the halo kernels' pass
            // splits each into taps blocks: by kernel row, and on the larger pools each row's
            // inputs into 2, 3 or 6 runs where the inputs allow (`taps_blocks`).
            for threads in [2, 3, 4, 7, 16, 40, 64] {
                let (y, dx, dw) = on(threads);
                assert_eq!(
                    (bits(&y), bits(&dx), bits(&dw)),
                    (bits(&y1), bits(&dx1), bits(&dw1)),
                    "stride {stride}, {c_in} → {c_out}, {threads} threads"
                );
            }
        }
    }

    /// The taps blocks of a split weight gradient cover every tap once, in the kernel's tile
    /// sizes and equal runs, and there are enough for the pool: at batch 128 (4 image tasks)
    /// 32 threads get 72 or 48 tasks in every stage of the ResNet (16, 32 and 64 channels),
    /// which they finish in the rounds of 1 / 24 of the pass (3 / 72 or 2 / 48).
    #[test]
    fn taps_blocks_cover_every_tap_once_and_feed_32_threads_at_batch_128() {
        for (c_in, c_out) in [(16, 16), (16, 32), (32, 32), (32, 64), (64, 64)] {
            let g = HaloConv { batch: 128, c_in, h: 8, w: 8, c_out, stride: 1 };
            for threads in [5, 12, 13, 32, 64, 256] {
                let blocks = taps_blocks(&g, threads);
                let mut seen = vec![0u8; 9 * c_in];
                for b in &blocks {
                    assert_eq!(b.kys.len(), 1);
                    assert_eq!(b.inputs.len(), blocks[0].inputs.len(), "equal blocks");
                    assert!(b.inputs.len().is_multiple_of(crate::halo_conv_avx512::weight_block_inputs(c_out / 16)), "{b:?}");
                    for j in b.inputs.clone() {
                        seen[b.kys.start * 3 * c_in + j] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{c_in} → {c_out}, {threads} threads");
                // The pool finishes the tasks within twice the time of an ideal split.
                let (tasks, ideal) = (4 * blocks.len(), threads.min(4 * 3 * MAX_BLOCKS_PER_KERNEL_ROW));
                assert!(tasks.div_ceil(threads) * ideal <= 2 * tasks, "{c_in} → {c_out}: {tasks} tasks for {threads} threads");
            }
            let tasks = 4 * taps_blocks(&g, 32).len();
            assert!(tasks.div_ceil(32) * 24 == tasks, "{c_in} → {c_out}: {tasks} tasks on 32 threads");
            // Up to the image tasks' count the pass is not split at all; at 12 threads the
            // kernel rows suffice.
            assert_eq!(taps_blocks(&g, 12).len(), 3, "{c_in} → {c_out}");
        }
    }

    /// The stride-2 image kernel gives the bits of the column path (im2col + the `gemm`
    /// crate) it replaced in the forward pass, at the ResNet's stride-2 shapes (32×32 and 28×28
    /// inputs and their halves, odd sizes), output widths that take each tile (8, 7, 4), and
    /// the largest input width it is used for (`STRIDE2_IMAGE_MAX_C_IN`).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn stride2_image_kernel_equals_the_column_path_bit_for_bit() {
        use crate::halo_conv_avx512::{conv_image_stride2, stride2_kernel_fits};
        if !crate::halo_conv_avx512::available() {
            return;
        }
        let cases = [
            (16, 32, 32, 32),
            (32, 64, 16, 16),
            (16, 32, 28, 28),
            (32, 64, 14, 14),
            (8, 16, 7, 9),
            (16, 64, 13, 16),
            (3, 32, 15, 8),
            (32, 16, 8, 8),
        ];
        for (c_in, c_out, h, w) in cases {
            let g = HaloConv { batch: 1, c_in, h, w, c_out, stride: 2 };
            let o = g.output();
            assert!(stride2_kernel_fits(c_out, o.h, o.w), "{c_out} channels, {}×{}", o.h, o.w);
            let x = nchw_to_halo(&values(c_in * h * w, 16), 1, c_in, h, w);
            let taps = weight_to_taps(&values(c_out * c_in * 9, 17), c_in, c_out);
            let mut columns = vec![0.0f32; o.len()];
            let mut col = vec![0.0f32; g.rows().1 * 9 * c_in];
            forward_columns(&x, &taps, &g, &mut col, &mut columns);
            let mut image = vec![f32::NAN; o.len()];
            // SAFETY: the feature is detected, the output fits; sizes are one image each.
            unsafe { conv_image_stride2(&x, &taps, &mut image, h, w, c_in, c_out) };
            zero_ring(&mut columns, &o);
            zero_ring(&mut image, &o);
            assert_eq!(bits(&image), bits(&columns), "{c_in}→{c_out}, {h}×{w}");
        }
    }

    /// The stride-2 backward kernels give the bits of the column path (im2col, the `gemm`
    /// crate and col2im, written out here as the passes ran before them) at the ResNets'
    /// stride-2 shapes (32×32, 16×16, 28×28 and 14×14 inputs), odd sides and each row tile
    /// (8, 7 and 4 pixels), over more than one weight-gradient task of images.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn stride2_backward_kernels_equal_the_column_path_bit_for_bit() {
        use crate::halo_conv_stride2_avx512::{columns_fit, weight_fits};
        if !crate::halo_conv_avx512::available() {
            return;
        }
        let cases = [
            (3, 16, 32, 32, 32),
            (3, 32, 64, 16, 16),
            (2, 16, 32, 28, 28),
            (WEIGHT_GRAD_TASK_IMAGES + 3, 32, 64, 14, 14),
            (2, 16, 16, 13, 9),
            (2, 32, 32, 9, 10),
        ];
        for (batch, c_in, c_out, h, w) in cases {
            let what = format!("b{batch} {c_in}→{c_out} {h}×{w}");
            let g = HaloConv { batch, c_in, h, w, c_out, stride: 2 };
            let (i, o) = (g.input(), g.output());
            assert!(columns_fit(o.w, c_in) && weight_fits(h, w, c_in, c_out), "{what}: the kernels take it");
            let x = nchw_to_halo(&values(batch * c_in * h * w, 21), batch, c_in, h, w);
            let dy = nchw_to_halo(&values(batch * c_out * o.h * o.w, 22), batch, c_out, o.h, o.w);
            let weight = values(c_out * c_in * 9, 23);
            let taps = weight_to_taps(&weight, c_in, c_out);
            let (q0, m) = g.rows();
            let k = 9 * c_in;
            // The column path: per image, dcol = dY·tapsᵀ then col2im; the weight gradient per
            // task of images, colᵀ·dY accumulated image by image, the tasks added in order.
            let mut dx = vec![0.0f32; i.len()];
            let mut col = vec![0.0f32; m * k];
            for (dxb, dyb) in dx.chunks_mut(i.image_len()).zip(dy.chunks(o.image_len())) {
                gemm_f32(m, k, c_out, &mut col, false, (&dyb[q0 * c_out..][..m * c_out], 1, c_out as isize), (&taps, c_out as isize, 1));
                col2im_add(&col, &g, q0..q0 + m, dxb);
                zero_ring(dxb, &i);
            }
            let mut dw = vec![0.0f32; k * c_out];
            for (xs, dys) in x.chunks(WEIGHT_GRAD_TASK_IMAGES * i.image_len()).zip(dy.chunks(WEIGHT_GRAD_TASK_IMAGES * o.image_len())) {
                let mut part = vec![0.0f32; k * c_out];
                for (n, (xb, dyb)) in xs.chunks(i.image_len()).zip(dys.chunks(o.image_len())).enumerate() {
                    im2col(xb, &g, &mut col);
                    gemm_f32(k, c_out, m, &mut part, n > 0, (&col, k as isize, 1), (&dyb[q0 * c_out..][..m * c_out], 1, c_out as isize));
                }
                for (d, s) in dw.iter_mut().zip(part) {
                    *d += s;
                }
            }
            let (kernel_dx, kernel_dw) = halo_conv_backward(&x, &dy, &weight, &g, Wanted::Both(None));
            assert_eq!(bits(&kernel_dx.expect("asked for")), bits(&dx), "{what}: input gradient");
            assert_eq!(bits(&kernel_dw.expect("asked for")), bits(&taps_to_weight(&dw, c_in, c_out)), "{what}: weight gradient");
        }
    }
}
