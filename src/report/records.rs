//! The records a run writes: one JSON line per epoch, and the final metrics.

use serde::{Deserialize, Serialize};

use crate::metrics::ClassificationReport;
use crate::metrics::neural_collapse::NeuralCollapse;

/// Accuracy and loss on one evaluation set, raw and logit-adjusted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    /// Mean cross-entropy of the raw logits.
    pub loss: f64,
    /// Scores of the raw logits.
    pub raw: ClassificationReport,
    /// Scores after subtracting τ·log π.
    pub adjusted: ClassificationReport,
    /// The τ used.
    pub tau: f64,
    /// Images evaluated.
    pub images: usize,
    /// The confusion matrices (kept out of the JSON files that carry summaries; a finished run
    /// writes its final test set's to `confusion.json`).
    #[serde(skip)]
    pub confusion: Option<crate::metrics::confusion::Confusion>,
}

/// One line of `epochs.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Learning rate used in this epoch.
    pub lr: f64,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Training accuracy (%) on the augmented batches seen.
    pub train_acc: f64,
    /// Test loss (raw logits), when evaluated this epoch.
    pub test_loss: Option<f64>,
    /// Test top-1 (%) of the raw logits.
    pub test_acc: Option<f64>,
    /// Test top-1 (%) after logit adjustment.
    pub test_acc_adjusted: Option<f64>,
    /// Many / medium / few test accuracy (%) of the raw logits.
    pub test_shots: Option<[Option<f64>; 3]>,
    /// Many / medium / few test accuracy (%) after logit adjustment.
    pub test_shots_adjusted: Option<[Option<f64>; 3]>,
    /// Eval-mode cross-entropy on the un-augmented training set (`eval.train_eval`).
    #[serde(default)]
    pub train_eval_loss: Option<f64>,
    /// Eval-mode top-1 (%) of the raw logits on the un-augmented training set (`eval.train_eval`).
    #[serde(default)]
    pub train_eval_acc: Option<f64>,
    /// Validation top-1 (%) after logit adjustment, when a validation split exists.
    pub val_acc_adjusted: Option<f64>,
    /// Wall-clock seconds of the epoch (training and evaluation).
    pub seconds: f64,
    /// Seconds the training loop waited for the data loader.
    pub loader_wait_seconds: f64,
    /// Training images skipped this epoch because they could not be decoded
    /// (`data.bad_images = "skip"`); 0 otherwise.
    #[serde(default)]
    pub skipped_images: usize,
    /// Training images per second.
    pub train_images_per_second: f64,
    /// max |RᵀR − I| of the RBL rotation after the epoch.
    pub rotation_orthogonality_error: Option<f64>,
    /// Neural-collapse metrics of the (un-augmented) training features, every `eval.nc_every` epochs.
    #[serde(default)]
    pub neural_collapse: Option<NeuralCollapse>,
}

impl EpochRecord {
    /// An epoch that logged only its training: what tests start from, filling in the rest.
    #[cfg(test)]
    pub(crate) fn bare(epoch: usize) -> EpochRecord {
        EpochRecord {
            epoch,
            lr: 0.1,
            train_loss: 1.0,
            train_acc: 50.0,
            test_loss: None,
            test_acc: None,
            test_acc_adjusted: None,
            test_shots: None,
            test_shots_adjusted: None,
            train_eval_loss: None,
            train_eval_acc: None,
            val_acc_adjusted: None,
            seconds: 1.0,
            loader_wait_seconds: 0.0,
            skipped_images: 0,
            train_images_per_second: 1.0,
            rotation_orthogonality_error: None,
            neural_collapse: None,
        }
    }
}

/// `metrics.json`: the final numbers of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalMetrics {
    /// Experiment name.
    pub name: String,
    /// Head (`linear`, `etf`, `rbl`).
    pub head: String,
    /// Which epoch the numbers come from (the last; no selection on the test set).
    pub epoch: usize,
    /// Training images per class.
    pub train_counts: Vec<usize>,
    /// Test-set evaluation of the final model.
    pub test: EvalSummary,
    /// Validation-set evaluation, when a validation split exists.
    pub val: Option<EvalSummary>,
    /// Total wall-clock seconds of training over all sessions of the run.
    pub wall_seconds: f64,
    /// max |RᵀR − I| of the final RBL rotation.
    pub rotation_orthogonality_error: Option<f64>,
    /// The selected epoch's scores (`eval.select = "val"`); absent for `last`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<SelectedEpoch>,
    /// Each class of the final test evaluation, with its name (runs from before this lack it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassResult>,
}

/// One class of a run's final test evaluation: what the per-class table of the report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassResult {
    /// The class's name (folder name, the dataset's label name).
    pub name: String,
    /// Training images of the class.
    pub train_images: usize,
    /// Test images of the class.
    pub test_images: usize,
    /// Test top-1 % of the raw logits (`None` without test images).
    pub raw: Option<f64>,
    /// Test top-1 % of the logit-adjusted logits.
    pub adjusted: Option<f64>,
    /// Its shot group: `many`, `medium` or `few`.
    pub shot: String,
}

/// The model `eval.select` chose, scored once at the end of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectedEpoch {
    /// The rule (`val`).
    pub rule: String,
    /// The chosen 1-based epoch.
    pub epoch: usize,
    /// Its test-set scores.
    pub test: EvalSummary,
    /// Its validation-set scores (what chose it).
    pub val: Option<EvalSummary>,
}

#[cfg(test)]
mod tests {
    /// A resumed run re-writes its log from the checkpoint, so every f64 must survive text and
    /// back bit for bit. This value came back one ulp off under serde_json's default parser.
    #[test]
    fn floats_survive_a_json_round_trip_exactly() {
        for x in [2.1105337255633572e-7f64, 0.1, 1.0 / 3.0, 29.066209142266462, f64::MIN_POSITIVE, 1e300] {
            let back: f64 = serde_json::from_str(&serde_json::to_string(&x).unwrap()).unwrap();
            assert_eq!(back.to_bits(), x.to_bits(), "{x:e}");
        }
    }
}
