//! Classifying image files with a trained run (`rbl predict`): each file goes through the run's
//! own evaluation preprocessing (on-disk datasets: resize to size·8/7 and centre crop; in-memory
//! ones: shorter side resized to the training images' side, centre crop, grey converted as PIL's
//! `convert("L")` does), then the run's normalisation and network. Probabilities are the softmax
//! of the raw logits and of the logits minus τ·log π (the run's prediction rule).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::data::ImageSet;
use crate::data::decode::RgbImage;
use crate::data::image_set::FileImages;
use crate::data::resize::{resize, resize_center_crop};
use crate::error::{RblError, Result};
use crate::metrics::logit_adjust::{adjust_logits, log_prior};
use crate::train::evaluate::forward_all;
use crate::train::trained_run::TrainedRun;

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

/// The top k classes of one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The file, as given (or found in a given folder).
    pub path: PathBuf,
    /// Classes by decreasing adjusted probability.
    pub top: Vec<ClassScore>,
}

/// The image files named by `inputs`: files as they are, folders searched (recursively, sorted)
/// for JPEG, PNG and WebP files. A path that does not exist is an error naming it.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let before = files.len();
            crate::data::image_folder::image_files(p, &mut files)?;
            if files.len() == before {
                return Err(RblError::format(p, "holds no JPEG, PNG or WebP file"));
            }
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(RblError::io(p, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder")));
        }
    }
    Ok(files)
}

/// PIL's `convert("L")`: L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16 (ITU-R 601 weights).
fn grey(img: &RgbImage) -> Vec<u8> {
    let n = img.width * img.height;
    let (r, g, b) = (&img.pixels[..n], &img.pixels[n..2 * n], &img.pixels[2 * n..]);
    (0..n).map(|i| ((19595 * r[i] as u32 + 38470 * g[i] as u32 + 7471 * b[i] as u32 + 32768) >> 16) as u8).collect()
}

/// A decoded file as an in-memory dataset image of `channels` × `height` × `width`.
pub fn to_model_input(img: &RgbImage, channels: usize, height: usize, width: usize) -> Vec<u8> {
    let sized = if height == width { resize_center_crop(img, height, height) } else { resize(img, width, height) };
    if channels == 1 { grey(&sized) } else { sized.pixels }
}

/// The files as a set in the run's input format (labels are placeholders).
fn input_set(template: &ImageSet, files: &[PathBuf]) -> Result<ImageSet> {
    let mut set = ImageSet {
        pixels: Vec::new(),
        labels: vec![0; files.len()],
        num_classes: template.num_classes,
        channels: template.channels,
        height: template.height,
        width: template.width,
        files: None,
    };
    match &template.files {
        Some(t) => {
            set.files = Some(Arc::new(FileImages { root: PathBuf::new(), paths: files.to_vec(), size: t.size, skip_bad: false }));
        }
        None => {
            for f in files {
                let img = crate::data::folder::read_image(f)?;
                set.pixels.extend(to_model_input(&img, set.channels, set.height, set.width));
            }
        }
    }
    Ok(set)
}

fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let e: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Classifies `files` (at most `chunk` decoded at a time), returning each file's `top_k`
/// classes at logit-adjustment strength `tau`.
pub fn predict_files(run: &TrainedRun, files: &[PathBuf], tau: f64, top_k: usize, batch_size: usize) -> Result<Vec<Prediction>> {
    if !tau.is_finite() {
        return Err(RblError::Config { origin: "--tau".into(), msg: format!("{tau} is not a finite number") });
    }
    let ctx = &run.ctx;
    let names = crate::data::class_names::class_names(&ctx.cfg.data, ctx.train.num_classes)?;
    let prior = log_prior(&ctx.train_counts);
    let c = ctx.train.num_classes;
    let mut out = Vec::with_capacity(files.len());
    const CHUNK: usize = 4096;
    for part in files.chunks(CHUNK) {
        let set = Arc::new(input_set(&ctx.train, part)?);
        let pass = forward_all(&run.net, &set, &ctx.eval_aug, batch_size.max(1), &ctx.device, false)?;
        let mut adjusted = pass.logits.clone();
        adjust_logits(&mut adjusted, &prior, tau);
        for (k, path) in part.iter().enumerate() {
            let raw = softmax(&pass.logits[k * c..(k + 1) * c]);
            let adj = softmax(&adjusted[k * c..(k + 1) * c]);
            let mut order: Vec<usize> = (0..c).collect();
            order.sort_by(|&a, &b| adj[b].total_cmp(&adj[a]).then(a.cmp(&b)));
            let top = order
                .into_iter()
                .take(top_k.max(1))
                .map(|class| ClassScore { class, name: names[class].clone(), probability: raw[class], adjusted_probability: adj[class] })
                .collect();
            out.push(Prediction { path: path.clone(), top });
        }
    }
    Ok(out)
}

/// The table `rbl predict` prints: one block per file.
pub fn format_table(predictions: &[Prediction], tau: f64) -> String {
    let mut s = String::new();
    for p in predictions {
        s.push_str(&format!("{}\n", p.path.display()));
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
    fn grey_matches_pils_integer_formula() {
        // PIL: L = R*299/1000 + G*587/1000 + B*114/1000, as (19595, 38470, 7471) / 65536 rounded.
        let img = RgbImage { width: 3, height: 1, pixels: vec![255, 0, 10, 0, 255, 20, 0, 0, 30] };
        let by_hand = |r: f64, g: f64, b: f64| (0.299 * r + 0.587 * g + 0.114 * b).round() as u8;
        assert_eq!(grey(&img), vec![by_hand(255.0, 0.0, 0.0), by_hand(0.0, 255.0, 0.0), by_hand(10.0, 20.0, 30.0)]);
    }

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
        let got = expand_inputs(&[dir.path().into(), dir.path().join("notes.txt")]).unwrap();
        let rel: Vec<_> = got.iter().map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
        assert_eq!(rel, vec!["a.JPG", "b.png", "sub/c.webp", "notes.txt"]);
        let e = expand_inputs(&[dir.path().join("nope.png")]).unwrap_err().to_string();
        assert!(e.contains("nope.png") && e.contains("no such file"), "{e}");
    }
}
