//! Choosing the compute device from the config.

use burn::tensor::Device;

use crate::error::{RblError, Result};

/// The plain (no-autodiff) device named `cpu` (burn flex) or `gpu` (burn wgpu).
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::flex()),
        #[cfg(feature = "gpu")]
        "gpu" => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(not(feature = "gpu"))]
        "gpu" => Err(RblError::Config {
            origin: "device".into(),
            msg: "this rbl was built without GPU support: cargo build --release --features gpu".into(),
        }),
        other => Err(RblError::Config { origin: "device".into(), msg: format!("unknown device '{other}' (cpu, gpu)") }),
    }
}

/// The device of a run's config, with the process's convolution precision set from
/// `train.precision` (so training, evaluation and the two-stage methods of one run compute
/// alike). A half type the device cannot store is refused, naming the key.
pub fn device_for(cfg: &crate::ExperimentConfig) -> Result<Device> {
    let device = device_from_name(&cfg.device)?;
    let precision = cfg.train.precision;
    if let Some(half) = precision.half()
        && !device.supports_dtype(half)
    {
        return Err(RblError::Config {
            origin: "train.precision".into(),
            msg: format!("the {} device has no {half:?} tensors; use f32 (or f16 where bf16 is missing)", cfg.device),
        });
    }
    crate::ops::precision::set_conv_precision(precision);
    Ok(device)
}
