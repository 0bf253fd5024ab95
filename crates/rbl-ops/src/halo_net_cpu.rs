//! The CIFAR ResNet's evaluation forward, image by image through the whole network.
//!
//! Layer by layer, every activation of a batch goes out to memory and comes back for the next
//! layer: at batch 256 a 32×32×16 activation is 19 MB, more than half a 32 MB last-level
//! cache, and the network's 31 layers move ~1 GB a batch (inputs, outputs and residuals)
//! besides their arithmetic. Here each task takes its images one at a time through the stem
//! and every block, the activations in four per-thread buffers of one image each (≤ 74 KB)
//! that stay in the core's L2; only the images come in and the last block's output goes out.
//!
//! Each image runs through the same per-image kernels ([`forward_image`]), epilogue
//! ([`halo_affine_in_place`]) and shortcut copies as the layer-by-layer ops, on the same
//! values: the result is theirs bit for bit (tested), whatever the number of threads.

use rayon::prelude::*;

use super::cpu_common::{images_per_task, uninit_f32};
use super::halo::{HaloGeometry, ShortcutA, nchw_image_to_halo};
use super::halo_conv_cpu::{HaloConv, ImagePath, forward_image, weight_to_taps};
use super::halo_norm_cpu::halo_affine_in_place;

/// One convolution of the network with its evaluation epilogue: act(conv(x)·scale + shift
/// [+ residual]) per output channel (BatchNorm with running statistics, or a folded bias).
#[derive(Debug, Clone, Copy)]
pub struct EvalConvSlices<'a> {
    /// burn's `[c_out, c_in, 3, 3]` weight.
    pub weight: &'a [f32],
    /// Per-output-channel scale.
    pub scale: &'a [f32],
    /// Per-output-channel shift.
    pub shift: &'a [f32],
    /// 1 or 2.
    pub stride: usize,
}

/// A convolution ready to run on one image: its geometry (batch 1), path, taps and epilogue.
struct Layer<'a> {
    g: HaloConv,
    path: ImagePath,
    taps: Vec<f32>,
    scale: &'a [f32],
    shift: &'a [f32],
}

impl<'a> Layer<'a> {
    fn new(conv: &EvalConvSlices<'a>, c_in: usize, h: usize, w: usize) -> Layer<'a> {
        let c_out = conv.scale.len();
        assert!(
            conv.weight.len() == c_out * c_in * 9 && conv.shift.len() == c_out,
            "halo network: a convolution's weight, scale or shift does not fit {c_in} → {c_out} channels"
        );
        let g = HaloConv { batch: 1, c_in, h, w, c_out, stride: conv.stride };
        Layer { g, path: ImagePath::of(&g), taps: weight_to_taps(conv.weight, c_in, c_out), scale: conv.scale, shift: conv.shift }
    }

    fn out(&self) -> HaloGeometry {
        self.g.output()
    }

    /// yb ← relu(conv(xb)·scale + shift [+ residual]), one image.
    fn run(&self, xb: &[f32], residual: Option<&[f32]>, col: &mut [f32], yb: &mut [f32]) {
        let o = self.out();
        forward_image(&xb[..self.g.input().image_len()], &self.taps, &self.g, self.path, col, &mut yb[..o.image_len()]);
        halo_affine_in_place(&mut yb[..o.image_len()], residual.map(|r| &r[..o.image_len()]), self.scale, self.shift, true, &o);
    }
}

/// A basic block: conv1 → ReLU → conv2 + shortcut → ReLU, the shortcut the identity or option A.
struct Block<'a> {
    conv1: Layer<'a>,
    conv2: Layer<'a>,
    shortcut: Option<ShortcutA>,
}

/// The forward of a CIFAR ResNet in evaluation, from NCHW images `[batch, c, h, w]` to the
/// last block's output as a halo tensor (zero ring). `convs`: the stem, then each block's two
/// convolutions in order; a block whose first convolution keeps the resolution and the
/// channel count has the identity shortcut, any other option A (subsample at its stride, zero
/// channels on both sides), as in [`halo_shortcut_a`](super::halo_shortcut_op). Every
/// convolution is followed by ReLU. Returns the output and its geometry.
pub fn halo_resnet_eval_forward(images: &[f32], [batch, c, h, w]: [usize; 4], convs: &[EvalConvSlices]) -> (Vec<f32>, HaloGeometry) {
    assert!(!convs.len().is_multiple_of(2), "halo network: a stem and pairs of block convolutions, not {} convolutions", convs.len());
    assert_eq!(images.len(), batch * c * h * w, "halo network: image size");
    let input = HaloGeometry { batch: 1, h, w, c };
    let stem = Layer::new(&convs[0], c, h, w);
    let mut at = stem.out();
    let blocks: Vec<Block> = convs[1..]
        .chunks_exact(2)
        .map(|pair| {
            let conv1 = Layer::new(&pair[0], at.c, at.h, at.w);
            let mid = conv1.out();
            let conv2 = Layer::new(&pair[1], mid.c, mid.h, mid.w);
            let identity = pair[0].stride == 1 && mid.c == at.c;
            assert!(mid.c >= at.c && (mid.c - at.c).is_multiple_of(2), "halo network: option A pads {} channels to {}", at.c, mid.c);
            let shortcut = (!identity).then(|| ShortcutA::new(&at, pair[0].stride, (mid.c - at.c) / 2));
            at = conv2.out();
            Block { conv1, conv2, shortcut }
        })
        .collect();
    let out = HaloGeometry { batch, ..at };
    // The largest image any buffer holds, and the largest column matrix any layer takes.
    let layers = || std::iter::once(&stem).chain(blocks.iter().flat_map(|b| [&b.conv1, &b.conv2]));
    let image_max = layers().map(|l| l.g.input().image_len().max(l.out().image_len())).max().unwrap_or(0).max(input.image_len());
    let col_max = layers().map(|l| l.path.scratch_len(&l.g)).max().unwrap_or(0);

    // SAFETY: every value is written before y is read or returned: each image by the last
    // layer's forward_image (interior and ring).
    let mut y = unsafe { uninit_f32(out.len()) };
    let per = images_per_task(batch, 8);
    let one_image = c * h * w;
    y.par_chunks_mut(per * out.image_len()).zip(images.par_chunks(per * one_image)).for_each_init(
        || Scratch { act: std::array::from_fn(|_| vec![0.0f32; image_max]), col: vec![0.0f32; col_max] },
        |scratch, (ys, xs)| {
            for (yb, xb) in ys.chunks_exact_mut(out.image_len()).zip(xs.chunks_exact(one_image)) {
                let [a, b, s, n] = &mut scratch.act;
                let col = &mut scratch.col;
                nchw_image_to_halo(xb, &input, &mut a[..input.image_len()]);
                stem.run(&a[..], None, col, b);
                // `b` holds the block's input; `a`, `s` and `n` are free.
                for (k, block) in blocks.iter().enumerate() {
                    block.conv1.run(b, None, col, a);
                    let residual: &[f32] = match &block.shortcut {
                        None => b,
                        Some(sc) => {
                            sc.image(&b[..block.conv1.g.input().image_len()], &mut s[..block.conv2.out().image_len()]);
                            s
                        }
                    };
                    if k + 1 == blocks.len() {
                        block.conv2.run(a, Some(residual), col, yb);
                    } else {
                        block.conv2.run(a, Some(residual), col, n);
                        std::mem::swap(b, n);
                    }
                }
                if blocks.is_empty() {
                    yb.copy_from_slice(&b[..out.image_len()]);
                }
            }
        },
    );
    (y, out)
}

/// One worker's buffers: four activations of one image each, and a column matrix.
struct Scratch {
    act: [Vec<f32>; 4],
    col: Vec<f32>,
}
