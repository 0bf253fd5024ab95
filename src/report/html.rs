//! `rbl report RUN_DIR`: one self-contained HTML page per run (config, final table, plots,
//! feature pictures, the epoch log), the images embedded as data URIs so the file can be
//! mailed, archived or opened offline without its run folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{RblError, Result};
use crate::metrics::ClassificationReport;
use crate::report::plots::plot_run;
use crate::report::run_dir::RunDir;
use crate::report::{EpochRecord, FinalMetrics, write_atomic};

/// The page's section anchors, in order; a reader (or a test) can check each is there.
pub const SECTIONS: [&str; 7] = ["config", "results", "curves", "per-class", "neural-collapse", "features", "epochs"];

/// Writes `RUN_DIR/report.html` (regenerating the run's plots first) and returns its path.
pub fn write_report(run: &RunDir) -> Result<PathBuf> {
    let run_dir = run.path();
    let config_path = run.config();
    let config = std::fs::read_to_string(&config_path).map_err(|e| RblError::io(&config_path, e))?;
    let log = run.read_epoch_log()?;
    let metrics = run.read_metrics()?;
    let plots = run.plots();
    plot_run(&log, metrics.as_ref(), &plots)?;
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
    section(&mut page, "config", "Config", &format!("<pre>{}</pre>", escape(&config)));
    section(&mut page, "results", "Final results", &results_html(metrics.as_ref()));
    section(&mut page, "curves", "Accuracy and cross-entropy per epoch", &image_or_note(&plots.join("curves.png"))?);
    section(&mut page, "per-class", "Per-class test accuracy against class size", &image_or_note(&plots.join("per_class.png"))?);
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
    page += SCRIPT;
    page += "</body></html>\n";
    let out = run.report();
    write_atomic(&out, page.as_bytes())?;
    Ok(out)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}\
th{background:#eee}pre{background:#f6f6f6;padding:1em;overflow:auto}img{max-width:100%}.note{color:#666}";

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
