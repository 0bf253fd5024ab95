//! The GPU path (`device = "gpu"`: burn's wgpu backend with fusion and autotune) on the Vulkan
//! device the machine has: Mesa's lavapipe in CI (`.ci/run` installs `mesa-vulkan-drivers` and
//! builds `--features gpu-wgsl`, the WGSL compiler lavapipe runs), a real GPU elsewhere. Tiny
//! real runs of the binary, so the GPU code cannot break unnoticed; speed is bench/gpu.sh's
//! business.
#![cfg(feature = "wgpu")]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::Value;

/// The config of the CPU/GPU comparisons: the tiny Fashion-MNIST-LT slice, RBL head, `epochs`
/// epochs of 10 steps of 16, on `device`.
fn config(device: &str, epochs: usize) -> String {
    tiny_config("rbl", epochs).replacen("seed = 3\n", &format!("seed = 3\ndevice = \"{device}\"\n"), 1)
}

/// Trains `text` into `dir/name` and returns the run folder.
fn train(dir: &Path, name: &str, text: &str, extra: &[&str]) -> std::path::PathBuf {
    let cfg = write(dir, &format!("{name}.toml"), text);
    let run = dir.join(name);
    let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    let out = rbl(&args);
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    run
}

/// A run's metrics.json.
fn metrics(run: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap()
}

/// A run's exported weights (`rbl export`): name → values.
fn exported(run: &Path) -> BTreeMap<String, Vec<f32>> {
    let file = run.with_extension("safetensors");
    let out = rbl(&["export", "--checkpoint", run.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(_, t)| t.dtype() == safetensors::Dtype::F32)
        .map(|(name, t)| (name, t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()))
        .collect()
}

/// A seed means the same starting weights on every device: the network is drawn on the CPU
/// and moved (`Network::seeded`). Checked through one epoch at lr = 1e-12, which moves no
/// drawn weight by as much as half an ulp: what is left to differ is BatchNorm's running
/// statistics (batch moments summed in another order on the GPU, ~1e-7 relative) and the
/// biases that start at 0 (moved by ~1e-12). A weight drawn from another generator differs by
/// its whole size (~0.1 to 1), which the 1e-4 tolerance fails at once.
#[test]
fn a_seed_starts_from_the_same_weights_on_every_device() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<_> = ["cpu", "gpu"]
        .iter()
        .map(|d| train(dir.path(), d, &config(d, 1).replacen("warmup_epochs = 1\n", "warmup_epochs = 0\nlr = 1e-12\n", 1), &[]))
        .collect();
    let (cpu, gpu) = (exported(&runs[0]), exported(&runs[1]));
    assert_eq!(cpu.keys().collect::<Vec<_>>(), gpu.keys().collect::<Vec<_>>());
    assert!(cpu.len() > 20, "{} tensors", cpu.len());
    for (name, a) in &cpu {
        let b = &gpu[name];
        assert_eq!(a.len(), b.len(), "{name}");
        let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-4 * scale, "{name}: CPU and GPU start {diff} apart (largest value {scale})");
    }
}

/// The same short run on the CPU and the GPU ends within tolerance, and the GPU's rotation,
/// computed in f32 on the device, is orthogonal to 1e-5.
///
/// Tolerance: both start from the same weights (above); the two backends sum in different
/// orders (f32, ~1e-7 relative per operation), the CPU computes the rotation's exponential in
/// f64 and the GPU in f32 (within 3e-6), and ten SGD steps at lr 0.1 amplify such differences
/// without changing the path the run takes. A relative 2e-3 on the epoch's training loss (a
/// mean of ten batch losses) admits that and still fails a wrong kernel, a lost update or a
/// wrong gradient, which change the loss from the first step by whole percent.
#[test]
fn a_short_run_on_the_gpu_matches_the_cpu() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    for device in ["cpu", "gpu"] {
        let run = train(dir.path(), device, &config(device, 1), &[]);
        let log = epoch_log(&run);
        assert_eq!(log.len(), 1);
        let loss = log[0]["train_loss"].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "{device}: loss {loss}");
        let ortho = log[0]["rotation_orthogonality_error"].as_f64().unwrap();
        assert!(ortho <= 1e-5, "{device}: ‖RᵀR − I‖ = {ortho}");
        let top1 = metrics(&run)["test"]["raw"]["top1"].as_f64();
        assert!(top1.is_some_and(|a| (0.0..=100.0).contains(&a)), "{device}: top-1 {top1:?}");
        losses.push(loss);
    }
    let rel = (losses[0] - losses[1]).abs() / losses[0];
    assert!(rel < 2e-3, "training loss: CPU {} vs GPU {} (relative {rel:.2e})", losses[0], losses[1]);
}

/// A GPU run killed mid-epoch (abort: no cleanup) resumes from its last checkpoint and ends
/// where the same run uninterrupted ends: the same epoch log, to the tolerance of the
/// comparison above (the GPU's sums need not be bitwise repeatable between processes).
#[test]
fn a_killed_gpu_run_resumes() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let text = config("gpu", 2).replacen("batch_size = 16\n", "batch_size = 16\ncheckpoint_every_steps = 4\n", 1);
    let straight = train(dir.path(), "straight", &text, &[]);
    let cfg = write(dir.path(), "cut.toml", &text);
    let cut = dir.path().join("cut");
    let crashed = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", cut.to_str().unwrap(), "-q", "--crash-after-step", "13"]);
    assert!(!crashed.status.success(), "the crash hook fired");
    assert!(!cut.join("metrics.json").exists());
    let resumed = rbl(&["train", "--resume", cut.to_str().unwrap()]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("resuming"), "{}", stderr(&resumed));
    let (a, b) = (epoch_log(&straight), epoch_log(&cut));
    assert_eq!(a.len(), 2);
    assert_eq!(b.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        let (lx, ly) = (x["train_loss"].as_f64().unwrap(), y["train_loss"].as_f64().unwrap());
        assert!((lx - ly).abs() / lx < 2e-3, "epoch {}: train loss {lx} uninterrupted vs {ly} resumed", x["epoch"]);
    }
    let (ta, tb) = (metrics(&straight)["test"]["raw"]["top1"].as_f64().unwrap(), metrics(&cut)["test"]["raw"]["top1"].as_f64().unwrap());
    assert!((ta - tb).abs() <= 2.0, "top-1 {ta} uninterrupted vs {tb} resumed (100 test images)");
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
