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
        DeviceKind::Gpu => gpu_of_this_process(),
        #[cfg(not(feature = "wgpu"))]
        DeviceKind::Gpu => Err(RblError::Config {
            origin: "device".into(),
            msg: "this rbl was built without GPU support: cargo build --release --features gpu".into(),
        }),
    }
}

/// The environment variable with which cubecl names the wgpu adapter (`DiscreteGpu(1)`,
/// `IntegratedGpu(0)`, `Cpu` for a software Vulkan such as Mesa's lavapipe).
pub const ADAPTER_VARIABLE: &str = "CUBECL_WGPU_DEFAULT_DEVICE";

/// This process's GPU. One process: the best adapter (or the one [`ADAPTER_VARIABLE`]
/// names). Several ranks (MPI): each takes the discrete GPU of its local rank, one GPU per
/// process, unless [`ADAPTER_VARIABLE`] names an adapter, which the node's ranks then share
/// (an integrated GPU, lavapipe in CI). The device is opened here, so a rank with no GPU of
/// its own is told so, naming the variable, instead of failing at its first kernel.
#[cfg(feature = "wgpu")]
fn gpu_of_this_process() -> Result<Device> {
    use burn::tensor::DeviceKind as Adapter;
    let world = crate::distributed::world();
    let named = std::env::var(ADAPTER_VARIABLE).ok().filter(|v| !v.is_empty());
    let adapter = if world.size > 1 && named.is_none() { Adapter::DiscreteGpu(world.local_rank) } else { Adapter::DefaultDevice };
    let device = Device::wgpu(adapter.clone());
    open(&device).map_err(|why| {
        let msg = match (&adapter, &named) {
            (Adapter::DiscreteGpu(i), _) => format!(
                "rank {} is local rank {i} of its node and takes discrete GPU {i} (one GPU per process), which this node lacks \
                 ({why}); run at most as many ranks per node as it has discrete GPUs, or set {ADAPTER_VARIABLE} to one \
                 adapter for every rank of the node (e.g. IntegratedGpu(0), or Cpu for a software Vulkan such as lavapipe)",
                world.rank
            ),
            (_, Some(name)) => format!("{ADAPTER_VARIABLE}={name}: no such GPU adapter ({why})"),
            _ => format!("no GPU adapter could be opened ({why}); is a Vulkan driver installed (vulkaninfo)?"),
        };
        RblError::Config { origin: "device".into(), msg }
    })?;
    Ok(device)
}

/// Opens `device` with one tiny upload and read; a failure (cubecl panics when the adapter
/// is missing) comes back as its message, without the panic's report on stderr.
#[cfg(feature = "wgpu")]
fn open(device: &Device) -> std::result::Result<(), String> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::transfer::read(crate::transfer::upload_vec::<1, burn::tensor::Float, f32>(vec![0.0], [1], device))
    }));
    std::panic::set_hook(quiet);
    opened.map(drop).map_err(|payload| {
        let text = payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
        text.unwrap_or_else(|| "the device failed to open".into()).lines().next().unwrap_or_default().to_string()
    })
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
