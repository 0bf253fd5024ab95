//! A run interrupted after an epoch and resumed ends with the same weights and metrics,
//! bitwise, as the same run uninterrupted.

mod common;

use common::*;

/// The weight digest (`weights_crc32`) of checkpoint `ckpt` of a run: equal digests, bitwise-equal weights.
fn digest(run: &std::path::Path, ckpt: &str) -> u64 {
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join(ckpt).join("state.json")).unwrap()).unwrap();
    state["weights_crc32"].as_u64().unwrap()
}

/// A run's metrics.json without its wall-clock time.
fn metrics(run: &std::path::Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("wall_seconds");
    v
}

/// A run's epoch log without its timings.
fn log_without_timings(run: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("epochs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["seconds", "loader_wait_seconds", "train_images_per_second"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

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
    assert!(digest(&straight, "checkpoint-000003") == digest(&broken, "checkpoint-000003"), "final weights differ after resume");
    assert_eq!(metrics(&straight), metrics(&broken));
    assert_eq!(log_without_timings(&straight), log_without_timings(&broken));
    let log = log_without_timings(&broken);
    assert_eq!(log.len(), 3);
    // It learns: the training loss falls from the first epoch to the last.
    let loss = |i: usize| log[i]["train_loss"].as_f64().unwrap();
    assert!(loss(2) < loss(0), "training loss did not fall: {} → {}", loss(0), loss(2));

    // Same seed, fresh run: the same result (seeds reproduce).
    let again = dir.path().join("again");
    let r = rbl(&["train", "--config", c, "--out", again.to_str().unwrap(), "-q"]);
    assert!(r.status.success());
    assert!(digest(&again, "checkpoint-000003") == digest(&straight, "checkpoint-000003"), "same seed, different weights");
}

/// Ctrl-C (SIGINT), SIGTERM (a scheduler or `kill`) and SIGHUP (a closed terminal) all stop the
/// run between two steps with a checkpoint, a message and exit status 130.
#[test]
fn interrupt_signals_stop_cleanly_and_the_run_resumes_to_the_same_result() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    // Enough steps per epoch (batch 4) that the signal lands inside an epoch.
    let cfg = write(dir.path(), "c.toml", &tiny_config("etf", 2).replace("batch_size = 16", "batch_size = 4"));
    let c = cfg.to_str().unwrap();
    let straight = dir.path().join("straight");
    assert!(rbl(&["train", "--config", c, "--out", straight.to_str().unwrap(), "-q"]).status.success());

    for signal in ["INT", "TERM", "HUP"] {
        let run = dir.path().join(format!("run-{signal}"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_rbl"))
            .args(["train", "--config", c, "--out", run.to_str().unwrap(), "-q"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the first checkpoint exists, then interrupt during the second epoch.
        let t0 = std::time::Instant::now();
        while !run.join("latest").exists() && t0.elapsed().as_secs() < 120 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = std::process::Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            // The run finished before the signal arrived: nothing to check beyond completion.
            assert!(run.join("metrics.json").exists());
            continue;
        }
        assert_eq!(out.status.code(), Some(130), "SIG{signal}: {err}");
        assert!(err.contains("interrupted during epoch") && err.contains("--resume"), "SIG{signal}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!run.join("metrics.json").exists());
        let resumed = rbl(&["train", "--resume", run.to_str().unwrap(), "-q"]);
        assert!(resumed.status.success(), "{}", stderr(&resumed));
        assert_eq!(
            digest(&run, "checkpoint-000002"),
            digest(&straight, "checkpoint-000002"),
            "resumed after SIG{signal}, different weights"
        );
    }
}

/// Training steps per epoch of `tiny_config` at batch 4: 159 images (40, 30, 23, … 4 per class), drop_last.
const STEPS_PER_EPOCH: usize = 39;

#[test]
fn crashes_mid_epoch_resume_to_the_same_weights() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_config("rbl", 2).replace("batch_size = 16", "batch_size = 4\ncheckpoint_every_steps = 5");
    let cfg = write(dir.path(), "c.toml", &text);
    let c = cfg.to_str().unwrap();
    let straight = dir.path().join("straight");
    let a = rbl(&["train", "--config", c, "--out", straight.to_str().unwrap(), "-q"]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(std::fs::read_to_string(straight.join("latest")).unwrap(), "checkpoint-000002");

    // Crash (abort, as a kill would: no cleanup) 13 steps into epoch 1: the step-10 checkpoint survives.
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let crashed = rbl(&["train", "--config", c, "--out", r, "-q", "--crash-after-step", "13"]);
    assert!(!crashed.status.success());
    assert_eq!(std::fs::read_to_string(run.join("latest")).unwrap(), "checkpoint-000000-step-000010");
    // Resume, and crash again 9 steps into epoch 2 (30 steps finish epoch 1 first).
    let crashed = rbl(&["train", "--resume", r, "-q", "--crash-after-step", &(STEPS_PER_EPOCH - 10 + 9).to_string()]);
    assert!(!crashed.status.success());
    assert_eq!(std::fs::read_to_string(run.join("latest")).unwrap(), "checkpoint-000001-step-000005");
    let resumed = rbl(&["train", "--resume", r]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("resuming") && stderr(&resumed).contains("epoch 1 and 5 steps of epoch 2"), "{}", stderr(&resumed));

    assert_eq!(digest(&run, "checkpoint-000002"), digest(&straight, "checkpoint-000002"), "final weights differ after two crashes");
    assert_eq!(metrics(&run), metrics(&straight));
    // The epoch log too, running train loss and accuracy included (carried across the crash).
    assert_eq!(log_without_timings(&run), log_without_timings(&straight));
    // A crash between the final checkpoint and the metrics file: resuming recomputes the same metrics.
    let written = std::fs::read_to_string(run.join("metrics.json")).unwrap();
    std::fs::remove_file(run.join("metrics.json")).unwrap();
    let resumed = rbl(&["train", "--resume", r, "-q"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(std::fs::read_to_string(run.join("metrics.json")).unwrap(), written);
    // The newest two checkpoints are left (train.keep_checkpoints = 2), no temporary folders.
    let mut names: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("checkpoint"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], "checkpoint-000002");
    assert!(names.iter().all(|n| n.starts_with("checkpoint-")), "{names:?}");
}

/// The previous checkpoint is kept (`train.keep_checkpoints = 2`): a damaged newest checkpoint
/// (model bytes, or an edited state.json, caught by its own checksum) or a deleted `latest`
/// costs one epoch, not the run; `--resume` says which checkpoint it used and ends bitwise where
/// an uninterrupted run ends. With no usable checkpoint left it refuses rather than restart.
#[test]
fn a_damaged_newest_checkpoint_costs_one_interval_not_the_run() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("etf", 3));
    let c = cfg.to_str().unwrap();
    let straight = dir.path().join("straight");
    assert!(rbl(&["train", "--config", c, "--out", straight.to_str().unwrap(), "-q"]).status.success());
    for damage in ["model", "state", "latest", "all"] {
        let run = dir.path().join(format!("run-{damage}"));
        let r = run.to_str().unwrap();
        assert!(rbl(&["train", "--config", c, "--out", r, "-q", "--stop-after-epoch", "2"]).status.success());
        assert!(run.join("checkpoint-000001").is_dir() && run.join("checkpoint-000002").is_dir(), "two kept");
        let flip = |p: std::path::PathBuf| {
            let mut bytes = std::fs::read(&p).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x01;
            std::fs::write(&p, bytes).unwrap();
        };
        match damage {
            "model" => flip(run.join("checkpoint-000002/model.bpk")),
            "state" => {
                // A logged accuracy edited by hand: still valid JSON, caught by state.crc32.
                let p = run.join("checkpoint-000002/state.json");
                let text = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, text.replacen("\"train_acc\": ", "\"train_acc\": 9", 1)).unwrap();
            }
            "latest" => std::fs::remove_file(run.join("latest")).unwrap(),
            _ => {
                flip(run.join("checkpoint-000001/model.bpk"));
                flip(run.join("checkpoint-000002/optimizer.bpk"));
            }
        }
        let out = rbl(&["train", "--resume", r, "-q"]);
        let err = stderr(&out);
        if damage == "all" {
            assert!(!out.status.success() && err.contains("none of its 2 checkpoints"), "{err}");
            assert!(!run.join("checkpoint-000003").exists() && !run.join("metrics.json").exists(), "nothing was changed");
            continue;
        }
        assert!(out.status.success(), "{damage}: {err}");
        let used = if damage == "latest" { "checkpoint-000002" } else { "checkpoint-000001" };
        assert!(err.contains(used), "{damage}: says which checkpoint it used: {err}");
        assert_eq!(digest(&run, "checkpoint-000003"), digest(&straight, "checkpoint-000003"), "{damage}: same final weights");
        assert_eq!(metrics(&run), metrics(&straight), "{damage}");
    }
}

/// Seesaw's accumulated class counts are recomputed from the run's epoch orders on resume: a
/// Seesaw run crashed mid-epoch and resumed ends with the weights of the uninterrupted run.
#[test]
fn a_seesaw_run_resumes_with_its_accumulated_counts() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_config("linear", 2).replace("warmup_epochs = 1", "warmup_epochs = 1\ncheckpoint_every_steps = 4")
        + "[loss]\nname = \"seesaw\"\n";
    let cfg = write(dir.path(), "c.toml", &text);
    let c = cfg.to_str().unwrap();
    let (straight, cut) = (dir.path().join("straight"), dir.path().join("cut"));
    assert!(rbl(&["train", "--config", c, "--out", straight.to_str().unwrap(), "-q"]).status.success());
    let crashed = rbl(&["train", "--config", c, "--out", cut.to_str().unwrap(), "-q", "--crash-after-step", "13"]);
    assert!(!crashed.status.success());
    let resumed = rbl(&["train", "--resume", cut.to_str().unwrap(), "-q"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(digest(&cut, "checkpoint-000002"), digest(&straight, "checkpoint-000002"));
    assert_eq!(metrics(&cut), metrics(&straight));
    // And Seesaw is not cross-entropy: the same run with CE ends elsewhere.
    let ce = dir.path().join("ce");
    let ce_cfg = write(dir.path(), "ce.toml", &text.replace("name = \"seesaw\"", "name = \"ce\""));
    assert!(rbl(&["train", "--config", ce_cfg.to_str().unwrap(), "--out", ce.to_str().unwrap(), "-q"]).status.success());
    assert_ne!(digest(&ce, "checkpoint-000002"), digest(&straight, "checkpoint-000002"));
}
