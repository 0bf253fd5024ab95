//! Learning-rate schedules: linear warm-up, then cosine decay to zero (the RBL paper's) or
//! step decay at milestones (the "Fixed" paper's: ×0.1 at epochs 160 and 180 of 200).

use serde::{Deserialize, Serialize};

use crate::train::config::TrainConfig;

/// What follows the warm-up (`train.schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Cosine decay to 0 at the last epoch (the RBL paper's).
    #[default]
    Cosine,
    /// × `lr_gamma` at each of `lr_milestones` (the "Fixed" paper's).
    Step,
}

/// Learning rate of 0-based `epoch`: from `start·lr` rising linearly to `lr` over the warm-up
/// epochs, then lr·½(1 + cos(π·t/T)) over the remaining T epochs.
pub fn learning_rate(cfg: &TrainConfig, epoch: usize) -> f64 {
    let w = cfg.warmup_epochs;
    if epoch < w {
        return cfg.lr * (cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * epoch as f64 / w as f64);
    }
    if cfg.schedule == Schedule::Step {
        let drops = cfg.lr_milestones.iter().filter(|&&m| epoch >= m).count();
        return cfg.lr * cfg.lr_gamma.powi(drops as i32);
    }
    let total = cfg.epochs.saturating_sub(w).max(1) as f64;
    let t = (epoch - w) as f64;
    cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t / total).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_cosine() {
        let cfg = TrainConfig { lr: 0.1, epochs: 10, warmup_epochs: 2, warmup_start_factor: 0.5, ..Default::default() };
        let lrs: Vec<f64> = (0..10).map(|e| learning_rate(&cfg, e)).collect();
        assert!((lrs[0] - 0.05).abs() < 1e-12);
        assert!((lrs[1] - 0.075).abs() < 1e-12);
        assert!((lrs[2] - 0.1).abs() < 1e-12);
        assert!((lrs[6] - 0.05).abs() < 1e-12); // halfway through the cosine
        assert!(lrs.windows(2).skip(2).all(|w| w[1] < w[0]));
        assert!(lrs[9] > 0.0);
    }

    #[test]
    fn warm_up_then_steps() {
        let cfg = TrainConfig {
            lr: 0.1,
            epochs: 200,
            warmup_epochs: 5,
            warmup_start_factor: 0.0,
            schedule: Schedule::Step,
            lr_milestones: vec![160, 180],
            lr_gamma: 0.1,
            ..Default::default()
        };
        assert_eq!(learning_rate(&cfg, 0), 0.0);
        assert!((learning_rate(&cfg, 4) - 0.08).abs() < 1e-12);
        assert_eq!(learning_rate(&cfg, 5), 0.1);
        assert_eq!(learning_rate(&cfg, 159), 0.1);
        assert!((learning_rate(&cfg, 160) - 0.01).abs() < 1e-12);
        assert!((learning_rate(&cfg, 199) - 0.001).abs() < 1e-12);
    }
}
