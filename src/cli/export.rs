//! `rbl export`: a trained model's weights for PyTorch.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;

use rbl::model::weights::export_safetensors;
use rbl::train::trained_run::TrainedRun;

/// File formats `rbl export` writes.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ExportFormat {
    /// safetensors under PyTorch state-dict names (burn-store reads `.pth` but does not write it).
    Safetensors,
}

#[derive(clap::Args)]
pub struct Args {
    /// Checkpoint or run folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "safetensors")]
    format: ExportFormat,
    /// Output file (default: RUN_DIR/model.safetensors).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let run = TrainedRun::open(&args.checkpoint)?;
    let ExportFormat::Safetensors = args.format;
    let out = args.out.unwrap_or_else(|| run.run_dir.path().join("model.safetensors"));
    let cfg = run.cfg();
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("rbl.config".to_string(), cfg.to_toml_string()),
        ("rbl.epoch".to_string(), run.checkpoint.state.epoch.to_string()),
        // What PyTorch needs to feed the model as rbl does: x = (pixel / 255 − mean) / std per
        // channel, and the training counts for logit adjustment (z − τ·log π).
        ("rbl.mean".to_string(), serde_json::to_string(&run.ctx.eval_aug.mean)?),
        ("rbl.std".to_string(), serde_json::to_string(&run.ctx.eval_aug.std)?),
        ("rbl.train_counts".to_string(), serde_json::to_string(&run.ctx.train_counts)?),
        ("rbl.tau".to_string(), cfg.eval.tau.to_string()),
    ]);
    let names = export_safetensors(&run.net, cfg.model.backbone, &out, metadata)?;
    rbl::say!("{}: {} tensors ({} backbone, head {})", out.display(), names.len(), cfg.model.backbone, cfg.model.head);
    Ok(())
}
