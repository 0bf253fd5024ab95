//! The GPU path (`device = "gpu"`: burn's wgpu backend through Vulkan, with fusion) on the
//! Vulkan device the machine has: Mesa's lavapipe in CI (`.ci/run` installs
//! `mesa-vulkan-drivers`), a real GPU elsewhere. A few tiny steps of the network and the
//! rotation head, so the GPU code cannot break unnoticed; speed is bench/gpu.sh's business.
#![cfg(feature = "vulkan")]

mod common;

use common::*;
use serde_json::Value;

/// The config of the CPU/GPU comparison: the tiny Fashion-MNIST-LT slice, RBL head, one
/// epoch (10 steps of 16), on `device`.
fn config(device: &str) -> String {
    tiny_config("rbl", 1).replacen("seed = 3\n", &format!("seed = 3\ndevice = \"{device}\"\n"), 1)
}

/// The same short run on the CPU and the GPU ends within tolerance, and the GPU's rotation,
/// computed in f32 on the device, is orthogonal to 1e-5.
///
/// Tolerance: the two backends sum in different orders (f32, ~1e-7 relative per operation),
/// the CPU computes the rotation's exponential in f64 and the GPU in f32 (within 3e-6), and ten
/// SGD steps at lr 0.1 amplify such differences without changing the path the run takes. A
/// relative 2e-3 on the epoch's training loss (a mean of ten batch losses) admits that and
/// still fails a wrong kernel, a lost update or a wrong gradient, which change the loss from
/// the first step by whole percent.
#[test]
fn a_short_run_on_the_gpu_matches_the_cpu() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    for device in ["cpu", "gpu"] {
        let cfg = write(dir.path(), &format!("{device}.toml"), &config(device));
        let run = dir.path().join(device);
        let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"]);
        assert!(out.status.success(), "{device}: {}", stderr(&out));
        let log = epoch_log(&run);
        assert_eq!(log.len(), 1);
        let loss = log[0]["train_loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{device}: loss {loss}");
        let ortho = log[0]["rotation_orthogonality_error"].as_f64().unwrap();
        assert!(ortho <= 1e-5, "{device}: ‖RᵀR − I‖ = {ortho}");
        let metrics: Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
        assert!(metrics["test_acc"].as_f64().is_some_and(|a| (0.0..=100.0).contains(&a)), "{device}: {metrics}");
        losses.push(loss);
    }
    let rel = (losses[0] - losses[1]).abs() / losses[0];
    assert!(rel < 2e-3, "training loss: CPU {} vs GPU {} (relative {rel:.2e})", losses[0], losses[1]);
}

/// The step benchmark runs on the GPU: training steps with the losses read a window at a time,
/// and eval batches.
#[test]
fn rbl_bench_runs_on_the_gpu() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbl-bench"))
        .args(["--device", "gpu", "--batch", "4", "--input", "1x28x28", "--steps", "3", "--warmup", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(line["device"], "gpu");
    assert!(line["train_img_s"].as_f64().is_some_and(|v| v > 0.0), "{line}");
}
