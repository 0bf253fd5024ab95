//! The halo-layout 3×3 convolution ([`halo_conv_cpu`](super::halo_conv_cpu)) as a burn backend
//! extension on flex, with its own backward. Only the flex backend has it: the halo layout is
//! the CPU's path ([`crate::model::ResNetCifar`] uses NCHW and burn's ops elsewhere).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorData, backend_extension};
use burn::tensor::Tensor;

use super::halo::HaloGeometry;
use super::halo_conv_cpu::{Epilogue, HaloConv, Wanted, halo_conv_backward, halo_conv_forward, halo_conv_forward_then};
use super::halo_norm_op::HaloNormBackend;

/// The backend extension: a 3×3, padding-1, bias-free convolution from one halo tensor to
/// another.
#[backend_extension(Flex, Autodiff)]
pub trait HaloConvBackend: Backend {
    /// y = conv3x3(x, weight) at `stride` (1 or 2); x `[b, h + 2, w + 2, c_in]` with a zero
    /// ring, weight burn's `[c_out, c_in, 3, 3]`. `also_residual`: see
    /// [`ConvInput::AlsoResidual`].
    fn rbl_halo_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, also_residual: bool) -> FloatTensor<Self>;
    /// act(conv3x3(x, weight)·scale + shift) per output channel, each image finished while in
    /// cache (evaluation: BatchNorm with running statistics, or a folded bias, then ReLU).
    fn rbl_halo_conv_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        stride: usize,
        relu: bool,
    ) -> FloatTensor<Self>;
    /// act(conv3x3(x, weight)·scale + shift + residual).
    fn rbl_halo_conv_affine_residual(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        stride: usize,
        relu: bool,
    ) -> FloatTensor<Self>;
}

pub(crate) fn geometry(x: &FlexTensor, weight: &FlexTensor, stride: usize) -> HaloConv {
    let i = HaloGeometry::of_shape(x.layout().shape());
    let ws = weight.layout().shape();
    assert!(ws.num_dims() == 4 && ws[1] == i.c && ws[2] == 3 && ws[3] == 3, "halo conv: weight {ws:?} for {} input channels", i.c);
    assert!(stride == 1 || stride == 2, "halo conv: stride {stride}");
    assert!(x.dtype() == DType::F32 && weight.dtype() == DType::F32, "halo conv: f32 tensors only (the halo path is the f32 CPU path)");
    HaloConv { batch: i.batch, c_in: i.c, h: i.h, w: i.w, c_out: ws[0], stride }
}

fn flex_f32(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn conv_affine(
    x: FlexTensor,
    weight: FlexTensor,
    scale: FlexTensor,
    shift: FlexTensor,
    residual: Option<FlexTensor>,
    stride: usize,
    relu: bool,
) -> FlexTensor {
    let g = geometry(&x, &weight, stride);
    let (x, weight, scale, shift, residual) =
        (x.to_contiguous(), weight.to_contiguous(), scale.to_contiguous(), shift.to_contiguous(), residual.map(|r| r.to_contiguous()));
    let epilogue = Epilogue {
        scale: scale.storage::<f32>(),
        shift: shift.storage::<f32>(),
        residual: residual.as_ref().map(|r| r.storage::<f32>()),
        relu,
    };
    flex_f32(halo_conv_forward_then(x.storage::<f32>(), weight.storage::<f32>(), &g, Some(epilogue)), g.output().shape())
}

impl HaloConvBackend for Flex {
    fn rbl_halo_conv(x: FlexTensor, weight: FlexTensor, stride: usize, _also_residual: bool) -> FlexTensor {
        let g = geometry(&x, &weight, stride);
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        flex_f32(halo_conv_forward(x.storage::<f32>(), weight.storage::<f32>(), &g), g.output().shape())
    }
    fn rbl_halo_conv_affine(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        stride: usize,
        relu: bool,
    ) -> FlexTensor {
        conv_affine(x, weight, scale, shift, None, stride, relu)
    }
    fn rbl_halo_conv_affine_residual(
        x: FlexTensor,
        weight: FlexTensor,
        scale: FlexTensor,
        shift: FlexTensor,
        residual: FlexTensor,
        stride: usize,
        relu: bool,
    ) -> FlexTensor {
        conv_affine(x, weight, scale, shift, Some(residual), stride, relu)
    }
}

/// What else a convolution's input feeds, as far as the convolution's backward needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvInput {
    /// Nothing that matters here: burn adds the input's gradients as usual.
    Plain,
    /// The input is also, unchanged, the residual of a halo BatchNorm op
    /// ([`halo_bn_train`](super::halo_norm_op::halo_bn_train)) computed from this convolution's
    /// output, as in a ResNet block with an identity shortcut. burn runs backward steps deepest
    /// first, so that op has registered its gradient for the input before this convolution's
    /// backward runs; the convolution takes it out and adds its own input gradient to it image
    /// by image, as each image is computed, where burn would add the two whole tensors on one
    /// thread afterwards. Same values, bit for bit (a + b either way). Set where that is not
    /// so, the backward finds no gradient to take and burn's `consume` panics: the flag belongs
    /// to the code that builds both ops (`BasicBlock::forward_halo`).
    AlsoResidual,
}

/// Values added by the [`ConvInput::AlsoResidual`] path, for the tests that check it runs.
#[cfg(test)]
pub(crate) static FUSED_ADDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether a node's requirement is `GradInBackward` (an intermediate tensor, whose gradient
/// `Gradients::consume` removes). burn 0.22 does not export the `Requirement` type, so this
/// compares its name; if that ever changes, the fused add is skipped, never wrong.
pub(crate) fn backward_only(requirement: &impl std::fmt::Debug) -> bool {
    format!("{requirement:?}") == "GradInBackward"
}

/// The backward step of [`HaloConvBackend::rbl_halo_conv`] under autodiff.
#[derive(Debug)]
struct HaloConvBackward;

impl Backward<Flex, 2> for HaloConvBackward {
    type State = (NodeId, NodeId, usize, bool);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (x_state, weight_state, stride, also_residual) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state).to_contiguous();
        let g = geometry(&x, &weight, stride);
        let x = x.to_contiguous();
        // The residual's gradient of x, registered already (ConvInput::AlsoResidual), taken out
        // so that dx is added to it here rather than by burn when dx is registered.
        let other = match &node_x {
            Some(node) if also_residual && backward_only(&node.requirement) => Some(grads.consume::<Flex>(node).to_contiguous()),
            _ => None,
        };
        let other = other.as_ref().map(|t| t.storage::<f32>());
        #[cfg(test)]
        FUSED_ADDS.fetch_add(other.map_or(0, <[f32]>::len), std::sync::atomic::Ordering::Relaxed);
        let wanted = match (node_x.is_some(), node_weight.is_some()) {
            (true, true) => Wanted::Both(other),
            (true, false) => Wanted::InputGrad(other),
            (false, true) => Wanted::WeightGrad,
            (false, false) => return,
        };
        let (dx, dw) = halo_conv_backward(x.storage::<f32>(), dy.storage::<f32>(), weight.storage::<f32>(), &g, wanted);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, flex_f32(dx, g.input().shape()));
        }
        if let (Some(node), Some(dw)) = (node_weight, dw) {
            grads.register::<Flex>(node.id, flex_f32(dw, [g.c_out, g.c_in, 3, 3]));
        }
    }
}

impl<C: CheckpointStrategy> HaloConvBackend for Autodiff<Flex, C> {
    fn rbl_halo_conv(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, also_residual: bool) -> FloatTensor<Self> {
        match HaloConvBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y = Flex::rbl_halo_conv(x.into_primitive(), weight.into_primitive(), stride, also_residual);
                prep.finish((x_state, weight_state, stride, also_residual), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::rbl_halo_conv(x.into_primitive(), weight.into_primitive(), stride, also_residual))
            }
        }
    }
    // Under autodiff the two steps stay separate ops, each with its own backward.
    fn rbl_halo_conv_affine(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        stride: usize,
        relu: bool,
    ) -> FloatTensor<Self> {
        <Self as HaloNormBackend>::rbl_halo_affine(Self::rbl_halo_conv(x, weight, stride, false), scale, shift, relu)
    }
    fn rbl_halo_conv_affine_residual(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        stride: usize,
        relu: bool,
    ) -> FloatTensor<Self> {
        <Self as HaloNormBackend>::rbl_halo_affine_residual(Self::rbl_halo_conv(x, weight, stride, false), scale, shift, residual, relu)
    }
}

/// A 3×3, padding-1, bias-free convolution of a halo tensor on the flex backend (f32); `input`
/// says whether x is also a later op's residual ([`ConvInput`]).
pub fn halo_conv(x: Tensor<4>, weight: Tensor<4>, stride: usize, input: ConvInput) -> Tensor<4> {
    let also_residual = input == ConvInput::AlsoResidual;
    Tensor::from_dispatch(<Dispatch as HaloConvBackend>::rbl_halo_conv(x.into_dispatch(), weight.into_dispatch(), stride, also_residual))
}

/// act(conv3x3(x, weight)·scale + shift (+ residual)) on the flex backend: one fused op
/// without autodiff, [`halo_conv`] then [`halo_affine`](super::halo_norm_op::halo_affine) with it.
pub fn halo_conv_affine(
    x: Tensor<4>,
    weight: Tensor<4>,
    stride: usize,
    scale: Tensor<1>,
    shift: Tensor<1>,
    residual: Option<Tensor<4>>,
    relu: bool,
) -> Tensor<4> {
    Tensor::from_dispatch(match residual {
        None => <Dispatch as HaloConvBackend>::rbl_halo_conv_affine(
            x.into_dispatch(),
            weight.into_dispatch(),
            scale.into_dispatch(),
            shift.into_dispatch(),
            stride,
            relu,
        ),
        Some(r) => <Dispatch as HaloConvBackend>::rbl_halo_conv_affine_residual(
            x.into_dispatch(),
            weight.into_dispatch(),
            scale.into_dispatch(),
            shift.into_dispatch(),
            r.into_dispatch(),
            stride,
            relu,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::halo::{halo_to_nchw, nchw_to_halo};
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    fn assert_close(what: &str, a: &[f32], b: &[f32]) {
        crate::assert_close(what, a, b, 2e-5);
    }

    /// The op under autodiff against burn's own `conv2d` on the same values in NCHW: output,
    /// input gradient and weight gradient for L = Σ y ⊙ r.
    #[test]
    fn matches_burn_conv2d_forward_and_backward() {
        let device = Device::flex().autodiff();
        for (b, c_in, h, w, c_out, stride) in [(3, 16, 8, 8, 16, 1), (2, 8, 7, 5, 32, 1), (2, 3, 6, 6, 16, 1), (2, 8, 8, 7, 12, 2)] {
            let what = format!("b{b} {c_in}→{c_out} {h}×{w} s{stride}");
            let mut rng = ChaCha8Rng::seed_from_u64((b * 100 + c_in + c_out + stride) as u64);
            let (x, wt) = (random(b * c_in * h * w, &mut rng), random(c_out * c_in * 9, &mut rng));
            let weight = Tensor::<4>::from_data(TensorData::new(wt, [c_out, c_in, 3, 3]), &device).require_grad();
            let x_nchw = Tensor::<4>::from_data(TensorData::new(x.clone(), [b, c_in, h, w]), &device).require_grad();
            let reference = conv2d(x_nchw.clone(), weight.clone(), None, ConvOptions::new([stride, stride], [1, 1], [1, 1], 1));
            let [_, _, oh, ow] = reference.dims();
            let r = random(b * c_out * oh * ow, &mut rng);
            let g_ref =
                (reference.clone() * Tensor::<4>::from_data(TensorData::new(r.clone(), [b, c_out, oh, ow]), &device)).sum().backward();

            let x_halo =
                Tensor::<4>::from_data(TensorData::new(nchw_to_halo(&x, b, c_in, h, w), [b, h + 2, w + 2, c_in]), &device).require_grad();
            let y = halo_conv(x_halo.clone(), weight.clone(), stride, ConvInput::Plain);
            let out = HaloGeometry { batch: b, h: oh, w: ow, c: c_out };
            assert_eq!(y.dims(), out.shape(), "{what}: shape");
            let r_halo = Tensor::<4>::from_data(TensorData::new(nchw_to_halo(&r, b, c_out, oh, ow), out.shape()), &device);
            let g = (y.clone() * r_halo).sum().backward();
            assert_close(&format!("{what} forward"), &halo_to_nchw(&to_vec(y), &out), &to_vec(reference));
            let dx = to_vec(x_halo.grad(&g).unwrap());
            assert_close(
                &format!("{what} dx"),
                &halo_to_nchw(&dx, &HaloGeometry { batch: b, h, w, c: c_in }),
                &to_vec(x_nchw.grad(&g_ref).unwrap()),
            );
            assert_close(&format!("{what} dw"), &to_vec(weight.grad(&g).unwrap()), &to_vec(weight.grad(&g_ref).unwrap()));
        }
    }

    /// A residual block's conv → BN + identity residual + ReLU under autodiff: with
    /// `ConvInput::AlsoResidual` (the input gradient added to the residual's by the convolution)
    /// every gradient is bitwise the one burn's own accumulation gives (`Plain`), at stride 1
    /// with the AVX-512 kernels' channel counts and with odd ones, and the fused add ran.
    #[test]
    fn input_gradient_added_to_the_residual_s_is_the_same_bits() {
        let device = Device::flex().autodiff();
        for (b, c, h, w) in [(3, 16, 8, 8), (2, 32, 5, 7), (2, 5, 6, 4)] {
            let g = HaloGeometry { batch: b, h, w, c };
            let mut rng = ChaCha8Rng::seed_from_u64((b * 1000 + c * 10 + h) as u64);
            let x = nchw_to_halo(&random(b * c * h * w, &mut rng), b, c, h, w);
            let (wt, r) = (random(c * c * 9, &mut rng), nchw_to_halo(&random(b * c * h * w, &mut rng), b, c, h, w));
            let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / c as f32).collect();
            let beta: Vec<f32> = (0..c).map(|i| i as f32 / 10.0 - 0.2).collect();
            let grads = |input: ConvInput| {
                let leaf = Tensor::<4>::from_data(TensorData::new(x.clone(), g.shape()), &device).require_grad();
                let weight = Tensor::<4>::from_data(TensorData::new(wt.clone(), [c, c, 3, 3]), &device).require_grad();
                // An intermediate tensor, as a block's input is (the leaf's gradient is twice its).
                let block_input = leaf.clone() * 2.0;
                let y = halo_conv(block_input.clone(), weight.clone(), 1, input);
                let gamma = Tensor::<1>::from_data(TensorData::new(gamma.clone(), [c]), &device);
                let beta = Tensor::<1>::from_data(TensorData::new(beta.clone(), [c]), &device);
                let (out, _, _) = crate::halo_bn_train(y, gamma, beta, Some(block_input), true, 1e-5);
                let loss = (out * Tensor::<4>::from_data(TensorData::new(r.clone(), g.shape()), &device)).sum().backward();
                (to_vec(leaf.grad(&loss).unwrap()), to_vec(weight.grad(&loss).unwrap()))
            };
            let (dx_plain, dw_plain) = grads(ConvInput::Plain);
            let before = FUSED_ADDS.load(std::sync::atomic::Ordering::Relaxed);
            let (dx_fused, dw_fused) = grads(ConvInput::AlsoResidual);
            let added = FUSED_ADDS.load(std::sync::atomic::Ordering::Relaxed) - before;
            assert!(added >= g.len(), "{b}×{c}×{h}×{w}: the fused add did not run ({added} values)");
            assert_eq!(crate::bits(&dx_fused), crate::bits(&dx_plain), "{b}×{c}×{h}×{w}: input gradient");
            assert_eq!(crate::bits(&dw_fused), crate::bits(&dw_plain), "{b}×{c}×{h}×{w}: weight gradient");
            assert!(dx_plain.iter().any(|v| *v != 0.0), "{b}×{c}×{h}×{w}: a zero gradient checks nothing");
        }
    }
}
