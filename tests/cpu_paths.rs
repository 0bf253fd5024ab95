//! The CPU kernels' instruction-set paths give the same bits: a run trained with the tuned
//! AVX-512 kernels, with the portable AVX2 + FMA kernels, and with the baseline x86-64 build of
//! them (`RBL_CPU_LEVEL` caps the path on a CPU that has more) ends with the same weights, loss
//! and accuracy, so a published number reproduces on any x86 CPU. On a CPU without AVX-512
//! the first two runs take the same path; the check still covers AVX2 against baseline. The
//! same run on a pool of 64 threads (the weight gradient then splits its image tasks into taps
//! blocks, as on a many-core machine) gives the same bits too, on the tuned and portable paths.

mod common;

use std::path::Path;

use common::*;

/// Widths whose convolutions take the 16-channel kernels (the tiny config's 8 would not).
fn config() -> String {
    tiny_config("rbl", 1).replace("widths = [8, 16, 32]\nfeature_dim = 32", "widths = [16, 32, 64]\nfeature_dim = 64")
}

/// Trains the config with `RBL_CPU_LEVEL=level` on a pool of `threads` and returns the run's
/// first line and its weights digest, epoch log and test accuracy.
fn train(dir: &Path, level: &str, threads: usize) -> (String, u64, String, f64) {
    let cfg = write(dir, "c.toml", &config());
    let run = dir.join(format!("{level}-{threads}"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbl"))
        .args(["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap()])
        .env("RBL_CPU_LEVEL", level)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{level}: {}", stderr(&out));
    let first = stderr(&out).lines().find(|l| l.contains("training images")).unwrap_or_default().to_string();
    let latest = std::fs::read_to_string(run.join("latest")).unwrap();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join(latest.trim()).join("state.json")).unwrap()).unwrap();
    // Every figure of the epoch log but its clock readings.
    let log: Vec<serde_json::Value> = epoch_log(&run)
        .into_iter()
        .map(|mut e| {
            e.as_object_mut().unwrap().retain(|key, _| !key.contains("second"));
            e
        })
        .collect();
    let log = serde_json::to_string(&log).unwrap();
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    (first, state["weights_crc32"].as_u64().unwrap(), log, metrics["test"]["raw"]["top1"].as_f64().unwrap())
}

#[test]
fn every_cpu_path_trains_the_same_bits() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<_> = [("avx512", 2), ("avx2", 2), ("baseline", 2), ("avx512", 64), ("avx2", 64)]
        .iter()
        .map(|&(l, threads)| (format!("{l}, {threads} threads"), train(dir.path(), l, threads)))
        .collect();
    // Each run says which path it took (the widest the CPU has, under the cap).
    assert!(runs[2].1.0.contains("(baseline kernels)"), "{}", runs[2].1.0);
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        assert!(runs[0].1.0.contains("(avx512 kernels)"), "{}", runs[0].1.0);
        assert!(runs[1].1.0.contains("(avx2-fma kernels)"), "{}", runs[1].1.0);
    }
    assert!(runs[1].1.0.contains("(avx2-fma kernels)") || runs[1].1.0.contains("(baseline kernels)"), "{}", runs[1].1.0);
    let (_, (_, crc, log, top1)) = &runs[0];
    assert_eq!(runs[3].1.0.contains("(avx512 kernels)"), runs[0].1.0.contains("(avx512 kernels)"), "{}", runs[3].1.0);
    for (level, (_, c, l, t)) in &runs[1..] {
        assert_eq!(c, crc, "{level}: weights differ from the widest path's");
        assert_eq!(l, log, "{level}: epoch log differs");
        assert_eq!(t.to_bits(), top1.to_bits(), "{level}: test accuracy {t} vs {top1}");
    }
}

/// A level the kernels do not know is refused before anything runs, naming the variable.
#[test]
fn an_unknown_cpu_level_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbl")).args(["config", "show"]).env("RBL_CPU_LEVEL", "avx3").output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("RBL_CPU_LEVEL=avx3: expected avx512, avx2 or baseline"), "{}", stderr(&out));
}
