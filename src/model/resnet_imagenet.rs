//! The ImageNet ResNets of He et al. (2016) with bottleneck blocks, and their grouped variant
//! ResNeXt (Xie et al., 2017): a 7×7 stride-2 stem and 3×3 max-pool, four stages of
//! 1×1 → 3×3 (grouped) → 1×1 bottlenecks with projection shortcuts, global average pooling to a
//! 2048-d feature. ResNeXt-50 (32×4d) is the usual ImageNet-LT backbone, ResNet-50 the other.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use crate::model::layers::{conv_bn, conv_bn_act, fold_conv_bn};
use crate::model::precision::Precision;

/// Shape of a bottleneck ResNet / ResNeXt.
#[derive(Config, Debug)]
pub struct ResNetImageNetConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Bottleneck blocks per stage ([3, 4, 6, 3] for the 50-layer nets).
    pub blocks: [usize; 4],
    /// Groups of the 3×3 convolutions (1: ResNet, 32: ResNeXt 32×4d).
    #[config(default = 1)]
    pub groups: usize,
    /// Channels per group in the first stage's 3×3 convolution (64: ResNet, 4: ResNeXt 32×4d).
    #[config(default = 64)]
    pub width_per_group: usize,
    /// Linear projection of the pooled feature to this size; 0 for none (2048-d).
    #[config(default = 0)]
    pub feature_dim: usize,
    /// Arithmetic of the convolutions (`train.precision`).
    #[config(default = "Precision::F32")]
    pub precision: Precision,
}

impl ResNetImageNetConfig {
    /// ResNet-50.
    pub fn resnet50(in_channels: usize) -> Self {
        Self::new(in_channels, [3, 4, 6, 3])
    }

    /// ResNeXt-50 (32×4d).
    pub fn resnext50_32x4d(in_channels: usize) -> Self {
        Self::new(in_channels, [3, 4, 6, 3]).with_groups(32).with_width_per_group(4)
    }

    /// Size of the feature the backbone outputs.
    pub fn output_dim(&self) -> usize {
        if self.feature_dim > 0 { self.feature_dim } else { 512 * BottleneckBlock::EXPANSION }
    }

    /// Channels of every BatchNorm, in order (burn's `num_params` counts their running mean
    /// and variance too: 2 per channel).
    pub fn batch_norm_channels(&self) -> usize {
        let mut total = 64;
        let mut cin = 64;
        for (stage, &n) in self.blocks.iter().enumerate() {
            let planes = 64 << stage;
            let width = planes * self.width_per_group / 64 * self.groups;
            for b in 0..n {
                total += 2 * width + planes * BottleneckBlock::EXPANSION;
                if b == 0 && (stage > 0 || cin != planes * BottleneckBlock::EXPANSION) {
                    total += planes * BottleneckBlock::EXPANSION;
                }
                cin = planes * BottleneckBlock::EXPANSION;
            }
        }
        total
    }

    /// Builds the network with freshly initialised weights (seed the device first).
    pub fn init(&self, device: &Device) -> ResNetImageNet {
        let mut blocks = Vec::new();
        let mut cin = 64;
        for (stage, &n) in self.blocks.iter().enumerate() {
            let planes = 64 << stage;
            let width = planes * self.width_per_group / 64 * self.groups;
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BottleneckBlock::new(cin, width, planes * BottleneckBlock::EXPANSION, stride, self.groups, device));
                cin = planes * BottleneckBlock::EXPANSION;
            }
        }
        ResNetImageNet {
            stem: conv(self.in_channels, 64, 7, 2, 1, device),
            stem_bn: Some(BatchNormConfig::new(64).init(device)),
            pool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(),
            blocks,
            projection: (self.feature_dim > 0).then(|| LinearConfig::new(cin, self.feature_dim).init(device)),
            precision: self.precision,
        }
    }
}

/// 1×1 reduce, 3×3 (grouped, strided), 1×1 expand; projection shortcut where the shape changes.
#[derive(Module, Debug)]
pub struct BottleneckBlock {
    conv1: Conv2d,
    /// `None` once folded into `conv1` ([`ResNetImageNet::fold_batch_norms`]); likewise below.
    bn1: Option<BatchNorm>,
    conv2: Conv2d,
    bn2: Option<BatchNorm>,
    /// Before `conv3`, as the forward pass uses them: a run draws its weights in this order
    /// (`Network::seeded`), the order they used to be drawn in lazily.
    shortcut: Option<(Conv2d, Option<BatchNorm>)>,
    conv3: Conv2d,
    bn3: Option<BatchNorm>,
}

impl BottleneckBlock {
    /// Output channels per `planes`.
    pub const EXPANSION: usize = 4;

    fn new(cin: usize, width: usize, cout: usize, stride: usize, groups: usize, device: &Device) -> Self {
        BottleneckBlock {
            conv1: conv(cin, width, 1, 1, 1, device),
            bn1: Some(BatchNormConfig::new(width).init(device)),
            conv2: conv(width, width, 3, stride, groups, device),
            bn2: Some(BatchNormConfig::new(width).init(device)),
            conv3: conv(width, cout, 1, 1, 1, device),
            bn3: Some(BatchNormConfig::new(cout).init(device)),
            shortcut: (stride != 1 || cin != cout)
                .then(|| (conv(cin, cout, 1, stride, 1, device), Some(BatchNormConfig::new(cout).init(device)))),
        }
    }

    fn forward(&self, x: Tensor<4>, precision: Precision) -> Tensor<4> {
        let out = conv_bn_act(&self.conv1, &self.bn1, x.clone(), None, true, precision);
        let out = conv_bn_act(&self.conv2, &self.bn2, out, None, true, precision);
        let shortcut = match &self.shortcut {
            Some((c, bn)) => conv_bn(c, bn, x, precision),
            None => x,
        };
        // relu(conv3 + shortcut)
        conv_bn_act(&self.conv3, &self.bn3, out, Some(shortcut), true, precision)
    }
}

/// The whole backbone.
#[derive(Module, Debug)]
pub struct ResNetImageNet {
    stem: Conv2d,
    stem_bn: Option<BatchNorm>,
    pool: MaxPool2d,
    blocks: Vec<BottleneckBlock>,
    projection: Option<Linear>,
    /// Arithmetic of the convolutions: chosen by the run, not a weight.
    #[module(skip)]
    precision: Precision,
}

impl ResNetImageNet {
    /// The same network for evaluation with every BatchNorm folded into its convolution (see
    /// [`crate::model::ResNetCifar::fold_batch_norms`]).
    pub fn fold_batch_norms(&self) -> ResNetImageNet {
        let (stem, stem_bn) = fold_conv_bn(&self.stem, &self.stem_bn);
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                let (conv1, bn1) = fold_conv_bn(&b.conv1, &b.bn1);
                let (conv2, bn2) = fold_conv_bn(&b.conv2, &b.bn2);
                let (conv3, bn3) = fold_conv_bn(&b.conv3, &b.bn3);
                let shortcut = b.shortcut.as_ref().map(|(c, bn)| fold_conv_bn(c, bn));
                BottleneckBlock { conv1, bn1, conv2, bn2, conv3, bn3, shortcut }
            })
            .collect();
        ResNetImageNet { stem, stem_bn, pool: self.pool.clone(), blocks, projection: self.projection.clone(), precision: self.precision }
    }

    /// Images `[B, C, H, W]` (224 × 224 in the recipes) to features `[B, d]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.pool.forward(conv_bn_act(&self.stem, &self.stem_bn, images, None, true, self.precision));
        for block in &self.blocks {
            x = block.forward(x, self.precision);
        }
        let [b, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([b, c]);
        match &self.projection {
            Some(p) => p.forward(pooled),
            None => pooled,
        }
    }
}

/// A bias-free k×k convolution with "same" padding, He-normal (fan-out, as torchvision).
fn conv(cin: usize, cout: usize, k: usize, stride: usize, groups: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_groups(groups)
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: true })
        .init(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;

    /// Parameters as torchvision counts them: no BN running statistics, plus a 1000-way FC.
    fn published_count(cfg: &ResNetImageNetConfig) -> usize {
        let device = Device::flex();
        let net = cfg.init(&device);
        net.num_params() - 2 * cfg.batch_norm_channels() + 2048 * 1000 + 1000
    }

    #[test]
    fn parameter_counts_match_the_published_ones() {
        assert_eq!(published_count(&ResNetImageNetConfig::resnet50(3)), 25_557_032, "ResNet-50 (25.6 M)");
        assert_eq!(published_count(&ResNetImageNetConfig::resnext50_32x4d(3)), 25_028_904, "ResNeXt-50 32×4d (25.0 M)");
    }

    #[test]
    fn resnext50_takes_a_training_step_on_224_pixel_images() {
        let device = Device::flex().autodiff();
        let _seeded = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(0);
        let cfg = ResNetImageNetConfig::resnext50_32x4d(3).with_feature_dim(16);
        let net = cfg.init(&device);
        let x = Tensor::<4>::random([2, 3, 224, 224], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let f = net.forward(x.clone());
        assert_eq!(f.dims(), [2, 16]);
        let loss = f.clone().powi_scalar(2).mean();
        let scalar = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap()[0];
        let before = scalar(loss.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let mut optim = crate::train::optimizer::build_optimizer(&crate::train::config::TrainConfig::default());
        let net = optim.step(0.01, net, grads);
        let after = scalar(net.forward(x).powi_scalar(2).mean());
        assert!(before.is_finite() && after.is_finite());
        assert_ne!(before, after, "the step changed the weights");
    }
}
