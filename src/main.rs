//! The `rbl` command line: train, resume and evaluate long-tailed classifiers.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use rbl::ExperimentConfig;
use rbl::report::table::{TableOptions, render_table, run_entries};
use rbl::train::checkpoint::resolve_checkpoint;
use rbl::train::posthoc::{PostHoc, tune_posthoc};
use rbl::train::run::eval_checkpoint;
use rbl::train::stage2::{Stage2, Stage2Options, run_stage2};
use rbl::train::{RunOptions, train_run};

/// Long-tailed image classification with Rotated Balanced Learning.
#[derive(Parser)]
#[command(name = "rbl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a config file, or resume an interrupted run.
    Train {
        /// Experiment config (TOML).
        #[arg(long, required_unless_present = "resume")]
        config: Option<PathBuf>,
        /// Override a config key, e.g. --set train.epochs=5 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Run folder (default runs/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in this folder from its latest checkpoint.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "out"])]
        resume: Option<PathBuf>,
        /// Replace an existing run folder.
        #[arg(long)]
        force: bool,
        /// Device: cpu or gpu (wgpu; needs a build with --features gpu). Same as --set device=….
        #[arg(long, value_enum)]
        device: Option<rbl::config::DeviceKind>,
        /// Stop after this many epochs in total, as an interruption would (for testing resume).
        #[arg(long, hide = true)]
        stop_after_epoch: Option<usize>,
        /// Abort the process after this many training steps, as SIGKILL would (for testing
        /// crash safety).
        #[arg(long, hide = true)]
        crash_after_step: Option<usize>,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Evaluate a saved checkpoint (a checkpoint folder or a run folder).
    Eval {
        /// Checkpoint or run folder.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Logit-adjustment τ (default: the run's).
        #[arg(long)]
        tau: Option<f64>,
        /// Evaluate on the validation split instead of the test set.
        #[arg(long)]
        val: bool,
        /// Device override (cpu, gpu).
        #[arg(long, value_enum)]
        device: Option<rbl::config::DeviceKind>,
    },
    /// Two-stage methods on a trained run (frozen backbone): cRT, LWS, MARC. Writes
    /// stage2-<method>.json into the run folder.
    Stage2 {
        /// Checkpoint or run folder.
        #[arg(long)]
        checkpoint: PathBuf,
        /// crt, lws or marc.
        #[arg(long, value_enum)]
        method: Stage2,
        /// Stage-2 epochs.
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        /// Stage-2 batch size.
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Stage-2 peak learning rate (cosine to 0).
        #[arg(long, default_value_t = 0.1)]
        lr: f64,
    },
    /// Plots of a run (learning curves, per-class accuracy, neural-collapse metrics when
    /// logged) as PNG and SVG into RUN_DIR/plots.
    Plot {
        /// Run folder.
        run: PathBuf,
    },
    /// Overlays runs (e.g. Fixed vs RBL): train/test accuracy and cross-entropy per epoch.
    Compare {
        /// Run folders.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Output file stem (.png and .svg are added).
        #[arg(long, default_value = "compare")]
        out: PathBuf,
    },
    /// A Markdown table of finished runs: rows = methods, columns = dataset / imbalance ratio.
    Table {
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
    },
    /// Experiments of the paper that train several runs and compare them.
    Experiment {
        #[command(subcommand)]
        which: Experiment,
    },
    /// PCA pictures of the train and test features with the class directions, from a
    /// checkpoint (or a run's latest), into RUN_DIR/features/epoch_NNN.{png,svg}.
    Features {
        /// Checkpoint or run folder.
        #[arg(long)]
        checkpoint: PathBuf,
    },
    /// Dataset tools.
    Data {
        #[command(subcommand)]
        which: DataCommand,
    },
    /// One self-contained HTML page for a run (config, results, plots, feature pictures,
    /// epoch log), written to RUN_DIR/report.html.
    Report {
        /// Run folder.
        run: PathBuf,
    },
    /// Post-hoc correction of a trained model, its τ chosen on the validation split. Writes
    /// posthoc-<method>.json into the run folder.
    Posthoc {
        /// Checkpoint or run folder (the run needs data.val_per_class > 0).
        #[arg(long)]
        checkpoint: PathBuf,
        /// logit-adjust (any head) or tau-norm (linear heads).
        #[arg(long, value_enum)]
        method: PostHoc,
        /// τ values to try, comma-separated (default 0, 0.1, …, 2).
        #[arg(long, value_delimiter = ',')]
        grid: Vec<f64>,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Decodes every image a split file lists (ImageNet-LT style: `path label` lines under a
    /// root folder) on worker threads, and lists the missing or undecodable ones with a count.
    /// Exits 1 when any is bad.
    Check {
        /// Root folder the split's paths are relative to.
        #[arg(long)]
        root: PathBuf,
        /// Split file.
        #[arg(long)]
        split: PathBuf,
        /// Number of classes (labels must be below it).
        #[arg(long)]
        classes: usize,
        /// Decoder threads.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
}

#[derive(Subcommand)]
enum Experiment {
    /// Fixed ETFs with two different random directions (A, B) and RBL learning a rotation of A:
    /// same network, data and seed; train/test accuracy per epoch and feature pictures.
    FrameDirections {
        /// Base experiment config (its head is replaced per arm).
        #[arg(long)]
        config: PathBuf,
        /// Override a config key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Experiment folder (default runs/<name>_frame_directions); arms go in A/, B/, rbl/.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Frame seed of arm A (and of RBL's starting frame).
        #[arg(long, default_value_t = 1)]
        seed_a: u64,
        /// Frame seed of arm B.
        #[arg(long, default_value_t = 2)]
        seed_b: u64,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
}

fn main() {
    let _ = rbl::ops::allocator::keep_freed_buffers();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        let interrupted = matches!(e.downcast_ref::<rbl::RblError>(), Some(rbl::RblError::Interrupted { .. }));
        std::process::exit(if interrupted { 130 } else { 1 });
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { config, mut overrides, out, resume, force, device, stop_after_epoch, crash_after_step, quiet } => {
            if let Some(d) = device {
                overrides.push(format!("device=\"{d}\""));
            }
            let (cfg, run_dir, resuming) = match resume {
                Some(dir) => {
                    let cfg_path = dir.join("config.toml");
                    if !cfg_path.is_file() {
                        bail!("{}: not a run folder (no config.toml)", dir.display());
                    }
                    (ExperimentConfig::load(&cfg_path, &overrides)?, dir, true)
                }
                None => {
                    let path = config.expect("clap requires --config");
                    let cfg = ExperimentConfig::load(&path, &overrides)?;
                    let dir = out.unwrap_or_else(|| PathBuf::from("runs").join(&cfg.name));
                    if dir.join("config.toml").exists() {
                        if !force {
                            bail!(
                                "{} already holds a run: continue it with --resume {}, or pass --force to start over",
                                dir.display(),
                                dir.display()
                            );
                        }
                        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
                    }
                    (cfg, dir, false)
                }
            };
            let opts =
                RunOptions { run_dir: run_dir.clone(), resume: resuming, stop_after_epoch, quiet, crash_after_steps: crash_after_step };
            match train_run(cfg, &opts)? {
                Some(m) => {
                    println!(
                        "{}: top-1 {:.2}% (adjusted τ={} {:.2}%: many {} / medium {} / few {}), {:.0}s — {}",
                        m.name,
                        m.test.raw.top1,
                        m.test.tau,
                        m.test.adjusted.top1,
                        fmt(m.test.adjusted.many),
                        fmt(m.test.adjusted.medium),
                        fmt(m.test.adjusted.few),
                        m.wall_seconds,
                        run_dir.join("metrics.json").display()
                    );
                }
                None => println!("stopped early; continue with: rbl train --resume {}", run_dir.display()),
            }
        }
        Command::Eval { checkpoint, tau, val, device } => {
            let dir = resolve_checkpoint(&checkpoint)?;
            let summary = eval_checkpoint(&dir, tau, val, device)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Stage2 { checkpoint, method, epochs, batch_size, lr } => {
            let dir = resolve_checkpoint(&checkpoint)?;
            let result = run_stage2(&dir, method, &Stage2Options { epochs, batch_size, lr })?;
            let text = serde_json::to_string_pretty(&result)?;
            let run_dir = dir.parent().map(PathBuf::from).unwrap_or_default();
            let name = format!("stage2-{}.json", serde_json::to_value(method)?.as_str().unwrap_or("method"));
            rbl::report::write_atomic(&run_dir.join(&name), text.as_bytes())?;
            println!("{text}");
        }
        Command::Plot { run } => {
            let log = rbl::report::plots::read_log(&run)?;
            let metrics: Option<rbl::report::FinalMetrics> =
                std::fs::read_to_string(run.join("metrics.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
            for f in rbl::report::plots::plot_run(&log, metrics.as_ref(), &run.join("plots"))? {
                println!("{}", f.display());
            }
        }
        Command::Compare { runs, out } => {
            let mut logs = Vec::new();
            for r in &runs {
                let name = r.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| r.display().to_string());
                logs.push((name, rbl::report::plots::read_log(r)?));
            }
            for f in rbl::report::plots::plot_comparison(&logs, &out)? {
                println!("{}", f.display());
            }
        }
        Command::Table { configs, runs, train, shots, raw, seeds, two_stage } => {
            let mut entries = Vec::new();
            for path in configs {
                let base = ExperimentConfig::load(&path, &[])?;
                // One run per seed, named <name>-s<seed>; without --seeds, the config's own run.
                let variants: Vec<ExperimentConfig> = if seeds.is_empty() {
                    vec![base.clone()]
                } else {
                    seeds.iter().map(|&s| ExperimentConfig { seed: s, name: format!("{}-s{s}", base.name), ..base.clone() }).collect()
                };
                for cfg in variants {
                    let run_dir = runs.join(&cfg.name);
                    if train && !run_dir.join("metrics.json").is_file() {
                        let resume = run_dir.join("config.toml").is_file();
                        train_run(
                            cfg.clone(),
                            &RunOptions { run_dir: run_dir.clone(), resume, stop_after_epoch: None, quiet: false, crash_after_steps: None },
                        )?;
                    }
                    let source = format!("{} (run {})", path.display(), run_dir.display());
                    entries.extend(run_entries(&cfg.method_label(), &cfg.column_label(), &source, &run_dir, two_stage)?);
                }
            }
            print!("{}", render_table(&entries, TableOptions { adjusted: !raw, shots }));
        }
        Command::Experiment { which: Experiment::FrameDirections { config, overrides, out, seed_a, seed_b, quiet } } => {
            let cfg = ExperimentConfig::load(&config, &overrides)?;
            let out = out.unwrap_or_else(|| PathBuf::from("runs").join(format!("{}_frame_directions", cfg.name)));
            let opts = rbl::train::experiment::FrameDirections { seed_a, seed_b, out: out.clone(), quiet };
            let results = rbl::train::experiment::run_frame_directions(&cfg, &opts)?;
            print!("{}", rbl::train::experiment::summary_markdown(&cfg, &results));
            println!("\nwritten: {}, {}", out.join("summary.md").display(), out.join("curves.png").display());
        }
        Command::Data { which: DataCommand::Check { root, split, classes, workers } } => {
            let set = rbl::data::folder::FolderDataset::open(&root, &split, classes)?;
            let total = set.entries.len();
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("decoding {pos}/{len} [{elapsed_precise}, {per_sec}]").expect("template"),
            );
            let bad = set.check(workers, &|n| {
                if n % 64 == 0 || n == total {
                    bar.set_position(n as u64)
                }
            });
            bar.finish_and_clear();
            let counts = rbl::data::split_file::class_counts(&set.entries, classes);
            let empty = counts.iter().filter(|&&n| n == 0).count();
            for b in &bad {
                println!("bad: {}", b.error);
            }
            println!(
                "{}: {total} images in {} classes ({} to {} per class{}), {} bad",
                split.display(),
                classes,
                counts.iter().max().unwrap_or(&0),
                counts.iter().min().unwrap_or(&0),
                if empty > 0 { format!(", {empty} classes empty") } else { String::new() },
                bad.len()
            );
            if !bad.is_empty() {
                bail!("{} of {total} images cannot be used", bad.len());
            }
        }
        Command::Features { checkpoint } => {
            let dir = resolve_checkpoint(&checkpoint)?;
            println!("{}", rbl::train::run::features_from_checkpoint(&dir)?.display());
        }
        Command::Report { run } => {
            println!("{}", rbl::report::html::write_report(&run)?.display());
        }
        Command::Posthoc { checkpoint, method, grid } => {
            let dir = resolve_checkpoint(&checkpoint)?;
            let grid = if grid.is_empty() { (0..=20).map(|i| i as f64 / 10.0).collect() } else { grid };
            let result = tune_posthoc(&dir, method, &grid)?;
            let text = serde_json::to_string_pretty(&result)?;
            let run_dir = dir.parent().map(PathBuf::from).unwrap_or_default();
            let name = format!("posthoc-{}.json", serde_json::to_value(method)?.as_str().unwrap_or("method"));
            rbl::report::write_atomic(&run_dir.join(&name), text.as_bytes())?;
            println!("{text}");
        }
    }
    Ok(())
}

fn fmt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}
