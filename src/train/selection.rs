//! Model selection without the test set (`eval.select`): the reported model is the last
//! epoch's, or the epoch best on the balanced validation split, whose checkpoint is kept in
//! `RUN_DIR/best/` and evaluated on the test set once, at the end.
//!
//! The epoch best on the *test* set (what the released code reports) is never a selection
//! rule here; `rbl table --select best-test` shows it from the epoch log, labelled as the
//! paper's optimistic protocol.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{RblError, Result};
use crate::report::EpochRecord;
use crate::report::run_dir::RunDir;

/// Which epoch a run reports (`eval.select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// The last epoch (no selection).
    #[default]
    Last,
    /// The evaluated epoch with the highest validation top-1 (the run's prediction rule: logit
    /// adjusted at `eval.tau`); the earliest on a tie.
    Val,
}

impl Selection {
    /// True for the default (left out of a run's config.toml).
    pub fn is_last(&self) -> bool {
        *self == Selection::Last
    }
}

/// The 1-based epoch with the best validation score in `history`, if any epoch has one.
pub fn best_val_epoch(history: &[EpochRecord]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for r in history {
        if let Some(v) = r.val_acc_adjusted
            && best.is_none_or(|(_, b)| v > b)
        {
            best = Some((r.epoch, v));
        }
    }
    best.map(|(e, _)| e)
}

/// The epoch whose checkpoint `RUN_DIR/best/` holds, read from its state (None without one).
pub fn kept_best_epoch(run_dir: &RunDir) -> Result<Option<usize>> {
    let dir = run_dir.best();
    if !dir.join("state.json").is_file() {
        return Ok(None);
    }
    let text = crate::error::read_text_capped(&dir.join("state.json"), 64 << 20)?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| RblError::format(dir.join("state.json"), e.to_string()))?;
    Ok(v["epoch"].as_u64().map(|e| e as usize))
}

/// Makes `RUN_DIR/best/` a copy of `checkpoint` (hard links where the file system has them),
/// replacing the old one atomically: written as `.best.tmp`, then renamed.
pub fn keep_as_best(run_dir: &RunDir, checkpoint: &Path) -> Result<()> {
    let tmp = run_dir.path().join(".best.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| RblError::io(&tmp, e))?;
    let entries = std::fs::read_dir(checkpoint).map_err(|e| RblError::io(checkpoint, e))?;
    for entry in entries {
        let from = entry.map_err(|e| RblError::io(checkpoint, e))?.path();
        let to = tmp.join(from.file_name().expect("a file in the checkpoint"));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(|e| RblError::io(&to, e))?;
        }
    }
    let best = run_dir.best();
    let old = run_dir.path().join(".best.old");
    let _ = std::fs::remove_dir_all(&old);
    if best.exists() {
        std::fs::rename(&best, &old).map_err(|e| RblError::io(&best, e))?;
    }
    std::fs::rename(&tmp, &best).map_err(|e| RblError::io(&best, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(epoch: usize, val: Option<f64>) -> EpochRecord {
        EpochRecord { val_acc_adjusted: val, ..EpochRecord::bare(epoch) }
    }

    #[test]
    fn the_best_validation_epoch_is_the_earliest_maximum() {
        assert_eq!(best_val_epoch(&[rec(1, None), rec(2, None)]), None);
        let h = [rec(1, Some(50.0)), rec(2, None), rec(3, Some(61.0)), rec(4, Some(61.0)), rec(5, Some(60.0))];
        assert_eq!(best_val_epoch(&h), Some(3));
    }

    #[test]
    fn keeping_a_checkpoint_replaces_the_old_best() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        for (epoch, name) in [(2, "checkpoint-000002"), (5, "checkpoint-000005")] {
            let ck = dir.path().join(name);
            std::fs::create_dir_all(&ck).unwrap();
            std::fs::write(ck.join("state.json"), format!("{{\"epoch\": {epoch}}}")).unwrap();
            std::fs::write(ck.join("model.bpk"), [epoch as u8; 8]).unwrap();
            keep_as_best(&run, &ck).unwrap();
            assert_eq!(kept_best_epoch(&run).unwrap(), Some(epoch));
        }
        // The best copy outlives the checkpoint it came from.
        std::fs::remove_dir_all(dir.path().join("checkpoint-000005")).unwrap();
        assert_eq!(std::fs::read(run.best().join("model.bpk")).unwrap(), vec![5u8; 8]);
        assert!(!dir.path().join(".best.tmp").exists() && !dir.path().join(".best.old").exists());
    }
}
