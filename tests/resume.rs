//! A run interrupted after an epoch and resumed ends with the same weights and metrics,
//! bitwise, as the same run uninterrupted.

mod common;

use common::*;

#[test]
fn interrupted_and_resumed_run_matches_uninterrupted() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("rbl", 3));
    let straight = dir.path().join("straight");
    let broken = dir.path().join("broken");
    let c = cfg.to_str().unwrap();

    let a = rbl(&["train", "--config", c, "--out", straight.to_str().unwrap(), "-q"]);
    assert!(a.status.success(), "{}", stderr(&a));

    let b = rbl(&["train", "--config", c, "--out", broken.to_str().unwrap(), "-q", "--stop-after-epoch", "1"]);
    assert!(b.status.success(), "{}", stderr(&b));
    assert!(!broken.join("metrics.json").exists());
    assert_eq!(std::fs::read_to_string(broken.join("latest")).unwrap(), "checkpoint-000001");
    let b = rbl(&["train", "--resume", broken.to_str().unwrap(), "-q", "--stop-after-epoch", "2"]);
    assert!(b.status.success(), "{}", stderr(&b));
    let b = rbl(&["train", "--resume", broken.to_str().unwrap(), "-q"]);
    assert!(b.status.success(), "{}", stderr(&b));

    // Digest of the weight values (the .bpk files also hold random parameter ids).
    let weights = |d: &std::path::Path| {
        let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("checkpoint-000003/state.json")).unwrap()).unwrap();
        state["weights_crc32"].as_u64().unwrap()
    };
    assert!(weights(&straight) == weights(&broken), "final weights differ after resume");
    let metrics = |d: &std::path::Path| {
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("metrics.json")).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("wall_seconds");
        v
    };
    assert_eq!(metrics(&straight), metrics(&broken));
    let strip = |d: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.join("epochs.jsonl")).unwrap().lines().map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["seconds", "loader_wait_seconds", "train_images_per_second"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        }).collect()
    };
    assert_eq!(strip(&straight), strip(&broken));
    let log = strip(&broken);
    assert_eq!(log.len(), 3);
    // It learns: the training loss falls from the first epoch to the last.
    let loss = |i: usize| log[i]["train_loss"].as_f64().unwrap();
    assert!(loss(2) < loss(0), "training loss did not fall: {} → {}", loss(0), loss(2));

    // Same seed, fresh run: the same result (seeds reproduce).
    let again = dir.path().join("again");
    let r = rbl(&["train", "--config", c, "--out", again.to_str().unwrap(), "-q"]);
    assert!(r.status.success());
    assert!(weights(&again) == weights(&straight), "same seed, different weights");
}
