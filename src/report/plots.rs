//! Plots of runs as PNG and SVG: learning curves, neural-collapse metrics, per-class accuracy
//! against class size, and side-by-side comparisons of runs (the layout of the RBL paper's
//! Figures 3 and 4: accuracy and cross-entropy on train and test, one line per run).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{RblError, Result};
use crate::report::{EpochRecord, FinalMetrics};

/// One line (or point set) of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
    /// Draw points instead of a line.
    pub scatter: bool,
    /// Palette index of the colour (default: the series' position in the panel), so a class
    /// keeps one colour across its points and its classifier direction.
    pub color: Option<usize>,
    /// Point radius in pixels for scatter series (0: the default, 4).
    pub radius: u32,
}

impl Series {
    /// A line through `points`.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { label: label.into(), points, scatter: false, color: None, radius: 0 }
    }

    /// A point set; an empty label keeps it out of the legend.
    pub fn scatter(label: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { scatter: true, ..Series::line(label, points) }
    }

    /// The same series in palette colour `index`.
    pub fn with_color(mut self, index: usize) -> Series {
        self.color = Some(index);
        self
    }

    /// The same series with points of `radius` pixels.
    pub fn with_radius(mut self, radius: u32) -> Series {
        self.radius = radius;
        self
    }
}

/// One chart of a figure.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the chart.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// The lines.
    pub series: Vec<Series>,
}

static FONT: Once = Once::new();

/// Registers the bundled DejaVu Sans, so plots need no system fonts.
pub(crate) fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| ()).expect("bundled font parses");
    });
}

/// Writes `stem.png` and `stem.svg`, `panels` on a grid of `columns` columns. Returns both paths.
pub fn draw_figure(stem: &Path, panels: &[Panel], columns: usize) -> Result<[PathBuf; 2]> {
    draw_figure_sized(stem, panels, columns, (480, 360))
}

/// [`draw_figure`] with panels of `panel_size` pixels (scatter plots need room).
pub fn draw_figure_sized(stem: &Path, panels: &[Panel], columns: usize, panel_size: (u32, u32)) -> Result<[PathBuf; 2]> {
    register_font();
    let columns = columns.max(1).min(panels.len().max(1));
    let rows = panels.len().div_ceil(columns).max(1);
    let size = (panel_size.0 * columns as u32, panel_size.1 * rows as u32);
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    // The PNG encoder picks the format from the extension, so the temporary name ends in .png.
    let tmp = |p: &Path| p.with_file_name(format!(".{}.tmp.png", p.file_stem().unwrap().to_string_lossy()));
    let fail = |p: &Path, e: String| RblError::Format { path: p.into(), msg: format!("cannot draw: {e}") };
    let png_tmp = tmp(&png);
    {
        let root = BitMapBackend::new(&png_tmp, size).into_drawing_area();
        draw_panels(&root, panels, rows, columns).map_err(|e| fail(&png, e))?;
        root.present().map_err(|e| fail(&png, e.to_string()))?;
    }
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        draw_panels(&root, panels, rows, columns).map_err(|e| fail(&svg, e))?;
        root.present().map_err(|e| fail(&svg, e.to_string()))?;
    }
    std::fs::rename(&png_tmp, &png).map_err(|e| RblError::io(&png, e))?;
    crate::report::write_atomic(&svg, text.as_bytes())?;
    Ok([png, svg])
}

fn draw_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel],
    rows: usize,
    columns: usize,
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((rows, columns));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, panel).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn bounds(panel: &Panel) -> ((f64, f64), (f64, f64)) {
    let pts = panel.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let pad = ((y1 - y0) * 0.05).max(1e-9);
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if !panel.log_x && panel.series.iter().any(|s| s.scatter) {
        let pad_x = (x1 - x0) * 0.05;
        (x0, x1) = (x0 - pad_x, x1 + pad_x);
    }
    ((x0, x1), (y0 - pad, y1 + pad))
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> std::result::Result<(), Box<dyn std::error::Error + 'static>>
where
    DB::ErrorType: 'static,
{
    let ((x0, x1), (y0, y1)) = bounds(panel);
    let mut builder = ChartBuilder::on(area);
    builder.caption(&panel.title, ("sans-serif", 18)).margin(10).x_label_area_size(36).y_label_area_size(50);
    if panel.log_x {
        let mut chart = builder.build_cartesian_2d((x0.max(1e-9)..x1 * 1.1).log_scale(), y0..y1)?;
        chart.configure_mesh().x_desc(panel.x_label.as_str()).y_desc(panel.y_label.as_str()).label_style(("sans-serif", 12)).draw()?;
        draw_series(&mut chart, panel)?;
        chart.configure_series_labels().background_style(WHITE.mix(0.6)).border_style(BLACK).label_font(("sans-serif", 12)).draw()?;
    } else {
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
        chart.configure_mesh().x_desc(panel.x_label.as_str()).y_desc(panel.y_label.as_str()).label_style(("sans-serif", 12)).draw()?;
        draw_series(&mut chart, panel)?;
        chart.configure_series_labels().background_style(WHITE.mix(0.6)).border_style(BLACK).label_font(("sans-serif", 12)).draw()?;
    }
    Ok(())
}

fn draw_series<'a, DB: DrawingBackend + 'a, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    panel: &Panel,
) -> std::result::Result<(), Box<dyn std::error::Error + 'static>>
where
    CT: plotters::coord::CoordTranslate<From = (f64, f64)>,
    DB::ErrorType: 'static,
{
    for (i, s) in panel.series.iter().enumerate() {
        let color = Palette99::pick(s.color.unwrap_or(i)).to_rgba();
        let pts: Vec<(f64, f64)> = s.points.iter().cloned().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        if pts.is_empty() {
            continue;
        }
        let radius = if s.radius == 0 { 4 } else { s.radius as i32 };
        let drawn = if s.scatter {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, radius, color.filled())))?
        } else {
            chart.draw_series(LineSeries::new(pts, color.stroke_width(2)))?
        };
        if s.label.is_empty() {
            continue;
        }
        if s.scatter {
            drawn.label(s.label.as_str()).legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
        } else {
            drawn.label(s.label.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    Ok(())
}

fn line(label: &str, log: &[EpochRecord], f: impl Fn(&EpochRecord) -> Option<f64>) -> Series {
    Series::line(label, log.iter().filter_map(|r| f(r).map(|v| (r.epoch as f64, v))).collect())
}

fn panel(title: &str, y: &str, series: Vec<Series>) -> Panel {
    Panel { title: title.into(), x_label: "epoch".into(), y_label: y.into(), log_x: false, series }
}

/// The figures of one run, written into `out`: curves, per-class accuracy and, when logged,
/// neural-collapse metrics. Returns the files written.
pub fn plot_run(log: &[EpochRecord], metrics: Option<&FinalMetrics>, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| RblError::io(out, e))?;
    let mut files = Vec::new();
    let curves = vec![
        panel(
            "accuracy",
            "top-1 %",
            vec![
                line("train (augmented batches)", log, |r| Some(r.train_acc)),
                line("train (eval mode)", log, |r| r.train_eval_acc),
                line("test", log, |r| r.test_acc),
                line("test, adjusted", log, |r| r.test_acc_adjusted),
            ],
        ),
        panel(
            "cross-entropy",
            "loss",
            vec![
                line("train (augmented batches)", log, |r| Some(r.train_loss)),
                line("train (eval mode)", log, |r| r.train_eval_loss),
                line("test", log, |r| r.test_loss),
            ],
        ),
    ];
    files.extend(draw_figure(&out.join("curves"), &curves, 2)?);
    if log.iter().any(|r| r.neural_collapse.is_some()) {
        let nc = |f: fn(&crate::metrics::neural_collapse::NeuralCollapse) -> f64| move |r: &EpochRecord| r.neural_collapse.as_ref().map(f);
        let panels = vec![
            panel("NC1: Tr(Σ_W Σ_B⁺)/C", "NC1", vec![line("train features", log, nc(|n| n.nc1))]),
            panel(
                "NC2: equinorm and equiangularity",
                "value",
                vec![
                    line("equinorm (std/mean)", log, nc(|n| n.equinorm)),
                    line("equiangularity (std cos)", log, nc(|n| n.equiangularity)),
                    line("|cos + 1/(C−1)|", log, nc(|n| n.max_angle_distance)),
                ],
            ),
            panel("NC3: self-duality", "‖W̃ − M̃‖", vec![line("classifier vs means", log, nc(|n| n.self_duality))]),
            panel("NC4: agreement with nearest class mean", "fraction", vec![line("agreement", log, nc(|n| n.ncc_agreement))]),
        ];
        files.extend(draw_figure(&out.join("neural_collapse"), &panels, 2)?);
    }
    if let Some(m) = metrics {
        let points = |adjusted: bool| -> Vec<(f64, f64)> {
            let r = if adjusted { &m.test.adjusted } else { &m.test.raw };
            m.train_counts.iter().zip(&r.per_class).filter_map(|(&n, a)| a.map(|a| (n as f64, a))).collect()
        };
        let p = Panel {
            title: "per-class test accuracy vs training images".into(),
            x_label: "training images of the class (log)".into(),
            y_label: "test top-1 %".into(),
            log_x: true,
            series: vec![Series::scatter("raw", points(false)), Series::scatter(format!("adjusted (τ = {})", m.test.tau), points(true))],
        };
        files.extend(draw_figure(&out.join("per_class"), &[p], 1)?);
    }
    Ok(files)
}

/// Overlays runs (e.g. Fixed vs RBL) in the layout of the paper's Figures 3 and 4: train and
/// test accuracy, train and test cross-entropy, and the train − test gap, one line per run.
pub fn plot_comparison(runs: &[(String, Vec<EpochRecord>)], stem: &Path) -> Result<[PathBuf; 2]> {
    let per = |f: fn(&EpochRecord) -> Option<f64>| runs.iter().map(|(name, log)| line(name, log, f)).collect::<Vec<_>>();
    // The eval-mode figures on un-augmented images when every run logged them (eval.train_eval).
    let eval_mode = runs.iter().all(|(_, log)| log.iter().all(|r| r.train_eval_acc.is_some()));
    type Pick = fn(&EpochRecord) -> Option<f64>;
    let (train_acc, train_loss, how): (Pick, Pick, &str) = if eval_mode {
        (|r| r.train_eval_acc, |r| r.train_eval_loss, "eval mode")
    } else {
        (|r| Some(r.train_acc), |r| Some(r.train_loss), "augmented batches")
    };
    let panels = vec![
        panel(&format!("train accuracy ({how})"), "top-1 %", per(train_acc)),
        panel("test accuracy (raw)", "top-1 %", per(|r| r.test_acc)),
        panel("test accuracy (adjusted)", "top-1 %", per(|r| r.test_acc_adjusted)),
        panel(&format!("train cross-entropy ({how})"), "loss", per(train_loss)),
        panel("test cross-entropy", "loss", per(|r| r.test_loss)),
        panel(
            "generalisation gap: train − test top-1 (raw)",
            "points",
            runs.iter().map(|(name, log)| line(name, log, |r| Some(train_acc(r)? - r.test_acc?))).collect(),
        ),
    ];
    draw_figure(stem, &panels, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, acc: f64) -> EpochRecord {
        EpochRecord {
            train_loss: 2.0 / epoch as f64,
            train_acc: acc,
            test_loss: Some(2.5 / epoch as f64),
            test_acc: Some(acc - 10.0),
            test_acc_adjusted: Some(acc - 5.0),
            ..EpochRecord::bare(epoch)
        }
    }

    #[test]
    fn figures_are_written_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<EpochRecord> = (1..=5).map(|e| record(e, 50.0 + e as f64)).collect();
        let b: Vec<EpochRecord> = (1..=5).map(|e| record(e, 60.0 + e as f64)).collect();
        let [png, svg] = plot_comparison(&[("Fixed".into(), a.clone()), ("RBL".into(), b)], &dir.path().join("cmp")).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 1000);
        let text = std::fs::read_to_string(&svg).unwrap();
        // Series are drawn 2 px wide (the grid 1 px): 6 panels × 2 runs, plus a legend mark each.
        let series_lines =
            |t: &str| t.split("<polyline").skip(1).filter(|tag| tag.split('>').next().unwrap_or("").contains("stroke-width=\"2\"")).count();
        assert_eq!(series_lines(&text), 12 + 12, "lines and legend marks");
        assert!(
            text.contains("Fixed") && text.contains("RBL") && text.contains("test cross-entropy") && text.contains("generalisation gap")
        );
        assert!(text.contains("train accuracy (augmented batches)"), "no eval-mode train accuracy logged: the batch figures, said so");
        let files = plot_run(&a, None, &dir.path().join("run")).unwrap();
        assert_eq!(files.len(), 2, "curves only: no NC logged, no metrics");
        let text = std::fs::read_to_string(dir.path().join("run/curves.svg")).unwrap();
        assert_eq!(series_lines(&text), 2 * 5, "5 series and their legend marks");
    }
}
