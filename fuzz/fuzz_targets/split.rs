//! Split files: any text gives entries with labels in range and paths inside the root, or an
//! error naming a line.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(entries) = rbl::data::split_file::parse_split(text, std::path::Path::new("fuzz.txt"), 1000) {
        for e in &entries {
            assert!(e.label < 1000);
            assert!(e.path.is_relative());
        }
    }
});
