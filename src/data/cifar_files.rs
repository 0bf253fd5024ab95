//! Finds CIFAR-10/100 under `data.root` in whichever form a user has it and reads it: the
//! binary distribution (`data_batch_1.bin` …), torchvision's unpacked pickles
//! (`cifar-10-batches-py/`, `cifar-100-python/`), or the downloaded `.tar.gz` archive itself,
//! read member by member without unpacking. All three give identical [`ImageSet`]s.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::data::ImageSet;
use crate::data::cifar::{Cifar, parse_cifar};
use crate::data::cifar_pickle::parse_cifar_pickle;
use crate::error::{RblError, Result};

/// Where the files were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CifarLayout {
    /// A folder of binary files (`data_batch_1.bin`, `train.bin`).
    Binary(PathBuf),
    /// A folder of pickled batches (`data_batch_1`, `train`): torchvision's unpacked download.
    Pickles(PathBuf),
    /// A `.tar.gz` holding either of the above (torchvision's download).
    Archive(PathBuf),
}

impl Cifar {
    /// The batch names, training then test, without the binary files' `.bin`.
    fn batch_names(self) -> (Vec<String>, Vec<String>) {
        match self {
            Cifar::Ten => ((1..=5).map(|i| format!("data_batch_{i}")).collect(), vec!["test_batch".into()]),
            Cifar::Hundred => (vec!["train".into()], vec!["test".into()]),
        }
    }

    /// The names of torchvision's folder and archive, and the binary distribution's folder.
    fn download_names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Cifar::Ten => ("cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar-10-batches-bin"),
            Cifar::Hundred => ("cifar-100-python", "cifar-100-python.tar.gz", "cifar-100-binary"),
        }
    }
}

fn is_archive(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    path.exists() && !path.is_dir() && (name.ends_with(".tar.gz") || name.ends_with(".tgz"))
}

/// Finds the dataset under `root`: `root` itself (a folder of binary or pickled batches, or an
/// archive), or torchvision's folder, its archive, or the binary folder inside `root`.
pub fn detect(root: &Path, kind: Cifar) -> Result<CifarLayout> {
    let (py_dir, archive, bin_dir) = kind.download_names();
    let first = kind.batch_names().0[0].clone();
    let layout_of = |dir: &Path| -> Option<CifarLayout> {
        // `exists`, not `is_file`: a FIFO or device under a batch's name is then refused by the
        // read, naming what it is, instead of being reported as no dataset at all.
        let present = |p: PathBuf| p.exists() && !p.is_dir();
        if present(dir.join(format!("{first}.bin"))) {
            Some(CifarLayout::Binary(dir.into()))
        } else if present(dir.join(&first)) {
            Some(CifarLayout::Pickles(dir.into()))
        } else {
            None
        }
    };
    if is_archive(root) {
        return Ok(CifarLayout::Archive(root.into()));
    }
    if let Some(found) = layout_of(root).or_else(|| layout_of(&root.join(py_dir))).or_else(|| layout_of(&root.join(bin_dir))) {
        return Ok(found);
    }
    if is_archive(&root.join(archive)) {
        return Ok(CifarLayout::Archive(root.join(archive)));
    }
    Err(RblError::io(
        root,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "no {} found: looked for {first}.bin or {first} here, in {py_dir}/ and {bin_dir}/, and for {archive} \
                 (data.root may also name the archive itself)",
                kind.name()
            ),
        ),
    ))
}

/// Parses one batch, binary if its name ends in `.bin`, else pickled.
fn parse_batch(bytes: &[u8], kind: Cifar, name: &Path) -> Result<ImageSet> {
    if name.extension().is_some_and(|e| e == "bin") { parse_cifar(bytes, kind, name) } else { parse_cifar_pickle(bytes, kind, name) }
}

fn concat(parts: Vec<ImageSet>, kind: Cifar) -> ImageSet {
    let mut all = ImageSet { pixels: vec![], labels: vec![], num_classes: kind.classes(), channels: 3, height: 32, width: 32, files: None };
    for part in parts {
        all.pixels.extend(part.pixels);
        all.labels.extend(part.labels);
    }
    all
}

/// Largest CIFAR batch file read, binary or pickled: CIFAR-100's `train` (50,000 images) is
/// 154 MB as binary and 161 MB pickled. Files and archive members over this are refused
/// before they are read.
pub const MAX_BATCH_BYTES: u64 = 256 << 20;

/// Reads batch files (binary if named `.bin`, else pickled) and concatenates them.
pub fn read_batches(paths: &[PathBuf], kind: Cifar) -> Result<ImageSet> {
    let parts = paths
        .iter()
        .map(|path| {
            let bytes = crate::files::read_capped(path, MAX_BATCH_BYTES, "a CIFAR batch")?;
            parse_batch(&bytes, kind, path)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(concat(parts, kind))
}

/// Reads the training and test sets from wherever [`detect`] finds them.
pub fn read_cifar_dataset(root: &Path, kind: Cifar) -> Result<(ImageSet, ImageSet)> {
    let (train, test) = kind.batch_names();
    match detect(root, kind)? {
        CifarLayout::Binary(dir) | CifarLayout::Pickles(dir) => {
            let binary = dir.join(format!("{}.bin", train[0])).exists();
            let files = |names: &[String]| -> Vec<PathBuf> {
                names.iter().map(|n| dir.join(if binary { format!("{n}.bin") } else { n.clone() })).collect()
            };
            Ok((read_batches(&files(&train), kind)?, read_batches(&files(&test), kind)?))
        }
        CifarLayout::Archive(path) => {
            let mut members = read_archive_members(&path, &train.iter().chain(&test).cloned().collect::<Vec<_>>())?;
            let mut take = |names: &[String]| -> Result<ImageSet> {
                let parts = names
                    .iter()
                    .map(|n| {
                        let (member, bytes) = members.remove(n).expect("read_archive_members returns every name");
                        parse_batch(&bytes, kind, &PathBuf::from(format!("{}:{member}", path.display())))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(concat(parts, kind))
            };
            Ok((take(&train)?, take(&test)?))
        }
    }
}

/// Reads the members of a `.tar.gz` whose file names (without a `.bin`) are in `wanted`:
/// name → (member path, bytes). A truncated or corrupt archive is an error naming the member
/// being read; a wanted batch that is not in the archive is an error naming it. A member's
/// size (from its header) is checked against [`MAX_BATCH_BYTES`] before it is read, and the
/// read stops there whatever the header said. Two members with the same batch name (say
/// `a/data_batch_1` and `b/data_batch_1`) are refused, naming both: which one torchvision
/// would read depends on how the archive is unpacked, so rbl does not choose.
fn read_archive_members(path: &Path, wanted: &[String]) -> Result<BTreeMap<String, (String, Vec<u8>)>> {
    let (file, _) = crate::files::open_regular(path)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let bad = |what: String, e: std::io::Error| RblError::format(path, format!("{what}: {e} (truncated or corrupt archive?)"));
    let mut found = BTreeMap::new();
    let mut last = String::from("the first member");
    for entry in archive.entries().map_err(|e| bad("reading the archive".into(), e))? {
        let mut entry = entry.map_err(|e| bad(format!("reading the member after {last}"), e))?;
        let member = entry.path().map_err(|e| bad(format!("a member name after {last}"), e))?.to_string_lossy().into_owned();
        let base = member.rsplit('/').next().unwrap_or("").trim_end_matches(".bin").to_string();
        if crate::interrupt::requested() {
            return Err(crate::interrupt::while_loading());
        }
        if wanted.contains(&base) && entry.header().entry_type().is_file() {
            if let Some((first, _)) = found.get(&base) {
                return Err(RblError::format(
                    path,
                    format!("two members are named {base} ({first} and {member}): keep one of them in the archive"),
                ));
            }
            if entry.size() > MAX_BATCH_BYTES {
                return Err(RblError::format(
                    path,
                    format!("member {member} declares {} bytes, more than the {MAX_BATCH_BYTES} a CIFAR batch can need", entry.size()),
                ));
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            (&mut entry).take(MAX_BATCH_BYTES + 1).read_to_end(&mut bytes).map_err(|e| bad(format!("member {member}"), e))?;
            if bytes.len() as u64 > MAX_BATCH_BYTES {
                return Err(RblError::format(path, format!("member {member} holds more than {MAX_BATCH_BYTES} bytes")));
            }
            found.insert(base, (member.clone(), bytes));
        }
        last = member;
    }
    if let Some(missing) = wanted.iter().find(|w| !found.contains_key(*w)) {
        return Err(RblError::format(
            path,
            format!("the archive holds no member named {missing} (is this the {} archive?)", wanted.join(", ")),
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cifar::encode_cifar;
    use crate::data::cifar_pickle::write::{Layout, cifar_batch};

    fn image(seed: u8) -> Vec<u8> {
        (0..3072).map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed)).collect()
    }

    /// Six batches of two images each, labels drawn from `seed`.
    fn batches(kind: Cifar) -> Vec<(String, Vec<Vec<u8>>, Vec<i64>)> {
        let (train, test) = kind.batch_names();
        train
            .into_iter()
            .chain(test)
            .enumerate()
            .map(|(b, name)| {
                let labels = vec![(b * 7 % kind.classes()) as i64, ((b * 13 + 5) % kind.classes()) as i64];
                (name, vec![image(b as u8 * 2), image(b as u8 * 2 + 1)], labels)
            })
            .collect()
    }

    fn write_binary(dir: &Path, kind: Cifar) {
        std::fs::create_dir_all(dir).unwrap();
        for (name, imgs, labels) in batches(kind) {
            let labels: Vec<(u8, u8)> = labels.iter().map(|&l| if kind == Cifar::Ten { (l as u8, 0) } else { (0, l as u8) }).collect();
            std::fs::write(dir.join(format!("{name}.bin")), encode_cifar(&imgs, &labels, kind)).unwrap();
        }
    }

    fn pickled(kind: Cifar) -> Vec<(String, Vec<u8>)> {
        let key = if kind == Cifar::Ten { "labels" } else { "fine_labels" };
        batches(kind).into_iter().map(|(name, imgs, labels)| (name, cifar_batch(&imgs, &labels, key, Layout::Python2))).collect()
    }

    fn write_archive(path: &Path, folder: &str, members: &[(String, Vec<u8>)]) {
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(path).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, bytes) in members {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("{folder}/{name}"), &bytes[..]).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn binary_pickles_and_archive_read_to_identical_sets() {
        for kind in [Cifar::Ten, Cifar::Hundred] {
            let (py_dir, archive, _) = kind.download_names();
            let dir = tempfile::tempdir().unwrap();
            write_binary(&dir.path().join("bin"), kind);
            let expected = read_cifar_dataset(&dir.path().join("bin"), kind).unwrap();
            assert_eq!((expected.0.len(), expected.1.len()), if kind == Cifar::Ten { (10, 2) } else { (2, 2) });

            let py = dir.path().join("tv");
            std::fs::create_dir_all(py.join(py_dir)).unwrap();
            for (name, bytes) in pickled(kind) {
                std::fs::write(py.join(py_dir).join(name), bytes).unwrap();
            }
            // torchvision's root (the folder holding cifar-10-batches-py/) and the folder itself.
            assert_eq!(detect(&py, kind).unwrap(), CifarLayout::Pickles(py.join(py_dir)));
            assert_eq!(read_cifar_dataset(&py, kind).unwrap(), expected);
            assert_eq!(read_cifar_dataset(&py.join(py_dir), kind).unwrap(), expected);

            let dl = dir.path().join("dl");
            std::fs::create_dir_all(&dl).unwrap();
            write_archive(&dl.join(archive), py_dir, &pickled(kind));
            assert_eq!(detect(&dl, kind).unwrap(), CifarLayout::Archive(dl.join(archive)));
            assert_eq!(read_cifar_dataset(&dl, kind).unwrap(), expected);
            assert_eq!(read_cifar_dataset(&dl.join(archive), kind).unwrap(), expected);
        }
    }

    #[test]
    fn missing_truncated_and_incomplete_archives_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_cifar_dataset(dir.path(), Cifar::Ten).unwrap_err().to_string();
        assert!(e.contains("cifar-10-python.tar.gz") && e.contains("cifar-10-batches-py"), "{e}");

        let full = dir.path().join("cifar-10-python.tar.gz");
        write_archive(&full, "cifar-10-batches-py", &pickled(Cifar::Ten));
        let bytes = std::fs::read(&full).unwrap();
        let cut = dir.path().join("cut.tar.gz");
        std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let e = read_cifar_dataset(&cut, Cifar::Ten).unwrap_err().to_string();
        assert!(e.contains("cut.tar.gz") && (e.contains("member") || e.contains("truncated")), "{e}");

        let partial = dir.path().join("partial.tar.gz");
        let mut members = pickled(Cifar::Ten);
        members.retain(|(n, _)| n != "test_batch");
        write_archive(&partial, "cifar-10-batches-py", &members);
        let e = read_cifar_dataset(&partial, Cifar::Ten).unwrap_err().to_string();
        assert!(e.contains("partial.tar.gz") && e.contains("no member named test_batch"), "{e}");

        // A corrupt batch inside the archive is named as archive:member.
        let mut members = pickled(Cifar::Ten);
        members[2].1.truncate(100);
        let bad = dir.path().join("bad.tar.gz");
        write_archive(&bad, "cifar-10-batches-py", &members);
        let e = read_cifar_dataset(&bad, Cifar::Ten).unwrap_err().to_string();
        assert!(e.contains("bad.tar.gz:cifar-10-batches-py/data_batch_3"), "{e}");
    }
}
