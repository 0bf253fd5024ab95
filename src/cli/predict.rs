//! `rbl predict`: classifies image files with a trained run.

use std::path::PathBuf;

use anyhow::Result;

use rbl::config::DeviceKind;
use rbl::train::predict::{expand_inputs, format_table, predict_files};
use rbl::train::trained_run::TrainedRun;

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
    /// Device override (cpu, gpu).
    #[arg(long, value_enum)]
    device: Option<DeviceKind>,
}

pub fn run(args: Args) -> Result<()> {
    let files = expand_inputs(&args.inputs)?;
    let run = TrainedRun::open_on(&args.checkpoint, args.device)?;
    let tau = args.tau.unwrap_or(run.cfg().eval.tau);
    let batch = args.batch_size.unwrap_or(run.cfg().eval.batch_size);
    let predictions = predict_files(&run, &files, tau, args.top_k, batch)?;
    if args.json {
        for p in &predictions {
            rbl::say!("{}", serde_json::to_string(p)?);
        }
    } else {
        rbl::say!("{}", format_table(&predictions, tau).trim_end());
    }
    Ok(())
}
