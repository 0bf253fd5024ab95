//! End-to-end: the paper's analyses from real runs on a small Fashion-MNIST slice — feature
//! pictures, the HTML report, and the frame-directions experiment.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn feature_pictures_and_report_cover_every_section() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", &tiny_config("rbl", 2));
    let run = dir.path().join("run");
    let sets = ["eval.feature_epochs=[1, 2]", "eval.train_eval=true", "eval.nc_every=1"];
    let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let out = rbl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    for epoch in ["001", "002"] {
        for ext in ["png", "svg"] {
            let f = run.join("features").join(format!("epoch_{epoch}.{ext}"));
            assert!(std::fs::metadata(&f).map(|m| m.len() > 1000).unwrap_or(false), "{} missing or empty", f.display());
        }
    }
    let svg = std::fs::read_to_string(run.join("features/epoch_002.svg")).unwrap();
    assert!(svg.contains("train (PC1") && svg.contains("test (PC1"), "a train and a test panel");
    // The tiny slice has 40 … 4 training and 10 test images per class: each class in each
    // legend, by its name.
    assert_eq!(svg.matches("T-shirt/top (40)").count(), 1);
    assert_eq!(svg.matches("Ankle boot (4)").count(), 1, "class 9's 4 training images");
    assert_eq!(svg.matches("Ankle boot (10)").count(), 1, "class 9's 10 test images");

    // Eval-mode train accuracy is logged each epoch, and agrees with its own definition:
    // a percentage of the 100-odd training images.
    let log = epoch_log(&run);
    for e in &log {
        let acc = e["train_eval_acc"].as_f64().expect("train_eval_acc logged");
        assert!((0.0..=100.0).contains(&acc));
        assert!(e["train_eval_loss"].as_f64().unwrap().is_finite());
    }

    let out = rbl(&["report", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for id in rbl::report::html::SECTIONS {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "report lacks section {id}");
    }
    // Self-contained: every image inline, nothing fetched.
    let images = html.matches("<img ").count();
    assert_eq!(images, html.matches("src=\"data:image/png;base64,").count());
    assert_eq!(images, 4 + 2, "per-class, confusion, curves, neural collapse and two feature pictures");
    // Results first, the config last and folded.
    let at = |id: &str| html.find(&format!("<section id=\"{id}\">")).unwrap();
    assert!(at("summary") < at("per-class") && at("per-class") < at("confusion") && at("confusion") < at("curves"));
    assert!(at("epochs") < at("config") && html.contains("<details><summary>config.toml"));
    // The per-class table names every class with its counts and accuracies, as metrics.json.
    let metrics: Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let classes = metrics["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 10);
    assert_eq!((classes[9]["name"].as_str(), classes[9]["train_images"].as_u64()), (Some("Ankle boot"), Some(4)));
    assert_eq!((classes[9]["test_images"].as_u64(), classes[9]["shot"].as_str()), (Some(10), Some("few")));
    assert!(html.contains("<td class=\"name\">Ankle boot</td><td>9</td><td>4</td><td>10</td>"), "the table's row of class 9");
    let confusion: Value = serde_json::from_str(&std::fs::read_to_string(run.join("confusion.json")).unwrap()).unwrap();
    let cells = confusion["adjusted"].as_array().unwrap();
    assert_eq!(cells.len(), 100);
    assert_eq!(cells.iter().map(|v| v.as_u64().unwrap()).sum::<u64>(), 100, "every test image counted once");
    let confusion_svg = std::fs::read_to_string(run.join("plots/confusion.svg")).unwrap();
    assert!(confusion_svg.contains("Sneaker") && confusion_svg.contains("adjusted (τ = 1)"));
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("src=\"/"));
    // The final table shows the run's own numbers.
    for key in ["raw", "adjusted"] {
        let top1 = metrics["test"][key]["top1"].as_f64().unwrap();
        assert!(html.contains(&format!("<td>{top1:.2}</td>")), "{key} top-1 {top1:.2} in the table");
    }
    assert!(html.contains("head = &quot;rbl&quot;"), "the config, escaped");
}

#[test]
fn frame_directions_experiment_trains_three_arms_and_summarises() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", &tiny_config("etf", 2));
    let out_dir = dir.path().join("fd");
    let args = [
        "experiment",
        "frame-directions",
        "--config",
        cfg.to_str().unwrap(),
        "--set",
        "data.n_max=20",
        "--out",
        out_dir.to_str().unwrap(),
        "-q",
    ];
    let out = rbl(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap()).unwrap();
    let arms: Vec<&str> = summary.iter().map(|r| r["arm"].as_str().unwrap()).collect();
    assert_eq!(arms, ["A", "B", "rbl"]);
    assert_eq!(summary[0]["frame_seed"], 1);
    assert_eq!(summary[1]["frame_seed"], 2);
    for r in &summary {
        let (train, test, gap) = (r["train_acc"].as_f64().unwrap(), r["test_acc"].as_f64().unwrap(), r["gap"].as_f64().unwrap());
        assert!((train - test - gap).abs() < 1e-9);
        assert!(std::path::Path::new(r["features_png"].as_str().unwrap()).is_file(), "{r}");
        // The arm's test accuracy is its run's final metric.
        let m: Value = serde_json::from_str(
            &std::fs::read_to_string(std::path::Path::new(r["run_dir"].as_str().unwrap()).join("metrics.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(m["test"]["raw"]["top1"].as_f64().unwrap(), test);
    }
    // The two fixed arms differ only in the frame: different frames, so (almost surely) different logits.
    let a = std::fs::read_to_string(out_dir.join("A/config.toml")).unwrap();
    let b = std::fs::read_to_string(out_dir.join("B/config.toml")).unwrap();
    let differing: Vec<(&str, &str)> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
    assert_eq!(differing.len(), 2, "only name and frame_seed differ: {differing:?}");
    let md = std::fs::read_to_string(out_dir.join("summary.md")).unwrap();
    assert!(md.contains("| A | etf | 1 |") && md.contains("| B | etf | 2 |") && md.contains("| rbl | rbl | 1 |"), "{md}");
    for ext in ["png", "svg"] {
        assert!(std::fs::metadata(out_dir.join(format!("curves.{ext}"))).unwrap().len() > 1000);
    }
    // Running it again picks up the finished arms instead of retraining them.
    let before = std::fs::read_to_string(out_dir.join("A/metrics.json")).unwrap();
    let again = rbl(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(before, std::fs::read_to_string(out_dir.join("A/metrics.json")).unwrap());
}
