//! `rbl compare`: several runs' curves overlaid (the paper's Figures 3/4 layout).

use std::path::PathBuf;

use anyhow::Result;

use rbl::report::plots::plot_comparison;
use rbl::report::run_dir::RunDir;

#[derive(clap::Args)]
pub struct Args {
    /// Run folders.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output file stem (.png and .svg are added).
    #[arg(long, default_value = "compare")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let mut logs = Vec::new();
    for r in args.runs {
        let name = r.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| r.display().to_string());
        logs.push((name, RunDir::new(r).read_epoch_log()?));
    }
    for f in plot_comparison(&logs, &args.out)? {
        rbl::say!("{}", f.display());
    }
    Ok(())
}
