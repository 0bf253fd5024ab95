//! The classifier a run trains: backbone then head.

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Tensor};

use crate::config::{DeviceKind, ExperimentConfig};
use crate::contrastive::ContrastiveTraining;
use crate::contrastive::projection::Projection;
use crate::error::Result;
use crate::head::{Head, l2_normalize};
use crate::model::backbone::{Backbone, BackboneShape};

/// Backbone + head: images to logits.
#[derive(Module, Debug)]
pub struct Network {
    /// Feature extractor.
    pub backbone: Backbone,
    /// BatchNorm1d applied to the feature before L2 normalisation (the "Fixed" paper's
    /// feature; `model.feature_bn_l2`).
    pub feature_norm: Option<BatchNorm>,
    /// Classifier.
    pub head: Head,
    /// The contrastive methods' projection to the sphere (training only; `contrastive.method`).
    pub projection: Option<Projection>,
}

impl Network {
    /// Builds a freshly initialised network for `cfg` (the caller seeds the device).
    pub fn from_config(cfg: &ExperimentConfig, in_channels: usize, classes: usize, device: &Device) -> Result<Network> {
        let shape = BackboneShape {
            in_channels,
            widths: cfg.model.widths,
            feature_dim: cfg.model.feature_dim,
            precision: cfg.train.precision,
            projection_init: cfg.model.projection_init,
        };
        let (backbone, dim) = Backbone::build(cfg.model.backbone, shape, device)?;
        let head =
            Head::new(cfg.model.head, dim, classes, cfg.model.frame_seed.unwrap_or(cfg.seed), cfg.device == DeviceKind::Cpu, device)?
                .with_cosine(cfg.model.cosine)
                .with_generator(cfg.model.rotation_generator);
        let feature_norm = cfg.model.feature_bn_l2.then(|| BatchNormConfig::new(dim).init(device));
        let projection = ContrastiveTraining::projection_for(&cfg.contrastive, dim, classes, cfg.seed, device);
        Ok(Network { backbone, feature_norm, head, projection })
    }

    /// The network a run of `cfg` starts from on `device`, the same weights on every device.
    ///
    /// burn draws a parameter lazily, on its first use, from the generator of the device it
    /// lives on, and flex's generator and cubecl's differ: built on the GPU, a seed gave other
    /// starting weights than on the CPU. So the network is drawn on the CPU, seeded with
    /// `cfg.seed`, every parameter drawn at once in the order the first training step used to draw them
    /// in (the CPU's weights are unchanged, tested), then moved.
    pub fn seeded(cfg: &ExperimentConfig, in_channels: usize, classes: usize, device: &Device) -> Result<Network> {
        let on_host = rbl_ops::on_flex(device);
        let host = match (on_host, device.is_autodiff()) {
            (true, _) => device.clone(),
            (false, true) => Device::flex().autodiff(),
            (false, false) => Device::flex(),
        };
        host.seed(cfg.seed);
        let net = Network::from_config(cfg, in_channels, classes, &host)?;
        // The order the first training step used: features, projection, then head.
        net.backbone.visit(&mut DrawParameters);
        net.feature_norm.visit(&mut DrawParameters);
        net.projection.visit(&mut DrawParameters);
        net.head.visit(&mut DrawParameters);
        // `fork`: on the device, each trainable parameter is a leaf of its graph again.
        Ok(if on_host { net } else { net.fork(device) })
    }

    /// The eval-mode network with the backbone's BatchNorms folded into their convolutions:
    /// what evaluation runs (one op fewer per layer; the same predictions, tested).
    pub fn fold_batch_norms(&self) -> Network {
        Network {
            backbone: self.backbone.fold_batch_norms(),
            feature_norm: self.feature_norm.clone(),
            head: self.head.clone(),
            projection: self.projection.clone(),
        }
    }

    /// Images `[B, C, H, W]` to logits `[B, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.features(images))
    }

    /// Images to the features the head sees `[B, d]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let f = self.backbone.forward(images);
        match &self.feature_norm {
            Some(bn) => l2_normalize(rbl_ops::batch_norm(bn, f), 1),
            None => f,
        }
    }
}

/// Draws every parameter not drawn yet, in module order (reading a lazy parameter draws it).
struct DrawParameters;

impl burn::module::ModuleVisitor for DrawParameters {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        let _ = param.val();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::HeadKind;
    use crate::head::host_linalg::Mat;
    use crate::model::backbone::BackboneKind;
    use burn::tensor::Tolerance;

    /// A small network and its features of a fixed input, computed at once: burn initialises
    /// parameters lazily from the seeded global generator, on first use.
    fn build(head: HeadKind, frame_seed: Option<u64>) -> (Network, Tensor<2>) {
        let mut cfg = ExperimentConfig::default();
        cfg.model.head = head;
        cfg.model.widths = [4, 4, 8];
        cfg.model.feature_dim = 16;
        cfg.model.frame_seed = frame_seed;
        let device = Device::flex();
        device.seed(cfg.seed);
        let net = Network::from_config(&cfg, 1, 10, &device).unwrap();
        let features = net.features(Tensor::<4>::ones([2, 1, 8, 8], &device));
        (net, features)
    }

    #[test]
    fn frame_seed_moves_the_frame_and_nothing_else() {
        let _seeded = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let ((a, fa), (b, fb)) = (build(HeadKind::Etf, Some(1)), build(HeadKind::Etf, Some(2)));
        // Same backbone initialisation: identical features.
        fa.into_data().assert_approx_eq::<f32>(&fb.into_data(), Tolerance::absolute(0.0));
        let (da, db) = (Mat::from_tensor(a.head.class_directions()), Mat::from_tensor(b.head.class_directions()));
        assert!(da.add_scaled(&db, -1.0).frobenius() > 0.5, "different frame seeds give different directions");
        // Same Gram matrix: both are simplex ETFs, only pointing elsewhere.
        let (ga, gb) = (da.t().matmul(&da), db.t().matmul(&db));
        assert!(ga.add_scaled(&gb, -1.0).frobenius() < 1e-5);
        // Unset, the frame follows the run's seed (0 here).
        let default = Mat::from_tensor(build(HeadKind::Etf, None).0.head.class_directions());
        assert_eq!(default, Mat::from_tensor(build(HeadKind::Etf, Some(0)).0.head.class_directions()));
    }

    /// Every float parameter's bits, in module order.
    fn parameter_bits(net: &Network) -> Vec<Vec<u32>> {
        use burn::module::{ModuleVisitor, Param};
        struct Bits(Vec<Vec<u32>>);
        impl ModuleVisitor for Bits {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let v = param.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
                self.0.push(v.iter().map(|x| x.to_bits()).collect());
            }
        }
        let mut bits = Bits(Vec::new());
        net.visit(&mut bits);
        bits.0
    }

    /// `Network::seeded` draws the weights the CPU run drew before it existed, when the
    /// first training step drew them lazily (backbone and feature norm, projection, head):
    /// published runs keep their starting point, bit for bit.
    #[test]
    fn seeded_draws_what_the_first_step_drew() {
        let _seeded = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        for (backbone, head, bn_l2, contrastive) in [
            (BackboneKind::Resnet32, HeadKind::Rbl, false, false),
            (BackboneKind::Resnet32, HeadKind::Linear, true, true),
            (BackboneKind::Resnet50, HeadKind::Etf, true, false),
            (BackboneKind::Resnext50_32x4d, HeadKind::Linear, false, false),
        ] {
            let mut cfg = ExperimentConfig { seed: 7, ..Default::default() };
            cfg.model.backbone = backbone;
            cfg.model.head = head;
            cfg.model.feature_bn_l2 = bn_l2;
            cfg.model.widths = [4, 8, 8];
            cfg.model.feature_dim = 16;
            if contrastive {
                cfg.contrastive.method = crate::contrastive::config::ContrastiveKind::Tsc;
            }
            let device = Device::flex().autodiff();
            device.seed(cfg.seed);
            let lazy = Network::from_config(&cfg, 3, 10, &device).unwrap();
            // The first step's order of first use.
            let features = lazy.features(Tensor::<4>::ones([2, 3, 16, 16], &device));
            if let Some(p) = &lazy.projection {
                let _ = p.forward(features.clone());
            }
            let _ = lazy.head.logits_with(features, lazy.head.class_directions());
            let seeded = Network::seeded(&cfg, 3, 10, &device).unwrap();
            assert_eq!(parameter_bits(&lazy), parameter_bits(&seeded), "{backbone} {head}");
        }
    }

    /// Parameter paths as records store them: the backbone enum adds no level of its own, so
    /// checkpoints written when the CIFAR ResNet was a plain field still load.
    #[test]
    fn record_paths_have_no_backbone_variant_level() {
        use burn::module::{ModuleVisitor, Param};
        #[derive(Default)]
        struct Paths {
            at: Vec<String>,
            seen: Vec<String>,
        }
        impl ModuleVisitor for Paths {
            fn enter_module(&mut self, name: &str, _container: &str) {
                self.at.push(name.to_string());
            }
            fn exit_module(&mut self, _name: &str, _container: &str) {
                self.at.pop();
            }
            fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
                self.seen.push(self.at.join("."));
            }
        }
        for backbone in [BackboneKind::Resnet32, BackboneKind::Resnet50] {
            let mut cfg = ExperimentConfig::default();
            cfg.model.backbone = backbone;
            cfg.model.widths = [4, 4, 8];
            cfg.model.feature_dim = 16;
            let net = Network::from_config(&cfg, 3, 10, &Device::flex()).unwrap();
            let mut paths = Paths::default();
            net.visit(&mut paths);
            assert!(paths.seen.iter().any(|p| p == "backbone.stem.weight"), "{backbone}: {:?}", &paths.seen[..3]);
            assert!(paths.seen.iter().all(|p| !p.contains("ResNet")), "{backbone}: no variant names in paths");
        }
    }

    #[test]
    fn folded_batch_norms_give_the_same_predictions() {
        // ResNeXt: the grouped convolutions through the fused bias-and-ReLU pass.
        for backbone in [BackboneKind::Resnet32, BackboneKind::Resnet50, BackboneKind::Resnext50_32x4d] {
            let mut cfg = ExperimentConfig::default();
            cfg.model.backbone = backbone;
            cfg.model.widths = [4, 8, 8];
            cfg.model.feature_dim = 16;
            let device = Device::flex().autodiff();
            let _seeded = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            device.seed(5);
            let net = Network::from_config(&cfg, 3, 10, &device).unwrap();
            // Training-mode passes move the running statistics away from (0, 1), so the fold is
            // not trivially the identity.
            for k in 0..3 {
                let x = Tensor::<4>::random([4, 3, 32, 32], burn::tensor::Distribution::Normal(k as f64, 2.0), &device);
                let _ = net.forward(x);
            }
            let eval = net.valid();
            let folded = eval.fold_batch_norms();
            let x = Tensor::<4>::random([8, 3, 32, 32], burn::tensor::Distribution::Normal(1.0, 2.0), &Device::flex());
            let (a, b) = (eval.forward(x.clone()), folded.forward(x));
            let scale = a.clone().abs().max().into_data().try_to_vec::<f32>().unwrap()[0];
            let diff = (a.clone() - b.clone()).abs().max().into_data().try_to_vec::<f32>().unwrap()[0];
            assert!(diff <= 1e-4 * scale.max(1.0), "{backbone}: logits differ by {diff} (scale {scale})");
            assert_eq!(a.argmax(1).into_data(), b.argmax(1).into_data(), "{backbone}: same predictions");
        }
    }
}
