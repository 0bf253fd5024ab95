//! `rbl predict`: classifies image files with a trained run.

use std::path::PathBuf;

use anyhow::{Result, bail};

use rbl::config::DeviceKind;
use rbl::train::predict::{expand_inputs, failed_inputs, format_table, predict_files};
use rbl::train::trained_run::TrainedModel;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint or run folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Image files (JPEG, PNG, WebP) or folders of them (searched recursively).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Classes to list per image.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Logit-adjustment τ of the ranking (default: the run's eval.tau).
    #[arg(long)]
    tau: Option<f64>,
    /// Images per forward pass (default: the run's eval.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// JSON Lines (one object per image) instead of a table.
    #[arg(long)]
    json: bool,
    /// Add each image's raw logits (one per class, in label order) to the JSON output.
    #[arg(long, requires = "json")]
    logits: bool,
    /// Device override (cpu, gpu).
    #[arg(long, value_enum)]
    device: Option<DeviceKind>,
}

/// Every input is reported: a file that cannot be read or decoded gets an error line (JSON:
/// an object with `error`) and the others are classified; the exit status is non-zero when
/// any input failed.
pub fn run(args: Args) -> Result<()> {
    let (files, problems) = expand_inputs(&args.inputs);
    let model = TrainedModel::open_on(&args.checkpoint, args.device)?;
    let tau = args.tau.unwrap_or(model.cfg.eval.tau);
    let batch = args.batch_size.unwrap_or(model.cfg.eval.batch_size);
    let mut predictions = failed_inputs(&problems);
    predictions.extend(predict_files(&model, &files, tau, args.top_k, batch, args.logits)?);
    if args.json {
        for p in &predictions {
            rbl::say!("{}", serde_json::to_string(p)?);
        }
    } else {
        rbl::say!("{}", format_table(&predictions, tau).trim_end());
    }
    let failed = predictions.iter().filter(|p| p.error.is_some()).count();
    if failed > 0 {
        bail!("{failed} of {} inputs could not be classified (their errors are listed with them)", predictions.len());
    }
    Ok(())
}
