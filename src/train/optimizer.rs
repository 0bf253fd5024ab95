//! SGD with (Nesterov) momentum and L2 weight decay on every parameter, as in the paper's code.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};

use crate::train::config::TrainConfig;

/// The optimiser of a run. Dampening is 0 (PyTorch's default; burn's default is 0.1).
pub fn build_optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    let momentum = (cfg.momentum > 0.0).then_some(MomentumConfig { momentum: cfg.momentum, dampening: 0.0, nesterov: cfg.nesterov });
    let decay = (cfg.weight_decay > 0.0).then_some(WeightDecayConfig { penalty: cfg.weight_decay as f32 });
    SgdConfig::new().with_momentum(momentum).with_weight_decay(decay).init()
}
