//! The option-A shortcut of a ResNet block ([`shortcut_a_forward`](super::halo::shortcut_a_forward))
//! as a burn backend extension on flex, with its own backward. In burn's ops it was a strided
//! slice, a zero tensor and a slice assignment forward, and backward a slice, a zero tensor and
//! an assignment into it, mostly on one thread; here it is one parallel pass each way, with the
//! same values (copies and zeros).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, DType, Dispatch, Flex, TensorData, backend_extension};
use burn::tensor::Tensor;

use super::halo::{HaloGeometry, shortcut_a_backward, shortcut_a_forward, shortcut_a_output};

/// The backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait HaloShortcutBackend: Backend {
    /// x (halo, zero ring) subsampled at `stride`, with `pad` zero channels on each side.
    fn rbl_halo_shortcut_a(x: FloatTensor<Self>, stride: usize, pad: usize) -> FloatTensor<Self>;
}

impl HaloShortcutBackend for Flex {
    fn rbl_halo_shortcut_a(x: FlexTensor, stride: usize, pad: usize) -> FlexTensor {
        assert_eq!(x.dtype(), DType::F32, "halo shortcut: f32 tensors only (the halo path is the f32 CPU path)");
        let g = HaloGeometry::of_shape(x.layout().shape());
        let x = x.to_contiguous();
        let y = shortcut_a_forward(x.storage::<f32>(), &g, stride, pad);
        FlexTensor::from_data(TensorData::new(y, shortcut_a_output(&g, stride, pad).shape()))
    }
}

/// The backward step under autodiff; the state is the input's geometry, the stride and the pad.
#[derive(Debug)]
struct HaloShortcutBackward;

impl Backward<Flex, 1> for HaloShortcutBackward {
    type State = (HaloGeometry, usize, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
        let (g, stride, pad) = ops.state;
        if let Some(node) = node_x {
            let dx = shortcut_a_backward(dy.storage::<f32>(), &g, stride, pad);
            grads.register::<Flex>(node.id, FlexTensor::from_data(TensorData::new(dx, g.shape())));
        }
    }
}

impl<C: CheckpointStrategy> HaloShortcutBackend for Autodiff<Flex, C> {
    fn rbl_halo_shortcut_a(x: FloatTensor<Self>, stride: usize, pad: usize) -> FloatTensor<Self> {
        let g = HaloGeometry::of_shape(x.primitive().layout().shape());
        match HaloShortcutBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((g, stride, pad), Flex::rbl_halo_shortcut_a(x.into_primitive(), stride, pad)),
            OpsKind::UnTracked(prep) => prep.finish(Flex::rbl_halo_shortcut_a(x.into_primitive(), stride, pad)),
        }
    }
}

/// A ResNet block's option-A shortcut on a halo tensor (flex, f32): x subsampled at `stride`
/// (interior pixels 0, stride, 2·stride, … of each axis) with `pad` zero channels on each side.
pub fn halo_shortcut_a(x: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as HaloShortcutBackend>::rbl_halo_shortcut_a(x.into_dispatch(), stride, pad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::halo::nchw_to_halo;
    use burn::tensor::{Device, s};

    fn to_vec(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    /// What the block did before with burn's ops: slice at the stride, then into a zero tensor
    /// with the pad.
    fn with_burn_ops(x: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
        let [b, hp, wp, c] = x.dims();
        let x = x.slice(s![.., 1..hp - 1;stride, 1..wp - 1;stride, ..]);
        let [_, h, w, _] = x.dims();
        Tensor::zeros([b, h + 2, w + 2, c + 2 * pad], &x.device()).slice_assign(s![.., 1..h + 1, 1..w + 1, pad..pad + c], x)
    }

    /// Output and input gradient (L = Σ y ⊙ r, r nonzero on the ring and padded channels too)
    /// bitwise those of burn's ops, at stride 2 with odd and even sizes and at stride 1, with
    /// −0 among the values.
    #[test]
    fn same_bits_as_burn_s_slice_and_assign() {
        let device = Device::flex().autodiff();
        for (b, c, h, w, stride, pad) in [(2, 4, 8, 8, 2, 2), (3, 3, 7, 5, 2, 1), (1, 5, 4, 6, 1, 0), (2, 16, 9, 9, 2, 8)] {
            let what = format!("{b}×{c}×{h}×{w} stride {stride} pad {pad}");
            let mut values: Vec<f32> = (0..b * c * h * w).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            values[0] = -0.0;
            let g = HaloGeometry { batch: b, h, w, c };
            let o = shortcut_a_output(&g, stride, pad);
            let r: Vec<f32> = (0..o.len()).map(|i| ((i * 53 % 97) as f32 - 48.0) / 5.0).collect();
            let run = |ours: bool| {
                let x = Tensor::<4>::from_data(TensorData::new(nchw_to_halo(&values, b, c, h, w), g.shape()), &device).require_grad();
                let y = if ours { halo_shortcut_a(x.clone(), stride, pad) } else { with_burn_ops(x.clone(), stride, pad) };
                assert_eq!(y.dims(), o.shape(), "{what}: shape");
                let grads = (y.clone() * Tensor::<4>::from_data(TensorData::new(r.clone(), o.shape()), &device)).sum().backward();
                (to_vec(y), to_vec(x.grad(&grads).unwrap()))
            };
            let ((y, dx), (y_ref, dx_ref)) = (run(true), run(false));
            assert_eq!(crate::bits(&y), crate::bits(&y_ref), "{what}: forward");
            assert_eq!(crate::bits(&dx), crate::bits(&dx_ref), "{what}: input gradient");
            assert!(dx.iter().any(|v| *v != 0.0), "{what}: a zero gradient checks nothing");
        }
    }
}
