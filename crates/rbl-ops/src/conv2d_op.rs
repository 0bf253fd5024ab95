//! The NCHW convolution (the 224-px ImageNet nets' layers, grouped ones included) as a burn
//! backend extension with its own backward, so that training on the flex backend runs
//! [`conv2d_cpu`](super::conv2d_cpu)'s kernels in both directions. Other backends (wgpu) and
//! other dtypes go through burn's own `conv2d`.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorData, TensorMetadata, backend_extension};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, Tensor};

use super::conv2d_cpu::{BiasAct, ConvGeometry, conv2d_forward, conv2d_forward_then, conv2d_input_grad, conv2d_weight_grad};
use super::on_flex;

/// The backend extension: a square-padded, undilated 2-D convolution without bias, in
/// `groups` channel groups (weight `[c_out, c_in / groups, kh, kw]`).
#[backend_extension(Flex, Autodiff)]
pub trait ConvBackend: Backend {
    /// y = conv2d(x, weight) with `conv`'s stride and padding (both axes) and groups.
    fn rbl_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, conv: ConvShape) -> FloatTensor<Self>;
    /// act(conv2d(x, weight) + bias): a folded convolution at evaluation (one pass on flex).
    fn rbl_conv2d_bias_act(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        conv: ConvShape,
        relu: bool,
    ) -> FloatTensor<Self>;
    /// act(conv2d(x, weight) + bias + residual): the last convolution of a bottleneck block
    /// with the shortcut's add.
    fn rbl_conv2d_bias_act_residual(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        conv: ConvShape,
        relu: bool,
    ) -> FloatTensor<Self>;
}

/// Stride and padding (both axes) and channel groups of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Stride on both axes.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Channel groups.
    pub groups: usize,
}

impl ConvShape {
    /// burn's options for the same convolution.
    fn options(self) -> ConvOptions<2> {
        ConvOptions::new([self.stride, self.stride], [self.padding, self.padding], [1, 1], self.groups)
    }
}

fn geometry(x: &FlexTensor, weight: &FlexTensor, conv: ConvShape) -> ConvGeometry {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    let ConvShape { stride, padding, groups } = conv;
    ConvGeometry { batch: xs[0], c_in: xs[1], h: xs[2], w: xs[3], c_out: ws[0], kh: ws[2], kw: ws[3], stride, pad: padding, groups }
}

/// Whether the kernels handle these tensors; anything else goes to flex's own ops.
fn supported(x: &FlexTensor, weight: &FlexTensor, groups: usize) -> bool {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && xs.num_dims() == 4
        && ws.num_dims() == 4
        && groups > 0
        && xs[1] == ws[1] * groups
        && ws[0].is_multiple_of(groups)
}

fn flex_f32(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl ConvBackend for Flex {
    fn rbl_conv2d(x: FlexTensor, weight: FlexTensor, conv: ConvShape) -> FlexTensor {
        if !supported(&x, &weight, conv.groups) {
            return <Flex as ModuleOps<Flex>>::conv2d(x, weight, None, conv.options());
        }
        let g = geometry(&x, &weight, conv);
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        flex_f32(conv2d_forward(x.storage::<f32>(), weight.storage::<f32>(), &g), [g.batch, g.c_out, g.oh(), g.ow()])
    }
    fn rbl_conv2d_bias_act(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, conv: ConvShape, relu: bool) -> FlexTensor {
        conv_bias_act(x, weight, bias, None, conv, relu)
    }
    fn rbl_conv2d_bias_act_residual(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        residual: FlexTensor,
        conv: ConvShape,
        relu: bool,
    ) -> FlexTensor {
        conv_bias_act(x, weight, bias, Some(residual), conv, relu)
    }
}

/// The fused forward on flex, or the separate ops where the kernels do not apply.
fn conv_bias_act(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    residual: Option<FlexTensor>,
    conv: ConvShape,
    relu: bool,
) -> FlexTensor {
    let fused =
        supported(&x, &weight, conv.groups) && bias.dtype() == DType::F32 && residual.as_ref().is_none_or(|r| r.dtype() == DType::F32);
    if !fused {
        return compose::<Flex>(Flex::rbl_conv2d(x, weight, conv), bias, residual, relu);
    }
    let g = geometry(&x, &weight, conv);
    let (x, weight, bias) = (x.to_contiguous(), weight.to_contiguous(), bias.to_contiguous());
    let residual = residual.map(|r| r.to_contiguous());
    let epilogue = BiasAct { bias: bias.storage::<f32>(), residual: residual.as_ref().map(|r| r.storage::<f32>()), relu };
    let y = conv2d_forward_then(x.storage::<f32>(), weight.storage::<f32>(), &g, Some(epilogue));
    flex_f32(y, [g.batch, g.c_out, g.oh(), g.ow()])
}

/// act(y + bias (+ residual)) from the backend's own ops (bias broadcast over [1, c, 1, 1]).
fn compose<B: Backend>(y: FloatTensor<B>, bias: FloatTensor<B>, residual: Option<FloatTensor<B>>, relu: bool) -> FloatTensor<B> {
    let c = bias.shape()[0];
    let y = B::float_add(y, B::float_reshape(bias, Shape::new([1, c, 1, 1])));
    let y = match residual {
        Some(r) => B::float_add(y, r),
        None => y,
    };
    if relu { B::relu(y) } else { y }
}

/// The backward step of [`ConvBackend::rbl_conv2d`] under autodiff.
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (NodeId, NodeId, ConvShape);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, conv) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
        if !supported(&x, &weight, conv.groups) || dy.dtype() != DType::F32 {
            if let Some(node) = node_x {
                grads.register::<Flex>(
                    node.id,
                    <Flex as ModuleOps<Flex>>::conv2d_x_backward(x.clone(), weight.clone(), dy.clone(), conv.options()),
                );
            }
            if let Some(node) = node_weight {
                grads.register::<Flex>(node.id, <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, weight, dy, conv.options()));
            }
            return;
        }
        let g = geometry(&x, &weight, conv);
        let dy = dy.to_contiguous();
        if let Some(node) = node_x {
            let w = weight.to_contiguous();
            let dx = conv2d_input_grad(dy.storage::<f32>(), w.storage::<f32>(), &g);
            grads.register::<Flex>(node.id, flex_f32(dx, [g.batch, g.c_in, g.h, g.w]));
        }
        if let Some(node) = node_weight {
            let x = x.to_contiguous();
            let dw = conv2d_weight_grad(x.storage::<f32>(), dy.storage::<f32>(), &g);
            grads.register::<Flex>(node.id, flex_f32(dw, [g.c_out, g.c_in / g.groups, g.kh, g.kw]));
        }
    }
}

impl<C: CheckpointStrategy> ConvBackend for Autodiff<Flex, C> {
    fn rbl_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, conv: ConvShape) -> FloatTensor<Self> {
        match ConvBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y = Flex::rbl_conv2d(x.into_primitive(), weight.into_primitive(), conv);
                prep.finish((x_state, weight_state, conv), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::rbl_conv2d(x.into_primitive(), weight.into_primitive(), conv)),
        }
    }
    // Under autodiff the steps stay separate ops, each with its own backward.
    fn rbl_conv2d_bias_act(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        conv: ConvShape,
        relu: bool,
    ) -> FloatTensor<Self> {
        compose::<Self>(Self::rbl_conv2d(x, weight, conv), bias, None, relu)
    }
    fn rbl_conv2d_bias_act_residual(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        conv: ConvShape,
        relu: bool,
    ) -> FloatTensor<Self> {
        compose::<Self>(Self::rbl_conv2d(x, weight, conv), bias, Some(residual), relu)
    }
}

/// conv2d(x, weight) with `conv`'s stride and padding (the same on both axes) and channel
/// groups, no bias: rbl's kernels on the flex backend, burn's `conv2d` elsewhere.
pub fn conv2d_square(x: Tensor<4>, weight: Tensor<4>, conv: ConvShape) -> Tensor<4> {
    if on_flex(&x.device()) {
        Tensor::from_dispatch(<Dispatch as ConvBackend>::rbl_conv2d(x.into_dispatch(), weight.into_dispatch(), conv))
    } else {
        conv2d(x, weight, None, conv.options())
    }
}

/// act(conv2d(x, weight) + bias (+ residual)) with `conv`'s stride, padding and groups: one
/// pass per image on the flex backend without autodiff (evaluation of the folded 224-px nets),
/// the separate ops under autodiff, burn's own ops on other backends.
pub fn conv2d_bias_act(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    residual: Option<Tensor<4>>,
    conv: ConvShape,
    relu: bool,
) -> Tensor<4> {
    if !on_flex(&x.device()) {
        let c = bias.dims()[0];
        let y = conv2d(x, weight, None, conv.options()) + bias.reshape([1, c, 1, 1]);
        let y = residual.map_or(y.clone(), |r| y + r);
        return if relu { burn::tensor::activation::relu(y) } else { y };
    }
    Tensor::from_dispatch(match residual {
        None => <Dispatch as ConvBackend>::rbl_conv2d_bias_act(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch(), conv, relu),
        Some(r) => <Dispatch as ConvBackend>::rbl_conv2d_bias_act_residual(
            x.into_dispatch(),
            weight.into_dispatch(),
            bias.into_dispatch(),
            r.into_dispatch(),
            conv,
            relu,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use burn::tensor::TensorData;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn shape(stride: usize, padding: usize, groups: usize) -> ConvShape {
        ConvShape { stride, padding, groups }
    }

    fn random(shape: [usize; 4], rng: &mut ChaCha8Rng, device: &Device) -> Tensor<4> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn assert_close(what: &str, a: Tensor<4>, b: Tensor<4>) {
        assert_eq!(a.dims(), b.dims(), "{what}: shape");
        let (a, b): (Vec<f32>, Vec<f32>) = (a.into_data().try_to_vec().unwrap(), b.into_data().try_to_vec().unwrap());
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 2e-5 * scale, "{what}: max |diff| {worst} (scale {scale})");
    }

    /// Forward, input gradient and weight gradient against burn's conv2d, for an upstream
    /// gradient that is itself random (loss = Σ y ⊙ r).
    fn check(batch: usize, c_in: usize, hw: (usize, usize), c_out: usize, k: (usize, usize), stride: usize, pad: usize) {
        check_grouped(batch, c_in, hw, c_out, k, stride, pad, 1);
    }

    #[allow(clippy::too_many_arguments)]
    fn check_grouped(
        batch: usize,
        c_in: usize,
        hw: (usize, usize),
        c_out: usize,
        k: (usize, usize),
        stride: usize,
        pad: usize,
        groups: usize,
    ) {
        let what = format!("b{batch} c{c_in}→{c_out} {hw:?} k{k:?} s{stride} p{pad} g{groups}");
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64((batch * 1000 + c_in * 100 + c_out * 10 + stride + pad) as u64);
        let x = random([batch, c_in, hw.0, hw.1], &mut rng, &device).require_grad();
        let w = random([c_out, c_in / groups, k.0, k.1], &mut rng, &device).require_grad();
        let reference = conv2d(x.clone(), w.clone(), None, shape(stride, pad, groups).options());
        let ours = conv2d_square(x.clone(), w.clone(), shape(stride, pad, groups));
        assert_close(&format!("{what} forward"), ours.clone(), reference.clone());
        let r = random(reference.dims(), &mut rng, &device);
        let g_ref = (reference * r.clone()).sum().backward();
        let g = (ours * r).sum().backward();
        assert_close(&format!("{what} dx"), x.grad(&g).unwrap(), x.grad(&g_ref).unwrap());
        assert_close(&format!("{what} dw"), w.grad(&g).unwrap(), w.grad(&g_ref).unwrap());
    }

    #[test]
    fn matches_burn_conv2d_forward_and_backward() {
        check(2, 3, (8, 8), 4, (3, 3), 1, 1); // the ResNet stem
        check(4, 16, (8, 8), 16, (3, 3), 1, 1); // a basic block
        check(3, 5, (9, 7), 6, (3, 3), 2, 1); // stride 2, odd and unequal sides
        check(2, 2, (7, 7), 3, (3, 3), 1, 0); // no padding
        check(1, 3, (5, 6), 2, (3, 3), 2, 0);
        check(2, 3, (6, 6), 4, (5, 5), 1, 2); // 5×5
        check(2, 4, (6, 6), 3, (1, 1), 1, 0); // 1×1
        check(2, 3, (6, 7), 4, (1, 3), 1, 0); // non-square kernel: the column-matrix input gradient
        check(1, 1, (4, 4), 1, (3, 3), 3, 1); // stride larger than the overlap
        check_grouped(2, 8, (6, 6), 12, (3, 3), 1, 1, 4); // ResNeXt's grouped 3×3
        check_grouped(2, 8, (7, 7), 8, (3, 3), 2, 1, 2); // … at stride 2: the column-matrix input gradient
        check_grouped(2, 6, (5, 5), 6, (3, 3), 1, 1, 6); // depthwise
    }

    #[test]
    fn without_autodiff_and_with_only_the_weight_tracked() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let plain = Device::flex();
        let x = random([2, 3, 6, 6], &mut rng, &plain);
        let w = random([4, 3, 3, 3], &mut rng, &plain);
        assert_close(
            "untracked",
            conv2d_square(x.clone(), w.clone(), shape(1, 1, 1)),
            conv2d(x.clone(), w.clone(), None, shape(1, 1, 1).options()),
        );
        let ad = plain.autodiff();
        let (x, w) = (Tensor::<4>::from_data(x.into_data(), &ad), Tensor::<4>::from_data(w.into_data(), &ad).require_grad());
        let g = conv2d_square(x.clone(), w.clone(), shape(1, 1, 1)).sum().backward();
        let g_ref = conv2d(x, w.clone(), None, shape(1, 1, 1).options()).sum().backward();
        assert_close("dw only", w.grad(&g).unwrap(), w.grad(&g_ref).unwrap());
    }

    #[test]
    fn fused_bias_act_equals_the_separate_ops() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let plain = Device::flex();
        let conv = ConvShape { stride: 2, padding: 1, groups: 2 };
        let x = random([3, 4, 7, 7], &mut rng, &plain);
        let w = random([6, 2, 3, 3], &mut rng, &plain);
        let b: Tensor<1> = random([1, 6, 1, 1], &mut rng, &plain).reshape([6]);
        let r = random([3, 6, 4, 4], &mut rng, &plain);
        let bits = |t: Tensor<4>| crate::bits(&t.into_data().try_to_vec::<f32>().unwrap());
        for (residual, relu) in [(None, false), (None, true), (Some(r.clone()), false), (Some(r.clone()), true)] {
            let what = format!("residual {}, relu {relu}", residual.is_some());
            let y = conv2d(x.clone(), w.clone(), None, shape(2, 1, 2).options()) + b.clone().reshape([1, 6, 1, 1]);
            let y = residual.clone().map_or(y.clone(), |r| y + r);
            let want = if relu { burn::tensor::activation::relu(y) } else { y };
            // On plain flex: one fused pass, the separate ops' sums in their order.
            let fused = conv2d_bias_act(x.clone(), w.clone(), b.clone(), residual.clone(), conv, relu);
            assert_close(&format!("{what} fused"), fused.clone(), want.clone());
            let ours = conv2d_square(x.clone(), w.clone(), shape(2, 1, 2)) + b.clone().reshape([1, 6, 1, 1]);
            let ours = residual.clone().map_or(ours.clone(), |r| ours + r);
            let ours = if relu { burn::tensor::activation::relu(ours) } else { ours };
            assert_eq!(bits(fused), bits(ours), "{what}: fused and separate rbl ops, bit for bit");
            // Under autodiff: separate ops, gradients to every input.
            let ad = plain.clone().autodiff();
            let track = |t: &Tensor<4>| Tensor::<4>::from_data(t.to_data(), &ad).require_grad();
            let (xa, wa) = (track(&x), track(&w));
            let ba = Tensor::<1>::from_data(b.to_data(), &ad).require_grad();
            let out = conv2d_bias_act(xa.clone(), wa.clone(), ba.clone(), residual.clone().map(|r| track(&r)), conv, relu);
            assert_close(&format!("{what} autodiff"), Tensor::from_data(out.to_data(), &plain), want);
            let g = out.sum().backward();
            assert!(xa.grad(&g).is_some() && wa.grad(&g).is_some() && ba.grad(&g).is_some(), "{what}: gradients");
        }
    }

    #[test]
    fn non_f32_input_falls_back_to_burn() {
        let device = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x = random([1, 2, 5, 5], &mut rng, &device).cast(burn::tensor::FloatDType::F64);
        let w = random([3, 2, 3, 3], &mut rng, &device).cast(burn::tensor::FloatDType::F64);
        let ours = conv2d_square(x.clone(), w.clone(), shape(1, 1, 1)).cast(burn::tensor::FloatDType::F32);
        let reference = conv2d(x, w, None, shape(1, 1, 1).options()).cast(burn::tensor::FloatDType::F32);
        assert_close("f64", ours, reference);
    }
}
