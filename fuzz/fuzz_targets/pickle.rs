//! CIFAR pickled batches (torchvision's layout): any bytes give whole images with labels in
//! range, or an error; never a panic, a stack overflow or an allocation a length field asked for,
//! and never more built than the size bound allows (memo references and DUP count as copies).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbl::data::cifar::Cifar;
use rbl::data::cifar_pickle::parse_cifar_pickle;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    let kind = if which % 2 == 0 { Cifar::Ten } else { Cifar::Hundred };
    let bounds = rbl::data::cifar_pickle::pickle_bounds(body);
    if let Ok(set) = parse_cifar_pickle(body, kind, std::path::Path::new("fuzz_batch")) {
        assert_eq!(set.pixels.len(), set.labels.len() * 3072);
        assert!(set.labels.iter().all(|&l| (l as usize) < kind.classes()));
        // A pickle that parsed passed the bound, and its pixels are part of what it built.
        if let Some(b) = bounds {
            assert!(b.built <= rbl::data::cifar_pickle::max_built_bytes(body.len()));
            assert!(set.pixels.len() as u64 <= b.built);
        }
    }
});
