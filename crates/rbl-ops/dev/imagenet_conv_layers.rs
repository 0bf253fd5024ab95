//! Per-layer timing of rbl's NCHW CPU convolution passes on ResNet-50's 23 distinct layer shapes
//! (development aid): `cargo run --release -p rbl-ops --features dev --example
//! imagenet_conv_layers -- [batch]`. Prints each shape's forward, input-gradient and
//! weight-gradient time and GFLOP/s, and the whole network's total (shape times its count).
use rbl_ops::dev::*;
use std::time::Instant;

/// (c_in, c_out, side of the input, kernel, stride, count in ResNet-50).
const SHAPES: [(usize, usize, usize, usize, usize, usize); 23] = [
    (3, 64, 224, 7, 2, 1),
    (64, 64, 56, 1, 1, 1),
    (64, 64, 56, 3, 1, 3),
    (64, 256, 56, 1, 1, 4), // conv3 ×3 and the first shortcut
    (256, 64, 56, 1, 1, 2),
    (256, 128, 56, 1, 1, 1),
    (128, 128, 56, 3, 2, 1),
    (128, 512, 28, 1, 1, 4),
    (256, 512, 56, 1, 2, 1),
    (512, 128, 28, 1, 1, 3),
    (128, 128, 28, 3, 1, 3),
    (512, 256, 28, 1, 1, 1),
    (256, 256, 28, 3, 2, 1),
    (256, 1024, 14, 1, 1, 6),
    (1024, 256, 14, 1, 1, 5),
    (256, 256, 14, 3, 1, 5),
    (512, 1024, 28, 1, 2, 1),
    (1024, 512, 14, 1, 1, 1),
    (512, 512, 14, 3, 2, 1),
    (512, 2048, 7, 1, 1, 3),
    (1024, 2048, 14, 1, 2, 1),
    (2048, 512, 7, 1, 1, 2),
    (512, 512, 7, 3, 1, 2),
];

fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..reps {
        f();
    }
    t.elapsed().as_secs_f64() * 1e3 / reps as f64
}

fn main() {
    rbl_ops::keep_freed_buffers();
    let b: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(8);
    let mut total = [0.0; 3];
    for (ci, co, hw, k, s, count) in SHAPES {
        let g = ConvGeometry { batch: b, c_in: ci, h: hw, w: hw, c_out: co, kh: k, kw: k, stride: s, pad: k / 2, groups: 1 };
        let x: Vec<f32> = (0..b * ci * hw * hw).map(|i| ((i * 7919 % 2003) as f32) / 1000.0 - 1.0).collect();
        let w: Vec<f32> = (0..co * ci * k * k).map(|i| ((i * 31 % 17) as f32) / 17.0 - 0.5).collect();
        let y = conv2d_forward(&x, &w, &g);
        let reps = 3;
        let f = time(reps, || {
            std::hint::black_box(conv2d_forward(&x, &w, &g));
        });
        let d = time(reps, || {
            std::hint::black_box(conv2d_input_grad(&y, &w, &g));
        });
        let wg = time(reps, || {
            std::hint::black_box(conv2d_weight_grad(&x, &y, &g));
        });
        let gflop = 2.0 * (b * co * ci * k * k * g.oh() * g.ow()) as f64 / 1e6;
        println!(
            "{ci:>4}->{co:<4} {hw:>3} k{k} s{s} x{count}  fwd {f:7.2} ms ({:5.1} GF/s)  dx {d:7.2} ms ({:5.1})  dw {wg:7.2} ms ({:5.1})",
            gflop / f,
            gflop / d,
            gflop / wg
        );
        total[0] += f * count as f64;
        total[1] += if ci == 3 { 0.0 } else { d * count as f64 };
        total[2] += wg * count as f64;
    }
    println!(
        "total at batch {b}: fwd {:.0} ms, dx {:.0}, dw {:.0} = {:.0} ms (no stem dx)",
        total[0],
        total[1],
        total[2],
        total.iter().sum::<f64>()
    );
}
