//! The step benchmark binary runs end to end for one tiny step (no timing asserted: speed is
//! measured by bench/run.sh, not by tests).

use serde_json::Value;

/// Runs `rbl-bench` with `args`; its JSON lines.
fn bench(args: &[&str]) -> Vec<Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbl-bench")).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn rbl_bench_runs_one_step_and_reports_json() {
    let lines = bench(&["--batch", "2", "--input", "1x28x28,3x32x32", "--steps", "1", "--warmup", "0"]);
    assert_eq!(lines.len(), 2, "one line per input shape");
    for (line, input) in lines.iter().zip(["1x28x28", "3x32x32"]) {
        assert_eq!(line["impl"], "rbl");
        assert_eq!(line["input"], input);
        assert_eq!(line["batch"], 2);
        for key in ["train_img_s", "eval_img_s", "peak_rss_mb"] {
            assert!(line[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {line}");
        }
    }
}

#[test]
fn rbl_bench_rejects_a_malformed_shape() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbl-bench")).args(["--input", "3x32", "--steps", "1"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected CxHxW"));
}

/// The transfers of a training step are counted (`rbl::transfer`): on the CPU a step reads
/// twice, the step log (loss and hit count, 2 × f32) and the rotation generator's 1-norm that
/// the f64 exponential chooses its scaling by (one f64; the GPU's f32 exponential has a fixed
/// scaling and no read), and each step uploads its
/// batch (2 × 1×28×28 f32 = 6,272 bytes) with its labels and the loss's label vector: a few
/// hundred bytes beside the images.
#[test]
fn rbl_bench_counts_the_transfers_of_a_step() {
    let lines = bench(&["--batch", "2", "--input", "1x28x28", "--steps", "3", "--warmup", "1"]);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["timed_steps"], 3);
    assert_eq!(line["reads"], 6, "two reads per step on the CPU: {line}");
    assert_eq!(line["read_bytes_per_step"].as_f64(), Some(16.0), "{line}");
    let images = (2 * 28 * 28 * 4) as f64;
    let uploaded = line["upload_bytes_per_step"].as_f64().unwrap();
    assert!(uploaded >= images && uploaded < images + 1024.0, "{uploaded} bytes uploaded per step: {line}");
    let uploads = line["uploads_per_step"].as_f64().unwrap();
    assert!((2.0..=6.0).contains(&uploads), "{uploads} uploads per step: {line}");
}
