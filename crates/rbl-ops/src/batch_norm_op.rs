//! Training-mode batch normalisation as a burn backend extension with its own backward, running
//! [`batch_norm_cpu`](super::batch_norm_cpu)'s fused kernels on the flex backend, and
//! [`batch_norm`], the layer call the networks use in its place of `BatchNorm::forward`.

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, DType, Dispatch, Flex, TensorData, backend_extension};
use burn::nn::BatchNorm;
use burn::tensor::Tensor;

use super::batch_norm_cpu::{BnGeometry, batch_norm_train_backward, batch_norm_train_forward};

/// The backend extension: batch statistics, normalised output, and its backward.
#[backend_extension(Flex, Autodiff)]
pub trait BatchNormBackend: Backend {
    /// (y, batch mean, biased batch variance) of training-mode batch norm on NCHW `x`.
    fn rbl_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

fn geometry(x: &FlexTensor) -> BnGeometry {
    let s = x.layout().shape();
    BnGeometry { batch: s[0], channels: s[1], plane: (2..s.num_dims()).map(|d| s[d]).product() }
}

fn flex_f32(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl BatchNormBackend for Flex {
    fn rbl_batch_norm_train(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, epsilon: f64) -> (FlexTensor, FlexTensor, FlexTensor) {
        let g = geometry(&x);
        let shape = x.layout().shape().to_vec();
        let (x, gamma, beta) = (x.to_contiguous(), gamma.to_contiguous(), beta.to_contiguous());
        let (y, mean, var) = batch_norm_train_forward(x.storage::<f32>(), gamma.storage::<f32>(), beta.storage::<f32>(), epsilon, &g);
        (flex_f32(y, shape), flex_f32(mean, vec![g.channels]), flex_f32(var, vec![g.channels]))
    }
}

/// The backward step under autodiff; the state keeps the batch statistics of the forward pass.
#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = (NodeId, NodeId, FlexTensor, FlexTensor, f64);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (x_state, gamma_state, mean, var, epsilon) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state).to_contiguous();
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(gamma_state).to_contiguous();
        let g = geometry(&x);
        let shape = x.layout().shape().to_vec();
        let (dx, dgamma, dbeta) = batch_norm_train_backward(
            x.storage::<f32>(),
            dy.storage::<f32>(),
            gamma.storage::<f32>(),
            mean.storage::<f32>(),
            var.storage::<f32>(),
            epsilon,
            &g,
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex_f32(dx, shape));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex_f32(dgamma, vec![g.channels]));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex_f32(dbeta, vec![g.channels]));
        }
    }
}

impl<C: CheckpointStrategy> BatchNormBackend for Autodiff<Flex, C> {
    fn rbl_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let lift = |t: FlexTensor| <Self as AutodiffBackend>::from_inner(t);
        match BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let (y, mean, var) = Flex::rbl_batch_norm_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon);
                let y = prep.finish((x_state, gamma_state, mean.clone(), var.clone(), epsilon), y);
                (y, lift(mean), lift(var))
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, var) = Flex::rbl_batch_norm_train(x.into_primitive(), gamma.into_primitive(), beta.into_primitive(), epsilon);
                (prep.finish(y), lift(mean), lift(var))
            }
        }
    }
}

/// `bn.forward(x)`, with the training-mode statistics and their backward computed by rbl's
/// fused kernels when `x` is an f32 tensor on the flex backend with autodiff (the only case
/// where burn's `BatchNorm` takes its training path and flex would run its composed ops). The
/// running statistics are updated exactly as burn's layer updates them.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let fused = device.is_autodiff() && bn.training.is_enabled() && super::on_flex(&device) && x.dtype() == DType::F32;
    if !fused {
        return bn.forward(x);
    }
    let (y, mean, var) = <Dispatch as BatchNormBackend>::rbl_batch_norm_train(
        x.into_dispatch(),
        bn.gamma.val().into_dispatch(),
        bn.beta.val().into_dispatch(),
        bn.epsilon,
    );
    let (y, mean, var) = (Tensor::<D>::from_dispatch(y), Tensor::<1>::from_dispatch(mean), Tensor::<1>::from_dispatch(var));
    update_running_statistics(bn, mean, var);
    y
}

/// Moves `bn`'s running mean and variance toward a batch's, exactly as burn's layer does.
pub fn update_running_statistics(bn: &BatchNorm, mean: Tensor<1>, var: Tensor<1>) {
    let device = mean.device();
    let running_mean =
        bn.running_mean.value_sync().to_device(&device).mul_scalar(1.0 - bn.momentum).add(mean.detach().mul_scalar(bn.momentum));
    let running_var =
        bn.running_var.value_sync().to_device(&device).mul_scalar(1.0 - bn.momentum).add(var.detach().mul_scalar(bn.momentum));
    bn.running_mean.update(running_mean.detach());
    bn.running_var.update(running_var.detach());
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::tensor::Device;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random<const D: usize>(shape: [usize; D], offset: f32, rng: &mut ChaCha8Rng, device: &Device) -> Tensor<D> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| offset + rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn assert_close<const D: usize>(what: &str, a: Tensor<D>, b: Tensor<D>, tol: f32) {
        assert_eq!(a.dims(), b.dims(), "{what}: shape");
        let (a, b): (Vec<f32>, Vec<f32>) = (a.into_data().try_to_vec().unwrap(), b.into_data().try_to_vec().unwrap());
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= tol * scale, "{what}: max |diff| {worst} (scale {scale})");
    }

    /// Output, running statistics, and the gradients of x, γ and β against burn's BatchNorm,
    /// for a random upstream gradient; inputs off-centre so the mean matters.
    fn check<const D: usize>(shape: [usize; D], seed: u64) {
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let c = shape[1];
        let (gamma, beta) = (random([c], 1.0, &mut rng, &device), random([c], 0.0, &mut rng, &device));
        // Two separate layers: a clone would share its running-state cell with the original.
        let layer = || {
            let mut bn = BatchNormConfig::new(c).init(&device);
            bn.gamma = Param::from_tensor(gamma.clone());
            bn.beta = Param::from_tensor(beta.clone());
            bn
        };
        let (reference, ours) = (layer(), layer());
        let x = random(shape, 3.0, &mut rng, &device).require_grad();
        let r = random(shape, 0.0, &mut rng, &device);
        let y_ref = reference.forward(x.clone());
        let y = batch_norm(&ours, x.clone());
        assert_close(&format!("{shape:?} output"), y.clone(), y_ref.clone(), 1e-5);
        assert_close("running mean", ours.running_mean.value(), reference.running_mean.value(), 1e-6);
        assert_close("running var", ours.running_var.value(), reference.running_var.value(), 1e-5);
        let g_ref = (y_ref * r.clone()).sum().backward();
        let g = (y * r).sum().backward();
        assert_close(&format!("{shape:?} dx"), x.grad(&g).unwrap(), x.grad(&g_ref).unwrap(), 1e-4);
        assert_close("dgamma", ours.gamma.val().grad(&g).unwrap(), reference.gamma.val().grad(&g_ref).unwrap(), 1e-4);
        assert_close("dbeta", ours.beta.val().grad(&g).unwrap(), reference.beta.val().grad(&g_ref).unwrap(), 1e-4);
    }

    #[test]
    fn matches_burn_batch_norm_forward_statistics_and_backward() {
        check([8, 4, 5, 5], 1);
        check([3, 16, 8, 8], 2);
        check([16, 6], 3); // BatchNorm1d on features
    }

    #[test]
    fn eval_mode_and_plain_devices_use_burn() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let device = Device::flex();
        let bn = BatchNormConfig::new(3).init(&device);
        let x = random([2, 3, 4, 4], 1.0, &mut rng, &device);
        assert_close("inference", batch_norm(&bn, x.clone()), bn.forward(x), 0.0);
    }
}
