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
