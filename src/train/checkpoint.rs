//! Checkpoints: model weights, optimiser state, the epoch log and the config they belong to.
//!
//! A checkpoint is a folder `checkpoint-NNNNNN` written under a temporary name and renamed
//! into place; the file `latest` (itself replaced atomically) names the newest complete one.
//! Every payload carries a CRC-32 in `state.json`, so a corrupt or foreign checkpoint is
//! refused with a message instead of loading garbage.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::error::{RblError, Result};
use crate::network::Network;
use crate::report::run_dir::{RunDir, is_checkpoint_name};
use crate::report::{EpochRecord, write_atomic};

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Epochs completed.
    pub epoch: usize,
    /// The resolved config of the run, as TOML.
    pub config_toml: String,
    /// The epoch log up to `epoch`.
    pub history: Vec<EpochRecord>,
    /// Training wall-clock seconds so far.
    pub wall_seconds: f64,
    /// CRC-32 of `model.bpk`.
    pub model_crc32: u32,
    /// CRC-32 of `optimizer.bpk`.
    pub optimizer_crc32: u32,
    /// CRC-32 of the weight values alone (the record files also hold random parameter ids,
    /// so two identical models give different files): equal digests mean bitwise-equal weights.
    #[serde(default)]
    pub weights_crc32: u32,
    /// Progress into epoch `epoch + 1` when the checkpoint was taken mid-epoch (every
    /// `train.checkpoint_every_steps` steps, or on Ctrl-C); resuming skips those batches.
    #[serde(default)]
    pub partial: Option<PartialEpoch>,
    /// Ranks the run was trained on, when more than one (`mpirun -np N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranks: Option<usize>,
    /// CRC-32 of `rank-stats.bin`, the BatchNorm running statistics of every rank, which a
    /// mid-epoch checkpoint of a run over several ranks keeps so that resuming under the same
    /// number of ranks continues each rank exactly ([`crate::distributed::batch_norm`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_stats_crc32: Option<u32>,
}

/// The file of a mid-epoch checkpoint of a multi-rank run holding every rank's BatchNorm
/// running statistics (little-endian f32, rank after rank).
pub const RANK_STATS: &str = "rank-stats.bin";

/// How far a checkpoint got into an unfinished epoch, with the running figures that epoch's
/// log line is made of, so a resumed epoch reports what the uninterrupted one would.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Steps (batches) done.
    pub steps: usize,
    /// Sum of batch loss × batch size.
    pub loss_sum: f64,
    /// Correct predictions.
    pub hits: usize,
    /// Images seen.
    pub images: usize,
    /// Training seconds so far.
    pub train_seconds: f64,
    /// Seconds spent waiting for the loader so far.
    pub loader_wait: f64,
}

impl CheckpointState {
    /// The state of a run after `epoch` complete epochs (and `partial` progress into the next);
    /// the checksums are filled in by [`save_checkpoint`].
    pub fn new(epoch: usize, cfg: &ExperimentConfig, history: &[EpochRecord], wall_seconds: f64, partial: Option<PartialEpoch>) -> Self {
        CheckpointState {
            epoch,
            config_toml: cfg.to_toml_string(),
            history: history.to_vec(),
            wall_seconds,
            model_crc32: 0,
            optimizer_crc32: 0,
            weights_crc32: 0,
            partial,
            ranks: None,
            rank_stats_crc32: None,
        }
    }

    /// What the checkpoint holds, in words, for messages.
    pub fn describe(&self) -> String {
        match &self.partial {
            Some(p) => format!("epoch {} and {} steps of epoch {}", self.epoch, p.steps, self.epoch + 1),
            None => format!("epoch {}", self.epoch),
        }
    }
}

/// The checksum each checkpoint file carries in `state.json` (CRC-32, IEEE).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// CRC-32 over the values of every float parameter and running statistic, in module order.
pub fn weights_digest(net: &Network) -> u32 {
    struct Digest(crc32fast::Hasher);
    impl burn::module::ModuleVisitor for Digest {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<D>>) {
            self.0.update(crate::transfer::read(param.val()).as_bytes());
        }
    }
    let mut d = Digest(crc32fast::Hasher::new());
    net.visit(&mut d);
    d.0.finalize()
}

/// A checkpoint read back from disk.
pub struct LoadedCheckpoint {
    /// Its folder.
    pub dir: PathBuf,
    /// Its state.
    pub state: CheckpointState,
    /// The config it belongs to.
    pub config: ExperimentConfig,
    /// The model weights.
    pub model: ModuleRecord,
    /// The optimiser state bytes.
    pub optimizer: Bytes,
    /// Every rank's BatchNorm running statistics (multi-rank mid-epoch checkpoints).
    pub rank_stats: Option<Vec<f32>>,
}

/// The file beside `state.json` holding its CRC-32 (decimal): with it every file of a
/// checkpoint is covered by a checksum. Checkpoints written before it existed have none.
const STATE_CRC: &str = "state.crc32";

/// Writes a checkpoint of `net` and `optim` after `state.epoch` epochs into `run_dir`, points
/// `latest` at it, and keeps the newest `keep` checkpoints (at least this one), so that a
/// damaged newest checkpoint costs one interval, not the run.
pub fn save_checkpoint(run_dir: &Path, net: &Network, optim: &ModuleOptimizer, state: CheckpointState, keep: usize) -> Result<PathBuf> {
    save_checkpoint_with(run_dir, net, optim, state, keep, None)
}

/// [`save_checkpoint`], with every rank's BatchNorm statistics (`rank_stats`, a multi-rank
/// run's mid-epoch checkpoint) written beside the model under their own checksum.
pub fn save_checkpoint_with(
    run_dir: &Path,
    net: &Network,
    optim: &ModuleOptimizer,
    mut state: CheckpointState,
    keep: usize,
    rank_stats: Option<&[u8]>,
) -> Result<PathBuf> {
    let name = match &state.partial {
        Some(p) => format!("checkpoint-{:06}-step-{:06}", state.epoch, p.steps),
        None => format!("checkpoint-{:06}", state.epoch),
    };
    let final_dir = run_dir.join(&name);
    let tmp_dir = run_dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp_dir);
    std::fs::create_dir_all(&tmp_dir).map_err(|e| RblError::io(&tmp_dir, e))?;
    // A failed write (a full disk) leaves no half-written folder behind.
    let written = (|| {
        if let Some(bytes) = rank_stats {
            write_atomic(&tmp_dir.join(RANK_STATS), bytes)?;
            state.rank_stats_crc32 = Some(crc32(bytes));
        }
        write_checkpoint_files(&tmp_dir, net, optim, &mut state)
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&tmp_dir);
    }
    written?;
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp_dir, &final_dir).map_err(|e| RblError::io(&final_dir, e))?;
    write_atomic(&RunDir::new(run_dir).latest(), name.as_bytes())?;
    // Older checkpoints beyond the newest `keep` are no longer needed once `latest` names the
    // new one.
    for old in checkpoints_newest_first(run_dir).into_iter().skip(keep.max(1)) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(final_dir)
}

/// The files of a checkpoint into `tmp_dir`, with their checksums filled into `state`.
fn write_checkpoint_files(tmp_dir: &Path, net: &Network, optim: &ModuleOptimizer, state: &mut CheckpointState) -> Result<()> {
    // burn keeps BatchNorm's latest running-statistics update pending (per thread) until the
    // next forward or `valid()` reads it, and records and visitors see the value before it: a
    // mid-epoch checkpoint would lose one update. `valid()` folds it into the shared state (the
    // same fold the next training step would do, so training is unchanged).
    let _ = net.valid();
    let model =
        net.clone().into_record().into_bytes().map_err(|e| RblError::Checkpoint { path: tmp_dir.to_path_buf(), msg: e.to_string() })?;
    let opt = optim.into_bytes().map_err(|e| RblError::Checkpoint { path: tmp_dir.to_path_buf(), msg: e.to_string() })?;
    state.model_crc32 = crc32(&model);
    state.optimizer_crc32 = crc32(&opt);
    state.weights_crc32 = weights_digest(net);
    write_atomic(&tmp_dir.join("model.bpk"), &model)?;
    write_atomic(&tmp_dir.join("optimizer.bpk"), &opt)?;
    let state_text = serde_json::to_string_pretty(&state).expect("state serialises");
    write_atomic(&tmp_dir.join("state.json"), state_text.as_bytes())?;
    write_atomic(&tmp_dir.join(STATE_CRC), crc32(state_text.as_bytes()).to_string().as_bytes())?;
    Ok(())
}

/// The checkpoint folders of `run_dir`, newest first (their names sort in training order:
/// `checkpoint-000003` < `checkpoint-000003-step-000010` < `checkpoint-000004`). Only real
/// folders with a checkpoint's exact name count: a symbolic link (say, to another run's
/// checkpoint) or `checkpoint-my-backup/` is not one of the run's checkpoints.
pub fn checkpoints_newest_first(run_dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<String> = match std::fs::read_dir(run_dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_checkpoint_name(n))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names.into_iter().rev().map(|n| run_dir.join(n)).collect()
}

/// The checkpoint folder `latest` names in `run_dir`, if any. `latest` must be a small regular
/// file naming a checkpoint folder of this run (`checkpoint-NNNNNN[-step-SSSSSS]`) that is a
/// real folder, not a link: anything else is refused, naming it.
pub fn latest_checkpoint(run_dir: &Path) -> Result<Option<PathBuf>> {
    let p = RunDir::new(run_dir).latest();
    if std::fs::symlink_metadata(&p).is_err() {
        return Ok(None);
    }
    if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(RblError::format(&p, "is a symbolic link: `latest` must be the file rbl wrote, naming a checkpoint of this run"));
    }
    let text = crate::files::read_text_capped(&p, 64)?;
    let name = text.trim();
    if !is_checkpoint_name(name) {
        return Err(RblError::format(&p, format!("names {name:?}, not a checkpoint folder (checkpoint-NNNNNN[-step-SSSSSS])")));
    }
    let dir = run_dir.join(name);
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.file_type().is_dir()) {
        return Err(RblError::Checkpoint {
            path: dir,
            msg: "is not a real folder (a link?): a run's checkpoints are its own folders".into(),
        });
    }
    Ok(Some(dir))
}

/// Resolves a user-given path: a checkpoint folder, or a run folder (its latest checkpoint).
/// (A checkpoint folder named directly may be anywhere; one found from a run folder is one of
/// its own, see [`latest_checkpoint`].)
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.join("state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    latest_checkpoint(path)?
        .or_else(|| checkpoints_newest_first(path).into_iter().next())
        .ok_or_else(|| RblError::Checkpoint { path: path.into(), msg: "no checkpoint here (no state.json, no 'latest')".into() })
}

/// Reads and verifies a checkpoint folder.
pub fn load_checkpoint(dir: &Path) -> Result<LoadedCheckpoint> {
    let bad = |msg: String| RblError::Checkpoint { path: dir.into(), msg };
    let state_path = dir.join("state.json");
    let text = crate::error::read_text_capped(&state_path, 64 << 20)?;
    let crc_path = dir.join(STATE_CRC);
    if crc_path.exists() {
        let want = crate::error::read_text_capped(&crc_path, 64)?;
        if want.trim().parse::<u32>().ok() != Some(crc32(text.as_bytes())) {
            return Err(bad("state.json fails its checksum: the file was changed or is corrupt".into()));
        }
    }
    let state: CheckpointState = serde_json::from_str(&text).map_err(|e| bad(format!("state.json is corrupt: {e}")))?;
    // A checkpoint folder holds the position its name says (a folder copied or linked under
    // another checkpoint's name would resume the run from the wrong place).
    if let Some(name) = dir.file_name().and_then(|n| n.to_str()).filter(|n| is_checkpoint_name(n)) {
        let want = match &state.partial {
            Some(p) => format!("checkpoint-{:06}-step-{:06}", state.epoch, p.steps),
            None => format!("checkpoint-{:06}", state.epoch),
        };
        if name != want {
            return Err(bad(format!("state.json holds {}, which is {want}, not {name}", state.describe())));
        }
    }
    let read = |name: &str, crc: u32| -> Result<Vec<u8>> {
        let p = dir.join(name);
        // A record larger than any model rbl builds (ResNeXt-50 is ~100 MB) is not read.
        let bytes = crate::files::read_capped(&p, 8 << 30, "a model or optimizer record")?;
        if crc32(&bytes) != crc {
            return Err(bad(format!("{name} fails its checksum: the file is corrupt or from another checkpoint")));
        }
        Ok(bytes)
    };
    let model_bytes = read("model.bpk", state.model_crc32)?;
    let rank_stats = match state.rank_stats_crc32 {
        Some(crc) => {
            let bytes = read(RANK_STATS, crc)?;
            Some(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect())
        }
        None => None,
    };
    let optimizer = Bytes::from_bytes_vec(read("optimizer.bpk", state.optimizer_crc32)?);
    let model = ModuleRecord::from_bytes(Bytes::from_bytes_vec(model_bytes)).map_err(|e| bad(format!("model.bpk: {e}")))?;
    let config = ExperimentConfig::from_stored_toml_str(&state.config_toml, &format!("{}", state_path.display()), &[])?;
    check_state(&state, &config).map_err(|msg| bad(format!("state.json: {msg}")))?;
    Ok(LoadedCheckpoint { dir: dir.into(), state, config, model, optimizer, rank_stats })
}

/// The state's fields against each other and the config: a position inside the run, a log of
/// at most one record per finished epoch, numbered in order, finite running sums.
fn check_state(state: &CheckpointState, cfg: &ExperimentConfig) -> std::result::Result<(), String> {
    if state.epoch > cfg.train.epochs {
        return Err(format!("epoch {} is past the run's {} epochs", state.epoch, cfg.train.epochs));
    }
    if state.history.len() > state.epoch || state.history.iter().enumerate().any(|(i, r)| r.epoch != i + 1) {
        return Err(format!("the log holds {} records for {} finished epochs", state.history.len(), state.epoch));
    }
    if !(state.wall_seconds.is_finite() && state.wall_seconds >= 0.0) {
        return Err(format!("wall_seconds {} is not a duration", state.wall_seconds));
    }
    let fits = |p: &PartialEpoch| {
        state.epoch < cfg.train.epochs
            && p.steps > 0
            && p.images >= p.steps
            && p.hits <= p.images
            && p.loss_sum.is_finite()
            && p.loss_sum >= 0.0
    };
    if let Some(p) = state.partial.as_ref().filter(|p| !fits(p)) {
        return Err(format!("the partial epoch ({} steps, {} images, {} hits) does not fit the run", p.steps, p.images, p.hits));
    }
    Ok(())
}

/// Applies checkpoint weights to a network built from the same config.
pub fn apply_weights(net: Network, ckpt: &LoadedCheckpoint) -> Result<Network> {
    let record = ckpt.model.clone();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| net.load_record(record)))
        .map_err(|_| RblError::Checkpoint { path: ckpt.dir.clone(), msg: "weights do not fit the model this config builds".into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor};

    fn small_config() -> ExperimentConfig {
        let mut cfg = ExperimentConfig::default();
        cfg.model.widths = [4, 8, 16];
        cfg.model.feature_dim = 12;
        cfg
    }

    #[test]
    fn save_then_load_gives_identical_predictions() {
        let device = burn::tensor::Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_config();
        let _seeded = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(11);
        let net = Network::from_config(&cfg, 1, 10, &device).unwrap();
        // Perturb A so the rotation is not the identity and the weights differ from a fresh init.
        let x = Tensor::<4>::random([3, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        let optim = crate::train::optimizer::build_optimizer(&cfg.train);
        let state = CheckpointState {
            epoch: 4,
            config_toml: cfg.to_toml_string(),
            history: vec![],
            wall_seconds: 1.5,
            model_crc32: 0,
            optimizer_crc32: 0,
            weights_crc32: 0,
            partial: None,
            ranks: None,
            rank_stats_crc32: None,
        };
        let saved = save_checkpoint(dir.path(), &net, &optim, state, 2).unwrap();
        assert_eq!(latest_checkpoint(dir.path()).unwrap(), Some(saved.clone()));

        device.seed(999); // a different init, overwritten by the load
        let fresh = Network::from_config(&cfg, 1, 10, &device).unwrap();
        let ckpt = load_checkpoint(&saved).unwrap();
        assert_eq!(ckpt.state.epoch, 4);
        assert_eq!(ckpt.config, cfg);
        let loaded = apply_weights(fresh, &ckpt).unwrap();
        let a: Vec<f32> = net.valid().forward(x.clone()).into_data().try_to_vec().unwrap();
        let b: Vec<f32> = loaded.valid().forward(x).into_data().try_to_vec().unwrap();
        assert_eq!(a, b);
        assert_eq!(ckpt.state.weights_crc32, weights_digest(&loaded));
    }

    #[test]
    fn mismatched_or_corrupt_checkpoints_are_refused() {
        let device = burn::tensor::Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let cfg = small_config();
        let net = Network::from_config(&cfg, 1, 10, &device).unwrap();
        let optim = crate::train::optimizer::build_optimizer(&cfg.train);
        let state = CheckpointState {
            epoch: 1,
            config_toml: cfg.to_toml_string(),
            history: vec![],
            wall_seconds: 0.0,
            model_crc32: 0,
            optimizer_crc32: 0,
            weights_crc32: 0,
            partial: None,
            ranks: None,
            rank_stats_crc32: None,
        };
        let saved = save_checkpoint(dir.path(), &net, &optim, state, 2).unwrap();
        // Weights of another architecture do not fit.
        let mut other = cfg.clone();
        other.model.widths = [8, 16, 32];
        let ckpt = load_checkpoint(&saved).unwrap();
        let wrong = Network::from_config(&other, 1, 10, &device).unwrap();
        assert!(apply_weights(wrong, &ckpt).is_err());
        // A damaged state file is named.
        std::fs::write(saved.join("state.json"), "{").unwrap();
        let e = load_checkpoint(&saved).err().unwrap().to_string();
        assert!(e.contains("state.json"), "{e}");
    }

    /// Issue #36 row 23: `latest`, or a checkpoint folder, that is a link to another run's
    /// checkpoint is refused (it was used); a checkpoint folder must hold the epoch its name says.
    #[test]
    fn checkpoints_are_the_runs_own_real_folders() {
        let device = burn::tensor::Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let (run, other) = (dir.path().join("run"), dir.path().join("other"));
        std::fs::create_dir_all(&run).unwrap();
        let cfg = small_config();
        let _seeded = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(3);
        let net = Network::from_config(&cfg, 1, 10, &device).unwrap();
        let optim = crate::train::optimizer::build_optimizer(&cfg.train);
        let state = |epoch| CheckpointState::new(epoch, &cfg, &[], 0.0, None);
        let theirs = save_checkpoint(&other, &net, &optim, state(5), 3).unwrap();
        save_checkpoint(&run, &net, &optim, state(1), 3).unwrap();
        std::os::unix::fs::symlink(&theirs, run.join("checkpoint-000005")).unwrap();
        assert_eq!(checkpoints_newest_first(&run), vec![run.join("checkpoint-000001")], "the link is not one of the run's");
        std::fs::write(run.join("latest"), "checkpoint-000005").unwrap();
        let e = latest_checkpoint(&run).unwrap_err().to_string();
        assert!(e.contains("checkpoint-000005") && e.contains("not a real folder"), "{e}");
        std::fs::write(run.join("latest"), "../other/checkpoint-000005").unwrap();
        assert!(latest_checkpoint(&run).unwrap_err().to_string().contains("not a checkpoint folder"));
        // A checkpoint copied under another epoch's name.
        std::fs::remove_file(run.join("checkpoint-000005")).unwrap();
        crate::train::selection::keep_as_best(&crate::report::run_dir::RunDir::new(&run), &theirs).unwrap();
        std::fs::rename(run.join("best"), run.join("checkpoint-000002")).unwrap();
        let e = load_checkpoint(&run.join("checkpoint-000002")).err().unwrap().to_string();
        assert!(e.contains("checkpoint-000005, not checkpoint-000002"), "{e}");
    }
}
