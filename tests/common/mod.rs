//! Helpers shared by the end-to-end tests: a tiny real Fashion-MNIST-LT experiment.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the Debian package `dataset-fashion-mnist` installs the data (`.ci/run` installs it).
pub const FMNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Fails loudly (rather than skipping) when the real data is missing.
pub fn require_fmnist() {
    assert!(
        Path::new(FMNIST).join("train-images-idx3-ubyte.gz").is_file(),
        "Fashion-MNIST is not installed at {FMNIST}: apt-get install dataset-fashion-mnist"
    );
}

/// A config for a small real slice: 40 … 4 images per class (IR 10), 10 test images per class,
/// batch 16; `head` and `epochs` chosen by the test.
pub fn tiny_config(head: &str, epochs: usize) -> String {
    format!(
        r#"name = "tiny_{head}"
seed = 3
[data]
root = "{FMNIST}"
imbalance_ratio = 10.0
n_max = 40
test_per_class = 10
many_threshold = 20
few_threshold = 8
[model]
head = "{head}"
widths = [8, 16, 32]
feature_dim = 32
[train]
epochs = {epochs}
batch_size = 16
warmup_epochs = 1
[eval]
batch_size = 64
"#
    )
}

/// Writes `text` as `name` in `dir` and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the `rbl` binary.
pub fn rbl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbl")).args(args).output().expect("rbl runs")
}

/// The epoch log (`epochs.jsonl`) of a run folder, one JSON value per epoch.
pub fn epoch_log(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("epochs.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Stderr of an output, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `mpirun -np <ranks> rbl <args>` with one kernel thread per rank, and `env` passed to every
/// rank (CI runs as root: `--allow-run-as-root`; two ranks on two cores: `--oversubscribe`).
pub fn mpirun(ranks: usize, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", &ranks.to_string(), "-x", "RAYON_NUM_THREADS=1"]);
    for (key, value) in env {
        c.env(key, value).args(["-x", key]);
    }
    c.arg(env!("CARGO_BIN_EXE_rbl")).args(args);
    c
}
