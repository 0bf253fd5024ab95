//! The confusion matrix as a picture: rows the true class, columns the predicted one, each
//! cell shaded by the fraction of its row (so a tail class of ten images reads as clearly as a
//! head class of thousands), raw and logit-adjusted side by side. Class names label the axes
//! up to [`MAX_NAMED`] classes; beyond that the grid alone shows where the mass goes.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{RblError, Result};
use crate::metrics::confusion::Confusion;
use crate::report::plots::register_font;

/// Classes whose names are written on the axes; more would not be legible.
pub const MAX_NAMED: usize = 40;

/// Writes `stem.png` and `stem.svg` and returns both paths.
pub fn plot_confusion(stem: &Path, confusion: &Confusion, names: &[String], tau: f64) -> Result<[PathBuf; 2]> {
    register_font();
    let c = confusion.classes;
    let label_room =
        if c <= MAX_NAMED { 12 + 7 * names.iter().take(c).map(|n| n.chars().count().min(18)).max().unwrap_or(4) as u32 } else { 20 };
    let cell = (520 / c.max(1)).clamp(2, 40) as u32;
    let side = cell * c as u32;
    let size = (2 * (side + label_room + 30), side + label_room + 60);
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let fail = |p: &Path, e: String| RblError::Format { path: p.into(), msg: format!("cannot draw: {e}") };
    let png_tmp = png.with_file_name(format!(".{}.tmp.png", stem.file_name().unwrap_or_default().to_string_lossy()));
    let titles = ["raw predictions".to_string(), format!("adjusted (τ = {tau})")];
    {
        let root = BitMapBackend::new(&png_tmp, size).into_drawing_area();
        draw(&root, confusion, names, &titles, (cell, label_room)).map_err(|e| fail(&png, e))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw(&root, confusion, names, &titles, (cell, label_room)).map_err(|e| fail(&svg, e))?;
        root.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    std::fs::rename(&png_tmp, &png).map_err(|e| RblError::io(&png, e))?;
    crate::report::write_atomic(&svg, text.as_bytes())?;
    Ok([png, svg])
}

/// Both matrices on `root`, each in its half.
fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: &Confusion,
    names: &[String],
    titles: &[String; 2],
    (cell, label_room): (u32, u32),
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let halves = root.split_evenly((1, 2));
    let c = m.classes;
    for (half, (title, adjusted)) in halves.iter().zip(titles.iter().zip([false, true])) {
        let text = |size| TextStyle::from(("sans-serif", size).into_font()).color(&BLACK);
        half.draw(&Text::new(title.clone(), (label_room as i32, 8), text(16))).map_err(|e| e.to_string())?;
        let (x0, y0) = (label_room as i32, 36);
        for i in 0..c {
            let row = m.row(adjusted, i);
            let total = row.iter().sum::<u32>().max(1) as f64;
            for (j, &n) in row.iter().enumerate() {
                let f = n as f64 / total;
                // White (0) to dark blue (1); the diagonal in green tones, so hits and
                // confusions read apart.
                let shade = |full: u8| (255.0 - f * (255.0 - full as f64)).round() as u8;
                let colour = if i == j { RGBColor(shade(20), shade(120), shade(40)) } else { RGBColor(shade(20), shade(40), shade(160)) };
                let (x, y) = (x0 + (j as u32 * cell) as i32, y0 + (i as u32 * cell) as i32);
                half.draw(&Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], colour.filled())).map_err(|e| e.to_string())?;
            }
            if c <= MAX_NAMED {
                let name: String = names.get(i).map(|n| n.chars().take(18).collect()).unwrap_or_else(|| i.to_string());
                let style = text(11).pos(Pos::new(HPos::Right, VPos::Center));
                let y = y0 + (i as u32 * cell + cell / 2) as i32;
                half.draw(&Text::new(name.clone(), (x0 - 4, y), style)).map_err(|e| e.to_string())?;
                let style = text(11).pos(Pos::new(HPos::Right, VPos::Center)).transform(FontTransform::Rotate270);
                let x = x0 + (i as u32 * cell + cell / 2) as i32;
                half.draw(&Text::new(name, (x, y0 + (c as u32 * cell) as i32 + 4), style)).map_err(|e| e.to_string())?;
            }
        }
        let border = [(x0, y0), (x0 + (c as u32 * cell) as i32, y0 + (c as u32 * cell) as i32)];
        half.draw(&Rectangle::new(border, BLACK.stroke_width(1))).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_both_matrices_with_the_class_names() {
        let dir = tempfile::tempdir().unwrap();
        let m = Confusion { classes: 3, raw: vec![5, 0, 0, 2, 1, 0, 1, 0, 0], adjusted: vec![4, 1, 0, 0, 3, 0, 0, 0, 1] };
        let names: Vec<String> = ["Sandal", "Bag", "Ankle boot"].map(String::from).to_vec();
        let [png, svg] = plot_confusion(&dir.path().join("confusion"), &m, &names, 1.0).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 500);
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("Ankle boot") && text.contains("adjusted (τ = 1)") && text.contains("raw predictions"));
        assert_eq!(text.matches("Sandal").count(), 4, "row and column label in each of the two matrices");
    }
}
