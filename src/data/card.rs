//! What a trained model knows of the data it was trained on, stored in its run folder as
//! `dataset.json` when training starts: the class names in label order, the training counts
//! (the prior of logit adjustment), the input shape and the normalisation.
//!
//! With it `rbl predict` and `rbl export` need no dataset (the tree may have moved or been
//! deleted), and a command that does read the dataset again (`rbl eval`) can tell when its
//! classes are no longer the ones the model was trained on: a class folder renamed after
//! training would otherwise relabel every class after it, silently.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::ImageSet;
use crate::data::augment::Augmenter;
use crate::data::image_set::FileImages;
use crate::error::{RblError, Result};

/// The data a run was trained on, as a model needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetCard {
    /// The class names, in label order (the position of a name is its label).
    pub class_names: Vec<String>,
    /// Training images per class.
    pub train_counts: Vec<usize>,
    /// Channels of the model input (1 or 3).
    pub channels: usize,
    /// Height of the model input.
    pub height: usize,
    /// Width of the model input.
    pub width: usize,
    /// For datasets read from image files: the side of the square input, reached by resizing
    /// the shorter side to side·8/7 (bilinear) and centre-cropping. `None` for in-memory
    /// datasets (IDX, CIFAR), whose images already have the input's size.
    pub file_image_size: Option<usize>,
    /// Per-channel normalisation mean (0–1 scale).
    pub mean: Vec<f32>,
    /// Per-channel normalisation standard deviation (0–1 scale).
    pub std: Vec<f32>,
    /// What rbl found in the data when the run started (image-folder trees).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
    /// The keys rbl filled in from the data, with the reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chosen: Vec<crate::data::defaults::Choice>,
}

impl DatasetCard {
    /// The card of a prepared training set.
    pub fn new(class_names: Vec<String>, train: &ImageSet, train_counts: &[usize], mean: &[f32], std: &[f32]) -> DatasetCard {
        DatasetCard {
            class_names,
            train_counts: train_counts.to_vec(),
            channels: train.channels,
            height: train.height,
            width: train.width,
            file_image_size: train.files.as_ref().map(|f| f.size),
            mean: mean.to_vec(),
            std: std.to_vec(),
            found: None,
            chosen: Vec::new(),
        }
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// An empty set in the model's input format: what new images are turned into.
    pub fn input_template(&self) -> ImageSet {
        ImageSet {
            pixels: Vec::new(),
            labels: Vec::new(),
            num_classes: self.num_classes(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            files: self
                .file_image_size
                .map(|size| std::sync::Arc::new(FileImages { root: Default::default(), paths: Vec::new(), size, skip_bad: false })),
        }
    }

    /// Evaluation preprocessing after decoding: normalisation only.
    pub fn eval_augmenter(&self) -> Augmenter {
        Augmenter { mean: self.mean.clone(), std: self.std.clone(), crop_padding: 0, flip: false, autoaugment: false, cutout: 0 }
    }

    /// Refuses a dataset whose classes (`names`, as read now) are not the ones the model was
    /// trained on, naming the first difference.
    pub fn check_same_classes(&self, names: &[String]) -> Result<()> {
        if names == self.class_names {
            return Ok(());
        }
        let first = (0..self.class_names.len().max(names.len())).find(|&i| self.class_names.get(i) != names.get(i)).unwrap_or(0);
        let show = |v: Option<&String>| v.map(|s| format!("{s:?}")).unwrap_or_else(|| "nothing".into());
        Err(RblError::Dataset(format!(
            "the dataset's classes are not the ones this model was trained on: label {first} was {} at training and is {} now \
             ({} classes then, {} now); restore the class folders' names, or train again",
            show(self.class_names.get(first)),
            show(names.get(first)),
            self.class_names.len(),
            names.len()
        )))
    }

    /// Reads and checks `path` (a run's `dataset.json`); `None` when the run has none (runs
    /// trained before it existed).
    pub fn read(path: &Path) -> Result<Option<DatasetCard>> {
        let Some(card) = crate::report::run_dir::read_json::<DatasetCard>(path)? else { return Ok(None) };
        card.check().map_err(|msg| RblError::format(path, msg))?;
        Ok(Some(card))
    }

    fn check(&self) -> std::result::Result<(), String> {
        let c = self.num_classes();
        if c < 2 || self.train_counts.len() != c {
            return Err(format!("{c} class names for {} class counts (at least 2 classes)", self.train_counts.len()));
        }
        if !matches!(self.channels, 1 | 3) || !(1..=8192).contains(&self.height) || !(1..=8192).contains(&self.width) {
            return Err(format!("an input of {} × {} × {} is not one rbl builds", self.channels, self.height, self.width));
        }
        let stats_fit = self.mean.len() == self.channels
            && self.std.len() == self.channels
            && self.mean.iter().all(|m| m.is_finite())
            && self.std.iter().all(|s| s.is_finite() && *s > 0.0);
        if !stats_fit {
            return Err(format!("mean {:?} / std {:?} are not {} finite values each (std positive)", self.mean, self.std, self.channels));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> DatasetCard {
        DatasetCard {
            class_names: vec!["ant".into(), "bee".into(), "cat".into()],
            train_counts: vec![10, 5, 1],
            channels: 3,
            height: 32,
            width: 32,
            file_image_size: Some(32),
            mean: vec![0.5; 3],
            std: vec![0.25; 3],
            found: None,
            chosen: Vec::new(),
        }
    }

    #[test]
    fn round_trips_and_refuses_what_cannot_be_a_card() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dataset.json");
        assert_eq!(DatasetCard::read(&p).unwrap(), None);
        std::fs::write(&p, serde_json::to_string(&card()).unwrap()).unwrap();
        assert_eq!(DatasetCard::read(&p).unwrap(), Some(card()));
        for broken in [
            DatasetCard { train_counts: vec![1, 2], ..card() },
            DatasetCard { channels: 2, ..card() },
            DatasetCard { std: vec![0.0; 3], ..card() },
            DatasetCard { mean: vec![f32::NAN; 3], ..card() },
        ] {
            std::fs::write(&p, serde_json::to_string(&broken).unwrap()).unwrap();
            assert!(DatasetCard::read(&p).unwrap_err().to_string().contains("dataset.json"));
        }
    }

    #[test]
    fn renamed_classes_are_named() {
        let c = card();
        c.check_same_classes(&c.class_names).unwrap();
        // "bee" renamed to "wasp": every label after "ant" moves.
        let now: Vec<String> = ["ant", "cat", "wasp"].map(String::from).to_vec();
        let e = c.check_same_classes(&now).unwrap_err().to_string();
        assert!(e.contains("label 1 was \"bee\"") && e.contains("is \"cat\" now"), "{e}");
        let t = c.input_template();
        assert_eq!((t.channels, t.height, t.num_classes, t.files.unwrap().size), (3, 32, 3, 32));
    }
}
