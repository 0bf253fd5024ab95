//! Per-layer timing of rbl's CPU convolution passes (development aid).
use rbl::ops::conv2d_cpu::*;
use std::time::Instant;
fn main() {
    rbl::ops::allocator::keep_freed_buffers();
    let b: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(128);
    let shapes = [(3, 16, 32, 1, 1), (16, 16, 32, 1, 10), (16, 32, 32, 2, 1), (32, 32, 16, 1, 9), (32, 64, 16, 2, 1), (64, 64, 8, 1, 9)];
    let mut tot = [0.0; 3];
    for (ci, co, hw, s, count) in shapes {
        let g = ConvGeometry { batch: b, c_in: ci, h: hw, w: hw, c_out: co, kh: 3, kw: 3, stride: s, pad: 1 };
        let x: Vec<f32> = (0..b * ci * hw * hw).map(|i| ((i * 7919 % 2003) as f32) / 1000.0 - 1.0).collect();
        let w: Vec<f32> = (0..co * ci * 9).map(|i| ((i * 31 % 17) as f32) / 17.0 - 0.5).collect();
        let y = conv2d_forward(&x, &w, &g);
        let reps = 5;
        let t = Instant::now();
        for _ in 0..reps { std::hint::black_box(conv2d_forward(&x, &w, &g)); }
        let f = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let t = Instant::now();
        for _ in 0..reps { std::hint::black_box(conv2d_input_grad(&y, &w, &g)); }
        let d = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let t = Instant::now();
        for _ in 0..reps { std::hint::black_box(conv2d_weight_grad(&x, &y, &g)); }
        let wg = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let macs = (b * co * ci * 9 * g.oh() * g.ow()) as f64;
        println!("{ci:>3}->{co:<3} {hw:>2} s{s} x{count:<2}  fwd {f:6.2} ms ({:5.1} GF/s)  dx {d:6.2} ms  dw {wg:6.2} ms", 2.0 * macs / f / 1e6);
        tot[0] += f * count as f64; tot[1] += d * count as f64; tot[2] += wg * count as f64;
    }
    println!("total fwd {:.1} ms dx {:.1} dw {:.1} = {:.1} ms", tot[0], tot[1], tot[2], tot.iter().sum::<f64>());
}
