//! The `[log]` section of a config: what a run writes for people watching it, beside the
//! epoch log every run keeps.

use serde::{Deserialize, Serialize};

/// Extra logs of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Write TensorBoard scalar event files into `runs/<name>/tensorboard/`
    /// (`tensorboard --logdir runs`).
    pub tensorboard: bool,
}

impl LogConfig {
    /// True for the defaults: the section is then left out of a run's `config.toml`, which
    /// stays byte-identical to one written before the section existed.
    pub fn is_default(&self) -> bool {
        *self == LogConfig::default()
    }
}
