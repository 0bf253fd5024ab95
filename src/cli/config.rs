//! `rbl config`: a commented config to start from (`init`), and the effective config with
//! every default and every value rbl would choose from the data (`show`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;

use rbl::ExperimentConfig;
use rbl::config::DatasetKind;
use rbl::data::defaults;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Writes a commented config that trains as it is (to stdout: `> my.toml`).
    Init {
        /// The dataset: image-folder (your own tree), fashion-mnist, mnist, cifar10, cifar100,
        /// folder (split files).
        #[arg(long, default_value = "image-folder")]
        dataset: String,
        /// Where the data is (image-folder: the folder holding train/ and test/).
        #[arg(long)]
        root: Option<String>,
        /// The experiment's name (default: the data folder's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Prints the effective config: every key with its value, defaults included, and for an
    /// image-folder tree what rbl would choose from the data (read from its headers).
    Show {
        /// Config file (default: rbl's defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config key, e.g. --set train.epochs=5 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
}

pub fn run(which: ConfigCommand) -> Result<()> {
    match which {
        ConfigCommand::Init { dataset, root, name } => {
            rbl::say!("{}", init(&dataset, root.as_deref(), name.as_deref())?);
            Ok(())
        }
        ConfigCommand::Show { config, overrides } => show(config, &overrides),
    }
}

/// The data folder's name, as an experiment name.
fn name_of(root: &str) -> String {
    let expanded = defaults::expand_home(root);
    let name = std::path::Path::new(&expanded).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let clean: String = name.chars().map(|c| if c.is_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if clean.is_empty() || clean == "." || clean == ".." { "experiment".into() } else { clean }
}

/// The text of `rbl config init`: every line a key a user is likely to change, with what it
/// does; everything else keeps its default (`rbl config show` lists them all).
pub fn init(dataset: &str, root: Option<&str>, name: Option<&str>) -> Result<String> {
    let kind: DatasetKind = toml::Value::String(dataset.into())
        .try_into()
        .map_err(|_| anyhow::anyhow!("--dataset {dataset:?}: one of image-folder, fashion-mnist, mnist, cifar10, cifar100, folder"))?;
    let root = match (kind, root) {
        (DatasetKind::ImageFolder | DatasetKind::Folder, None) => bail!("--root: where is the data? (the folder holding train/ and test/)"),
        (_, Some(r)) => r.to_string(),
        (DatasetKind::FashionMnist, None) => "/usr/share/datasets/fashion-mnist".into(),
        (DatasetKind::Mnist, None) => "/usr/share/datasets/mnist".into(),
        (_, None) => "data/cifar".into(),
    };
    let name = name.map(String::from).unwrap_or_else(|| name_of(&root));
    let data = match kind {
        DatasetKind::ImageFolder => format!(
            r#"[data]
dataset = "image-folder"
# The folder holding train/<class>/<images> and test/<class>/… (or val/): JPEG, PNG, WebP.
root = "{root}"
# 1 uses train/ as it is (your data is usually long-tailed already); a larger ratio subsamples
# it into a long tail (n_max images for the first class, n_max / ratio for the last).
imbalance_ratio = 1.0
# Left to rbl (0 / "auto"), chosen from the images when training starts and printed:
# small images of one size are held in memory at that size and pad-cropped like CIFAR;
# larger ones are decoded each epoch with RandomResizedCrop at 224 (or their median side).
image_size = 0
augment = "auto"
# The normalisation: empty means the training set's own mean and std, computed at the start.
mean = []
std = []
# Classes with more than many_threshold training images are "many-shot", fewer than
# few_threshold "few-shot" (the medium group is in between).
many_threshold = 100
few_threshold = 20
# Decoder threads; a batch is the same whatever the count.
workers = 4
"#
        ),
        DatasetKind::Folder => format!(
            r#"[data]
dataset = "folder"
# The folder the split files' paths are relative to, and the split files (`path label` lines).
root = "{root}"
train_split = "{root}/train.txt"
test_split = "{root}/test.txt"
num_classes = 1000
image_size = 224
"#
        ),
        _ => format!(
            r#"[data]
dataset = "{kind}"
root = "{root}"
# The long tail: n_max images for the first class, n_max / imbalance_ratio for the last.
imbalance_ratio = 100.0
"#
        ),
    };
    let text = format!(
        r#"# rbl experiment: `rbl train --config THIS_FILE`. Every key not written here keeps its
# default; `rbl config show --config THIS_FILE` prints them all.
name = "{name}"
seed = 0

{data}
[model]
# linear (learned classifier), etf (the fixed simplex ETF, "Fixed") or rbl (ETF + learned
# rotation, the paper's method).
head = "rbl"
# resnet32 (CIFAR-style, small images; widths below) or resnet50 / resnext50_32x4d (224 px).
backbone = "resnet32"
widths = [16, 32, 64]
feature_dim = 256

[train]
epochs = 200
batch_size = 128
lr = 0.1
weight_decay = 5e-4
warmup_epochs = 5

[loss]
# ce (cross-entropy, RBL's); also logit_adjusted, balanced_softmax, cb_ce, cb_focal, ldam,
# lade, dot_regression (the baselines: docs/methods.md).
name = "ce"

[eval]
# τ of logit adjustment at test time: z − τ·log(class prior).
tau = 1.0
"#
    );
    // The template must train as it is: it parses and validates.
    ExperimentConfig::from_toml_str(&text, "rbl config init", &[]).map_err(|e| anyhow::anyhow!("template does not validate: {e}"))?;
    Ok(text)
}

/// `rbl config show`: the effective config, with what would be chosen from the data.
fn show(path: Option<PathBuf>, overrides: &[String]) -> Result<()> {
    let mut cfg = match &path {
        Some(p) => ExperimentConfig::load(p, overrides)?,
        None => ExperimentConfig::from_toml_str("", "defaults", overrides)?,
    };
    let survey =
        if cfg.data.dataset == DatasetKind::ImageFolder { Some(defaults::survey(std::path::Path::new(&cfg.data.root))?) } else { None };
    let chosen = defaults::resolve(&mut cfg.data, survey.as_ref());
    let mut extra = Vec::new();
    if cfg.data.dataset == DatasetKind::ImageFolder && cfg.data.mean.is_empty() {
        extra.push(defaults::Choice {
            key: "data.mean / data.std".into(),
            value: "[] / []".into(),
            why: "computed from the training set when training starts".into(),
        });
    }
    let block = defaults::describe(survey.as_ref(), &chosen, &extra);
    for line in block.lines() {
        rbl::say!("# {line}");
    }
    rbl::say!("{}", cfg.to_toml_string().trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_validates_and_names_its_root() {
        for (dataset, root) in
            [("image-folder", Some("~/data/birds")), ("fashion-mnist", None), ("cifar100", Some("/d")), ("folder", Some("/in"))]
        {
            let text = init(dataset, root, None).unwrap();
            let cfg = ExperimentConfig::from_toml_str(&text, "t", &[]).unwrap();
            assert_eq!(cfg.data.dataset.to_string(), dataset);
            if dataset == "image-folder" {
                assert_eq!(cfg.name, "birds");
                assert!(cfg.data.root.ends_with("/data/birds") && !cfg.data.root.starts_with('~'), "{}", cfg.data.root);
                assert_eq!((cfg.data.imbalance_ratio, cfg.data.image_size), (1.0, 0));
            }
        }
        assert!(init("image-folder", None, None).unwrap_err().to_string().contains("--root"));
        assert!(init("svhn", None, None).unwrap_err().to_string().contains("one of"));
    }
}
