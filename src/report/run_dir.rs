//! The layout of a run folder, in one place: every file a run writes and every command reads
//! is named here, so a new output gets its name once and a rename touches one line.
//!
//! ```text
//! RUN_DIR/
//!   config.toml               the resolved config (a run is reproducible from its folder)
//!   epochs.jsonl              one EpochRecord per finished epoch
//!   metrics.json              FinalMetrics, written when the last epoch is done
//!   confusion.json            the final test set's confusion matrices
//!   latest                    the name of the newest complete checkpoint folder
//!   checkpoint-NNNNNN[-step-SSSSSS]/   see train::checkpoint
//!   plots/  features/  report.html     pictures and the HTML page (plots/confusion.png too)
//!   stage2-<method>.json  posthoc-<method>.json   two-stage results
//!   dataset.json              class names, counts, input shape and normalisation
//!   .lock                     held by the one process writing the folder
//! ```
//!
//! `rbl train --force` removes only what [`written_by_rbl`] recognises, matched exactly.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{RblError, Result};
use crate::report::{EpochRecord, FinalMetrics, write_atomic};

/// A run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run folder at `path` (which need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    /// The run folder a checkpoint folder belongs to (its parent).
    pub fn of_checkpoint(checkpoint_dir: &Path) -> RunDir {
        RunDir::new(checkpoint_dir.parent().map(Path::to_path_buf).unwrap_or_default())
    }

    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.toml`: the resolved config of the run.
    pub fn config(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    /// `epochs.jsonl`: the epoch log.
    pub fn epoch_log(&self) -> PathBuf {
        self.path.join("epochs.jsonl")
    }

    /// `metrics.json`: the final numbers of a finished run.
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.json")
    }

    /// `latest`: names the newest complete checkpoint.
    pub fn latest(&self) -> PathBuf {
        self.path.join("latest")
    }

    /// `plots/`: the run's curves (`rbl plot`, `rbl report`).
    pub fn plots(&self) -> PathBuf {
        self.path.join("plots")
    }

    /// `features/`: PCA pictures of the features.
    pub fn features(&self) -> PathBuf {
        self.path.join("features")
    }

    /// The stem of the feature pictures after `epoch` (`.png` and `.svg` are added).
    pub fn feature_picture_stem(&self, epoch: usize) -> PathBuf {
        self.features().join(format!("epoch_{epoch:03}"))
    }

    /// `best/`: the checkpoint of the epoch best on the validation split (`eval.select = "val"`).
    pub fn best(&self) -> PathBuf {
        self.path.join("best")
    }

    /// `tensorboard/`: TensorBoard event files (`log.tensorboard`).
    pub fn tensorboard(&self) -> PathBuf {
        self.path.join("tensorboard")
    }

    /// `report.html`.
    pub fn report(&self) -> PathBuf {
        self.path.join("report.html")
    }

    /// The result `rbl <command>` (`stage2` or `posthoc`) writes for `method`:
    /// `<command>-<method>.json`.
    pub fn two_stage_result(&self, command: &str, method: &str) -> PathBuf {
        self.path.join(format!("{command}-{method}.json"))
    }

    /// Whether the folder holds a run (it has a `config.toml`).
    pub fn holds_run(&self) -> bool {
        self.config().is_file()
    }

    /// Whether the run has finished (it has a `metrics.json`).
    pub fn is_finished(&self) -> bool {
        self.metrics().is_file()
    }

    /// The final metrics, or `None` before the run has finished.
    pub fn read_metrics(&self) -> Result<Option<FinalMetrics>> {
        read_json(&self.metrics())
    }

    /// Refuses to start a new run here when the folder already holds one.
    pub fn check_no_run(&self) -> Result<()> {
        if !self.holds_run() {
            return Ok(());
        }
        let dir = self.path.display();
        Err(RblError::Config {
            origin: "--out".into(),
            msg: format!("{dir} already holds a run: continue it with --resume {dir}, or pass --force to start over"),
        })
    }

    /// The epoch log (`epochs.jsonl`), one record per finished epoch (at most 256 MiB: a
    /// million epochs of records; anything larger, or not a regular file, is refused).
    pub fn read_epoch_log(&self) -> Result<Vec<EpochRecord>> {
        let p = self.epoch_log();
        let text = crate::files::read_text_capped(&p, 256 << 20)?;
        text.lines()
            .enumerate()
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| RblError::format(&p, format!("line {}: {e}", i + 1))))
            .collect()
    }

    /// Rewrites `epochs.jsonl` from the whole history (atomically).
    pub fn write_epoch_log(&self, history: &[EpochRecord]) -> Result<()> {
        let mut text = String::new();
        for r in history {
            text += &serde_json::to_string(r).expect("record serialises");
            text.push('\n');
        }
        write_atomic(&self.epoch_log(), text.as_bytes())
    }

    /// Writes `dataset.json` (atomically): see [`crate::data::card`].
    pub fn write_dataset_card(&self, card: &crate::data::card::DatasetCard) -> Result<()> {
        write_json(&self.dataset_card(), card).map(|_| ())
    }

    /// The run's `dataset.json`, or `None` for a run trained before rbl wrote it.
    pub fn read_dataset_card(&self) -> Result<Option<crate::data::card::DatasetCard>> {
        crate::data::card::DatasetCard::read(&self.dataset_card())
    }

    /// `confusion.json`: the final test set's confusion matrices (raw and adjusted).
    pub fn confusion(&self) -> PathBuf {
        self.path.join("confusion.json")
    }

    /// Writes `confusion.json` (atomically).
    pub fn write_confusion(&self, confusion: &crate::metrics::confusion::Confusion) -> Result<()> {
        write_json(&self.confusion(), confusion).map(|_| ())
    }

    /// The final confusion matrices, or `None` (a run not finished, or from before they were kept).
    pub fn read_confusion(&self) -> Result<Option<crate::metrics::confusion::Confusion>> {
        read_json(&self.confusion())
    }

    /// Writes `metrics.json` (atomically).
    pub fn write_metrics(&self, metrics: &FinalMetrics) -> Result<()> {
        write_json(&self.metrics(), metrics).map(|_| ())
    }

    /// Writes a two-stage result ([`Self::two_stage_result`]) as pretty JSON and returns the text.
    /// Holds the folder's lock while writing.
    pub fn write_two_stage_result<T: Serialize>(&self, command: &str, method: &str, result: &T) -> Result<String> {
        let _lock = self.lock()?;
        write_json(&self.two_stage_result(command, method), result)
    }

    /// `.lock`: the file a writer holds an exclusive lock on.
    pub fn lock_file(&self) -> PathBuf {
        self.path.join(".lock")
    }

    /// `dataset.json`: what the run was trained on (class names in label order, counts, input
    /// shape, normalisation), so that predict and export need no dataset.
    pub fn dataset_card(&self) -> PathBuf {
        self.path.join("dataset.json")
    }

    /// Takes the folder's exclusive lock (creating the folder), or refuses naming the process
    /// that holds it. The operating system releases it when the process ends, however it ends;
    /// readers (`rbl eval`, `rbl report`) do not take it. The lock file is opened without
    /// following a symbolic link (a link planted there would make rbl truncate its target) and
    /// must be a regular file.
    pub fn lock(&self) -> Result<RunLock> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(&self.path).map_err(|e| RblError::io(&self.path, e))?;
        let p = self.lock_file();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&p)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => RblError::format(&p, "is a symbolic link: rbl's lock file must be a regular file; remove the link"),
                _ => RblError::io(&p, e),
            })?;
        let meta = file.metadata().map_err(|e| RblError::io(&p, e))?;
        if !meta.file_type().is_file() {
            return Err(RblError::format(
                &p,
                format!("is {}: rbl's lock file must be a regular file", crate::files::kind_of(meta.file_type())),
            ));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = crate::files::read_text_capped(&p, 64).unwrap_or_default();
                let holder = holder.trim();
                let who = if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
                return Err(RblError::Busy { path: self.path.clone(), holder: who });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(RblError::io(&p, e)),
        }
        use std::io::{Seek, Write};
        let pid = std::process::id().to_string();
        file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(pid.as_bytes())).map_err(|e| RblError::io(&p, e))?;
        Ok(RunLock { _file: file })
    }

    /// The entries of the folder that rbl did not write, as paths relative to it (sorted):
    /// what `--force` refuses to remove. See [`written_by_rbl`] for what counts as rbl's.
    pub fn foreign_entries(&self) -> Result<Vec<PathBuf>> {
        let mut foreign = Vec::new();
        foreign_under(&self.path, Path::new(""), &mut foreign)?;
        foreign.sort();
        Ok(foreign)
    }

    /// Refuses (`--force`) when the folder holds anything rbl did not write, listing it.
    pub fn check_removable(&self) -> Result<()> {
        let foreign = self.foreign_entries()?;
        if foreign.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = foreign.iter().take(8).map(|p| p.display().to_string()).collect();
        let more = if foreign.len() > 8 { format!(" and {} more", foreign.len() - 8) } else { String::new() };
        Err(RblError::Config {
            origin: "--force".into(),
            msg: format!(
                "{} holds files rbl did not write ({}{more}); nothing was removed: move them, or use another --out",
                self.path.display(),
                shown.join(", ")
            ),
        })
    }

    /// Removes a run (`rbl train --force`) while its caller holds the folder's lock: every
    /// entry rbl wrote, except the lock file itself (so no other writer can slip in between
    /// the removal and the new run). A folder holding anything else is refused, listing what it
    /// found, and left untouched.
    pub fn remove_run(&self, _held: &RunLock) -> Result<()> {
        self.check_removable()?;
        let entries = std::fs::read_dir(&self.path).map_err(|e| RblError::io(&self.path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| RblError::io(&self.path, e))?;
            if entry.file_name() == ".lock" {
                continue;
            }
            let p = entry.path();
            let is_dir = entry.file_type().map_err(|e| RblError::io(&p, e))?.is_dir();
            let removed = if is_dir { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            removed.map_err(|e| RblError::io(&p, e))?;
        }
        Ok(())
    }
}

/// The names rbl writes at the top of a run folder (files).
const TOP_FILES: [&str; 9] = [
    "config.toml",
    "epochs.jsonl",
    "metrics.json",
    "confusion.json",
    "latest",
    "report.html",
    "model.safetensors",
    "dataset.json",
    ".lock",
];

/// The two-stage result files (`rbl stage2`, `rbl posthoc`), one per method; the tests of
/// `train::stage2` and `train::posthoc` check that every method's file is listed.
pub const TWO_STAGE_FILES: [&str; 5] =
    ["stage2-crt.json", "stage2-lws.json", "stage2-marc.json", "posthoc-logit-adjust.json", "posthoc-tau-norm.json"];

/// The files of a checkpoint folder (`train::checkpoint`).
const CHECKPOINT_FILES: [&str; 5] = ["model.bpk", "optimizer.bpk", "state.json", "state.crc32", "rank-stats.bin"];

/// The figures `rbl plot` draws into `plots/` (each as .png and .svg).
const PLOT_STEMS: [&str; 4] = ["curves", "neural_collapse", "per_class", "confusion"];

/// `name` is `prefix` followed by exactly `n` ASCII digits and then `rest`.
fn digits_between(name: &str, prefix: &str, n: usize, rest: &str) -> bool {
    name.strip_prefix(prefix).and_then(|r| r.strip_suffix(rest)).is_some_and(|d| d.len() == n && d.bytes().all(|b| b.is_ascii_digit()))
}

/// `name` is a temporary file of [`write_atomic`] for `target`: `.{target}.tmp-{pid}`.
fn atomic_tmp_of(name: &str, target: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|r| r.strip_prefix(target))
        .and_then(|r| r.strip_prefix(".tmp-"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// A checkpoint folder's name: `checkpoint-NNNNNN` or `checkpoint-NNNNNN-step-SSSSSS`.
pub fn is_checkpoint_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("checkpoint-") else { return false };
    let six = |d: &str| d.len() == 6 && d.bytes().all(|b| b.is_ascii_digit());
    match rest.split_once("-step-") {
        Some((epoch, step)) => six(epoch) && six(step),
        None => six(rest),
    }
}

/// Whether `rel` (a path inside a run folder, `dir` telling whether it is a real folder) is
/// something rbl writes there, matched exactly: its fixed files; checkpoint folders
/// (`checkpoint-NNNNNN[-step-SSSSSS]`, `best/`, and their temporary forms) holding only a
/// checkpoint's files; `plots/`, `features/` and `tensorboard/` holding only the figures and
/// event files rbl names so; the two-stage results of known methods; and the temporary files
/// of rbl's atomic writes for any of these. A symbolic link is never rbl's.
pub fn written_by_rbl(rel: &Path, dir: bool) -> bool {
    let parts: Vec<&str> = match rel.iter().map(|c| c.to_str()).collect::<Option<Vec<_>>>() {
        Some(p) => p,
        None => return false,
    };
    let is_checkpoint_folder = |n: &str| {
        is_checkpoint_name(n)
            || n == "best"
            || matches!(n, ".best.tmp" | ".best.old")
            || n.strip_prefix('.').and_then(|r| r.strip_suffix(".tmp")).is_some_and(is_checkpoint_name)
    };
    match parts.as_slice() {
        [top] if dir => is_checkpoint_folder(top) || matches!(*top, "plots" | "features" | "tensorboard"),
        [top] => {
            TOP_FILES.contains(top)
                || TWO_STAGE_FILES.contains(top)
                || TOP_FILES.iter().chain(&TWO_STAGE_FILES).any(|t| atomic_tmp_of(top, t))
        }
        [folder, file] if !dir => {
            if is_checkpoint_folder(folder) {
                CHECKPOINT_FILES.contains(file) || CHECKPOINT_FILES.iter().any(|t| atomic_tmp_of(file, t))
            } else if *folder == "plots" {
                PLOT_STEMS.iter().any(|stem| {
                    ["png", "svg"].iter().any(|ext| {
                        let name = format!("{stem}.{ext}");
                        *file == name || atomic_tmp_of(file, &name)
                    }) || *file == format!(".{stem}.tmp.png")
                })
            } else if *folder == "features" {
                let picture = |n: &str| digits_between(n, "epoch_", 3, ".png") || digits_between(n, "epoch_", 3, ".svg");
                picture(file)
                    || digits_between(file, ".epoch_", 3, ".tmp.png")
                    || file
                        .strip_prefix('.')
                        .and_then(|r| r.rsplit_once(".tmp-"))
                        .is_some_and(|(target, pid)| picture(target) && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            } else if *folder == "tensorboard" {
                file.strip_prefix("events.out.tfevents.")
                    .and_then(|r| r.split_once(".rbl."))
                    .is_some_and(|(t, pid)| [t, pid].iter().all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())))
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Collects into `out` the entries under `dir` (at `rel` in the run folder) that rbl did not
/// write; a folder of rbl's is searched, anything else is listed whole.
fn foreign_under(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| RblError::io(dir, e))? {
        let entry = entry.map_err(|e| RblError::io(dir, e))?;
        let name = rel.join(entry.file_name());
        let file_type = entry.file_type().map_err(|e| RblError::io(entry.path(), e))?;
        if file_type.is_symlink() || !written_by_rbl(&name, file_type.is_dir()) {
            out.push(name);
        } else if file_type.is_dir() {
            foreign_under(&entry.path(), &name, out)?;
        }
    }
    Ok(())
}

/// An exclusive lock on a run folder ([`RunDir::lock`]), released when dropped or when the
/// process ends.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// Writes `value` as pretty JSON to `path` (atomically) and returns the text.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<String> {
    let text = serde_json::to_string_pretty(value).expect("results serialise");
    write_atomic(path, text.as_bytes())?;
    Ok(text)
}

/// A JSON result file of the run folder (at most 64 MiB), or `None` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = crate::error::read_text_capped(path, 64 << 20)?;
    serde_json::from_str(&text).map(Some).map_err(|e| RblError::format(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_files_of_a_run_folder() {
        let run = RunDir::new("runs/x");
        assert_eq!(run.config(), Path::new("runs/x/config.toml"));
        assert_eq!(run.metrics(), Path::new("runs/x/metrics.json"));
        assert_eq!(run.epoch_log(), Path::new("runs/x/epochs.jsonl"));
        assert_eq!(run.feature_picture_stem(8), Path::new("runs/x/features/epoch_008"));
        assert_eq!(run.two_stage_result("stage2", "crt"), Path::new("runs/x/stage2-crt.json"));
        assert_eq!(RunDir::of_checkpoint(Path::new("runs/x/checkpoint-000003")), run);
    }

    #[test]
    fn metrics_are_absent_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert!(run.read_metrics().unwrap().is_none() && !run.is_finished());
        std::fs::write(run.metrics(), "{ not json").unwrap();
        let err = run.read_metrics().unwrap_err().to_string();
        assert!(err.contains("metrics.json"), "{err}");
    }

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    /// Issue #36 row 12: `--force` once deleted anything whose name began like rbl's; now only
    /// exact names of rbl's files count, and everything else is listed and kept.
    #[test]
    fn only_rbl_files_are_removable_matched_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "config.toml",
            "epochs.jsonl",
            "metrics.json",
            "latest",
            "dataset.json",
            "report.html",
            "model.safetensors",
            ".lock",
            ".metrics.json.tmp-1234",
            "stage2-lws.json",
            "posthoc-tau-norm.json",
            "checkpoint-000002/model.bpk",
            "checkpoint-000002/state.crc32",
            "checkpoint-000003-step-000010/optimizer.bpk",
            ".checkpoint-000004.tmp/.state.json.tmp-77",
            "best/state.json",
            "plots/curves.png",
            "plots/per_class.svg",
            "plots/.curves.tmp.png",
            "features/epoch_008.png",
            "features/.epoch_008.svg.tmp-9",
            "tensorboard/events.out.tfevents.1764600000.rbl.4242",
        ] {
            touch(r, f);
        }
        let run = RunDir::new(r);
        assert_eq!(run.foreign_entries().unwrap(), Vec::<PathBuf>::new());
        let planted = [
            "checkpoint-my-backup/notes.txt",
            "posthoc-my-analysis.json",
            "stage2-hand-tuned.json",
            "best/my_model.pt",
            ".thesis.tmp.md",
            "plots/figure1.png",
            "features/epoch_8.png",
            "tensorboard/events.out.tfevents.mine",
            "checkpoint-000002/extra.bin",
            "notes",
        ];
        for f in planted {
            touch(r, f);
        }
        std::os::unix::fs::symlink(r.join("best"), r.join("checkpoint-000009")).unwrap();
        let foreign: Vec<String> = run.foreign_entries().unwrap().iter().map(|p| p.display().to_string()).collect();
        let mut want: Vec<String> = planted.iter().map(|s| s.to_string()).collect();
        want.push("checkpoint-000009".into());
        want[0] = "checkpoint-my-backup".into();
        want.sort();
        assert_eq!(foreign, want);
        let lock = run.lock().unwrap();
        let e = run.remove_run(&lock).unwrap_err().to_string();
        assert!(e.contains("nothing was removed") && e.contains(".thesis.tmp.md") && e.contains("and 3 more"), "{e}");
        assert!(r.join("config.toml").is_file() && r.join("best/my_model.pt").is_file());
        // Without them, rbl's files go and the held lock file stays.
        for f in planted {
            let p = r.join(f);
            let _ = std::fs::remove_file(&p);
        }
        std::fs::remove_dir(r.join("checkpoint-my-backup")).unwrap();
        std::fs::remove_file(r.join("checkpoint-000009")).unwrap();
        run.remove_run(&lock).unwrap();
        let left: Vec<_> = std::fs::read_dir(r).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from(".lock")]);
    }

    /// Issue #36 row 13: a `.lock` replaced by a link to a file outside is refused, and the
    /// target is not touched (it used to be truncated and get the PID).
    #[test]
    fn a_lock_file_that_is_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("precious.txt");
        std::fs::write(&outside, "keep me").unwrap();
        let run = RunDir::new(dir.path().join("run"));
        std::fs::create_dir(run.path()).unwrap();
        std::os::unix::fs::symlink(&outside, run.lock_file()).unwrap();
        let e = run.lock().unwrap_err().to_string();
        assert!(e.contains(".lock") && e.contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    }
}
