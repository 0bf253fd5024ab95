//! Checkpoints: random bytes as model.bpk (with a matching checksum, so the fuzzer reaches the
//! record parser rather than stopping at the CRC) or as state.json, loaded and applied to the
//! network its config builds: an error or a network, never a panic.
#![no_main]
use std::sync::OnceLock;

use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use rbl::ExperimentConfig;
use rbl::network::Network;
use rbl::train::checkpoint::{apply_weights, load_checkpoint};

fn config() -> &'static ExperimentConfig {
    static CFG: OnceLock<ExperimentConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        let mut cfg = ExperimentConfig::default();
        cfg.model.widths = [2, 2, 4];
        cfg.model.feature_dim = 9;
        cfg
    })
}

fuzz_target!(|data: &[u8]| {
    // apply_weights turns burn's panic on a record that does not fit into an error with
    // catch_unwind; libFuzzer's panic hook would abort first, so it is replaced by a silent one
    // (a panic that escapes still aborts the run and is reported).
    static QUIET: OnceLock<()> = OnceLock::new();
    QUIET.get_or_init(|| std::panic::set_hook(Box::new(|_| {})));
    let Some((&mode, body)) = data.split_first() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let state = |model_crc: u32| {
        format!(
            "{{\"epoch\":1,\"config_toml\":{},\"history\":[],\"wall_seconds\":0.0,\"model_crc32\":{model_crc},\"optimizer_crc32\":0,\"weights_crc32\":0}}",
            serde_json_string(&cfg.to_toml_string())
        )
    };
    std::fs::write(dir.path().join("optimizer.bpk"), b"").unwrap();
    if mode % 2 == 0 {
        std::fs::write(dir.path().join("model.bpk"), body).unwrap();
        std::fs::write(dir.path().join("state.json"), state(crc(body))).unwrap();
    } else {
        std::fs::write(dir.path().join("model.bpk"), b"").unwrap();
        std::fs::write(dir.path().join("state.json"), body).unwrap();
    }
    if let Ok(ckpt) = load_checkpoint(dir.path()) {
        let device = Device::flex();
        if let Ok(net) = Network::from_config(&ckpt.config, 1, 10, &device) {
            let _ = apply_weights(net, &ckpt);
        }
    }
});

fn crc(bytes: &[u8]) -> u32 {
    rbl::train::checkpoint::crc32(bytes)
}

fn serde_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            c => out.push(c),
        }
    }
    out + "\""
}
