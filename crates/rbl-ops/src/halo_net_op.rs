//! The CIFAR ResNet's evaluation forward as one op on flex
//! ([`halo_net_cpu`](super::halo_net_cpu): each image through the whole network while its
//! activations are in cache). Evaluation only: there is no backward, and under autodiff the
//! network runs layer by layer ([`halo_conv_affine`](super::halo_conv_op::halo_conv_affine)).

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DType, Dispatch, Flex, TensorData, backend_extension};
use burn::tensor::Tensor;

use super::halo_net_cpu::{EvalConvSlices, halo_resnet_eval_forward};

/// The backend extension.
#[backend_extension(Flex)]
pub trait HaloNetBackend: Backend {
    /// [`halo_resnet_eval_forward`] on NCHW `images`, the convolutions' weights, scales and
    /// shifts each concatenated into one vector (the stem first; burn's extensions take no
    /// lists of tensors), with each one's output channels and stride.
    fn rbl_halo_resnet_eval(
        images: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        scales: FloatTensor<Self>,
        shifts: FloatTensor<Self>,
        c_outs: Vec<usize>,
        strides: Vec<usize>,
    ) -> FloatTensor<Self>;
}

impl HaloNetBackend for Flex {
    fn rbl_halo_resnet_eval(
        images: FlexTensor,
        weights: FlexTensor,
        scales: FlexTensor,
        shifts: FlexTensor,
        c_outs: Vec<usize>,
        strides: Vec<usize>,
    ) -> FlexTensor {
        let all = [&images, &weights, &scales, &shifts];
        assert!(all.iter().all(|t| t.dtype() == DType::F32), "halo network: f32 tensors only (the halo path is the f32 CPU path)");
        let s = images.layout().shape();
        assert_eq!(s.num_dims(), 4, "halo network: images [b, c, h, w]");
        let shape = [s[0], s[1], s[2], s[3]];
        let [images, weights, scales, shifts] = [images, weights, scales, shifts].map(|t| t.to_contiguous());
        let (mut w, mut a, mut c_in) = (weights.storage::<f32>(), (scales.storage::<f32>(), shifts.storage::<f32>()), shape[1]);
        assert_eq!(c_outs.len(), strides.len(), "halo network: one stride per convolution");
        let mut convs = Vec::with_capacity(c_outs.len());
        for (&c_out, &stride) in c_outs.iter().zip(&strides) {
            assert!(w.len() >= c_out * c_in * 9 && a.0.len() >= c_out && a.1.len() >= c_out, "halo network: too few parameters");
            let (weight, rest) = w.split_at(c_out * c_in * 9);
            let ((scale, scales_rest), (shift, shifts_rest)) = (a.0.split_at(c_out), a.1.split_at(c_out));
            convs.push(EvalConvSlices { weight, scale, shift, stride });
            (w, a, c_in) = (rest, (scales_rest, shifts_rest), c_out);
        }
        assert!(w.is_empty() && a.0.is_empty() && a.1.is_empty(), "halo network: parameters left over");
        let (y, out) = halo_resnet_eval_forward(images.storage::<f32>(), shape, &convs);
        FlexTensor::from_data(TensorData::new(y, out.shape()))
    }
}

/// One convolution of [`halo_resnet_eval`]: ReLU(conv3x3(x, weight)·scale + shift [+ shortcut]).
#[derive(Debug, Clone)]
pub struct EvalConv {
    /// burn's `[c_out, c_in, 3, 3]` weight.
    pub weight: Tensor<4>,
    /// Per-output-channel scale (BatchNorm's γ/σ, or ones once folded).
    pub scale: Tensor<1>,
    /// Per-output-channel shift.
    pub shift: Tensor<1>,
    /// 1 or 2.
    pub stride: usize,
}

/// A CIFAR ResNet's evaluation forward on the flex backend without autodiff, from NCHW images
/// to the last block's output (halo, zero ring): `convs` is the stem, then each block's two
/// convolutions (identity shortcut where a block keeps shape, option A elsewhere). The bits of
/// running the layers one op at a time ([`halo_conv_affine`](super::halo_conv_op::halo_conv_affine),
/// [`halo_shortcut_a`](super::halo_shortcut_op::halo_shortcut_a)).
pub fn halo_resnet_eval(images: Tensor<4>, convs: Vec<EvalConv>) -> Tensor<4> {
    let c_outs = convs.iter().map(|c| c.weight.dims()[0]).collect();
    let strides = convs.iter().map(|c| c.stride).collect();
    let weights = Tensor::cat(convs.iter().map(|c| c.weight.clone().flatten::<1>(0, 3)).collect(), 0);
    let scales = Tensor::cat(convs.iter().map(|c| c.scale.clone()).collect(), 0);
    let shifts = Tensor::cat(convs.into_iter().map(|c| c.shift).collect(), 0);
    Tensor::from_dispatch(<Dispatch as HaloNetBackend>::rbl_halo_resnet_eval(
        images.into_dispatch(),
        weights.into_dispatch(),
        scales.into_dispatch(),
        shifts.into_dispatch(),
        c_outs,
        strides,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::halo::{HaloGeometry, nchw_to_halo};
    use crate::{halo_conv_affine, halo_shortcut_a};
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
        Tensor::from_data(TensorData::new(v, shape), &Device::flex())
    }

    /// A small CIFAR-style network: a stem to `widths[0]`, then per stage one block at stride 2
    /// (stride 1 in the first stage) and `extra` identity blocks.
    fn network(c: usize, widths: &[usize], extra: usize, rng: &mut ChaCha8Rng) -> Vec<EvalConv> {
        let conv = |cin: usize, cout: usize, stride: usize, rng: &mut ChaCha8Rng| EvalConv {
            weight: tensor(random(cout * cin * 9, rng).iter().map(|v| v * (2.0 / (9 * cin) as f32).sqrt()).collect(), [cout, cin, 3, 3]),
            scale: tensor((0..cout).map(|_| rng.random_range(0.5f32..1.5)).collect(), [cout]),
            shift: tensor(random(cout, rng).iter().map(|v| v * 0.2).collect(), [cout]),
            stride,
        };
        let mut convs = vec![conv(c, widths[0], 1, rng)];
        let mut cin = widths[0];
        for (stage, &width) in widths.iter().enumerate() {
            for b in 0..=extra {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                convs.push(conv(cin, width, stride, rng));
                convs.push(conv(width, width, 1, rng));
                cin = width;
            }
        }
        convs
    }

    /// The same network one op per layer, as `ResNetCifar` runs it under autodiff-free
    /// evaluation before this op: the images into the halo layout, then conv + affine (+
    /// shortcut) + ReLU per convolution.
    fn layer_by_layer(images: &[f32], [b, c, h, w]: [usize; 4], convs: &[EvalConv]) -> Vec<f32> {
        let x = tensor(nchw_to_halo(images, b, c, h, w), HaloGeometry { batch: b, h, w, c }.shape());
        let layer = |x: Tensor<4>, conv: &EvalConv, residual: Option<Tensor<4>>| {
            halo_conv_affine(x, conv.weight.clone(), conv.stride, conv.scale.clone(), conv.shift.clone(), residual, true)
        };
        let mut x = layer(x, &convs[0], None);
        for pair in convs[1..].chunks_exact(2) {
            let (cin, cout) = (pair[0].weight.dims()[1], pair[0].weight.dims()[0]);
            let out = layer(x.clone(), &pair[0], None);
            let shortcut = if pair[0].stride == 1 && cin == cout { x } else { halo_shortcut_a(x, pair[0].stride, (cout - cin) / 2) };
            x = layer(out, &pair[1], Some(shortcut));
        }
        x.into_data().try_to_vec().unwrap()
    }

    /// Image by image through the whole network gives the layer-by-layer ops' output bit for
    /// bit: at the AVX-512 kernels' channel counts and sizes (ResNet-32's 16/32/64 at 32×32,
    /// both stride-2 kernels), at sizes where the image kernels do not fit, and at channel
    /// counts only the `gemm` path takes; with more images than tasks and fewer.
    #[test]
    fn whole_network_image_by_image_is_the_layer_by_layer_bits() {
        for (b, c, h, w, widths, extra) in [
            (3, 3, 32, 32, vec![16, 32, 64], 1),
            (19, 1, 9, 7, vec![16, 32, 64], 0),
            (2, 3, 6, 5, vec![4, 8, 12], 1),
            (1, 2, 5, 5, vec![6], 2),
        ] {
            let what = format!("{b}×{c}×{h}×{w} widths {widths:?}");
            let mut rng = ChaCha8Rng::seed_from_u64((b * 1000 + h * 10 + widths[0]) as u64);
            let convs = network(c, &widths, extra, &mut rng);
            let images = random(b * c * h * w, &mut rng);
            let want = layer_by_layer(&images, [b, c, h, w], &convs);
            let got = halo_resnet_eval(tensor(images, [b, c, h, w]), convs);
            let last = *widths.last().unwrap();
            let (oh, ow) = (h.div_ceil(1 << (widths.len() - 1)), w.div_ceil(1 << (widths.len() - 1)));
            assert_eq!(got.dims(), [b, oh + 2, ow + 2, last], "{what}: shape");
            let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
            assert_eq!(crate::bits(&got), crate::bits(&want), "{what}");
            assert!(got.iter().any(|v| *v > 0.0), "{what}: an all-zero output checks nothing");
        }
    }

    /// The same bits on one thread as on three (tasks of different sizes, images unchanged).
    #[test]
    fn bitwise_the_same_on_any_number_of_threads() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let convs = network(3, &[16, 32], 1, &mut rng);
        let images = random(11 * 3 * 12 * 12, &mut rng);
        let run = |threads: usize| -> Vec<u32> {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let y = pool.install(|| halo_resnet_eval(tensor(images.clone(), [11, 3, 12, 12]), convs.clone()));
            crate::bits(&y.into_data().try_to_vec::<f32>().unwrap())
        };
        assert_eq!(run(1), run(3));
    }
}
