//! Every copy between the host and a tensor's device, counted.
//!
//! On a GPU the two directions cost differently. An upload (host → device: a batch, its
//! labels, a constant the loss needs) is queued behind the kernels before it and the host
//! goes on. A read (device → host) makes the host wait until the device has finished every
//! kernel queued before it: one read per training step would leave the GPU idle while the
//! host prepares the next step. cubecl counts kernel launches (`train::kernel_count`) but has
//! no hook for transfers, so rbl routes its own through [`upload`] and [`read`] and counts them
//! here: `rbl-bench` reports them per training step, `tests/gpu.rs` holds a step to no read but
//! the log's every 32 steps, and this module's tests scan the sources so that no tensor is
//! read or uploaded past the count.
//!
//! On the CPU (flex) the "device" is host memory and a transfer is a copy; the counts are the
//! same calls, so they can be checked on any machine.

use std::sync::atomic::{AtomicU64, Ordering};

use burn::store::burn_pack::{Error as PackError, Tensor as PackTensor};
use burn::tensor::kind::Basic;
use burn::tensor::{Device, Tensor, TensorData};

static UPLOADS: AtomicU64 = AtomicU64::new(0);
static UPLOAD_BYTES: AtomicU64 = AtomicU64::new(0);
static READS: AtomicU64 = AtomicU64::new(0);
static READ_BYTES: AtomicU64 = AtomicU64::new(0);

/// Transfers since the process started (or between two [`totals`], subtracted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transfers {
    /// Host → device copies.
    pub uploads: u64,
    /// Bytes they carried.
    pub upload_bytes: u64,
    /// Device → host copies: each one a wait for the device to catch up.
    pub reads: u64,
    /// Bytes they carried.
    pub read_bytes: u64,
}

impl std::ops::Sub for Transfers {
    type Output = Transfers;

    fn sub(self, earlier: Transfers) -> Transfers {
        Transfers {
            uploads: self.uploads - earlier.uploads,
            upload_bytes: self.upload_bytes - earlier.upload_bytes,
            reads: self.reads - earlier.reads,
            read_bytes: self.read_bytes - earlier.read_bytes,
        }
    }
}

/// The transfers of this process so far (all threads).
pub fn totals() -> Transfers {
    Transfers {
        uploads: UPLOADS.load(Ordering::Relaxed),
        upload_bytes: UPLOAD_BYTES.load(Ordering::Relaxed),
        reads: READS.load(Ordering::Relaxed),
        read_bytes: READ_BYTES.load(Ordering::Relaxed),
    }
}

fn count(calls: &AtomicU64, bytes: &AtomicU64, n: usize) {
    calls.fetch_add(1, Ordering::Relaxed);
    bytes.fetch_add(n as u64, Ordering::Relaxed);
}

/// `data` as a tensor on `device` (one upload).
pub fn upload<const D: usize, K: Basic>(data: TensorData, device: &Device) -> Tensor<D, K> {
    count(&UPLOADS, &UPLOAD_BYTES, data.as_bytes().len());
    Tensor::from_data(data, device)
}

/// `values` shaped `shape`, as a tensor on `device` (one upload).
pub fn upload_vec<const D: usize, K: Basic, E: burn::tensor::Element>(values: Vec<E>, shape: [usize; D], device: &Device) -> Tensor<D, K> {
    upload(TensorData::new(values, shape), device)
}

/// `t`'s values on the host (one read: the host waits for the device).
pub fn read<const D: usize, K: Basic>(t: Tensor<D, K>) -> TensorData {
    let data = t.into_data();
    count(&READS, &READ_BYTES, data.as_bytes().len());
    data
}

/// `t`'s f32 values on the host (one read).
pub fn read_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    read(t).try_into_vec_as::<f32>().expect("a float tensor converts to f32")
}

/// A one-element tensor's value on the host (one read).
pub fn read_scalar(t: Tensor<1>) -> f32 {
    read_f32(t)[0]
}

/// A collected module tensor's values (`Module::collect`: export, BatchNorm statistics), in
/// its own dtype (one read).
pub fn read_collected(t: PackTensor) -> Result<TensorData, PackError> {
    let data = burn::store::bridge::into_data(t)?;
    count(&READS, &READ_BYTES, data.as_bytes().len());
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Int;

    /// The counts are the bytes that crossed: a [2, 3] f32 upload is 24 bytes, an i64 label
    /// vector of 4 is 32, and a read of the sum is 4. (Other tests run in parallel and count
    /// too, so the check is on this thread's own calls: taken as lower bounds of the deltas
    /// and exact in the byte arithmetic of one call.)
    #[test]
    fn uploads_and_reads_are_counted_with_their_bytes() {
        let device = Device::flex();
        let before = totals();
        let x: Tensor<2> = upload_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &device);
        let y: Tensor<1, Int> = upload_vec(vec![0i64, 1, 2, 3], [4], &device);
        let mid = totals() - before;
        assert!(mid.uploads >= 2 && mid.upload_bytes >= 24 + 32, "{mid:?}");
        let sum = read_scalar(x.sum());
        assert_eq!(sum, 21.0);
        let after = totals() - before;
        assert!(after.reads >= 1 && after.read_bytes >= 4, "{after:?}");
        assert_eq!(read(y).try_into_vec_as::<i64>().unwrap(), vec![0, 1, 2, 3]);
    }

    /// Every tensor read or upload in rbl's sources goes through this module: a bare
    /// `into_data`, `into_scalar`, `to_data`, `from_data` or store bridge read outside it (test
    /// modules aside) would be a transfer nobody counts, and a host wait the GPU test cannot
    /// see. Scans src/ (binaries included); the tests' own modules, at the end of each file
    /// after `#[cfg(test)]`, are left out.
    #[test]
    fn no_tensor_crosses_outside_this_module() {
        const BARE: [&str; 9] = [
            ".into_data(",
            ".try_into_data(",
            ".into_data_as",
            ".into_scalar(",
            ".to_data(",
            "::from_data(",
            "bridge::into_data(",
            "::from_floats(",
            "::from_ints(",
        ];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![root.clone()];
        let mut found = Vec::new();
        let mut scanned = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("transfer.rs") {
                continue;
            }
            scanned += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate().take_while(|(_, l)| !l.starts_with("#[cfg(test)]")) {
                let code = line.split("//").next().unwrap_or("");
                if BARE.iter().any(|b| code.contains(b)) {
                    found.push(format!("{}:{}: {}", path.strip_prefix(&root).unwrap().display(), n + 1, line.trim()));
                }
            }
        }
        assert!(scanned > 50, "scanned only {scanned} files under {}", root.display());
        assert!(found.is_empty(), "tensor transfers outside rbl::transfer (route them through it):\n{}", found.join("\n"));
    }
}
