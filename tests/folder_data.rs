//! End-to-end: an ImageNet-LT-style folder (split file + real JPEGs in grey, RGB and CMYK,
//! written here with a JPEG encoder) read, decoded and checked; bad files are named and counted.

mod common;

use common::*;
use jpeg_encoder::{ColorType, Encoder};
use rand::{Rng, SeedableRng};
use rbl::data::folder::FolderDataset;

fn jpeg(path: &std::path::Path, w: u16, h: u16, color: ColorType, px: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let data: Vec<u8> = (0..w as usize * h as usize).flat_map(|_| px.iter().copied()).collect();
    Encoder::new_file(path, 90).unwrap().encode(&data, w, h, color).unwrap();
}

fn imagenet_like(root: &std::path::Path) -> std::path::PathBuf {
    jpeg(&root.join("train/n0001/a.JPEG"), 300, 200, ColorType::Rgb, &[200, 30, 30]);
    jpeg(&root.join("train/n0001/b.JPEG"), 120, 160, ColorType::Luma, &[90]);
    jpeg(&root.join("train/n0002/c d.JPEG"), 260, 260, ColorType::Cmyk, &[255, 0, 255, 0]); // green ink
    write(root, "ImageNet_LT_train.txt", "train/n0001/a.JPEG 0\ntrain/n0001/b.JPEG 0\ntrain/n0002/c d.JPEG 1\n")
}

#[test]
fn decodes_every_colour_type_to_the_model_input() {
    let dir = tempfile::tempdir().unwrap();
    let split = imagenet_like(dir.path());
    let set = FolderDataset::open(dir.path(), &split, 2).unwrap();
    assert_eq!(set.entries.len(), 3);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for i in 0..3 {
        let test_view = set.load(i, 224, None).unwrap();
        assert_eq!(test_view.len(), 3 * 224 * 224);
        let train_view = set.load(i, 224, Some(rng.random())).unwrap();
        assert_eq!(train_view.len(), 3 * 224 * 224);
    }
    let plane_mean = |v: &[u8], c: usize| v[c * 224 * 224..(c + 1) * 224 * 224].iter().map(|&x| x as f64).sum::<f64>() / (224.0 * 224.0);
    let red = set.load(0, 224, None).unwrap();
    assert!(plane_mean(&red, 0) > 180.0 && plane_mean(&red, 1) < 50.0);
    let grey = set.load(1, 224, None).unwrap();
    assert!((0..3).all(|c| (plane_mean(&grey, c) - 90.0).abs() < 3.0));
    let green = set.load(2, 224, None).unwrap();
    assert!(plane_mean(&green, 1) > 220.0 && plane_mean(&green, 0) < 30.0, "CMYK cyan+yellow ink is green");
}

#[test]
fn data_check_names_and_counts_missing_and_corrupt_images() {
    let dir = tempfile::tempdir().unwrap();
    let split = imagenet_like(dir.path());
    let root = dir.path().to_str().unwrap();
    let good = rbl(&["data", "check", "--root", root, "--split", split.to_str().unwrap(), "--classes", "2"]);
    assert!(good.status.success(), "{}", stderr(&good));
    assert!(String::from_utf8_lossy(&good.stdout).contains("3 images in 2 classes (2 to 1 per class), 0 bad"));

    std::fs::write(dir.path().join("train/n0001/b.JPEG"), b"\xFF\xD8\xFF\xE0 truncated").unwrap();
    let text = std::fs::read_to_string(&split).unwrap() + "train/n0002/missing.JPEG 1\n";
    let split = write(dir.path(), "with_bad.txt", &text);
    let bad = rbl(&["data", "check", "--root", root, "--split", split.to_str().unwrap(), "--classes", "2", "--workers", "2"]);
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains("b.JPEG") && out.contains("missing.JPEG") && out.contains("2 bad"), "{out}");
    assert!(stderr(&bad).contains("2 of 4 images cannot be used"), "{}", stderr(&bad));

    let labels = write(dir.path(), "bad_label.txt", "train/n0001/a.JPEG 2\n");
    let out = rbl(&["data", "check", "--root", root, "--split", labels.to_str().unwrap(), "--classes", "2"]);
    assert!(!out.status.success() && stderr(&out).contains("bad_label.txt") && stderr(&out).contains("line 1"), "{}", stderr(&out));
}

/// A folder dataset with 3 classes × 4 training images and 2 test images each, as JPEGs.
fn tiny_folder(root: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let colours: [[u8; 3]; 3] = [[220, 40, 40], [40, 220, 40], [40, 40, 220]];
    let (mut train, mut test) = (String::new(), String::new());
    for (c, rgb) in colours.iter().enumerate() {
        for k in 0..6 {
            let shade: Vec<u8> = rgb.iter().map(|&v| v.saturating_sub(k * 12)).collect();
            let name = format!("img/c{c}/{k}.JPEG");
            jpeg(&root.join(&name), 40 + k as u16 * 7, 36, ColorType::Rgb, &shade);
            if k < 4 { train += &format!("{name} {c}\n") } else { test += &format!("{name} {c}\n") }
        }
    }
    (write(root, "train.txt", &train), write(root, "test.txt", &test))
}

fn folder_config(root: &std::path::Path, train: &std::path::Path, test: &std::path::Path, backbone: &str, size: usize) -> String {
    format!(
        r#"name = "folder"
seed = 1
[data]
dataset = "folder"
root = "{}"
train_split = "{}"
test_split = "{}"
num_classes = 3
image_size = {size}
workers = 2
many_threshold = 3
few_threshold = 1
[model]
backbone = "{backbone}"
widths = [8, 16, 32]
feature_dim = 16
head = "rbl"
[train]
epochs = 2
batch_size = 4
[eval]
batch_size = 4
"#,
        root.display(),
        train.display(),
        test.display()
    )
}

#[test]
fn trains_on_a_folder_dataset_and_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = tiny_folder(dir.path());
    let cfg = write(dir.path(), "c.toml", &folder_config(dir.path(), &train, &test, "resnet32", 32));
    let digest = |run: &std::path::Path| {
        std::fs::read_to_string(run.join("checkpoint-000002/state.json"))
            .unwrap()
            .lines()
            .find(|l| l.contains("weights_crc32"))
            .unwrap()
            .to_string()
    };
    let mut runs = Vec::new();
    for name in ["a", "b"] {
        let run = dir.path().join(name);
        let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
        assert!(out.status.success(), "{}", stderr(&out));
        runs.push(run);
    }
    assert_eq!(digest(&runs[0]), digest(&runs[1]), "parallel decoding, same seed: same weights");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(runs[0].join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["test"]["images"], 6);
    assert_eq!(m["train_counts"], serde_json::json!([4, 4, 4]));
}

#[test]
fn resnet50_trains_on_a_folder_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = tiny_folder(dir.path());
    let cfg = write(dir.path(), "c.toml", &folder_config(dir.path(), &train, &test, "resnet50", 64).replace("epochs = 2", "epochs = 1"));
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", dir.path().join("r").to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn bad_training_images_stop_the_run_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = tiny_folder(dir.path());
    std::fs::write(dir.path().join("img/c1/2.JPEG"), b"\xFF\xD8 not really").unwrap();
    let text = folder_config(dir.path(), &train, &test, "resnet32", 32);
    let cfg = write(dir.path(), "c.toml", &text);
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", dir.path().join("e").to_str().unwrap(), "-q"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("c1/2.JPEG") && err.contains("bad_images") && !err.contains("panicked"), "{err}");

    let skip = write(dir.path(), "s.toml", &text.replace("workers = 2", "workers = 2\nbad_images = \"skip\""));
    let run = dir.path().join("s");
    let out = rbl(&["train", "--config", skip.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for line in std::fs::read_to_string(run.join("epochs.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["skipped_images"], 1, "one bad image skipped and counted each epoch");
    }

    // A listed file that does not exist: refused with a count, or left out with a warning.
    let missing = write(dir.path(), "train_missing.txt", &(std::fs::read_to_string(&train).unwrap() + "img/c0/none.JPEG 0\n"));
    let text = text.replace(train.to_str().unwrap(), missing.to_str().unwrap());
    let cfg = write(dir.path(), "m.toml", &text);
    let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", dir.path().join("m").to_str().unwrap(), "-q"]);
    assert!(
        !out.status.success() && stderr(&out).contains("1 of 13 listed images are missing") && stderr(&out).contains("none.JPEG"),
        "{}",
        stderr(&out)
    );
}

/// An undecodable *test* image is found before training, not at the first evaluation: the
/// test set is scored whole, so it is an error in either `data.bad_images` mode.
#[test]
fn a_bad_test_image_is_found_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = tiny_folder(dir.path());
    std::fs::write(dir.path().join("img/c2/5.JPEG"), b"\xFF\xD8 not really").unwrap();
    let text = folder_config(dir.path(), &train, &test, "resnet32", 32);
    for (name, text) in [("e", text.clone()), ("s", text.replace("workers = 2", "workers = 2\nbad_images = \"skip\""))] {
        let cfg = write(dir.path(), &format!("{name}.toml"), &text);
        let run = dir.path().join(name);
        let out = rbl(&["train", "--config", cfg.to_str().unwrap(), "--out", run.to_str().unwrap(), "-q"]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains("c2/5.JPEG") && err.contains("test images"), "{name}: {err}");
        assert!(!run.join("latest").exists(), "{name}: refused before the first epoch");
    }
}
