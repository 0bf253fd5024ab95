//! `rbl posthoc`: logit adjustment or τ-normalisation, τ chosen on the validation split.

use std::path::PathBuf;

use anyhow::Result;

use rbl::config::variant_name;
use rbl::train::posthoc::{PostHoc, tune_posthoc};
use rbl::train::trained_run::TrainedRun;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint or run folder (the run needs data.val_per_class > 0).
    #[arg(long)]
    checkpoint: PathBuf,
    /// logit-adjust (any head) or tau-norm (linear heads).
    #[arg(long, value_enum)]
    method: PostHoc,
    /// τ values to try, comma-separated (default 0, 0.1, …, 2).
    #[arg(long, value_delimiter = ',')]
    grid: Vec<f64>,
}

pub fn run(args: Args) -> Result<()> {
    let run = TrainedRun::open(&args.checkpoint)?;
    let grid = if args.grid.is_empty() { (0..=20).map(|i| i as f64 / 10.0).collect() } else { args.grid };
    let result = tune_posthoc(&run, args.method, &grid)?;
    rbl::say!("{}", run.run_dir.write_two_stage_result("posthoc", &variant_name(&args.method), &result)?);
    Ok(())
}
