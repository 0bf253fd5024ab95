//! `rbl eval`: scores a saved model on the test set (or the validation split).

use std::path::PathBuf;

use anyhow::Result;

use rbl::config::DeviceKind;
use rbl::train::trained_run::TrainedRun;

#[derive(clap::Args)]
pub struct Args {
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
    device: Option<DeviceKind>,
}

pub fn run(args: Args) -> Result<()> {
    let run = TrainedRun::open_on(&args.checkpoint, args.device)?;
    let summary = run.evaluate(args.tau, args.val)?;
    rbl::say!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
