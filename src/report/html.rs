//! `rbl report RUN_DIR`: one self-contained HTML page per run, results first: the summary,
//! the per-class table (names, counts, raw and adjusted accuracy, shot group) and the confusion
//! matrices, then the curves, neural-collapse metrics, feature pictures and epoch log, and the
//! config last, folded. The images are embedded as data URIs so the file can be mailed,
//! archived or opened offline without its run folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{RblError, Result};
use crate::metrics::ClassificationReport;
use crate::report::confusion_plot::plot_confusion;
use crate::report::plots::plot_run;
use crate::report::run_dir::RunDir;
use crate::report::{ClassResult, EpochRecord, FinalMetrics, write_atomic};

/// The page's section anchors, in order; a reader (or a test) can check each is there.
pub const SECTIONS: [&str; 8] = ["summary", "per-class", "confusion", "curves", "neural-collapse", "features", "epochs", "config"];

/// Writes `RUN_DIR/report.html` (regenerating the run's plots first) and returns its path.
pub fn write_report(run: &RunDir) -> Result<PathBuf> {
    let run_dir = run.path();
    let config_path = run.config();
    let config = crate::files::read_text_capped(&config_path, 1 << 20)?;
    let log = run.read_epoch_log()?;
    let metrics = run.read_metrics()?;
    let plots = run.plots();
    plot_run(&log, metrics.as_ref(), &plots)?;
    let names = class_names(run, metrics.as_ref())?;
    let confusion = match (run.read_confusion()?, metrics.as_ref()) {
        (Some(c), Some(m)) => {
            plot_confusion(&plots.join("confusion"), &c, &names, m.test.tau)?;
            image(&plots.join("confusion.png"))?
        }
        _ => "<p class=\"note\">No confusion matrix: the run has not finished, or was trained before rbl kept it.</p>".into(),
    };
    let mut pictures: Vec<PathBuf> = match std::fs::read_dir(run.features()) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "png")).collect(),
        Err(_) => Vec::new(),
    };
    pictures.sort();

    let title = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rbl report: {t}</title>\n<style>{STYLE}</style></head>\n\
         <body data-images-total=\"?\" data-images-broken=\"?\">\n<h1>rbl report: {t}</h1>\n",
        t = escape(&title)
    );
    section(&mut page, "summary", "Results", &results_html(metrics.as_ref()));
    let per_class = format!("{}{}", class_table_html(metrics.as_ref()), image_or_note(&plots.join("per_class.png"))?);
    section(&mut page, "per-class", "Per class: test accuracy against training images", &per_class);
    section(&mut page, "confusion", "Confusion matrices (rows: true class; shade: fraction of the row)", &confusion);
    section(&mut page, "curves", "Accuracy and cross-entropy per epoch", &image_or_note(&plots.join("curves.png"))?);
    section(&mut page, "neural-collapse", "Neural-collapse metrics", &image_or_note(&plots.join("neural_collapse.png"))?);
    let mut features = String::new();
    for p in &pictures {
        let name = p.file_stem().map(|s| s.to_string_lossy().replace('_', " ")).unwrap_or_default();
        let _ = write!(features, "<h3>{}</h3>{}", escape(&name), image(p)?);
    }
    if pictures.is_empty() {
        features = "<p class=\"note\">No feature pictures: set <code>eval.feature_epochs</code> to draw them.</p>".into();
    }
    section(&mut page, "features", "Feature pictures (PCA of train and test features, class directions as arrows)", &features);
    section(&mut page, "epochs", "Epoch log", &epochs_html(&log));
    let folded = format!("<details><summary>config.toml (click to show)</summary><pre>{}</pre></details>", escape(&config));
    section(&mut page, "config", "Config", &folded);
    page += SCRIPT;
    page += "</body></html>\n";
    let out = run.report();
    write_atomic(&out, page.as_bytes())?;
    Ok(out)
}

/// The class names of a run: from its final metrics, else its `dataset.json`, else numbers.
fn class_names(run: &RunDir, metrics: Option<&FinalMetrics>) -> Result<Vec<String>> {
    if let Some(m) = metrics.filter(|m| !m.classes.is_empty()) {
        return Ok(m.classes.iter().map(|c| c.name.clone()).collect());
    }
    if let Some(card) = run.read_dataset_card()? {
        return Ok(card.class_names);
    }
    let c = metrics.map_or(0, |m| m.train_counts.len());
    Ok((0..c).map(|i| format!("class {i}")).collect())
}

/// The per-class table: one row per class, in label order.
fn class_table_html(metrics: Option<&FinalMetrics>) -> String {
    let Some(m) = metrics else { return String::new() };
    if m.classes.is_empty() {
        return "<p class=\"note\">No per-class table: the run was trained before rbl kept one (the plot below has the numbers).</p>"
            .into();
    }
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
    let mut s = format!(
        "<table class=\"classes\"><tr><th>class</th><th>label</th><th>training images</th><th>test images</th>\
         <th>top-1 % raw</th><th>top-1 % adjusted (τ = {})</th><th>shot</th></tr>",
        m.test.tau
    );
    for (label, ClassResult { name, train_images, test_images, raw, adjusted, shot }) in m.classes.iter().enumerate() {
        let _ = write!(
            s,
            "<tr class=\"{shot}\"><td class=\"name\">{}</td><td>{label}</td><td>{train_images}</td><td>{test_images}</td>\
             <td>{}</td><td>{}</td><td class=\"name\">{shot}</td></tr>",
            escape(name),
            cell(*raw),
            cell(*adjusted)
        );
    }
    s + "</table>"
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}\
th{background:#eee}td.name{text-align:left}tr.few td{background:#fff4e8}tr.many td{background:#eef4ff}\
pre{background:#f6f6f6;padding:1em;overflow:auto}img{max-width:100%}.note{color:#666}\
summary{cursor:pointer;color:#036}";

/// Marks on `<body>` how many images decoded, so a headless browser can check the page renders
/// (`scripts/check_report.sh`).
const SCRIPT: &str = "<script>window.addEventListener('load',function(){var imgs=document.images,bad=0;\
for(var i=0;i<imgs.length;i++){if(!imgs[i].complete||imgs[i].naturalWidth===0){bad++;}}\
document.body.setAttribute('data-images-total',imgs.length);document.body.setAttribute('data-images-broken',bad);});</script>\n";

fn section(page: &mut String, id: &str, heading: &str, body: &str) {
    let _ = write!(page, "<section id=\"{id}\"><h2>{}</h2>\n{body}\n</section>\n", escape(heading));
}

fn image_or_note(path: &Path) -> Result<String> {
    if path.is_file() { image(path) } else { Ok("<p class=\"note\">Not logged for this run.</p>".into()) }
}

fn image(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| RblError::io(path, e))?;
    let alt = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(format!("<img alt=\"{}\" src=\"data:image/png;base64,{}\">", escape(&alt), base64(&bytes)))
}

fn results_html(metrics: Option<&FinalMetrics>) -> String {
    let Some(m) = metrics else {
        return "<p class=\"note\">The run has not finished: no final metrics yet.</p>".into();
    };
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into());
    let row = |name: &str, f: &dyn Fn(&ClassificationReport) -> Option<f64>| {
        format!("<tr><th>{name}</th><td>{}</td><td>{}</td></tr>", cell(f(&m.test.raw)), cell(f(&m.test.adjusted)))
    };
    let mut s = format!(
        "<p>Epoch {} (the last; no selection on the test set), {} test images, {:.0} s of training.</p>\
         <table><tr><th>test top-1 %</th><th>raw</th><th>adjusted (τ = {})</th></tr>",
        m.epoch, m.test.images, m.wall_seconds, m.test.tau
    );
    s += &row("overall", &|r| Some(r.top1));
    s += &row("many", &|r| r.many);
    s += &row("medium", &|r| r.medium);
    s += &row("few", &|r| r.few);
    s += "</table>";
    if let Some(v) = &m.val {
        s += &format!("<p>Validation: raw {:.2}%, adjusted {:.2}%.</p>", v.raw.top1, v.adjusted.top1);
    }
    if let Some(e) = m.rotation_orthogonality_error {
        s += &format!("<p>Rotation orthogonality max |RᵀR − I| = {e:.1e}.</p>");
    }
    s
}

fn epochs_html(log: &[EpochRecord]) -> String {
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into());
    let mut s = String::from(
        "<table><tr><th>epoch</th><th>lr</th><th>train loss</th><th>train acc (batches)</th><th>train acc (eval)</th>\
         <th>test loss</th><th>test acc</th><th>test adjusted</th><th>img/s</th><th>loader wait s</th></tr>",
    );
    for r in log {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.2}</td></tr>",
            r.epoch,
            r.lr,
            r.train_loss,
            r.train_acc,
            cell(r.train_eval_acc),
            r.test_loss.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into()),
            cell(r.test_acc),
            cell(r.test_acc_adjusted),
            r.train_images_per_second,
            r.loader_wait_seconds
        );
    }
    s + "</table>"
}

/// HTML-escapes text.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Standard base64 with padding (RFC 4648), for data URIs.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, coded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
