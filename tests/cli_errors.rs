//! Bad input gives a clear error naming the file or key, a non-zero exit, no panic, and no
//! half-written results.

mod common;

use common::*;

fn assert_clean_failure(out: &std::process::Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure, got success: {err}");
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
}

#[test]
fn unknown_config_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("rbl", 1));
    let out = rbl(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "train.learning_rate=0.1",
        "--out",
        dir.path().join("r").to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &["learning_rate"]);
    let bad = write(dir.path(), "bad.toml", "[model]\nhead = \"rbl\"\ndepth = 32\n");
    assert_clean_failure(&rbl(&["train", "--config", bad.to_str().unwrap()]), &["bad.toml", "depth"]);
    assert_clean_failure(&rbl(&["train", "--config", dir.path().join("none.toml").to_str().unwrap()]), &["none.toml"]);
}

#[test]
fn missing_truncated_and_mislabelled_data_files_are_named() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(std::path::Path::new(FMNIST).join(f), data.join(f)).unwrap();
    }
    let cfg = write(dir.path(), "c.toml", &tiny_config("etf", 1));
    let train = |run: &str| {
        rbl(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            &format!("data.root=\"{}\"", data.display()),
            "--out",
            dir.path().join(run).to_str().unwrap(),
        ])
    };

    // Truncated: the label file cut short.
    let labels = data.join("t10k-labels-idx1-ubyte.gz");
    let full = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &full[..full.len() / 2]).unwrap();
    assert_clean_failure(&train("r1"), &["t10k-labels-idx1-ubyte.gz"]);

    // Wrong label range: a label 10 in a 10-class file.
    let mut raw = rbl::data::idx::encode_idx(&[10000], &vec![0u8; 10000]);
    *raw.last_mut().unwrap() = 10;
    std::fs::remove_file(&labels).unwrap();
    let plain = data.join("t10k-labels-idx1-ubyte");
    std::fs::write(&plain, &raw).unwrap();
    assert_clean_failure(&train("r2"), &["t10k-labels-idx1-ubyte", "label 10", "outside 0..10"]);

    // Wrong magic number.
    raw[2] = 0x0d;
    std::fs::write(&plain, &raw).unwrap();
    assert_clean_failure(&train("r3"), &["t10k-labels-idx1-ubyte", "0x0d"]);

    // Missing.
    std::fs::remove_file(&plain).unwrap();
    assert_clean_failure(&train("r4"), &["t10k-labels-idx1-ubyte", "not found"]);
    for r in ["r1", "r2", "r3", "r4"] {
        assert!(!dir.path().join(r).join("metrics.json").exists());
        assert!(!dir.path().join(r).join("latest").exists());
    }
}

#[test]
fn nan_loss_stops_with_epoch_step_and_advice() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("linear", 2));
    let run = dir.path().join("run");
    let out = rbl(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "train.lr=1e30",
        "--set",
        "train.warmup_epochs=0",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert_clean_failure(&out, &["diverged", "epoch 1", "step", "train.lr"]);
    assert!(!run.join("metrics.json").exists(), "no result from a diverged run");
    assert!(!run.join("latest").exists(), "no checkpoint of diverged weights");
}

#[test]
fn corrupt_checkpoint_is_refused() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("etf", 1));
    let run = dir.path().join("run");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--set", "data.n_max=20", "--out", run.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let model = run.join("checkpoint-000001/model.bpk");
    let mut bytes = std::fs::read(&model).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&model, bytes).unwrap();
    assert_clean_failure(&rbl(&["eval", "--checkpoint", run.to_str().unwrap()]), &["model.bpk", "checksum"]);
}

#[test]
fn a_full_disk_is_an_error_and_publishes_no_broken_checkpoint() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("rbl", 1));
    let run = dir.path().join("run");
    // A 64 KiB file-size limit with SIGXFSZ ignored: writes past it fail (EFBIG) the way they
    // fail on a full disk (ENOSPC), here in the first checkpoint's model file (~0.5 MB).
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec '{}' train --config '{}' --out '{}' -q",
        env!("CARGO_BIN_EXE_rbl"),
        cfg.display(),
        run.display()
    );
    let out = std::process::Command::new("bash").args(["-c", &script]).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("checkpoint-000001") && err.to_lowercase().contains("file too large"), "names the file and the cause: {err}");
    assert!(!err.contains("panicked"), "{err}");
    // Nothing half-written was published: no `latest`, no checkpoint folder, no metrics.
    assert!(!run.join("latest").exists() && !run.join("metrics.json").exists());
    assert!(!std::fs::read_dir(&run).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("checkpoint-")));
    // No half-written folder is left behind either, and the OS error is said once.
    assert!(!std::fs::read_dir(&run).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp")));
    assert_eq!(err.to_lowercase().matches("file too large").count(), 1, "{err}");
    // With space again, the same run folder resumes and finishes.
    let again = rbl(&["train", "--resume", run.to_str().unwrap(), "-q"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(run.join("metrics.json").is_file());
}

#[test]
fn a_checkpoint_of_another_config_is_refused() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("rbl", 2));
    let run = dir.path().join("run");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q", "--stop-after-epoch", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The run's config changes under its checkpoint (here: the learning rate).
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap().replace("lr = 0.1", "lr = 0.05");
    std::fs::write(run.join("config.toml"), text).unwrap();
    let out = rbl(&["train", "--resume", run.to_str().unwrap(), "-q"]);
    assert_clean_failure(&out, &["checkpoint-000001", "different config", "train.lr"]);
    assert!(!run.join("metrics.json").exists());
    // --set on a resumed run says what it is: a change of the run's config.
    let out = rbl(&["train", "--resume", run.to_str().unwrap(), "--set", "train.epochs=5", "-q"]);
    assert_clean_failure(&out, &["train.epochs", "cannot change a run"]);
}

/// Inputs that parse but cannot give a meaningful run are refused before anything is written,
/// naming the key or file: a batch larger than the training set with drop_last (no step would
/// run), test images of another shape than the training images, a τ that is not a number.
#[test]
fn runs_that_cannot_mean_anything_are_refused() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("etf", 1));
    let c = cfg.to_str().unwrap();
    let run = dir.path().join("big");
    assert_clean_failure(
        &rbl(&["train", "--config", c, "--set", "train.batch_size=1000", "--out", run.to_str().unwrap()]),
        &["train.batch_size", "drop_last"],
    );
    assert!(!run.exists(), "nothing written");

    // 28×28 training images, 14×14 test images.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for f in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] {
        std::fs::copy(std::path::Path::new(FMNIST).join(f), data.join(f)).unwrap();
    }
    let n = 200;
    std::fs::write(data.join("t10k-images-idx3-ubyte"), rbl::data::idx::encode_idx(&[n, 14, 14], &vec![7u8; n * 14 * 14])).unwrap();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), rbl::data::idx::encode_idx(&[n], &labels)).unwrap();
    let small = dir.path().join("small");
    let root = format!("data.root=\"{}\"", data.display());
    assert_clean_failure(&rbl(&["train", "--config", c, "--set", &root, "--out", small.to_str().unwrap()]), &["14×14", "28×28"]);
    assert!(!small.exists(), "nothing written");

    let ok = dir.path().join("ok");
    assert!(rbl(&["train", "--config", c, "--set", "data.n_max=20", "--out", ok.to_str().unwrap(), "-q"]).status.success());
    assert_clean_failure(&rbl(&["eval", "--checkpoint", ok.to_str().unwrap(), "--tau", "nan"]), &["--tau", "NaN"]);
}

/// A closed pipe on stdout or stderr (`rbl train … 2>&1 | head -2`) does not stop training.
#[test]
fn closed_output_pipes_do_not_stop_a_run() {
    use std::io::BufRead;
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("rbl", 2).replace("batch_size = 16", "batch_size = 4"));
    let run = dir.path().join("run");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbl"))
        .args(["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("tiny_rbl"), "{first}");
    // Both pipes are closed now; the run goes on writing progress and its result line.
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    assert!(run.join("metrics.json").is_file());
}

/// `--force` removes only what rbl wrote: a folder that also holds other files is refused,
/// listing them, and nothing is removed.
#[test]
fn force_never_deletes_files_rbl_did_not_write() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("etf", 1));
    let c = cfg.to_str().unwrap();
    let run = dir.path().join("run");
    assert!(rbl(&["train", "--config", c, "--set", "data.n_max=20", "--out", run.to_str().unwrap(), "-q"]).status.success());
    std::fs::write(run.join("thesis.txt"), "years of work").unwrap();
    std::fs::create_dir(run.join("notes")).unwrap();
    assert_clean_failure(
        &rbl(&["train", "--config", c, "--out", run.to_str().unwrap(), "--force", "-q"]),
        &["thesis.txt", "notes", "nothing was removed"],
    );
    assert_eq!(std::fs::read_to_string(run.join("thesis.txt")).unwrap(), "years of work");
    assert!(run.join("metrics.json").is_file() && run.join("notes").is_dir());
    // Without them, --force starts over.
    std::fs::remove_file(run.join("thesis.txt")).unwrap();
    std::fs::remove_dir(run.join("notes")).unwrap();
    let again = rbl(&["train", "--config", c, "--set", "data.n_max=20", "--out", run.to_str().unwrap(), "--force", "-q"]);
    assert!(again.status.success(), "{}", stderr(&again));
    // A name that is not one folder name is refused before anything is written.
    for name in ["", "/tmp/victim", "../../esc"] {
        let out = rbl(&["train", "--config", c, "--set", &format!("name=\"{name}\"")]);
        assert_clean_failure(&out, &["name"]);
    }
}

/// One writer per run folder: while a process holds the folder's lock, training, resuming,
/// `--force` and stage-2 writes are refused naming the holder; reading (`rbl eval`) works.
#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_run() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("linear", 1));
    let c = cfg.to_str().unwrap();
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    assert!(rbl(&["train", "--config", c, "--set", "data.n_max=20", "--out", r, "-q"]).status.success());
    // This test process stands for a running rbl: it holds the lock.
    let lock = rbl::report::run_dir::RunDir::new(&run).lock().unwrap();
    let pid = std::process::id().to_string();
    assert_clean_failure(&rbl(&["train", "--resume", r, "-q"]), &["in use by process", &pid]);
    assert_clean_failure(&rbl(&["train", "--config", c, "--out", r, "--force", "-q"]), &["in use by process", &pid]);
    assert_clean_failure(&rbl(&["stage2", "--checkpoint", r, "--method", "lws", "--epochs", "1"]), &["in use by process", &pid]);
    assert!(run.join("metrics.json").is_file(), "the run is untouched");
    let eval = rbl(&["eval", "--checkpoint", r]);
    assert!(eval.status.success(), "readers are not locked out: {}", stderr(&eval));
    drop(lock);
    let resumed = rbl(&["train", "--resume", r, "-q"]);
    assert!(resumed.status.success(), "the lock is released with its holder: {}", stderr(&resumed));
}

/// Rows 10–12 of issue #18 through the binary: numbers that parse but cannot work are refused
/// naming the key, with no panic and nothing written (the full table is in src/config.rs).
#[test]
fn impossible_numbers_are_refused_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("rbl", 1));
    let run = dir.path().join("run");
    for (set, key) in [
        ("train.momentum=nan", "train.momentum"),
        ("train.momentum=-1", "train.momentum"),
        ("train.weight_decay=nan", "train.weight_decay"),
        ("train.weight_decay=-1", "train.weight_decay"),
        ("eval.tau=nan", "eval.tau"),
        ("eval.tau=inf", "eval.tau"),
        ("model.widths=[0,0,0]", "model.widths"),
        ("model.widths=[100000,8,8]", "model.widths"),
        ("model.feature_dim=1000000000", "model.feature_dim"),
    ] {
        let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--set", set, "--out", run.to_str().unwrap()]);
        assert_clean_failure(&out, &[key]);
        assert!(!run.exists(), "{set}: nothing written");
    }
}

/// Issue #33: a binary built without MPI, started as one of several ranks (the variables
/// mpirun and srun set), refuses to run N independent copies, and says how to build one.
#[test]
fn a_build_without_mpi_refuses_to_run_as_one_of_several_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("rbl", 1));
    for var in ["OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rbl"))
            .args(["train", "--config", cfg.to_str().unwrap(), "--out", dir.path().join("r").to_str().unwrap()])
            .env(var, "2")
            .output()
            .unwrap();
        if cfg!(feature = "mpi") {
            continue;
        }
        assert_clean_failure(&out, &["one of 2 ranks", "--features mpi"]);
        assert!(!dir.path().join("r").exists());
    }
}
