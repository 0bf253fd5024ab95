//! BatchNorm (+ residual) (+ ReLU) on halo tensors ([`halo_norm_cpu`](super::halo_norm_cpu)) as
//! burn backend extensions on flex, with their own backward: the training form (batch
//! statistics) and the affine form (a fixed per-channel scale and shift: BatchNorm at
//! evaluation, or a folded convolution's bias).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, DType, Dispatch, Flex, TensorData, backend_extension};
use burn::tensor::Tensor;

use super::halo::HaloGeometry;
use super::halo_norm_cpu::{halo_affine_backward, halo_affine_forward, halo_bn_train_backward, halo_bn_train_forward};

/// The backend extension. `relu` chooses ReLU or the identity after the add; every output has
/// a zero ring.
#[backend_extension(Flex, Autodiff)]
pub trait HaloNormBackend: Backend {
    /// (act(BN(x)), batch mean, biased batch variance).
    fn rbl_halo_bn_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        relu: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// (act(BN(x) + residual), batch mean, biased batch variance).
    fn rbl_halo_bn_train_residual(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        relu: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// act(x·scale + shift).
    fn rbl_halo_affine(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>, relu: bool) -> FloatTensor<Self>;
    /// act(x·scale + shift + residual).
    fn rbl_halo_affine_residual(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self>;
}

/// A contiguous f32 copy-or-view of `t` (the kernels read plain slices).
fn contiguous_f32(t: &FlexTensor) -> FlexTensor {
    assert_eq!(t.dtype(), DType::F32, "halo batch norm: f32 tensors only (the halo path is the f32 CPU path)");
    t.clone().to_contiguous()
}

fn flex_f32(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn geometry(x: &FlexTensor) -> HaloGeometry {
    HaloGeometry::of_shape(x.layout().shape())
}

fn bn_train(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    residual: Option<FlexTensor>,
    relu: bool,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let g = geometry(&x);
    let (x, gamma, beta, residual) =
        (contiguous_f32(&x), contiguous_f32(&gamma), contiguous_f32(&beta), residual.as_ref().map(contiguous_f32));
    let (y, mean, var) = halo_bn_train_forward(
        x.storage::<f32>(),
        gamma.storage::<f32>(),
        beta.storage::<f32>(),
        residual.as_ref().map(|r| r.storage::<f32>()),
        relu,
        epsilon,
        &g,
    );
    (flex_f32(y, g.shape().to_vec()), flex_f32(mean, vec![g.c]), flex_f32(var, vec![g.c]))
}

fn affine(x: FlexTensor, scale: FlexTensor, shift: FlexTensor, residual: Option<FlexTensor>, relu: bool) -> FlexTensor {
    let g = geometry(&x);
    let (x, scale, shift, residual) =
        (contiguous_f32(&x), contiguous_f32(&scale), contiguous_f32(&shift), residual.as_ref().map(contiguous_f32));
    flex_f32(
        halo_affine_forward(
            x.storage::<f32>(),
            scale.storage::<f32>(),
            shift.storage::<f32>(),
            residual.as_ref().map(|r| r.storage::<f32>()),
            relu,
            &g,
        ),
        g.shape().to_vec(),
    )
}

impl HaloNormBackend for Flex {
    fn rbl_halo_bn_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        relu: bool,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        bn_train(x, gamma, beta, None, relu, epsilon)
    }
    fn rbl_halo_bn_train_residual(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        residual: FlexTensor,
        relu: bool,
        epsilon: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        bn_train(x, gamma, beta, Some(residual), relu, epsilon)
    }
    fn rbl_halo_affine(x: FlexTensor, scale: FlexTensor, shift: FlexTensor, relu: bool) -> FlexTensor {
        affine(x, scale, shift, None, relu)
    }
    fn rbl_halo_affine_residual(x: FlexTensor, scale: FlexTensor, shift: FlexTensor, residual: FlexTensor, relu: bool) -> FlexTensor {
        affine(x, scale, shift, Some(residual), relu)
    }
}

/// What the backward step needs beyond x and the per-channel parameter.
#[derive(Debug, Clone)]
enum NormKind {
    /// Training BatchNorm: the batch statistics of the forward pass.
    Train { stats: Box<(FlexTensor, FlexTensor)>, epsilon: f64 },
    /// A fixed scale and shift.
    Affine,
}

/// The backward step under autodiff, for N = 3 parents (x, γ or scale, β or shift) or 4 (and
/// the residual). The state keeps the output y, whose sign is ReLU's mask.
#[derive(Debug)]
struct HaloNormBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for HaloNormBackward<N> {
    type State = (NodeId, NodeId, FlexTensor, NormKind, bool);

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let parents: Vec<Option<NodeId>> = ops.parents.iter().map(|p| p.as_ref().map(|n| n.id)).collect();
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (x_state, param_state, y, kind, relu) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state).to_contiguous();
        let param = checkpointer.retrieve_node_output::<FlexTensor>(param_state).to_contiguous();
        let y = y.to_contiguous();
        let g = geometry(&x);
        let want_residual = N == 4 && parents[3].is_some();
        let (xs, ys, ds, ps) = (x.storage::<f32>(), y.storage::<f32>(), dy.storage::<f32>(), param.storage::<f32>());
        let (dx, dparam, dshift, dres) = match kind {
            NormKind::Train { stats, epsilon } => {
                let (mean, var) = (stats.0.to_contiguous(), stats.1.to_contiguous());
                halo_bn_train_backward(xs, ys, ds, ps, mean.storage::<f32>(), var.storage::<f32>(), relu, want_residual, epsilon, &g)
            }
            NormKind::Affine => halo_affine_backward(xs, ys, ds, ps, relu, want_residual, &g),
        };
        let shape = g.shape().to_vec();
        if let Some(id) = parents[0] {
            grads.register::<Flex>(id, flex_f32(dx, shape.clone()));
        }
        if let Some(id) = parents[1] {
            grads.register::<Flex>(id, flex_f32(dparam, vec![g.c]));
        }
        if let Some(id) = parents[2] {
            grads.register::<Flex>(id, flex_f32(dshift, vec![g.c]));
        }
        if let (Some(id), Some(dres)) = (parents.get(3).copied().flatten(), dres) {
            grads.register::<Flex>(id, flex_f32(dres, shape));
        }
    }
}

/// Runs `forward` under autodiff with [`HaloNormBackward`]: `tensors` are the parents (x and
/// the parameter first), `kind` turns the forward's extra outputs into the backward's state.
/// The batch statistics a training forward pass returns: (mean, variance).
type Stats = (FlexTensor, FlexTensor);

fn tracked<C: CheckpointStrategy, const N: usize>(
    tensors: [&FloatTensor<Autodiff<Flex, C>>; N],
    relu: bool,
    forward: impl FnOnce() -> (FlexTensor, Option<(FlexTensor, FlexTensor, f64)>),
) -> (FloatTensor<Autodiff<Flex, C>>, Option<Stats>) {
    let nodes = tensors.map(|t| t.node());
    match HaloNormBackward::<N>.prepare::<C>(nodes).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(tensors[0]);
            let param_state = prep.checkpoint(tensors[1]);
            let (y, stats) = forward();
            let kind = match &stats {
                Some((mean, var, epsilon)) => NormKind::Train { stats: Box::new((mean.clone(), var.clone())), epsilon: *epsilon },
                None => NormKind::Affine,
            };
            (prep.finish((x_state, param_state, y.clone(), kind, relu), y), stats.map(|(m, v, _)| (m, v)))
        }
        OpsKind::UnTracked(prep) => {
            let (y, stats) = forward();
            (prep.finish(y), stats.map(|(m, v, _)| (m, v)))
        }
    }
}

impl<C: CheckpointStrategy> HaloNormBackend for Autodiff<Flex, C> {
    fn rbl_halo_bn_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        relu: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let inner = (x.clone().into_primitive(), gamma.clone().into_primitive(), beta.clone().into_primitive());
        let (y, stats) = tracked::<C, 3>([&x, &gamma, &beta], relu, || {
            let (y, m, v) = Flex::rbl_halo_bn_train(inner.0, inner.1, inner.2, relu, epsilon);
            (y, Some((m, v, epsilon)))
        });
        let (m, v) = stats.expect("statistics");
        (y, <Self as AutodiffBackend>::from_inner(m), <Self as AutodiffBackend>::from_inner(v))
    }
    fn rbl_halo_bn_train_residual(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        relu: bool,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let inner =
            (x.clone().into_primitive(), gamma.clone().into_primitive(), beta.clone().into_primitive(), residual.clone().into_primitive());
        let (y, stats) = tracked::<C, 4>([&x, &gamma, &beta, &residual], relu, || {
            let (y, m, v) = Flex::rbl_halo_bn_train_residual(inner.0, inner.1, inner.2, inner.3, relu, epsilon);
            (y, Some((m, v, epsilon)))
        });
        let (m, v) = stats.expect("statistics");
        (y, <Self as AutodiffBackend>::from_inner(m), <Self as AutodiffBackend>::from_inner(v))
    }
    fn rbl_halo_affine(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>, relu: bool) -> FloatTensor<Self> {
        let inner = (x.clone().into_primitive(), scale.clone().into_primitive(), shift.clone().into_primitive());
        tracked::<C, 3>([&x, &scale, &shift], relu, || (Flex::rbl_halo_affine(inner.0, inner.1, inner.2, relu), None)).0
    }
    fn rbl_halo_affine_residual(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        residual: FloatTensor<Self>,
        relu: bool,
    ) -> FloatTensor<Self> {
        let inner =
            (x.clone().into_primitive(), scale.clone().into_primitive(), shift.clone().into_primitive(), residual.clone().into_primitive());
        tracked::<C, 4>([&x, &scale, &shift, &residual], relu, || {
            (Flex::rbl_halo_affine_residual(inner.0, inner.1, inner.2, inner.3, relu), None)
        })
        .0
    }
}

/// Training-mode BatchNorm (+ residual) (+ ReLU) of a halo tensor: (y, batch mean, batch
/// variance), the statistics detached for the caller's running averages.
pub fn halo_bn_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    residual: Option<Tensor<4>>,
    relu: bool,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let (y, m, v) = match residual {
        None => {
            <Dispatch as HaloNormBackend>::rbl_halo_bn_train(x.into_dispatch(), gamma.into_dispatch(), beta.into_dispatch(), relu, epsilon)
        }
        Some(r) => <Dispatch as HaloNormBackend>::rbl_halo_bn_train_residual(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            r.into_dispatch(),
            relu,
            epsilon,
        ),
    };
    (Tensor::from_dispatch(y), Tensor::from_dispatch(m), Tensor::from_dispatch(v))
}

/// act(x·scale + shift (+ residual)) of a halo tensor, per channel.
pub fn halo_affine(x: Tensor<4>, scale: Tensor<1>, shift: Tensor<1>, residual: Option<Tensor<4>>, relu: bool) -> Tensor<4> {
    Tensor::from_dispatch(match residual {
        None => <Dispatch as HaloNormBackend>::rbl_halo_affine(x.into_dispatch(), scale.into_dispatch(), shift.into_dispatch(), relu),
        Some(r) => <Dispatch as HaloNormBackend>::rbl_halo_affine_residual(
            x.into_dispatch(),
            scale.into_dispatch(),
            shift.into_dispatch(),
            r.into_dispatch(),
            relu,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::halo::{halo_to_nchw, nchw_to_halo};
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::activation::relu;
    use burn::tensor::{Device, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(n: usize, offset: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| offset + rng.random_range(-1.0f32..1.0)).collect()
    }

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    use crate::assert_close;

    /// relu(BN(x) + residual) through the op against burn's `BatchNorm`, add and `relu` on the
    /// same values in NCHW: output, batch statistics, and the gradients of x, the residual, γ
    /// and β; then the affine form against burn's elementwise ops.
    #[test]
    fn matches_burn_batch_norm_add_relu_forward_and_backward() {
        let device = Device::flex().autodiff();
        for c in [5, 16] {
            let (b, h, w) = (4, 5, 3);
            let n = b * c * h * w;
            let mut rng = ChaCha8Rng::seed_from_u64(c as u64);
            let (x, res, r) = (random(n, 0.5, &mut rng), random(n, 0.0, &mut rng), random(n, 0.0, &mut rng));
            let (gamma, beta) = (random(c, 1.0, &mut rng), random(c, 0.0, &mut rng));
            let g = HaloGeometry { batch: b, h, w, c };
            let nchw = |v: &[f32]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), [b, c, h, w]), &device);
            let halo = |v: &[f32]| Tensor::<4>::from_data(TensorData::new(nchw_to_halo(v, b, c, h, w), g.shape()), &device);
            let vec1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), &device);

            let mut bn = BatchNormConfig::new(c).init(&device);
            bn.gamma = Param::from_tensor(vec1(&gamma));
            bn.beta = Param::from_tensor(vec1(&beta));
            let (xr, rr) = (nchw(&x).require_grad(), nchw(&res).require_grad());
            let reference = relu(bn.forward(xr.clone()) + rr.clone());
            let g_ref = (reference.clone() * nchw(&r)).sum().backward();

            let (xh, rh) = (halo(&x).require_grad(), halo(&res).require_grad());
            let (gm, bt) = (vec1(&gamma).require_grad(), vec1(&beta).require_grad());
            let (y, mean, var) = halo_bn_train(xh.clone(), gm.clone(), bt.clone(), Some(rh.clone()), true, bn.epsilon);
            let grads = (y.clone() * halo(&r)).sum().backward();
            assert_close(&format!("c{c} output"), &halo_to_nchw(&to_vec(y), &g), &to_vec(reference), 1e-5);
            let mean_ref: Vec<f32> =
                (0..c).map(|ch| (0..b).flat_map(|i| x[(i * c + ch) * h * w..][..h * w].iter()).sum::<f32>() / (b * h * w) as f32).collect();
            assert_close("batch mean", &to_vec(mean), &mean_ref, 1e-5);
            assert!(to_vec(var).iter().all(|&v| v > 0.0));
            let back = |t: Tensor<4>| halo_to_nchw(&to_vec(t), &g);
            assert_close(&format!("c{c} dx"), &back(xh.grad(&grads).unwrap()), &to_vec(xr.grad(&g_ref).unwrap()), 1e-4);
            assert_close(&format!("c{c} d residual"), &back(rh.grad(&grads).unwrap()), &to_vec(rr.grad(&g_ref).unwrap()), 1e-5);
            assert_close(&format!("c{c} dgamma"), &to_vec(gm.grad(&grads).unwrap()), &to_vec(bn.gamma.val().grad(&g_ref).unwrap()), 1e-4);
            assert_close(&format!("c{c} dbeta"), &to_vec(bt.grad(&grads).unwrap()), &to_vec(bn.beta.val().grad(&g_ref).unwrap()), 1e-4);

            // The affine form: relu(x·s + t + residual) against burn's broadcast ops.
            let (scale, shift) = (random(c, 0.5, &mut rng), random(c, 0.0, &mut rng));
            let (xr, rr) = (nchw(&x).require_grad(), nchw(&res).require_grad());
            let (sr, tr) = (vec1(&scale).require_grad(), vec1(&shift).require_grad());
            let reference = relu(xr.clone() * sr.clone().reshape([1, c, 1, 1]) + tr.clone().reshape([1, c, 1, 1]) + rr.clone());
            let g_ref = (reference.clone() * nchw(&r)).sum().backward();
            let (xh, rh) = (halo(&x).require_grad(), halo(&res).require_grad());
            let (sh, th) = (vec1(&scale).require_grad(), vec1(&shift).require_grad());
            let y = halo_affine(xh.clone(), sh.clone(), th.clone(), Some(rh.clone()), true);
            let grads = (y.clone() * halo(&r)).sum().backward();
            assert_close(&format!("c{c} affine output"), &back(y), &to_vec(reference), 1e-6);
            assert_close(&format!("c{c} affine dx"), &back(xh.grad(&grads).unwrap()), &to_vec(xr.grad(&g_ref).unwrap()), 1e-5);
            assert_close(&format!("c{c} affine d residual"), &back(rh.grad(&grads).unwrap()), &to_vec(rr.grad(&g_ref).unwrap()), 1e-6);
            assert_close(&format!("c{c} affine dscale"), &to_vec(sh.grad(&grads).unwrap()), &to_vec(sr.grad(&g_ref).unwrap()), 1e-5);
            assert_close(&format!("c{c} affine dshift"), &to_vec(th.grad(&grads).unwrap()), &to_vec(tr.grad(&g_ref).unwrap()), 1e-5);
        }
    }
}
