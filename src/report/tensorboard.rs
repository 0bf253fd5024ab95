//! TensorBoard scalar event files (`log.tensorboard = true`): `runs/<name>/tensorboard/`.
//!
//! The format is TFRecord: each record is `len: u64 LE, masked_crc32c(len): u32 LE, data,
//! masked_crc32c(data): u32 LE`, where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8, and
//! each data is a protobuf `Event { double wall_time = 1; int64 step = 2; string file_version
//! = 3; Summary summary = 5; SessionLog session_log = 6; }`, `Summary { repeated Value value = 1;
//! }`, `Value { string tag = 1; float simple_value = 2; }`, `SessionLog { Status status = 1; }`.
//! No maintained Rust crate writes it (the `tensorboard-rs` crate has been unmaintained since
//! 2021 and pulls an image stack), and the handful of protobuf fields is smaller written here
//! than a `prost` build step; the CRC comes from the `crc32c` crate.
//!
//! A resumed run opens a new file that starts with `SessionLog START` at the resumed epoch:
//! TensorBoard then drops the earlier session's points from that epoch on, so an epoch
//! re-trained after an interruption is shown once.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{RblError, Result};
use crate::report::records::EpochRecord;

/// Appends events to one event file.
#[derive(Debug)]
pub struct EventWriter {
    file: File,
    path: PathBuf,
}

fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// An `Event` with the wall time and step, plus `body` (its other fields, already encoded).
fn event(wall_time: f64, step: i64, body: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(body.len() + 16);
    key(&mut e, 1, 1);
    e.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        key(&mut e, 2, 0);
        varint(&mut e, step as u64);
    }
    e.extend_from_slice(body);
    e
}

/// The `summary` field of an `Event` holding `scalars`.
fn summary(scalars: &[(String, f64)]) -> Vec<u8> {
    let mut s = Vec::new();
    for (tag, v) in scalars {
        let mut value = Vec::new();
        bytes_field(&mut value, 1, tag.as_bytes());
        key(&mut value, 2, 5);
        value.extend_from_slice(&(*v as f32).to_le_bytes());
        bytes_field(&mut s, 1, &value);
    }
    let mut body = Vec::new();
    bytes_field(&mut body, 5, &s);
    body
}

/// The scalars of one epoch's record, under TensorBoard tags (absent values are left out).
pub fn epoch_scalars(r: &EpochRecord) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = vec![
        ("train/loss".into(), r.train_loss),
        ("train/accuracy".into(), r.train_acc),
        ("train/lr".into(), r.lr),
        ("speed/train_images_per_second".into(), r.train_images_per_second),
        ("speed/loader_wait_seconds".into(), r.loader_wait_seconds),
    ];
    let mut opt = |tag: &str, v: Option<f64>| {
        if let Some(v) = v {
            out.push((tag.into(), v));
        }
    };
    opt("test/loss", r.test_loss);
    opt("test/accuracy_raw", r.test_acc);
    opt("test/accuracy_adjusted", r.test_acc_adjusted);
    opt("val/accuracy_adjusted", r.val_acc_adjusted);
    opt("train_eval/loss", r.train_eval_loss);
    opt("train_eval/accuracy", r.train_eval_acc);
    opt("rotation/orthogonality_error", r.rotation_orthogonality_error);
    for (kind, shots) in [("raw", r.test_shots), ("adjusted", r.test_shots_adjusted)] {
        for (name, v) in ["many", "medium", "few"].iter().zip(shots.unwrap_or([None; 3])) {
            opt(&format!("test_shots_{kind}/{name}"), v);
        }
    }
    if let Some(nc) = &r.neural_collapse {
        opt("neural_collapse/nc1", Some(nc.nc1));
        opt("neural_collapse/equinorm", Some(nc.equinorm));
        opt("neural_collapse/equiangularity", Some(nc.equiangularity));
        opt("neural_collapse/max_angle_distance", Some(nc.max_angle_distance));
        opt("neural_collapse/self_duality", Some(nc.self_duality));
        opt("neural_collapse/ncc_agreement", Some(nc.ncc_agreement));
    }
    out
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl EventWriter {
    /// Opens a new event file in `dir` for a session starting after epoch `resumed_after`
    /// (0 for a new run), and writes its header events.
    pub fn create(dir: &Path, resumed_after: usize) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).map_err(|e| RblError::io(dir, e))?;
        let start = now();
        let path = dir.join(format!("events.out.tfevents.{}.rbl.{}", start as u64, std::process::id()));
        let file = File::options().create_new(true).append(true).open(&path).map_err(|e| RblError::io(&path, e))?;
        let mut w = EventWriter { file, path };
        let mut version = Vec::new();
        bytes_field(&mut version, 3, b"brain.Event:2");
        w.record(&event(start, 0, &version))?;
        if resumed_after > 0 {
            // SessionLog { status: START }: TensorBoard purges the older points from this step on.
            let mut body = Vec::new();
            bytes_field(&mut body, 6, &[0x08, 0x01]);
            w.record(&event(start, resumed_after as i64 + 1, &body))?;
        }
        w.file.flush().map_err(|e| RblError::io(&w.path, e))?;
        Ok(w)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut buf = Vec::with_capacity(data.len() + 16);
        buf.extend_from_slice(&len);
        buf.extend_from_slice(&masked_crc(&len).to_le_bytes());
        buf.extend_from_slice(data);
        buf.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file.write_all(&buf).map_err(|e| RblError::io(&self.path, e))
    }

    /// Appends one epoch's scalars at step = epoch and flushes, so a watching TensorBoard
    /// sees the epoch at once.
    pub fn write_epoch(&mut self, r: &EpochRecord) -> Result<()> {
        self.record(&event(now(), r.epoch as i64, &summary(&epoch_scalars(r))))?;
        self.file.flush().map_err(|e| RblError::io(&self.path, e))
    }
}

/// Reads back an event file's records, checking both CRCs (for tests and `rbl` itself to
/// verify what it wrote): each record's data bytes.
pub fn read_records(bytes: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let head = bytes.get(at..at + 12).ok_or(format!("record at byte {at} cut short"))?;
        let len_bytes = &head[..8];
        if u32::from_le_bytes(head[8..12].try_into().unwrap()) != masked_crc(len_bytes) {
            return Err(format!("length CRC mismatch at byte {at}"));
        }
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let data = bytes.get(at + 12..at + 12 + len).ok_or(format!("record at byte {at} cut short"))?;
        let crc = bytes.get(at + 12 + len..at + 16 + len).ok_or(format!("record at byte {at} cut short"))?;
        if u32::from_le_bytes(crc.try_into().unwrap()) != masked_crc(data) {
            return Err(format!("data CRC mismatch at byte {at}"));
        }
        out.push(data.to_vec());
        at += 16 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_masking_match_the_published_values() {
        // CRC-32C check value (RFC 3720 / iSCSI) and TFRecord's mask of it by hand.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let c: u32 = 0xE306_9283;
        let masked = (((c as u64 >> 15) | ((c as u64) << 17)) & 0xFFFF_FFFF) as u32;
        assert_eq!(masked_crc(b"123456789"), masked.wrapping_add(0xa282_ead8));
    }

    #[test]
    fn the_protobuf_bytes_are_the_hand_encoded_ones() {
        // Event { wall_time: 1.5, step: 3, summary { value { tag: "a", simple_value: 2.0 } } }
        let got = event(1.5, 3, &summary(&[("a".into(), 2.0)]));
        let mut want = vec![0x09];
        want.extend_from_slice(&1.5f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0x03, 0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, b'a', 0x15]);
        want.extend_from_slice(&2.0f32.to_le_bytes());
        assert_eq!(got, want);
        // A step over 127 takes two varint bytes.
        assert_eq!(&event(0.0, 300, &[])[9..], &[0x10, 0xAC, 0x02]);
    }

    fn record(epoch: usize) -> EpochRecord {
        EpochRecord {
            train_loss: 1.25,
            test_loss: Some(0.9),
            test_acc: Some(60.0),
            test_acc_adjusted: Some(65.0),
            test_shots: Some([Some(70.0), None, Some(10.0)]),
            train_images_per_second: 500.0,
            rotation_orthogonality_error: Some(3e-7),
            ..EpochRecord::bare(epoch)
        }
    }

    #[test]
    fn a_run_and_its_resumption_write_checked_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path(), 0).unwrap();
        w.write_epoch(&record(1)).unwrap();
        w.write_epoch(&record(2)).unwrap();
        let records = read_records(&std::fs::read(w.path()).unwrap()).unwrap();
        assert_eq!(records.len(), 3);
        assert!(records[0].windows(13).any(|x| x == b"brain.Event:2"));
        let tags = epoch_scalars(&record(2));
        assert!(tags.iter().any(|(t, v)| t == "test/accuracy_adjusted" && *v == 65.0));
        assert!(tags.iter().any(|(t, _)| t == "test_shots_raw/few") && !tags.iter().any(|(t, _)| t == "test_shots_raw/medium"));
        assert!(records[2].windows(22).any(|x| x == b"test/accuracy_adjusted"));
        // A resumed session's file starts with SessionLog START at the next epoch.
        let dir2 = tempfile::tempdir().unwrap();
        let w2 = EventWriter::create(dir2.path(), 2).unwrap();
        let records = read_records(&std::fs::read(w2.path()).unwrap()).unwrap();
        assert_eq!(records.len(), 2);
        assert!(records[1].ends_with(&[0x10, 0x03, 0x32, 0x02, 0x08, 0x01]), "{:?}", records[1]);
        // A flipped byte is caught.
        let mut bytes = std::fs::read(w.path()).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        assert!(read_records(&bytes).unwrap_err().contains("CRC"));
    }
}
