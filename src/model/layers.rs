//! Layers the backbones share: He initialisation, a convolution in the run's arithmetic
//! through rbl's kernels, convolution + BatchNorm (+ residual) (+ ReLU), and folding a
//! BatchNorm into its convolution for evaluation.

use burn::module::{Initializer, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{FloatDType, Tensor};

use crate::model::precision::Precision;

/// He-normal initialisation (fan-in, gain √2), as the paper's code applies to every conv and linear.
pub(crate) fn he_normal() -> Initializer {
    Initializer::KaimingNormal { gain: std::f64::consts::SQRT_2, fan_out_only: false }
}

/// A convolution in `precision` followed by its BatchNorm, or the convolution alone once the
/// norm is folded in; both through rbl's own ops ([`apply_conv`], [`rbl_ops::batch_norm`]).
pub(crate) fn conv_bn(conv: &Conv2d, bn: &Option<BatchNorm>, x: Tensor<4>, precision: Precision) -> Tensor<4> {
    match bn {
        Some(bn) => rbl_ops::batch_norm(bn, apply_conv(conv, x, precision)),
        None => apply_conv(conv, x, precision),
    }
}

/// act([`conv_bn`](x) (+ residual)), act being ReLU or the identity. Once the norm is folded
/// in (evaluation) and the arithmetic is f32, one op ([`rbl_ops::conv2d_bias_act`]) adds the
/// bias and the residual and applies the ReLU to each image while it is in cache, with the
/// separate ops' sums in their order; otherwise the separate ops.
pub(crate) fn conv_bn_act(
    conv: &Conv2d,
    bn: &Option<BatchNorm>,
    x: Tensor<4>,
    residual: Option<Tensor<4>>,
    relu: bool,
    precision: Precision,
) -> Tensor<4> {
    if let (None, Some(bias), None, Some(pad)) = (bn, &conv.bias, precision.half(), square_padding(conv))
        && conv.dilation == [1, 1]
        && conv.stride[0] == conv.stride[1]
    {
        let shape = rbl_ops::ConvShape { stride: conv.stride[0], padding: pad, groups: conv.groups };
        return rbl_ops::conv2d_bias_act(x, conv.weight.val(), bias.val(), residual, shape, relu);
    }
    let y = conv_bn(conv, bn, x, precision);
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    if relu { burn::tensor::activation::relu(y) } else { y }
}

/// The padding of `conv` when it is the same on every side (None for "same" padding, which
/// depends on the input size, or uneven padding).
fn square_padding(conv: &Conv2d) -> Option<usize> {
    match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top == bottom && left == right && top == left).then_some(top),
        PaddingConfig2d::Valid => Some(0),
        PaddingConfig2d::Same => None,
    }
}

/// `conv.forward(x)` with its arithmetic in `precision`, through rbl's own convolution op
/// ([`rbl_ops::conv2d_square`]) when the layer has its shape (any groups, no dilation, equal
/// strides, the same padding on every side): on the CPU that op is several times faster than
/// burn's in both directions. In half precision the input and weight are cast down and the
/// output back up to f32. The parameters stay those of the burn module (f32), so records are
/// unchanged.
pub(crate) fn apply_conv(conv: &Conv2d, x: Tensor<4>, precision: Precision) -> Tensor<4> {
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(top, left, bottom, right) => [(top, bottom), (left, right)],
        PaddingConfig2d::Valid => [(0, 0), (0, 0)],
        // "Same" depends on the input size; no network here uses it.
        PaddingConfig2d::Same => return conv.forward(x),
    };
    let (x, weight) = match precision.half() {
        Some(half) => (x.cast(half), conv.weight.val().cast(half)),
        None => (x, conv.weight.val()),
    };
    let y = match square_padding(conv) {
        Some(pad) if conv.dilation == [1, 1] && conv.stride[0] == conv.stride[1] => {
            rbl_ops::conv2d_square(x, weight, rbl_ops::ConvShape { stride: conv.stride[0], padding: pad, groups: conv.groups })
        }
        _ => {
            let options = ConvOptions::new_with_padding(conv.stride, padding, conv.dilation, conv.groups);
            burn::tensor::module::conv2d(x, weight, None, options)
        }
    };
    let y = if precision.half().is_some() { y.cast(FloatDType::F32) } else { y };
    match &conv.bias {
        Some(b) => {
            let c = b.dims()[0];
            y + b.val().reshape([1, c, 1, 1])
        }
        None => y,
    }
}

/// The convolution that computes conv then eval-mode BN in one op: per output channel c,
/// w'_c = w_c·s_c and b'_c = β_c + (b_c − μ_c)·s_c with s_c = γ_c / √(σ²_c + ε).
pub(crate) fn fold_conv_bn(conv: &Conv2d, bn: &Option<BatchNorm>) -> (Conv2d, Option<BatchNorm>) {
    let Some(bn) = bn else { return (conv.clone(), None) };
    let scale = bn.gamma.val() / (bn.running_var.value() + bn.epsilon).sqrt();
    let cout = scale.dims()[0];
    let bias = match &conv.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([cout], &scale.device()),
    };
    let mut folded = conv.clone();
    folded.weight = Param::from_tensor(conv.weight.val() * scale.clone().reshape([cout, 1, 1, 1]));
    folded.bias = Some(Param::from_tensor(bn.beta.val() + (bias - bn.running_mean.value()) * scale));
    (folded, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Device;

    #[test]
    fn half_precision_convolution_is_close_and_keeps_f32_weights() {
        use burn::tensor::Distribution;
        let _lock = crate::SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let device = Device::flex().autodiff();
        device.seed(5);
        let conv = Conv2dConfig::new([4, 8], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .with_initializer(he_normal())
            .init(&device);
        let x = Tensor::<4>::random([2, 4, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        let full = apply_conv(&conv, x.clone(), Precision::F32);
        let b: Vec<f32> = full.clone().into_data().try_to_vec().unwrap();
        let gf: Vec<f32> = conv.weight.val().grad(&full.sum().backward()).unwrap().into_data().try_to_vec().unwrap();
        let close = |a: &[f32], b: &[f32], tol: f32| {
            let worst = a.iter().zip(b).map(|(u, v)| (u - v).abs()).fold(0.0f32, f32::max);
            (worst < tol * b.iter().fold(1.0f32, |m, v| m.max(v.abs())), worst)
        };
        for p in [Precision::F16, Precision::Bf16] {
            let half = apply_conv(&conv, x.clone(), p);
            assert_eq!(half.dtype(), burn::tensor::DType::F32, "{p:?}: the output comes back in f32");
            let tol = if p == Precision::F16 { 1e-2 } else { 5e-2 };
            let a: Vec<f32> = half.clone().into_data().try_to_vec().unwrap();
            let (ok, worst) = close(&a, &b, tol);
            assert!(ok, "{p:?}: max |diff| {worst}");
            // The gradient reaches the f32 weight through the casts.
            let gw = conv.weight.val().grad(&half.sum().backward()).expect("weight gradient");
            assert_eq!(gw.dtype(), burn::tensor::DType::F32);
            let gh: Vec<f32> = gw.into_data().try_to_vec().unwrap();
            let (ok, worst) = close(&gh, &gf, tol);
            assert!(ok, "{p:?}: weight gradient off by {worst}");
        }
    }
}
