//! The experiment config: one TOML file per experiment, with `--set key=value` overrides.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and the resolved
//! config is written into every run folder so a run can be reproduced from its folder alone.

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::contrastive::{ContrastiveConfig, ContrastiveKind};
pub use crate::data::config::{Augment, BadImages, DataConfig, DatasetKind};
use crate::error::{RblError, Result};
pub use crate::head::HeadKind;
pub use crate::loss::{LossConfig, LossKind};
pub use crate::model::backbone::BackboneKind;
pub use crate::model::config::ModelConfig;
pub use crate::report::config::LogConfig;
pub use crate::train::config::{EvalConfig, TrainConfig};
pub use crate::train::device::DeviceKind;
pub use crate::train::schedule::Schedule;

/// A whole experiment: data, model, training and evaluation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentConfig {
    /// Name of the experiment; the default run folder is `runs/<name>`.
    pub name: String,
    /// Row label in `rbl table` (default: head and loss, e.g. `rbl` or `linear+lade`).
    pub method: String,
    /// Seed for weights, frame, data order and augmentation.
    pub seed: u64,
    /// `cpu` (burn flex) or `gpu` (burn wgpu, needs the `gpu` feature).
    pub device: DeviceKind,
    /// Dataset and long-tail construction.
    pub data: DataConfig,
    /// Backbone and head.
    pub model: ModelConfig,
    /// Optimiser and schedule.
    pub train: TrainConfig,
    /// Training loss (of the classifier, beside a contrastive method's loss).
    pub loss: LossConfig,
    /// Supervised contrastive learning of the feature (KCL, TSC, HCL); off by default.
    #[serde(skip_serializing_if = "ContrastiveConfig::is_default")]
    pub contrastive: ContrastiveConfig,
    /// Evaluation options.
    pub eval: EvalConfig,
    /// Extra logs (TensorBoard).
    #[serde(skip_serializing_if = "LogConfig::is_default")]
    pub log: LogConfig,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        Self {
            name: "experiment".into(),
            method: String::new(),
            seed: 0,
            device: DeviceKind::Cpu,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            loss: LossConfig::default(),
            contrastive: ContrastiveConfig::default(),
            eval: EvalConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// Options added after runs had been written, with the value those runs were trained with. A
/// config a run stored without the key means that value, not today's default (which follows
/// the released code): `rbl train --resume` and every command that loads a run keep training
/// and evaluating it as it was trained.
pub const LEGACY_VALUES: [(&str, &str, &str); 4] = [
    ("model", "rotation_generator", "full"),
    ("model", "projection_init", "he"),
    ("train", "lr_at", "epoch_start"),
    ("loss", "focal", "softmax"),
];

impl ExperimentConfig {
    /// Reads a TOML file and applies `key=value` overrides (dotted keys, TOML values).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = crate::error::read_text_capped(path, 1 << 20)?;
        Self::from_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// Parses TOML text (named `origin` in errors) and applies overrides: a new experiment's
    /// config. An image-folder tree that does not set `data.imbalance_ratio` is used as it is
    /// (ratio 1: a user's own data is usually long-tailed already).
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let value: toml::Value = toml::from_str(text).map_err(|e| RblError::Config { origin: origin.into(), msg: e.to_string() })?;
        let mut value = value;
        for ov in overrides {
            apply_override(&mut value, ov)?;
        }
        let data = value.get("data");
        let image_folder = data.and_then(|d| d.get("dataset")).and_then(|d| d.as_str()) == Some("image-folder");
        let ratio_given = data.and_then(|d| d.get("imbalance_ratio")).is_some();
        let mut cfg = Self::from_value(value, origin, overrides)?;
        if image_folder && !ratio_given {
            cfg.data.imbalance_ratio = 1.0;
        }
        Ok(cfg)
    }

    /// Reads a config a run stored (its `config.toml`), as [`Self::load`] but with
    /// [`LEGACY_VALUES`] for the keys it lacks: the run was trained before they existed.
    pub fn load_stored(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = crate::error::read_text_capped(path, 1 << 20)?;
        Self::from_stored_toml_str(&text, &path.display().to_string(), overrides)
    }

    /// As [`Self::from_toml_str`], for a config a run stored (see [`Self::load_stored`]).
    pub fn from_stored_toml_str(text: &str, origin: &str, overrides: &[String]) -> Result<Self> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| RblError::Config { origin: origin.into(), msg: e.to_string() })?;
        if let Some(root) = value.as_table_mut() {
            for (section, key, legacy) in LEGACY_VALUES {
                let table = root.entry(section).or_insert_with(|| toml::Value::Table(Default::default()));
                if let Some(t) = table.as_table_mut() {
                    t.entry(key).or_insert_with(|| toml::Value::String(legacy.into()));
                }
            }
            // Runs on image files from before `data.augment` were all trained ImageNet style.
            if let Some(data) = root.get_mut("data").and_then(|d| d.as_table_mut()) {
                let files = matches!(data.get("dataset").and_then(|d| d.as_str()), Some("folder" | "image-folder"));
                if files {
                    data.entry("augment").or_insert_with(|| toml::Value::String("imagenet".into()));
                    data.entry("channels").or_insert_with(|| toml::Value::Integer(3));
                }
            }
        }
        for ov in overrides {
            apply_override(&mut value, ov)?;
        }
        Self::from_value(value, origin, overrides)
    }

    /// The config in `value`, with `overrides` already applied (an error at a key one of them
    /// set names that `--set`).
    fn from_value(value: toml::Value, origin: &str, overrides: &[String]) -> Result<Self> {
        // An error at a key a --set gave is blamed on that --set, not on the file.
        let blame = |msg: String| {
            let key = msg.split_once(": ").map(|(k, _)| k.to_string()).unwrap_or_default();
            let origin = override_of(overrides, &key).map(|o| format!("--set {o}")).unwrap_or_else(|| origin.to_string());
            RblError::Config { origin, msg }
        };
        let cfg: ExperimentConfig = value.try_into().map_err(|e: toml::de::Error| blame(key_first(&e.to_string())))?;
        let mut cfg = cfg;
        // TOML strings are not seen by a shell: `~/data` is expanded here.
        cfg.data.root = crate::data::defaults::expand_home(&cfg.data.root);
        for split in [&mut cfg.data.train_split, &mut cfg.data.test_split, &mut cfg.data.val_split, &mut cfg.model.init_weights] {
            *split = crate::data::defaults::expand_home(split);
        }
        cfg.validate(origin).map_err(|e| match e {
            RblError::Config { msg, .. } => blame(msg),
            other => other,
        })?;
        Ok(cfg)
    }

    /// The row label of `rbl table`.
    pub fn method_label(&self) -> String {
        if !self.method.is_empty() {
            return self.method.clone();
        }
        if self.loss.name == LossKind::Ce { self.model.head.to_string() } else { format!("{}+{}", self.model.head, self.loss.name) }
    }

    /// The same experiment with seed `seed`, named `<name>-s<seed>`: one of the runs
    /// `rbl table --seeds` averages over.
    pub fn for_seed(&self, seed: u64) -> ExperimentConfig {
        ExperimentConfig { seed, name: format!("{}-s{seed}", self.name), ..self.clone() }
    }

    /// The dotted keys whose values differ between two configs (for messages).
    pub fn differing_keys(&self, other: &ExperimentConfig) -> Vec<String> {
        fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        flatten(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, out);
                    }
                }
                other => out.push((prefix.to_string(), other.to_string())),
            }
        }
        let pairs = |c: &ExperimentConfig| {
            let mut out = Vec::new();
            flatten("", &toml::Value::try_from(c).expect("config serialises"), &mut out);
            out
        };
        let (a, b) = (pairs(self), pairs(other));
        let mut keys: Vec<String> =
            a.iter().filter(|p| !b.contains(p)).chain(b.iter().filter(|p| !a.contains(p))).map(|(k, _)| k.clone()).collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The loss scale a step uses: `train.loss_scale`, or the precision's default for 0.
    pub fn loss_scale(&self) -> f64 {
        if self.train.loss_scale > 0.0 { self.train.loss_scale } else { self.train.precision.default_loss_scale() }
    }

    /// The column label of `rbl table` for a run not trained yet: dataset and the configured
    /// imbalance ratio (an image-folder tree used as it is: "as is").
    pub fn column_label(&self) -> String {
        if self.data.dataset == DatasetKind::ImageFolder && self.data.imbalance_ratio == 1.0 {
            return format!("{} as is", self.dataset_label());
        }
        format!("{} IR{}", self.dataset_label(), self.data.imbalance_ratio)
    }

    /// The column label of `rbl table` for a run with these training counts: dataset and the
    /// ratio the counts actually have (largest / smallest class), so a tree used as it is
    /// shows its real imbalance.
    pub fn column_label_for_counts(&self, counts: &[usize]) -> String {
        let (max, min) = (counts.iter().max().copied().unwrap_or(0), counts.iter().min().copied().unwrap_or(0));
        if min == 0 {
            return self.column_label();
        }
        let ratio = max as f64 / min as f64;
        let shown = if (ratio - ratio.round()).abs() < 0.05 { format!("{}", ratio.round()) } else { format!("{ratio:.1}") };
        format!("{} IR{shown}", self.dataset_label())
    }

    /// The dataset, as a table names it: its kind, and for an image-folder tree or a split-file
    /// folder its folder's name.
    pub fn dataset_label(&self) -> String {
        match self.data.dataset {
            DatasetKind::ImageFolder | DatasetKind::Folder => {
                let name = Path::new(&self.data.root).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                format!("{} {name}", self.data.dataset)
            }
            _ => self.data.dataset.to_string(),
        }
    }

    /// The config as TOML text, as written into the run folder.
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }

    /// Every real-valued key with the values it admits (`data.imbalance_ratio`, `data.mean` and
    /// `data.std` have checks of their own).
    fn real_keys(&self) -> [(&'static str, f64, Bound); 17] {
        let (t, l) = (&self.train, &self.loss);
        [
            ("train.lr", t.lr, Bound::Positive),
            ("train.momentum", t.momentum, Bound::Fraction),
            ("train.weight_decay", t.weight_decay, Bound::NonNegative),
            ("train.warmup_start_factor", t.warmup_start_factor, Bound::NonNegative),
            ("train.mixup_alpha", t.mixup_alpha, Bound::NonNegative),
            ("train.lr_gamma", t.lr_gamma, Bound::Positive),
            ("train.loss_scale", t.loss_scale, Bound::NonNegative),
            ("loss.tau", l.tau, Bound::Tau),
            ("loss.beta", l.beta, Bound::Fraction),
            ("loss.gamma", l.gamma, Bound::NonNegative),
            ("loss.ldam_max_margin", l.ldam_max_margin, Bound::NonNegative),
            ("loss.ldam_scale", l.ldam_scale, Bound::Positive),
            ("loss.lade_alpha", l.lade_alpha, Bound::NonNegative),
            ("loss.lade_lambda", l.lade_lambda, Bound::NonNegative),
            ("loss.seesaw_p", l.seesaw_p, Bound::NonNegative),
            ("loss.seesaw_q", l.seesaw_q, Bound::NonNegative),
            ("eval.tau", self.eval.tau, Bound::Tau),
        ]
    }

    /// Roughly how many parameters the configured network has (convolutions, projection, head
    /// and rotation; ten classes for the head): enough to refuse a width typo before it
    /// allocates.
    fn parameter_estimate(&self) -> f64 {
        let [w0, w1, w2] = self.model.widths.map(|w| w as f64);
        let d = if self.model.feature_dim > 0 { self.model.feature_dim as f64 } else { w2 };
        let convs = match self.model.backbone {
            // Five basic blocks of two 3×3 convolutions per stage.
            BackboneKind::Resnet32 => 90.0 * (w0 * w0 + w1 * w1 + w2 * w2) + 9.0 * 3.0 * w0,
            BackboneKind::Resnet50 | BackboneKind::Resnext50_32x4d => 2.5e7,
        };
        convs + w2.max(2048.0) * d + d * d + 10.0 * d
    }

    /// Rejects values that parse but cannot work, naming the key.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let bad = |key: &str, msg: String| Err(RblError::Config { origin: origin.into(), msg: format!("{key}: {msg}") });
        if self.name.trim().is_empty()
            || self.name.trim() != self.name
            || self.name == "."
            || self.name == ".."
            || self.name.contains(['/', '\\'])
            || self.name.chars().any(char::is_control)
        {
            return bad(
                "name",
                format!("{:?} is not one folder name without leading or trailing spaces (the run folder is runs/<name>)", self.name),
            );
        }
        if !(1.0..=500.0).contains(&self.data.imbalance_ratio) {
            return bad("data.imbalance_ratio", format!("{} is outside 1 … 500", self.data.imbalance_ratio));
        }
        if self.data.dataset == DatasetKind::Folder {
            if self.data.train_split.is_empty() || self.data.test_split.is_empty() {
                return bad("data.train_split", "a folder dataset needs data.train_split and data.test_split".into());
            }
            if self.data.num_classes < 2 {
                return bad("data.num_classes", "a folder dataset needs its class count (at least 2)".into());
            }
            if self.data.val_per_class > 0 {
                return bad("data.val_per_class", "folder datasets bring their own validation split: use data.val_split".into());
            }
        }
        let files = matches!(self.data.dataset, DatasetKind::Folder | DatasetKind::ImageFolder);
        if files && (self.data.image_size != 0 && !(8..=4096).contains(&self.data.image_size)) {
            return bad("data.image_size", format!("{} is not 0 (from the data) or 8 … 4096", self.data.image_size));
        }
        if self.data.workers == 0 {
            return bad("data.workers", "must be at least 1".into());
        }
        if !matches!(self.data.channels, 0 | 1 | 3) {
            return bad("data.channels", format!("{} is not 0 (from the data), 1 (grey) or 3 (RGB)", self.data.channels));
        }
        if self.data.augment == Augment::Imagenet && !files {
            return bad(
                "data.augment",
                format!("\"imagenet\" decodes image files; {} is held in memory and trained \"cifar\" style", self.data.dataset),
            );
        }
        if self.data.dataset == DatasetKind::Folder && self.data.augment == Augment::Cifar {
            return bad("data.augment", "a folder (split-file) dataset is read from disk: \"imagenet\" or \"auto\"".into());
        }
        if self.data.channels == 1 && (self.data.dataset != DatasetKind::ImageFolder || self.data.augment == Augment::Imagenet) {
            return bad("data.channels", "1 (grey) is for image-folder trees trained \"cifar\" style".into());
        }
        if self.loss.name == LossKind::DotRegression && self.model.head == HeadKind::Linear {
            return bad("loss.name", "dot_regression pulls features onto fixed class directions: use model.head = \"etf\" or \"rbl\" (a learned linear head would shrink to zero)".into());
        }
        if self.train.epochs == 0 {
            return bad("train.epochs", "must be at least 1".into());
        }
        if self.train.batch_size == 0 {
            return bad("train.batch_size", "must be at least 1".into());
        }
        if self.eval.batch_size == 0 {
            return bad("eval.batch_size", "must be at least 1".into());
        }
        if self.train.eval_every == 0 {
            return bad("train.eval_every", "must be at least 1".into());
        }
        if self.train.mixup == crate::train::config::MixupKind::Unimix {
            if self.train.mixup_alpha <= 0.0 {
                return bad("train.mixup_alpha", "UniMix needs α > 0 (the reference uses 0.8)".into());
            }
            if !crate::loss::Criterion::has_per_image(self.loss.name) {
                return bad(
                    "train.mixup",
                    format!(
                        "\"unimix\" weighs each image's own loss by its λ: use loss.name = \"bayias\", \"ce\", \"logit_adjusted\", \
                         \"balanced_softmax\" or \"seesaw\" (not {})",
                        self.loss.name
                    ),
                );
            }
        }
        if !self.train.unimix_tau.is_finite() || self.train.unimix_tau.abs() > 10.0 {
            return bad("train.unimix_tau", format!("{} is not a number from -10 to 10", self.train.unimix_tau));
        }
        if let Err((key, msg)) = self.contrastive.check() {
            return bad(key, msg);
        }
        if self.contrastive.enabled() && self.train.mixup_alpha > 0.0 {
            return bad(
                "contrastive.method",
                format!(
                    "{} contrasts two views of each image; it does not mix images (set train.mixup_alpha = 0)",
                    self.contrastive.method
                ),
            );
        }
        if self.train.sync_bn {
            return bad(
                "train.sync_bn",
                "not available: rbl's fused convolution + BatchNorm kernels take the batch moments inside one op and cannot exchange \
                 them between ranks; each rank normalises by its own slice, as PyTorch's DDP does by default (docs/distributed.md)"
                    .into(),
            );
        }
        if self.train.keep_checkpoints == 0 {
            return bad("train.keep_checkpoints", "must be at least 1 (the newest checkpoint)".into());
        }
        for (key, value, bound) in self.real_keys() {
            if !bound.admits(value) {
                return bad(key, format!("{value} is not {}", bound.describe()));
            }
        }
        if let Some(i) = self.model.widths.iter().position(|&w| w == 0 || w > MAX_WIDTH) {
            return bad("model.widths", format!("stage {} has width {}; each must be 1 … {MAX_WIDTH}", i + 1, self.model.widths[i]));
        }
        if self.model.feature_dim > MAX_FEATURE_DIM {
            return bad("model.feature_dim", format!("{} is more than {MAX_FEATURE_DIM}", self.model.feature_dim));
        }
        let params = self.parameter_estimate();
        if params > MAX_PARAMETERS {
            return bad(
                "model.widths / model.feature_dim",
                format!(
                    "the model would have about {:.1e} parameters ({:.0} GB with gradients and momentum), more than rbl allows ({MAX_PARAMETERS:.0e})",
                    params,
                    params * 12.0 / 1e9
                ),
            );
        }
        if let Some(m) = self.data.mean.iter().find(|m| !m.is_finite()) {
            return bad("data.mean", format!("{m} is not a finite number"));
        }
        if let Some(sd) = self.data.std.iter().find(|s| !(s.is_finite() && **s >= MIN_STD)) {
            return bad("data.std", format!("{sd} is not a finite number of at least {MIN_STD} (on the 0–1 pixel scale)"));
        }
        if self.data.few_threshold > self.data.many_threshold {
            return bad("data.few_threshold", "must not exceed data.many_threshold".into());
        }
        Ok(())
    }
}

/// The smallest `data.std` entry (and the floor of one computed from a training set whose
/// channel is constant): a channel's spread of under a tenth of one pixel level
/// (1/255) would scale its noise past anything the network has seen.
pub const MIN_STD: f32 = 1e-3;

/// The widest stage `model.widths` may ask for.
const MAX_WIDTH: usize = 4096;
/// The largest `model.feature_dim`.
const MAX_FEATURE_DIM: usize = 1 << 16;
/// The most parameters a config may build (ResNeXt-50 has 2.5e7): past this a typo in a width
/// would make the run allocate until the machine runs out of memory.
const MAX_PARAMETERS: f64 = 1e9;

/// The values a real-valued key admits.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Finite and > 0.
    Positive,
    /// Finite and ≥ 0.
    NonNegative,
    /// In [0, 1).
    Fraction,
    /// A logit-adjustment strength: |τ| ≤ [`MAX_TAU`].
    Tau,
}

/// The largest |τ| of logit adjustment (`loss.tau`, `eval.tau`, `--tau`). The papers use
/// 0 … 2; τ · log π must stay far inside f32's range for the adjusted logits and their softmax
/// to be finite (log π ≥ −40 for any count rbl can hold).
pub const MAX_TAU: f64 = 100.0;

/// Refuses a τ given on the command line (`flag`, e.g. `--tau`) that [`MAX_TAU`] excludes.
pub fn check_tau(flag: &str, tau: f64) -> Result<()> {
    if Bound::Tau.admits(tau) {
        Ok(())
    } else {
        Err(RblError::Config { origin: flag.into(), msg: format!("{tau} is not {}", Bound::Tau.describe()) })
    }
}

impl Bound {
    fn admits(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Bound::Positive => v > 0.0,
                Bound::NonNegative => v >= 0.0,
                Bound::Fraction => (0.0..1.0).contains(&v),
                Bound::Tau => v.abs() <= MAX_TAU,
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Bound::Positive => "a positive number",
            Bound::NonNegative => "a non-negative number",
            Bound::Fraction => "in [0, 1)",
            Bound::Tau => "a number from -100 to 100 (τ; the papers use 0 … 2)",
        }
    }
}

/// toml's message "unknown variant `x`, expected one of …\nin `model.head`" as
/// "model.head: unknown variant `x`, expected one of …": the key at fault first, and for a
/// misspelt key or value the closest valid one ("did you mean `lr`?").
fn key_first(msg: &str) -> String {
    let msg = msg.trim_end();
    let msg = match msg.rsplit_once("\nin `") {
        Some((what, key)) if key.ends_with('`') => format!("{}: {}", &key[..key.len() - 1], what.trim_end()),
        _ => msg.to_string(),
    };
    match did_you_mean(&msg) {
        Some(guess) => format!("{msg}; did you mean `{guess}`?"),
        None => msg,
    }
}

/// For "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), the expected
/// name closest to `x`, when it is close enough to be a likely typo.
fn did_you_mean(msg: &str) -> Option<String> {
    let rest = msg.split_once("unknown field `").or_else(|| msg.split_once("unknown variant `"))?.1;
    let (given, rest) = rest.split_once('`')?;
    let options: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let given = given.to_lowercase();
    let scored = |o: &&&str| (edit_distance(&given, &o.to_lowercase()), o.len());
    // A key that begins with the given word (`warmup` → `warmup_epochs`) is the likeliest.
    if let Some(best) = options.iter().filter(|o| o.starts_with(given.as_str()) && given.len() >= 3).min_by_key(scored) {
        return Some(best.to_string());
    }
    // Else a typo: a few letters changed (a different word changes most of them:
    // `learning_rate` is not taken for `lr`).
    let (best, distance) = options.iter().map(|o| (*o, scored(&o).0)).min_by_key(|&(_, d)| d)?;
    (distance <= 2.max(given.chars().count() / 3)).then(|| best.to_string())
}

/// Levenshtein distance between two strings, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (prev + (ca != cb) as usize).min(row[j] + 1).min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The config spelling of an enum value (its serde name), for messages and labels: one
/// spelling per choice, kept by the enum's serde attributes.
pub fn variant_name<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    match toml::Value::try_from(value) {
        Ok(toml::Value::String(s)) => s,
        _ => format!("{value:?}"),
    }
}

/// Sets `a.b.c=value` in a TOML tree; the value is parsed as TOML, else taken as a string.
/// A value that is more than one TOML value (a line break, a second `key = value`) is refused,
/// as is one that looks like a number but is not one TOML reads (`1e-1.5`, an integer past
/// 2⁶³ − 1): taking those as text would only fail later with a message about strings.
fn apply_override(root: &mut toml::Value, assignment: &str) -> Result<()> {
    let origin = format!("--set {assignment}");
    let err = |msg: String| RblError::Config { origin: origin.clone(), msg };
    let (key, raw) = assignment.split_once('=').ok_or_else(|| err("expected key=value, e.g. --set train.epochs=5".into()))?;
    let key = key.trim();
    if raw.contains(['\n', '\r']) {
        return Err(err(format!("the value of {key} holds a line break: give one value per --set (repeat --set for more keys)")));
    }
    if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
        return Err(err(format!("{key:?} is not a dotted key like train.lr")));
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"));
    let value = match parsed {
        Ok(mut t) if t.len() == 1 => t.remove("v").expect("the one key is v"),
        Ok(_) => return Err(err(format!("the value of {key} is more than one TOML value"))),
        Err(_) if looks_numeric(raw) => {
            return Err(err(format!("{key}: {:?} is not a number (reals like 0.1 or 1e-3; integers up to {})", raw.trim(), i64::MAX)));
        }
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let table = node.as_table_mut().ok_or_else(|| err(format!("'{key}' is not a table")))?;
        if i + 1 == parts.len() {
            table.insert(part.to_string(), value);
            return Ok(());
        }
        node = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
    Ok(())
}

/// Whether an override's text was meant as a number: a sign, digit or point first, and only
/// characters numbers have.
fn looks_numeric(raw: &str) -> bool {
    let t = raw.trim();
    t.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'))
        && t.chars().all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E' | '_'))
}

/// The `--set` argument that sets `key` (the last one, as it wins), if any.
fn override_of<'a>(overrides: &'a [String], key: &str) -> Option<&'a String> {
    overrides.iter().rev().find(|o| o.split_once('=').is_some_and(|(k, _)| k.trim() == key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_unknown_keys_are_named() {
        let cfg =
            ExperimentConfig::from_toml_str("name = \"x\"\n[train]\nepochs = 3\n", "t", &["train.lr=0.05".into(), "model.head=etf".into()])
                .unwrap();
        assert_eq!(cfg.train.epochs, 3);
        assert_eq!(cfg.train.lr, 0.05);
        assert_eq!(cfg.model.head, HeadKind::Etf);
        let err = ExperimentConfig::from_toml_str("", "t", &["train.learning_rate=0.1".into()]).unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
        let err = ExperimentConfig::from_toml_str("[data]\nimbalance_ratio = 1000\n", "t", &[]).unwrap_err();
        assert!(err.to_string().contains("data.imbalance_ratio"), "{err}");
    }

    #[test]
    fn every_choice_is_an_enum_that_names_the_key_and_the_valid_values() {
        let cases = [
            ("model.head=\"mlp\"", "model.head", "`linear`, `etf`, `rbl`"),
            ("model.backbone=\"vgg\"", "model.backbone", "`resnet32`, `resnet50`, `resnext50_32x4d`"),
            ("loss.name=\"hinge\"", "loss.name", "`ce`, `logit_adjusted`"),
            ("data.dataset=\"svhn\"", "data.dataset", "`fashion-mnist`, `mnist`, `cifar10`, `cifar100`, `folder`"),
            ("data.bad_images=\"ignore\"", "data.bad_images", "`error` or `skip`"),
            ("data.sampler=\"random\"", "data.sampler", "`instance`, `class_balanced`, `sqrt`"),
            ("data.counts=\"round\"", "data.counts", "`standard` or `official-rbl`"),
            ("train.schedule=\"linear\"", "train.schedule", "`cosine` or `step`"),
            ("train.precision=\"f64\"", "train.precision", "`f32`, `f16`, `bf16`"),
            ("device=\"tpu\"", "device", "`cpu` or `gpu`"),
        ];
        for (set, key, valid) in cases {
            let err = ExperimentConfig::from_toml_str("", "t", &[set.into()]).unwrap_err().to_string();
            assert!(err.contains(&format!("{key}: unknown variant")) && err.contains(valid), "{set}: {err}");
        }
        // The spellings of the config files and of messages are the serde names.
        let cfg = ExperimentConfig::from_toml_str("[loss]\nname = \"cb_focal\"\n[data]\ndataset = \"fashion-mnist\"\n", "t", &[]).unwrap();
        assert_eq!((cfg.loss.name.to_string(), cfg.data.dataset.to_string()), ("cb_focal".into(), "fashion-mnist".into()));
        assert_eq!(cfg.method_label(), "rbl+cb_focal");
        assert_eq!(cfg.column_label(), "fashion-mnist IR100");
    }

    /// Every numeric key with a value it refuses: the error names the key, before anything runs.
    #[test]
    fn every_numeric_key_refuses_what_cannot_work() {
        let cases = [
            ("name=\"\"", "name"),
            ("name=\"/abs/victim\"", "name"),
            ("name=\"../../esc\"", "name"),
            ("name=\"..\"", "name"),
            ("data.imbalance_ratio=0.5", "data.imbalance_ratio"),
            ("data.imbalance_ratio=nan", "data.imbalance_ratio"),
            ("train.epochs=0", "train.epochs"),
            ("train.batch_size=0", "train.batch_size"),
            ("eval.batch_size=0", "eval.batch_size"),
            ("train.eval_every=0", "train.eval_every"),
            ("train.keep_checkpoints=0", "train.keep_checkpoints"),
            ("train.lr=0", "train.lr"),
            ("train.lr=inf", "train.lr"),
            ("train.momentum=nan", "train.momentum"),
            ("train.momentum=-1", "train.momentum"),
            ("train.momentum=1", "train.momentum"),
            ("train.weight_decay=nan", "train.weight_decay"),
            ("train.weight_decay=-1", "train.weight_decay"),
            ("train.warmup_start_factor=-0.5", "train.warmup_start_factor"),
            ("train.mixup_alpha=-1", "train.mixup_alpha"),
            ("train.lr_gamma=0", "train.lr_gamma"),
            ("train.loss_scale=nan", "train.loss_scale"),
            ("loss.tau=inf", "loss.tau"),
            ("loss.beta=1", "loss.beta"),
            ("loss.gamma=-1", "loss.gamma"),
            ("loss.ldam_max_margin=nan", "loss.ldam_max_margin"),
            ("loss.ldam_scale=0", "loss.ldam_scale"),
            ("loss.lade_alpha=-0.1", "loss.lade_alpha"),
            ("loss.lade_lambda=nan", "loss.lade_lambda"),
            ("eval.tau=nan", "eval.tau"),
            ("eval.tau=inf", "eval.tau"),
            ("model.widths=[0,0,0]", "model.widths"),
            ("model.widths=[100000,8,8]", "model.widths"),
            ("model.widths=[4096,4096,4096]", "model.widths / model.feature_dim"),
            ("model.feature_dim=1000000000", "model.feature_dim"),
            ("data.few_threshold=500", "data.few_threshold"),
            // Issue #36 rows 18 and 20, and a name of spaces.
            ("data.mean=[nan]", "data.mean"),
            ("data.std=[1e-45]", "data.std"),
            ("data.std=[inf]", "data.std"),
            ("eval.tau=1e39", "eval.tau"),
            ("loss.tau=-1e300", "loss.tau"),
            ("name=\"   \"", "name"),
            ("name=\" run\"", "name"),
            ("train.sync_bn=true", "train.sync_bn"),
            ("train.mixup=\"unimix\"", "train.mixup_alpha"),
            ("train.unimix_tau=nan", "train.unimix_tau"),
            ("contrastive.temperature=0", "contrastive.temperature"),
            ("contrastive.temperature=nan", "contrastive.temperature"),
            ("contrastive.projection_dim=0", "contrastive.projection_dim"),
            ("contrastive.positives=100000", "contrastive.positives"),
            ("contrastive.target_repeat=0", "contrastive.target_repeat"),
            ("contrastive.target_weight=-1", "contrastive.target_weight"),
            ("contrastive.centroid_momentum=1", "contrastive.centroid_momentum"),
        ];
        for (set, key) in cases {
            let err = ExperimentConfig::from_toml_str("", "t", &[set.into()]).unwrap_err().to_string();
            assert!(err.contains(&format!("{key}: ")), "{set}: {err}");
        }
        // Two views are not mixed.
        let err = ExperimentConfig::from_toml_str("", "t", &["contrastive.method=\"kcl\"".into(), "train.mixup_alpha=1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("contrastive.method: ") && err.contains("mixup_alpha = 0"), "{err}");
        // The shipped defaults pass.
        ExperimentConfig::default().validate("t").unwrap();
    }

    #[test]
    fn resolved_config_round_trips() {
        let cfg = ExperimentConfig::default();
        let back = ExperimentConfig::from_toml_str(&cfg.to_toml_string(), "t", &[]).unwrap();
        assert_eq!(cfg, back);
    }

    /// A misspelt key or value gets the closest valid one; an unrelated word does not.
    #[test]
    fn misspellings_get_a_suggestion() {
        let err = |set: &str| ExperimentConfig::from_toml_str("", "c.toml", &[set.into()]).unwrap_err().to_string();
        assert!(err("train.epoch=3").contains("did you mean `epochs`?"), "{}", err("train.epoch=3"));
        assert!(err("train.warmup=3").contains("did you mean `warmup_epochs`?"));
        assert!(err("model.head=\"rlb\"").contains("did you mean `rbl`?"));
        assert!(err("data.dataset=\"fashion_mnist\"").contains("did you mean `fashion-mnist`?"));
        assert!(
            err("loss.name=\"cross_entropy\"").contains("unknown variant") && !err("loss.name=\"cross_entropy\"").contains("did you mean")
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    /// Issue #36 row 15 and the "invalid type: string" messages: a `--set` that is more than
    /// one value, or a number TOML cannot read, is refused naming `--set` and the key; an
    /// error at a key a `--set` gave blames the `--set`, not the file.
    #[test]
    fn set_values_are_one_value_and_errors_name_the_set() {
        let err = |set: &str| ExperimentConfig::from_toml_str("", "c.toml", &[set.into()]).unwrap_err().to_string();
        let e = err("train.epochs=2\nbogus_key=1");
        assert!(e.starts_with("config --set train.epochs=2") && e.contains("line break"), "{e}");
        let e = err("train.epochs=2, train.lr=1");
        assert!(e.contains("--set") && e.contains("train.epochs"), "{e}");
        let e = err("train.lr=1e-1.5");
        assert!(e.contains("--set train.lr=1e-1.5") && e.contains("is not a number"), "{e}");
        let e = err("train.epochs=99999999999999999999");
        assert!(e.contains("is not a number") && e.contains("integers up to"), "{e}");
        let e = err("train.epochs=-3");
        assert!(e.contains("--set train.epochs=-3") && e.contains("train.epochs"), "{e}");
        let e = err("model.head=mlp");
        assert!(e.starts_with("config --set model.head=mlp: model.head: unknown variant"), "{e}");
        let e = err("train.lr=0");
        assert!(e.starts_with("config --set train.lr=0: train.lr"), "{e}");
        // Still from the file when the file is at fault.
        let e = ExperimentConfig::from_toml_str("[train]\nlr = 0\n", "c.toml", &["train.epochs=3".into()]).unwrap_err().to_string();
        assert!(e.starts_with("config c.toml: train.lr"), "{e}");
        // Plain words are strings, as before.
        let cfg = ExperimentConfig::from_toml_str("", "c.toml", &["model.head=etf".into(), "name=my-run".into()]).unwrap();
        assert_eq!((cfg.model.head, cfg.name.as_str()), (HeadKind::Etf, "my-run"));
    }
}
