//! Typed errors for everything a user can get wrong: files, configs, numbers.

use std::path::PathBuf;

/// Every way rbl can refuse to go on. Each variant names the file, key or step at fault,
/// because a training toolkit that says only "invalid data" costs its user an hour.
#[derive(Debug, thiserror::Error)]
pub enum RblError {
    /// A file could not be opened, read or written.
    #[error("{path}: {cause}{hint}", hint = io_hint(path, cause))]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What the operating system said; part of the message, not a separate cause, so that
        /// a chain printed with `{:#}` says it once.
        cause: std::io::Error,
    },
    /// A data file does not follow its format (bad magic, truncated, wrong sizes).
    #[error("{path}: {msg}")]
    Format {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A label is outside the class range the dataset declares.
    #[error("{path}: label {label} at record {index} is outside 0..{classes}")]
    LabelRange {
        /// The label file.
        path: PathBuf,
        /// The offending label (signed: a pickle can hold −1, which must not read as 0).
        label: i64,
        /// Its record index.
        index: usize,
        /// The number of classes.
        classes: usize,
    },
    /// The config file or an override is wrong.
    #[error("config {origin}: {msg}")]
    Config {
        /// The file or `--set` argument at fault.
        origin: String,
        /// What is wrong.
        msg: String,
    },
    /// A dataset as configured cannot be built (missing class, too few images, ...).
    #[error("dataset: {0}")]
    Dataset(String),
    /// Training diverged: a loss or weight became NaN or infinite.
    #[error(
        "training diverged at epoch {epoch}, step {step}: loss is {loss}. The last good checkpoint is kept; \
         try a lower lr (--set train.lr=...) or a longer warm-up (--set train.warmup_epochs=...)"
    )]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 0-based step within the epoch.
        step: usize,
        /// The loss value seen.
        loss: f32,
    },
    /// A checkpoint cannot be used.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The user interrupted the run (Ctrl-C / SIGTERM) during an epoch.
    #[error("interrupted during epoch {epoch}; saved {kept}: continue with rbl train --resume {run_dir}")]
    Interrupted {
        /// 1-based epoch that was cut short.
        epoch: usize,
        /// What the latest checkpoint holds, e.g. "epoch 1 and 37 steps of epoch 2".
        kept: String,
        /// The run folder.
        run_dir: String,
    },
    /// The user interrupted a command before it had written anything (e.g. while the data
    /// loaded): nothing to resume, nothing changed on disk.
    #[error("interrupted while {during}; nothing was written")]
    Stopped {
        /// What was going on.
        during: String,
    },
    /// Another process is writing the run folder.
    #[error("{path} is in use by {holder} (another rbl writing this run folder); wait for it, or use another --out")]
    Busy {
        /// The run folder.
        path: PathBuf,
        /// Who holds its lock.
        holder: String,
    },
    /// A model shape or option is impossible (e.g. an ETF with too few dimensions).
    #[error("model: {0}")]
    Model(String),
}

/// Reads a whole text file that should be at most `limit` bytes: a file larger than any
/// legitimate one (a wrong path, a corrupt disk), or one that is not a regular file (a FIFO,
/// `/dev/zero`), is refused before it is read into memory. See [`crate::files`].
pub fn read_text_capped(path: &std::path::Path, limit: u64) -> Result<String> {
    crate::files::read_text_capped(path, limit)
}

/// What a user can do about an OS error, after its message.
fn io_hint(path: &std::path::Path, cause: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match cause.kind() {
        ErrorKind::NotFound if path.is_relative() => {
            let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_else(|_| "?".into());
            format!(" (a relative path, looked for from {cwd})")
        }
        ErrorKind::PermissionDenied => " (check the permissions of the file and its folders, or choose another path)".into(),
        ErrorKind::IsADirectory => " (a folder where a file was expected)".into(),
        ErrorKind::NotADirectory => " (a file where a folder was expected)".into(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => " (the disk is full: free space, or write elsewhere)".into(),
        ErrorKind::ReadOnlyFilesystem => " (a read-only file system: choose a writable --out)".into(),
        _ => String::new(),
    }
}

/// Result with [`RblError`].
pub type Result<T> = std::result::Result<T, RblError>;

impl RblError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RblError::Io { path: path.into(), cause: source }
    }

    /// A format error for `path`.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        RblError::Format { path: path.into(), msg: msg.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_name_the_path_and_say_what_to_do() {
        let e = read_text_capped(std::path::Path::new("no/such/config.toml"), 10).unwrap_err().to_string();
        assert!(e.starts_with("no/such/config.toml: ") && e.contains("a relative path, looked for from /"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let e = RblError::io(dir.path(), std::io::Error::from(std::io::ErrorKind::IsADirectory)).to_string();
        assert!(e.contains("a folder where a file was expected"), "{e}");
    }
}
