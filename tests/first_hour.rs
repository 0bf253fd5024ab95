//! Issue #34, a user's first hour, through the binary: a folder of their own images trains at
//! its own resolution with no config (`rbl train --data`), a commented config to start from
//! (`rbl config init`), the effective config (`rbl config show`), and `rbl table` over run
//! folders whatever made them.

mod common;

use std::path::Path;

use common::*;

/// A tree of `side`-px images: three classes of `counts` training images (grey or colour,
/// told apart by brightness), four test images each.
fn tree(root: &Path, side: u32, counts: [usize; 3], grey: bool) {
    for (c, n) in counts.iter().enumerate() {
        for (split, n) in [("train", *n), ("test", 4)] {
            for i in 0..n {
                let p = root.join(split).join(format!("class_{c}")).join(format!("{i:03}.png"));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                let level = |x: u32, y: u32| (40 + 80 * c as u32 + (x * 7 + y * 3 + i as u32) % 30) as u8;
                if grey {
                    image::GrayImage::from_fn(side, side, |x, y| image::Luma([level(x, y)])).save(&p).unwrap();
                } else {
                    image::RgbImage::from_fn(side, side, |x, y| image::Rgb([level(x, y), 60, 255 - level(x, y)])).save(&p).unwrap();
                }
            }
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `rbl train --data DIR`: 28-px grey images train at 28 px, one channel, in memory, normalised
/// with their own statistics, the tree as it is; the choices are printed and stored.
#[test]
fn a_folder_of_small_images_trains_at_its_own_size_with_no_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("digits");
    tree(&root, 28, [40, 20, 8], true);
    let run = dir.path().join("run");
    let out = rbl(&[
        "train",
        "--data",
        root.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=16",
        "--set",
        "model.widths=[4,8,8]",
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("68 training images in 3 classes (40 … 8 per class), 28 × 28 px, grey"), "{err}");
    assert!(err.contains("data.image_size = 28") && err.contains("data.augment = \"cifar\"") && err.contains("data.channels = 1"), "{err}");
    let cfg = rbl::ExperimentConfig::load_stored(&run.join("config.toml"), &[]).unwrap();
    assert_eq!((cfg.name.as_str(), cfg.data.image_size, cfg.data.channels, cfg.data.imbalance_ratio), ("digits", 28, 1, 1.0));
    assert_eq!(cfg.data.mean.len(), 1, "the training set's own mean, stored");
    let card = json(&run.join("dataset.json"));
    assert_eq!((card["channels"].as_u64(), card["height"].as_u64()), (Some(1), Some(28)));
    assert!(card["chosen"].as_array().unwrap().iter().any(|c| c["key"] == "data.image_size"));
    assert_eq!(json(&run.join("metrics.json"))["train_counts"], serde_json::json!([40, 20, 8]));
    // Resuming the finished run (or with the same --data again) changes nothing.
    assert!(rbl(&["train", "--resume", run.to_str().unwrap(), "-q"]).status.success());
}

/// `rbl config init` writes a config that trains as it is; `rbl config show` prints every key
/// with what the data would make of the ones left to rbl; a root inside the tree gets a hint.
#[test]
fn config_init_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("birds");
    tree(&root, 80, [30, 12, 6], false);
    let out = rbl(&["config", "init", "--root", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("name = \"birds\"") && text.contains("# 1 uses train/ as it is"), "{text}");
    let cfg_path = write(dir.path(), "birds.toml", &text);
    let show = rbl(&["config", "show", "--config", cfg_path.to_str().unwrap(), "--set", "train.epochs=3"]);
    assert!(show.status.success(), "{}", stderr(&show));
    let shown = String::from_utf8(show.stdout).unwrap();
    assert!(shown.contains("# data: ") && shown.contains("80 × 80 px"), "{shown}");
    assert!(shown.contains("augment = \"imagenet\"") && shown.contains("image_size = 80") && shown.contains("epochs = 3"), "{shown}");
    assert!(shown.contains("momentum = 0.9"), "every default is listed: {shown}");
    // The template trains (shortened here).
    let run = dir.path().join("run");
    let out = rbl(&[
        "train",
        "--config",
        cfg_path.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=16",
        "--set",
        "model.widths=[4,8,8]",
        "--set",
        "model.feature_dim=8",
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg = rbl::ExperimentConfig::load_stored(&run.join("config.toml"), &[]).unwrap();
    assert_eq!((cfg.data.augment, cfg.data.image_size), (rbl::config::Augment::Imagenet, 80));
    assert_eq!(cfg.data.mean.len(), 3, "sampled from the training images, stored");
    // data.root at train/ is pointed back to the tree.
    let out = rbl(&["train", "--data", root.join("train").to_str().unwrap(), "--out", dir.path().join("x").to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("points inside the tree"), "{}", stderr(&out));
}

/// `rbl table` finds runs by their folders (made with --out and --set, which a config lookup
/// cannot see), shows the imbalance the counts really have, and `--train --jobs 2` gives the
/// same table as one job at a time.
#[test]
fn table_from_run_folders_and_parallel_training() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let cfg = write(dir.path(), "c.toml", &tiny_config("linear", 1));
    for (out, set) in [("lin", "model.head=linear"), ("etf", "model.head=etf")] {
        let o = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", runs.join(out).to_str().unwrap(), "--set", set, "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let table = |args: &[&str]| {
        let o = rbl(&[&["table"], args].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let by_folder = table(&["--runs", runs.to_str().unwrap()]);
    assert!(by_folder.contains("| linear |") && by_folder.contains("| etf |") && by_folder.contains("fashion-mnist IR10"), "{by_folder}");
    assert_eq!(table(&[runs.join("etf").to_str().unwrap(), runs.join("lin").to_str().unwrap()]), by_folder);
    assert_eq!(table(&[runs.to_str().unwrap()]), by_folder);

    // An image-folder tree used as it is: the column says the ratio its counts have (12).
    let root = dir.path().join("shapes");
    tree(&root, 16, [36, 9, 3], false);
    let o = rbl(&[
        "train",
        "--data",
        root.to_str().unwrap(),
        "--out",
        dir.path().join("tree_run").to_str().unwrap(),
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=8",
        "--set",
        "model.widths=[4,8,8]",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(table(&[dir.path().join("tree_run").to_str().unwrap()]).contains("image-folder shapes IR12"));

    // Two seeds trained two at a time, then one at a time: the same table, bit for bit.
    let seeds = ["--seeds", "1,2", "--train"];
    let two = table(&[&seeds[..], &["--jobs", "2", "--runs", dir.path().join("two").to_str().unwrap(), cfg.to_str().unwrap()]].concat());
    let one = table(&[&seeds[..], &["--runs", dir.path().join("one").to_str().unwrap(), cfg.to_str().unwrap()]].concat());
    assert_eq!(two, one);
    assert!(one.contains("(n=2)"), "{one}");
    let weights = |run: &Path| {
        let latest = std::fs::read_to_string(run.join("latest")).unwrap();
        json(&run.join(latest.trim()).join("state.json"))["weights_crc32"].clone()
    };
    for seed in ["tiny_linear-s1", "tiny_linear-s2"] {
        let (a, b) = (dir.path().join("two").join(seed), dir.path().join("one").join(seed));
        assert_eq!(weights(&a), weights(&b), "{seed}: the same weights at 1 and 2 threads");
    }
}

/// The README's "Train on your own data" commands, run as written (from the lines between its
/// `own-data` markers) in a shell whose HOME holds a generated tree at ~/data/birds.
#[test]
fn the_readmes_own_data_commands_work_as_written() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let block = readme
        .split("<!-- own-data")
        .nth(1)
        .and_then(|b| b.split("<!-- /own-data -->").next())
        .expect("README marks its own-data commands");
    let commands: Vec<&str> = block.lines().map(|l| l.split(" # ").next().unwrap().trim()).filter(|l| l.starts_with("rbl ")).collect();
    assert!(commands.len() >= 3 && commands[0].starts_with("rbl train --data ~/data/birds"), "{commands:?}");
    let home = tempfile::tempdir().unwrap();
    let root = home.path().join("data/birds");
    // albatross / heron / kiwi, 100 / 40 / 12 training images of 28 px (the README's example).
    for (c, (name, n)) in [("albatross", 100), ("heron", 40), ("kiwi", 12)].into_iter().enumerate() {
        for (split, n) in [("train", n), ("test", 5)] {
            for i in 0..n {
                let p = root.join(split).join(name).join(format!("{i:03}.png"));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                let level = |x: u32, y: u32| (30 + 90 * c as u32 + (x * 5 + y * 11 + i as u32) % 25) as u8;
                image::GrayImage::from_fn(28, 28, |x, y| image::Luma([level(x, y)])).save(&p).unwrap();
            }
        }
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_rbl")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    for command in commands {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("HOME", home.path())
            .env("PATH", &path)
            .current_dir(home.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {}", stderr(&out));
    }
    let run = home.path().join("runs/birds");
    assert!(run.join("report.html").is_file() && run.join("metrics.json").is_file());
    let m = json(&run.join("metrics.json"));
    assert_eq!(m["train_counts"], serde_json::json!([100, 40, 12]));
    assert_eq!(m["classes"][2]["name"], "kiwi");
}
