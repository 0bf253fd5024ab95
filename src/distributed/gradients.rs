//! Averaging the gradients of a step over the ranks: every parameter's gradient, in the
//! module's visit order (the same on every rank), is packed into one buffer, weighted by the
//! rank's share of the global batch, summed over the ranks in one all-reduce and unpacked.
//!
//! Each rank's loss is the mean over its own slice of the batch (b_r images), so the gradient
//! of the mean over the whole batch (B images) is Σ_r (b_r / B) · g_r: equal slices give the
//! plain average.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::distributed::World;
use crate::network::Network;

/// Replaces each gradient in `grads` by the batch-weighted average over the ranks: this rank
/// computed its gradients on `local` images of a global batch of `global`.
pub fn average(world: &World, net: &Network, grads: &mut GradientsParams, local: usize, global: usize) {
    if world.size == 1 {
        return;
    }
    let mut pack = Pack { grads, buffer: Vec::new(), slots: Vec::new() };
    net.visit(&mut pack);
    let Pack { grads, mut buffer, slots } = pack;
    let weight = local as f32;
    buffer.iter_mut().for_each(|g| *g *= weight);
    world.all_reduce_sum(&mut buffer);
    let inverse = 1.0 / global as f32;
    buffer.iter_mut().for_each(|g| *g *= inverse);
    net.visit(&mut Unpack { grads, buffer: &buffer, slots: &slots, next: 0 });
}

/// Where one gradient lies in the buffer.
struct Slot {
    offset: usize,
    shape: Vec<usize>,
    device: burn::tensor::Device,
}

/// First pass: takes every gradient out into the buffer.
struct Pack<'a> {
    grads: &'a mut GradientsParams,
    buffer: Vec<f32>,
    slots: Vec<Option<Slot>>,
}

impl ModuleVisitor for Pack<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(g) = self.grads.remove::<D>(param.id) else {
            self.slots.push(None);
            return;
        };
        let (shape, device) = (g.dims().to_vec(), g.device());
        let values = crate::transfer::read(g).convert::<f32>();
        let offset = self.buffer.len();
        self.buffer.extend_from_slice(values.as_slice::<f32>().expect("f32 after convert"));
        self.slots.push(Some(Slot { offset, shape, device }));
    }
}

/// Second pass: puts the averaged gradients back, in the same order.
struct Unpack<'a> {
    grads: &'a mut GradientsParams,
    buffer: &'a [f32],
    slots: &'a [Option<Slot>],
    next: usize,
}

impl ModuleVisitor for Unpack<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let slot = &self.slots[self.next];
        self.next += 1;
        let Some(Slot { offset, shape, device }) = slot else { return };
        let n: usize = shape.iter().product();
        let data = TensorData::new(self.buffer[*offset..offset + n].to_vec(), shape.clone());
        self.grads.register::<D>(param.id, crate::transfer::upload::<D, burn::tensor::Float>(data, device));
    }
}
