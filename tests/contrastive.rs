//! Issue #35: the contrastive family (KCL, TSC, HCL) end to end on real data — training with
//! two views, stage 2 on the frozen feature, exports without the projection head, and a TSC
//! run (whose class centroids are state) resumed bit for bit after a crash.

mod common;

use common::*;
use std::path::Path;

/// The config of a tiny contrastive run (`method`, with `loss` for its classifier).
fn config(method: &str, loss: &str, epochs: usize) -> String {
    tiny_config("linear", epochs).replace("warmup_epochs = 1", "warmup_epochs = 1\ncheckpoint_every_steps = 4")
        + &format!("[loss]\nname = \"{loss}\"\n[contrastive]\nmethod = \"{method}\"\nprojection_dim = 16\npositives = 2\n")
}

fn digest(run: &Path, ckpt: &str) -> u64 {
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join(ckpt).join("state.json")).unwrap()).unwrap();
    state["weights_crc32"].as_u64().unwrap()
}

fn metrics(run: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("wall_seconds");
    v
}

fn train(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let cfg = write(dir, &format!("{name}.toml"), text);
    let out = dir.join(name);
    let o = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{name}: {}", stderr(&o));
    out
}

/// The exported tensors of a run: name → raw bytes.
fn exported(dir: &Path, run: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let file = dir.join(format!("{}.safetensors", run.file_name().unwrap().to_str().unwrap()));
    let o = rbl(&["export", "--checkpoint", run.to_str().unwrap(), "--out", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, v.data().to_vec())).collect()
}

#[test]
fn each_method_trains_end_to_end_and_kcl_takes_its_classifier_from_stage_2() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let mut finals = Vec::new();
    for method in ["kcl", "tsc", "hcl"] {
        let run = train(dir.path(), method, &config(method, "ce", 2));
        let m = metrics(&run);
        let top1 = m["test"]["raw"]["top1"].as_f64().unwrap();
        assert!(top1.is_finite() && (0.0..=100.0).contains(&top1), "{method}: {top1}");
        let log = epoch_log(&run);
        assert_eq!(log.len(), 2);
        assert!(log.iter().all(|e| e["train_loss"].as_f64().is_some_and(f64::is_finite)), "{method}: {log:?}");
        // The projection head is training's: exports leave it out.
        let names = exported(dir.path(), &run);
        assert!(names.keys().any(|n| n.starts_with("backbone.")));
        assert!(names.keys().all(|n| !n.starts_with("projection")), "{method}: {:?}", names.keys().collect::<Vec<_>>());
        finals.push(digest(&run, "checkpoint-000002"));
    }
    assert!(finals[0] != finals[1] && finals[1] != finals[2] && finals[0] != finals[2], "three methods, three networks");

    // Stage 2 on KCL's frozen feature: a class-balanced classifier, the backbone untouched.
    let kcl = dir.path().join("kcl");
    let o = rbl(&["stage2", "--checkpoint", kcl.to_str().unwrap(), "--method", "crt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let result: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(result["test"]["raw"]["top1"].as_f64().unwrap() > 0.0);
    assert!(kcl.join("stage2-crt.json").is_file());
}

/// KCL's classifier is a probe on the detached feature: another classifier loss trains another
/// head on exactly the same backbone. HCL's classifier does teach the backbone.
#[test]
fn kcls_probe_teaches_the_backbone_nothing_and_hcls_classifier_does() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let backbone = |run: &Path| -> Vec<(String, Vec<u8>)> {
        exported(dir.path(), run).into_iter().filter(|(n, _)| n.starts_with("backbone.")).collect()
    };
    let head =
        |run: &Path| -> Vec<(String, Vec<u8>)> { exported(dir.path(), run).into_iter().filter(|(n, _)| n.starts_with("head.")).collect() };
    let (a, b) = (train(dir.path(), "kcl_ce", &config("kcl", "ce", 1)), train(dir.path(), "kcl_bs", &config("kcl", "balanced_softmax", 1)));
    assert_eq!(backbone(&a), backbone(&b), "the same backbone whatever the probe's loss");
    assert_ne!(head(&a), head(&b), "but another head");
    // HCL over 3 epochs: the second gives the classifier a share (1 − α = 1/9; the tiny
    // schedule's last epoch has learning rate 0), which reaches the backbone.
    let (c, d) = (train(dir.path(), "hcl_ce", &config("hcl", "ce", 3)), train(dir.path(), "hcl_bs", &config("hcl", "balanced_softmax", 3)));
    assert_ne!(backbone(&c), backbone(&d));
}

/// TSC's centroids are state: they live in the checkpoint, and a run crashed mid-epoch
/// resumes to the weights (and centroids) of the run that never stopped.
#[test]
fn a_tsc_run_crashed_mid_epoch_resumes_bit_for_bit() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tsc.toml", &config("tsc", "ce", 2));
    let c = cfg.to_str().unwrap();
    let (straight, cut) = (dir.path().join("straight"), dir.path().join("cut"));
    assert!(rbl(&["train", "--config", c, "--out", straight.to_str().unwrap(), "-q"]).status.success());
    let crashed = rbl(&["train", "--config", c, "--out", cut.to_str().unwrap(), "-q", "--crash-after-step", "10"]);
    assert!(!crashed.status.success());
    let resumed = rbl(&["train", "--resume", cut.to_str().unwrap(), "-q"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(digest(&cut, "checkpoint-000002"), digest(&straight, "checkpoint-000002"));
    assert_eq!(metrics(&cut), metrics(&straight));
}
