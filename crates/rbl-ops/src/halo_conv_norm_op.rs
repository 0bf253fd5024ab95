//! A convolution followed by training-mode BatchNorm (+ residual) (+ ReLU) as one op under
//! autodiff, so that its backward can hand BatchNorm's input gradient to the convolution image
//! by image instead of through memory ([`halo_conv_norm_cpu`](super::halo_conv_norm_cpu)); its
//! forward takes BatchNorm's moments as the convolution finishes each image. Every output and
//! gradient is bitwise the two ops' (tested).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorData, backend_extension};
use burn::tensor::Tensor;

use super::halo_conv_cpu::Wanted;
use super::halo_conv_norm_cpu::{BnBackwardInputs, ConvBnGrads, halo_conv_bn_train_backward, halo_conv_forward_moments};
use super::halo_conv_op::{ConvInput, backward_only, geometry};
use super::halo_norm_cpu::{bn_train_affine, halo_bn_train_backward};

/// The backend extension: z = act(BN(conv3x3(x, weight)) [+ residual]) with batch statistics,
/// returning (z, batch mean, biased batch variance). `also_residual`: x is also the residual of
/// a later op ([`ConvInput::AlsoResidual`]).
#[backend_extension(Flex, Autodiff)]
pub trait HaloConvNormBackend: Backend {
    /// Without a residual.
    #[allow(clippy::too_many_arguments)]
    fn rbl_halo_conv_bn_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stride: usize,
        relu: bool,
        epsilon: f64,
        also_residual: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// With a residual added before the activation.
    #[allow(clippy::too_many_arguments)]
    fn rbl_halo_conv_bn_train_residual(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        stride: usize,
        relu: bool,
        epsilon: f64,
        also_residual: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// The forward on flex: the convolution's output y, then BatchNorm's (z, mean, variance).
#[allow(clippy::too_many_arguments)]
fn forward(
    x: FlexTensor,
    weight: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    residual: Option<FlexTensor>,
    stride: usize,
    relu: bool,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor, FlexTensor) {
    let g = geometry(&x, &weight, stride);
    let [x, weight, gamma, beta] = [x, weight, gamma, beta].map(|t| t.to_contiguous());
    let residual = residual.map(|r| r.to_contiguous());
    let o = g.output();
    assert!(gamma.storage::<f32>().len() == o.c && beta.storage::<f32>().len() == o.c, "halo conv + batch norm: parameter size");
    if let Some(r) = &residual {
        assert_eq!(r.storage::<f32>().len(), o.len(), "halo conv + batch norm: residual size");
    }
    // The moments are taken as the convolution finishes each image (the two ops' bits).
    let (y, mean, var) = halo_conv_forward_moments(x.storage::<f32>(), weight.storage::<f32>(), &g);
    let z = bn_train_affine(
        &y,
        gamma.storage::<f32>(),
        beta.storage::<f32>(),
        &mean,
        &var,
        residual.as_ref().map(|r| r.storage::<f32>()),
        relu,
        epsilon,
        &o,
    );
    (tensor(y, &o.shape()), tensor(z, &o.shape()), tensor(mean, &[o.c]), tensor(var, &[o.c]))
}

/// A flex tensor of `values` in `shape`.
fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

impl HaloConvNormBackend for Flex {
    fn rbl_halo_conv_bn_train(
        x: FlexTensor,
        weight: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        stride: usize,
        relu: bool,
        epsilon: f64,
        _also_residual: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (_, z, mean, var) = forward(x, weight, gamma, beta, None, stride, relu, epsilon);
        (z, mean, var)
    }
    fn rbl_halo_conv_bn_train_residual(
        x: FlexTensor,
        weight: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        residual: FlexTensor,
        stride: usize,
        relu: bool,
        epsilon: f64,
        _also_residual: bool,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let (_, z, mean, var) = forward(x, weight, gamma, beta, Some(residual), stride, relu, epsilon);
        (z, mean, var)
    }
}

/// What the backward step keeps: x, the weight and γ as checkpoints, the convolution's output
/// y (BatchNorm's input), the output z (ReLU's mask), the batch statistics, and the settings.
#[derive(Debug, Clone)]
struct ConvNormState {
    x: NodeId,
    weight: NodeId,
    gamma: NodeId,
    y: FlexTensor,
    z: FlexTensor,
    mean: FlexTensor,
    var: FlexTensor,
    stride: usize,
    relu: bool,
    epsilon: f64,
    also_residual: bool,
}

/// The backward step, for N = 4 parents (x, weight, γ, β) or 5 (and the residual).
#[derive(Debug)]
struct HaloConvNormBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for HaloConvNormBackward<N> {
    type State = ConvNormState;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let dz = grads.consume::<Flex>(&ops.node).to_contiguous();
        let s = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(s.x);
        let weight = checkpointer.retrieve_node_output::<FlexTensor>(s.weight).to_contiguous();
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(s.gamma).to_contiguous();
        let conv = geometry(&x, &weight, s.stride);
        let x = x.to_contiguous();
        let (y, z, mean, var) = (s.y.to_contiguous(), s.z.to_contiguous(), s.mean.to_contiguous(), s.var.to_contiguous());
        let [node_x, node_weight] = [&ops.parents[0], &ops.parents[1]];
        // The residual's gradient of x, registered already (ConvInput::AlsoResidual), taken out
        // so that dx is added to it image by image, as the convolution op does.
        let other = match node_x {
            Some(node) if s.also_residual && backward_only(&node.requirement) => Some(grads.consume::<Flex>(node).to_contiguous()),
            _ => None,
        };
        let other = other.as_ref().map(|t| t.storage::<f32>());
        #[cfg(test)]
        super::halo_conv_op::FUSED_ADDS.fetch_add(other.map_or(0, <[f32]>::len), std::sync::atomic::Ordering::Relaxed);
        let want_residual = N == 5 && ops.parents[4].is_some();
        let bn = BnBackwardInputs {
            y: y.storage::<f32>(),
            z: z.storage::<f32>(),
            dz: dz.storage::<f32>(),
            gamma: gamma.storage::<f32>(),
            mean: mean.storage::<f32>(),
            var: var.storage::<f32>(),
            relu: s.relu,
            epsilon: s.epsilon,
        };
        let wanted = match (node_x.is_some(), node_weight.is_some()) {
            (true, true) => Some(Wanted::Both(other)),
            (true, false) => Some(Wanted::InputGrad(other)),
            (false, true) => Some(Wanted::WeightGrad),
            (false, false) => None,
        };
        let out = match wanted {
            Some(wanted) => halo_conv_bn_train_backward(x.storage::<f32>(), weight.storage::<f32>(), &conv, bn, wanted, want_residual),
            None => {
                let o = conv.output();
                let (_, dgamma, dbeta, dresidual) =
                    halo_bn_train_backward(bn.y, bn.z, bn.dz, bn.gamma, bn.mean, bn.var, bn.relu, want_residual, bn.epsilon, &o);
                ConvBnGrads { dx: None, dweight: None, dgamma, dbeta, dresidual }
            }
        };
        let (c, shape_in, shape_out) = (conv.c_out, conv.input().shape(), conv.output().shape());
        if let (Some(node), Some(dx)) = (node_x, out.dx) {
            grads.register::<Flex>(node.id, tensor(dx, &shape_in));
        }
        if let (Some(node), Some(dw)) = (node_weight, out.dweight) {
            grads.register::<Flex>(node.id, tensor(dw, &[c, conv.c_in, 3, 3]));
        }
        if let Some(node) = &ops.parents[2] {
            grads.register::<Flex>(node.id, tensor(out.dgamma, &[c]));
        }
        if let Some(node) = &ops.parents[3] {
            grads.register::<Flex>(node.id, tensor(out.dbeta, &[c]));
        }
        if let (Some(Some(node)), Some(dres)) = (ops.parents.get(4), out.dresidual) {
            grads.register::<Flex>(node.id, tensor(dres, &shape_out));
        }
    }
}

/// A float tensor of the autodiff backend over flex.
type Out<C> = FloatTensor<Autodiff<Flex, C>>;

/// Runs the forward under autodiff with [`HaloConvNormBackward`]; `tensors` are the parents in
/// order (x, weight, γ, β [, residual]).
fn tracked<C: CheckpointStrategy, const N: usize>(
    tensors: [&FloatTensor<Autodiff<Flex, C>>; N],
    stride: usize,
    relu: bool,
    epsilon: f64,
    also_residual: bool,
) -> (Out<C>, Out<C>, Out<C>) {
    let inner: Vec<FlexTensor> = tensors.iter().map(|t| (*t).clone().into_primitive()).collect();
    let run = || {
        let residual = inner.get(4).cloned();
        forward(inner[0].clone(), inner[1].clone(), inner[2].clone(), inner[3].clone(), residual, stride, relu, epsilon)
    };
    let stats = |m: FlexTensor, v: FlexTensor| {
        (<Autodiff<Flex, C> as AutodiffBackend>::from_inner(m), <Autodiff<Flex, C> as AutodiffBackend>::from_inner(v))
    };
    let nodes = tensors.map(|t| t.node());
    match HaloConvNormBackward::<N>.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let (xs, ws, gs) = (prep.checkpoint(tensors[0]), prep.checkpoint(tensors[1]), prep.checkpoint(tensors[2]));
            let (y, z, mean, var) = run();
            let state = ConvNormState {
                x: xs,
                weight: ws,
                gamma: gs,
                y,
                z: z.clone(),
                mean: mean.clone(),
                var: var.clone(),
                stride,
                relu,
                epsilon,
                also_residual,
            };
            let (m, v) = stats(mean, var);
            (prep.finish(state, z), m, v)
        }
        OpsKind::UnTracked(prep) => {
            let (_, z, mean, var) = run();
            let (m, v) = stats(mean, var);
            (prep.finish(z), m, v)
        }
    }
}

impl<C: CheckpointStrategy> HaloConvNormBackend for Autodiff<Flex, C> {
    fn rbl_halo_conv_bn_train(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        stride: usize,
        relu: bool,
        epsilon: f64,
        also_residual: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        tracked::<C, 4>([&x, &weight, &gamma, &beta], stride, relu, epsilon, also_residual)
    }
    fn rbl_halo_conv_bn_train_residual(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        stride: usize,
        relu: bool,
        epsilon: f64,
        also_residual: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        tracked::<C, 5>([&x, &weight, &gamma, &beta, &residual], stride, relu, epsilon, also_residual)
    }
}

/// relu?(BN(conv3x3(x, weight)) [+ residual]) in training, as one op whose backward passes
/// BatchNorm's input gradient to the convolution image by image: (output, batch mean, biased
/// batch variance), the statistics detached for the caller's running averages. The same bits
/// as [`halo_conv`](super::halo_conv_op::halo_conv) then
/// [`halo_bn_train`](super::halo_norm_op::halo_bn_train), forward and backward.
#[allow(clippy::too_many_arguments)]
pub fn halo_conv_bn_train(
    x: Tensor<4>,
    weight: Tensor<4>,
    stride: usize,
    input: ConvInput,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    residual: Option<Tensor<4>>,
    relu: bool,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let also_residual = input == ConvInput::AlsoResidual;
    let (z, m, v) = match residual {
        None => <Dispatch as HaloConvNormBackend>::rbl_halo_conv_bn_train(
            x.into_dispatch(),
            weight.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            stride,
            relu,
            epsilon,
            also_residual,
        ),
        Some(r) => <Dispatch as HaloConvNormBackend>::rbl_halo_conv_bn_train_residual(
            x.into_dispatch(),
            weight.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            r.into_dispatch(),
            stride,
            relu,
            epsilon,
            also_residual,
        ),
    };
    (Tensor::from_dispatch(z), Tensor::from_dispatch(m), Tensor::from_dispatch(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::halo::{HaloGeometry, nchw_to_halo};
    use crate::halo_conv_op::{FUSED_ADDS, halo_conv};
    use crate::halo_norm_op::halo_bn_train;
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    /// A residual block, relu(BN(conv(relu(BN(conv(x))))) + x), under autodiff, built from the
    /// fused op and from the separate convolution and BatchNorm ops: the output, the batch
    /// statistics and every gradient (x, both weights, γ and β) are the same bits, with the first
    /// convolution's input gradient added to the residual's (`ConvInput::AlsoResidual`), at the
    /// AVX-512 kernels' channel counts (image by image) and at odd ones (the fallback).
    #[test]
    fn a_residual_block_gives_the_separate_ops_bits() {
        let device = Device::flex().autodiff();
        for (b, c, h, w) in [(3, 16, 8, 8), (2, 32, 5, 7), (2, 5, 6, 4)] {
            let what = format!("{b}×{c}×{h}×{w}");
            let g = HaloGeometry { batch: b, h, w, c };
            let mut rng = ChaCha8Rng::seed_from_u64((b * 1000 + c * 10 + h) as u64);
            let x = nchw_to_halo(&random(b * c * h * w, &mut rng), b, c, h, w);
            let (w1, w2) = (random(c * c * 9, &mut rng), random(c * c * 9, &mut rng));
            let r = nchw_to_halo(&random(b * c * h * w, &mut rng), b, c, h, w);
            let gamma: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / c as f32).collect();
            let beta: Vec<f32> = (0..c).map(|i| i as f32 / 10.0 - 0.2).collect();
            let run = |fused: bool| {
                let t4 = |v: &[f32], shape: Vec<usize>| Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &device).require_grad();
                let t1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), &device).require_grad();
                let leaf = t4(&x, g.shape().to_vec());
                let (wt1, wt2) = (t4(&w1, vec![c, c, 3, 3]), t4(&w2, vec![c, c, 3, 3]));
                let (g1, b1, g2, b2) = (t1(&gamma), t1(&beta), t1(&gamma), t1(&beta));
                // An intermediate tensor, as a block's input is.
                let input = leaf.clone() * 2.0;
                let (out, stats) = if fused {
                    let (h1, m1, _) = halo_conv_bn_train(
                        input.clone(),
                        wt1.clone(),
                        1,
                        ConvInput::AlsoResidual,
                        g1.clone(),
                        b1.clone(),
                        None,
                        true,
                        1e-5,
                    );
                    let (out, m2, v2) =
                        halo_conv_bn_train(h1, wt2.clone(), 1, ConvInput::Plain, g2.clone(), b2.clone(), Some(input), true, 1e-5);
                    (out, [m1, m2, v2])
                } else {
                    let y1 = halo_conv(input.clone(), wt1.clone(), 1, ConvInput::AlsoResidual);
                    let (h1, m1, _) = halo_bn_train(y1, g1.clone(), b1.clone(), None, true, 1e-5);
                    let y2 = halo_conv(h1, wt2.clone(), 1, ConvInput::Plain);
                    let (out, m2, v2) = halo_bn_train(y2, g2.clone(), b2.clone(), Some(input), true, 1e-5);
                    (out, [m1, m2, v2])
                };
                let loss = (out.clone() * Tensor::<4>::from_data(TensorData::new(r.clone(), g.shape().to_vec()), &device)).sum().backward();
                let mut all = vec![to_vec(out)];
                all.extend(stats.into_iter().map(to_vec));
                all.push(to_vec(leaf.grad(&loss).unwrap()));
                all.extend([wt1, wt2].map(|t| to_vec(t.grad(&loss).unwrap())));
                all.extend([g1, b1, g2, b2].map(|t| to_vec(t.grad(&loss).unwrap())));
                all
            };
            let separate = run(false);
            let before = FUSED_ADDS.load(std::sync::atomic::Ordering::Relaxed);
            let fused = run(true);
            assert!(FUSED_ADDS.load(std::sync::atomic::Ordering::Relaxed) - before >= g.len(), "{what}: the residual's add did not run");
            let names = ["output", "mean 1", "mean 2", "variance 2", "dx", "dw1", "dw2", "dγ1", "dβ1", "dγ2", "dβ2"];
            for ((name, a), b) in names.iter().zip(&fused).zip(&separate) {
                assert_eq!(crate::bits(a), crate::bits(b), "{what}: {name}");
            }
            assert!(separate[4].iter().any(|v| *v != 0.0), "{what}: a zero gradient checks nothing");
        }
    }
}
