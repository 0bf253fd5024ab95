//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), gzipped or not.
//!
//! Layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
//! one big-endian u32 per dimension, then the data row-major.

use std::io::Read;
use std::path::Path;

use crate::error::{RblError, Result};

/// A decoded IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Size of each dimension.
    pub dims: Vec<usize>,
    /// The data, row-major.
    pub data: Vec<u8>,
}

/// Largest payload accepted (1 GiB): a header may not make rbl allocate without bound.
const MAX_PAYLOAD: usize = 1 << 30;

/// Largest IDX file read: the payload bound plus the longest header (255 dimensions). A
/// gzipped file is smaller than what it holds, so the same bound covers it.
pub const MAX_FILE_BYTES: u64 = MAX_PAYLOAD as u64 + 4 + 4 * 255;

/// Reads an IDX file of unsigned bytes; gzip is detected by its magic bytes. Only a regular
/// file of at most [`MAX_FILE_BYTES`] is read.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let raw = crate::files::read_capped(path, MAX_FILE_BYTES, "an IDX file")?;
    parse_idx(&raw, path)
}

/// Parses IDX bytes (gzipped or not); `path` only names the source in errors.
pub fn parse_idx(raw: &[u8], path: &Path) -> Result<IdxArray> {
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut decoder = flate2::read::GzDecoder::new(raw);
        let mut header = [0u8; 4];
        read_exact(&mut decoder, &mut header, path, "header")?;
        check_magic(&header, path)?;
        let ndim = header[3] as usize;
        let mut dims_raw = vec![0u8; 4 * ndim];
        read_exact(&mut decoder, &mut dims_raw, path, "dimensions")?;
        let dims = decode_dims(&dims_raw);
        let len = payload_len(&dims, path)?;
        let mut data = Vec::new();
        decoder.take(len as u64 + 1).read_to_end(&mut data).map_err(|e| RblError::format(path, format!("gzip stream is corrupt: {e}")))?;
        // Reads at most one byte past the payload: enough to know there is more, not how much.
        check_len(data.len(), len, &dims, path, false)?;
        Ok(IdxArray { dims, data })
    } else {
        if raw.len() < 4 {
            return Err(RblError::format(path, format!("truncated: {} bytes, no IDX header", raw.len())));
        }
        check_magic(&raw[..4], path)?;
        let ndim = raw[3] as usize;
        let body = &raw[4..];
        if body.len() < 4 * ndim {
            return Err(RblError::format(path, "truncated in the dimension list"));
        }
        let dims = decode_dims(&body[..4 * ndim]);
        let len = payload_len(&dims, path)?;
        let data = &body[4 * ndim..];
        check_len(data.len(), len, &dims, path, true)?;
        Ok(IdxArray { dims, data: data.to_vec() })
    }
}

/// Encodes bytes as an (uncompressed) IDX file, for tests and tools.
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], path: &Path, what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| RblError::format(path, format!("truncated or corrupt in the {what}: {e}")))
}

fn check_magic(h: &[u8], path: &Path) -> Result<()> {
    if h[0] != 0 || h[1] != 0 {
        return Err(RblError::format(
            path,
            format!("wrong magic number {:02x}{:02x}{:02x}{:02x}: not an IDX file", h[0], h[1], h[2], h[3]),
        ));
    }
    if h[2] != 0x08 {
        return Err(RblError::format(path, format!("IDX element type 0x{:02x} is not unsigned byte (0x08)", h[2])));
    }
    if h[3] == 0 {
        return Err(RblError::format(path, "IDX file declares zero dimensions"));
    }
    Ok(())
}

fn decode_dims(raw: &[u8]) -> Vec<usize> {
    raw.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect()
}

fn payload_len(dims: &[usize], path: &Path) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_PAYLOAD)
        .ok_or_else(|| RblError::format(path, format!("declared dimensions {dims:?} exceed the 1 GiB limit")))
}

/// The payload against the header: `counted` when `got` is the whole rest of the file (plain
/// files), not when the reader stopped one byte past the payload (gzip).
fn check_len(got: usize, want: usize, dims: &[usize], path: &Path, counted: bool) -> Result<()> {
    if got < want {
        return Err(RblError::format(path, format!("truncated: header declares {want} data bytes, file holds {got}")));
    }
    if got > want {
        let extra = if counted { format!("{} bytes", got - want) } else { "data".to_string() };
        return Err(RblError::format(
            path,
            format!("{extra} past the {want} bytes that the header's dimensions {dims:?} declare (a wrong number of dimensions?)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn round_trip_plain_and_gzipped() {
        let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let bytes = encode_idx(&[2, 3, 4], &data);
        assert_eq!(&bytes[..4], &[0, 0, 8, 3]);
        assert_eq!(&bytes[4..8], &[0, 0, 0, 2]);
        let p = Path::new("x.idx");
        for b in [bytes.clone(), gz(&bytes)] {
            let a = parse_idx(&b, p).unwrap();
            assert_eq!(a.dims, vec![2, 3, 4]);
            assert_eq!(a.data, data);
        }
    }

    #[test]
    fn bad_inputs_are_errors_naming_the_file() {
        let p = Path::new("labels.idx");
        let good = encode_idx(&[10], &[1; 10]);
        let truncated = &good[..good.len() - 3];
        for (bytes, needle) in [
            (truncated.to_vec(), "truncated"),
            (gz(truncated), "truncated"),
            (vec![0x08, 0x03, 0, 0, 0], "magic"),
            (vec![0, 0, 8], "truncated"),
            (encode_idx(&[u32::MAX as usize, u32::MAX as usize], &[]), "exceed"),
            (gz(&encode_idx(&[70000, 70000], &[])), "exceed"),
        ] {
            let e = parse_idx(&bytes, p).unwrap_err().to_string();
            assert!(e.contains("labels.idx") && e.contains(needle), "{e}");
        }
        let e = read_idx(Path::new("/nonexistent/file.gz")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/file.gz"), "{e}");
        // A header with one dimension too few: the message shows the declared dimensions and
        // does not invent a byte count (a gzipped file is read one byte past its payload).
        let mut wrong_rank = encode_idx(&[4, 3, 3], &[0; 36]);
        wrong_rank[3] = 2;
        wrong_rank.drain(12..16);
        for bytes in [wrong_rank.clone(), gz(&wrong_rank)] {
            let e = parse_idx(&bytes, p).unwrap_err().to_string();
            assert!(e.contains("[4, 3]") && e.contains("wrong number of dimensions") && !e.contains(" 1 bytes"), "{e}");
        }
    }
}
