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
