//! `rbl export`: a trained model's weights for PyTorch.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;

use rbl::model::weights::export_safetensors;
use rbl::train::trained_run::TrainedModel;

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
    let run = TrainedModel::open_on(&args.checkpoint, None)?;
    let ExportFormat::Safetensors = args.format;
    let out = args.out.unwrap_or_else(|| run.run_dir.path().join("model.safetensors"));
    let cfg = &run.cfg;
    let card = &run.card;
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("rbl.config".to_string(), cfg.to_toml_string()),
        ("rbl.epoch".to_string(), run.checkpoint.state.epoch.to_string()),
        // What PyTorch needs to feed the model as rbl does: x = (pixel / 255 − mean) / std per
        // channel, and the training counts for logit adjustment (z − τ·log π).
        ("rbl.mean".to_string(), serde_json::to_string(&card.mean)?),
        ("rbl.std".to_string(), serde_json::to_string(&card.std)?),
        ("rbl.train_counts".to_string(), serde_json::to_string(&card.train_counts)?),
        ("rbl.tau".to_string(), cfg.eval.tau.to_string()),
        ("rbl.class_names".to_string(), serde_json::to_string(&card.class_names)?),
        ("rbl.input".to_string(), serde_json::to_string(&[card.channels, card.height, card.width])?),
        ("rbl.preprocess".to_string(), serde_json::to_string(&preprocess(card))?),
    ]);
    let names = export_safetensors(&run.net, cfg.model.backbone, &out, metadata)?;
    rbl::say!("{}: {} tensors ({} backbone, head {})", out.display(), names.len(), cfg.model.backbone, cfg.model.head);
    Ok(())
}

/// The evaluation preprocessing, spelt out for a PyTorch user: what turns an image file into
/// the model's input.
fn preprocess(card: &rbl::data::card::DatasetCard) -> serde_json::Value {
    match card.file_image_size {
        Some(size) => serde_json::json!({
            "from_files": true,
            "decode": "RGB",
            "resize": {"shorter_side": size * 8 / 7, "filter": "bilinear, 2 taps, half-pixel centres, no antialias (torchvision antialias=False)"},
            "center_crop": size,
            "normalize": {"mean": card.mean, "std": card.std, "scale": "pixel / 255"},
        }),
        // In-memory datasets: an image of another size is resized as rbl predict does.
        None => serde_json::json!({
            "from_files": false,
            "decode": if card.channels == 1 { "L (ITU-R 601 luma, PIL convert(\"L\"))" } else { "RGB" },
            "resize": {"shorter_side": card.height.min(card.width), "filter": "bilinear, 2 taps, half-pixel centres, no antialias (torchvision antialias=False)"},
            "center_crop": [card.height, card.width],
            "normalize": {"mean": card.mean, "std": card.std, "scale": "pixel / 255"},
        }),
    }
}
