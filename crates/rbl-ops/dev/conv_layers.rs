//! Per-layer timing of rbl's halo-layout CPU convolution passes (development aid):
//! `cargo run --release -p rbl-ops --features dev --example conv_layers -- [batch] [32|28]`.
use rbl_ops::dev::*;
use rbl_ops::nchw_to_halo;
use std::time::Instant;
fn main() {
    rbl_ops::keep_freed_buffers();
    let b: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(128);
    let s0: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(32);
    let (s1, s2) = (s0.div_ceil(2), s0.div_ceil(4));
    let shapes = [(3, 16, s0, 1, 1), (16, 16, s0, 1, 10), (16, 32, s0, 2, 1), (32, 32, s1, 1, 9), (32, 64, s1, 2, 1), (64, 64, s2, 1, 9)];
    let mut tot = [0.0; 3];
    for (ci, co, hw, s, count) in shapes {
        let g = HaloConv { batch: b, c_in: ci, h: hw, w: hw, c_out: co, stride: s };
        let x = nchw_to_halo(&(0..b * ci * hw * hw).map(|i| ((i * 7919 % 2003) as f32) / 1000.0 - 1.0).collect::<Vec<_>>(), b, ci, hw, hw);
        let w: Vec<f32> = (0..co * ci * 9).map(|i| ((i * 31 % 17) as f32) / 17.0 - 0.5).collect();
        let y = halo_conv_forward(&x, &w, &g);
        // The fastest of a few calls (ms): the VM's neighbours only ever slow a call down.
        let best = |call: &dyn Fn() -> Vec<f32>| {
            (0..7)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(call());
                    t.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::MAX, f64::min)
        };
        let f = best(&|| halo_conv_forward(&x, &w, &g));
        let d = best(&|| halo_conv_input_grad(&y, &w, &g));
        let wg = best(&|| halo_conv_weight_grad(&x, &y, &g));
        let o = g.output();
        let macs = (b * co * ci * 9 * o.h * o.w) as f64;
        println!(
            "{ci:>3}->{co:<3} {hw:>2} s{s} x{count:<2}  fwd {f:6.2} ms ({:5.1} GF/s)  dx {d:6.2} ms  dw {wg:6.2} ms ({:5.1} GF/s)",
            2.0 * macs / f / 1e6,
            2.0 * macs / wg / 1e6
        );
        tot[0] += f * count as f64;
        tot[1] += if ci < 8 { 0.0 } else { d * count as f64 };
        tot[2] += wg * count as f64;
    }
    println!("total fwd {:.1} ms dx {:.1} dw {:.1} = {:.1} ms (no stem dx)", tot[0], tot[1], tot[2], tot.iter().sum::<f64>());
}
