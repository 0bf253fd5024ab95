//! `rbl experiment`: the paper's multi-run experiments.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use rbl::ExperimentConfig;
use rbl::train::experiment::{FrameDirections, run_frame_directions, summary_markdown};

#[derive(Subcommand)]
pub enum Experiment {
    /// Fixed ETFs with two different random directions (A, B) and RBL learning a rotation of A:
    /// same network, data and seed; train/test accuracy per epoch and feature pictures.
    FrameDirections {
        /// Base experiment config (its head is replaced per arm).
        #[arg(long)]
        config: PathBuf,
        /// Override a config key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Experiment folder (default runs/<name>_frame_directions); arms go in A/, B/, rbl/.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Frame seed of arm A (and of RBL's starting frame).
        #[arg(long, default_value_t = 1)]
        seed_a: u64,
        /// Frame seed of arm B.
        #[arg(long, default_value_t = 2)]
        seed_b: u64,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
}

pub fn run(which: Experiment) -> Result<()> {
    match which {
        Experiment::FrameDirections { config, overrides, out, seed_a, seed_b, quiet } => {
            let cfg = ExperimentConfig::load(&config, &overrides)?;
            let out = out.unwrap_or_else(|| PathBuf::from("runs").join(format!("{}_frame_directions", cfg.name)));
            let results = run_frame_directions(&cfg, &FrameDirections { seed_a, seed_b, out: out.clone(), quiet })?;
            rbl::report::console::write_stdout_text(&summary_markdown(&cfg, &results));
            rbl::say!("\nwritten: {}, {}", out.join("summary.md").display(), out.join("curves.png").display());
        }
    }
    Ok(())
}
