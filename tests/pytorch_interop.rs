//! Weights written by PyTorch itself, read by rbl: `tests/fixtures/pytorch/` holds a
//! `torch.save`d ResNet-32 + RBL head (bench/torch_step.py's modules, random weights and
//! BatchNorm statistics) and its logits, made by `scripts/check_pytorch_interop.py fixture`.
//! Also: `rbl export` → `model.init_weights` through the binary, and (by hand, `--ignored`)
//! torchvision's ResNet-50 and ResNeXt-50.

mod common;

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use rbl::config::{BackboneKind, ExperimentConfig, HeadKind};
use rbl::head::rotation::RotationGenerator;
use rbl::model::weights::import_weights;
use rbl::network::Network;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn input(fixture: &Value, device: &Device) -> Tensor<4> {
    let shape: Vec<usize> = fixture["input_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    Tensor::from_data(TensorData::new(floats(&fixture["input"]), [shape[0], shape[1], shape[2], shape[3]]), device)
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.iter().zip(want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{what}: max |rbl − torch| = {err:.2e} (largest |value| {scale:.2})");
    assert!(err <= 1e-4 * scale.max(1.0), "{what}: max |rbl − torch| = {err} (scale {scale})");
}

#[test]
fn a_torch_saved_pth_gives_pytorchs_logits() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("resnet32_rbl.json")).unwrap()).unwrap();
    // The PyTorch module computes R = B0·exp(A − Aᵀ); a network with the released code's
    // lower-triangle generator takes the same rotation (A converted on import).
    for generator in [RotationGenerator::Lower, RotationGenerator::Full] {
        let mut cfg = ExperimentConfig::default();
        cfg.model.widths = [4, 4, 8];
        cfg.model.feature_dim = 16;
        cfg.model.head = HeadKind::Rbl;
        cfg.model.rotation_generator = generator;
        let device = Device::flex();
        let net = Network::from_config(&cfg, 1, 10, &device).unwrap();
        let (net, report) = import_weights(net, BackboneKind::Resnet32, &dir.join("resnet32_rbl.pth")).unwrap();
        // 31 convolutions, 31 BatchNorms × 4, the projection's 2, A; the frame and B0 as constants.
        assert_eq!(report.loaded.len(), 31 + 31 * 4 + 2 + 1, "{report:?}");
        assert_eq!(report.constants, vec!["head.frame", "head.b0"]);
        assert!(report.missing.is_empty(), "{report:?}");
        assert_eq!(report.unused.len(), 31, "num_batches_tracked: {:?}", report.unused);
        assert!(report.unused.iter().all(|n| n.ends_with("num_batches_tracked")));
        let logits = net.valid().forward(input(&fixture, &device)).into_data();
        assert_close(
            logits.as_slice::<f32>().unwrap(),
            &floats(&fixture["logits"]),
            &format!("ResNet-32 + RBL head ({generator:?}) logits"),
        );
    }
}

#[test]
fn export_then_init_weights_through_the_binary() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", &tiny_config("rbl", 1));
    let run = dir.path().join("run");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = rbl(&["export", "--checkpoint", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file = run.join("model.safetensors");
    assert!(String::from_utf8_lossy(&out.stdout).contains("model.safetensors"));

    // The export holds the normalisation and the prior a PyTorch user needs.
    let bytes = std::fs::read(&file).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(serde_json::from_str::<Vec<usize>>(&meta["rbl.train_counts"]).unwrap(), vec![40, 30, 23, 18, 14, 11, 8, 6, 5, 4]);
    assert_eq!(serde_json::from_str::<Vec<f32>>(&meta["rbl.mean"]).unwrap().len(), 1);

    // The trained model, imported into a network built from another seed (other weights,
    // frame and base): bitwise the same logits.
    let trained = rbl::train::trained_run::TrainedRun::open(&run).unwrap();
    let other = ExperimentConfig { seed: 99, ..trained.cfg().clone() };
    let device = Device::flex();
    device.seed(99);
    let fresh = Network::from_config(&other, 1, 10, &device).unwrap();
    let (imported, _) = import_weights(fresh, BackboneKind::Resnet32, &file).unwrap();
    let x = Tensor::<4>::random([4, 1, 28, 28], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let (a, b) = (trained.net.forward(x.clone()).into_data(), imported.valid().forward(x).into_data());
    assert_eq!(a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap(), "export → import of a trained run");

    // A new run starting from it: the import is reported (nothing missing, nothing skipped).
    let out = rbl(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("finetune").to_str().unwrap(),
        "--set",
        &format!("model.init_weights=\"{}\"", file.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("model.safetensors: loaded 160 tensors") && !err.contains("skipped") && !err.contains("not in the file"), "{err}");
    // A missing file stops the run before anything is written.
    let target = dir.path().join("nothing");
    let out =
        rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", target.to_str().unwrap(), "--set", "model.init_weights=\"/no/w.pth\""]);
    assert!(!out.status.success() && stderr(&out).contains("/no/w.pth"), "{}", stderr(&out));
    assert!(!target.exists(), "a failed import leaves no run folder");
}

/// By hand: `scripts/check_pytorch_interop.py torchvision DIR`, then
/// `RBL_TORCHVISION_FIXTURE=DIR cargo test --release --test pytorch_interop -- --ignored`.
#[test]
#[ignore = "needs torchvision's files, made by scripts/check_pytorch_interop.py torchvision"]
fn torchvision_resnet50_and_resnext50_give_torchvisions_features() {
    let dir = std::path::PathBuf::from(std::env::var("RBL_TORCHVISION_FIXTURE").expect("RBL_TORCHVISION_FIXTURE"));
    for (name, kind) in [("resnet50", BackboneKind::Resnet50), ("resnext50_32x4d", BackboneKind::Resnext50_32x4d)] {
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        let mut cfg = ExperimentConfig::default();
        cfg.model.backbone = kind;
        cfg.model.feature_dim = 0;
        cfg.model.head = HeadKind::Linear;
        let device = Device::flex();
        let net = Network::from_config(&cfg, 3, 1000, &device).unwrap();
        let (net, report) = import_weights(net, kind, &dir.join(format!("{name}.pth"))).unwrap();
        eprintln!("{name}: {}", report.summary(Path::new(name)));
        assert_eq!(report.loaded.len(), 53 + 53 * 4, "{report:?}");
        assert_eq!(report.unused.len(), 53 + 2, "num_batches_tracked and fc");
        assert_eq!(report.missing, vec!["head.linear.bias", "head.linear.weight"]);
        let features = net.valid().features(input(&fixture, &device)).into_data();
        assert_close(features.as_slice::<f32>().unwrap(), &floats(&fixture["features"]), name);
    }
}
