//! Split files of "folder + list" datasets (ImageNet-LT, Places-LT, iNaturalist): one
//! `relative/path label` per line, paths relative to a root folder.

use std::path::{Component, Path, PathBuf};

use crate::error::{RblError, Result};

/// Most lines accepted in one split file (ImageNet-LT's train list has ~116k; iNaturalist 2018
/// ~438k): a corrupt file cannot make rbl build an unbounded list.
pub const MAX_LINES: usize = 10_000_000;

/// One image of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitEntry {
    /// Path relative to the dataset root.
    pub path: PathBuf,
    /// Class label.
    pub label: u32,
}

/// Parses a split file's text (`origin` names it in errors). Blank lines are skipped; every
/// other line must be `path label` with a label below `num_classes`. Paths may contain spaces
/// (the label is the last field); absolute paths and `..` are refused, so a list cannot point
/// outside its root.
pub fn parse_split(text: &str, origin: &Path, num_classes: usize) -> Result<Vec<SplitEntry>> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |msg: String| RblError::format(origin, format!("line {}: {msg}", i + 1));
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if entries.len() == MAX_LINES {
            return Err(bad(format!("more than {MAX_LINES} entries")));
        }
        let (path, label) = line.rsplit_once(char::is_whitespace).ok_or_else(|| bad(format!("expected 'path label', got '{line}'")))?;
        let label: u32 = label.parse().map_err(|_| bad(format!("label '{label}' is not a non-negative integer")))?;
        if label as usize >= num_classes {
            return Err(bad(format!("label {label} is outside 0 … {} ({num_classes} classes)", num_classes - 1)));
        }
        let path = PathBuf::from(path.trim_end());
        if path.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(format!("path '{}' must be relative and stay inside the root", path.display())));
        }
        entries.push(SplitEntry { path, label });
    }
    if entries.is_empty() {
        return Err(RblError::format(origin, "the split lists no images"));
    }
    Ok(entries)
}

/// Reads and parses a split file.
pub fn read_split(path: &Path, num_classes: usize) -> Result<Vec<SplitEntry>> {
    // iNaturalist 2018's train list is ~30 MB; 1 GiB is far beyond any real split file.
    let text = crate::error::read_text_capped(path, 1 << 30)?;
    parse_split(&text, path, num_classes)
}

/// Images per class of a split (the long-tail profile; a class with none is reported by the
/// caller, which knows whether that is allowed).
pub fn class_counts(entries: &[SplitEntry], num_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; num_classes];
    for e in entries {
        counts[e.label as usize] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_imagenet_lt_format() {
        let text = "train/n01440764/n01440764_190.JPEG 0\n\ntrain/n01443537/a b.JPEG 1\r\ntrain/n01443537/c.JPEG 1\n";
        let e = parse_split(text, Path::new("ImageNet_LT_train.txt"), 1000).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], SplitEntry { path: "train/n01440764/n01440764_190.JPEG".into(), label: 0 });
        assert_eq!(e[1].path, PathBuf::from("train/n01443537/a b.JPEG"), "spaces in paths");
        assert_eq!(class_counts(&e, 3), vec![1, 2, 0]);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let origin = Path::new("split.txt");
        for (text, needle) in [
            ("a.jpg 0\nb.jpg\n", "line 2"),
            ("a.jpg x\n", "not a non-negative integer"),
            ("a.jpg -1\n", "not a non-negative integer"),
            ("a.jpg 10\n", "outside 0 … 9"),
            ("/etc/passwd 1\n", "relative"),
            ("../secret.jpg 1\n", "inside the root"),
            ("\n\n", "no images"),
        ] {
            let e = parse_split(text, origin, 10).unwrap_err().to_string();
            assert!(e.contains("split.txt") && e.contains(needle), "{text:?}: {e}");
        }
    }
}
