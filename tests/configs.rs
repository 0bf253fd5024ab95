//! Every shipped config parses and validates as it is.

use rbl::config::{BackboneKind, DatasetKind, HeadKind, LossKind, Schedule};

#[test]
fn every_shipped_config_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    let paths: Vec<_> = ["", "paper", "baselines", "terminal"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    for path in paths {
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = rbl::ExperimentConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(format!("{}.toml", cfg.name), path.file_name().unwrap().to_string_lossy(), "config name matches its file");
            n += 1;
        }
    }
    assert!(n >= 10 + 14 + 24 + 8, "only {n} configs found");
}

/// The terminal-phase experiment (issue #14): one recipe for every method, only the head and the
/// rotation generator differ; MNIST without flips and on a balanced test set.
#[test]
fn terminal_phase_configs_differ_only_in_the_method() {
    use rbl::head::rotation::RotationGenerator;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/terminal");
    for ds in ["fmnist", "mnist"] {
        let load = |m: &str| rbl::ExperimentConfig::load(&dir.join(format!("terminal_{ds}_{m}.toml")), &[]).unwrap();
        let ce = load("ce");
        assert_eq!((ce.train.epochs, ce.train.batch_size, ce.train.warmup_epochs, ce.data.n_max), (200, 128, 5, 1000));
        assert_eq!(ce.eval.select, rbl::train::selection::Selection::Val);
        assert_eq!(ce.data.flip, ds == "fmnist");
        assert_eq!(ce.data.test_per_class, if ds == "mnist" { 892 } else { 0 });
        for (m, head, generator) in [
            ("fixed", HeadKind::Etf, None),
            ("rbl_lower", HeadKind::Rbl, Some(RotationGenerator::Lower)),
            ("rbl_full", HeadKind::Rbl, Some(RotationGenerator::Full)),
        ] {
            let c = load(m);
            let mut keys = ce.differing_keys(&c);
            keys.sort();
            let want: Vec<&str> = if generator == Some(RotationGenerator::Full) {
                vec!["method", "model.head", "model.rotation_generator", "name"]
            } else {
                vec!["method", "model.head", "name"]
            };
            assert_eq!(keys, want, "{ds} {m}");
            assert_eq!(c.model.head, head);
        }
    }
}

/// The paper's Table 1 and 2 rows: one config each for RBL and Fixed, with the recipe's key values.
#[test]
fn paper_table_configs_carry_their_recipes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper");
    for ds in ["cifar10", "cifar100"] {
        for ir in [50, 100, 200] {
            let load = |m: &str| rbl::ExperimentConfig::load(&dir.join(format!("{ds}_lt{ir}_{m}.toml")), &[]).unwrap();
            let (r, f) = (load("rbl"), load("fixed"));
            assert_eq!((r.data.imbalance_ratio, f.data.imbalance_ratio), (ir as f64, ir as f64));
            assert_eq!((r.model.head, r.train.epochs, r.train.batch_size, r.train.warmup_epochs), (HeadKind::Rbl, 600, 256, 8));
            assert!(r.data.autoaugment && r.data.cutout == 16 && r.train.schedule == Schedule::Cosine);
            assert_eq!((f.model.head, f.loss.name, f.train.epochs, f.train.batch_size), (HeadKind::Etf, LossKind::DotRegression, 200, 128));
            assert!(f.model.feature_bn_l2 && f.train.mixup_alpha == 1.0 && f.train.lr_milestones == [160, 180]);
            assert_eq!(f.model.widths, if ds == "cifar100" { [32, 64, 128] } else { [16, 32, 64] });
        }
    }
    for m in ["rbl", "fixed"] {
        let c = rbl::ExperimentConfig::load(&dir.join(format!("imagenet_lt_{m}.toml")), &[]).unwrap();
        assert_eq!((c.data.dataset, c.data.num_classes, c.model.backbone), (DatasetKind::Folder, 1000, BackboneKind::Resnext50_32x4d));
    }
}

/// Issue #35: the contrastive rows of Tables 1 and 2 have their configs, with the reference's
/// stage-1 values (KCL/TSC: temperature 0.07, k = 6, 128-d projection; TSC's target weight 0.2)
/// and HCL's SupCon branch (every same-class image a positive).
#[test]
fn contrastive_paper_configs_carry_their_recipes() {
    use rbl::config::ContrastiveKind;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper");
    let load = |name: &str| rbl::ExperimentConfig::load(&dir.join(format!("{name}.toml")), &[]).unwrap();
    for (name, method, epochs) in [("imagenet_lt_kcl", ContrastiveKind::Kcl, 200), ("imagenet_lt_tsc", ContrastiveKind::Tsc, 400)] {
        let c = load(name);
        assert_eq!((c.contrastive.method, c.train.epochs, c.train.batch_size), (method, epochs, 256), "{name}");
        assert_eq!((c.contrastive.positives, c.contrastive.projection_dim, c.contrastive.temperature), (6, 128, 0.07), "{name}");
        assert_eq!(c.model.backbone, BackboneKind::Resnet50);
    }
    for ds in ["cifar10", "cifar100"] {
        for ir in [50, 100] {
            let tsc = load(&format!("{ds}_lt{ir}_tsc"));
            assert_eq!((tsc.contrastive.method, tsc.contrastive.target_weight, tsc.train.epochs), (ContrastiveKind::Tsc, 0.2, 1000));
            assert_eq!(tsc.data.imbalance_ratio, ir as f64);
            let hcl = load(&format!("{ds}_lt{ir}_hcl"));
            assert_eq!((hcl.contrastive.method, hcl.contrastive.positives), (ContrastiveKind::Hcl, 0));
            assert_eq!((hcl.model.backbone, hcl.model.head), (BackboneKind::Resnet32, HeadKind::Linear));
        }
    }
}
