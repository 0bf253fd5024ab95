//! Reading the files a user points rbl at: regular files only, their size checked against the
//! format's bound before a byte is read, and never an open that can block.
//!
//! A path can name a FIFO (an open blocks until a writer appears, and signals are not seen
//! meanwhile), a device (`/dev/zero` never ends) or a sparse file of gigabytes. Every read of
//! a data file, config, checkpoint or run-folder file goes through here, so each of those is
//! refused naming the path and what it is, instead of hanging or allocating without bound.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{RblError, Result};

/// What a file that is not a regular one is, for messages ("a FIFO", "a character device").
pub fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a folder"
    } else if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Whether `path` is (or links to) a regular file. Unlike [`Path::is_file`] this is what every
/// read here requires, so a walk can skip what a read would refuse.
pub fn is_regular(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// Opens `path` for reading if it is a regular file (symbolic links to one are followed) and
/// returns it with its length. The open itself cannot block: it is made non-blocking, and the
/// type is checked on the open file, so a FIFO swapped in after a check is still refused.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| RblError::io(path, e))?;
    let meta = file.metadata().map_err(|e| RblError::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(RblError::format(path, format!("{}, not a regular file: rbl reads only regular files", kind_of(meta.file_type()))));
    }
    Ok((file, meta.len()))
}

/// Reads a whole regular file of at most `limit` bytes (`what` names the kind of file in the
/// message: "a CIFAR batch"). A larger file is refused before it is read; a file that grows
/// while being read is cut at `limit + 1` bytes and refused too.
pub fn read_capped(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > limit {
        return Err(RblError::format(path, format!("{len} bytes, more than the {limit} {what} can need")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| RblError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(RblError::format(path, format!("grew past {limit} bytes while being read ({what})")));
    }
    Ok(bytes)
}

/// As [`read_capped`], for UTF-8 text.
pub fn read_text_capped(path: &Path, limit: u64) -> Result<String> {
    let bytes = read_capped(path, limit, "a file of this kind")?;
    String::from_utf8(bytes).map_err(|e| RblError::format(path, format!("not UTF-8 text: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_read_others_are_named_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.txt");
        std::fs::write(&ok, "hello").unwrap();
        assert_eq!(read_text_capped(&ok, 5).unwrap(), "hello");
        let e = read_capped(&ok, 4, "a greeting").unwrap_err().to_string();
        assert!(e.contains("5 bytes, more than the 4 a greeting can need"), "{e}");

        // A FIFO with no writer: a plain open would block forever.
        let fifo = dir.path().join("f.png");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = read_capped(&fifo, 1 << 20, "an image").unwrap_err().to_string();
        assert!(e.contains("f.png") && e.contains("FIFO"), "{e}");
        assert!(!is_regular(&fifo));

        let e = read_capped(Path::new("/dev/zero"), 1 << 30, "an IDX file").unwrap_err().to_string();
        assert!(e.contains("/dev/zero") && e.contains("character device"), "{e}");
        let e = read_capped(dir.path(), 10, "x").unwrap_err().to_string();
        assert!(e.contains("folder") || e.contains("directory"), "{e}");

        // A symbolic link to a regular file reads.
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert_eq!(read_text_capped(&link, 5).unwrap(), "hello");
        assert!(is_regular(&link));
    }
}
