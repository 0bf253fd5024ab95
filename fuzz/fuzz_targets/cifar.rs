//! CIFAR-10/100 binary batches: any bytes give whole records with labels in range, or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbl::data::cifar::{Cifar, parse_cifar};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    let kind = if which % 2 == 0 { Cifar::Ten } else { Cifar::Hundred };
    if let Ok(set) = parse_cifar(body, kind, std::path::Path::new("fuzz.bin")) {
        assert_eq!(set.pixels.len(), set.labels.len() * 3072);
        assert!(set.labels.iter().all(|&l| (l as usize) < kind.classes()));
    }
});
