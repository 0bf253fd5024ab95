//! CIFAR-10/100 as torchvision downloads them: `cifar-10-batches-py/data_batch_1` … and
//! `cifar-100-python/train`, pickled dictionaries (Krizhevsky's files, written by Python 2).
//!
//! A batch is `{b"data": ndarray uint8 (N, 3072), b"labels" | b"fine_labels": [int; N], …}`; a
//! row is the same 1024 red, 1024 green, 1024 blue bytes as the binary distribution, so both
//! read to identical [`ImageSet`]s. The pickle is decoded by `serde-pickle` with numpy's class
//! objects kept as opaque "restore state" tuples, and the array is taken from the state numpy
//! pickles:
//! - Python 2 / numpy 1.x (the real files): `numpy.core.multiarray._reconstruct(ndarray, (0,),
//!   b'b')` then `BUILD (1, shape, dtype, is_fortran, raw bytes)`, strings as BINSTRING;
//! - Python 3, protocol 2: the same with `numpy._core` and the raw bytes as
//!   `_codecs.encode(str, 'latin1')`, keys as BINUNICODE;
//! - Python 3, protocol 5: `numpy.core.numeric._frombuffer(raw bytes, dtype, shape, order)`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_pickle::{DeOptions, HashableValue, Value};

use crate::data::ImageSet;
use crate::data::cifar::Cifar;
use crate::error::{RblError, Result};

const PIXELS: usize = 3 * 32 * 32;

/// Parses one pickled batch (`name` names it in errors: a file, or `archive.tar.gz:member`).
pub fn parse_cifar_pickle(bytes: &[u8], kind: Cifar, name: &Path) -> Result<ImageSet> {
    let bad = |msg: String| RblError::format(name, msg);
    // serde-pickle builds and drops values recursively: a file nesting containers a million
    // deep (two bytes per level) would overflow the stack. A CIFAR batch nests four deep. And
    // it copies a memoised value at every reference: a small file can ask for gigabytes.
    if let Some(b) = pickle_bounds(bytes) {
        if b.depth > MAX_DEPTH {
            return Err(bad(format!("containers nested {} deep (a CIFAR batch nests 4; at most {MAX_DEPTH} are read)", b.depth)));
        }
        let limit = max_built_bytes(bytes.len());
        if b.built > limit {
            return Err(bad(format!(
                "its values would take more than {limit} bytes once built from a file of {} bytes (memo references or DUP \
                 copying values over and over); a CIFAR batch builds about its own size",
                bytes.len()
            )));
        }
    }
    let value = serde_pickle::value_from_slice(bytes, DeOptions::new().keep_restore_state())
        .map_err(|e| bad(format!("not a readable CIFAR pickle: {e}")))?;
    let Value::Dict(dict) = value else {
        return Err(bad("expected a pickled dictionary (a CIFAR batch)".into()));
    };
    let label_key = match kind {
        Cifar::Ten => "labels",
        Cifar::Hundred => "fine_labels",
    };
    let data = get(&dict, "data").ok_or_else(|| bad("no \"data\" entry".into()))?;
    let labels = get(&dict, label_key).ok_or_else(|| bad(format!("no \"{label_key}\" entry")))?;
    let (shape, raw) = ndarray_bytes(data).map_err(|m| bad(format!("\"data\": {m}")))?;
    if shape.len() != 2 || shape[1] != PIXELS {
        return Err(bad(format!("\"data\" has shape {shape:?}, expected (N, {PIXELS})")));
    }
    let n = shape[0];
    if raw.len() != n * PIXELS {
        return Err(bad(format!("\"data\" holds {} bytes for shape ({n}, {PIXELS}) of uint8: truncated, or not 8-bit pixels", raw.len())));
    }
    let labels = int_list(labels).map_err(|m| bad(format!("\"{label_key}\": {m}")))?;
    if labels.len() != n {
        return Err(bad(format!("{} labels for {n} images", labels.len())));
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l < 0 || **l as usize >= kind.classes()) {
        return Err(RblError::LabelRange { path: name.into(), label, index, classes: kind.classes() });
    }
    Ok(ImageSet {
        pixels: raw.to_vec(),
        labels: labels.into_iter().map(|l| l as u32).collect(),
        num_classes: kind.classes(),
        channels: 3,
        height: 32,
        width: 32,
        files: None,
    })
}

/// Deepest container nesting [`parse_cifar_pickle`] accepts.
pub const MAX_DEPTH: usize = 32;

/// What one value costs once built, besides its bytes: serde-pickle's `Value` and its share of
/// a container (a generous round figure; the bound it enters is loose on purpose).
const VALUE_BYTES: u64 = 64;

/// The most memory the values of a pickle of `len` bytes may take once built: four times the
/// file plus 64 MiB, and never more than 1 GiB. A real batch builds about what it holds (CIFAR-
/// 100's `train`, 161 MB, builds ~170 MB); a memo reference or DUP makes a full copy when
/// serde-pickle builds the value, so a 70-byte file of 28 DUP + APPEND pairs would build 2^28
/// values, and a 1 MB string fetched a thousand times 1 GB.
pub fn max_built_bytes(len: usize) -> u64 {
    (4 * len as u64 + (64 << 20)).min(1 << 30)
}

/// The depth and built size of a pickle, as [`pickle_bounds`] finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PickleBounds {
    /// How deep containers nest.
    pub depth: usize,
    /// Bytes the built values would take (see [`max_built_bytes`]), counting every copy a memo
    /// reference or DUP makes.
    pub built: u64,
}

/// How deep the containers of a pickle nest, found by [`pickle_bounds`].
pub fn nesting_depth(bytes: &[u8]) -> Option<usize> {
    pickle_bounds(bytes).map(|b| b.depth)
}

/// How deep the containers of a pickle nest and how many bytes its values would take once
/// built, found by running its opcodes on a stack of (depth, size) pairs (strings and numbers
/// depth 0, a container 1 + its deepest item and the sum of its items' sizes; memo entries
/// keep theirs, and a fetch from the memo or a DUP adds a whole copy), stopping once past
/// [`MAX_DEPTH`] or [`max_built_bytes`]. `None` when the stream is not one this walk can follow
/// (an unknown opcode, a stack underflow, a cut argument): serde-pickle then reports it.
pub fn pickle_bounds(bytes: &[u8]) -> Option<PickleBounds> {
    // (depth, bytes once built) of each stack entry.
    let mut stack: Vec<(usize, u64)> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: std::collections::HashMap<u64, (usize, u64)> = std::collections::HashMap::new();
    let limit = max_built_bytes(bytes.len());
    let mut deepest = 0;
    let mut built: u64 = 0;
    let mut at = 0;
    let arg = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let a = bytes.get(*at..at.checked_add(n)?)?;
        *at += n;
        Some(a)
    };
    let le = |b: &[u8]| b.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64);
    // A fresh value of `n` payload bytes.
    let leaf = |n: usize| (0usize, VALUE_BYTES + n as u64);
    // Items of a container merged: deepest + 1, sizes summed (plus the container's own).
    let merge = |items: std::vec::Drain<'_, (usize, u64)>| {
        items.fold((1usize, VALUE_BYTES), |(d, s), (di, si)| (d.max(di + 1), s.saturating_add(si)))
    };
    while at < bytes.len() {
        let op = bytes[at];
        at += 1;
        let pop_mark = |stack: &mut Vec<(usize, u64)>, marks: &mut Vec<usize>| -> Option<(usize, u64)> {
            let m = marks.pop()?;
            (m <= stack.len()).then(|| merge(stack.drain(m..)))
        };
        let pop_n = |stack: &mut Vec<(usize, u64)>, n: usize| -> Option<(usize, u64)> {
            (stack.len() >= n).then(|| merge(stack.drain(stack.len() - n..)))
        };
        // Adds a popped container's items to the one below it (APPEND, SETITEM, …).
        let extend = |stack: &mut Vec<(usize, u64)>, items: (usize, u64)| -> Option<()> {
            let top = stack.last_mut()?;
            *top = (top.0.max(items.0), top.1.saturating_add(items.1 - VALUE_BYTES));
            Some(())
        };
        // A new value (a leaf, or a copy from the memo or DUP) costs its whole size.
        let mut push = |stack: &mut Vec<(usize, u64)>, v: (usize, u64)| {
            built = built.saturating_add(v.1);
            stack.push(v);
        };
        // A container made of values already on the stack costs only itself.
        let wrap = |stack: &mut Vec<(usize, u64)>, v: (usize, u64), built: &mut u64| {
            *built = built.saturating_add(VALUE_BYTES);
            stack.push(v);
        };
        match op {
            b'.' => break,
            b'(' => marks.push(stack.len()),
            b'N' | 0x88 | 0x89 => push(&mut stack, leaf(0)),
            b'}' | b']' | b')' | 0x8f => push(&mut stack, (1, VALUE_BYTES)),
            b'K' | b'h' => {
                let a = arg(&mut at, 1)?;
                let v = if op == b'h' { *memo.get(&(a[0] as u64))? } else { leaf(0) };
                push(&mut stack, v);
            }
            b'q' => {
                let id = arg(&mut at, 1)?[0] as u64;
                memo.insert(id, *stack.last()?);
            }
            b'r' => {
                let id = le(arg(&mut at, 4)?);
                memo.insert(id, *stack.last()?);
            }
            b'j' => {
                let id = le(arg(&mut at, 4)?);
                let v = *memo.get(&id)?;
                push(&mut stack, v);
            }
            0x94 => {
                let id = memo.len() as u64;
                memo.insert(id, *stack.last()?);
            }
            0x80 => drop(arg(&mut at, 1)?),
            0x82 => push(&mut stack, arg(&mut at, 1).map(|_| leaf(0))?),
            b'M' | 0x83 => push(&mut stack, arg(&mut at, 2).map(|_| leaf(0))?),
            b'J' | 0x84 => push(&mut stack, arg(&mut at, 4).map(|_| leaf(0))?),
            b'G' => push(&mut stack, arg(&mut at, 8).map(|_| leaf(0))?),
            0x95 => drop(arg(&mut at, 8)?),
            b'U' | b'C' | 0x8c | 0x8a => {
                let n = arg(&mut at, 1)?[0] as usize;
                push(&mut stack, arg(&mut at, n).map(|_| leaf(n))?);
            }
            b'T' | b'X' | b'B' | 0x8b => {
                let n = le(arg(&mut at, 4)?) as usize;
                push(&mut stack, arg(&mut at, n).map(|_| leaf(n))?);
            }
            0x8d | 0x8e | 0x96 => {
                let n = usize::try_from(le(arg(&mut at, 8)?)).ok()?;
                push(&mut stack, arg(&mut at, n).map(|_| leaf(n))?);
            }
            b'I' | b'L' | b'F' | b'S' | b'V' | b'g' | b'p' | b'P' | b'c' | b'i' => {
                let lines = if matches!(op, b'c' | b'i') { 2 } else { 1 };
                let mut line = &[][..];
                for _ in 0..lines {
                    let end = bytes[at..].iter().position(|&b| b == b'\n')?;
                    line = &bytes[at..at + end];
                    at += end + 1;
                }
                let id = || std::str::from_utf8(line).ok()?.trim().parse::<u64>().ok();
                match op {
                    b'p' => drop(memo.insert(id()?, *stack.last()?)),
                    b'g' => {
                        let v = *memo.get(&id()?)?;
                        push(&mut stack, v);
                    }
                    b'i' => {
                        let d = pop_mark(&mut stack, &mut marks)?;
                        wrap(&mut stack, d, &mut built);
                    }
                    _ => push(&mut stack, leaf(line.len())),
                }
            }
            b'0' => drop(stack.pop()?),
            b'1' => {
                let m = marks.pop()?;
                stack.truncate(m);
            }
            b'2' => {
                let v = *stack.last()?;
                push(&mut stack, v);
            }
            b'a' | b's' => {
                let n = if op == b'a' { 1 } else { 2 };
                let d = pop_n(&mut stack, n)?;
                extend(&mut stack, d)?;
            }
            b'e' | b'u' | 0x90 => {
                let d = pop_mark(&mut stack, &mut marks)?;
                extend(&mut stack, d)?;
            }
            b'l' | b't' | b'd' | 0x91 | b'o' => {
                let d = pop_mark(&mut stack, &mut marks)?;
                wrap(&mut stack, d, &mut built);
            }
            0x85..=0x87 => {
                let d = pop_n(&mut stack, (op - 0x84) as usize)?;
                wrap(&mut stack, d, &mut built);
            }
            b'R' | 0x81 | 0x93 => {
                let d = pop_n(&mut stack, 2)?;
                wrap(&mut stack, if op == 0x93 { (0, d.1) } else { d }, &mut built);
            }
            0x92 => {
                let d = pop_n(&mut stack, 3)?;
                wrap(&mut stack, d, &mut built);
            }
            b'b' => {
                let state = stack.pop()?;
                let top = stack.last_mut()?;
                *top = (state.0, top.1.saturating_add(state.1));
            }
            b'Q' => stack.last_mut()?.0 = 0,
            _ => return None,
        }
        deepest = deepest.max(stack.last().map_or(0, |v| v.0));
        if deepest > MAX_DEPTH || built > limit {
            return Some(PickleBounds { depth: deepest, built });
        }
    }
    Some(PickleBounds { depth: deepest, built })
}

/// The entry `key` of a batch, whether Python 2 wrote the key as bytes or Python 3 as text.
fn get<'a>(dict: &'a BTreeMap<HashableValue, Value>, key: &str) -> Option<&'a Value> {
    dict.get(&HashableValue::Bytes(key.as_bytes().to_vec())).or_else(|| dict.get(&HashableValue::String(key.into())))
}

/// A list of small integers.
fn int_list(value: &Value) -> std::result::Result<Vec<i64>, String> {
    let (Value::List(items) | Value::Tuple(items)) = value else {
        return Err("expected a list of integers".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::I64(x) => Ok(*x),
            other => Err(format!("item {i} is {other:?}, expected an integer")),
        })
        .collect()
}

/// The shape and raw bytes of a pickled numpy array, from either state layout (module doc).
fn ndarray_bytes(value: &Value) -> std::result::Result<(Vec<usize>, &[u8]), String> {
    let Value::Tuple(state) = value else {
        return Err("expected a numpy array".into());
    };
    let shape_of = |v: &Value| -> std::result::Result<Vec<usize>, String> {
        let (Value::Tuple(dims) | Value::List(dims)) = v else { return Err(format!("shape {v:?} is not a tuple")) };
        dims.iter()
            .map(|d| match d {
                Value::I64(x) if *x >= 0 => Ok(*x as usize),
                other => Err(format!("shape entry {other:?} is not a size")),
            })
            .collect()
    };
    match state.as_slice() {
        // _reconstruct + BUILD: (version, shape, dtype, is_fortran, raw bytes).
        [Value::I64(_), shape, _dtype, fortran, Value::Bytes(raw)] => {
            if matches!(fortran, Value::Bool(true)) {
                return Err("a Fortran-ordered array (the CIFAR files are C-ordered)".into());
            }
            Ok((shape_of(shape)?, raw))
        }
        // _frombuffer(raw bytes, dtype, shape, order).
        [Value::Bytes(raw), _dtype, shape, order] => {
            if matches!(order, Value::String(o) if o == "F") || matches!(order, Value::Bytes(o) if o == b"F") {
                return Err("a Fortran-ordered array (the CIFAR files are C-ordered)".into());
            }
            Ok((shape_of(shape)?, raw))
        }
        _ => Err("not a numpy array in a layout rbl reads (numpy's _reconstruct/BUILD or _frombuffer state)".into()),
    }
}

/// Writers of the pickle layouts above, for tests and tools: files with exactly the opcode
/// structure of the real ones (the Python 2 layout is what torchvision downloads).
pub mod write {
    /// Which writer's layout.
    #[derive(Clone, Copy, Debug)]
    pub enum Layout {
        /// Python 2 cPickle protocol 2, numpy 1.x: the files torchvision downloads.
        Python2,
        /// Python 3 pickle protocol 2, numpy 2.
        Python3Protocol2,
        /// Python 3 pickle protocol 5, numpy's `_frombuffer`.
        Python3Protocol5,
    }

    struct W {
        out: Vec<u8>,
        memo: u8,
        layout: Layout,
    }

    impl W {
        fn op(&mut self, bytes: &[u8]) {
            self.out.extend_from_slice(bytes);
        }
        fn put(&mut self) {
            // BINPUT: the real files memoise every object.
            self.out.extend_from_slice(&[b'q', self.memo]);
            self.memo = self.memo.wrapping_add(1);
        }
        fn text(&mut self, s: &str) {
            match self.layout {
                Layout::Python2 => {
                    self.op(&[b'U', s.len() as u8]); // SHORT_BINSTRING
                    self.op(s.as_bytes());
                }
                _ => {
                    self.op(b"X"); // BINUNICODE
                    self.op(&(s.len() as u32).to_le_bytes());
                    self.op(s.as_bytes());
                }
            }
            self.put();
        }
        fn int(&mut self, v: i64) {
            match v {
                0..=255 => self.op(&[b'K', v as u8]),
                256..=65535 => {
                    self.op(b"M");
                    self.op(&(v as u16).to_le_bytes());
                }
                _ => {
                    self.op(b"J");
                    self.op(&(v as i32).to_le_bytes());
                }
            }
        }
        fn global(&mut self, module: &str, name: &str) {
            self.op(format!("c{module}\n{name}\n").as_bytes());
            self.put();
        }
        fn dtype_u1(&mut self) {
            self.global("numpy", "dtype");
            self.text("u1");
            self.int(0);
            self.int(1);
            self.op(&[0x87, b'R']); // TUPLE3 REDUCE
            self.put();
            self.op(b"(");
            self.int(3);
            self.text("|");
            self.op(b"NNN");
            self.int(-1);
            self.int(-1);
            self.int(0);
            self.op(b"tb"); // TUPLE BUILD
        }
        fn array(&mut self, rows: usize, cols: usize, raw: &[u8]) {
            match self.layout {
                Layout::Python2 | Layout::Python3Protocol2 => {
                    let core = if matches!(self.layout, Layout::Python2) { "numpy.core.multiarray" } else { "numpy._core.multiarray" };
                    self.global(core, "_reconstruct");
                    self.global("numpy", "ndarray");
                    self.int(0);
                    self.op(&[0x85]); // TUPLE1
                    match self.layout {
                        Layout::Python2 => self.op(&[b'U', 1, b'b']),
                        _ => {
                            self.global("_codecs", "encode");
                            self.text("b");
                            self.text("latin1");
                            self.op(&[0x86, b'R']);
                        }
                    }
                    self.op(&[0x87, b'R']); // TUPLE3 REDUCE
                    self.put();
                    self.op(b"(");
                    self.int(1);
                    self.int(rows as i64);
                    self.int(cols as i64);
                    self.op(&[0x86]); // TUPLE2
                    self.dtype_u1();
                    self.op(&[0x89]); // NEWFALSE
                    match self.layout {
                        Layout::Python2 => {
                            self.op(b"T"); // BINSTRING
                            self.op(&(raw.len() as u32).to_le_bytes());
                            self.op(raw);
                        }
                        _ => {
                            // Python 3 writes bytes under protocol 2 as _codecs.encode(latin-1 text).
                            self.global("_codecs", "encode");
                            let text: String = raw.iter().map(|&b| b as char).collect();
                            self.op(b"X");
                            self.op(&(text.len() as u32).to_le_bytes());
                            self.op(text.as_bytes());
                            self.text("latin1");
                            self.op(&[0x86, b'R']);
                        }
                    }
                    self.op(b"tb"); // TUPLE BUILD
                }
                Layout::Python3Protocol5 => {
                    // _frombuffer(raw, dtype, shape, order): MARK … TUPLE REDUCE.
                    self.global("numpy._core.numeric", "_frombuffer");
                    self.op(b"(");
                    self.op(&[0x8e]); // BINBYTES8
                    self.op(&(raw.len() as u64).to_le_bytes());
                    self.op(raw);
                    self.dtype_u1();
                    self.int(rows as i64);
                    self.int(cols as i64);
                    self.op(&[0x86]); // TUPLE2
                    self.text("C");
                    self.op(b"tR");
                    self.put();
                }
            }
        }
    }

    /// A pickled CIFAR batch: `labels_key` ("labels" or "fine_labels") → `labels`, `data` →
    /// the images as an (N, 3072) uint8 array.
    pub fn cifar_batch(images: &[Vec<u8>], labels: &[i64], labels_key: &str, layout: Layout) -> Vec<u8> {
        let mut w = W { out: vec![0x80, if matches!(layout, Layout::Python3Protocol5) { 5 } else { 2 }], memo: 0, layout };
        w.op(b"}"); // EMPTY_DICT
        w.put();
        w.op(b"(");
        w.text("batch_label");
        w.text("training batch 1 of 5");
        w.text(labels_key);
        w.op(b"]");
        w.put();
        w.op(b"(");
        for &l in labels {
            w.int(l);
        }
        w.op(b"e"); // APPENDS
        w.text("data");
        w.array(images.len(), super::PIXELS, &images.concat());
        w.text("filenames");
        w.op(b"]");
        w.put();
        w.op(b"(");
        for i in 0..labels.len() {
            w.text(&format!("img_{i}.png"));
        }
        w.op(b"e");
        w.op(b"u."); // SETITEMS STOP
        w.out
    }
}

#[cfg(test)]
mod tests {
    use super::write::{Layout, cifar_batch};
    use super::*;
    use crate::data::cifar::{encode_cifar, parse_cifar};

    fn image(seed: u8) -> Vec<u8> {
        (0..PIXELS).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn every_pickle_layout_reads_to_the_binary_distributions_set() {
        // Pixel values 0x80–0xFF matter: latin-1 text encodes them as two UTF-8 bytes.
        let images: Vec<Vec<u8>> = (0..4).map(|s| image(s * 60)).collect();
        let labels = [3i64, 0, 9, 3];
        let binary = encode_cifar(&images, &labels.map(|l| (l as u8, 0)), Cifar::Ten);
        let expected = parse_cifar(&binary, Cifar::Ten, Path::new("data_batch_1.bin")).unwrap();
        for layout in [Layout::Python2, Layout::Python3Protocol2, Layout::Python3Protocol5] {
            let bytes = cifar_batch(&images, &labels, "labels", layout);
            let set = parse_cifar_pickle(&bytes, Cifar::Ten, Path::new("data_batch_1")).unwrap_or_else(|e| panic!("{layout:?}: {e}"));
            assert_eq!(set, expected, "{layout:?}");
        }
        // CIFAR-100 reads the fine labels.
        let fine = [99i64, 0, 42, 7];
        let bytes = cifar_batch(&images, &fine, "fine_labels", Layout::Python2);
        let set = parse_cifar_pickle(&bytes, Cifar::Hundred, Path::new("train")).unwrap();
        assert_eq!(set.labels, vec![99, 0, 42, 7]);
        assert_eq!(set.num_classes, 100);
    }

    #[test]
    fn pickles_written_by_python3_and_numpy2_read() {
        // fuzz/seeds/pickle holds pickle.dumps of a batch dict with a real numpy 2.x array
        // (protocols 2 and 5), after the fuzz target's one-byte selector.
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/pickle");
        let want: Vec<u8> = (0..2 * PIXELS).map(|i| (i % 251) as u8).collect();
        for (file, kind, labels) in [("ten_py3_p2", Cifar::Ten, vec![3, 7]), ("hundred_py3_p5", Cifar::Hundred, vec![99, 0])] {
            let bytes = std::fs::read(seeds.join(file)).unwrap();
            let set = parse_cifar_pickle(&bytes[1..], kind, Path::new(file)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((set.labels, &set.pixels), (labels, &want), "{file}");
        }
    }

    #[test]
    fn the_python2_file_has_the_real_opcode_structure() {
        let bytes = cifar_batch(&[image(1)], &[5], "labels", Layout::Python2);
        // Protocol 2, numpy 1.x's reconstructor, strings as SHORT_BINSTRING, pixels as BINSTRING.
        assert_eq!(&bytes[..2], &[0x80, 2]);
        let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"cnumpy.core.multiarray\n_reconstruct\n"));
        assert!(has(b"U\x04data"));
        assert!(has(&[b'T', 0x00, 0x0c, 0, 0]), "3072-byte BINSTRING");
        assert!(!has(b"X\x04\x00\x00\x00data") && !has(b"_codecs"));
    }

    #[test]
    fn nesting_depth_follows_the_opcodes() {
        // The real layout nests: dict → data state tuple → shape tuple (the dtype's BUILD
        // state is a tuple inside the state tuple).
        let real = cifar_batch(&[image(1)], &[5], "labels", Layout::Python2);
        let d = nesting_depth(&real).unwrap();
        assert!((3..=5).contains(&d), "{d}");
        assert_eq!(nesting_depth(b"\x80\x02K\x05."), Some(0));
        // ((((x)))) by TUPLE1: five bytes, depth 4; by MARK … LIST; by EMPTY_LIST … APPEND.
        assert_eq!(nesting_depth(b"K\x01\x85\x85\x85\x85."), Some(4));
        assert_eq!(nesting_depth(b"(((lll."), Some(3));
        assert_eq!(nesting_depth(b"]]]aa."), Some(3));
        // A memoised deep value fetched again keeps its depth.
        assert_eq!(nesting_depth(b"]]aq\x000h\x00\x85."), Some(3));
        assert_eq!(nesting_depth(b"a."), None, "stack underflow: left to serde-pickle");
        let deep: Vec<u8> = [vec![b']'; 100], vec![b'a'; 99], vec![b'.']].concat();
        assert_eq!(nesting_depth(&deep), Some(MAX_DEPTH + 1), "stops once past the limit");
        let e = parse_cifar_pickle(&deep, Cifar::Ten, Path::new("deep")).unwrap_err().to_string();
        assert!(e.contains("deep") && e.contains("nested"), "{e}");
    }

    #[test]
    fn built_size_counts_every_copy_and_refuses_amplification() {
        // A real batch builds about its own size.
        let images: Vec<Vec<u8>> = (0..20).map(image).collect();
        let real = cifar_batch(&images, &[1; 20], "labels", Layout::Python2);
        let b = pickle_bounds(&real).unwrap();
        assert!(b.built >= (20 * PIXELS) as u64 && b.built < 2 * real.len() as u64 + 100 * VALUE_BYTES, "{b:?} for {}", real.len());
        assert!(parse_cifar_pickle(&real, Cifar::Ten, Path::new("real")).is_ok());

        // 28 × (DUP, APPEND) after an empty list: 70 bytes that would build 2^28 values.
        let dup: Vec<u8> = [vec![0x80, 2, b']'], [b'2', b'a'].repeat(28), vec![b'.']].concat();
        assert!(dup.len() < 70);
        let b = pickle_bounds(&dup).unwrap();
        assert!(b.built > max_built_bytes(dup.len()), "{b:?}");
        let e = parse_cifar_pickle(&dup, Cifar::Ten, Path::new("dup.pkl")).unwrap_err().to_string();
        assert!(e.contains("dup.pkl") && e.contains("once built"), "{e}");

        // A 1 MiB string memoised, then fetched (BINGET) 4,000 times into a list: 4 GiB built
        // from a 1 MiB file.
        let mut memo = vec![0x80, 2, b']', b'q', 0, b'('];
        memo.push(b'B');
        memo.extend((1u32 << 20).to_le_bytes());
        memo.extend(vec![7u8; 1 << 20]);
        memo.extend([b'q', 1]);
        for _ in 0..4000 {
            memo.extend([b'h', 1]);
        }
        memo.extend([b'e', b'.']);
        let b = pickle_bounds(&memo).unwrap();
        assert!(b.built > max_built_bytes(memo.len()), "{b:?}");
        let e = parse_cifar_pickle(&memo, Cifar::Ten, Path::new("memo.pkl")).unwrap_err().to_string();
        assert!(e.contains("memo.pkl") && e.contains("once built"), "{e}");
        // The same string fetched twice is within the bound.
        let few: Vec<u8> = [memo[..memo.len() - 2 - 2 * 4000].to_vec(), vec![b'h', 1, b'h', 1, b'e', b'.']].concat();
        assert!(pickle_bounds(&few).unwrap().built <= max_built_bytes(few.len()));
    }

    #[test]
    fn wrong_shapes_labels_and_truncation_are_named() {
        let images = vec![image(0), image(1)];
        let name = Path::new("cifar-10-python.tar.gz:cifar-10-batches-py/data_batch_2");
        let e = |bytes: &[u8], kind| parse_cifar_pickle(bytes, kind, name).unwrap_err().to_string();
        let good = cifar_batch(&images, &[1, 2], "labels", Layout::Python2);
        let msg = e(&good[..good.len() / 2], Cifar::Ten);
        assert!(msg.contains("data_batch_2") && msg.contains("not a readable CIFAR pickle"), "{msg}");
        let msg = e(&cifar_batch(&images, &[1, 10], "labels", Layout::Python2), Cifar::Ten);
        assert!(msg.contains("label 10") && msg.contains("data_batch_2"), "{msg}");
        // A negative label is shown as it is, not clamped to 0.
        let msg = e(&cifar_batch(&images, &[1, -1], "labels", Layout::Python2), Cifar::Ten);
        assert!(msg.contains("label -1 at record 1"), "{msg}");
        let msg = e(&cifar_batch(&images, &[1], "labels", Layout::Python2), Cifar::Ten);
        assert!(msg.contains("1 labels for 2 images"), "{msg}");
        let msg = e(&cifar_batch(&images, &[1, 2], "labels", Layout::Python2), Cifar::Hundred);
        assert!(msg.contains("no \"fine_labels\" entry"), "{msg}");
        let msg = e(&cifar_batch(&[image(0)[..3000].to_vec()], &[1], "labels", Layout::Python2), Cifar::Ten);
        assert!(msg.contains("shape") && msg.contains("3072"), "{msg}");
        let msg = e(b"\x80\x02K\x05.", Cifar::Ten);
        assert!(msg.contains("expected a pickled dictionary"), "{msg}");
    }
}
