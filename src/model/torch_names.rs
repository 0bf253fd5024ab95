//! rbl's module paths ↔ the state-dict names of the equivalent PyTorch modules, so weights go
//! to PyTorch and come back (`rbl export`, `model.init_weights`).
//!
//! Backbone names, relative to the backbone:
//!
//! | rbl | ResNet-32 (bench/torch_step.py) | ResNet-50 / ResNeXt-50 (torchvision) |
//! |---|---|---|
//! | `stem`, `stem_bn` | `conv`, `bn` | `conv1`, `bn1` |
//! | `blocks.{i}.conv1` … | `layers.{i}.conv1` … | `layer{s}.{j}.conv1` … (stage s, block j) |
//! | `blocks.{i}.shortcut.0` / `.1` | – (option A has no weights) | `layer{s}.{j}.downsample.0` / `.1` |
//! | `projection` | `proj` | `projection` (rbl's own; torchvision has `fc` instead) |
//!
//! The whole network, as one exported file: `backbone.<name>`, `feature_norm.*`,
//! `head.linear.*`, `head.a` (RBL's generator A), `head.frame` (M, d × C), `head.b0` (B0). The leaf
//! names (BatchNorm `weight`/`bias` for burn's `gamma`/`beta`, Linear weights transposed) are
//! burn-store's PyTorch adapters' business, not this module's.

use crate::model::backbone::BackboneKind;

/// Blocks per stage of torchvision's ResNet-50 and ResNeXt-50.
const IMAGENET_STAGES: [usize; 4] = [3, 4, 6, 3];

/// Splits `path` into its module part and leaf (`a.b.weight` → (`a.b`, `weight`)).
fn split_leaf(path: &str) -> (&str, &str) {
    path.rsplit_once('.').unwrap_or(("", path))
}

/// The PyTorch name of a backbone-relative rbl path (leaf kept).
pub fn backbone_to_torch(kind: BackboneKind, path: &str) -> String {
    let mut parts: Vec<String> = path.split('.').map(str::to_string).collect();
    let imagenet = kind != BackboneKind::Resnet32;
    match parts[0].as_str() {
        "stem" => parts[0] = if imagenet { "conv1" } else { "conv" }.into(),
        "stem_bn" => parts[0] = if imagenet { "bn1" } else { "bn" }.into(),
        "projection" if !imagenet => parts[0] = "proj".into(),
        "blocks" if parts.len() > 2 => {
            let i: usize = parts[1].parse().unwrap_or(usize::MAX);
            if imagenet {
                if let Some((s, j)) = stage_of(i) {
                    parts.splice(0..2, [format!("layer{}", s + 1), j.to_string()]);
                    if parts.get(2).map(String::as_str) == Some("shortcut") {
                        parts[2] = "downsample".into();
                    }
                }
            } else {
                parts[0] = "layers".into();
            }
        }
        _ => {}
    }
    parts.join(".")
}

/// The rbl path of a backbone-relative PyTorch name, or `None` for names rbl has no module
/// for (torchvision's `fc`, `num_batches_tracked`).
pub fn torch_to_backbone(kind: BackboneKind, name: &str) -> Option<String> {
    let (_, leaf) = split_leaf(name);
    if leaf == "num_batches_tracked" {
        return None;
    }
    let mut parts: Vec<String> = name.split('.').map(str::to_string).collect();
    let imagenet = kind != BackboneKind::Resnet32;
    match (parts[0].as_str(), imagenet) {
        ("conv1", true) | ("conv", false) => parts[0] = "stem".into(),
        ("bn1", true) | ("bn", false) => parts[0] = "stem_bn".into(),
        ("proj", false) | ("projection", true) => parts[0] = "projection".into(),
        ("layers", false) if parts.len() > 2 => parts[0] = "blocks".into(),
        (layer, true) if layer.starts_with("layer") && parts.len() > 3 => {
            let s: usize = layer["layer".len()..].parse().ok().filter(|s| (1..=4).contains(s))?;
            let j: usize = parts[1].parse().ok().filter(|&j| j < IMAGENET_STAGES[s - 1])?;
            let i = IMAGENET_STAGES[..s - 1].iter().sum::<usize>() + j;
            parts.splice(0..2, ["blocks".to_string(), i.to_string()]);
            if parts[2] == "downsample" {
                parts[2] = "shortcut".into();
            }
        }
        _ => return None,
    }
    Some(parts.join("."))
}

/// Stage and position in it of ImageNet-ResNet block `i`.
fn stage_of(i: usize) -> Option<(usize, usize)> {
    let mut start = 0;
    for (s, &n) in IMAGENET_STAGES.iter().enumerate() {
        if i < start + n {
            return Some((s, i - start));
        }
        start += n;
    }
    None
}

/// The exported name of a network-level rbl path (`backbone.…`, `feature_norm.…`, `head.…`).
pub fn network_to_torch(kind: BackboneKind, path: &str) -> String {
    if let Some(rest) = path.strip_prefix("backbone.") {
        return format!("backbone.{}", backbone_to_torch(kind, rest));
    }
    if path == "head.rotation.a" {
        return "head.a".into();
    }
    path.into()
}

/// The network-level rbl path of an exported name. Names without the `backbone.` / `head.` /
/// `feature_norm.` prefix are taken as a bare backbone state dict (torchvision's
/// `resnet50-*.pth`). `None`: nothing in rbl takes it (the head's constants `head.frame` and
/// `head.b0` are read separately).
pub fn torch_to_network(kind: BackboneKind, name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("backbone.") {
        return torch_to_backbone(kind, rest).map(|p| format!("backbone.{p}"));
    }
    if name == "head.a" {
        return Some("head.rotation.a".into());
    }
    if name.starts_with("head.linear.") || name.starts_with("feature_norm.") {
        return Some(name.into());
    }
    if name.starts_with("head.") {
        return None;
    }
    torch_to_backbone(kind, name).map(|p| format!("backbone.{p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torchvision's resnet50 state-dict names, written out from its structure (not from the
    /// mapping under test): 320 entries, `fc` and 53 `num_batches_tracked` among them.
    fn torchvision_resnet50_names() -> Vec<String> {
        let bn = |p: &str| ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"].map(|l| format!("{p}.{l}"));
        let mut names = vec!["conv1.weight".to_string()];
        names.extend(bn("bn1"));
        for (s, &n) in [3usize, 4, 6, 3].iter().enumerate() {
            for j in 0..n {
                let b = format!("layer{}.{j}", s + 1);
                for k in 1..=3 {
                    names.push(format!("{b}.conv{k}.weight"));
                    names.extend(bn(&format!("{b}.bn{k}")));
                }
                if j == 0 {
                    names.push(format!("{b}.downsample.0.weight"));
                    names.extend(bn(&format!("{b}.downsample.1")));
                }
            }
        }
        names.extend(["fc.weight".to_string(), "fc.bias".to_string()]);
        names
    }

    #[test]
    fn torchvision_resnet50_names_map_to_every_block_and_back() {
        let names = torchvision_resnet50_names();
        assert_eq!(names.len(), 320);
        let mut mapped = 0;
        for n in &names {
            match torch_to_backbone(BackboneKind::Resnet50, n) {
                Some(p) => {
                    mapped += 1;
                    assert_eq!(backbone_to_torch(BackboneKind::Resnet50, &p), *n, "{p}");
                }
                None => assert!(n.starts_with("fc.") || n.ends_with("num_batches_tracked"), "{n} unmapped"),
            }
        }
        assert_eq!(mapped, 320 - 2 - 53);
        let at = |n: &str| torch_to_backbone(BackboneKind::Resnext50_32x4d, n).unwrap();
        assert_eq!(at("layer1.0.downsample.1.running_var"), "blocks.0.shortcut.1.running_var");
        assert_eq!(at("layer2.3.conv2.weight"), "blocks.6.conv2.weight");
        assert_eq!(at("layer3.0.bn1.weight"), "blocks.7.bn1.weight");
        assert_eq!(at("layer4.2.bn3.bias"), "blocks.15.bn3.bias");
        assert_eq!(at("bn1.weight"), "stem_bn.weight");
        assert_eq!(torch_to_backbone(BackboneKind::Resnet50, "layer4.3.conv1.weight"), None, "no fourth block in stage 4");
        assert_eq!(torch_to_backbone(BackboneKind::Resnet50, "layer5.0.conv1.weight"), None);
    }

    #[test]
    fn resnet32_and_head_names_follow_the_benchmark_module() {
        let k = BackboneKind::Resnet32;
        for (rbl, torch) in [
            ("backbone.stem.weight", "backbone.conv.weight"),
            ("backbone.stem_bn.running_mean", "backbone.bn.running_mean"),
            ("backbone.blocks.14.bn2.weight", "backbone.layers.14.bn2.weight"),
            ("backbone.projection.weight", "backbone.proj.weight"),
            ("head.rotation.a", "head.a"),
            ("head.linear.bias", "head.linear.bias"),
            ("feature_norm.running_var", "feature_norm.running_var"),
        ] {
            assert_eq!(network_to_torch(k, rbl), torch);
            assert_eq!(torch_to_network(k, torch).as_deref(), Some(rbl));
        }
        assert_eq!(torch_to_network(k, "head.frame"), None);
        assert_eq!(torch_to_network(k, "head.b0"), None);
        // A bare torchvision-style dict is the backbone.
        assert_eq!(torch_to_network(BackboneKind::Resnet50, "conv1.weight").as_deref(), Some("backbone.stem.weight"));
        assert_eq!(torch_to_network(BackboneKind::Resnet50, "fc.weight"), None);
    }
}
