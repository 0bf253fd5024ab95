//! `rbl table`: methods × dataset/IR, mean ± std over seeds, from finished runs found by
//! their folders (whatever made them: a config, `--out`, `--set`) or through their configs
//! (training the missing ones first with `--train`, `--jobs` at a time).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use rbl::ExperimentConfig;
use rbl::report::run_dir::RunDir;
use rbl::report::table::{TableOptions, TableSelect, render_table, run_entries_selected};
use rbl::train::{RunOptions, train_run};

#[derive(clap::Args)]
pub struct Args {
    /// Run folders, folders of run folders, or experiment configs (whose runs are
    /// <--runs>/<name>). With none, every run folder under --runs.
    paths: Vec<PathBuf>,
    /// Folder holding the run folders of configs (and searched when no path is given).
    #[arg(long, default_value = "runs")]
    runs: PathBuf,
    /// Train the configs whose run has not finished (resuming interrupted ones) first.
    #[arg(long)]
    train: bool,
    /// With --train: runs trained at once, each with its share of the cores
    /// (RAYON_NUM_THREADS = cores / jobs). Results do not depend on the thread count.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
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

/// One run the table reports: its config, where it came from, its folder, and the config
/// file it is trained from (runs found by folder have none).
struct TableRun {
    cfg: ExperimentConfig,
    source: String,
    run_dir: RunDir,
    config_file: Option<PathBuf>,
}

/// The run folders directly under `dir` (folders holding a `config.toml`), sorted.
fn run_folders_under(dir: &Path) -> Result<Vec<RunDir>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| rbl::RblError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| RunDir::new(p).holds_run())
        .collect();
    found.sort();
    Ok(found.into_iter().map(RunDir::new).collect())
}

/// A run found by its folder.
fn from_folder(run_dir: RunDir) -> Result<TableRun> {
    let cfg = ExperimentConfig::load_stored(&run_dir.config(), &[])?;
    Ok(TableRun { cfg, source: run_dir.path().display().to_string(), run_dir, config_file: None })
}

/// Every run the arguments name, in order.
fn collect(args: &Args) -> Result<Vec<TableRun>> {
    let mut runs = Vec::new();
    if args.paths.is_empty() {
        if !args.runs.is_dir() {
            bail!("{}: no such folder of runs (give run folders, configs, or --runs DIR)", args.runs.display());
        }
        for r in run_folders_under(&args.runs)? {
            runs.push(from_folder(r)?);
        }
        if runs.is_empty() {
            bail!("{}: no run folders (folders holding a config.toml) here", args.runs.display());
        }
        return Ok(runs);
    }
    for path in &args.paths {
        if path.is_dir() {
            let run = RunDir::new(path);
            let found = if run.holds_run() { vec![run] } else { run_folders_under(path)? };
            if found.is_empty() {
                bail!("{}: neither a run folder (no config.toml) nor a folder of run folders", path.display());
            }
            for r in found {
                runs.push(from_folder(r)?);
            }
            continue;
        }
        let base = ExperimentConfig::load(path, &[])?;
        // Without --seeds, the config's own run.
        let variants: Vec<ExperimentConfig> =
            if args.seeds.is_empty() { vec![base.clone()] } else { args.seeds.iter().map(|&s| base.for_seed(s)).collect() };
        for cfg in variants {
            let run_dir = RunDir::new(args.runs.join(&cfg.name));
            let source = format!("{} (run {})", path.display(), run_dir.path().display());
            runs.push(TableRun { cfg, source, run_dir, config_file: Some(path.clone()) });
        }
    }
    Ok(runs)
}

/// Trains the runs that have not finished: in this process one after another, or `jobs` at a
/// time as child processes sharing the cores.
fn train_missing(runs: &[TableRun], jobs: usize) -> Result<()> {
    let missing: Vec<&TableRun> = runs.iter().filter(|r| !r.run_dir.is_finished()).collect();
    if jobs <= 1 {
        for r in missing {
            let resume = r.run_dir.holds_run();
            train_run(r.cfg.clone(), &RunOptions::new(r.run_dir.clone(), resume))?;
        }
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / jobs).max(1);
    let exe = std::env::current_exe()?;
    for group in missing.chunks(jobs) {
        let mut children = Vec::new();
        for r in group {
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("train").arg("-q").env("RAYON_NUM_THREADS", threads.to_string());
            if r.run_dir.holds_run() {
                cmd.arg("--resume").arg(r.run_dir.path());
            } else {
                let Some(file) = &r.config_file else { continue };
                let name = toml::Value::String(r.cfg.name.clone());
                cmd.arg("--config").arg(file).arg("--out").arg(r.run_dir.path());
                cmd.arg("--set").arg(format!("seed={}", r.cfg.seed)).arg("--set").arg(format!("name={name}"));
            }
            rbl::note!("training {} ({threads} threads)", r.run_dir.path().display());
            // The table is the output; a child's own result line would interleave with it.
            cmd.stdout(std::process::Stdio::null());
            children.push((r.run_dir.path().to_path_buf(), cmd.spawn()?));
        }
        for (dir, mut child) in children {
            let status = child.wait()?;
            if !status.success() {
                bail!("training {} failed ({status}); its error is above", dir.display());
            }
        }
    }
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let runs = collect(&args)?;
    if args.train {
        train_missing(&runs, args.jobs)?;
    }
    let mut text = String::new();
    for &select in &args.select {
        let mut entries = Vec::new();
        for r in &runs {
            let column = column_label(&r.cfg, &r.run_dir);
            entries.extend(run_entries_selected(&r.cfg.method_label(), &column, &r.source, &r.run_dir, args.two_stage, select, !args.raw)?);
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text += &render_table(&entries, TableOptions { select, adjusted: !args.raw, shots: args.shots });
    }
    rbl::report::console::write_stdout_text(&text);
    Ok(())
}

/// The column of a run: its dataset and the imbalance ratio of the training counts it
/// actually had (from `metrics.json` or `dataset.json`), else the config's ratio.
fn column_label(cfg: &ExperimentConfig, run: &RunDir) -> String {
    let counts = run
        .read_metrics()
        .ok()
        .flatten()
        .map(|m| m.train_counts)
        .or_else(|| run.read_dataset_card().ok().flatten().map(|c| c.train_counts));
    match counts {
        Some(c) => cfg.column_label_for_counts(&c),
        None => cfg.column_label(),
    }
}
