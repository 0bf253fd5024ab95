//! Choosing the compute device from the config.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{RblError, Result};
use crate::model::precision::Precision;

/// Where a run computes (`device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum DeviceKind {
    /// burn flex with rbl's kernels.
    #[default]
    Cpu,
    /// burn wgpu (Vulkan); needs a build with `--features gpu`.
    Gpu,
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::config::variant_name(self))
    }
}

/// The plain (no-autodiff) device of `kind`: burn flex or burn wgpu.
pub fn device_from_kind(kind: DeviceKind) -> Result<Device> {
    match kind {
        DeviceKind::Cpu => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        DeviceKind::Gpu => {
            // One rank per GPU: several ranks on a node take the discrete GPUs in local-rank
            // order (CUBECL_WGPU_DEFAULT_DEVICE, when set, still decides for a single process).
            let world = crate::distributed::world();
            let kind = if world.size > 1 {
                burn::tensor::DeviceKind::DiscreteGpu(world.local_rank)
            } else {
                burn::tensor::DeviceKind::DefaultDevice
            };
            Ok(Device::wgpu(kind))
        }
        #[cfg(not(feature = "wgpu"))]
        DeviceKind::Gpu => Err(RblError::Config {
            origin: "device".into(),
            msg: "this rbl was built without GPU support: cargo build --release --features gpu".into(),
        }),
    }
}

/// The device of a run's config. A half type the device cannot store is refused, naming the
/// key.
pub fn device_for(cfg: &crate::ExperimentConfig) -> Result<Device> {
    let device = device_from_kind(cfg.device)?;
    check_precision(&device, cfg.device, cfg.train.precision)?;
    Ok(device)
}

/// Refuses a half-precision setting the device has no tensors for.
fn check_precision(device: &Device, kind: DeviceKind, precision: Precision) -> Result<()> {
    if let Some(half) = precision.half()
        && !device.supports_dtype(half)
    {
        return Err(RblError::Config {
            origin: "train.precision".into(),
            msg: format!("the {kind} device has no {half:?} tensors; use f32 (or f16 where bf16 is missing)"),
        });
    }
    Ok(())
}
