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

/// Which point of an epoch its learning rate is read at (`train.lr_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrAt {
    /// The schedule's value at the end of the epoch, t = epoch + 1: the released code's
    /// (`lr/2 + lr/2·(e+1)/W` in warm-up, `½(1 + cos(π(e − W + 1)/(E − W)))` after; its last
    /// epoch trains at lr 0). A warm-up from 0 then starts above 0.
    #[default]
    EpochEnd,
    /// The value at its start, t = epoch: rbl's earlier schedule (warm-up from exactly
    /// `warmup_start_factor·lr`, the cosine one epoch later).
    EpochStart,
}

/// Learning rate of 0-based `epoch`: from `start·lr` rising linearly to `lr` over the W warm-up
/// epochs, then lr·½(1 + cos(π·(t − W)/(E − W))), read at t = epoch + 1 or epoch
/// ([`LrAt`]); a step schedule drops ×γ from each milestone epoch on.
pub fn learning_rate(cfg: &TrainConfig, epoch: usize) -> f64 {
    let w = cfg.warmup_epochs;
    let t = match cfg.lr_at {
        LrAt::EpochEnd => epoch + 1,
        LrAt::EpochStart => epoch,
    } as f64;
    if epoch < w {
        return cfg.lr * (cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * t / w as f64);
    }
    if cfg.schedule == Schedule::Step {
        let drops = cfg.lr_milestones.iter().filter(|&&m| epoch >= m).count();
        return cfg.lr * cfg.lr_gamma.powi(drops as i32);
    }
    let total = cfg.epochs.saturating_sub(w).max(1) as f64;
    cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * (t - w as f64) / total).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The released code's BalancedSoftmax_lr_decay (run/utils.py), as written there.
    fn released(lr: f64, e: usize, linear_epoch: usize, epoch_num: usize) -> f64 {
        if e < linear_epoch {
            lr / 2.0 + lr / 2.0 * (e + 1) as f64 / linear_epoch as f64
        } else {
            let (begin, end) = (linear_epoch as f64, epoch_num as f64);
            lr * 0.5 * (1.0 + (std::f64::consts::PI * (e as f64 - begin + 1.0) / (end - begin)).cos())
        }
    }

    #[test]
    fn the_default_is_the_released_codes_600_epoch_schedule() {
        let cfg = TrainConfig { lr: 0.1, epochs: 600, warmup_epochs: 8, warmup_start_factor: 0.5, ..Default::default() };
        for e in 0..600 {
            let (got, want) = (learning_rate(&cfg, e), released(0.1, e, 8, 600));
            assert!((got - want).abs() < 1e-15, "epoch {e}: {got} vs {want}");
        }
        assert!((learning_rate(&cfg, 0) - 0.05625).abs() < 1e-15 && learning_rate(&cfg, 7) == 0.1);
        assert!(learning_rate(&cfg, 599).abs() < 1e-15, "its last epoch trains at lr 0");
    }

    #[test]
    fn warm_up_then_cosine() {
        let cfg =
            TrainConfig { lr: 0.1, epochs: 10, warmup_epochs: 2, warmup_start_factor: 0.5, lr_at: LrAt::EpochStart, ..Default::default() };
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
            lr_at: LrAt::EpochStart,
            ..Default::default()
        };
        assert_eq!(learning_rate(&cfg, 0), 0.0);
        assert!((learning_rate(&cfg, 4) - 0.08).abs() < 1e-12);
        assert_eq!(learning_rate(&cfg, 5), 0.1);
        assert_eq!(learning_rate(&cfg, 159), 0.1);
        assert!((learning_rate(&cfg, 160) - 0.01).abs() < 1e-12);
        assert!((learning_rate(&cfg, 199) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn a_warm_up_from_zero_read_at_the_epoch_end_starts_above_zero() {
        let cfg = TrainConfig { lr: 0.1, epochs: 200, warmup_epochs: 5, warmup_start_factor: 0.0, ..Default::default() };
        assert!((learning_rate(&cfg, 0) - 0.02).abs() < 1e-15);
        assert!((learning_rate(&cfg, 4) - 0.1).abs() < 1e-15);
    }
}
