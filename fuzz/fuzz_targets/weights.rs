//! Weight files for `model.init_weights`: random bytes as a `.pth` (torch.save's zip) or a
//! `.safetensors` file, imported into a small ResNet-32 with an RBL head: an error or a
//! network whose every imported value is finite, never a panic, and no tensor inflated before
//! its declared shape matched the network's (a zip bomb under a used name would show as an
//! allocation past -malloc_limit_mb).
#![no_main]
use std::sync::OnceLock;

use burn::store::ModuleSnapshot;
use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use rbl::ExperimentConfig;
use rbl::model::weights::import_weights;
use rbl::network::Network;

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
    let Some((&mode, body)) = data.split_first() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(if mode % 2 == 0 { "w.pth" } else { "w.safetensors" });
    std::fs::write(&path, body).unwrap();
    let cfg = config();
    let net = Network::from_config(cfg, 1, 10, &Device::flex()).unwrap();
    if let Ok((net, _)) = import_weights(net, cfg.model.backbone, &path) {
        for t in net.collect(None, None, false) {
            let values = burn::store::bridge::into_data(t).unwrap().convert::<f32>().try_into_vec::<f32>().unwrap();
            assert!(values.iter().all(|v| v.is_finite()), "an imported value is not finite");
        }
    }
});
