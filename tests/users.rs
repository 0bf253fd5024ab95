//! End-to-end, as a user coming from PyTorch would use rbl: CIFAR as torchvision downloads it,
//! an ImageFolder tree of PNGs, `rbl predict` on image files, TensorBoard event files.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::*;
use image::{GrayImage, RgbImage};
use serde_json::Value;

/// Real Fashion-MNIST test images as grey PNG files named `<index>.png`, the first `per_class`
/// of each class (the order `test_per_class` keeps); returns their labels.
fn fmnist_test_pngs(dir: &Path, per_class: usize) -> Vec<u32> {
    let (_, test) = rbl::data::source::load_idx_dataset(Path::new(FMNIST)).unwrap();
    let keep = rbl::data::long_tail::first_per_class(&test, per_class);
    std::fs::create_dir_all(dir).unwrap();
    for (k, &i) in keep.iter().enumerate() {
        let img = GrayImage::from_raw(28, 28, test.image(i).to_vec()).unwrap();
        img.save(dir.join(format!("{k:03}.png"))).unwrap();
    }
    keep.iter().map(|&i| test.labels[i]).collect()
}

#[test]
fn predict_on_png_files_reproduces_the_runs_own_test_accuracy() {
    require_fmnist();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "tiny.toml", &tiny_config("rbl", 1));
    let run = dir.path().join("run");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q", "--set", "log.tensorboard=true"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The same 100 test images the run scored, as PNG files: predict's top-1 at τ = 0 must give
    // exactly the run's raw top-1 (the PNG round trip and the preprocessing are lossless here).
    let pngs = dir.path().join("pngs");
    let labels = fmnist_test_pngs(&pngs, 10);
    let out = rbl(&["predict", "--checkpoint", run.to_str().unwrap(), pngs.to_str().unwrap(), "--json", "--tau", "0", "--top-k", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 100);
    let mut hits = 0;
    for (line, &label) in lines.iter().zip(&labels) {
        let top = line["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let p: Vec<f64> = top.iter().map(|t| t["adjusted_probability"].as_f64().unwrap()).collect();
        assert!(p[0] >= p[1] && p[1] >= p[2] && p.iter().sum::<f64>() <= 1.0 + 1e-9, "{line}");
        // At τ = 0 the adjusted probabilities are the raw ones.
        assert!((top[0]["probability"].as_f64().unwrap() - p[0]).abs() < 1e-12);
        let class = top[0]["class"].as_u64().unwrap() as u32;
        assert_eq!(top[0]["name"], rbl::data::class_names::FASHION_MNIST[class as usize]);
        hits += (class == label) as usize;
    }
    let m: Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(hits as f64, m["test"]["raw"]["top1"].as_f64().unwrap(), "predict's accuracy on the test images as PNGs");

    // The table, for a terminal.
    let out = rbl(&["predict", "--checkpoint", run.to_str().unwrap(), pngs.join("000.png").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.starts_with(pngs.join("000.png").to_str().unwrap()) && table.contains("  5. ") && table.contains("adjusted (τ = 1)"),
        "{table}"
    );
    // A missing file and a file that is not an image are reported and skipped, the rest
    // classified (with --logits, one per class), and the exit status says some failed.
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"not an image").unwrap();
    let good = pngs.join("000.png");
    let out = rbl(&[
        "predict",
        "--checkpoint",
        run.to_str().unwrap(),
        "--json",
        "--logits",
        "/no/such.png",
        junk.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert!(!out.status.success() && stderr(&out).contains("2 of 3 inputs could not be classified"), "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["error"].as_str().unwrap().contains("/no/such.png"), "{}", lines[0]);
    assert!(lines[1]["error"].as_str().unwrap().contains("junk.png"), "{}", lines[1]);
    assert_eq!(lines[2]["logits"].as_array().unwrap().len(), 10);
    assert!(lines[2].get("error").is_none() && lines[2]["top"].as_array().unwrap().len() == 5);

    // TensorBoard: one event file, one summary per epoch with the run's numbers, CRCs valid.
    let tb: Vec<_> = std::fs::read_dir(run.join("tensorboard")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(tb.len(), 1);
    assert!(tb[0].file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."));
    let records = rbl::report::tensorboard::read_records(&std::fs::read(&tb[0]).unwrap()).unwrap();
    assert_eq!(records.len(), 2, "the file-version header and epoch 1");
    let acc = m["test"]["adjusted"]["top1"].as_f64().unwrap() as f32;
    let has = |needle: &[u8]| records[1].windows(needle.len()).any(|w| w == needle);
    assert!(has(b"test/accuracy_adjusted") && has(b"rotation/orthogonality_error") && has(&acc.to_le_bytes()));
}

#[test]
fn trains_on_cifar10_as_torchvision_downloads_it() {
    use rbl::data::cifar_pickle::write::{Layout, cifar_batch};
    let dir = tempfile::tempdir().unwrap();
    let image = |k: usize| (0..3072).map(|i| ((i * 31 + k * 17) % 256) as u8).collect::<Vec<u8>>();
    // cifar-10-python.tar.gz: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}.
    let archive = dir.path().join("cifar-10-python.tar.gz");
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&archive).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, bytes: Vec<u8>| {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("cifar-10-batches-py/{name}"), &bytes[..]).unwrap();
    };
    add("batches.meta", b"not read".to_vec());
    for b in 1..=5 {
        let imgs: Vec<Vec<u8>> = (0..40).map(|k| image(b * 40 + k)).collect();
        let labels: Vec<i64> = (0..40).map(|k| (k % 10) as i64).collect();
        add(&format!("data_batch_{b}"), cifar_batch(&imgs, &labels, "labels", Layout::Python2));
    }
    let imgs: Vec<Vec<u8>> = (0..20).map(|k| image(1000 + k)).collect();
    add("test_batch", cifar_batch(&imgs, &(0..20).map(|k| (k % 10) as i64).collect::<Vec<_>>(), "labels", Layout::Python2));
    tar.into_inner().unwrap().finish().unwrap();

    let cfg = write(
        dir.path(),
        "c.toml",
        &tiny_config("rbl", 1)
            .replace("[data]", "[data]\ndataset = \"cifar10\"")
            .replace(&format!("root = \"{FMNIST}\""), &format!("root = \"{}\"", dir.path().display()))
            .replace("n_max = 40", "n_max = 20"),
    );
    let run = dir.path().join("run");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["test"]["images"], 20);
    assert_eq!(m["train_counts"][0], 20);

    // A truncated download is refused, naming the archive.
    let bytes = std::fs::read(&archive).unwrap();
    std::fs::write(&archive, &bytes[..bytes.len() / 2]).unwrap();
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", dir.path().join("run2").to_str().unwrap(), "-q"]);
    assert!(!out.status.success() && stderr(&out).contains("cifar-10-python.tar.gz"), "{}", stderr(&out));
}

#[test]
fn trains_on_an_image_folder_of_pngs_and_predicts_folder_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shapes");
    // Three classes told apart by colour, 30 / 10 / 4 training images (already long-tailed).
    let colours = [("blue", [20u8, 40, 220]), ("green", [30, 200, 40]), ("red", [220, 30, 30])];
    let mut k = 0u32;
    for (split, counts) in [("train", [30, 10, 4]), ("test", [3, 3, 3])] {
        for ((name, rgb), n) in colours.iter().zip(counts) {
            for i in 0..n {
                k += 1;
                let img = RgbImage::from_fn(20 + k % 7, 18 + k % 5, |x, y| {
                    let noise = ((x * 7 + y * 13 + k * 3) % 21) as u8;
                    image::Rgb(rgb.map(|c| c.saturating_add(noise)))
                });
                let p = root.join(split).join(name).join(format!("{i}.png"));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                img.save(&p).unwrap();
            }
        }
    }
    let cfg = write(
        dir.path(),
        "f.toml",
        &format!(
            r#"name = "shapes"
[data]
dataset = "image-folder"
root = "{}"
imbalance_ratio = 1.0
image_size = 16
workers = 2
many_threshold = 20
few_threshold = 5
[model]
head = "rbl"
widths = [8, 16, 32]
feature_dim = 16
[train]
epochs = 2
batch_size = 8
warmup_epochs = 1
[eval]
batch_size = 16
"#,
            root.display()
        ),
    );
    let run = dir.path().join("run");
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["train_counts"], serde_json::json!([30, 10, 4]), "the tree as it is (imbalance_ratio = 1)");
    assert_eq!(m["test"]["images"], 9);

    let out = rbl(&["predict", "--checkpoint", run.to_str().unwrap(), root.join("test").to_str().unwrap(), "--json", "--top-k", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 9);
    for l in &lines {
        let mut names: Vec<&str> = l["top"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        names.sort();
        assert_eq!(names, vec!["blue", "green", "red"], "{l}");
    }

    // Issue #36 row 19: a file whose name is not UTF-8 is reported (escaped), with the rest.
    let odd = dir.path().join("odd");
    std::fs::create_dir(&odd).unwrap();
    let weird = odd.join(std::ffi::OsStr::from_bytes(b"caf\xE9.png"));
    std::fs::copy(root.join("test/red/0.png"), &weird).unwrap();
    std::fs::copy(root.join("test/blue/0.png"), odd.join("plain.png")).unwrap();
    let out = rbl(&["predict", "--checkpoint", run.to_str().unwrap(), odd.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["path"].as_str().unwrap().ends_with("caf\\xE9.png") && lines[0]["top"][0]["name"].is_string(), "{}", lines[0]);

    // Issue #36 row 21: the run stored its class names. A class folder renamed after training
    // makes eval refuse (labels would shift); with the tree gone, predict still names classes.
    std::fs::rename(root.join("test/green"), root.join("test/lime")).unwrap();
    std::fs::rename(root.join("train/green"), root.join("train/lime")).unwrap();
    let out = rbl(&["eval", "--checkpoint", run.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("label 1 was \"green\""), "{}", stderr(&out));
    let moved = dir.path().join("moved");
    std::fs::rename(&root, &moved).unwrap();
    let out = rbl(&["predict", "--checkpoint", run.to_str().unwrap(), moved.join("test/red").to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first: Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().next().unwrap()).unwrap();
    let names: Vec<&str> = first["top"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"green") && !names.contains(&"lime"), "{names:?}");
    let out = rbl(&["export", "--checkpoint", run.to_str().unwrap(), "--out", dir.path().join("m.safetensors").to_str().unwrap()]);
    assert!(out.status.success(), "export needs no dataset: {}", stderr(&out));
    std::fs::rename(&moved, &root).unwrap();
    std::fs::rename(root.join("test/lime"), root.join("test/green")).unwrap();
    std::fs::rename(root.join("train/lime"), root.join("train/green")).unwrap();

    // Subsampled into a long tail at ratio 10 (n_max 10) as the built-in datasets are.
    let out = rbl(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        dir.path().join("lt").to_str().unwrap(),
        "-q",
        "--set",
        "data.imbalance_ratio=10",
        "--set",
        "data.n_max=10",
        "--set",
        "train.epochs=1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join("lt/metrics.json")).unwrap()).unwrap();
    assert_eq!(m["train_counts"], serde_json::json!([10, 3, 1]), "int(10 · 10^(−i/2))");
}
