//! The convolution of the CIFAR ResNet as a burn backend extension with its own backward, so
//! that training on the flex backend runs [`conv2d_cpu`](super::conv2d_cpu)'s kernels in both
//! directions. Other backends (wgpu) and other dtypes go through burn's own `conv2d`.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorData, backend_extension};
use burn::tensor::Tensor;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

use super::conv2d_cpu::{ConvGeometry, conv2d_forward, conv2d_input_grad, conv2d_weight_grad};
use super::on_flex;

/// The backend extension: a square-padded, ungrouped, undilated 2-D convolution without bias.
#[backend_extension(Flex, Autodiff)]
pub trait ConvBackend: Backend {
    /// y = conv2d(x, weight) with `stride` and `padding` on both axes.
    fn rbl_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize) -> FloatTensor<Self>;
}

fn options(stride: usize, padding: usize) -> ConvOptions<2> {
    ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1)
}

fn geometry(x: &FlexTensor, weight: &FlexTensor, stride: usize, padding: usize) -> ConvGeometry {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    ConvGeometry { batch: xs[0], c_in: xs[1], h: xs[2], w: xs[3], c_out: ws[0], kh: ws[2], kw: ws[3], stride, pad: padding }
}

/// Whether the kernels handle these tensors; anything else goes to flex's own ops.
fn supported(x: &FlexTensor, weight: &FlexTensor) -> bool {
    let (xs, ws) = (x.layout().shape(), weight.layout().shape());
    x.dtype() == DType::F32 && weight.dtype() == DType::F32 && xs.num_dims() == 4 && ws.num_dims() == 4 && xs[1] == ws[1]
}

fn flex_f32(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl ConvBackend for Flex {
    fn rbl_conv2d(x: FlexTensor, weight: FlexTensor, stride: usize, padding: usize) -> FlexTensor {
        if !supported(&x, &weight) {
            return <Flex as ModuleOps<Flex>>::conv2d(x, weight, None, options(stride, padding));
        }
        let g = geometry(&x, &weight, stride, padding);
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        flex_f32(conv2d_forward(x.storage::<f32>(), weight.storage::<f32>(), &g), [g.batch, g.c_out, g.oh(), g.ow()])
    }
}

/// The backward step of [`ConvBackend::rbl_conv2d`] under autodiff.
#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = (NodeId, NodeId, usize, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, stride, padding) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(weight_state);
        if !supported(&x, &weight) || dy.dtype() != DType::F32 {
            if let Some(node) = node_x {
                grads.register::<Flex>(
                    node.id,
                    <Flex as ModuleOps<Flex>>::conv2d_x_backward(x.clone(), weight.clone(), dy.clone(), options(stride, padding)),
                );
            }
            if let Some(node) = node_weight {
                grads.register::<Flex>(node.id, <Flex as ModuleOps<Flex>>::conv2d_weight_backward(x, weight, dy, options(stride, padding)));
            }
            return;
        }
        let g = geometry(&x, &weight, stride, padding);
        let dy = dy.to_contiguous();
        if let Some(node) = node_x {
            let w = weight.to_contiguous();
            let dx = conv2d_input_grad(dy.storage::<f32>(), w.storage::<f32>(), &g);
            grads.register::<Flex>(node.id, flex_f32(dx, [g.batch, g.c_in, g.h, g.w]));
        }
        if let Some(node) = node_weight {
            let x = x.to_contiguous();
            let dw = conv2d_weight_grad(x.storage::<f32>(), dy.storage::<f32>(), &g);
            grads.register::<Flex>(node.id, flex_f32(dw, [g.c_out, g.c_in, g.kh, g.kw]));
        }
    }
}

impl<C: CheckpointStrategy> ConvBackend for Autodiff<Flex, C> {
    fn rbl_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride: usize, padding: usize) -> FloatTensor<Self> {
        match ConvBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let y = Flex::rbl_conv2d(x.into_primitive(), weight.into_primitive(), stride, padding);
                prep.finish((x_state, weight_state, stride, padding), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::rbl_conv2d(x.into_primitive(), weight.into_primitive(), stride, padding)),
        }
    }
}

/// conv2d(x, weight) with the same stride and padding on both axes, no bias: rbl's kernels on
/// the flex backend, burn's `conv2d` elsewhere.
pub fn conv2d_square(x: Tensor<4>, weight: Tensor<4>, stride: usize, padding: usize) -> Tensor<4> {
    if on_flex(&x.device()) {
        Tensor::from_dispatch(<Dispatch as ConvBackend>::rbl_conv2d(x.into_dispatch(), weight.into_dispatch(), stride, padding))
    } else {
        conv2d(x, weight, None, options(stride, padding))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use burn::tensor::TensorData;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

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
        let what = format!("b{batch} c{c_in}→{c_out} {hw:?} k{k:?} s{stride} p{pad}");
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64((batch * 1000 + c_in * 100 + c_out * 10 + stride + pad) as u64);
        let x = random([batch, c_in, hw.0, hw.1], &mut rng, &device).require_grad();
        let w = random([c_out, c_in, k.0, k.1], &mut rng, &device).require_grad();
        let reference = conv2d(x.clone(), w.clone(), None, options(stride, pad));
        let ours = conv2d_square(x.clone(), w.clone(), stride, pad);
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
    }

    #[test]
    fn without_autodiff_and_with_only_the_weight_tracked() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let plain = Device::flex();
        let x = random([2, 3, 6, 6], &mut rng, &plain);
        let w = random([4, 3, 3, 3], &mut rng, &plain);
        assert_close("untracked", conv2d_square(x.clone(), w.clone(), 1, 1), conv2d(x.clone(), w.clone(), None, options(1, 1)));
        let ad = plain.autodiff();
        let (x, w) = (Tensor::<4>::from_data(x.into_data(), &ad), Tensor::<4>::from_data(w.into_data(), &ad).require_grad());
        let g = conv2d_square(x.clone(), w.clone(), 1, 1).sum().backward();
        let g_ref = conv2d(x, w.clone(), None, options(1, 1)).sum().backward();
        assert_close("dw only", w.grad(&g).unwrap(), w.grad(&g_ref).unwrap());
    }

    #[test]
    fn non_f32_input_falls_back_to_burn() {
        let device = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let x = random([1, 2, 5, 5], &mut rng, &device).cast(burn::tensor::FloatDType::F64);
        let w = random([3, 2, 3, 3], &mut rng, &device).cast(burn::tensor::FloatDType::F64);
        let ours = conv2d_square(x.clone(), w.clone(), 1, 1).cast(burn::tensor::FloatDType::F32);
        let reference = conv2d(x, w, None, options(1, 1)).cast(burn::tensor::FloatDType::F32);
        assert_close("f64", ours, reference);
    }
}
