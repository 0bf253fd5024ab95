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

/// The config of a run that learns in the linear regime: warm-up to `lr` over the one epoch.
/// (The tiny config at its lr 0.1 is chaotic: two GPU processes of the same config, differing
/// by ~1e-8 after one epoch at lr = 0, ended 11 % apart in training loss at lr 0.1, and its test
/// loss is in the hundreds; a comparison there measures the chaos, not the backends.)
fn linear_regime(device: &str, lr: &str) -> String {
    config(device, 1).replacen("warmup_epochs = 1\n", &format!("warmup_epochs = 1\nlr = {lr}\n"), 1)
}

/// The trainable float tensors of an export (BatchNorm's running statistics left out: they are
/// batch moments, not updates).
fn trainable(weights: BTreeMap<String, Vec<f32>>) -> BTreeMap<String, Vec<f32>> {
    weights.into_iter().filter(|(name, _)| !name.contains("running")).collect()
}

/// A seed means the same starting weights on every device (the network is drawn on the CPU
/// and moved: `Network::seeded`), and the GPU's gradients move them as the CPU's do.
///
/// Three runs of one epoch (10 steps of 16): the CPU at lr 0 (a one-epoch cosine schedule
/// without warm-up ends, and so runs, at lr 0: its export is the starting point), and the CPU
/// and the GPU warmed up to lr 1e-4, where ten steps stay in the linear regime. Each trainable
/// tensor's update ΔW = W − W₀ is compared: same direction (cosine ≥ 0.999) and size (norms
/// within 2 %; BatchNorm's scale and shift 0.995 and 10 %). Measured on lavapipe: projection and head agree to 1e-5, the convolutions'
/// updates to cosine ≥ 0.99991 and norms within 0.4 %, the disagreement growing from the last
/// layer (2.5e-4) to the first (1.2e-2 relative): f32 sums in another order through eleven
/// BatchNorm backward passes, whose centred terms cancel. A network started from other
/// weights moves by ‖W₀‖ (cosine near 0 or ratios ≫ 1), a wrong or missing gradient term by
/// whole percent of its direction: both fail at once. The epoch's losses (computed before each
/// update) agree to 1e-5 relative.
#[test]
fn a_seed_starts_and_moves_the_same_on_every_device() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let start = train(dir.path(), "start", &config("cpu", 1).replacen("warmup_epochs = 1\n", "warmup_epochs = 0\n", 1), &[]);
    assert_eq!(epoch_log(&start)[0]["lr"].as_f64(), Some(0.0), "the starting point's run must not move");
    let runs: Vec<_> = ["cpu", "gpu"].iter().map(|d| train(dir.path(), d, &linear_regime(d, "1e-4"), &[])).collect();
    let mut losses = Vec::new();
    for (device, run) in ["cpu", "gpu"].iter().zip(&runs) {
        let log = epoch_log(run);
        assert_eq!(log.len(), 1);
        let ortho = log[0]["rotation_orthogonality_error"].as_f64().unwrap();
        assert!(ortho <= 1e-5, "{device}: ‖RᵀR − I‖ = {ortho}");
        let top1 = metrics(run)["test"]["raw"]["top1"].as_f64();
        assert!(top1.is_some_and(|a| (0.0..=100.0).contains(&a)), "{device}: top-1 {top1:?}");
        losses.push(log[0]["train_loss"].as_f64().unwrap());
    }
    let rel = (losses[0] - losses[1]).abs() / losses[0];
    assert!(rel < 1e-5, "training loss: CPU {} vs GPU {} (relative {rel:.2e})", losses[0], losses[1]);

    let w0 = trainable(exported(&start));
    let (cpu, gpu) = (trainable(exported(&runs[0])), trainable(exported(&runs[1])));
    assert_eq!(cpu.keys().collect::<Vec<_>>(), gpu.keys().collect::<Vec<_>>());
    assert!(cpu.len() > 20, "{} tensors", cpu.len());
    let mut compared = 0;
    for (name, start) in &w0 {
        let update = |w: &[f32]| -> Vec<f64> { w.iter().zip(start).map(|(a, b)| *a as f64 - *b as f64).collect() };
        let (dc, dg) = (update(&cpu[name]), update(&gpu[name]));
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let (nc, ng) = (norm(&dc), norm(&dg));
        if nc == 0.0 {
            // A fixed tensor (the frame, B0): fixed on the GPU too.
            assert_eq!(ng, 0.0, "{name}: fixed on the CPU, moved by {ng} on the GPU");
            continue;
        }
        // BatchNorm's scale and shift: their gradients are per-channel sums of terms that
        // cancel, so they carry the summation order most (measured: cosine ≥ 0.9990, norms
        // within 2.6 %); every other tensor within the bounds above.
        let batch_norm = name.contains(".bn") || name.starts_with("backbone.bn");
        let (min_cosine, max_ratio) = if batch_norm { (0.995, 0.10) } else { (0.999, 0.02) };
        let cosine = dc.iter().zip(&dg).map(|(a, b)| a * b).sum::<f64>() / (nc * ng).max(1e-300);
        assert!(cosine >= min_cosine, "{name}: updates point apart (cosine {cosine})");
        assert!((ng / nc - 1.0).abs() <= max_ratio, "{name}: update norms CPU {nc:.3e} vs GPU {ng:.3e}");
        compared += 1;
    }
    assert!(compared > 20, "{compared} tensors moved");
}

/// A GPU run killed mid-epoch (abort: no cleanup) resumes from its last checkpoint and ends
/// where the same run uninterrupted ends: the same epoch log to 1e-4 relative (the GPU's sums
/// need not be bitwise repeatable between processes: ~1e-8 apart after an epoch at lr 0), at an
/// lr of 1e-3 that keeps the run out of the chaotic regime (see [`linear_regime`]).
#[test]
fn a_killed_gpu_run_resumes() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let text = config("gpu", 2).replacen("batch_size = 16\n", "batch_size = 16\ncheckpoint_every_steps = 4\nlr = 1e-3\n", 1);
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
        assert!((lx - ly).abs() / lx < 1e-4, "epoch {}: train loss {lx} uninterrupted vs {ly} resumed", x["epoch"]);
    }
    let (ta, tb) = (metrics(&straight)["test"]["raw"]["top1"].as_f64().unwrap(), metrics(&cut)["test"]["raw"]["top1"].as_f64().unwrap());
    assert!((ta - tb).abs() <= 2.0, "top-1 {ta} uninterrupted vs {tb} resumed (100 test images)");
}

/// Kernels a ResNet-32 + RBL training step may launch on the GPU path (fusion and autotune
/// on), counted by cubecl's launch observer: 1,324 on lavapipe at batch 4, 1×28×28 (bench/README
/// lists them by kernel), plus 10 % for autotune picking other kernels elsewhere. A change that
/// splits a fused chain or adds a pass per layer crosses it.
const KERNELS_PER_STEP_BOUND: f64 = 1_460.0;

/// The step benchmark runs on the GPU: training steps with the losses read a window at a time,
/// and eval batches; its kernel count per training step stays under the recorded bound.
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
    let kernels = line["kernels_per_step"].as_f64().unwrap();
    assert!(kernels > 100.0 && kernels <= KERNELS_PER_STEP_BOUND, "{kernels} kernels per step (bound {KERNELS_PER_STEP_BOUND}): {line}");
    // No host wait inside a step: of the three timed steps' reads only the step log's at the
    // end remains (it reads every 32 steps on a GPU), and the uploads are the batch's images
    // (4 × 1×28×28 f32) with its label vectors.
    assert_eq!(line["timed_steps"], 3);
    assert_eq!(line["reads"], 1, "a host read inside a GPU training step: {line}");
    let images = (4 * 28 * 28 * 4) as f64;
    let uploaded = line["upload_bytes_per_step"].as_f64().unwrap();
    assert!(uploaded >= images && uploaded < images + 1024.0, "{uploaded} bytes uploaded per step: {line}");
    assert!(line["uploads_per_step"].as_f64().is_some_and(|u| u <= UPLOADS_PER_STEP_BOUND), "{line}");
}

/// Uploads per training step of ResNet-32 + RBL with cross-entropy: the images, the labels of
/// the hit count and of the loss (measured: 3).
const UPLOADS_PER_STEP_BOUND: f64 = 3.0;

/// Data-parallel training on the GPU path: two ranks, one device each. On lavapipe both ranks
/// share the one software adapter (`CUBECL_WGPU_DEFAULT_DEVICE=Cpu`; on a node with GPUs each
/// rank takes the discrete GPU of its local rank). The same 2-rank run on the CPU and on the
/// GPU, in the linear regime, agree in epoch loss to 1e-5 relative as one process does
/// ([`a_seed_starts_and_moves_the_same_on_every_device`]): the gradient all-reduce, the
/// per-rank BatchNorm and the sharded evaluation run the same on both devices. Without the
/// variable and without a discrete GPU per rank, the job stops with the reason and the way
/// out, not a panic.
#[cfg(feature = "mpi")]
#[test]
fn two_ranks_train_on_the_gpu_path() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let lavapipe = std::env::var("VK_ICD_FILENAMES").is_ok_and(|v| v.contains("lvp_icd"));
    let shared: &[(&str, &str)] = if lavapipe { &[("CUBECL_WGPU_DEFAULT_DEVICE", "Cpu")] } else { &[] };
    let mut losses = Vec::new();
    for device in ["cpu", "gpu"] {
        let cfg = write(dir.path(), &format!("{device}2.toml"), &linear_regime(device, "1e-4"));
        let run = dir.path().join(format!("{device}2"));
        let out = mpirun(2, shared, &["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"])
            .output()
            .expect("mpirun runs (apt-get install openmpi-bin)");
        assert!(out.status.success(), "{device}, 2 ranks: {}", stderr(&out));
        let log = epoch_log(&run);
        assert_eq!(log.len(), 1);
        assert!(log[0]["rotation_orthogonality_error"].as_f64().is_some_and(|e| e <= 1e-5), "{device}: {}", log[0]);
        assert!(metrics(&run)["test"]["raw"]["top1"].as_f64().is_some(), "{device}: no test accuracy");
        losses.push(log[0]["train_loss"].as_f64().unwrap());
    }
    let rel = (losses[0] - losses[1]).abs() / losses[0];
    assert!(rel < 1e-5, "2 ranks: CPU loss {} vs GPU {} (relative {rel:.2e})", losses[0], losses[1]);

    if lavapipe {
        // lavapipe is a CPU-type adapter: no rank has a discrete GPU of its own.
        let cfg = write(dir.path(), "nogpu.toml", &linear_regime("gpu", "1e-4"));
        let run = dir.path().join("nogpu");
        let out = mpirun(2, &[], &["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"])
            .output()
            .expect("mpirun runs (apt-get install openmpi-bin)");
        assert!(!out.status.success(), "2 ranks without a discrete GPU each must stop");
        let err = stderr(&out);
        assert!(err.contains("discrete GPU") && err.contains("CUBECL_WGPU_DEFAULT_DEVICE"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
