//! `rbl report`: one self-contained HTML page for a run.

use std::path::PathBuf;

use anyhow::Result;

use rbl::report::html::write_report;
use rbl::report::run_dir::RunDir;

#[derive(clap::Args)]
pub struct Args {
    /// Run folder.
    run: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    rbl::say!("{}", write_report(&RunDir::new(args.run))?.display());
    Ok(())
}
