//! The backward pass of a convolution followed by training-mode BatchNorm (+ residual)
//! (+ ReLU), on halo tensors, without storing BatchNorm's input gradient.
//!
//! As two ops, BatchNorm's backward writes its dx (the convolution's dy) for the whole batch,
//! and the convolution's backward reads it back twice, once per gradient: at batch 128 a
//! 16-channel 32×32 activation is 9.5 MB, three passes over memory that carry nothing the
//! cache could not. Here BatchNorm's per-channel sums are taken first (they need the whole
//! batch), then each image's dy is applied into a buffer in cache and the convolution's input
//! and weight gradients take their terms for that image at once
//! ([`halo_conv_backward_by_image`]). Every value is formed by the same operations in the same
//! order as the two ops form it, so the gradients are the same bits (tested).
//!
//! The forward ([`halo_conv_forward_moments`]) takes BatchNorm's moments from each output
//! image's rows as the convolution finishes the image, instead of in a pass over memory
//! afterwards, and adds them in that pass's order: the same bits again.

use rayon::prelude::*;

use super::cpu_common::{images_per_task, uninit_f32};
use super::halo_conv_cpu::{HaloConv, ImagePath, Wanted, forward_image, halo_conv_backward, halo_conv_backward_by_image, weight_to_taps};
use super::halo_norm_cpu::{bn_train_grad_coefficients, grad_apply_image, halo_grad_apply, moments_centre, moments_from_rows, row_moments};

/// The convolution's output y (halo) with BatchNorm's batch mean and biased variance of it:
/// [`halo_conv_forward`](super::halo_conv_cpu::halo_conv_forward) then
/// [`halo_moments`](super::halo_norm_cpu::halo_moments), bit for bit, with each image's row
/// sums taken while the image is in cache. Image 0's mean is the centre every row's sums
/// subtract: the task that computes image 0 publishes it, and the few images another worker
/// finishes before that have their rows summed from memory after the pass. Which images those
/// are depends on timing; their sums do not (the same function of the same values).
pub fn halo_conv_forward_moments(x: &[f32], weight: &[f32], g: &HaloConv) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    forward_moments(x, weight, g, true)
}

/// [`halo_conv_forward_moments`]; `in_pass` false sums every image's rows after the pass (as
/// for the images finished before the centre), so that the tests run both paths on purpose.
fn forward_moments(x: &[f32], weight: &[f32], g: &HaloConv, in_pass: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (i, o) = (g.input(), g.output());
    assert_eq!(x.len(), i.len(), "halo conv: input size");
    assert!(g.batch > 0, "halo conv + batch norm: an empty batch has no statistics");
    let taps = weight_to_taps(weight, g.c_in, g.c_out);
    let path = ImagePath::of(g);
    // SAFETY: every value is written before y is read or returned: each image by forward_image
    // (interior and ring) in the pass below.
    let mut y = unsafe { uninit_f32(o.len()) };
    let centre: OnceLock<Vec<f32>> = OnceLock::new();
    // Per image, per interior row: Σ (y − centre) then Σ (y − centre)², c values each.
    let (c, row_sums, image_sums) = (o.c, 2 * o.c, 2 * o.c * o.h);
    let image_rows = |yb: &[f32], sb: &mut [f32], centre: &[f32]| {
        for (offset, rs) in o.interior_rows().zip(sb.chunks_exact_mut(row_sums)) {
            let (s, q) = rs.split_at_mut(c);
            row_moments(&yb[offset..][..o.w * c], centre, s, q);
        }
    };
    let mut sums = vec![0.0f32; g.batch * image_sums];
    let summed: Vec<AtomicBool> = (0..g.batch).map(|_| AtomicBool::new(false)).collect();
    let per = images_per_task(g.batch, 8);
    y.par_chunks_mut(per * o.image_len())
        .zip(x.par_chunks(per * i.image_len()))
        .zip(sums.par_chunks_mut(per * image_sums))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; path.scratch_len(g)],
            |col, (task, ((ys, xs), ss))| {
                let images = ys.chunks_mut(o.image_len()).zip(xs.chunks(i.image_len())).zip(ss.chunks_mut(image_sums));
                for (n, ((yb, xb), sb)) in images.enumerate() {
                    let image = task * per + n;
                    forward_image(xb, &taps, g, path, col, yb);
                    if image == 0 {
                        let _ = centre.set(moments_centre(yb, &o));
                    }
                    if let Some(centre) = centre.get().filter(|_| in_pass) {
                        image_rows(yb, sb, centre);
                        summed[image].store(true, Ordering::Relaxed);
                    }
                }
            },
        );
    let centre = centre.into_inner().expect("image 0 was computed");
    // The pass's end orders its stores before these loads.
    let late = |image: usize| !summed[image].load(Ordering::Relaxed);
    sums.par_chunks_mut(image_sums)
        .zip(y.par_chunks(o.image_len()))
        .enumerate()
        .filter(|(image, _)| late(*image))
        .for_each(|(_, (sb, yb))| image_rows(yb, sb, &centre));
    let (mean, var) = moments_from_rows(&o, &centre, |at, _, s, q| {
        let (image, offset) = (at / o.image_len(), at % o.image_len());
        let row = offset / (o.wp() * c) - 1;
        let rs = &sums[image * image_sums + row * row_sums..][..row_sums];
        s.copy_from_slice(&rs[..c]);
        q.copy_from_slice(&rs[c..]);
    });
    (y, mean, var)
}

/// The gradients of conv → training BatchNorm (+ residual) (+ ReLU).
#[derive(Debug)]
pub struct ConvBnGrads {
    /// The convolution's input gradient (plus the other gradient given with it), if asked.
    pub dx: Option<Vec<f32>>,
    /// The convolution's weight gradient, burn's `[c_out, c_in, 3, 3]`, if asked.
    pub dweight: Option<Vec<f32>>,
    /// dγ.
    pub dgamma: Vec<f32>,
    /// dβ.
    pub dbeta: Vec<f32>,
    /// The residual's gradient, if asked.
    pub dresidual: Option<Vec<f32>>,
}

/// The inputs of [`halo_conv_bn_train_backward`] besides the convolution's: BatchNorm's input
/// y (the convolution's output), its output z and z's gradient dz (halo tensors of the
/// convolution's output shape), γ, and the forward pass's batch statistics.
#[derive(Debug, Clone, Copy)]
pub struct BnBackwardInputs<'a> {
    /// BatchNorm's input: the convolution's output.
    pub y: &'a [f32],
    /// BatchNorm's output (after the add and ReLU): ReLU's mask.
    pub z: &'a [f32],
    /// The gradient reaching z.
    pub dz: &'a [f32],
    /// γ.
    pub gamma: &'a [f32],
    /// The batch mean.
    pub mean: &'a [f32],
    /// The biased batch variance.
    pub var: &'a [f32],
    /// ReLU after the add.
    pub relu: bool,
    /// BatchNorm's ε.
    pub epsilon: f64,
}

/// The gradients of z = act(BN(conv(x)) [+ residual]) given dz: those of x and the weight as
/// `wanted` asks ([`Wanted`]; the other gradient of x added image by image), of γ and β, and
/// the residual's if `want_residual`. The bits of BatchNorm's backward followed by the
/// convolution's ([`halo_conv_backward`]), to which it falls back where the convolution's
/// passes do not run image by image.
pub fn halo_conv_bn_train_backward(
    x: &[f32],
    weight: &[f32],
    conv: &HaloConv,
    bn: BnBackwardInputs,
    wanted: Wanted,
    want_residual: bool,
) -> ConvBnGrads {
    let o = conv.output();
    assert!(bn.y.len() == o.len() && bn.z.len() == o.len() && bn.dz.len() == o.len(), "conv + batch norm backward: sizes");
    let c = bn_train_grad_coefficients(bn.y, bn.z, bn.dz, bn.gamma, bn.mean, bn.var, bn.relu, bn.epsilon, &o);
    let len = o.image_len();
    let apply = |n: usize, dyb: &mut [f32], drb: Option<&mut [f32]>| {
        let at = n * len;
        grad_apply_image(dyb, drb, &bn.y[at..][..len], &bn.z[at..][..len], &bn.dz[at..][..len], &c.a, &c.b, &c.k, bn.relu, &o);
    };
    // SAFETY: grad_apply_image writes every value of each image (interior and ring) before the
    // tensor is returned; unused (and dropped) if the fused pass does not apply.
    let mut dresidual = want_residual.then(|| unsafe { uninit_f32(o.len()) });
    if let Some((dx, dweight)) = halo_conv_backward_by_image(x, weight, conv, wanted, dresidual.as_deref_mut(), &apply) {
        return ConvBnGrads { dx, dweight, dgamma: c.dgamma, dbeta: c.dbeta, dresidual };
    }
    let (dy, dresidual) = halo_grad_apply(bn.y, bn.z, bn.dz, &c.a, &c.b, &c.k, bn.relu, want_residual, &o);
    let (dx, dweight) = halo_conv_backward(x, &dy, weight, conv, wanted);
    ConvBnGrads { dx, dweight, dgamma: c.dgamma, dbeta: c.dbeta, dresidual }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits;
    use crate::cpu_common::WEIGHT_GRAD_TASK_IMAGES;
    use crate::halo::nchw_to_halo;
    use crate::halo_conv_cpu::halo_conv_forward;
    use crate::halo_norm_cpu::{halo_bn_train_backward, halo_bn_train_forward};

    fn values(n: usize, seed: usize, offset: f32) -> Vec<f32> {
        (0..n).map(|i| offset + ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0).collect()
    }

    /// The moments taken as the convolution finishes each image are the moments pass's bits,
    /// and y the convolution's: stride 1 with the halo kernels, stride 2, channel counts only
    /// `gemm` takes, a batch of one, batches that split into uneven tasks, on 1 and 3 threads,
    /// each image's rows summed in the pass and after it.
    #[test]
    fn forward_moments_equal_the_two_passes_bit_for_bit() {
        use crate::halo_norm_cpu::halo_moments;
        // (batch, c_in, c_out, side, stride)
        for (batch, c_in, c_out, side, stride) in
            [(21, 16, 16, 8, 1), (1, 16, 32, 8, 1), (7, 32, 64, 6, 2), (5, 3, 16, 9, 1), (4, 5, 7, 5, 1), (3, 8, 12, 7, 2)]
        {
            let g = HaloConv { batch, c_in, h: side, w: side, c_out, stride };
            let x = nchw_to_halo(&values(batch * c_in * side * side, 1, 0.3), batch, c_in, side, side);
            // An offset, so that the centre matters.
            let w: Vec<f32> = values(c_out * c_in * 9, 2, 0.2).iter().map(|v| v * 0.2).collect();
            let want_y = halo_conv_forward(&x, &w, &g);
            let (want_mean, want_var) = halo_moments(&want_y, &g.output());
            for (threads, in_pass) in [(1, true), (3, true), (3, false)] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let (y, mean, var) = pool.install(|| forward_moments(&x, &w, &g, in_pass));
                let what = format!("{g:?} on {threads} threads, rows summed in the pass: {in_pass}");
                assert_eq!(bits(&y), bits(&want_y), "{what}: y");
                assert_eq!(bits(&mean), bits(&want_mean), "{what}: mean");
                assert_eq!(bits(&var), bits(&want_var), "{what}: variance");
                assert!(var.iter().all(|v| *v > 0.0), "{what}: a zero variance checks little");
            }
        }
    }

    /// Image by image (stride 1 with the halo kernels, more than one weight task, with and
    /// without the residual and ReLU, with and without an other gradient of x) and through the
    /// fallback (stride 2, 8 output channels, a pool with more threads than weight tasks), the
    /// fused backward gives the bits of BatchNorm's backward then the convolution's.
    #[test]
    fn equals_the_two_backward_passes_bit_for_bit() {
        // (batch, c_in, c_out, side, stride, residual, relu, threads, runs image by image)
        let cases = [
            (WEIGHT_GRAD_TASK_IMAGES + 5, 16, 16, 8, 1, true, true, 1, true),
            (3, 16, 32, 8, 1, false, true, 1, true),
            (5, 32, 16, 7, 1, true, false, 1, true),
            (4, 8, 16, 6, 1, true, true, 1, true),
            (3, 16, 32, 8, 2, true, true, 1, false),
            (3, 8, 8, 6, 1, true, true, 1, false),
            (5, 16, 16, 8, 1, true, true, 4, false),
        ];
        for (batch, c_in, c_out, side, stride, residual, relu, threads, by_image) in cases {
            let what = format!("b{batch} {c_in}→{c_out} {side}×{side} s{stride} residual {residual} relu {relu} threads {threads}");
            let conv = HaloConv { batch, c_in, h: side, w: side, c_out, stride };
            let (i, o) = (conv.input(), conv.output());
            let x = nchw_to_halo(&values(batch * c_in * side * side, 1, 0.0), batch, c_in, side, side);
            let weight = values(c_out * c_in * 9, 2, 0.0);
            let y = halo_conv_forward(&x, &weight, &conv);
            let res = residual.then(|| nchw_to_halo(&values(batch * c_out * o.h * o.w, 3, 0.0), batch, c_out, o.h, o.w));
            let (gamma, beta) = (values(c_out, 4, 1.5), values(c_out, 5, 0.0));
            let (z, mean, var) = halo_bn_train_forward(&y, &gamma, &beta, res.as_deref(), relu, 1e-5, &o);
            let dz = nchw_to_halo(&values(batch * c_out * o.h * o.w, 6, 0.0), batch, c_out, o.h, o.w);
            let other =
                (c_in == c_out && stride == 1).then(|| nchw_to_halo(&values(batch * c_in * side * side, 7, 0.0), batch, c_in, side, side));
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let bn = BnBackwardInputs { y: &y, z: &z, dz: &dz, gamma: &gamma, mean: &mean, var: &var, relu, epsilon: 1e-5 };
            let fused = pool.install(|| halo_conv_bn_train_backward(&x, &weight, &conv, bn, Wanted::Both(other.as_deref()), residual));
            let (dy, dgamma, dbeta, dres) =
                pool.install(|| halo_bn_train_backward(&y, &z, &dz, &gamma, &mean, &var, relu, residual, 1e-5, &o));
            let (dx, dw) = pool.install(|| halo_conv_backward(&x, &dy, &weight, &conv, Wanted::Both(other.as_deref())));
            let ran = pool.install(|| {
                let mut side_out = vec![0.0f32; o.len()];
                let fill = |_: usize, dyb: &mut [f32], _: Option<&mut [f32]>| dyb.fill(0.0);
                halo_conv_backward_by_image(&x, &weight, &conv, Wanted::Both(None), Some(&mut side_out), &fill).is_some()
            });
            assert_eq!(ran, by_image, "{what}: which path");
            let dx = dx.expect("asked for");
            assert_eq!(dx.len(), i.len(), "{what}: dx size");
            assert!(dx.iter().any(|v| *v != 0.0), "{what}: a zero gradient checks nothing");
            assert_eq!(bits(&fused.dx.expect("asked for")), bits(&dx), "{what}: dx");
            assert_eq!(bits(&fused.dweight.expect("asked for")), bits(&dw.expect("asked for")), "{what}: dweight");
            assert_eq!((bits(&fused.dgamma), bits(&fused.dbeta)), (bits(&dgamma), bits(&dbeta)), "{what}: dγ, dβ");
            assert_eq!(fused.dresidual.map(|v| bits(&v)), dres.map(|v| bits(&v)), "{what}: d residual");
        }
    }

    /// The weight gradient alone (the stem, whose input needs none) also runs image by image,
    /// with the same bits.
    #[test]
    fn weight_gradient_alone_equals_the_two_passes() {
        let conv = HaloConv { batch: 6, c_in: 3, h: 8, w: 8, c_out: 16, stride: 1 };
        let o = conv.output();
        let x = nchw_to_halo(&values(6 * 3 * 64, 8, 0.0), 6, 3, 8, 8);
        let weight = values(16 * 3 * 9, 9, 0.0);
        let y = halo_conv_forward(&x, &weight, &conv);
        let (gamma, beta) = (values(16, 10, 1.5), values(16, 11, 0.0));
        let (z, mean, var) = halo_bn_train_forward(&y, &gamma, &beta, None, true, 1e-5, &o);
        let dz = nchw_to_halo(&values(6 * 16 * 64, 12, 0.0), 6, 16, 8, 8);
        let bn = BnBackwardInputs { y: &y, z: &z, dz: &dz, gamma: &gamma, mean: &mean, var: &var, relu: true, epsilon: 1e-5 };
        let fused = halo_conv_bn_train_backward(&x, &weight, &conv, bn, Wanted::WeightGrad, false);
        let (dy, ..) = halo_bn_train_backward(&y, &z, &dz, &gamma, &mean, &var, true, false, 1e-5, &o);
        let (_, dw) = halo_conv_backward(&x, &dy, &weight, &conv, Wanted::WeightGrad);
        assert!(fused.dx.is_none());
        assert_eq!(bits(&fused.dweight.expect("asked for")), bits(&dw.expect("asked for")));
    }
}
