//! The step benchmark binary runs end to end for one tiny step (no timing asserted: speed is
//! measured by bench/run.sh, not by tests).

use serde_json::Value;

#[test]
fn rbl_bench_runs_one_step_and_reports_json() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbl-bench"))
        .args(["--batch", "2", "--input", "1x28x28,3x32x32", "--steps", "1", "--warmup", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
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
