//! Experiment configs: any text (and any `--set` override on its first line) parses to a config
//! that passed validation and round-trips through its own TOML, or gives an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbl::ExperimentConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let overrides: Vec<String> = first.strip_prefix("#set ").map(|o| vec![o.to_string()]).unwrap_or_default();
    if let Ok(cfg) = ExperimentConfig::from_toml_str(rest, "fuzz.toml", &overrides) {
        let again = ExperimentConfig::from_toml_str(&cfg.to_toml_string(), "round-trip", &[]).expect("a valid config re-parses");
        assert_eq!(again, cfg);
    }
});
