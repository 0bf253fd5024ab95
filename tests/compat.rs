//! Runs written by earlier versions of rbl still load: `tests/fixtures/run_before_redesign` is
//! a tiny real run (tests/common's tiny config with head rbl, 4 epochs) written by the code as
//! it was before the redesign of issue #17 (commit 8cf54e1), when the backbone was an optional
//! field of the network and the config choices were strings.

mod common;

use common::*;
use std::path::Path;

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/run_before_redesign"))
}

#[test]
fn an_old_checkpoint_loads_with_bitwise_the_same_weights() {
    require_fmnist();
    let run = rbl::train::trained_run::TrainedRun::open(fixture()).unwrap();
    let crc = rbl::train::checkpoint::weights_digest(&run.net);
    assert_eq!(crc, run.checkpoint.state.weights_crc32, "the weights read back are the ones saved");
    assert_eq!(run.checkpoint.state.epoch, 4);
}

#[test]
fn an_old_run_evaluates_to_the_numbers_it_wrote() {
    require_fmnist();
    let out = rbl(&["eval", "--checkpoint", fixture().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let now: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let then: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("metrics.json")).unwrap()).unwrap();
    for key in ["raw", "adjusted"] {
        assert_eq!(now[key]["top1"], then["test"][key]["top1"], "{key} top-1");
        assert_eq!(now[key]["per_class"], then["test"][key]["per_class"], "{key} per class");
    }
    assert_eq!(now["loss"], then["test"]["loss"]);
}

#[test]
fn an_old_runs_config_keeps_the_options_it_was_trained_with() {
    // Written before model.rotation_generator, model.projection_init, train.lr_at and
    // loss.focal existed: it means the values of that time, not today's defaults.
    use rbl::config::ExperimentConfig;
    let stored = ExperimentConfig::load_stored(&fixture().join("config.toml"), &[]).unwrap();
    let text = stored.to_toml_string();
    for (section, key, legacy) in rbl::config::LEGACY_VALUES {
        let line = format!("{key} = \"{legacy}\"");
        assert!(text.contains(&line), "[{section}] {line} in {text}");
    }
    // A user's config without them gets the released code's choices.
    let fresh = ExperimentConfig::load(&fixture().join("config.toml"), &[]).unwrap();
    assert_ne!(fresh, stored);
    assert_eq!(fresh.model.rotation_generator, rbl::head::rotation::RotationGenerator::Lower);
}
