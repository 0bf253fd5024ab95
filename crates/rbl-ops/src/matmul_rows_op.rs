//! A 2-D matrix product split by rows over the kernel pool, with the bits of flex's own.
//!
//! C = A·B: row i of C depends only on row i of A, and flex's product (the `gemm` crate, one
//! thread) sums each output's k products in an order set by k alone (its depth block is at
//! least 512 and chosen from k and the L1 cache, never from m). So the product of a block of A's
//! rows with B is, bit for bit, that block of the whole product, and the blocks can run on
//! different threads. flex runs its products on one thread (its `rayon` feature would split
//! them, but it also turns on a work-stealing-ordered reduction for large sums: README, burn
//! notes), which leaves the other cores idle through the rotation head's d×d f64 products.
//!
//! Backward, as burn's autodiff does it: dA = dC·Bᵀ and dB = Aᵀ·dC, each split by its rows the
//! same way (a transpose is a view in flex; `gemm` reads it through strides).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Slice, Tensor};
use rayon::prelude::*;

/// Products below this many multiply-adds run as one call (splitting costs more than it saves).
const MIN_SPLIT_MULTIPLY_ADDS: usize = 1 << 21;
/// Fewest rows in a block: 32 blocks at batch 128 and in the rotation's 128×128 products, so a
/// 32-thread pool has work for every thread (blocks of 32 rows stopped at 4). Each block packs
/// B again (k·n copies against rows·k·n multiply-adds), a cost only pools of more than
/// m / 32 threads pay: below that the block count is the thread count, as before.
const MIN_BLOCK_ROWS: usize = 4;

/// The backend extension.
#[backend_extension(Flex, Autodiff)]
pub trait MatmulRowsBackend: Backend {
    /// lhs (m × k) · rhs (k × n), row blocks of lhs on the pool's threads.
    fn rbl_matmul_rows(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// How many row blocks an m × k by k × n product is split into on `threads` threads: one when
/// it is small. The result's bits do not depend on this number (module doc; tested).
fn row_blocks(m: usize, k: usize, n: usize, threads: usize) -> usize {
    if m * k * n < MIN_SPLIT_MULTIPLY_ADDS { 1 } else { threads.min(m / MIN_BLOCK_ROWS).max(1) }
}

/// The product in `blocks` row blocks of lhs (near-equal sizes), each one flex call.
fn matmul_in_row_blocks(lhs: FlexTensor, rhs: FlexTensor, blocks: usize) -> FlexTensor {
    let m = lhs.layout().shape()[0];
    if blocks <= 1 {
        return Flex::float_matmul(lhs, rhs);
    }
    let parts: Vec<FlexTensor> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let rows = Slice::from(b * m / blocks..(b + 1) * m / blocks);
            Flex::float_matmul(Flex::float_slice(lhs.clone(), &[rows, Slice::from(..)]), rhs.clone())
        })
        .collect();
    Flex::float_cat(parts, 0)
}

/// The split product with the block count for this pool.
fn matmul_rows_flex(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
    let (ls, rs) = (lhs.layout().shape(), rhs.layout().shape());
    assert!(ls.len() == 2 && rs.len() == 2 && ls[1] == rs[0], "matmul_rows: needs m×k and k×n, got {ls:?} and {rs:?}");
    let blocks = row_blocks(ls[0], ls[1], rs[1], rayon::current_num_threads());
    matmul_in_row_blocks(lhs, rhs, blocks)
}

impl MatmulRowsBackend for Flex {
    fn rbl_matmul_rows(lhs: FlexTensor, rhs: FlexTensor) -> FlexTensor {
        matmul_rows_flex(lhs, rhs)
    }
}

/// The backward step under autodiff; the state is lhs (kept when rhs needs a gradient) and rhs
/// (kept when lhs does), as burn's matmul keeps them.
#[derive(Debug)]
struct MatmulRowsBackward;

impl Backward<Flex, 2> for MatmulRowsBackward {
    type State = (Option<FlexTensor>, Option<FlexTensor>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_lhs, node_rhs] = ops.parents;
        let (lhs, rhs) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        if let (Some(node), Some(rhs)) = (node_lhs, rhs) {
            grads.register::<Flex>(node.id, matmul_rows_flex(grad.clone(), Flex::float_transpose(rhs)));
        }
        if let (Some(node), Some(lhs)) = (node_rhs, lhs) {
            grads.register::<Flex>(node.id, matmul_rows_flex(Flex::float_transpose(lhs), grad));
        }
    }
}

impl<C: CheckpointStrategy> MatmulRowsBackend for Autodiff<Flex, C> {
    fn rbl_matmul_rows(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        let (lhs_tracked, rhs_tracked) = (lhs.is_tracked(), rhs.is_tracked());
        match MatmulRowsBackward.prepare::<C>([lhs.node(), rhs.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (l, r) = (lhs.into_primitive(), rhs.into_primitive());
                let state = (rhs_tracked.then(|| l.clone()), lhs_tracked.then(|| r.clone()));
                prep.finish(state, Flex::rbl_matmul_rows(l, r))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::rbl_matmul_rows(lhs.into_primitive(), rhs.into_primitive())),
        }
    }
}

/// lhs (m × k) · rhs (k × n), with the bits of `lhs.matmul(rhs)`: on flex split by rows over
/// the kernel pool (forward and backward), elsewhere burn's own product.
pub fn matmul_rows(lhs: Tensor<2>, rhs: Tensor<2>) -> Tensor<2> {
    if !crate::on_flex(&lhs.device()) {
        return lhs.matmul(rhs);
    }
    Tensor::from_dispatch(<Dispatch as MatmulRowsBackend>::rbl_matmul_rows(lhs.into_dispatch(), rhs.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::DType;
    use burn::tensor::{Device, FloatDType, TensorData};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(rows: usize, cols: usize, seed: u64, device: &Device) -> Tensor<2> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f64> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::<2>::from_data(TensorData::new(v, [rows, cols]), device).cast(FloatDType::F64)
    }

    fn bits64(t: Tensor<2>) -> Vec<u64> {
        t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap().iter().map(|v| v.to_bits()).collect()
    }

    fn flex_random(rows: usize, cols: usize, seed: u64, dtype: DType) -> FlexTensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f64> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        let data = TensorData::new(v, [rows, cols]);
        FlexTensor::from_data(if dtype == DType::F32 { data.convert::<f32>() } else { data })
    }

    fn flex_bits(t: FlexTensor) -> Vec<u64> {
        let t = t.to_contiguous();
        match t.dtype() {
            DType::F32 => t.storage::<f32>().iter().map(|v| u64::from(v.to_bits())).collect(),
            _ => t.storage::<f64>().iter().map(|v| v.to_bits()).collect(),
        }
    }

    /// A 32-thread pool gets 32 blocks of the rotation's products and of a batch of 128 rows;
    /// 2 threads get 2, small products 1.
    #[test]
    fn enough_blocks_for_32_threads_at_batch_128() {
        assert_eq!(row_blocks(256, 256, 256, 32), 32);
        assert_eq!(row_blocks(128, 256, 256, 32), 32);
        assert_eq!(row_blocks(128, 256, 256, 64), 32);
        assert_eq!(row_blocks(128, 256, 256, 2), 2);
        assert_eq!(row_blocks(128, 64, 10, 32), 1);
    }

    /// Every block count gives flex's whole product bit for bit, in f64 and f32, at the rotation
    /// head's shapes, an odd one, and through a transposed (strided) left operand, down to
    /// blocks of one or two rows (128 blocks).
    #[test]
    fn row_blocks_give_the_whole_products_bits() {
        for (m, k, n) in [(256, 256, 256), (128, 256, 10), (200, 77, 300)] {
            for dtype in [DType::F64, DType::F32] {
                let a = flex_random(m, k, 1, dtype);
                let b = flex_random(k, n, 2, dtype);
                let at = Flex::float_transpose(flex_random(k, m, 3, dtype));
                let whole = flex_bits(Flex::float_matmul(a.clone(), b.clone()));
                let whole_t = flex_bits(Flex::float_matmul(at.clone(), b.clone()));
                for blocks in (1..=5).chain([8, 16, 32, 64, 128]) {
                    let split = flex_bits(matmul_in_row_blocks(a.clone(), b.clone(), blocks));
                    assert!(split == whole, "{m}×{k}×{n} {dtype:?} in {blocks} blocks");
                    let split_t = flex_bits(matmul_in_row_blocks(at.clone(), b.clone(), blocks));
                    assert!(split_t == whole_t, "{m}×{k}×{n} {dtype:?}, transposed lhs, in {blocks} blocks");
                }
            }
        }
    }

    /// Forward and both gradients equal burn's matmul under autodiff bit for bit (f64, the
    /// rotation head's precision on the CPU).
    #[test]
    fn gradients_equal_burns_matmul() {
        let device = Device::flex().autodiff();
        for (m, k, n) in [(256, 256, 256), (96, 256, 64)] {
            let a0 = random(m, k, 4, &device);
            let b0 = random(k, n, 5, &device);
            let w = random(m, n, 6, &device);
            let run = |ours: bool| {
                let a = a0.clone().require_grad();
                let b = b0.clone().require_grad();
                let c = if ours { matmul_rows(a.clone(), b.clone()) } else { a.clone().matmul(b.clone()) };
                let loss = (c.clone() * w.clone()).sum();
                let grads = loss.backward();
                (bits64(c), bits64(a.grad(&grads).unwrap()), bits64(b.grad(&grads).unwrap()))
            };
            assert_eq!(run(true), run(false), "{m}×{k}×{n}");
        }
        // A square times itself (expm's squarings): both gradients land on one node.
        let x0 = random(256, 256, 7, &device);
        let w = random(256, 256, 8, &device);
        let run = |ours: bool| {
            let x = x0.clone().require_grad();
            let c = if ours { matmul_rows(x.clone(), x.clone()) } else { x.clone().matmul(x.clone()) };
            let grads = (c.clone() * w.clone()).sum().backward();
            (bits64(c), bits64(x.grad(&grads).unwrap()))
        };
        assert_eq!(run(true), run(false), "x·x");
    }
}
