//! BatchNorm, the residual add and ReLU as one pass over halo tensors
//! ([`halo`](super::halo)), forward and backward.
//!
//! In the CIFAR ResNet every convolution is followed by BatchNorm, ReLU and sometimes the
//! shortcut's add; as separate ops these are about a dozen full passes over each activation per
//! step, forward and backward, and at 2–8 MB an activation they cost as much time as the
//! convolutions. Here:
//!
//! - forward: y = act(x·scale + shift [+ residual]) in one pass; in training, scale and shift
//!   come from the batch statistics, gathered in one more pass (sum and sum of squares,
//!   shifted by a first estimate of the mean so that the difference does not cancel);
//! - backward: one pass for the per-channel sums (Σg, Σg·(x − centre)) with g = dy masked where
//!   ReLU was off, one pass writing dx (and the residual's gradient, which is g).
//!
//! The per-pixel loops are plain Rust, compiled three times: for baseline x86-64, with AVX2 and
//! FMA, and with AVX-512F enabled, the widest the kernels may use running ([`vector_builds`];
//! the same IEEE operations in the same order, so the same bits, tested). Built for SSE2 alone
//! they were bound by their instruction count rather than by memory.
//!
//! Rows of `w·c` values are summed in f32, rows into f64 (131,072 values per channel at batch
//! 128 and 32×32). Sums run over fixed groups of images, added in order, so results do not
//! depend on the thread count. Only interior pixels are read; every output has a zero ring.

use rayon::prelude::*;

use super::cpu_common::{uninit_f32, vector_builds};
use super::halo::{HaloGeometry, zero_ring_before_row};

/// Images per reduction task (fixed: the order of the sums does not depend on the pool).
const TASK_IMAGES: usize = 8;

/// Per-channel (Σ a, Σ b) over interior pixels, where `row` writes one interior row's terms
/// into two zeroed f32 buffers. The rows' f32 sums are added into f64 in tasks of
/// [`TASK_IMAGES`] images; on a pool with more threads than those tasks (16 at batch 128) the
/// rows' sums are first taken image by image on every thread and stored ([`rows_sums`]), and
/// the tasks then add the stored values: the same f32 values added in the same order, so the
/// same bits whatever the pool (tested).
fn channel_sums(g: &HaloGeometry, row: impl Fn(usize, usize, &mut [f32], &mut [f32]) + Sync) -> (Vec<f64>, Vec<f64>) {
    let c = g.c;
    let tasks = g.batch.div_ceil(TASK_IMAGES);
    let stored = (rayon::current_num_threads() > tasks).then(|| rows_sums(g, &row));
    let partials: Vec<(Vec<f64>, Vec<f64>)> = (0..tasks)
        .into_par_iter()
        .map(|t| {
            let (mut a, mut b) = (vec![0.0f64; c], vec![0.0f64; c]);
            let (mut ra, mut rb) = (vec![0.0f32; c], vec![0.0f32; c]);
            for image in t * TASK_IMAGES..((t + 1) * TASK_IMAGES).min(g.batch) {
                for (r, offset) in g.interior_rows().enumerate() {
                    let (ra, rb): (&[f32], &[f32]) = match &stored {
                        Some(sums) => sums[(image * g.h + r) * 2 * c..][..2 * c].split_at(c),
                        None => {
                            ra.fill(0.0);
                            rb.fill(0.0);
                            row(image * g.image_len() + offset, g.w * c, &mut ra, &mut rb);
                            (&ra, &rb)
                        }
                    };
                    for ch in 0..c {
                        a[ch] += ra[ch] as f64;
                        b[ch] += rb[ch] as f64;
                    }
                }
            }
            (a, b)
        })
        .collect();
    let (mut a, mut b) = (vec![0.0f64; c], vec![0.0f64; c]);
    for (pa, pb) in partials {
        for ch in 0..c {
            a[ch] += pa[ch];
            b[ch] += pb[ch];
        }
    }
    (a, b)
}

/// Every interior row's two f32 sums from `row`, image by image on the pool (one task per
/// image: 128 at batch 128), laid out [image][row][a then b][channel]: 2·c values per row,
/// 256 KiB at batch 128, 32×32 and 16 channels.
fn rows_sums(g: &HaloGeometry, row: &(impl Fn(usize, usize, &mut [f32], &mut [f32]) + Sync)) -> Vec<f32> {
    let c = g.c;
    let mut sums = vec![0.0f32; g.batch * g.h * 2 * c];
    sums.par_chunks_mut(g.h * 2 * c).enumerate().for_each(|(image, image_sums)| {
        for (offset, pair) in g.interior_rows().zip(image_sums.chunks_mut(2 * c)) {
            let (ra, rb) = pair.split_at_mut(c);
            row(image * g.image_len() + offset, g.w * c, ra, rb);
        }
    });
    sums
}

/// Per-channel batch mean and biased variance of the interior pixels.
pub fn halo_moments(x: &[f32], g: &HaloGeometry) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.len(), "halo batch norm: input size");
    let centre = moments_centre(&x[..g.image_len()], g);
    moments_from_rows(g, &centre, |at, len, s, q| row_moments(&x[at..][..len], &centre, s, q))
}

/// [`halo_moments`] from each interior row's Σ (x − centre) and Σ (x − centre)² per channel,
/// which `row` writes into two zeroed buffers given the row's offset in x and its length (as
/// [`row_moments`] computes them): the rows are added in the same tasks and order whoever
/// computed them, so a pass that takes them while the data is in cache gives the same bits.
pub(crate) fn moments_from_rows(
    g: &HaloGeometry,
    centre: &[f32],
    row: impl Fn(usize, usize, &mut [f32], &mut [f32]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let (s, q) = channel_sums(g, row);
    let n = g.count() as f64;
    (0..g.c)
        .map(|ch| {
            let m = s[ch] / n;
            ((centre[ch] as f64 + m) as f32, (q[ch] / n - m * m).max(0.0) as f32)
        })
        .unzip()
}

vector_builds! {
    /// The first image's mean per channel (f64 sums of its interior, rounded to f32): the
    /// centre subtracted before squaring, so that Σ (x − centre)² does not cancel.
    pub(crate) fn moments_centre(first_image: &[f32], g: &HaloGeometry) -> Vec<f32> {
        let c = g.c;
        let mut centre = vec![0.0f64; c];
        for offset in g.interior_rows() {
            for px in first_image[offset..][..g.w * c].chunks_exact(c) {
                for ch in 0..c {
                    centre[ch] += px[ch] as f64;
                }
            }
        }
        centre.iter().map(|s| (s / (g.h * g.w) as f64) as f32).collect()
    }
}

vector_builds! {
    /// One interior row's Σ (x − centre) and Σ (x − centre)² per channel, into `s` and `q`
    /// (which are zero).
    pub(crate) fn row_moments(row: &[f32], centre: &[f32], s: &mut [f32], q: &mut [f32]) {
        match centre.len() {
            16 => moments_row::<16>(row, centre, s, q),
            32 => moments_row::<32>(row, centre, s, q),
            64 => moments_row::<64>(row, centre, s, q),
            _ => moments_row_any(row, centre, s, q),
        }
    }
}

/// One row's Σ (x − centre) and Σ (x − centre)² per channel, for C channels (accumulators
/// in registers: the runtime-width loop kept them in memory and ran at half the speed).
#[inline(always)]
fn moments_row<const C: usize>(row: &[f32], centre: &[f32], s: &mut [f32], q: &mut [f32]) {
    let centre: &[f32; C] = centre.try_into().expect("channels");
    let (mut sl, mut ql) = ([0.0f32; C], [0.0f32; C]);
    for px in row.chunks_exact(C) {
        let px: &[f32; C] = px.try_into().expect("pixel");
        for ch in 0..C {
            let v = px[ch] - centre[ch];
            sl[ch] += v;
            ql[ch] += v * v;
        }
    }
    s.copy_from_slice(&sl);
    q.copy_from_slice(&ql);
}

/// [`moments_row`] for any channel count.
#[inline(always)]
fn moments_row_any(row: &[f32], centre: &[f32], s: &mut [f32], q: &mut [f32]) {
    let c = centre.len();
    for px in row.chunks_exact(c) {
        for ch in 0..c {
            let v = px[ch] - centre[ch];
            s[ch] += v;
            q[ch] += v * v;
        }
    }
}

/// One row's Σ g and Σ g·(x − centre) per channel, g = dy masked by ReLU, for C channels.
#[inline(always)]
fn grad_sums_row<const C: usize>(x: &[f32], y: &[f32], dy: &[f32], centre: &[f32], relu: bool, sg: &mut [f32], sgx: &mut [f32]) {
    let centre: &[f32; C] = centre.try_into().expect("channels");
    let (mut a, mut b) = ([0.0f32; C], [0.0f32; C]);
    for ((xp, yp), dp) in x.chunks_exact(C).zip(y.chunks_exact(C)).zip(dy.chunks_exact(C)) {
        let (xp, yp, dp): (&[f32; C], &[f32; C], &[f32; C]) =
            (xp.try_into().expect("pixel"), yp.try_into().expect("pixel"), dp.try_into().expect("pixel"));
        for ch in 0..C {
            let gv = masked(dp[ch], yp[ch], relu);
            a[ch] += gv;
            b[ch] += gv * (xp[ch] - centre[ch]);
        }
    }
    sg.copy_from_slice(&a);
    sgx.copy_from_slice(&b);
}

/// [`grad_sums_row`] for any channel count.
#[inline(always)]
fn grad_sums_row_any(x: &[f32], y: &[f32], dy: &[f32], centre: &[f32], relu: bool, sg: &mut [f32], sgx: &mut [f32]) {
    let c = centre.len();
    for ((xp, yp), dp) in x.chunks_exact(c).zip(y.chunks_exact(c)).zip(dy.chunks_exact(c)) {
        for ch in 0..c {
            let gv = masked(dp[ch], yp[ch], relu);
            sg[ch] += gv;
            sgx[ch] += gv * (xp[ch] - centre[ch]);
        }
    }
}

/// y = act(x·scale + shift [+ residual]) on the interior, zero on the ring; act is ReLU or
/// the identity.
pub fn halo_affine_forward(x: &[f32], scale: &[f32], shift: &[f32], residual: Option<&[f32]>, relu: bool, g: &HaloGeometry) -> Vec<f32> {
    assert_eq!(x.len(), g.len(), "halo affine: input size");
    assert_eq!((scale.len(), shift.len()), (g.c, g.c), "halo affine: parameter size");
    if let Some(r) = residual {
        assert_eq!(r.len(), g.len(), "halo affine: residual size");
    }
    // SAFETY: every value is written before y is read or returned: interior and ring by
    // affine_image.
    let mut y = unsafe { uninit_f32(g.len()) };
    y.par_chunks_mut(g.image_len()).zip(x.par_chunks(g.image_len())).enumerate().for_each(|(b, (yb, xb))| {
        affine_image(yb, Some(xb), residual.map(|r| &r[b * g.image_len()..][..g.image_len()]), scale, shift, relu, true, g);
    });
    y
}

/// One image's interior, in place: v ← act(v·scale + shift [+ residual]); the ring is left as
/// it is. The convolution applies this to each image as it finishes (evaluation), while the
/// image is still in cache; [`halo_affine_forward`] runs the same arithmetic from x to a new
/// tensor, so both give the same bits.
pub fn halo_affine_in_place(image: &mut [f32], residual: Option<&[f32]>, scale: &[f32], shift: &[f32], relu: bool, g: &HaloGeometry) {
    affine_image(image, None, residual, scale, shift, relu, false, g);
}

vector_builds! {
    /// out ← act(src·scale + shift [+ residual]) on one image's interior, src = out when `None`;
    /// with `ring`, the ring zeroed too (in the same pass).
    fn affine_image(
        out: &mut [f32],
        src: Option<&[f32]>,
        residual: Option<&[f32]>,
        scale: &[f32],
        shift: &[f32],
        relu: bool,
        ring: bool,
        g: &HaloGeometry,
    ) {
        let (c, len) = (g.c, g.w * g.c);
        for (r, offset) in (1..).zip(g.interior_rows()) {
            if ring {
                zero_ring_before_row(out, g, r);
            }
            let row = &mut out[offset..][..len];
            let (src, res) = (src.map(|s| &s[offset..][..len]), residual.map(|r| &r[offset..][..len]));
            match c {
                16 => affine_row::<16>(row, src, res, scale, shift, relu),
                32 => affine_row::<32>(row, src, res, scale, shift, relu),
                64 => affine_row::<64>(row, src, res, scale, shift, relu),
                _ => affine_row_any(row, src, res, scale, shift, relu, c),
            }
        }
        if ring {
            zero_ring_before_row(out, g, g.h + 1);
        }
    }
}

/// One interior row of [`affine_image`], for C channels.
#[inline(always)]
fn affine_row<const C: usize>(row: &mut [f32], src: Option<&[f32]>, res: Option<&[f32]>, scale: &[f32], shift: &[f32], relu: bool) {
    let (scale, shift): (&[f32; C], &[f32; C]) = (scale.try_into().expect("channels"), shift.try_into().expect("channels"));
    for p in 0..row.len() / C {
        let x: [f32; C] = match src {
            Some(s) => s[p * C..][..C].try_into().expect("pixel"),
            None => row[p * C..][..C].try_into().expect("pixel"),
        };
        let mut v = [0.0f32; C];
        for ch in 0..C {
            v[ch] = x[ch] * scale[ch] + shift[ch];
        }
        if let Some(r) = res {
            let r: &[f32; C] = r[p * C..][..C].try_into().expect("pixel");
            for ch in 0..C {
                v[ch] += r[ch];
            }
        }
        if relu {
            for e in v.iter_mut() {
                *e = e.max(0.0);
            }
        }
        row[p * C..][..C].copy_from_slice(&v);
    }
}

/// [`affine_row`] for any channel count.
#[inline(always)]
fn affine_row_any(row: &mut [f32], src: Option<&[f32]>, res: Option<&[f32]>, scale: &[f32], shift: &[f32], relu: bool, c: usize) {
    for i in 0..row.len() {
        let ch = i % c;
        let x = src.map_or(row[i], |s| s[i]);
        let v = x * scale[ch] + shift[ch] + res.map_or(0.0, |r| r[i]);
        row[i] = if relu { v.max(0.0) } else { v };
    }
}

vector_builds! {
    /// One image of [`halo_grad_apply`]: dx (and the residual's gradient, g) with zero rings.
    pub(crate) fn grad_apply_image(
        dxb: &mut [f32],
        drb: Option<&mut [f32]>,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        a: &[f32],
        b: &[f32],
        k: &[f32],
        relu: bool,
        g: &HaloGeometry,
    ) {
        let mut drb = drb;
        let (c, len) = (g.c, g.w * g.c);
        for (r, offset) in (1..).zip(g.interior_rows()) {
            zero_ring_before_row(dxb, g, r);
            if let Some(dr) = drb.as_deref_mut() {
                zero_ring_before_row(dr, g, r);
            }
            let (xs, ys, ds) = (&x[offset..][..len], &y[offset..][..len], &dy[offset..][..len]);
            let out = &mut dxb[offset..][..len];
            let dr = drb.as_deref_mut().map(|d| &mut d[offset..][..len]);
            match c {
                16 => grad_apply_row::<16>(out, dr, xs, ys, ds, a, b, k, relu, c),
                32 => grad_apply_row::<32>(out, dr, xs, ys, ds, a, b, k, relu, c),
                64 => grad_apply_row::<64>(out, dr, xs, ys, ds, a, b, k, relu, c),
                _ => grad_apply_row::<0>(out, dr, xs, ys, ds, a, b, k, relu, c),
            }
        }
        zero_ring_before_row(dxb, g, g.h + 1);
        if let Some(dr) = drb {
            zero_ring_before_row(dr, g, g.h + 1);
        }
    }
}

/// One interior row of [`halo_grad_apply`], for C channels (C = 0: any, given by `c`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn grad_apply_row<const C: usize>(
    out: &mut [f32],
    dres: Option<&mut [f32]>,
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    a: &[f32],
    b: &[f32],
    k: &[f32],
    relu: bool,
    c: usize,
) {
    let c = if C == 0 { c } else { C };
    let (a, b, k) = (&a[..c], &b[..c], &k[..c]);
    match dres {
        Some(dr) => {
            for ((((o, d), xp), yp), dp) in
                out.chunks_exact_mut(c).zip(dr.chunks_exact_mut(c)).zip(x.chunks_exact(c)).zip(y.chunks_exact(c)).zip(dy.chunks_exact(c))
            {
                for ch in 0..c {
                    let gv = masked(dp[ch], yp[ch], relu);
                    o[ch] = a[ch] * gv + b[ch] * xp[ch] + k[ch];
                    d[ch] = gv;
                }
            }
        }
        None => {
            for (((o, xp), yp), dp) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(y.chunks_exact(c)).zip(dy.chunks_exact(c)) {
                for ch in 0..c {
                    o[ch] = a[ch] * masked(dp[ch], yp[ch], relu) + b[ch] * xp[ch] + k[ch];
                }
            }
        }
    }
}

/// dy masked by where the forward's ReLU passed (y > 0), or dy itself without ReLU.
#[inline(always)]
fn masked(dy: f32, y: f32, relu: bool) -> f32 {
    if !relu || y > 0.0 { dy } else { 0.0 }
}

/// Per-channel (Σ g, Σ g·(x − centre)) for g the gradient reaching the affine step.
pub fn halo_grad_sums(x: &[f32], y: &[f32], dy: &[f32], centre: &[f32], relu: bool, g: &HaloGeometry) -> (Vec<f64>, Vec<f64>) {
    assert!(x.len() == g.len() && y.len() == g.len() && dy.len() == g.len(), "halo affine backward: sizes");
    assert_eq!(centre.len(), g.c, "halo affine backward: centre size");
    channel_sums(g, |at, len, sg, sgx| row_grad_sums(&x[at..][..len], &y[at..][..len], &dy[at..][..len], centre, relu, sg, sgx))
}

vector_builds! {
    /// One interior row's Σ g and Σ g·(x − centre) per channel, into zeroed `sg`, `sgx`.
    fn row_grad_sums(x: &[f32], y: &[f32], dy: &[f32], centre: &[f32], relu: bool, sg: &mut [f32], sgx: &mut [f32]) {
        match centre.len() {
            16 => grad_sums_row::<16>(x, y, dy, centre, relu, sg, sgx),
            32 => grad_sums_row::<32>(x, y, dy, centre, relu, sg, sgx),
            64 => grad_sums_row::<64>(x, y, dy, centre, relu, sg, sgx),
            _ => grad_sums_row_any(x, y, dy, centre, relu, sg, sgx),
        }
    }
}

/// dx = a·g + b·x + k per channel on the interior (zero ring), and, when asked, the residual's
/// gradient g.
#[allow(clippy::too_many_arguments)]
pub fn halo_grad_apply(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    a: &[f32],
    b: &[f32],
    k: &[f32],
    relu: bool,
    want_residual: bool,
    g: &HaloGeometry,
) -> (Vec<f32>, Option<Vec<f32>>) {
    // SAFETY: every value of both is written before either is read or returned: the interior
    // and the rings by grad_apply_image.
    let mut dx = unsafe { uninit_f32(g.len()) };
    let mut dres = want_residual.then(|| unsafe { uninit_f32(g.len()) });
    let body = |image: usize, dxb: &mut [f32], drb: Option<&mut [f32]>| {
        let at = image * g.image_len();
        let (xs, ys, ds) = (&x[at..][..g.image_len()], &y[at..][..g.image_len()], &dy[at..][..g.image_len()]);
        grad_apply_image(dxb, drb, xs, ys, ds, a, b, k, relu, g);
    };
    match dres.as_mut() {
        Some(dr) => dx
            .par_chunks_mut(g.image_len())
            .zip(dr.par_chunks_mut(g.image_len()))
            .enumerate()
            .for_each(|(i, (dxb, drb))| body(i, dxb, Some(drb))),
        None => dx.par_chunks_mut(g.image_len()).enumerate().for_each(|(i, dxb)| body(i, dxb, None)),
    }
    (dx, dres)
}

/// Training-mode BatchNorm (+ residual) (+ ReLU): returns (y, batch mean, biased variance).
#[allow(clippy::too_many_arguments)]
pub fn halo_bn_train_forward(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
    epsilon: f64,
    g: &HaloGeometry,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!((gamma.len(), beta.len()), (g.c, g.c), "halo batch norm: parameter size");
    let (mean, var) = halo_moments(x, g);
    (bn_train_affine(x, gamma, beta, &mean, &var, residual, relu, epsilon, g), mean, var)
}

/// The output of [`halo_bn_train_forward`] given the batch statistics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_train_affine(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
    epsilon: f64,
    g: &HaloGeometry,
) -> Vec<f32> {
    let scale: Vec<f32> = (0..g.c).map(|c| gamma[c] / ((var[c] as f64 + epsilon).sqrt() as f32)).collect();
    let shift: Vec<f32> = (0..g.c).map(|c| beta[c] - mean[c] * scale[c]).collect();
    halo_affine_forward(x, &scale, &shift, residual, relu, g)
}

/// The gradients of [`halo_bn_train_forward`]: (dx, dγ, dβ, d residual), given its output y and
/// statistics: with x̂ = (x − μ)/√(σ² + ε) and g the masked dy, dβ = Σ g, dγ = Σ g·x̂,
/// dx = γ/√(σ² + ε) · (g − dβ/N − x̂·dγ/N).
#[allow(clippy::too_many_arguments)]
pub fn halo_bn_train_backward(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    relu: bool,
    want_residual: bool,
    epsilon: f64,
    g: &HaloGeometry,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let c = bn_train_grad_coefficients(x, y, dy, gamma, mean, var, relu, epsilon, g);
    let (dx, dres) = halo_grad_apply(x, y, dy, &c.a, &c.b, &c.k, relu, want_residual, g);
    (dx, c.dgamma, c.dbeta, dres)
}

/// What the gradient sums of training BatchNorm give: dγ, dβ, and the per-channel
/// coefficients of dx = a·g + b·x + k.
pub(crate) struct BnGradCoefficients {
    /// dγ.
    pub(crate) dgamma: Vec<f32>,
    /// dβ.
    pub(crate) dbeta: Vec<f32>,
    /// The coefficient of g (the masked dy).
    pub(crate) a: Vec<f32>,
    /// The coefficient of x.
    pub(crate) b: Vec<f32>,
    /// The constant.
    pub(crate) k: Vec<f32>,
}

/// The first of [`halo_bn_train_backward`]'s two passes (the per-channel sums) and the
/// coefficients it gives; the second applies them ([`halo_grad_apply`], or image by image
/// where the convolution before consumes dx at once: `halo_conv_norm_cpu`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn bn_train_grad_coefficients(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    gamma: &[f32],
    mean: &[f32],
    var: &[f32],
    relu: bool,
    epsilon: f64,
    g: &HaloGeometry,
) -> BnGradCoefficients {
    let inv_std: Vec<f64> = var.iter().map(|&v| 1.0 / (v as f64 + epsilon).sqrt()).collect();
    let (sum_g, sum_gx) = halo_grad_sums(x, y, dy, mean, relu, g);
    let n = g.count() as f64;
    let dbeta: Vec<f32> = sum_g.iter().map(|&s| s as f32).collect();
    let dgamma: Vec<f32> = (0..g.c).map(|c| (sum_gx[c] * inv_std[c]) as f32).collect();
    let (mut a, mut b, mut k) = (vec![0.0f32; g.c], vec![0.0f32; g.c], vec![0.0f32; g.c]);
    for c in 0..g.c {
        let s = gamma[c] as f64 * inv_std[c];
        let (mb, mg) = (sum_g[c] / n, sum_gx[c] * inv_std[c] / n);
        let bc = -s * mg * inv_std[c];
        (a[c], b[c], k[c]) = (s as f32, bc as f32, (-s * mb - bc * mean[c] as f64) as f32);
    }
    BnGradCoefficients { dgamma, dbeta, a, b, k }
}

/// The gradients of [`halo_affine_forward`]: (dx, d scale, d shift, d residual).
#[allow(clippy::too_many_arguments)]
pub fn halo_affine_backward(
    x: &[f32],
    y: &[f32],
    dy: &[f32],
    scale: &[f32],
    relu: bool,
    want_residual: bool,
    g: &HaloGeometry,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let zero = vec![0.0f32; g.c];
    let (sum_g, sum_gx) = halo_grad_sums(x, y, dy, &zero, relu, g);
    let (dx, dres) = halo_grad_apply(x, y, dy, scale, &zero, &zero, relu, want_residual, g);
    let to32 = |v: Vec<f64>| v.into_iter().map(|s| s as f32).collect::<Vec<f32>>();
    (dx, to32(sum_gx), to32(sum_g), dres)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_norm_cpu::{BnGeometry, batch_norm_train_backward, batch_norm_train_forward};
    use crate::halo::{halo_to_nchw, nchw_to_halo, ring_is_zero};

    fn values(n: usize, seed: usize, offset: f32) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.0 - 1.0) + offset).collect()
    }

    use crate::assert_close;

    /// One build of the BatchNorm kernels, as plain function pointers (their signatures are
    /// the kernels' own).
    #[allow(clippy::type_complexity)]
    struct Build {
        centre: fn(&[f32], &HaloGeometry) -> Vec<f32>,
        moments: fn(&[f32], &[f32], &mut [f32], &mut [f32]),
        grad_sums: fn(&[f32], &[f32], &[f32], &[f32], bool, &mut [f32], &mut [f32]),
        affine: fn(&mut [f32], Option<&[f32]>, Option<&[f32]>, &[f32], &[f32], bool, bool, &HaloGeometry),
        grad_apply: fn(&mut [f32], Option<&mut [f32]>, &[f32], &[f32], &[f32], &[f32], &[f32], &[f32], bool, &HaloGeometry),
    }

    /// `build` gives the bits of the same source built for baseline x86-64, for every channel
    /// width the kernels specialise (16, 32, 64) and a runtime one, with and without ReLU and
    /// residual; values include exact zeros and −0 so that ReLU's mask and max(·, 0) are
    /// exercised.
    fn assert_gives_the_baseline_bits(name: &str, build: Build) {
        use crate::bits;
        for c in [16, 32, 64, 5] {
            let g = HaloGeometry { batch: 1, h: 5, w: 7, c };
            let v = |seed: usize, offset: f32| {
                let mut x = values(g.len(), seed, offset);
                x.iter_mut().step_by(7).for_each(|e| *e = 0.0);
                x.iter_mut().skip(3).step_by(11).for_each(|e| *e = -0.0);
                x
            };
            let (x, y, dy, res) = (v(1, 0.3), v(2, 0.0), v(3, 0.0), v(4, 0.0));
            let (p1, p2, p3) = (values(c, 5, 0.5), values(c, 6, 0.0), values(c, 7, 0.0));
            let what = format!("{name}, {c} channels");
            assert_eq!(bits(&(build.centre)(&x, &g)), bits(&moments_centre::baseline(&x, &g)), "{what}: centre");
            let row = &x[g.interior_rows().next().unwrap()..][..g.w * c];
            let pair = |f: &dyn Fn(&mut [f32], &mut [f32])| {
                let (mut a, mut b) = (vec![0.0f32; c], vec![0.0f32; c]);
                f(&mut a, &mut b);
                (bits(&a), bits(&b))
            };
            assert_eq!(
                pair(&|s, q| (build.moments)(row, &p1, s, q)),
                pair(&|s, q| row_moments::baseline(row, &p1, s, q)),
                "{what}: moments"
            );
            let (yr, dr) = (&y[..row.len()], &dy[..row.len()]);
            for relu in [false, true] {
                assert_eq!(
                    pair(&|a, b| (build.grad_sums)(row, yr, dr, &p1, relu, a, b)),
                    pair(&|a, b| row_grad_sums::baseline(row, yr, dr, &p1, relu, a, b)),
                    "{what}: gradient sums, relu {relu}"
                );
                for residual in [None, Some(&res[..])] {
                    let (mut out, mut base) = (vec![1.0f32; g.len()], vec![1.0f32; g.len()]);
                    (build.affine)(&mut out, Some(&x), residual, &p1, &p2, relu, true, &g);
                    affine_image::baseline(&mut base, Some(&x), residual, &p1, &p2, relu, true, &g);
                    assert_eq!(bits(&out), bits(&base), "{what}: affine, relu {relu}");
                    let (mut dx_out, mut dr_out) = (vec![1.0f32; g.len()], vec![1.0f32; g.len()]);
                    let (mut dx_base, mut dr_base) = (dx_out.clone(), dr_out.clone());
                    let with = residual.is_some();
                    (build.grad_apply)(&mut dx_out, with.then_some(&mut dr_out[..]), &x, &y, &dy, &p1, &p2, &p3, relu, &g);
                    grad_apply_image::baseline(&mut dx_base, with.then_some(&mut dr_base[..]), &x, &y, &dy, &p1, &p2, &p3, relu, &g);
                    assert_eq!(bits(&dx_out), bits(&dx_base), "{what}: dx, relu {relu}");
                    assert_eq!(bits(&dr_out), bits(&dr_base), "{what}: d residual, relu {relu}");
                }
            }
        }
    }

    /// The build the kernels dispatch to (AVX-512 where this CPU has it) gives the baseline
    /// build's bits.
    #[test]
    fn dispatched_builds_give_the_baseline_bits() {
        assert_gives_the_baseline_bits(
            "dispatched",
            Build {
                centre: moments_centre,
                moments: row_moments,
                grad_sums: row_grad_sums,
                affine: affine_image,
                grad_apply: grad_apply_image,
            },
        );
    }

    /// The AVX2 + FMA builds (what a CPU without AVX-512 runs) give the baseline build's bits.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_builds_give_the_baseline_bits() {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return;
        }
        // SAFETY (each closure): the CPU has AVX2 and FMA, the features the builds enable
        // (checked above); the tests call them on this thread only.
        assert_gives_the_baseline_bits(
            "avx2",
            Build {
                centre: |x, g| unsafe { moments_centre::avx2(x, g) },
                moments: |r, c, s, q| unsafe { row_moments::avx2(r, c, s, q) },
                grad_sums: |x, y, d, c, relu, a, b| unsafe { row_grad_sums::avx2(x, y, d, c, relu, a, b) },
                affine: |o, s, r, sc, sh, relu, ring, g| unsafe { affine_image::avx2(o, s, r, sc, sh, relu, ring, g) },
                grad_apply: |dx, dr, x, y, dy, a, b, k, relu, g| unsafe { grad_apply_image::avx2(dx, dr, x, y, dy, a, b, k, relu, g) },
            },
        );
    }

    /// Without residual or ReLU the fused op is plain training BatchNorm: compare with the NCHW
    /// kernels (themselves tested against burn's BatchNorm), on data with a large mean.
    #[test]
    fn plain_batch_norm_matches_the_nchw_kernels() {
        // 16, 32 and 64 channels take the fixed-width loops, 5 the general one.
        for c in [5, 16, 32, 64] {
            plain_batch_norm(c);
        }
    }

    fn plain_batch_norm(c: usize) {
        let (b, h, w) = (TASK_IMAGES + 3, 4, 6);
        let n = b * c * h * w;
        let (x, dy) = (values(n, 1, 30.0), values(n, 2, 0.0));
        let (gamma, beta) = (values(c, 3, 1.0), values(c, 4, 0.0));
        let g = HaloGeometry { batch: b, h, w, c };
        let r = BnGeometry { batch: b, channels: c, plane: h * w };
        let (xh, dyh) = (nchw_to_halo(&x, b, c, h, w), nchw_to_halo(&dy, b, c, h, w));
        let (y, mean, var) = halo_bn_train_forward(&xh, &gamma, &beta, None, false, 1e-5, &g);
        let (ry, rmean, rvar) = batch_norm_train_forward(&x, &gamma, &beta, 1e-5, &r);
        assert!(ring_is_zero(&y, &g));
        assert_close("y", &halo_to_nchw(&y, &g), &ry, 1e-5);
        assert_close("mean", &mean, &rmean, 1e-6);
        assert_close("var", &var, &rvar, 1e-5);
        let (dx, dgamma, dbeta, dres) = halo_bn_train_backward(&xh, &y, &dyh, &gamma, &mean, &var, false, false, 1e-5, &g);
        let (rdx, rdgamma, rdbeta) = batch_norm_train_backward(&x, &dy, &gamma, &rmean, &rvar, 1e-5, &r);
        assert!(dres.is_none() && ring_is_zero(&dx, &g));
        assert_close("dx", &halo_to_nchw(&dx, &g), &rdx, 1e-4);
        assert_close("dgamma", &dgamma, &rdgamma, 1e-4);
        assert_close("dbeta", &dbeta, &rdbeta, 1e-5);
    }

    /// The sums run over fixed groups of images, so every output is the same bitwise on any
    /// number of threads.
    #[test]
    fn bitwise_the_same_on_any_number_of_threads() {
        let (b, c, h, w) = (3 * TASK_IMAGES + 5, 16, 5, 4);
        let g = HaloGeometry { batch: b, h, w, c };
        let n = b * c * h * w;
        let (x, res, dy) = (
            nchw_to_halo(&values(n, 12, 0.3), b, c, h, w),
            nchw_to_halo(&values(n, 13, 0.0), b, c, h, w),
            nchw_to_halo(&values(n, 14, 0.0), b, c, h, w),
        );
        let (gamma, beta) = (values(c, 15, 1.0), values(c, 16, 0.0));
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (y, mean, var) = halo_bn_train_forward(&x, &gamma, &beta, Some(&res), true, 1e-5, &g);
                let (dx, dgamma, dbeta, dres) = halo_bn_train_backward(&x, &y, &dy, &gamma, &mean, &var, true, true, 1e-5, &g);
                [y, mean, var, dx, dgamma, dbeta, dres.unwrap()].map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
            })
        };
        let one = on(1);
        // 29 images are 4 reduction tasks: from 5 threads on, the rows' sums are stored first.
        for threads in [2, 3, 5, 16, 40] {
            assert!(on(threads) == one, "{threads} threads");
        }
    }

    /// With residual and ReLU, against finite differences of L = Σ y·r.
    #[test]
    fn residual_and_relu_gradients_match_finite_differences() {
        for c in [3, 16] {
            residual_and_relu_gradients(c);
        }
    }

    fn residual_and_relu_gradients(c: usize) {
        let (b, h, w) = (2, 3, 2);
        let n = b * c * h * w;
        let g = HaloGeometry { batch: b, h, w, c };
        let (x, res, r) = (
            nchw_to_halo(&values(n, 5, 0.2), b, c, h, w),
            nchw_to_halo(&values(n, 6, 0.0), b, c, h, w),
            nchw_to_halo(&values(n, 7, 0.0), b, c, h, w),
        );
        let (gamma, beta) = (values(c, 8, 1.0), values(c, 9, 0.0));
        let loss = |x: &[f32], res: &[f32], gamma: &[f32], beta: &[f32]| -> f64 {
            let (y, _, _) = halo_bn_train_forward(x, gamma, beta, Some(res), true, 1e-5, &g);
            y.iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum()
        };
        let (y, mean, var) = halo_bn_train_forward(&x, &gamma, &beta, Some(&res), true, 1e-5, &g);
        assert!(y.contains(&0.0) && y.iter().any(|&v| v > 0.0), "ReLU is active somewhere");
        let (dx, dgamma, dbeta, dres) = halo_bn_train_backward(&x, &y, &r, &gamma, &mean, &var, true, true, 1e-5, &g);
        let dres = dres.expect("residual gradient");
        let eps = 1e-3f32;
        let numeric = |f: &dyn Fn(f32) -> f64| ((f(eps) - f(-eps)) / (2.0 * eps as f64)) as f32;
        for i in (0..g.len()).filter(|&i| x[i] != 0.0 || res[i] != 0.0).step_by(5) {
            let bump = |v: &[f32], d: f32| {
                let mut v = v.to_vec();
                v[i] += d;
                v
            };
            let nx = numeric(&|d| loss(&bump(&x, d), &res, &gamma, &beta));
            let nr = numeric(&|d| loss(&x, &bump(&res, d), &gamma, &beta));
            assert!((nx - dx[i]).abs() < 2e-2, "dx[{i}]: numeric {nx} analytic {}", dx[i]);
            assert!((nr - dres[i]).abs() < 2e-2, "dres[{i}]: numeric {nr} analytic {}", dres[i]);
        }
        for ch in 0..c {
            let bump = |v: &[f32], d: f32| {
                let mut v = v.to_vec();
                v[ch] += d;
                v
            };
            let ng = numeric(&|d| loss(&x, &res, &bump(&gamma, d), &beta));
            let nb = numeric(&|d| loss(&x, &res, &gamma, &bump(&beta, d)));
            assert!((ng - dgamma[ch]).abs() < 2e-2, "dgamma[{ch}]: numeric {ng} analytic {}", dgamma[ch]);
            assert!((nb - dbeta[ch]).abs() < 2e-2, "dbeta[{ch}]: numeric {nb} analytic {}", dbeta[ch]);
        }
        // The affine op's gradients, likewise.
        let (scale, shift) = (values(c, 10, 0.5), values(c, 11, 0.0));
        let ya = halo_affine_forward(&x, &scale, &shift, Some(&res), true, &g);
        let (adx, ascale, ashift, ares) = halo_affine_backward(&x, &ya, &r, &scale, true, true, &g);
        let aloss = |x: &[f32], scale: &[f32], shift: &[f32]| -> f64 {
            halo_affine_forward(x, scale, shift, Some(&res), true, &g).iter().zip(&r).map(|(a, b)| *a as f64 * *b as f64).sum()
        };
        let ares = ares.expect("residual gradient");
        for i in (0..g.len()).filter(|&i| x[i] != 0.0).step_by(7) {
            let bump = |v: &[f32], d: f32| {
                let mut v = v.to_vec();
                v[i] += d;
                v
            };
            let nx = numeric(&|d| aloss(&bump(&x, d), &scale, &shift));
            assert!((nx - adx[i]).abs() < 2e-2, "affine dx[{i}]: numeric {nx} analytic {}", adx[i]);
            let masked_r = if ya[i] > 0.0 { r[i] } else { 0.0 };
            assert_eq!(ares[i], masked_r);
        }
        for ch in 0..c {
            let bump = |v: &[f32], d: f32| {
                let mut v = v.to_vec();
                v[ch] += d;
                v
            };
            let ns = numeric(&|d| aloss(&x, &bump(&scale, d), &shift));
            let nt = numeric(&|d| aloss(&x, &scale, &bump(&shift, d)));
            assert!((ns - ascale[ch]).abs() < 2e-2 && (nt - ashift[ch]).abs() < 2e-2, "affine dscale/dshift[{ch}]");
        }
    }
}
