//! Classifying image files with a trained run (`rbl predict`): each file goes through the run's
//! own evaluation preprocessing (on-disk datasets: resize to size·8/7 and centre crop; in-memory
//! ones: shorter side resized to the training images' side, centre crop, grey converted as PIL's
//! `convert("L")` does), then the run's normalisation and network. Probabilities are the softmax
//! of the raw logits and of the logits minus τ·log π (the run's prediction rule).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::data::card::DatasetCard;
use crate::data::image_folder::Skipped;
use crate::data::model_input::to_model_input;
use crate::error::Result;
use crate::metrics::logit_adjust::{adjust_logits, log_prior};
use crate::train::evaluate::forward_all;
use crate::train::trained_run::TrainedModel;

/// One class of an image's top k.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    /// Class index (the label).
    pub class: usize,
    /// Class name.
    pub name: String,
    /// Softmax of the raw logits.
    pub probability: f64,
    /// Softmax of the logit-adjusted logits (z − τ·log π); the ranking follows this.
    pub adjusted_probability: f64,
}

/// What became of one input: its top k classes, or why it could not be classified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The file as given (or found in a given folder); bytes that are not UTF-8 are written
    /// `\xNN`, so every file can be reported.
    pub path: String,
    /// Classes by decreasing adjusted probability (empty when `error` is set).
    pub top: Vec<ClassScore>,
    /// The raw logits, one per class in label order (`--logits`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<f32>>,
    /// Why the file was not classified (unreadable, not an image, not a regular file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A path as text, its non-UTF-8 bytes written `\xNN` (a name no terminal or JSON reader
/// could show otherwise).
pub fn path_text(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_encoded_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// The inputs named on the command line, expanded: files as they are, folders searched
/// (recursively, sorted) for JPEG, PNG and WebP files. What cannot be read is returned beside
/// them, each with the reason (a missing path, a folder without images, a FIFO or device), to
/// be reported and skipped rather than stop the others.
pub fn expand_inputs(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let before = files.len();
            let mut skipped = Skipped::default();
            if let Err(e) = crate::data::image_folder::image_files(p, &mut files, &mut skipped) {
                problems.push((p.clone(), e.to_string()));
                continue;
            }
            skipped.note(p);
            for q in skipped.not_regular {
                problems.push((q, "not a regular file (a FIFO, device or broken link): not opened".into()));
            }
            if files.len() == before {
                problems.push((p.clone(), "holds no JPEG, PNG or WebP file".into()));
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            problems.push((p.clone(), "no such file or folder".into()));
        }
    }
    (files, problems)
}

/// A decoded image as model input in the card's format (the same bytes the loader gives an
/// evaluation image of the run's own dataset).
fn model_input(card: &DatasetCard, path: &Path) -> Result<Vec<u8>> {
    let img = crate::data::folder::read_image(path)?;
    Ok(match card.file_image_size {
        Some(size) => crate::data::folder::model_view(&img, size, None),
        None => to_model_input(&img, card.channels, card.height, card.width),
    })
}

fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let e: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Classifies `files` (at most 4096 decoded at a time), returning each file's `top_k` classes
/// at logit-adjustment strength `tau`, and its raw logits with `logits`. A file that cannot
/// be read or decoded gets its error instead; the others are classified all the same.
pub fn predict_files(
    model: &TrainedModel,
    files: &[PathBuf],
    tau: f64,
    top_k: usize,
    batch_size: usize,
    logits: bool,
) -> Result<Vec<Prediction>> {
    crate::config::check_tau("--tau", tau)?;
    let card = &model.card;
    let prior = log_prior(&card.train_counts);
    let c = card.num_classes();
    let aug = Arc::new(card.eval_augmenter());
    let mut out = Vec::with_capacity(files.len());
    const CHUNK: usize = 4096;
    for part in files.chunks(CHUNK) {
        let mut set = card.input_template();
        set.files = None;
        let mut decoded = Vec::with_capacity(part.len());
        let mut errors: Vec<Option<String>> = Vec::with_capacity(part.len());
        for path in part {
            match model_input(card, path) {
                Ok(pixels) => {
                    set.pixels.extend(pixels);
                    set.labels.push(0);
                    decoded.push(path);
                    errors.push(None);
                }
                Err(e) => errors.push(Some(e.to_string())),
            }
        }
        let pass = if set.is_empty() {
            None
        } else {
            Some(forward_all(&model.net, &Arc::new(set), &aug, batch_size.max(1), &model.device, false)?)
        };
        let mut k = 0;
        for (path, error) in part.iter().zip(errors) {
            if let Some(error) = error {
                out.push(Prediction { path: path_text(path), top: Vec::new(), logits: None, error: Some(error) });
                continue;
            }
            let pass = pass.as_ref().expect("a decoded file was forwarded");
            let row = &pass.logits[k * c..(k + 1) * c];
            k += 1;
            let mut adjusted = row.to_vec();
            adjust_logits(&mut adjusted, &prior, tau);
            let raw = softmax(row);
            let adj = softmax(&adjusted);
            let mut order: Vec<usize> = (0..c).collect();
            order.sort_by(|&a, &b| adj[b].total_cmp(&adj[a]).then(a.cmp(&b)));
            let top = order
                .into_iter()
                .take(top_k.max(1))
                .map(|class| ClassScore {
                    class,
                    name: card.class_names[class].clone(),
                    probability: raw[class],
                    adjusted_probability: adj[class],
                })
                .collect();
            out.push(Prediction { path: path_text(path), top, logits: logits.then(|| row.to_vec()), error: None });
        }
    }
    Ok(out)
}

/// Predictions for inputs that could not be read at all ([`expand_inputs`]'s problems).
pub fn failed_inputs(problems: &[(PathBuf, String)]) -> Vec<Prediction> {
    problems
        .iter()
        .map(|(p, why)| Prediction { path: path_text(p), top: Vec::new(), logits: None, error: Some(format!("{}: {why}", path_text(p))) })
        .collect()
}

/// The table `rbl predict` prints: one block per file.
pub fn format_table(predictions: &[Prediction], tau: f64) -> String {
    let mut s = String::new();
    for p in predictions {
        if let Some(error) = &p.error {
            s.push_str(&format!("{}\n  error: {error}\n", p.path));
            continue;
        }
        s.push_str(&format!("{}\n", p.path));
        let width = p.top.iter().map(|t| t.name.chars().count()).max().unwrap_or(0);
        for (rank, t) in p.top.iter().enumerate() {
            s.push_str(&format!(
                "  {}. {:<width$}  (class {:>3})  adjusted (τ = {tau}) {:>6.2} %   raw {:>6.2} %\n",
                rank + 1,
                t.name,
                t.class,
                100.0 * t.adjusted_probability,
                100.0 * t.probability
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_orders_like_the_logits() {
        let p = softmax(&[1.0, 3.0, 2.0]);
        let e = [1f64.exp(), 3f64.exp(), 2f64.exp()];
        let z: f64 = e.iter().sum();
        for (a, b) in p.iter().zip(e) {
            assert!((a - b / z).abs() < 1e-12);
        }
        assert!(softmax(&[1000.0, 0.0])[0] > 0.999_999, "no overflow");
    }

    #[test]
    fn inputs_expand_folders_and_name_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.png", "a.JPG", "sub/c.webp", "notes.txt"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
        }
        let (got, problems) = expand_inputs(&[dir.path().into(), dir.path().join("notes.txt")]);
        assert!(problems.is_empty(), "{problems:?}");
        let rel: Vec<_> = got.iter().map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(rel, vec!["a.JPG", "b.png", "sub/c.webp", "notes.txt"]);
        // A missing path and a FIFO in a folder are reported, the rest still listed.
        assert!(std::process::Command::new("mkfifo").arg(dir.path().join("sub/f.png")).status().unwrap().success());
        let (got, problems) = expand_inputs(&[dir.path().join("nope.png"), dir.path().into()]);
        assert_eq!(got.len(), 3);
        let shown: Vec<String> = problems.iter().map(|(p, why)| format!("{}: {why}", p.display())).collect();
        assert!(shown[0].contains("nope.png") && shown[0].contains("no such file"), "{shown:?}");
        assert!(shown[1].contains("f.png") && shown[1].contains("not a regular file"), "{shown:?}");
    }

    #[test]
    fn paths_that_are_not_utf8_are_escaped() {
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(std::ffi::OsStr::from_bytes(b"dir/caf\xE9.png"));
        assert_eq!(path_text(p), "dir/caf\\xE9.png");
        assert_eq!(path_text(Path::new("ok/été.png")), "ok/été.png");
    }
}
