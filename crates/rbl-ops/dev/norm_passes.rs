//! Timing of the halo BatchNorm kernels on the ResNet-32 stage shapes (development aid).
use rbl_ops::HaloGeometry;
use rbl_ops::dev::*;
use std::time::Instant;
fn main() {
    rbl_ops::keep_freed_buffers();
    // `-- 8`: a batch that stays in cache (the passes' arithmetic rather than memory).
    let batch: usize = std::env::args().nth(1).map(|s| s.parse().expect("batch")).unwrap_or(128);
    for (c, hw) in [(16usize, 32usize), (32, 16), (64, 8)] {
        let g = HaloGeometry { batch, h: hw, w: hw, c };
        let x: Vec<f32> = (0..g.len()).map(|i| ((i * 7919 % 2003) as f32) / 1000.0 - 1.0).collect();
        let gamma = vec![1.0f32; c];
        let beta = vec![0.1f32; c];
        let reps = 10 * 128 / batch;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(halo_moments(&x, &g));
        }
        let m = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(halo_affine_forward(&x, &gamma, &beta, Some(&x), true, &g));
        }
        let a = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let (y, mean, var) = halo_bn_train_forward(&x, &gamma, &beta, None, true, 1e-5, &g);
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(halo_grad_sums(&x, &y, &x, &mean, true, &g));
        }
        let s = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(halo_bn_train_backward(&x, &y, &x, &gamma, &mean, &var, true, true, 1e-5, &g));
        }
        let b = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        // A halo tensor whose ring is zero: the whole border is scanned (as in training).
        let zeroed = rbl_ops::nchw_to_halo(&x[..g.batch * c * hw * hw], g.batch, c, hw, hw);
        let t = Instant::now();
        for _ in 0..reps {
            assert!(rbl_ops::dev::ring_is_zero(&zeroed, &g));
        }
        let r = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        println!(
            "c{c} {hw}x{hw} ({:.1} MB): moments {m:.2} ms, affine+res {a:.2}, grad sums {s:.2}, full backward {b:.2}, ring check {r:.2}",
            g.len() as f64 * 4e-6
        );
    }
}
