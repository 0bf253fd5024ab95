//! `rbl plot`: a run's curves, per-class accuracy and neural-collapse metrics.

use std::path::PathBuf;

use anyhow::Result;

use rbl::report::plots::plot_run;
use rbl::report::run_dir::RunDir;

#[derive(clap::Args)]
pub struct Args {
    /// Run folder.
    run: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let run = RunDir::new(args.run);
    let log = run.read_epoch_log()?;
    // Curves are drawn for an unfinished run too; a missing or unreadable metrics.json only
    // leaves out the per-class picture.
    let metrics = run.read_metrics().ok().flatten();
    for f in plot_run(&log, metrics.as_ref(), &run.plots())? {
        rbl::say!("{}", f.display());
    }
    Ok(())
}
