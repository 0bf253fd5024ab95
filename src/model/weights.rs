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
    for t in net.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false) {
        let name = network_to_torch(kind, &t.name);
        let data = match (name.as_str(), net.head.rotation()) {
            // A in the paper's form, whichever generator trained it (see Rotation::full_form_generator).
            ("head.a", Some(r)) => r.full_form_generator().into_data(),
            _ => burn::store::bridge::into_data(t).map_err(|e| store_error(path, e))?,
        };
        named.push(f32_entry(name, data));
    }
    if let Some(frame) = net.head.frame() {
        named.push(f32_entry("head.frame".into(), frame.into_data()));
    }
    if let Some(r) = net.head.rotation() {
        named.push(f32_entry("head.b0".into(), r.base().into_data()));
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
pub fn import_weights(net: Network, kind: BackboneKind, path: &Path) -> Result<(Network, ImportReport)> {
    if !path.is_file() {
        return Err(RblError::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "model.init_weights: no such file")));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "safetensors" => import_from(net, kind, path, SafetensorsStore::from_file(path)),
        "pth" | "pt" | "bin" => import_from(net, kind, path, PytorchStore::from_file(path)),
        _ => Err(RblError::format(path, "model.init_weights: expected a .safetensors, .pth, .pt or .bin file")),
    }
}

/// The store-specific builder calls, shared by both formats.
trait TorchStore: ModuleStore + Sized {
    fn configure(self, remapper: KeyRemapper) -> Self;
}

impl TorchStore for SafetensorsStore {
    fn configure(self, remapper: KeyRemapper) -> Self {
        self.with_from_adapter(PyTorchToBurnAdapter).remap(remapper).allow_partial(true).validate(true).map_indices_contiguous(false)
    }
}

impl TorchStore for PytorchStore {
    /// (A PyTorch store always applies burn-store's PyTorch adapter.)
    fn configure(self, remapper: KeyRemapper) -> Self {
        self.remap(remapper).allow_partial(true).validate(true).map_indices_contiguous(false)
    }
}

fn import_from<S: TorchStore>(mut net: Network, kind: BackboneKind, path: &Path, mut probe: S) -> Result<(Network, ImportReport)> {
    let names: Vec<String> = probe.get_all_tensors().map_err(|e| store_error(path, e))?.keys().cloned().collect();
    let pairs: Vec<(String, String)> = names.iter().filter_map(|n| torch_to_network(kind, n).map(|p| (exact(n), p))).collect();
    if pairs.is_empty() {
        return Err(RblError::format(
            path,
            format!(
                "none of its {} tensors is a {kind} weight under PyTorch names (first: {})",
                names.len(),
                names.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let remapper = KeyRemapper::from_patterns(pairs).map_err(|e| store_error(path, e))?;
    let mut store = probe.configure(remapper);
    let result = net.load_from(&mut store).map_err(|e| store_error(path, e))?;
    if !result.errors.is_empty() {
        let first: Vec<String> = result.errors.iter().take(3).map(|e| e.to_string()).collect();
        return Err(RblError::format(path, format!("{} tensors do not fit the network: {}", result.errors.len(), first.join("; "))));
    }
    let mut report = ImportReport {
        loaded: result.applied.clone(),
        unused: result.unused.iter().filter(|n| !matches!(n.as_str(), "head.frame" | "head.b0")).cloned().collect(),
        missing: result.missing.iter().map(|(p, _)| p.clone()).collect(),
        constants: Vec::new(),
    };
    // The head's constants, when the file brings them and the head has them.
    let device = net.head.class_directions().device();
    let mut constant = |name: &str, want: Option<[usize; 2]>| -> Result<Option<Tensor<2>>> {
        let (Some(want), Some(t)) = (want, store.get_tensor(name).map_err(|e| store_error(path, e))?) else { return Ok(None) };
        let data = burn::store::bridge::to_data(t).map_err(|e| store_error(path, e))?.convert::<f32>();
        if data.shape().to_vec() != want.to_vec() {
            return Err(RblError::format(path, format!("{name} has shape {:?}, this network's is {want:?}", data.shape().to_vec())));
        }
        report.constants.push(name.into());
        Ok(Some(Tensor::from_data(data, &device)))
    };
    let frame = constant("head.frame", net.head.frame().map(|f| f.dims()))?;
    let base = constant("head.b0", net.head.rotation().map(|r| r.base().dims()))?;
    net.head = net.head.with_constants(frame, base).from_full_form();
    Ok((net, report))
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
        assert!(e.contains("a.safetensors") && e.contains("stem.weight") && e.contains("[4, 1, 3, 3]"), "{e}");
    }
}
