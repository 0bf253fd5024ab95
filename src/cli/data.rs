//! `rbl data`: dataset tools.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;

use rbl::data::folder::FolderDataset;
use rbl::data::split_file::class_counts;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Decodes every image a split file lists (ImageNet-LT style: `path label` lines under a
    /// root folder) on worker threads, and lists the missing or undecodable ones with a count.
    /// Exits 1 when any is bad.
    Check {
        /// Root folder the split's paths are relative to.
        #[arg(long)]
        root: PathBuf,
        /// Split file.
        #[arg(long)]
        split: PathBuf,
        /// Number of classes (labels must be below it).
        #[arg(long)]
        classes: usize,
        /// Decoder threads.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
}

pub fn run(which: DataCommand) -> Result<()> {
    match which {
        DataCommand::Check { root, split, classes, workers } => check(root, split, classes, workers),
    }
}

/// Decodes every listed image with a progress bar; fails when any is bad.
fn check(root: PathBuf, split: PathBuf, classes: usize, workers: usize) -> Result<()> {
    let set = FolderDataset::open(&root, &split, classes)?;
    let total = set.entries.len();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("decoding {pos}/{len} [{elapsed_precise}, {per_sec}]").expect("template"));
    let bad = set.check(workers, &|n| {
        if n % 64 == 0 || n == total {
            bar.set_position(n as u64)
        }
    });
    bar.finish_and_clear();
    let counts = class_counts(&set.entries, classes);
    let empty = counts.iter().filter(|&&n| n == 0).count();
    for b in &bad {
        rbl::say!("bad: {}", b.error);
    }
    rbl::say!(
        "{}: {total} images in {} classes ({} to {} per class{}), {} bad",
        split.display(),
        classes,
        counts.iter().max().unwrap_or(&0),
        counts.iter().min().unwrap_or(&0),
        if empty > 0 { format!(", {empty} classes empty") } else { String::new() },
        bad.len()
    );
    if !bad.is_empty() {
        bail!("{} of {total} images cannot be used", bad.len());
    }
    Ok(())
}
