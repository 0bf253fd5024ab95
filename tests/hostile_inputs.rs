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

/// Issue #36 row 4: data files that are devices or sparse giants are refused from their type
/// and size, before a byte is read (they were read whole: /dev/zero until allocation failed,
/// 3.2 GB resident for a 3 GB sparse file).
#[test]
fn devices_and_sparse_giants_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Fashion-MNIST's file names, each a link to /dev/zero: the IDX reader names the device.
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::os::unix::fs::symlink("/dev/zero", d.join(name)).unwrap();
    }
    let e = rbl::data::source::load_idx_dataset(d).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("character device"), "{e}");
    // 3 GB sparse files under each format's name.
    let big = 3u64 << 30;
    sparse(&d.join("huge.idx"), big);
    let e = rbl::data::idx::read_idx(&d.join("huge.idx")).unwrap_err().to_string();
    assert!(e.contains("huge.idx") && e.contains("more than"), "{e}");
    sparse(&d.join("huge.png"), big);
    let e = rbl::data::folder::read_image(&d.join("huge.png")).unwrap_err().to_string();
    assert!(e.contains("huge.png") && e.contains("more than"), "{e}");
    sparse(&d.join("data_batch_1.bin"), big);
    let e = rbl::data::cifar_files::read_batches(&[d.join("data_batch_1.bin")], Cifar::Ten).unwrap_err().to_string();
    assert!(e.contains("data_batch_1.bin") && e.contains("more than"), "{e}");
    // A CIFAR batch that is a FIFO is named as one, not "no CIFAR found".
    let fifo = d.join("fifo");
    std::fs::create_dir(&fifo).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(fifo.join("data_batch_1")).status().unwrap().success());
    let e = rbl::data::cifar_files::read_cifar_dataset(&fifo, Cifar::Ten).unwrap_err().to_string();
    assert!(e.contains("data_batch_1") && e.contains("FIFO"), "{e}");
}

/// A `.tar.gz` holding `members` (name, declared size, bytes actually stored).
fn tar_gz(path: &Path, members: &[(&str, u64, Vec<u8>)]) {
    let mut raw = Vec::new();
    for (name, size, bytes) in members {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(*size);
        h.set_mode(0o644);
        h.set_cksum();
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(bytes);
        raw.resize(raw.len().div_ceil(512) * 512, 0);
    }
    raw.extend_from_slice(&[0; 1024]);
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    gz.finish().unwrap();
}

/// Issue #36 row 7 and "two members with the same base name": a member declaring 2.5 GB is
/// refused from its header (it was inflated: 2.6 GB resident); two `data_batch_1` are refused
/// naming both (the last one used to win).
#[test]
fn archive_members_are_bounded_and_unambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("cifar-10-python.tar.gz");
    tar_gz(&bomb, &[("cifar-10-batches-py/data_batch_1", 2_500_000_000, vec![0; 4096])]);
    let e = rbl::data::cifar_files::read_cifar_dataset(&bomb, Cifar::Ten).unwrap_err().to_string();
    assert!(e.contains("data_batch_1") && e.contains("declares 2500000000 bytes"), "{e}");
    let twice = dir.path().join("twice.tar.gz");
    tar_gz(&twice, &[("a/data_batch_1", 3, b"abc".to_vec()), ("b/data_batch_1", 3, b"def".to_vec())]);
    let e = rbl::data::cifar_files::read_cifar_dataset(&twice, Cifar::Ten).unwrap_err().to_string();
    assert!(e.contains("a/data_batch_1") && e.contains("b/data_batch_1") && e.contains("two members"), "{e}");
}

/// Issue #36 row 14: the run folder's files and the config, pointed at /dev/zero, are refused
/// (they were read until allocation failed); `latest` may not be a link.
#[test]
fn run_folder_files_that_are_devices_or_links_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let zero = Path::new("/dev/zero");
    let e = rbl::ExperimentConfig::load(zero, &[]).unwrap_err().to_string();
    assert!(e.contains("/dev/zero") && e.contains("character device"), "{e}");
    let run = rbl::report::run_dir::RunDir::new(dir.path());
    std::os::unix::fs::symlink(zero, run.epoch_log()).unwrap();
    let e = run.read_epoch_log().unwrap_err().to_string();
    assert!(e.contains("epochs.jsonl") && e.contains("character device"), "{e}");
    std::os::unix::fs::symlink(zero, run.latest()).unwrap();
    let e = rbl::train::checkpoint::latest_checkpoint(dir.path()).unwrap_err().to_string();
    assert!(e.contains("latest") && e.contains("symbolic link"), "{e}");
    let ckpt = dir.path().join("checkpoint-000001");
    std::fs::create_dir(&ckpt).unwrap();
    std::os::unix::fs::symlink(zero, ckpt.join("state.json")).unwrap();
    let e = rbl::train::checkpoint::load_checkpoint(&ckpt).err().unwrap().to_string();
    assert!(e.contains("state.json") && e.contains("character device"), "{e}");
}
