//! The CIFAR ResNet of He et al. (2016, §4.2): a 3×3 stem, three stages of basic blocks with
//! option-A (parameter-free) shortcuts, global average pooling. Five blocks per stage is
//! ResNet-32, the backbone of the RBL paper's CIFAR experiments.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, s};

use crate::model::config::ProjectionInit;
use crate::model::layers::{conv_bn, fold_conv_bn, he_normal};
use crate::model::precision::Precision;
use rbl_ops::ConvInput;

/// Shape of a CIFAR-style ResNet.
#[derive(Config, Debug)]
pub struct ResNetCifarConfig {
    /// Input channels (1 for grey, 3 for colour).
    pub in_channels: usize,
    /// Channel widths of the three stages (16/32/64 in He et al.).
    pub widths: [usize; 3],
    /// Basic blocks per stage (5 gives ResNet-32).
    #[config(default = 5)]
    pub blocks_per_stage: usize,
    /// Linear projection of the pooled feature to this size; 0 for none.
    #[config(default = 0)]
    pub feature_dim: usize,
    /// Arithmetic of the convolutions (`train.precision`); f32 on the CPU runs the halo kernels.
    #[config(default = "Precision::F32")]
    pub precision: Precision,
    /// Initialisation of the projection (`model.projection_init`).
    #[config(default = "ProjectionInit::Torch")]
    pub projection_init: ProjectionInit,
}

/// Conv–BN–ReLU–Conv–BN with an identity or option-A shortcut.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    /// `None` once folded into `conv1` for evaluation ([`ResNetCifar::fold_batch_norms`]).
    bn1: Option<BatchNorm>,
    conv2: Conv2d,
    bn2: Option<BatchNorm>,
    /// Stride of the first convolution (2 where the stage halves the resolution).
    stride: usize,
    /// Zero channels added on each side by the shortcut.
    pad_channels: usize,
}

/// The whole backbone.
#[derive(Module, Debug)]
pub struct ResNetCifar {
    stem: Conv2d,
    stem_bn: Option<BatchNorm>,
    blocks: Vec<BasicBlock>,
    projection: Option<Linear>,
    /// Arithmetic of the convolutions: chosen by the run, not a weight.
    #[module(skip)]
    precision: Precision,
}

fn conv3x3(cin: usize, cout: usize, stride: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .with_initializer(he_normal())
        .init(device)
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        BasicBlock {
            conv1: conv3x3(cin, cout, stride, device),
            bn1: Some(BatchNormConfig::new(cout).init(device)),
            conv2: conv3x3(cout, cout, 1, device),
            bn2: Some(BatchNormConfig::new(cout).init(device)),
            stride,
            pad_channels: (cout - cin) / 2,
        }
    }

    fn forward(&self, x: Tensor<4>, precision: Precision) -> Tensor<4> {
        let out = relu(conv_bn(&self.conv1, &self.bn1, x.clone(), precision));
        let out = conv_bn(&self.conv2, &self.bn2, out, precision);
        let shortcut = if self.stride == 1 && self.pad_channels == 0 {
            x
        } else {
            // Option A: subsample spatially, pad the new channels with zeros.
            let x = if self.stride > 1 { x.slice(s![.., .., 0..;2, 0..;2]) } else { x };
            let [b, _, h, w] = x.dims();
            let zeros = Tensor::zeros([b, self.pad_channels, h, w], &x.device());
            Tensor::cat(vec![zeros.clone(), x, zeros], 1)
        };
        relu(out + shortcut)
    }

    /// [`Self::forward`] on a halo tensor ([`rbl_ops`]): convolution, then BatchNorm,
    /// the shortcut's add and ReLU fused into one op.
    fn forward_halo(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = self.stride == 1 && self.pad_channels == 0;
        // With an identity shortcut x is also conv2's op's residual: conv1's backward then adds
        // its input gradient to the residual's as it computes it (ConvInput::AlsoResidual).
        let input = if identity { ConvInput::AlsoResidual } else { ConvInput::Plain };
        let out = halo_conv_norm(&self.conv1, &self.bn1, x.clone(), None, input);
        // Option A on the interior: subsample, then zero channels on both sides and the ring.
        let shortcut = if identity { x } else { rbl_ops::halo_shortcut_a(x, self.stride, self.pad_channels) };
        halo_conv_norm(&self.conv2, &self.bn2, out, Some(shortcut), ConvInput::Plain)
    }
}

/// Whether the network runs in the halo layout: f32 on the flex backend, where rbl's halo
/// kernels exist; elsewhere (wgpu, half-precision convolutions) NCHW with burn's ops.
fn use_halo_layout(images: &Tensor<4>, precision: Precision) -> bool {
    rbl_ops::on_flex(&images.device()) && images.dtype() == burn::tensor::DType::F32 && precision == Precision::F32
}

/// relu(BN(conv(x)) [+ residual]) between halo tensors: BatchNorm with batch statistics when
/// training (updating the running ones), with the running ones at evaluation, and the bias
/// alone once folded ([`fold_conv_bn`]). `input`: whether x is also the residual of a later
/// call's (training only; see [`ConvInput`]).
fn halo_conv_norm(conv: &Conv2d, bn: &Option<BatchNorm>, x: Tensor<4>, residual: Option<Tensor<4>>, input: ConvInput) -> Tensor<4> {
    use rbl_ops::{halo_conv_affine, halo_conv_bn_train};
    let (device, stride) = (x.device(), conv.stride[0]);
    match bn {
        // A convolution bias before batch statistics cancels in the output (and has a zero
        // gradient), so this path leaves it out; the CIFAR convolutions have none anyway. One op
        // for both, so that its backward hands BatchNorm's gradient to the convolution image
        // by image (the bits of the two ops).
        Some(bn) if device.is_autodiff() && bn.training.is_enabled() => {
            let (y, mean, var) =
                halo_conv_bn_train(x, conv.weight.val(), stride, input, bn.gamma.val(), bn.beta.val(), residual, true, bn.epsilon);
            rbl_ops::update_running_statistics(bn, mean, var);
            y
        }
        _ => {
            // Evaluation: the affine step, the add and ReLU run on each image as the
            // convolution finishes it (separate ops under autodiff).
            let (scale, shift) = eval_affine(conv, bn);
            halo_conv_affine(x, conv.weight.val(), stride, scale, shift, residual, true)
        }
    }
}

/// The per-channel (scale, shift) a convolution's output takes at evaluation: BatchNorm with
/// its running statistics, or, once folded ([`fold_conv_bn`]), ones and the bias.
fn eval_affine(conv: &Conv2d, bn: &Option<BatchNorm>) -> (Tensor<1>, Tensor<1>) {
    match bn {
        Some(bn) => {
            // BN(conv(x) + b) = conv(x)·s + β − (μ − b)·s, as in fold_conv_bn.
            let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
            let mean = match &conv.bias {
                Some(b) => bn.running_mean.value() - b.val(),
                None => bn.running_mean.value(),
            };
            let shift = bn.beta.val() - mean * scale.clone();
            (scale, shift)
        }
        None => {
            let (cout, device) = (conv.weight.dims()[0], conv.weight.device());
            let bias = conv.bias.as_ref().map(|b| b.val()).unwrap_or_else(|| Tensor::zeros([cout], &device));
            (Tensor::ones([cout], &device), bias)
        }
    }
}

/// A convolution of [`rbl_ops::halo_resnet_eval`] with its evaluation affine step.
fn eval_conv(conv: &Conv2d, bn: &Option<BatchNorm>) -> rbl_ops::EvalConv {
    let (scale, shift) = eval_affine(conv, bn);
    rbl_ops::EvalConv { weight: conv.weight.val(), scale, shift, stride: conv.stride[0] }
}

impl ResNetCifarConfig {
    /// Builds the network with freshly initialised weights (seed the device first).
    pub fn init(&self, device: &Device) -> ResNetCifar {
        let mut blocks = Vec::new();
        let mut cin = self.widths[0];
        for (stage, &width) in self.widths.iter().enumerate() {
            for b in 0..self.blocks_per_stage {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(cin, width, stride, device));
                cin = width;
            }
        }
        // PyTorch's nn.Linear default is burn's LinearConfig default: Kaiming-uniform with gain
        // 1/√3, i.e. U(±1/√fan_in) for the weight and (fan_in = d_input) the bias.
        let projection = (self.feature_dim > 0).then(|| match self.projection_init {
            ProjectionInit::Torch => LinearConfig::new(self.widths[2], self.feature_dim).init(device),
            ProjectionInit::He => LinearConfig::new(self.widths[2], self.feature_dim).with_initializer(he_normal()).init(device),
        });
        ResNetCifar {
            stem: conv3x3(self.in_channels, self.widths[0], 1, device),
            stem_bn: Some(BatchNormConfig::new(self.widths[0]).init(device)),
            blocks,
            projection,
            precision: self.precision,
        }
    }

    /// Size of the feature the backbone outputs.
    pub fn output_dim(&self) -> usize {
        if self.feature_dim > 0 { self.feature_dim } else { self.widths[2] }
    }
}

impl ResNetCifar {
    /// The same network for evaluation with every BatchNorm folded into its convolution: one op
    /// fewer per layer, the same function up to rounding (predictions are tested equal). Call
    /// it on an eval-mode (`valid()`) network.
    pub fn fold_batch_norms(&self) -> ResNetCifar {
        let (stem, stem_bn) = fold_conv_bn(&self.stem, &self.stem_bn);
        let blocks = self
            .blocks
            .iter()
            .map(|b| {
                let (conv1, bn1) = fold_conv_bn(&b.conv1, &b.bn1);
                let (conv2, bn2) = fold_conv_bn(&b.conv2, &b.bn2);
                BasicBlock { conv1, bn1, conv2, bn2, ..b.clone() }
            })
            .collect();
        ResNetCifar { stem, stem_bn, blocks, projection: self.projection.clone(), precision: self.precision }
    }

    /// Images `[B, C, H, W]` to features `[B, d]`. On the CPU in f32 the activations are kept
    /// in the halo layout ([`rbl_ops`]) with rbl's fused kernels; elsewhere in NCHW.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let pooled = if use_halo_layout(&images, self.precision) { self.pooled_halo(images) } else { self.pooled_nchw(images) };
        self.project(pooled)
    }

    /// The pooled feature `[B, c]` through NCHW tensors.
    fn pooled_nchw(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = relu(conv_bn(&self.stem, &self.stem_bn, images, self.precision));
        for block in &self.blocks {
            x = block.forward(x, self.precision);
        }
        let [b, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([b, c])
    }

    /// The pooled feature `[B, c]` through halo tensors: without autodiff (evaluation) each
    /// image through the whole network in one op, with autodiff layer by layer; the same bits.
    fn pooled_halo(&self, images: Tensor<4>) -> Tensor<2> {
        let x = if images.device().is_autodiff() { self.last_halo_by_layer(images) } else { self.last_halo_by_image(images) };
        let [b, hp, wp, c] = x.dims();
        // The ring is zero: summing it in is harmless, dividing by it is not.
        x.sum_dim(2).sum_dim(1).reshape([b, c]).div_scalar(((hp - 2) * (wp - 2)) as f32)
    }

    /// The last block's output (halo) from NCHW images, one op per layer.
    fn last_halo_by_layer(&self, images: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = images.dims();
        let x = Tensor::zeros([b, h + 2, w + 2, c], &images.device())
            .slice_assign(s![.., 1..h + 1, 1..w + 1, ..], images.permute([0, 2, 3, 1]));
        let mut x = halo_conv_norm(&self.stem, &self.stem_bn, x, None, ConvInput::Plain);
        for block in &self.blocks {
            x = block.forward_halo(x);
        }
        x
    }

    /// [`Self::last_halo_by_layer`] at evaluation, each image through the whole network while
    /// its activations are in cache ([`rbl_ops::halo_resnet_eval`]).
    fn last_halo_by_image(&self, images: Tensor<4>) -> Tensor<4> {
        let mut convs = vec![eval_conv(&self.stem, &self.stem_bn)];
        for b in &self.blocks {
            convs.push(eval_conv(&b.conv1, &b.bn1));
            convs.push(eval_conv(&b.conv2, &b.bn2));
        }
        rbl_ops::halo_resnet_eval(images, convs)
    }

    fn project(&self, pooled: Tensor<2>) -> Tensor<2> {
        match &self.projection {
            Some(p) => p.forward(pooled),
            None => pooled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The halo path (rbl's fused CPU kernels) against the NCHW path (burn's relu, add and
    /// option-A shortcut around rbl's NCHW conv and BN, themselves tested against burn's):
    /// training-mode features, every parameter's gradient and the running statistics, then
    /// evaluation, folded and not.
    #[test]
    fn halo_layout_matches_nchw_in_training_and_evaluation() {
        use burn::module::{ModuleVisitor, Param as P};
        use burn::tensor::Distribution;
        let _lock = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let device = Device::flex().autodiff();
        device.seed(11);
        let cfg = ResNetCifarConfig::new(3, [8, 16, 16]).with_blocks_per_stage(2).with_feature_dim(12);
        let (net_a, net_b) = (cfg.init(&device), cfg.init(&device));
        let net_b = net_b.load_record(net_a.clone().into_record());
        let images = Tensor::<4>::random([5, 3, 10, 9], Distribution::Normal(0.0, 1.0), &device);
        let r = Tensor::<2>::random([5, 12], Distribution::Normal(0.0, 1.0), &device);
        let vec = |t: Tensor<2>| -> Vec<f32> { t.into_data().try_to_vec().unwrap() };
        let close = |what: &str, a: &[f32], b: &[f32], tol: f32| {
            let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(worst <= tol * scale, "{what}: max |diff| {worst} (scale {scale})");
        };
        let (fa, fb) = (net_a.project(net_a.pooled_halo(images.clone())), net_b.project(net_b.pooled_nchw(images.clone())));
        close("training features", &vec(fa.clone()), &vec(fb.clone()), 1e-4);
        let (ga, gb) = ((fa * r.clone()).sum().backward(), (fb * r).sum().backward());
        struct Grads<'a>(&'a burn::tensor::Gradients, Vec<Vec<f32>>);
        impl ModuleVisitor for Grads<'_> {
            fn visit_float<const D: usize>(&mut self, param: &P<Tensor<D>>) {
                if let Some(g) = param.val().grad(self.0) {
                    self.1.push(g.into_data().try_to_vec().unwrap());
                }
            }
        }
        let (mut va, mut vb) = (Grads(&ga, vec![]), Grads(&gb, vec![]));
        net_a.visit(&mut va);
        net_b.visit(&mut vb);
        assert_eq!(va.1.len(), vb.1.len());
        assert!(va.1.len() > 20, "every conv, BN and the projection have gradients");
        for (i, (a, b)) in va.1.iter().zip(&vb.1).enumerate() {
            close(&format!("gradient of parameter {i}"), a, b, 2e-3);
        }
        let stats = |n: &ResNetCifar| -> Vec<f32> { n.stem_bn.as_ref().unwrap().running_var.value().into_data().try_to_vec().unwrap() };
        close("running variance", &stats(&net_a), &stats(&net_b), 1e-5);
        let (ea, eb) = (net_a.valid(), net_b.valid());
        let plain = images.clone().inner();
        let want = vec(eb.project(eb.pooled_nchw(plain.clone())));
        close("evaluation", &vec(ea.project(ea.pooled_halo(plain.clone()))), &want, 1e-4);
        let folded = ea.fold_batch_norms();
        close("folded evaluation", &vec(folded.project(folded.pooled_halo(plain))), &want, 1e-4);
    }

    /// At evaluation (no autodiff) the network runs image by image in one op; its output is
    /// the layer-by-layer ops' bit for bit, with trained BatchNorm statistics and folded.
    #[test]
    fn evaluation_image_by_image_is_the_layer_by_layer_bits() {
        use burn::tensor::Distribution;
        let _lock = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let device = Device::flex().autodiff();
        device.seed(12);
        let net = ResNetCifarConfig::new(3, [16, 32, 64]).with_blocks_per_stage(2).init(&device);
        // One training forward, so that the running statistics are not the initial 0 and 1.
        let images = Tensor::<4>::random([6, 3, 16, 16], Distribution::Normal(0.5, 1.0), &device);
        let _ = net.pooled_halo(images.clone());
        let plain = images.inner();
        let bits = |t: Tensor<4>| -> Vec<u32> { t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect() };
        for (what, eval) in [("running statistics", net.valid()), ("folded", net.valid().fold_batch_norms())] {
            let (by_image, by_layer) = (eval.last_halo_by_image(plain.clone()), eval.last_halo_by_layer(plain.clone()));
            assert_eq!(by_image.dims(), [6, 6, 6, 64], "{what}");
            assert_eq!(bits(by_image), bits(by_layer), "{what}");
        }
    }

    /// At evaluation the halo path keeps a convolution's bias in front of BatchNorm (the CIFAR
    /// network has none, but the layer function must not drop one silently).
    #[test]
    fn halo_evaluation_keeps_a_bias_before_batch_norm() {
        use burn::module::Param;
        use burn::tensor::{Distribution, TensorData};
        use rbl_ops::{HaloGeometry, halo_to_nchw, nchw_to_halo};
        let _lock = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let device = Device::flex();
        device.seed(21);
        let mut conv = conv3x3(4, 16, 1, &device);
        conv.bias = Some(Param::from_tensor(Tensor::random([16], Distribution::Normal(0.0, 1.0), &device)));
        let mut bn = BatchNormConfig::new(16).init(&device);
        bn.gamma = Param::from_tensor(Tensor::random([16], Distribution::Normal(1.0, 0.3), &device));
        let (bn, x) = (Some(bn), Tensor::<4>::random([2, 4, 6, 5], Distribution::Normal(0.0, 1.0), &device));
        let want: Vec<f32> = relu(conv_bn(&conv, &bn, x.clone(), Precision::F32)).into_data().try_to_vec().unwrap();
        let xs: Vec<f32> = x.into_data().try_to_vec().unwrap();
        let xh = Tensor::<4>::from_data(TensorData::new(nchw_to_halo(&xs, 2, 4, 6, 5), [2, 8, 7, 4]), &device);
        let got: Vec<f32> = halo_conv_norm(&conv, &bn, xh, None, ConvInput::Plain).into_data().try_to_vec().unwrap();
        let got = halo_to_nchw(&got, &HaloGeometry { batch: 2, h: 6, w: 5, c: 16 });
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(got.len() == want.len() && worst <= 1e-5 * scale, "conv + bias + BN + ReLU: max |diff| {worst} (scale {scale})");
    }

    #[test]
    fn resnet32_shapes_and_parameter_count() {
        let device = Device::flex();
        let cfg = ResNetCifarConfig::new(3, [16, 32, 64]);
        let net = cfg.init(&device);
        // He et al.'s ResNet-32 has 464,154 parameters (0.46 M) with its 10-way classifier
        // (650 of them). burn's count also includes the BN running mean and variance:
        // 2 × 1,136 BN channels.
        let n = net.num_params();
        assert_eq!(n + 650 - 2 * 1136, 464_154);
        let y = net.forward(Tensor::zeros([2, 3, 32, 32], &device));
        assert_eq!(y.dims(), [2, 64]);
        let grey = ResNetCifarConfig::new(1, [16, 32, 64]).with_feature_dim(256).init(&device);
        assert_eq!(grey.forward(Tensor::zeros([3, 1, 28, 28], &device)).dims(), [3, 256]);
    }

    #[test]
    fn the_projection_starts_as_pytorchs_linear_or_he_normal() {
        let device = Device::flex();
        device.seed(5);
        let stats = |init: ProjectionInit| {
            let net = ResNetCifarConfig::new(1, [4, 4, 64]).with_feature_dim(256).with_projection_init(init).init(&device);
            let p = net.projection.unwrap();
            let w: Vec<f32> = p.weight.val().into_data().try_to_vec().unwrap();
            let b: Vec<f32> = p.bias.unwrap().val().into_data().try_to_vec().unwrap();
            let max = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
            let std = (w.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
            (max(&w), max(&b), std)
        };
        // PyTorch: U(±1/√64) for weight and bias, std 1/√(3·64) = 0.0722.
        let (w, b, std) = stats(ProjectionInit::Torch);
        assert!(w <= 0.125 && w > 0.12 && b <= 0.125 && b > 0.1, "{w} {b}");
        assert!((std - 0.0722).abs() < 0.003, "{std}");
        // He-normal: std √(2/64) = 0.177, unbounded.
        let (w, _, std) = stats(ProjectionInit::He);
        assert!((std - 0.177).abs() < 0.006 && w > 0.3, "{std} {w}");
    }
}
