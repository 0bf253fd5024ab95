//! Counting the GPU kernels a stretch of work launches, through cubecl's launch observer: what
//! `rbl-bench --device gpu` reports per training step (`kernels_per_step`) and `tests/gpu.rs`
//! bounds, so a change that splits a fused chain or adds a pass shows up as a number, not as a
//! timing on a machine nobody has. On the CPU (flex) nothing is launched through cubecl and
//! the count stays 0.
//!
//! A launch is counted when it is issued (cubecl calls the observer on the issuing thread
//! before submitting), so work queued by the fusion stream is counted when the stream runs it:
//! a count taken between two host reads counts exactly the kernels between them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[cfg(feature = "wgpu")]
use burn::cubecl::logging::{LaunchObservation, LaunchObserver};

/// Kernel launches by kernel name, while a [`KernelCount`] is alive.
#[derive(Default)]
struct Launches(Mutex<BTreeMap<&'static str, usize>>);

#[cfg(feature = "wgpu")]
impl LaunchObserver for Launches {
    fn launched(&self, kernel: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(kernel).or_default() += 1;
    }
}

/// Counts the kernels launched from [`KernelCount::start`] to [`KernelCount::finish`]. One
/// at a time: cubecl keeps one observer per process (a second start replaces the first until
/// it finishes).
pub struct KernelCount {
    launches: Arc<Launches>,
    #[cfg(feature = "wgpu")]
    _watching: LaunchObservation,
}

impl KernelCount {
    /// Starts counting.
    pub fn start() -> KernelCount {
        let launches = Arc::new(Launches::default());
        KernelCount {
            #[cfg(feature = "wgpu")]
            _watching: LaunchObservation::new(launches.clone()),
            launches,
        }
    }

    /// Stops counting: launches by kernel name.
    pub fn finish(self) -> BTreeMap<&'static str, usize> {
        let launches = self.launches.clone();
        drop(self);
        launches.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tensor};

    /// flex launches nothing through cubecl: a CPU computation counts no kernel.
    #[test]
    fn the_cpu_launches_no_kernels() {
        let count = KernelCount::start();
        let x = Tensor::<2>::ones([4, 4], &Device::flex());
        let _ = (x.clone().matmul(x) + 1.0).into_data();
        assert!(count.finish().is_empty());
    }
}
