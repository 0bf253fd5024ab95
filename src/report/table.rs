//! The comparison table of `rbl table`: rows are methods, columns are dataset / imbalance
//! ratio, cells are top-1 over the seeds that finished (mean ± std). A cell with no finished
//! run says so; nothing is filled in from elsewhere.

use std::collections::BTreeMap;

use crate::error::{RblError, Result};
use crate::report::EvalSummary;
#[cfg(test)]
use crate::report::FinalMetrics;
use crate::report::run_dir::{RunDir, read_json};

/// Which epoch's test scores a table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TableSelect {
    /// The last epoch (the headline).
    #[default]
    Last,
    /// The epoch best on the validation split (runs trained with `eval.select = "val"`).
    Val,
    /// The epoch best on the test set itself: the paper's protocol, optimistic; only for
    /// comparison with published numbers.
    BestTest,
}

impl TableSelect {
    /// The caption line of the table.
    pub fn caption(self) -> &'static str {
        match self {
            TableSelect::Last => "last epoch",
            TableSelect::Val => "epoch best on the validation split (eval.select = \"val\")",
            TableSelect::BestTest => {
                "BEST TEST EPOCH: the paper's protocol, optimistic (selected on the images it reports); for comparison with published numbers only"
            }
        }
    }
}

/// The test scores of a run under `select`: `Ok(None)` when the run has not finished, an
/// error naming the run when it cannot give them (a `val` table over runs trained without it).
pub fn selected_scores(run: &RunDir, select: TableSelect, adjusted: bool) -> Result<Option<EvalSummary>> {
    let Some(metrics) = run.read_metrics()? else { return Ok(None) };
    match select {
        TableSelect::Last => Ok(Some(metrics.test)),
        TableSelect::Val => match metrics.selected {
            Some(s) => Ok(Some(s.test)),
            None => Err(RblError::format(
                run.metrics(),
                "no validation-selected scores: the run was trained with eval.select = \"last\" (retrain with --set eval.select='\"val\"')",
            )),
        },
        TableSelect::BestTest => {
            let log = run.read_epoch_log()?;
            let score = |r: &&crate::report::EpochRecord| if adjusted { r.test_acc_adjusted } else { r.test_acc };
            let best = log
                .iter()
                .filter(|r| score(r).is_some())
                .max_by(|a, b| score(a).unwrap().total_cmp(&score(b).unwrap()).then(b.epoch.cmp(&a.epoch)));
            let Some(best) = best else { return Ok(Some(metrics.test)) };
            let shots = if adjusted { best.test_shots_adjusted } else { best.test_shots }.unwrap_or([None; 3]);
            let report = crate::metrics::ClassificationReport {
                top1: score(&best).unwrap(),
                many: shots[0],
                medium: shots[1],
                few: shots[2],
                per_class: Vec::new(),
            };
            let mut t = metrics.test;
            (t.raw, t.adjusted, t.loss) = (report.clone(), report, best.test_loss.unwrap_or(f64::NAN));
            Ok(Some(t))
        }
    }
}

/// One config's (or one two-stage result's) place in the table and its test scores, if the run
/// finished.
#[derive(Debug, Clone)]
pub struct TableEntry {
    /// Row label (the method).
    pub method: String,
    /// Column label (dataset and imbalance ratio).
    pub column: String,
    /// Where the config came from, for the list of missing runs.
    pub source: String,
    /// The finished run's test scores.
    pub test: Option<EvalSummary>,
}

/// The two-stage results `rbl stage2` / `rbl posthoc` leave in a run folder: file, row suffix,
/// and whether the method's own answer is the `adjusted` report (post-hoc logit adjustment at
/// its validated τ) rather than `raw` (a re-trained or re-scaled classifier).
pub const TWO_STAGE_RESULTS: [(&str, &str, &str, bool); 5] = [
    ("stage2", "crt", "cRT", false),
    ("stage2", "lws", "LWS", false),
    ("stage2", "marc", "MARC", false),
    ("posthoc", "tau-norm", "τ-norm", false),
    ("posthoc", "logit-adjust", "post-hoc LA", true),
];

/// The table entries of one run folder: the run itself (missing when it has no metrics.json)
/// and, with `two_stage`, one entry per two-stage result found beside it, labelled
/// "`method` + cRT" and so on. A two-stage result's cell is the method's own answer whichever
/// kind of table is drawn: both reports of its entry are set to it.
pub fn run_entries(method: &str, column: &str, source: &str, run: &RunDir, two_stage: bool) -> Result<Vec<TableEntry>> {
    run_entries_selected(method, column, source, run, two_stage, TableSelect::Last, true)
}

/// As [`run_entries`], the run's own cell taken under `select` (two-stage results are
/// computed from the last epoch's model, so a table of another selection leaves them out).
pub fn run_entries_selected(
    method: &str,
    column: &str,
    source: &str,
    run: &RunDir,
    two_stage: bool,
    select: TableSelect,
    adjusted: bool,
) -> Result<Vec<TableEntry>> {
    let test = selected_scores(run, select, adjusted)?;
    let mut out = vec![TableEntry { method: method.into(), column: column.into(), source: source.into(), test }];
    if two_stage && select == TableSelect::Last && out[0].test.is_some() {
        for (command, name, suffix, adjusted) in TWO_STAGE_RESULTS {
            let path = run.two_stage_result(command, name);
            let test: Option<EvalSummary> = read_json::<serde_json::Value>(&path)?
                .map(|v| serde_json::from_value(v["test"].clone()).map_err(|e| RblError::format(&path, format!("test: {e}"))))
                .transpose()?;
            if let Some(mut t) = test {
                let own = if adjusted { t.adjusted.clone() } else { t.raw.clone() };
                (t.raw, t.adjusted) = (own.clone(), own);
                out.push(TableEntry {
                    method: format!("{method} + {suffix}"),
                    column: column.into(),
                    source: path.display().to_string(),
                    test: Some(t),
                });
            }
        }
    }
    Ok(out)
}

/// What the cells show.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOptions {
    /// Which epoch (for the caption; the entries carry the scores).
    pub select: TableSelect,
    /// Logit-adjusted (τ of each run) rather than raw accuracy.
    pub adjusted: bool,
    /// Add many / medium / few under each top-1.
    pub shots: bool,
}

/// Mean and sample standard deviation (0 for a single value).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

fn fmt_cell(xs: &[f64]) -> String {
    match xs.len() {
        0 => "—".into(),
        1 => format!("{:.2}", xs[0]),
        n => {
            let (m, s) = mean_std(xs);
            format!("{m:.2} ± {s:.2} (n={n})")
        }
    }
}

/// Renders the Markdown table and, after it, the list of missing runs.
pub fn render_table(entries: &[TableEntry], opts: TableOptions) -> String {
    let mut columns: Vec<String> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    for e in entries {
        if !columns.contains(&e.column) {
            columns.push(e.column.clone());
        }
        if !rows.contains(&e.method) {
            rows.push(e.method.clone());
        }
    }
    let mut cells: BTreeMap<(usize, usize), Vec<&EvalSummary>> = BTreeMap::new();
    for e in entries {
        let key = (rows.iter().position(|r| r == &e.method).unwrap(), columns.iter().position(|c| c == &e.column).unwrap());
        let cell = cells.entry(key).or_default();
        if let Some(m) = &e.test {
            cell.push(m);
        }
    }
    let kind = if opts.adjusted { "adjusted" } else { "raw" };
    let mut out =
        format!("Top-1 % ({kind}, {}){}\n\n", opts.select.caption(), if opts.shots { ", with many / medium / few below" } else { "" });
    out += &format!("| method | {} |\n|---|{}\n", columns.join(" | "), "---|".repeat(columns.len()));
    for (r, row) in rows.iter().enumerate() {
        let mut line = format!("| {row} |");
        for c in 0..columns.len() {
            let runs = cells.get(&(r, c)).cloned().unwrap_or_default();
            let report = |m: &&EvalSummary| if opts.adjusted { m.adjusted.clone() } else { m.raw.clone() };
            let top1: Vec<f64> = runs.iter().map(|m| report(m).top1).collect();
            let mut cell = fmt_cell(&top1);
            if opts.shots && !runs.is_empty() {
                let pick = |f: fn(&crate::metrics::ClassificationReport) -> Option<f64>| -> String {
                    let v: Vec<f64> = runs.iter().filter_map(|m| f(&report(m))).collect();
                    if v.is_empty() { "-".into() } else { format!("{:.1}", mean_std(&v).0) }
                };
                cell += &format!("<br>{} / {} / {}", pick(|r| r.many), pick(|r| r.medium), pick(|r| r.few));
            }
            line += &format!(" {cell} |");
        }
        out += &line;
        out.push('\n');
    }
    let missing: Vec<&TableEntry> = entries.iter().filter(|e| e.test.is_none()).collect();
    if !missing.is_empty() {
        out += &format!("\nMissing ({} run(s) not finished; their cells count only finished seeds, \"—\" where none):\n", missing.len());
        for e in missing {
            out += &format!("- {} [{} / {}]\n", e.source, e.method, e.column);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ClassificationReport;
    use crate::report::EvalSummary;

    fn report(top1: f64) -> ClassificationReport {
        ClassificationReport { top1, many: Some(top1 + 1.0), medium: None, few: Some(top1 - 1.0), per_class: vec![] }
    }

    fn summary(raw: f64, adjusted: f64) -> EvalSummary {
        EvalSummary { loss: 0.0, raw: report(raw), adjusted: report(adjusted), tau: 1.0, images: 1, confusion: None }
    }

    fn entry(method: &str, column: &str, m: Option<f64>) -> TableEntry {
        TableEntry {
            method: method.into(),
            column: column.into(),
            source: format!("{method}-{column}.toml"),
            test: m.map(|t| summary(t, t)),
        }
    }

    #[test]
    fn two_stage_rows_show_each_method_own_answer() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, v: serde_json::Value| std::fs::write(dir.path().join(name), v.to_string()).unwrap();
        let metrics = FinalMetrics {
            name: "ce".into(),
            head: "linear".into(),
            epoch: 1,
            train_counts: vec![],
            test: summary(60.0, 70.0),
            val: None,
            wall_seconds: 0.0,
            rotation_orthogonality_error: None,
            selected: None,
            classes: Vec::new(),
        };
        // Before metrics.json exists the run is missing and its two-stage files are not read.
        write("stage2-crt.json", serde_json::json!({ "test": summary(75.0, 77.0) }));
        let e = run_entries("CE", "IR100", "ce.toml", &RunDir::new(dir.path()), true).unwrap();
        assert_eq!(e.len(), 1);
        assert!(e[0].test.is_none());
        write("metrics.json", serde_json::to_value(&metrics).unwrap());
        write("posthoc-logit-adjust.json", serde_json::json!({ "test": summary(60.0, 73.0), "chosen_tau": 0.8 }));
        let e = run_entries("CE", "IR100", "ce.toml", &RunDir::new(dir.path()), true).unwrap();
        let labels: Vec<&str> = e.iter().map(|e| e.method.as_str()).collect();
        assert_eq!(labels, ["CE", "CE + cRT", "CE + post-hoc LA"]);
        let raw = render_table(&e, TableOptions { adjusted: false, shots: false, ..Default::default() });
        let adj = render_table(&e, TableOptions { adjusted: true, shots: false, ..Default::default() });
        // cRT is its re-trained classifier (raw 75) and post-hoc LA its validated τ (73), in both tables.
        for t in [&raw, &adj] {
            assert!(t.contains("| CE + cRT | 75.00 |") && t.contains("| CE + post-hoc LA | 73.00 |"), "{t}");
        }
        assert!(raw.contains("| CE | 60.00 |") && adj.contains("| CE | 70.00 |"));
        assert_eq!(run_entries("CE", "IR100", "ce.toml", &RunDir::new(dir.path()), false).unwrap().len(), 1);
        std::fs::write(dir.path().join("stage2-lws.json"), "{ not json").unwrap();
        let err = run_entries("CE", "IR100", "ce.toml", &RunDir::new(dir.path()), true).unwrap_err().to_string();
        assert!(err.contains("stage2-lws.json"), "{err}");
    }

    #[test]
    fn cells_average_seeds_and_missing_runs_are_listed() {
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        let t = render_table(
            &[
                entry("RBL", "IR100", Some(80.0)),
                entry("RBL", "IR100", Some(82.0)),
                entry("RBL", "IR50", None),
                entry("CE", "IR100", Some(70.0)),
            ],
            TableOptions { adjusted: true, shots: false, ..Default::default() },
        );
        assert!(t.contains("| method | IR100 | IR50 |"), "{t}");
        assert!(t.contains("| RBL | 81.00 ± 1.41 (n=2) | — |"), "{t}");
        assert!(t.contains("| CE | 70.00 | — |"), "{t}");
        assert!(t.contains("Missing (1 run(s)") && t.contains("RBL-IR50.toml"), "{t}");
        let s = render_table(&[entry("CE", "IR100", Some(70.0))], TableOptions { adjusted: false, shots: true, ..Default::default() });
        assert!(s.contains("70.00<br>71.0 / - / 69.0"), "{s}");
    }
}
