//! End-to-end: the `rbl` binary trains on a small real slice of Fashion-MNIST, writes its run
//! folder, and `rbl eval` reproduces the final numbers from the checkpoint.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn train_writes_the_run_folder_and_eval_reproduces_it() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", &tiny_config("rbl", 1));
    let run = dir.path().join("run");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "--set", "eval.nc_every=1"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The resolved config, loadable as it is.
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("head = \"rbl\"") && resolved.contains("epochs = 1"), "{resolved}");

    // One JSON line per epoch with the documented fields.
    let log = std::fs::read_to_string(run.join("epochs.jsonl")).unwrap();
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    let e = &lines[0];
    for key in [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "test_acc_adjusted",
        "test_shots",
        "test_shots_adjusted",
        "seconds",
        "loader_wait_seconds",
    ] {
        assert!(!e[key].is_null(), "epoch record lacks {key}: {e}");
    }
    assert_eq!(e["epoch"], 1);
    // The released code's warm-up, read at the epoch's end: lr/2 + lr/2·(e + 1)/W = 0.1 for W = 1.
    assert!((e["lr"].as_f64().unwrap() - 0.1).abs() < 1e-12, "lr {}", e["lr"]);
    for key in ["nc1", "equinorm", "equiangularity", "max_angle_distance", "self_duality", "ncc_agreement"] {
        assert!(e["neural_collapse"][key].as_f64().unwrap().is_finite(), "NC metric {key}: {e}");
    }
    let ortho = e["rotation_orthogonality_error"].as_f64().unwrap();
    assert!(ortho < 1e-5, "R drifted from orthogonal: {ortho}");

    // Final metrics: the test set is balanced 10 per class; counts follow the rule for n_max 40, IR 10.
    let m: Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let counts: Vec<u64> = m["train_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(counts, vec![40, 30, 23, 18, 14, 11, 8, 6, 5, 4]);
    assert_eq!(m["test"]["images"], 100);
    // On a balanced test set, top-1 is the mean of the per-class accuracies.
    let top1 = m["test"]["raw"]["top1"].as_f64().unwrap();
    let per_class: Vec<f64> = m["test"]["raw"]["per_class"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(per_class.len(), 10);
    assert!((top1 - per_class.iter().sum::<f64>() / 10.0).abs() < 1e-9, "{top1} vs {per_class:?}");
    assert!(m["test"]["loss"].as_f64().unwrap().is_finite());
    assert!(m["test"]["adjusted"]["few"].is_number(), "few-shot bucket (< 8 images) is non-empty");

    // A checkpoint that loads back: eval gives exactly the numbers the run reported.
    assert!(run.join("latest").is_file());
    let ev = rbl(&["eval", "--checkpoint", run.to_str().unwrap()]);
    assert!(ev.status.success(), "{}", stderr(&ev));
    let ev: Value = serde_json::from_slice(&ev.stdout).unwrap();
    assert_eq!(ev, m["test"], "eval of the saved checkpoint differs from the run's own final evaluation");

    // τ = 0 turns the adjustment off.
    let ev0 = rbl(&["eval", "--checkpoint", run.to_str().unwrap(), "--tau", "0"]);
    let ev0: Value = serde_json::from_slice(&ev0.stdout).unwrap();
    assert_eq!(ev0["raw"], ev0["adjusted"]);

    // Training into an existing run folder is refused unless --force.
    let again = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap()]);
    assert!(!again.status.success() && stderr(&again).contains("--resume"), "{}", stderr(&again));
}

#[test]
fn every_loss_and_sampler_trains_through_the_binary() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", &tiny_config("linear", 1));
    let runs: [(&str, &str); 10] = [
        ("loss.name=\"dot_regression\"", "model.head=\"etf\""),
        ("model.feature_bn_l2=true", "loss.name=\"lade\""),
        ("loss.name=\"logit_adjusted\"", "data.sampler=\"instance\""),
        ("loss.name=\"balanced_softmax\"", "data.sampler=\"class_balanced\""),
        ("loss.name=\"cb_ce\"", "data.sampler=\"sqrt\""),
        ("loss.name=\"cb_focal\"", "loss.gamma=2.0"),
        ("loss.name=\"ldam\"", "model.cosine=true"),
        ("loss.name=\"lade\"", "loss.lade_alpha=0.1"),
        ("loss.name=\"ce\"", "data.sampler=\"class_balanced\""),
        ("model.cosine=true", "loss.name=\"cb_focal\""),
    ];
    for (i, (a, b)) in runs.iter().enumerate() {
        let run = dir.path().join(format!("r{i}"));
        let out = rbl(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            a,
            "--set",
            b,
            "--set",
            "data.n_max=20",
            "--out",
            run.to_str().unwrap(),
            "-q",
        ]);
        assert!(out.status.success(), "{a} {b}: {}", stderr(&out));
        let log = std::fs::read_to_string(run.join("epochs.jsonl")).unwrap();
        let e: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
        assert!(e["train_loss"].as_f64().unwrap().is_finite(), "{a} {b}: {e}");
        let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
        let key = a.split('=').nth(1).unwrap();
        assert!(resolved.contains(key), "{key} not in the resolved config: {resolved}");
    }
    let out = rbl(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "data.sampler=\"balanced\"",
        "--out",
        dir.path().join("bad").to_str().unwrap(),
    ]);
    assert!(!out.status.success() && stderr(&out).contains("sampler"), "{}", stderr(&out));
}

#[test]
fn posthoc_tau_is_chosen_on_validation() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", &tiny_config("linear", 1));
    let run = dir.path().join("run");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--set", "data.val_per_class=5", "--out", run.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["val"]["images"], 50, "balanced validation split of 5 per class");
    for method in ["logit-adjust", "tau-norm"] {
        let out = rbl(&["posthoc", "--checkpoint", run.to_str().unwrap(), "--method", method, "--grid", "0,0.5,1,1.5"]);
        assert!(out.status.success(), "{method}: {}", stderr(&out));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        let val = r["validation"].as_array().unwrap();
        assert_eq!(val.len(), 4);
        let chosen = r["chosen_tau"].as_f64().unwrap();
        let best = val.iter().map(|p| p[1].as_f64().unwrap()).fold(f64::NEG_INFINITY, f64::max);
        let at_chosen = val.iter().find(|p| p[0].as_f64().unwrap() == chosen).unwrap()[1].as_f64().unwrap();
        assert_eq!(at_chosen, best, "{method}: chosen τ is not the validation optimum");
        assert_eq!(r["test"]["images"], 100);
        assert!(r["test"]["loss"].as_f64().unwrap().is_finite());
    }
    // Logit adjustment at the chosen τ gives exactly what `rbl eval --tau` gives.
    let la = rbl(&["posthoc", "--checkpoint", run.to_str().unwrap(), "--method", "logit-adjust", "--grid", "0,0.5,1,1.5"]);
    let la: Value = serde_json::from_slice(&la.stdout).unwrap();
    let tau = la["chosen_tau"].as_f64().unwrap().to_string();
    let ev: Value = serde_json::from_slice(&rbl(&["eval", "--checkpoint", run.to_str().unwrap(), "--tau", &tau]).stdout).unwrap();
    assert_eq!(ev["adjusted"], la["test"]["adjusted"]);

    // τ-norm needs a linear head; post-hoc needs a validation split.
    let etf = dir.path().join("etf");
    let cfg_etf = write(dir.path(), "etf.toml", &tiny_config("etf", 1));
    assert!(
        rbl(&["train", "--config", cfg_etf.to_str().unwrap(), "--set", "data.n_max=20", "--out", etf.to_str().unwrap(), "-q"])
            .status
            .success()
    );
    let e = rbl(&["posthoc", "--checkpoint", etf.to_str().unwrap(), "--method", "logit-adjust"]);
    assert!(!e.status.success() && stderr(&e).contains("val_per_class"), "{}", stderr(&e));
}

#[test]
fn table_on_two_tiny_runs_names_the_missing_cell() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let etf = write(dir.path(), "etf.toml", &tiny_config("etf", 1).replace("[data]", "method = \"Fixed\"\n[data]"));
    let rbl_cfg = write(dir.path(), "rbl.toml", &tiny_config("rbl", 1));
    let other_ir = write(
        dir.path(),
        "rbl_ir5.toml",
        &tiny_config("rbl", 1)
            .replace("imbalance_ratio = 10.0", "imbalance_ratio = 5.0")
            .replace("name = \"tiny_rbl\"", "name = \"tiny_rbl_ir5\""),
    );
    let r = runs.to_str().unwrap();
    // Train two of the three; the third stays missing.
    let out = rbl(&["table", etf.to_str().unwrap(), rbl_cfg.to_str().unwrap(), "--runs", r, "--train", "--raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = rbl(&["table", etf.to_str().unwrap(), rbl_cfg.to_str().unwrap(), other_ir.to_str().unwrap(), "--runs", r, "--shots"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("| method | fashion-mnist IR10 | fashion-mnist IR5 |"), "{table}");
    let fixed = table.lines().find(|l| l.starts_with("| Fixed |")).expect("a Fixed row");
    let m: Value = serde_json::from_str(&std::fs::read_to_string(runs.join("tiny_etf/metrics.json")).unwrap()).unwrap();
    assert!(fixed.contains(&format!("{:.2}", m["test"]["adjusted"]["top1"].as_f64().unwrap())), "{fixed}");
    let rbl_row = table.lines().find(|l| l.starts_with("| rbl |")).expect("an rbl row");
    assert!(rbl_row.ends_with("| — |"), "the IR5 cell has no run: {rbl_row}");
    assert!(table.contains("Missing (1 run(s)") && table.contains("rbl_ir5.toml"), "{table}");

    // --seeds: one run per seed (<name>-s<seed>, trained with that seed), cells are mean ± std;
    // --two-stage adds a row for each stage-2 / post-hoc result found in a run folder.
    let out = rbl(&["table", etf.to_str().unwrap(), "--runs", r, "--seeds", "0,1", "--train", "--raw"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let seeded = String::from_utf8(out.stdout).unwrap();
    let s0: Value = serde_json::from_str(&std::fs::read_to_string(runs.join("tiny_etf-s0/metrics.json")).unwrap()).unwrap();
    let s1: Value = serde_json::from_str(&std::fs::read_to_string(runs.join("tiny_etf-s1/metrics.json")).unwrap()).unwrap();
    let (a, b) = (s0["test"]["raw"]["top1"].as_f64().unwrap(), s1["test"]["raw"]["top1"].as_f64().unwrap());
    let cell = format!("{:.2} ± {:.2} (n=2)", (a + b) / 2.0, (a - b).abs() / 2f64.sqrt());
    assert!(seeded.contains(&format!("| Fixed | {cell} |")), "{seeded}");
    let config: String = std::fs::read_to_string(runs.join("tiny_etf-s1/config.toml")).unwrap();
    assert!(config.contains("seed = 1"), "{config}");
    let o = rbl(&["stage2", "--checkpoint", runs.join("tiny_etf-s0").to_str().unwrap(), "--method", "lws", "--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = rbl(&["table", etf.to_str().unwrap(), "--runs", r, "--seeds", "0,1", "--two-stage"]);
    let t = String::from_utf8(out.stdout).unwrap();
    let lws: Value = serde_json::from_str(&std::fs::read_to_string(runs.join("tiny_etf-s0/stage2-lws.json")).unwrap()).unwrap();
    assert!(t.contains(&format!("| Fixed + LWS | {:.2} |", lws["test"]["raw"]["top1"].as_f64().unwrap())), "{t}");
}

#[test]
fn two_stage_methods_change_only_the_classifier_side() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", &tiny_config("linear", 1));
    let run = dir.path().join("run");
    assert!(rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]).status.success());
    let ckpt = run.join("checkpoint-000001");
    let model_before = std::fs::read(ckpt.join("model.bpk")).unwrap();
    let state: Value = serde_json::from_str(&std::fs::read_to_string(ckpt.join("state.json")).unwrap()).unwrap();
    for method in ["crt", "lws", "marc"] {
        let out = rbl(&["stage2", "--checkpoint", run.to_str().unwrap(), "--method", method, "--epochs", "2", "--batch-size", "32"]);
        assert!(out.status.success(), "{method}: {}", stderr(&out));
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        // The frozen network is bitwise the trained one, and its checkpoint is untouched.
        assert_eq!(r["backbone_crc32"], state["weights_crc32"], "{method}");
        assert_eq!(std::fs::read(ckpt.join("model.bpk")).unwrap(), model_before);
        assert_eq!(r["test"]["images"], 100);
        assert!(r["test"]["loss"].as_f64().unwrap().is_finite(), "{method}");
        let written: Value = serde_json::from_str(&std::fs::read_to_string(run.join(format!("stage2-{method}.json"))).unwrap()).unwrap();
        assert_eq!(written, r);
        // Reproducible: a second process gives bitwise the same result (cRT's classifier is
        // seeded from the run).
        let again = rbl(&["stage2", "--checkpoint", run.to_str().unwrap(), "--method", method, "--epochs", "2", "--batch-size", "32"]);
        assert_eq!(serde_json::from_slice::<Value>(&again.stdout).unwrap(), r, "{method}: same result twice");
        let per_class = r["per_class"].as_array().unwrap();
        match method {
            "crt" => assert!(per_class.is_empty()),
            "lws" => assert_eq!(per_class.len(), 1),
            _ => assert_eq!(per_class.len(), 2),
        }
        // Learned: the LWS scales and MARC's ω start at 1 and moved.
        if method != "crt" {
            assert!(per_class[0].as_array().unwrap().iter().any(|v| (v.as_f64().unwrap() - 1.0).abs() > 1e-6), "{method}: {r}");
        }
    }
}

#[test]
fn plot_and_compare_write_png_and_svg() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for head in ["etf", "rbl"] {
        let cfg = write(dir.path(), &format!("{head}.toml"), &tiny_config(head, 2));
        let run = dir.path().join(head);
        let out = rbl(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--set",
            "data.n_max=20",
            "--set",
            "eval.nc_every=1",
            "--out",
            run.to_str().unwrap(),
            "-q",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        runs.push(run);
    }
    let out = rbl(&["plot", runs[1].to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["curves", "per_class", "neural_collapse"] {
        for ext in ["png", "svg"] {
            let f = runs[1].join("plots").join(format!("{name}.{ext}"));
            assert!(std::fs::metadata(&f).map(|m| m.len() > 1000).unwrap_or(false), "{} missing or empty", f.display());
        }
    }
    let stem = dir.path().join("fixed_vs_rbl");
    let out = rbl(&["compare", runs[0].to_str().unwrap(), runs[1].to_str().unwrap(), "--out", stem.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
    assert!(svg.lines().any(|l| l.trim() == "etf") && svg.lines().any(|l| l.trim() == "rbl"), "both runs in the legend");
    assert!(std::fs::metadata(stem.with_extension("png")).unwrap().len() > 1000);
}

#[test]
fn trains_on_cifar10_binary_files() {
    // CIFAR is not installable offline: the test writes the exact binary format itself.
    use rbl::data::cifar::{Cifar, encode_cifar};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&data).unwrap();
    let image = |k: usize| (0..3072).map(|i| ((i * 31 + k * 17) % 256) as u8).collect::<Vec<u8>>();
    let (train, test) = Cifar::Ten.files(&data);
    for (b, p) in train.iter().enumerate() {
        let imgs: Vec<Vec<u8>> = (0..40).map(|k| image(b * 40 + k)).collect();
        let labels: Vec<(u8, u8)> = (0..40).map(|k| ((k % 10) as u8, 0)).collect();
        std::fs::write(p, encode_cifar(&imgs, &labels, Cifar::Ten)).unwrap();
    }
    let imgs: Vec<Vec<u8>> = (0..20).map(|k| image(1000 + k)).collect();
    let labels: Vec<(u8, u8)> = (0..20).map(|k| ((k % 10) as u8, 0)).collect();
    std::fs::write(&test[0], encode_cifar(&imgs, &labels, Cifar::Ten)).unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        &tiny_config("rbl", 1)
            .replace("[data]", "[data]\ndataset = \"cifar10\"\ncounts = \"official-rbl\"")
            .replace(&format!("root = \"{FMNIST}\""), &format!("root = \"{}\"", data.display()))
            .replace("n_max = 40", "n_max = 20"),
    );
    let run = dir.path().join("run");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    // ceil(20 · 10^(−i/9)): the official-rbl rounding.
    let counts: Vec<u64> = m["train_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(counts, vec![20, 16, 12, 10, 8, 6, 5, 4, 3, 2]);
    assert_eq!(m["test"]["images"], 20);

    // The paper's Table 1 configs run as they are once the data is there (budget cut for the test).
    let paper = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/paper");
    for method in ["rbl", "fixed"] {
        let cfg = paper.join(format!("cifar10_lt100_{method}.toml"));
        let root = format!("data.root=\"{}\"", data.display());
        let run = dir.path().join(method);
        let out = rbl(&[
            "train",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "-q",
            "--set",
            &root,
            "--set",
            "data.imbalance_ratio=10.0",
            "--set",
            "data.n_max=20",
            "--set",
            "train.epochs=1",
            "--set",
            "train.batch_size=8",
            "--set",
            "train.warmup_epochs=0",
        ]);
        assert!(out.status.success(), "{method}: {}", stderr(&out));
        assert!(run.join("metrics.json").is_file());
    }
}

#[test]
fn autoaugment_cutout_and_mixup_train_and_reproduce() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "c.toml", &tiny_config("rbl", 1));
    let digest = |run: &std::path::Path| {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(run.join("checkpoint-000001/state.json")).unwrap()).unwrap();
        s["weights_crc32"].as_u64().unwrap()
    };
    let train = |name: &str, sets: &[&str]| {
        let run = dir.path().join(name);
        let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = rbl(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        run
    };
    let all = ["data.autoaugment=true", "data.cutout=8", "train.mixup_alpha=1.0"];
    let (a, b) = (train("a", &all), train("b", &all));
    assert_eq!(digest(&a), digest(&b), "seeded: the same augmented run twice");
    assert_ne!(digest(&a), digest(&train("plain", &[])), "the switches change training");
    let log: Value = serde_json::from_str(std::fs::read_to_string(a.join("epochs.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    assert!(log["train_loss"].as_f64().unwrap().is_finite());
    let bad = rbl(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "train.mixup_alpha=-1",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(!bad.status.success() && stderr(&bad).contains("train.mixup_alpha"));

    // UniMix + Bayias ("Calibrated", issue #35): reproduces, differs from plain mixup, and
    // refuses a loss it cannot weigh image by image.
    let calibrated = ["train.mixup_alpha=0.8", "train.mixup=\"unimix\"", "train.unimix_tau=-0.5", "loss.name=\"bayias\""];
    let (c1, c2) = (train("calibrated_1", &calibrated), train("calibrated_2", &calibrated));
    assert_eq!(digest(&c1), digest(&c2), "seeded: the same UniMix run twice");
    let plain_mix = ["train.mixup_alpha=0.8", "loss.name=\"bayias\""];
    assert_ne!(digest(&c1), digest(&train("plain_mixup", &plain_mix)), "UniMix is not mixup");
    let bad = rbl(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "train.mixup_alpha=0.8",
        "--set",
        "train.mixup=\"unimix\"",
        "--set",
        "loss.name=\"cb_ce\"",
        "--out",
        dir.path().join("y").to_str().unwrap(),
    ]);
    assert!(!bad.status.success() && stderr(&bad).contains("train.mixup") && stderr(&bad).contains("cb_ce"), "{}", stderr(&bad));
}

#[test]
fn mixed_precision_trains_and_loss_scaling_is_exact_in_f32() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", &tiny_config("rbl", 1));
    let c = cfg.to_str().unwrap();
    let run = |name: &str, sets: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec!["train", "--config", c, "--out", out.to_str().unwrap(), "-q"];
        for s in sets {
            args.extend(["--set", s]);
        }
        let o = rbl(&args);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let state: Value = serde_json::from_str(&std::fs::read_to_string(out.join("checkpoint-000001/state.json")).unwrap()).unwrap();
        (out, state["weights_crc32"].as_u64().unwrap())
    };
    // Scaling by a power of two commutes with f32 rounding: the scaled run is bitwise the plain one.
    let (_, plain) = run("plain", &[]);
    let (_, scaled) = run("scaled", &["train.loss_scale=1024"]);
    assert_eq!(plain, scaled, "loss scaling changed the f32 weights");
    // f16 convolutions (flex runs them in software here): it trains, and its f32 checkpoint evaluates.
    let (half, digest) = run("half", &["train.precision=\"f16\""]);
    assert_ne!(digest, plain, "f16 arithmetic should round differently");
    let log = std::fs::read_to_string(half.join("epochs.jsonl")).unwrap();
    let first: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert!(first["train_loss"].as_f64().unwrap().is_finite());
    let e = rbl(&["eval", "--checkpoint", half.to_str().unwrap()]);
    assert!(e.status.success(), "{}", stderr(&e));
    let bad = rbl(&["train", "--config", c, "--out", dir.path().join("bad").to_str().unwrap(), "--set", "train.loss_scale=-1"]);
    assert!(!bad.status.success() && stderr(&bad).contains("train.loss_scale"), "{}", stderr(&bad));
}
