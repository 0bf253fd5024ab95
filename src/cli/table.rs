//! `rbl table`: methods × dataset/IR, mean ± std over seeds, from finished runs (training the
//! missing ones first with `--train`).

use std::path::PathBuf;

use anyhow::Result;

use rbl::ExperimentConfig;
use rbl::report::run_dir::RunDir;
use rbl::report::table::{TableOptions, TableSelect, render_table, run_entries_selected};
use rbl::train::{RunOptions, train_run};

#[derive(clap::Args)]
pub struct Args {
    /// Experiment configs (each run is looked up in runs/<name>, or under --runs).
    #[arg(required = true)]
    configs: Vec<PathBuf>,
    /// Folder holding the run folders.
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// Train the configs whose run has not finished (resuming interrupted ones) first.
    #[arg(long)]
    train: bool,
    /// Show many / medium / few under each cell.
    #[arg(long)]
    shots: bool,
    /// Raw rather than logit-adjusted accuracy.
    #[arg(long)]
    raw: bool,
    /// Seeds, comma-separated: each config stands for the runs <name>-s<seed>, trained with
    /// that seed, and its cells are mean ± std over them.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// Add rows for the two-stage results (rbl stage2 / rbl posthoc) found in each run folder.
    #[arg(long)]
    two_stage: bool,
    /// Which epoch each cell reports: the last, the best on validation (runs trained with
    /// eval.select = "val"), or the best on the test set (the paper's optimistic protocol,
    /// labelled as such). Repeat or comma-separate for one table each.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "last")]
    select: Vec<TableSelect>,
}

pub fn run(args: Args) -> Result<()> {
    let mut runs = Vec::new();
    for path in &args.configs {
        let base = ExperimentConfig::load(path, &[])?;
        // Without --seeds, the config's own run.
        let variants: Vec<ExperimentConfig> =
            if args.seeds.is_empty() { vec![base.clone()] } else { args.seeds.iter().map(|&s| base.for_seed(s)).collect() };
        for cfg in variants {
            let run_dir = RunDir::new(args.runs.join(&cfg.name));
            if args.train && !run_dir.is_finished() {
                let resume = run_dir.holds_run();
                train_run(cfg.clone(), &RunOptions::new(run_dir.clone(), resume))?;
            }
            let source = format!("{} (run {})", path.display(), run_dir.path().display());
            runs.push((cfg, source, run_dir));
        }
    }
    let mut text = String::new();
    for &select in &args.select {
        let mut entries = Vec::new();
        for (cfg, source, run_dir) in &runs {
            entries.extend(run_entries_selected(
                &cfg.method_label(),
                &cfg.column_label(),
                source,
                run_dir,
                args.two_stage,
                select,
                !args.raw,
            )?);
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text += &render_table(&entries, TableOptions { select, adjusted: !args.raw, shots: args.shots });
    }
    rbl::report::console::write_stdout_text(&text);
    Ok(())
}
