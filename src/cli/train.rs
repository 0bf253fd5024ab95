//! `rbl train`: a new run from a config, or `--resume` an interrupted one.

use std::path::PathBuf;

use anyhow::{Result, bail};

use rbl::ExperimentConfig;
use rbl::config::DeviceKind;
use rbl::report::run_dir::RunDir;
use rbl::train::{RunOptions, train_run};

#[derive(clap::Args)]
pub struct Args {
    /// Experiment config (TOML).
    #[arg(long, required_unless_present_any = ["resume", "data"])]
    config: Option<PathBuf>,
    /// Train on your own image-folder tree (DIR/train/<class>/…, DIR/test/…) with every other
    /// setting at its default or chosen from the data: no config file needed. The run is
    /// runs/<DIR's name>; `rbl config init --root DIR` writes the config to edit instead.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "resume"])]
    data: Option<PathBuf>,
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
    device: Option<DeviceKind>,
    /// Stop after this many epochs in total, as an interruption would (for testing resume).
    #[arg(long, hide = true)]
    stop_after_epoch: Option<usize>,
    /// Abort the process after this many training steps, as SIGKILL would (for testing
    /// crash safety).
    #[arg(long, hide = true)]
    crash_after_step: Option<usize>,
    /// Abort the process right after this epoch's checkpoint is written (crash-safety tests).
    #[arg(long, hide = true)]
    crash_after_checkpoint: Option<usize>,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    let mut overrides = args.overrides;
    if let Some(d) = args.device {
        overrides.push(format!("device=\"{d}\""));
    }
    let (cfg, run_dir, resume) = match args.resume {
        Some(dir) => {
            let run_dir = RunDir::new(dir);
            if !run_dir.holds_run() {
                bail!("{}: not a run folder (no config.toml)", run_dir.path().display());
            }
            (ExperimentConfig::load_stored(&run_dir.config(), &overrides)?, run_dir, true)
        }
        None => {
            let cfg = match (&args.config, &args.data) {
                (Some(path), _) => ExperimentConfig::load(path, &overrides)?,
                (None, Some(dir)) => config_for_tree(dir, &overrides)?,
                (None, None) => bail!("--config, --data or --resume is needed"),
            };
            let run_dir = RunDir::new(args.out.unwrap_or_else(|| PathBuf::from("runs").join(&cfg.name)));
            // Refused here, before the data is read; checked again (and the old run removed,
            // with --force) under the folder's lock once the data and model have passed.
            if args.force && run_dir.holds_run() {
                run_dir.check_removable()?;
            } else {
                run_dir.check_no_run()?;
            }
            (cfg, run_dir, false)
        }
    };
    let opts = RunOptions {
        stop_after_epoch: args.stop_after_epoch,
        quiet: args.quiet,
        crash_after_steps: args.crash_after_step,
        crash_after_checkpoint: args.crash_after_checkpoint,
        force: args.force,
        ..RunOptions::new(run_dir.clone(), resume)
    };
    let result = train_run(cfg, &opts)?;
    // Over several ranks rank 0 reports; the others trained the same model.
    if !rbl::distributed::world().is_root() {
        return Ok(());
    }
    match result {
        Some(m) => rbl::say!(
            "{}: top-1 {:.2}% (adjusted τ={} {:.2}%: many {} / medium {} / few {}), {:.0}s — {}",
            m.name,
            m.test.raw.top1,
            m.test.tau,
            m.test.adjusted.top1,
            percent(m.test.adjusted.many),
            percent(m.test.adjusted.medium),
            percent(m.test.adjusted.few),
            m.wall_seconds,
            run_dir.metrics().display()
        ),
        None => rbl::say!("stopped early; continue with: rbl train --resume {}", run_dir.path().display()),
    }
    Ok(())
}

/// The config `rbl train --data DIR` trains with: an image-folder tree at DIR, named after it,
/// everything else at its default or chosen from the data.
fn config_for_tree(dir: &std::path::Path, overrides: &[String]) -> Result<ExperimentConfig> {
    let root = toml::Value::String(dir.display().to_string());
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "experiment".into());
    let name = toml::Value::String(name.chars().map(|c| if c.is_control() || c == '/' { '_' } else { c }).collect());
    let text = format!(
        "name = {name}
[data]
dataset = \"image-folder\"
root = {root}
"
    );
    Ok(ExperimentConfig::from_toml_str(&text, "--data", overrides)?)
}

/// A bucket's accuracy with two decimals, or `-` for an empty bucket.
fn percent(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}
