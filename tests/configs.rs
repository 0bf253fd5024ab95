//! Every shipped config parses and validates as it is.

use rbl::config::{BackboneKind, DatasetKind, HeadKind, LossKind, Schedule};

#[test]
fn every_shipped_config_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    let paths: Vec<_> =
        std::fs::read_dir(&dir).unwrap().chain(std::fs::read_dir(dir.join("paper")).unwrap()).map(|e| e.unwrap().path()).collect();
    for path in paths {
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = rbl::ExperimentConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(format!("{}.toml", cfg.name), path.file_name().unwrap().to_string_lossy(), "config name matches its file");
            n += 1;
        }
    }
    assert!(n >= 10 + 14, "only {n} configs found");
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
