//! End-to-end: `eval.select = "val"` keeps the epoch best on the validation split, scores it on
//! the test set once, survives a crash, and `rbl table --select` shows last / val / best-test.

mod common;

use common::*;
use serde_json::Value;

fn json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    write(
        dir,
        "sel.toml",
        &tiny_config("rbl", 4)
            .replace("test_per_class = 10", "test_per_class = 10\nval_per_class = 10")
            .replace("[eval]", "[eval]\nselect = \"val\""),
    )
}

#[test]
fn validation_selection_keeps_and_scores_the_best_epoch() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    // Under its config's name, where `rbl table` looks for it.
    let run = dir.path().join("tiny_rbl");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The chosen epoch is the log's earliest maximum of the validation score.
    let log = epoch_log(&run);
    let vals: Vec<f64> = log.iter().map(|r| r["val_acc_adjusted"].as_f64().unwrap()).collect();
    let best = vals.iter().cloned().fold(f64::MIN, f64::max);
    let want_epoch = vals.iter().position(|&v| v == best).unwrap() + 1;
    let m = json(&run.join("metrics.json"));
    assert_eq!(m["selected"]["rule"], "val");
    assert_eq!(m["selected"]["epoch"].as_u64().unwrap() as usize, want_epoch, "{vals:?}");
    assert_eq!(m["selected"]["val"]["adjusted"]["top1"].as_f64().unwrap(), best);
    assert_eq!(json(&run.join("best/state.json"))["epoch"].as_u64().unwrap() as usize, want_epoch);
    // Its test scores are what `rbl eval` gives for the kept checkpoint.
    let out = rbl(&["eval", "--checkpoint", run.join("best").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(eval["adjusted"]["top1"], m["selected"]["test"]["adjusted"]["top1"]);
    assert_eq!(eval["raw"]["top1"], m["selected"]["test"]["raw"]["top1"]);

    // The three tables, each labelled; best-test is the log's best test score.
    let out = rbl(&["table", "--runs", dir.path().to_str().unwrap(), cfg.to_str().unwrap(), "--select", "last,val,best-test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let cell = |caption: &str| -> f64 {
        let block = text.split("Top-1 %").find(|b| b.contains(caption)).unwrap_or_else(|| panic!("{caption}: {text}"));
        let row = block.lines().find(|l| l.starts_with("| rbl")).unwrap();
        row.split('|').nth(2).unwrap().trim().parse().unwrap()
    };
    let fmt = |x: f64| format!("{x:.2}").parse::<f64>().unwrap();
    assert_eq!(cell("last epoch"), fmt(m["test"]["adjusted"]["top1"].as_f64().unwrap()));
    assert_eq!(cell("validation split"), fmt(m["selected"]["test"]["adjusted"]["top1"].as_f64().unwrap()));
    let best_test = log.iter().map(|r| r["test_acc_adjusted"].as_f64().unwrap()).fold(f64::MIN, f64::max);
    assert_eq!(cell("BEST TEST EPOCH: the paper's protocol, optimistic"), fmt(best_test));
}

#[test]
fn validation_selection_survives_a_crash_and_needs_a_split() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let whole = dir.path().join("whole");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", whole.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Killed in its third epoch (10 steps an epoch), then resumed: the same choice and scores.
    let cut = dir.path().join("cut");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", cut.to_str().unwrap(), "-q", "--crash-after-step", "25"]);
    assert!(!out.status.success());
    let out = rbl(&["train", "--resume", cut.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (a, b) = (json(&whole.join("metrics.json")), json(&cut.join("metrics.json")));
    assert_eq!(a["selected"], b["selected"]);
    assert_eq!(a["test"], b["test"]);

    // Without a validation split the choice is refused before anything is written.
    let target = dir.path().join("none");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", target.to_str().unwrap(), "--set", "data.val_per_class=0"]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("eval.select") && err.contains("validation split"), "{err}");
    assert!(!target.exists());
}
