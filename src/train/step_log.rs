//! The running loss and hit count of an epoch, read from the device a window of steps at a
//! time.
//!
//! Reading a step's loss makes the host wait until the device has finished that step, so the
//! device idles while the host prepares the next one. On a GPU that stall, once per step,
//! costs more than the step itself. So each step leaves its `[loss, correct]` on the device
//! ([`StepReadings`]) and they are read together, in one transfer, when the window is full, before
//! a checkpoint, at an interrupt and at the end of the epoch. The sums are then formed on the
//! host in step order exactly as a per-step read would form them, so the figures do not
//! depend on the window; a NaN is caught at most a window late and named by its own step.
//! On the CPU the window is one step: its backend runs eagerly, nothing is gained by waiting.

use burn::tensor::Tensor;

use crate::train::device::DeviceKind;
use crate::train::step::{StepReadings, StepStats};

/// Steps between reads on a GPU: the progress display's refresh, frequent enough that a
/// diverged run stops within a second or so, rare enough that the read costs < 1 % of the
/// steps it waits for.
pub const GPU_READ_EVERY: usize = 32;

/// Steps per read on `kind`.
pub fn read_every(kind: DeviceKind) -> usize {
    match kind {
        DeviceKind::Cpu => 1,
        DeviceKind::Gpu => GPU_READ_EVERY,
    }
}

/// The running sums of an epoch, as a mid-epoch checkpoint stores them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunningSums {
    /// Σ batch loss × batch size.
    pub loss_sum: f64,
    /// Correct predictions.
    pub hits: usize,
    /// Images counted.
    pub images: usize,
    /// Steps counted.
    pub steps: usize,
}

/// A step whose loss was not finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFinite {
    /// 0-based step of the epoch.
    pub step: usize,
    /// The loss it had.
    pub loss: f32,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "loss became {} at step {}", self.loss, self.step)
    }
}

impl std::error::Error for NonFinite {}

/// Readings of steps not yet read, and the sums of those that were.
pub struct StepLog {
    sums: RunningSums,
    pending: Vec<StepReadings>,
    every: usize,
}

impl StepLog {
    /// A log continuing from `sums` (a resumed epoch), read every `every` steps.
    pub fn new(sums: RunningSums, every: usize) -> StepLog {
        StepLog { sums, pending: Vec::new(), every: every.max(1) }
    }

    /// Adds a step's readings; reads the window when it is full.
    pub fn push(&mut self, readings: StepReadings) -> Result<(), NonFinite> {
        self.pending.push(readings);
        if self.pending.len() >= self.every { self.read() } else { Ok(()) }
    }

    /// Steps taken, read or not.
    pub fn steps(&self) -> usize {
        self.sums.steps + self.pending.len()
    }

    /// Whether every step taken has been read.
    pub fn is_read(&self) -> bool {
        self.pending.is_empty()
    }

    /// The sums over the steps read so far.
    pub fn sums(&self) -> RunningSums {
        self.sums
    }

    /// Reads every pending step (one device→host transfer) into the sums, in step order. The
    /// first non-finite loss stops it: that step and the ones after it are not counted.
    pub fn read(&mut self) -> Result<(), NonFinite> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batches: Vec<usize> = self.pending.iter().map(|r| r.batch).collect();
        let values: Vec<f32> = crate::transfer::read_f32(Tensor::cat(self.pending.drain(..).map(|r| r.values).collect(), 0));
        let world = crate::distributed::world();
        if world.size > 1 {
            return self.read_over_ranks(world, &values, &batches);
        }
        for (pair, b) in values.chunks_exact(2).zip(batches) {
            let stats = StepStats::from_pair(pair[0], pair[1]);
            if !stats.loss.is_finite() {
                return Err(NonFinite { step: self.sums.steps, loss: stats.loss });
            }
            self.sums.hits += stats.correct;
            self.sums.loss_sum += stats.loss as f64 * b as f64;
            self.sums.images += b;
            self.sums.steps += 1;
        }
        Ok(())
    }

    /// [`Self::read`] for a run over several ranks: each step's Σ loss × images, correct count
    /// and images summed over the ranks (one all-reduce per window), so every rank logs the
    /// global batch's figures and sees a NaN on any rank at the same step.
    fn read_over_ranks(&mut self, world: &crate::distributed::World, values: &[f32], batches: &[usize]) -> Result<(), NonFinite> {
        let mut sums: Vec<f64> =
            values.chunks_exact(2).zip(batches).flat_map(|(pair, &b)| [pair[0] as f64 * b as f64, pair[1] as f64, b as f64]).collect();
        world.all_reduce_sum_f64(&mut sums);
        for step in sums.chunks_exact(3) {
            let (loss_sum, correct, images) = (step[0], step[1], step[2]);
            if !loss_sum.is_finite() {
                return Err(NonFinite { step: self.sums.steps, loss: (loss_sum / images) as f32 });
            }
            self.sums.hits += correct.round() as usize;
            self.sums.loss_sum += loss_sum;
            self.sums.images += images as usize;
            self.sums.steps += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn readings(loss: f32, correct: f32, batch: usize) -> StepReadings {
        StepReadings { values: Tensor::from_data(TensorData::new(vec![loss, correct], [2]), &Device::flex()), batch }
    }

    /// The sums after a window of reads equal those of reading every step, to the bit.
    #[test]
    fn windowed_sums_equal_per_step_sums() {
        let steps: Vec<(f32, f32, usize)> = (0..37).map(|i| (0.1 + i as f32 * 0.37, (i * 7 % 13) as f32 + 0.4, 100 + i % 3)).collect();
        let mut one = StepLog::new(RunningSums::default(), 1);
        let mut window = StepLog::new(RunningSums::default(), 8);
        for &(l, c, b) in &steps {
            one.push(readings(l, c, b)).unwrap();
            window.push(readings(l, c, b)).unwrap();
        }
        assert_eq!(window.steps(), 37);
        assert!(!window.is_read(), "37 is not a multiple of 8: the last 5 wait");
        window.read().unwrap();
        assert_eq!(one.sums(), window.sums());
        // By hand, in f64: Σ loss·b, Σ round(correct).
        let loss_sum: f64 = steps.iter().map(|&(l, _, b)| l as f64 * b as f64).sum();
        assert_eq!(one.sums().loss_sum, loss_sum);
        assert_eq!(one.sums().hits, steps.iter().map(|&(_, c, _)| c.round() as usize).sum::<usize>());
        assert_eq!(one.sums().images, steps.iter().map(|s| s.2).sum::<usize>());
    }

    /// A NaN inside a window is reported with its own step, and nothing from it on is counted.
    #[test]
    fn nan_is_named_by_its_step() {
        let mut log = StepLog::new(RunningSums { loss_sum: 10.0, hits: 3, images: 20, steps: 2 }, 4);
        log.push(readings(1.0, 5.0, 10)).unwrap();
        log.push(readings(f32::NAN, 5.0, 10)).unwrap();
        log.push(readings(2.0, 5.0, 10)).unwrap();
        let err = log.push(readings(3.0, 5.0, 10)).unwrap_err();
        assert_eq!(err.step, 3, "steps 0–1 were resumed, step 2 fine, step 3 NaN");
        assert_eq!(err.to_string(), "loss became NaN at step 3");
        assert!(err.loss.is_nan());
        assert_eq!(log.sums(), RunningSums { loss_sum: 20.0, hits: 8, images: 30, steps: 3 });
    }

    #[test]
    fn cpu_reads_every_step() {
        assert_eq!(read_every(DeviceKind::Cpu), 1);
        assert!(read_every(DeviceKind::Gpu) > 1);
    }
}
