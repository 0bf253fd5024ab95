//! `rbl features`: PCA pictures of a saved model's features.

use std::path::PathBuf;

use anyhow::Result;

use rbl::train::trained_run::TrainedRun;

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint or run folder.
    #[arg(long)]
    checkpoint: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    rbl::say!("{}", TrainedRun::open(&args.checkpoint)?.draw_features()?.display());
    Ok(())
}
