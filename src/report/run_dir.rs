//! The layout of a run folder, in one place: every file a run writes and every command reads
//! is named here, so a new output gets its name once and a rename touches one line.
//!
//! ```text
//! RUN_DIR/
//!   config.toml               the resolved config (a run is reproducible from its folder)
//!   epochs.jsonl              one EpochRecord per finished epoch
//!   metrics.json              FinalMetrics, written when the last epoch is done
//!   latest                    the name of the newest complete checkpoint folder
//!   checkpoint-NNNNNN[-step-SSSSSS]/   see train::checkpoint
//!   plots/  features/  report.html     pictures and the HTML page
//!   stage2-<method>.json  posthoc-<method>.json   two-stage results
//! ```

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

    /// The epoch log (`epochs.jsonl`), one record per finished epoch.
    pub fn read_epoch_log(&self) -> Result<Vec<EpochRecord>> {
        let p = self.epoch_log();
        let text = std::fs::read_to_string(&p).map_err(|e| RblError::io(&p, e))?;
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

    /// Takes the folder's exclusive lock (creating the folder), or refuses naming the process
    /// that holds it. The operating system releases it when the process ends, however it ends;
    /// readers (`rbl eval`, `rbl report`) do not take it.
    pub fn lock(&self) -> Result<RunLock> {
        std::fs::create_dir_all(&self.path).map_err(|e| RblError::io(&self.path, e))?;
        let p = self.lock_file();
        let mut file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&p).map_err(|e| RblError::io(&p, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&p).unwrap_or_default();
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

    /// Whether `name` (a direct entry of the folder) is something rbl writes there.
    pub fn is_rbl_entry(name: &str) -> bool {
        const FILES: [&str; 7] = ["config.toml", "epochs.jsonl", "metrics.json", "latest", "report.html", ".lock", "model.safetensors"];
        const FOLDERS: [&str; 4] = ["plots", "features", "tensorboard", "best"];
        let result = |prefix: &str| name.starts_with(prefix) && name.ends_with(".json");
        FILES.contains(&name)
            || FOLDERS.contains(&name)
            || name.starts_with("checkpoint-")
            // Checkpoints and files being written (`.checkpoint-NNNNNN.tmp`, `.metrics.json.tmp-PID`).
            || (name.starts_with('.') && name.contains(".tmp"))
            || result("stage2-")
            || result("posthoc-")
    }

    /// Removes a run (`rbl train --force`): every entry rbl wrote, and the folder once empty.
    /// A folder holding anything else is refused, listing what it found, and left untouched.
    pub fn remove_run(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.path).map_err(|e| RblError::io(&self.path, e))?;
        let mut ours = Vec::new();
        let mut foreign = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| RblError::io(&self.path, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if RunDir::is_rbl_entry(&name) { ours.push(entry.path()) } else { foreign.push(name) }
        }
        if !foreign.is_empty() {
            foreign.sort();
            let shown: Vec<&str> = foreign.iter().take(5).map(String::as_str).collect();
            let more = if foreign.len() > 5 { format!(" and {} more", foreign.len() - 5) } else { String::new() };
            return Err(RblError::Config {
                origin: "--force".into(),
                msg: format!(
                    "{} holds files rbl did not write ({}{more}); nothing was removed: move them, or use another --out",
                    self.path.display(),
                    shown.join(", ")
                ),
            });
        }
        for p in ours {
            let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            removed.map_err(|e| RblError::io(&p, e))?;
        }
        // Empty now, unless something appeared meanwhile: then the folder stays.
        let _ = std::fs::remove_dir(&self.path);
        Ok(())
    }
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
}
