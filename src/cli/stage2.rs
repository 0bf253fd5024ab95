//! `rbl stage2`: cRT, LWS or MARC on a trained run's frozen backbone.

use std::path::PathBuf;

use anyhow::Result;

use rbl::config::variant_name;
use rbl::train::stage2::{Stage2, Stage2Options, run_stage2};
use rbl::train::trained_run::TrainedRun;

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(args: Args) -> Result<()> {
    let run = TrainedRun::open(&args.checkpoint)?;
    let opts = Stage2Options { epochs: args.epochs, batch_size: args.batch_size, lr: args.lr };
    let result = run_stage2(&run, args.method, &opts)?;
    rbl::say!("{}", run.run_dir.write_two_stage_result("stage2", &variant_name(&args.method), &result)?);
    Ok(())
}
