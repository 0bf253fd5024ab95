//! Feature pictures (the paper's "features visualization" figures): the penultimate features
//! of the training and test sets projected onto the training features' first two principal
//! components, coloured by class, with each class's classifier direction drawn from the centre.
//!
//! Both panels share the training plane, so a test cloud that drifts off its class's direction
//! shows the generalisation gap the paper attributes to the frame's directions.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::head::host_linalg::Mat;
use crate::metrics::pca::Pca2;
use crate::report::plots::{Panel, Series, draw_figure_sized};

/// At most this many points per class and panel, so a head class does not bury the others
/// and the SVG stays small; taken at an even stride through the set, so deterministic.
const POINTS_PER_CLASS: usize = 300;

/// Features of one set, row-major `[N, d]`, with labels.
#[derive(Debug, Clone, Copy)]
pub struct LabelledFeatures<'a> {
    /// Panel title, e.g. "train".
    pub name: &'a str,
    /// Row-major `[N, d]`.
    pub features: &'a [f32],
    /// Class of each row.
    pub labels: &'a [usize],
}

/// Draws `stem.png` / `stem.svg`: one panel per set, all in the PCA plane of the first set,
/// with the columns of `directions` (d × C) as arrows. `caption` heads each panel; the legend
/// names each class by `class_names` (`class N` past its end).
pub fn plot_features(
    stem: &Path,
    caption: &str,
    sets: &[LabelledFeatures<'_>],
    directions: &Mat,
    class_names: &[String],
) -> Result<[PathBuf; 2]> {
    let dim = directions.rows;
    let classes = directions.cols;
    let pca = Pca2::fit(sets[0].features, dim);
    let panels = sets
        .iter()
        .map(|set| {
            let points = pca.project(set.features);
            let radius = spread(&points);
            let mut series: Vec<Series> = (0..classes)
                .map(|c| {
                    let of_class: Vec<(f64, f64)> = points.iter().zip(set.labels).filter(|(_, y)| **y == c).map(|(p, _)| *p).collect();
                    let stride = of_class.len().div_ceil(POINTS_PER_CLASS).max(1);
                    let shown: Vec<(f64, f64)> = of_class.iter().step_by(stride).cloned().collect();
                    let name = class_names.get(c).cloned().unwrap_or_else(|| format!("class {c}"));
                    Series::scatter(format!("{name} ({})", of_class.len()), shown).with_color(c).with_radius(2)
                })
                .collect();
            let tips: Vec<(f64, f64)> =
                (0..classes).map(|c| pca.project_direction(&(0..dim).map(|k| directions.at(k, c)).collect::<Vec<_>>())).collect();
            let longest = tips.iter().map(|(a, b)| a.hypot(*b)).fold(0.0, f64::max);
            let scale = if longest > 0.0 { radius / longest } else { 0.0 };
            for (c, (a, b)) in tips.into_iter().enumerate() {
                series.push(Series::line("", vec![(0.0, 0.0), (a * scale, b * scale)]).with_color(c));
                series.push(Series::scatter("", vec![(a * scale, b * scale)]).with_color(c).with_radius(6));
            }
            Panel {
                title: format!("{caption}: {} (PC1 {:.0}%, PC2 {:.0}%)", set.name, 100.0 * pca.explained[0], 100.0 * pca.explained[1]),
                x_label: "PC1 of the training features".into(),
                y_label: "PC2".into(),
                log_x: false,
                series,
            }
        })
        .collect::<Vec<_>>();
    draw_figure_sized(stem, &panels, panels.len(), (760, 620))
}

/// The 95th percentile of the points' distance from the centre: how long the longest arrow is
/// drawn, so arrows reach the clouds without outliers setting the scale.
fn spread(points: &[(f64, f64)]) -> f64 {
    let mut r: Vec<f64> = points.iter().map(|(a, b)| a.hypot(*b)).filter(|r| r.is_finite()).collect();
    if r.is_empty() {
        return 1.0;
    }
    r.sort_by(f64::total_cmp);
    r[(r.len() - 1) * 95 / 100]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_panel_per_set_with_every_class_and_direction() {
        // Three classes at the vertices of a triangle in R³, the frame pointing at them.
        let dirs = Mat { rows: 3, cols: 3, data: vec![1.0, -0.5, -0.5, 0.0, 0.866, -0.866, 0.0, 0.0, 0.0] };
        let mut feats = Vec::new();
        let mut labels = Vec::new();
        for i in 0..90 {
            let c = i % 3;
            let jitter = (i as f32 * 0.37).sin() * 0.1;
            feats.extend([dirs.at(0, c) as f32 + jitter, dirs.at(1, c) as f32 - jitter, jitter]);
            labels.push(c);
        }
        let dir = tempfile::tempdir().unwrap();
        let sets = [
            LabelledFeatures { name: "train", features: &feats, labels: &labels },
            LabelledFeatures { name: "test", features: &feats[..90], labels: &labels[..30] },
        ];
        let names: Vec<String> = ["T-shirt", "Trouser"].map(String::from).to_vec();
        let [png, svg] = plot_features(&dir.path().join("features"), "epoch 3", &sets, &dirs, &names).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 1000);
        let text = std::fs::read_to_string(&svg).unwrap();
        assert_eq!(text.matches("train (PC1").count(), 1);
        assert_eq!(text.matches("test (PC1").count(), 1);
        for (c, name) in ["T-shirt", "Trouser", "class 2"].iter().enumerate() {
            assert_eq!(text.matches(&format!("{name} (30)")).count(), 1, "train legend of class {c}");
            assert_eq!(text.matches(&format!("{name} (10)")).count(), 1, "test legend of class {c}");
        }
    }
}
