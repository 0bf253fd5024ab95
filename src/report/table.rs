//! The comparison table of `rbl table`: rows are methods, columns are dataset / imbalance
//! ratio, cells are top-1 over the seeds that finished (mean ± std). A cell with no finished
//! run says so; nothing is filled in from elsewhere.

use std::collections::BTreeMap;

use crate::report::FinalMetrics;

/// One config's place in the table and its result, if the run finished.
#[derive(Debug, Clone)]
pub struct TableEntry {
    /// Row label (the method).
    pub method: String,
    /// Column label (dataset and imbalance ratio).
    pub column: String,
    /// Where the config came from, for the list of missing runs.
    pub source: String,
    /// The finished run's metrics.
    pub metrics: Option<FinalMetrics>,
}

/// What the cells show.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
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
    let mut cells: BTreeMap<(usize, usize), Vec<&FinalMetrics>> = BTreeMap::new();
    for e in entries {
        let key = (rows.iter().position(|r| r == &e.method).unwrap(), columns.iter().position(|c| c == &e.column).unwrap());
        let cell = cells.entry(key).or_default();
        if let Some(m) = &e.metrics {
            cell.push(m);
        }
    }
    let kind = if opts.adjusted { "adjusted" } else { "raw" };
    let mut out = format!("Top-1 % ({kind}){}\n\n", if opts.shots { ", with many / medium / few below" } else { "" });
    out += &format!("| method | {} |\n|---|{}\n", columns.join(" | "), "---|".repeat(columns.len()));
    for (r, row) in rows.iter().enumerate() {
        let mut line = format!("| {row} |");
        for c in 0..columns.len() {
            let runs = cells.get(&(r, c)).cloned().unwrap_or_default();
            let report = |m: &&FinalMetrics| if opts.adjusted { m.test.adjusted.clone() } else { m.test.raw.clone() };
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
    let missing: Vec<&TableEntry> = entries.iter().filter(|e| e.metrics.is_none()).collect();
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

    fn metrics(top1: f64) -> FinalMetrics {
        let r = ClassificationReport { top1, many: Some(top1 + 1.0), medium: None, few: Some(top1 - 1.0), per_class: vec![] };
        FinalMetrics {
            name: "x".into(),
            head: "rbl".into(),
            epoch: 1,
            train_counts: vec![],
            test: EvalSummary { loss: 0.0, raw: r.clone(), adjusted: r, tau: 1.0, images: 1 },
            val: None,
            wall_seconds: 0.0,
            rotation_orthogonality_error: None,
        }
    }

    fn entry(method: &str, column: &str, m: Option<f64>) -> TableEntry {
        TableEntry { method: method.into(), column: column.into(), source: format!("{method}-{column}.toml"), metrics: m.map(metrics) }
    }

    #[test]
    fn cells_average_seeds_and_missing_runs_are_listed() {
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        let t = render_table(
            &[entry("RBL", "IR100", Some(80.0)), entry("RBL", "IR100", Some(82.0)), entry("RBL", "IR50", None), entry("CE", "IR100", Some(70.0))],
            TableOptions { adjusted: true, shots: false },
        );
        assert!(t.contains("| method | IR100 | IR50 |"), "{t}");
        assert!(t.contains("| RBL | 81.00 ± 1.41 (n=2) | — |"), "{t}");
        assert!(t.contains("| CE | 70.00 | — |"), "{t}");
        assert!(t.contains("Missing (1 run(s)") && t.contains("RBL-IR50.toml"), "{t}");
        let s = render_table(&[entry("CE", "IR100", Some(70.0))], TableOptions { adjusted: false, shots: true });
        assert!(s.contains("70.00<br>71.0 / - / 69.0"), "{s}");
    }
}
