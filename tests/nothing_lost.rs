//! Issue #36 ("Nothing lost, part 3") through the binary on tiny real runs: what `--force` may
//! remove, augmentation and sampling sizes the data cannot hold, and what an epoch boundary
//! publishes when the process dies there. (The parsers, the walk, the weights, the lock and
//! the checkpoints have their tests next to their code and in tests/hostile_inputs.rs.)

mod common;

use std::path::Path;

use common::*;

fn assert_refused(out: &std::process::Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
}

/// Row 12: the files the probe planted (and rbl once deleted, matching name patterns) make
/// `--force` refuse, listing them; every one of them survives.
#[test]
fn force_keeps_files_that_only_look_like_rbls() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("etf", 1));
    let (c, run) = (cfg.to_str().unwrap(), dir.path().join("run"));
    let r = run.to_str().unwrap();
    assert!(rbl(&["train", "--config", c, "--set", "data.n_max=20", "--out", r, "-q"]).status.success());
    let planted =
        ["checkpoint-my-backup/notes.txt", "posthoc-my-analysis.json", "stage2-hand-tuned.json", "best/my_model.pt", ".thesis.tmp.md"];
    for f in planted {
        let p = run.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f).unwrap();
    }
    assert_refused(
        &rbl(&["train", "--config", c, "--set", "data.n_max=20", "--out", r, "--force", "-q"]),
        &["checkpoint-my-backup", "posthoc-my-analysis.json", "stage2-hand-tuned.json", "best/my_model.pt", ".thesis.tmp.md"],
    );
    for f in planted {
        assert_eq!(std::fs::read_to_string(run.join(f)).unwrap(), f, "{f} kept");
    }
    assert!(run.join("metrics.json").is_file(), "and the run too");
}

/// Rows 16 and 17: a pad-crop or Cutout larger than the image, or an n_max no class has, is
/// refused naming the key and the bound (they trained on blank images, or panicked).
#[test]
fn sizes_the_data_cannot_hold_are_refused() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("linear", 1));
    let run = dir.path().join("run");
    for (set, needles) in [
        ("data.crop_padding=1000000000", &["data.crop_padding", "at most 14"][..]),
        ("data.cutout=1000000000", &["data.cutout", "at most 28"][..]),
        ("data.n_max=10000000000", &["data.n_max", "no class of the training pool has more than 6000"][..]),
        ("data.n_max=1000000000", &["data.n_max"][..]),
    ] {
        let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--set", set, "--out", run.to_str().unwrap(), "-q"]);
        assert_refused(&out, needles);
        assert!(!run.exists(), "{set}: nothing written");
    }
}

/// The steps of the epoch events in a TensorBoard event file (records with a summary).
fn event_steps(path: &Path) -> Vec<u64> {
    let records = rbl::report::tensorboard::read_records(&std::fs::read(path).unwrap()).unwrap();
    records
        .iter()
        .filter(|r| r.windows(b"train/loss".len()).any(|w| w == b"train/loss"))
        .map(|r| {
            // wall_time (tag 0x09, 8 bytes), then step (tag 0x10, varint).
            assert_eq!((r[0], r[9]), (0x09, 0x10));
            let (mut v, mut shift) = (0u64, 0);
            for &b in &r[10..] {
                v |= ((b & 0x7f) as u64) << shift;
                shift += 7;
                if b < 0x80 {
                    break;
                }
            }
            v
        })
        .collect()
}

/// Row 22: a crash right after an epoch's checkpoint (before anything else of the epoch is
/// written) used to lose that epoch's TensorBoard point for good; now it is written first.
#[test]
fn a_crash_at_the_epoch_boundary_keeps_every_tensorboard_point() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &format!("{}[log]\ntensorboard = true\n", tiny_config("linear", 3)));
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let crashed =
        rbl(&["train", "--config", cfg.to_str().unwrap(), "--set", "data.n_max=20", "--out", r, "-q", "--crash-after-checkpoint", "2"]);
    assert!(!crashed.status.success(), "aborted");
    let resumed = rbl(&["train", "--resume", r, "-q"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let files: Vec<_> = std::fs::read_dir(run.join("tensorboard")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 2, "one event file per session");
    let mut steps: Vec<u64> = files.iter().flat_map(|f| event_steps(f)).collect();
    steps.sort();
    assert_eq!(steps, vec![1, 2, 3], "epoch 2's point went out before its checkpoint");
}
