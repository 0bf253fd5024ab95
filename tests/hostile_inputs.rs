//! Every parser on hostile input: truncated files, headers declaring absurd sizes, and random
//! bytes. Each must return an error (or, for random bytes that happen to be valid, a result
//! that satisfies the format's invariants): never a panic, never an unbounded allocation.
//! (The cargo-fuzz targets under fuzz/ run the same properties for minutes.)

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rbl::data::cifar::{Cifar, parse_cifar};
use rbl::data::decode::decode_image;
use rbl::data::idx::{encode_idx, parse_idx};
use rbl::data::split_file::parse_split;

/// 300 random inputs of 0 … 4 KiB, the same on every run.
fn random_inputs() -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    (0..300).map(|_| (0..rng.random_range(0..4096)).map(|_| rng.random()).collect()).collect()
}

/// A sparse file of `len` bytes: oversized without using the disk.
fn sparse(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn idx() {
    let p = Path::new("t.idx");
    let good = encode_idx(&[3, 2, 2], &[7; 12]);
    for cut in 0..good.len() {
        assert!(parse_idx(&good[..cut], p).is_err(), "truncated at {cut}");
    }
    // Four dimensions of 2^31 - 1: 2^124 bytes declared, refused before allocating.
    let mut huge = vec![0, 0, 8, 4];
    huge.extend(std::iter::repeat_n([0x7F, 0xFF, 0xFF, 0xFF], 4).flatten());
    assert!(parse_idx(&huge, p).unwrap_err().to_string().contains("t.idx"));
    for input in random_inputs() {
        if let Ok(a) = parse_idx(&input, p) {
            assert_eq!(a.data.len(), a.dims.iter().product::<usize>());
        }
    }
}

#[test]
fn cifar() {
    let p = Path::new("t.bin");
    let record = [vec![3u8], vec![9u8; 3072]].concat();
    for cut in [1, 100, 3072] {
        assert!(parse_cifar(&record[..cut], Cifar::Ten, p).is_err());
    }
    for input in random_inputs() {
        for kind in [Cifar::Ten, Cifar::Hundred] {
            if let Ok(set) = parse_cifar(&input, kind, p) {
                assert!(set.labels.iter().all(|&l| (l as usize) < kind.classes()));
            }
        }
    }
}

#[test]
fn split_files() {
    let p = Path::new("split.txt");
    assert!(parse_split("a.jpg", p, 10).is_err(), "a line cut before its label");
    assert!(parse_split("a.jpg 99999999999999999999", p, 10).is_err(), "a label beyond u32");
    for input in random_inputs() {
        if let Ok(entries) = parse_split(&String::from_utf8_lossy(&input), p, 10) {
            assert!(entries.iter().all(|e| e.label < 10 && e.path.is_relative()));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("huge.txt");
    sparse(&big, (1 << 30) + 1);
    assert!(rbl::data::split_file::read_split(&big, 10).unwrap_err().to_string().contains("more than"));
}

#[test]
fn jpeg() {
    let p = Path::new("t.jpg");
    for input in random_inputs() {
        if let Ok(img) = decode_image(&input, p) {
            assert_eq!(img.pixels.len(), 3 * img.width * img.height);
        }
    }
    // SOI then a baseline frame header declaring 65535 × 65535.
    let header = [0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0xFF, 0xFF, 0xFF, 0xFF, 1, 1, 0x11, 0];
    assert!(decode_image(&header, p).is_err());
}

#[test]
fn config_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = "name = \"x\"\n[train]\nepochs = 3\n";
    for cut in 1..good.len() {
        let _ = rbl::ExperimentConfig::from_toml_str(&good[..cut], "cut.toml", &[]);
    }
    for input in random_inputs() {
        assert!(rbl::ExperimentConfig::from_toml_str(&String::from_utf8_lossy(&input), "random.toml", &[]).is_err());
    }
    let big = dir.path().join("big.toml");
    sparse(&big, 2 << 20);
    assert!(rbl::ExperimentConfig::load(&big, &[]).unwrap_err().to_string().contains("more than"));
    let binary = dir.path().join("bin.toml");
    std::fs::write(&binary, [0xFF, 0xFE, 0x00, 0x80]).unwrap();
    assert!(rbl::ExperimentConfig::load(&binary, &[]).unwrap_err().to_string().contains("UTF-8"));
}

#[test]
fn checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path();
    std::fs::write(ckpt.join("model.bpk"), b"").unwrap();
    std::fs::write(ckpt.join("optimizer.bpk"), b"").unwrap();
    for input in random_inputs().into_iter().take(50) {
        std::fs::write(ckpt.join("state.json"), &input).unwrap();
        assert!(rbl::train::checkpoint::load_checkpoint(ckpt).is_err());
    }
    std::fs::write(ckpt.join("state.json"), br#"{"epoch": 1, "config_toml": "name = 1"#).unwrap();
    assert!(rbl::train::checkpoint::load_checkpoint(ckpt).err().unwrap().to_string().contains("state.json"));
    sparse(&ckpt.join("state.json"), (64 << 20) + 1);
    assert!(rbl::train::checkpoint::load_checkpoint(ckpt).err().unwrap().to_string().contains("more than"));
}

#[test]
fn cifar_pickles() {
    use rbl::data::cifar_pickle::parse_cifar_pickle;
    use rbl::data::cifar_pickle::write::{Layout, cifar_batch};
    let p = Path::new("data_batch_1");
    let good = cifar_batch(&[vec![5u8; 3072], vec![6u8; 3072]], &[1, 2], "labels", Layout::Python2);
    assert!(parse_cifar_pickle(&good, Cifar::Ten, p).is_ok());
    for cut in 0..good.len() {
        assert!(parse_cifar_pickle(&good[..cut], Cifar::Ten, p).is_err(), "truncated at {cut}");
    }
    // Lengths declared far beyond the file (BINSTRING of 4 GiB, BINBYTES8 of 2^63): an error,
    // without allocating what they declare.
    for evil in [&b"\x80\x02T\xff\xff\xff\xffab"[..], &b"\x80\x05\x8e\xff\xff\xff\xff\xff\xff\xff\x7fab"[..]] {
        assert!(parse_cifar_pickle(evil, Cifar::Ten, p).is_err());
    }
    // Deep nesting: 200,000 MARKs then 200,000 LIST opcodes.
    let deep: Vec<u8> = [&b"\x80\x02"[..], &vec![b'('; 200_000], &vec![b'l'; 200_000], b"."].concat();
    assert!(parse_cifar_pickle(&deep, Cifar::Ten, p).is_err());
    for input in random_inputs() {
        let _ = parse_cifar_pickle(&input, Cifar::Ten, p);
        let with_header = [&b"\x80\x02"[..], &input].concat();
        if let Ok(set) = parse_cifar_pickle(&with_header, Cifar::Hundred, p) {
            assert!(set.labels.iter().all(|&l| (l as usize) < 100) && set.pixels.len() == set.len() * 3072);
        }
    }
}
