//! Weights in and out in PyTorch's formats, through burn-store: `rbl export` writes a network
//! as safetensors under the state-dict names of the equivalent PyTorch modules
//! ([`crate::model::torch_names`]); `model.init_weights` starts a network from a `.safetensors`
//! or PyTorch `.pth` file (torchvision's `resnet50-*.pth`, or an rbl export).
//!
//! burn-store walks the module and converts the leaves (its PyTorch adapters: BatchNorm
//! `gamma`/`beta` ↔ `weight`/`bias`, Linear weights transposed); this module supplies the names.
//! The head's frame M and base B0 are constants in burn (not module parameters), so the export
//! adds them as `head.frame` / `head.b0` with the `safetensors` crate burn-store itself writes
//! with, and an import that finds them puts them back. RBL's `head.a` is always in the paper's
//! form, R = B0·exp(a − aᵀ) (what bench/torch_step.py's module computes): a run trained with the
//! released code's lower-triangle generator exports tril(A, −1), and importing into one converts.

use std::collections::HashMap;
use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore};
use burn::tensor::{Tensor, TensorData};

use crate::error::{RblError, Result};
use crate::model::backbone::BackboneKind;
use crate::model::torch_names::{network_to_torch, torch_to_network};
use crate::network::Network;

/// What an import did, by name in the file (or in rbl, for `missing`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    /// File tensors loaded into the network.
    pub loaded: Vec<String>,
    /// File tensors rbl has no place for (torchvision's `fc`, `num_batches_tracked`).
    pub unused: Vec<String>,
    /// Network tensors the file does not hold: they keep their fresh initialisation.
    pub missing: Vec<String>,
    /// The head constants (`head.frame`, `head.b0`) taken from the file.
    pub constants: Vec<String>,
    /// File tensors stored in another float width (f64, f16, bf16), with it: converted to f32.
    pub converted: Vec<String>,
}

impl ImportReport {
    /// One line for the console.
    pub fn summary(&self, path: &Path) -> String {
        let list = |v: &[String]| {
            let shown: Vec<&str> = v.iter().take(4).map(String::as_str).collect();
            if v.len() > 4 { format!("{} …", shown.join(", ")) } else { shown.join(", ") }
        };
        let mut s = format!("{}: loaded {} tensors", path.display(), self.loaded.len() + self.constants.len());
        if !self.unused.is_empty() {
            s += &format!("; skipped {} ({})", self.unused.len(), list(&self.unused));
        }
        if !self.missing.is_empty() {
            s += &format!("; {} not in the file, freshly initialised ({})", self.missing.len(), list(&self.missing));
        }
        if !self.converted.is_empty() {
            s += &format!("; {} converted to f32 ({})", self.converted.len(), list(&self.converted));
        }
        s
    }
}

fn store_error(path: &Path, e: impl std::fmt::Display) -> RblError {
    RblError::format(path, format!("weights: {e}"))
}

/// Writes `net` as a safetensors file at `path` under PyTorch names (atomically), with
/// `metadata` (e.g. the config) in its header. Returns the tensor names written.
pub fn export_safetensors(net: &Network, kind: BackboneKind, path: &Path, metadata: HashMap<String, String>) -> Result<Vec<String>> {
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    // The contrastive projection head is part of training, not of the classifier a user
    // deploys: it stays out of exports (and out of what an import expects).
    for t in net.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false).into_iter().filter(|t| !is_training_only(&t.name)) {
        let name = network_to_torch(kind, &t.name);
        let data = match (name.as_str(), net.head.rotation()) {
            // A in the paper's form, whichever generator trained it (see Rotation::full_form_generator).
            ("head.a", Some(r)) => crate::transfer::read(r.full_form_generator()),
            _ => crate::transfer::read_collected(t).map_err(|e| store_error(path, e))?,
        };
        named.push(f32_entry(name, data));
    }
    if let Some(frame) = net.head.frame() {
        named.push(f32_entry("head.frame".into(), crate::transfer::read(frame)));
    }
    if let Some(r) = net.head.rotation() {
        named.push(f32_entry("head.b0".into(), crate::transfer::read(r.base())));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let views = named
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                .map(|v| (n.clone(), v))
                .map_err(|e| store_error(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| store_error(path, e))?;
    crate::report::atomic::write_atomic(path, &bytes)?;
    Ok(named.into_iter().map(|(n, _, _)| n).collect())
}

/// Parts of the network only training uses (the contrastive projection head).
fn is_training_only(path: &str) -> bool {
    path.starts_with("projection.")
}

fn f32_entry(name: String, data: TensorData) -> (String, Vec<usize>, Vec<u8>) {
    let data = data.convert::<f32>();
    let shape = data.shape().to_vec();
    let bytes = data.as_slice::<f32>().expect("f32 after convert").iter().flat_map(|v| v.to_le_bytes()).collect();
    (name, shape, bytes)
}

/// A regex matching exactly `name`.
fn exact(name: &str) -> String {
    let mut s = String::from("^");
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('$');
    s
}

/// Loads the tensors of `path` (`.safetensors`, or `.pth` / `.pt` / `.bin` written by
/// `torch.save`) that have a place in `net`, converting PyTorch names and layouts.
///
/// Before any tensor's data is read, every tensor with a place in the network is checked
/// against it: its shape (so a file declaring a huge tensor under a used name, or a zip bomb
/// behind one, is refused before a byte is inflated) and its dtype (floats of other widths are
/// converted to f32, and the report says so; anything else is refused). Then each one read is
/// checked finite, and RBL's base `head.b0` orthogonal. Nothing is loaded until all pass.
pub fn import_weights(net: Network, kind: BackboneKind, path: &Path) -> Result<(Network, ImportReport)> {
    if !path.exists() {
        return Err(RblError::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "model.init_weights: no such file")));
    }
    // A FIFO or device is refused here, before either reader opens it.
    crate::files::open_regular(path)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => {
            safetensors_header_has_unique_names(path)?;
            import_from(net, kind, path, SafetensorsStore::from_file(path))
        }
        "pth" | "pt" | "bin" => import_from(net, kind, path, PytorchStore::from_file(path)),
        _ => Err(RblError::format(path, "model.init_weights: expected a .safetensors, .pth, .pt or .bin file")),
    }
}

/// Refuses a safetensors file whose header names a tensor twice: the format's reader keeps
/// the last, silently, and which one a PyTorch reader keeps is not specified.
fn safetensors_header_has_unique_names(path: &Path) -> Result<()> {
    use std::io::Read;
    let (mut file, len) = crate::files::open_regular(path)?;
    let mut size = [0u8; 8];
    if file.read_exact(&mut size).is_err() {
        return Err(store_error(path, "too short for a safetensors header"));
    }
    let n = u64::from_le_bytes(size);
    // The format caps its header at 100 MB.
    if n > 100_000_000 || n + 8 > len {
        return Err(store_error(path, format!("its header declares {n} bytes, in a file of {len}")));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| RblError::io(path, e))?;
    #[derive(serde::Deserialize)]
    struct Keys(#[serde(deserialize_with = "unique_keys")] ());
    fn unique_keys<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<(), D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    if !seen.insert(key.clone()) {
                        return Err(serde::de::Error::custom(format!("the header names {key:?} twice")));
                    }
                }
                Ok(())
            }
        }
        d.deserialize_map(V)
    }
    serde_json::from_slice::<Keys>(&header).map(|_| ()).map_err(|e| store_error(path, e))
}

/// One tensor of the file that has a place in the network, as read and converted.
struct Checked {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

fn import_from<S: ModuleStore>(mut net: Network, kind: BackboneKind, path: &Path, mut probe: S) -> Result<(Network, ImportReport)> {
    let tensors = probe.get_all_tensors().map_err(|e| store_error(path, e))?;
    let names: Vec<String> = tensors.keys().cloned().collect();
    // The network's tensors under PyTorch names and layouts, with the head's constants.
    let mut expected: HashMap<String, Vec<usize>> = net
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), false)
        .into_iter()
        .filter(|t| !is_training_only(&t.name))
        .map(|t| (network_to_torch(kind, &t.name), t.shape.to_vec()))
        .collect();
    if let Some(frame) = net.head.frame() {
        expected.insert("head.frame".into(), frame.dims().to_vec());
    }
    if let Some(r) = net.head.rotation() {
        expected.insert("head.b0".into(), r.base().dims().to_vec());
    }
    let used: Vec<&String> =
        names.iter().filter(|n| expected.contains_key(*n) && (torch_to_network(kind, n).is_some() || n.starts_with("head."))).collect();
    if !names.iter().any(|n| torch_to_network(kind, n).is_some()) {
        return Err(RblError::format(
            path,
            format!(
                "none of its {} tensors is a {kind} weight under PyTorch names (first: {})",
                names.len(),
                names.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    // Shapes and dtypes first, from the file's index alone: no tensor data is read yet.
    let mut misfits = Vec::new();
    let mut converted = Vec::new();
    for name in &used {
        let t = &tensors[*name];
        let (have, want) = (t.shape.to_vec(), &expected[*name]);
        if &have != want {
            misfits.push(format!("{name} is {have:?} in the file, {want:?} in this network"));
        } else if !t.dtype.is_float() {
            misfits.push(format!("{name} holds {:?} values, not floating point", t.dtype));
        } else if t.dtype != burn::tensor::DType::F32 {
            converted.push(format!("{name} ({:?})", t.dtype));
        }
    }
    if !misfits.is_empty() {
        let more = if misfits.len() > 4 { format!("; and {} more", misfits.len() - 4) } else { String::new() };
        return Err(RblError::format(
            path,
            format!(
                "{} tensors do not fit this network ({kind}, model.widths / feature_dim / head as configured): {}{more}",
                misfits.len(),
                misfits.iter().take(4).cloned().collect::<Vec<_>>().join("; ")
            ),
        ));
    }
    // Now the data, each tensor converted to f32 and checked finite.
    let mut checked = Vec::with_capacity(used.len());
    for name in &used {
        let data = burn::store::bridge::to_data(&tensors[*name]).map_err(|e| store_error(path, format!("{name}: {e}")))?;
        let shape = data.shape().to_vec();
        let data = data.convert::<f32>();
        let values = data.try_to_vec::<f32>().map_err(|e| store_error(path, format!("{name}: {e:?}")))?;
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(RblError::format(
                path,
                format!("{name} holds {bad} values that are NaN or infinite (of {}): refusing to train from it", values.len()),
            ));
        }
        checked.push(Checked { name: (*name).clone(), shape, values });
    }
    if let Some(b0) = checked.iter_mut().find(|c| c.name == "head.b0") {
        // A half-width file rounds B0 to 8 or 11 bits: within its rounding it is taken and
        // made orthonormal again; anything further off is not a rotation's base.
        let half = converted.iter().any(|c| c.starts_with("head.b0 ") && !c.contains("F64"));
        let tolerance = if half { MAX_B0_ERROR_HALF } else { MAX_B0_ERROR };
        let (rows, cols) = (b0.shape[0], b0.shape[1]);
        let error = orthogonality_error(&b0.values, rows, cols);
        if error > tolerance {
            return Err(RblError::format(
                path,
                format!("head.b0 is not orthogonal: ‖B0ᵀB0 − I‖ = {error:.3e}, more than {tolerance:e} (a rotation's base must be)"),
            ));
        }
        if half {
            let m = crate::head::host_linalg::Mat { rows, cols, data: b0.values.iter().map(|&v| v as f64).collect() };
            b0.values = crate::head::host_linalg::orthonormal_columns(&m).to_f32();
        }
    }
    // The checked tensors, as an f32 safetensors image in memory, go through burn-store.
    let bytes: Vec<Vec<u8>> = checked.iter().map(|c| le_bytes(&c.values)).collect();
    let views = checked
        .iter()
        .zip(&bytes)
        .map(|(c, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, c.shape.clone(), bytes)
                .map(|v| (c.name.clone(), v))
                .map_err(|e| store_error(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let image = safetensors::serialize(views, None).map_err(|e| store_error(path, e))?;
    let pairs: Vec<(String, String)> =
        checked.iter().filter_map(|c| torch_to_network(kind, &c.name).map(|p| (exact(&c.name), p))).collect();
    let remapper = KeyRemapper::from_patterns(pairs).map_err(|e| store_error(path, e))?;
    let mut store = SafetensorsStore::from_bytes(Some(image))
        .with_from_adapter(PyTorchToBurnAdapter)
        .remap(remapper)
        .allow_partial(true)
        .validate(true)
        .map_indices_contiguous(false);
    let result = net.load_from(&mut store).map_err(|e| store_error(path, e))?;
    if !result.errors.is_empty() {
        let first: Vec<String> = result.errors.iter().take(3).map(|e| e.to_string()).collect();
        return Err(RblError::format(path, format!("{} tensors do not fit the network: {}", result.errors.len(), first.join("; "))));
    }
    let mut unused: Vec<String> = names.iter().filter(|n| !used.contains(n)).cloned().collect();
    unused.extend(result.unused.iter().filter(|n| !matches!(n.as_str(), "head.frame" | "head.b0")).cloned());
    unused.sort();
    unused.dedup();
    let mut report = ImportReport {
        loaded: result.applied.clone(),
        unused,
        // Named as the export names them (PyTorch's), not by rbl's module paths.
        missing: result.missing.iter().map(|(p, _)| export_name(kind, p)).collect(),
        constants: Vec::new(),
        converted,
    };
    // The head's constants, when the file brings them and the head has them.
    let device = net.head.class_directions().device();
    let mut constant = |name: &str| -> Option<Tensor<2>> {
        let c = checked.iter().find(|c| c.name == name)?;
        report.constants.push(name.into());
        Some(crate::transfer::upload(TensorData::new(c.values.clone(), c.shape.clone()), &device))
    };
    let frame = if net.head.frame().is_some() { constant("head.frame") } else { None };
    let base = if net.head.rotation().is_some() { constant("head.b0") } else { None };
    net.head = net.head.with_constants(frame, base).from_full_form();
    Ok((net, report))
}

/// The name `rbl export` gives the network tensor at module path `path`: PyTorch's (BatchNorm's
/// `gamma` / `beta` are `weight` / `bias` there).
fn export_name(kind: BackboneKind, path: &str) -> String {
    let name = network_to_torch(kind, path);
    match name.rsplit_once('.') {
        Some((module, "gamma")) => format!("{module}.weight"),
        Some((module, "beta")) => format!("{module}.bias"),
        _ => name,
    }
}

/// Largest ‖B0ᵀB0 − I‖ (max entry) accepted for an imported base: an exported f32 base is
/// orthogonal to ~1e-6; a base off by 1e-3 would no longer keep the frame's geometry.
const MAX_B0_ERROR: f64 = 1e-3;

/// The same for a base stored in f16 or bf16 (bf16's 8-bit mantissa leaves ~1e-2), which is
/// then made orthonormal again (Gram–Schmidt in f64).
const MAX_B0_ERROR_HALF: f64 = 5e-2;

/// max |(BᵀB − I)ᵢⱼ| of a `rows` × `cols` row-major matrix, in f64.
fn orthogonality_error(b: &[f32], rows: usize, cols: usize) -> f64 {
    let mut worst = 0f64;
    for i in 0..cols {
        for j in 0..cols {
            let dot: f64 = (0..rows).map(|k| b[k * cols + i] as f64 * b[k * cols + j] as f64).sum();
            worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    worst
}

/// The little-endian bytes of f32 values (safetensors' layout).
fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExperimentConfig;
    use crate::head::HeadKind;
    use burn::module::{Module, Param};
    use burn::tensor::{Device, Distribution};

    fn network(seed: u64, head: HeadKind) -> Network {
        let mut cfg = ExperimentConfig { seed, ..ExperimentConfig::default() };
        cfg.model.head = head;
        cfg.model.widths = [4, 4, 8];
        cfg.model.feature_dim = 16;
        let device = Device::flex();
        device.seed(seed);
        let net = Network::from_config(&cfg, 1, 10, &device).unwrap();
        // burn initialises lazily: one forward pass draws every parameter.
        let _ = net.forward(Tensor::<4>::ones([1, 1, 8, 8], &device));
        net
    }

    /// Every float of every module tensor moved off its fresh value (BatchNorm statistics
    /// and RBL's A included, which start at 0 / 1).
    fn perturbed(net: Network) -> Network {
        struct Shake;
        impl burn::module::ModuleMapper for Shake {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let (id, t, mapper) = param.consume();
                let noise = Tensor::random(t.shape(), Distribution::Normal(0.0, 0.1), &t.device());
                Param::from_mapped_value(id, t + noise, mapper)
            }
        }
        net.map(&mut Shake)
    }

    #[test]
    fn export_then_import_gives_the_same_predictions() {
        for head in [HeadKind::Rbl, HeadKind::Linear, HeadKind::Etf] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.safetensors");
            let a = perturbed(network(1, head));
            let names = export_safetensors(&a, BackboneKind::Resnet32, &path, HashMap::new()).unwrap();
            assert!(names.contains(&"backbone.layers.14.bn2.running_var".to_string()), "{names:?}");
            assert!(names.contains(&"backbone.proj.weight".to_string()));
            // A network from another seed (another frame, base and weights) takes all of it.
            let (b, report) = import_weights(network(2, head), BackboneKind::Resnet32, &path).unwrap();
            assert!(report.missing.is_empty() && report.unused.is_empty(), "{report:?}");
            assert_eq!(report.loaded.len() + report.constants.len(), names.len());
            let x = Tensor::<4>::random([3, 1, 8, 8], Distribution::Normal(0.0, 1.0), &Device::flex());
            let (ya, yb) = (a.valid().forward(x.clone()).into_data(), b.valid().forward(x).into_data());
            assert_eq!(ya.as_slice::<f32>().unwrap(), yb.as_slice::<f32>().unwrap(), "{head:?}: bitwise the same logits");
        }
    }

    #[test]
    fn the_file_holds_pytorch_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let net = perturbed(network(1, HeadKind::Linear));
        export_safetensors(&net, BackboneKind::Resnet32, &path, HashMap::from([("rbl.head".into(), "linear".into())])).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        // Linear(8 → 16) is [out, in] = [16, 8] in PyTorch; the head's Linear(16 → 10) is [10, 16].
        assert_eq!(file.tensor("backbone.proj.weight").unwrap().shape(), &[16, 8]);
        assert_eq!(file.tensor("head.linear.weight").unwrap().shape(), &[10, 16]);
        // BatchNorm's gamma / beta are weight / bias; convolutions stay [out, in, k, k].
        assert_eq!(file.tensor("backbone.bn.weight").unwrap().shape(), &[4]);
        assert!(file.tensor("backbone.bn.gamma").is_err());
        assert_eq!(file.tensor("backbone.conv.weight").unwrap().shape(), &[4, 1, 3, 3]);
        // The values: the head weight transposed, element by element.
        let w = net.head.linear_weight().unwrap().into_data();
        let w = w.as_slice::<f32>().unwrap();
        let t = file.tensor("head.linear.weight").unwrap();
        let got: Vec<f32> = t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        for o in 0..10 {
            for i in 0..16 {
                assert_eq!(got[o * 16 + i], w[i * 10 + o]);
            }
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["rbl.head"], "linear");
    }

    #[test]
    fn missing_tensors_are_named_as_the_export_names_them() {
        assert_eq!(export_name(BackboneKind::Resnet32, "backbone.blocks.0.bn1.gamma"), "backbone.layers.0.bn1.weight");
        assert_eq!(export_name(BackboneKind::Resnet32, "backbone.stem_bn.beta"), "backbone.bn.bias");
        assert_eq!(export_name(BackboneKind::Resnet50, "backbone.blocks.3.shortcut.0.weight"), "backbone.layer2.0.downsample.0.weight");
        assert_eq!(export_name(BackboneKind::Resnet32, "head.rotation.a"), "head.a");
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let net = network(1, HeadKind::Rbl);
        let e = import_weights(net, BackboneKind::Resnet32, &dir.path().join("none.pth")).err().unwrap().to_string();
        assert!(e.contains("none.pth") && e.contains("no such file"), "{e}");
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"not a safetensors file").unwrap();
        let e = import_weights(network(1, HeadKind::Rbl), BackboneKind::Resnet32, &junk).err().unwrap().to_string();
        assert!(e.contains("junk.safetensors"), "{e}");
        // A ResNet-50 file offered to a ResNet-32: nothing fits.
        let other = dir.path().join("other.safetensors");
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4]).unwrap();
        std::fs::write(&other, safetensors::serialize([("layer1.0.conv1.weight", view)], None).unwrap()).unwrap();
        let e = import_weights(network(1, HeadKind::Rbl), BackboneKind::Resnet32, &other).err().unwrap().to_string();
        assert!(e.contains("none of its 1 tensors"), "{e}");
        // A tensor of the wrong shape is refused, naming it.
        let a = dir.path().join("a.safetensors");
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &[0u8; 16]).unwrap();
        std::fs::write(&a, safetensors::serialize([("backbone.conv.weight", view)], None).unwrap()).unwrap();
        let e = import_weights(network(1, HeadKind::Rbl), BackboneKind::Resnet32, &a).err().unwrap().to_string();
        assert!(e.contains("a.safetensors") && e.contains("backbone.conv.weight is [2, 2] in the file, [4, 1, 3, 3]"), "{e}");
        assert!(!e.contains("stem"), "names are the file's, not rbl's internal ones: {e}");
    }

    /// Rewrites the safetensors file at `path` with `edit` applied to each (name, values).
    fn rewrite(path: &Path, dtype: safetensors::Dtype, edit: impl Fn(&str, &mut Vec<f32>)) {
        let bytes = std::fs::read(path).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, view) in file.tensors() {
            let mut v: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            edit(&name, &mut v);
            let raw = match dtype {
                safetensors::Dtype::F64 => v.iter().flat_map(|x| (*x as f64).to_le_bytes()).collect(),
                // bf16: the upper half of the f32 (these values are exact in bf16 only where
                // their low bits are zero; the test compares through the same truncation).
                safetensors::Dtype::BF16 => v.iter().flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect(),
                _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            };
            named.push((name, view.shape().to_vec(), raw));
        }
        let views: Vec<_> = named
            .iter()
            .map(|(n, shape, raw)| (n.clone(), safetensors::tensor::TensorView::new(dtype, shape.clone(), raw).unwrap()))
            .collect();
        std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
    }

    /// Issue #36 rows 9–11: f64 and bf16 files are converted (and said so), not a panic in the
    /// first convolution; a NaN weight or running statistic, and a base that is not
    /// orthogonal, are refused naming the tensor.
    #[test]
    fn other_float_widths_convert_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let a = perturbed(network(1, HeadKind::Rbl));
        export_safetensors(&a, BackboneKind::Resnet32, &path, HashMap::new()).unwrap();
        let x = Tensor::<4>::random([2, 1, 8, 8], Distribution::Normal(0.0, 1.0), &Device::flex());
        let want = a.valid().forward(x.clone()).into_data();

        rewrite(&path, safetensors::Dtype::F64, |_, _| {});
        let (b, report) = import_weights(network(2, HeadKind::Rbl), BackboneKind::Resnet32, &path).unwrap();
        assert!(report.converted.iter().any(|c| c.contains("backbone.conv.weight (F64)")), "{report:?}");
        assert!(report.summary(&path).contains("converted to f32"));
        assert_eq!(b.valid().forward(x.clone()).into_data(), want, "f64 holds every f32 exactly");

        export_safetensors(&a, BackboneKind::Resnet32, &path, HashMap::new()).unwrap();
        rewrite(&path, safetensors::Dtype::BF16, |_, _| {});
        let (b, report) = import_weights(network(2, HeadKind::Rbl), BackboneKind::Resnet32, &path).unwrap();
        assert!(!report.converted.is_empty());
        let y = b.valid().forward(x).into_data();
        assert!(y.as_slice::<f32>().unwrap().iter().all(|v| v.is_finite()), "a bf16 file trains and predicts");
        let base = b.head.rotation().unwrap().base().into_data().try_to_vec::<f32>().unwrap();
        assert!(orthogonality_error(&base, 16, 16) < 1e-5, "the bf16-rounded base is orthonormal again");

        for (tensor, value) in [("backbone.conv.weight", f32::NAN), ("backbone.layers.3.bn1.running_var", f32::INFINITY)] {
            export_safetensors(&a, BackboneKind::Resnet32, &path, HashMap::new()).unwrap();
            rewrite(&path, safetensors::Dtype::F32, |n, v| {
                if n == tensor {
                    v[0] = value;
                }
            });
            let e = import_weights(network(2, HeadKind::Rbl), BackboneKind::Resnet32, &path).err().unwrap().to_string();
            assert!(e.contains(tensor) && e.contains("NaN or infinite"), "{e}");
        }
        export_safetensors(&a, BackboneKind::Resnet32, &path, HashMap::new()).unwrap();
        rewrite(&path, safetensors::Dtype::F32, |n, v| {
            if n == "head.b0" {
                v.iter_mut().for_each(|x| *x = 0.0);
            }
        });
        let e = import_weights(network(2, HeadKind::Rbl), BackboneKind::Resnet32, &path).err().unwrap().to_string();
        assert!(e.contains("head.b0 is not orthogonal"), "{e}");
    }

    /// A minimal `torch.save` zip: `name/data.pkl` (stored) and `name/data/0`, whose local
    /// header declares `declared` bytes deflated but holds `stored` (not valid deflate data:
    /// inflating it would fail, so an error about anything else shows it was never inflated).
    fn torch_zip(data_pkl: &[u8], declared: u32, stored: &[u8]) -> Vec<u8> {
        let entries: [(&str, u16, &[u8], u32, u32); 2] =
            [("bomb/data.pkl", 0, data_pkl, data_pkl.len() as u32, crc32fast::hash(data_pkl)), ("bomb/data/0", 8, stored, declared, 0)];
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, method, bytes, size, crc) in entries {
            let offset = out.len() as u32;
            let head = |sig: u32, central_entry: bool| {
                let mut h = sig.to_le_bytes().to_vec();
                if central_entry {
                    h.extend(20u16.to_le_bytes());
                }
                h.extend(20u16.to_le_bytes());
                h.extend(0u16.to_le_bytes());
                h.extend(method.to_le_bytes());
                h.extend([0u8; 4]);
                h.extend(crc.to_le_bytes());
                h.extend((bytes.len() as u32).to_le_bytes());
                h.extend(size.to_le_bytes());
                h.extend((name.len() as u16).to_le_bytes());
                h.extend(0u16.to_le_bytes());
                if central_entry {
                    // Comment length, first disk, internal and external attributes.
                    h.extend([0u8; 10]);
                    h.extend(offset.to_le_bytes());
                }
                h.extend(name.as_bytes());
                h
            };
            out.extend(head(0x04034b50, false));
            out.extend_from_slice(bytes);
            central.extend(head(0x02014b50, true));
        }
        let at = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend(0x06054b50u32.to_le_bytes());
        out.extend([0u8; 4]);
        out.extend(2u16.to_le_bytes());
        out.extend(2u16.to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(at.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    /// Issue #36 row 8: a `.pth` whose used tensor declares 1.6 GB behind a small deflated
    /// entry is refused from its declared shape, before the entry is inflated.
    #[test]
    fn a_pth_bomb_under_a_used_name_is_refused_before_inflating() {
        // {"backbone.conv.weight": tensor of shape (44444444, 1, 3, 3)}: 1.6 GB of f32.
        let rows: i32 = 44_444_444;
        let mut pkl = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x14\x00\x00\x00backbone.conv.weightq\x02".to_vec();
        pkl.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\nq\x03((X\x07\x00\x00\x00storageq\x04ctorch\nFloatStorage\nq\x05");
        pkl.extend_from_slice(b"X\x01\x00\x00\x000q\x06X\x03\x00\x00\x00cpuq\x07J");
        pkl.extend_from_slice(&(rows * 9).to_le_bytes());
        pkl.extend_from_slice(b"tq\x08QK\x00(J");
        pkl.extend_from_slice(&rows.to_le_bytes());
        pkl.extend_from_slice(b"K\x01K\x03K\x03tq\t(K\tK\tK\x03K\x01tq\n\x89h\x00)Rq\x0btq\x0cRq\ru.");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.pth");
        std::fs::write(&path, torch_zip(&pkl, (rows as u32) * 36, &[0xFF; 1024])).unwrap();
        let e = import_weights(network(1, HeadKind::Rbl), BackboneKind::Resnet32, &path).err().unwrap().to_string();
        assert!(e.contains("bomb.pth") && e.contains("backbone.conv.weight is [44444444, 1, 3, 3] in the file, [4, 1, 3, 3]"), "{e}");
    }

    /// A safetensors header naming a tensor twice is refused (its reader keeps the last).
    #[test]
    fn a_tensor_named_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("twice.safetensors");
        let header = br#"{"backbone.conv.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"backbone.conv.weight":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 8]);
        std::fs::write(&path, bytes).unwrap();
        let e = import_weights(network(1, HeadKind::Rbl), BackboneKind::Resnet32, &path).err().unwrap().to_string();
        assert!(e.contains("twice.safetensors") && e.contains("twice"), "{e}");
    }
}
