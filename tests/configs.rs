//! Every shipped config parses and validates as it is.

#[test]
fn every_shipped_config_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = rbl::ExperimentConfig::load(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(format!("{}.toml", cfg.name), path.file_name().unwrap().to_string_lossy(), "config name matches its file");
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} configs found");
}
