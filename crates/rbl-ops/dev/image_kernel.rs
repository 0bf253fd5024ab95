//! The AVX-512 image convolution kernel alone, one image repeated in cache (development aid):
//! `cargo run --release -p rbl-ops --features dev --example image_kernel -- [c] [hw] [reps]
//! [images]`; with images > 1 the kernel cycles over that many distinct input and output
//! images, so that they come from and go to the outer caches or memory as in a batch.
use rbl_ops::dev::*;
use std::time::Instant;
fn main() {
    let arg = |i: usize, d: usize| std::env::args().nth(i).map(|s| s.parse().unwrap()).unwrap_or(d);
    let (c, hw, reps, images) = (arg(1, 64), arg(2, 8), arg(3, 4000), arg(4, 1));
    assert!(avx512_available());
    let wp = hw + 2;
    let len = wp * wp * c;
    let x: Vec<f32> = (0..len * images).map(|i| ((i * 7919 % 2003) as f32) / 1000.0 - 1.0).collect();
    let taps: Vec<f32> = (0..9 * c * c).map(|i| ((i * 31 % 17) as f32) / 17.0 - 0.5).collect();
    let mut y = vec![0.0f32; len * images];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for r in 0..reps {
            let n = r % images;
            let (xn, yn) = (&x[n * len..][..len], &mut y[n * len..][..len]);
            // SAFETY: the feature is asserted; xn and yn are one image each, taps 9·c·c.
            unsafe { conv_image(std::hint::black_box(xn), &taps, yn, hw, hw, c, c) };
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    let flop = 2.0 * (9 * c * c * hw * hw) as f64;
    println!("{c} channels {hw}x{hw}: {:.2} us per image, {:.1} GF/s", best * 1e6, flop / best / 1e9);
}
