//! Issue #36 row 5: an interrupt (SIGINT / SIGTERM set the flag `rbl::interrupt` reads) that
//! arrives while the data loads stops the run before anything is written. Its own test binary:
//! the flag is process-wide, and no other test may see it set.

use std::path::Path;

fn png(path: &Path, shade: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(12, 12, image::Rgb([shade, 255 - shade, 9])).save(path).unwrap();
}

#[test]
fn an_interrupt_during_loading_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    for (class, shade) in [("a", 10u8), ("b", 200)] {
        for i in 0..6 {
            png(&root.join(format!("train/{class}/{i}.png")), shade);
            png(&root.join(format!("test/{class}/{i}.png")), shade);
        }
    }
    let mut cfg = rbl::ExperimentConfig::default();
    cfg.data.dataset = rbl::config::DatasetKind::ImageFolder;
    cfg.data.root = root.display().to_string();
    cfg.data.imbalance_ratio = 1.0;
    cfg.data.image_size = 12;
    cfg.model.widths = [4, 4, 8];
    cfg.validate("test").unwrap();
    // The walk, the decode check and the run each stop once the flag is up.
    rbl::interrupt::request();
    let mut files = Vec::new();
    let e = rbl::data::image_folder::image_files(&root.join("train"), &mut files, &mut Default::default()).unwrap_err();
    assert!(matches!(e, rbl::RblError::Stopped { .. }), "{e}");
    let run = dir.path().join("run");
    let e = rbl::train::train_run(cfg, &rbl::train::RunOptions::new(rbl::report::run_dir::RunDir::new(&run), false)).unwrap_err();
    assert!(matches!(e, rbl::RblError::Stopped { .. }) && e.to_string().contains("nothing was written"), "{e}");
    assert!(!run.exists(), "no run folder, no config.toml, no epochs.jsonl");
}
