//! This machine's memory bandwidth as the CPU kernels see it: a read pass (sum), a write pass
//! (fill) and a copy over buffers far larger than the caches, on 1 thread and on every thread
//! rayon has. With peak_flops it places each layer on the roofline in bench/README.md: a pass
//! that moves B bytes cannot take less than B / bandwidth, however fast its arithmetic.
//!
//! `cargo run --release -p rbl-ops --features dev --example peak_bandwidth -- [MiB per buffer]`

use rayon::prelude::*;
use std::time::Instant;

/// Best of `reps` timings of `f`, in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn measure(threads: usize, mib: usize) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
    let n = mib << 18; // f32 values
    let chunk = 1 << 16;
    let src: Vec<f32> = (0..n).map(|i| (i % 1024) as f32).collect();
    let mut dst = vec![0.0f32; n];
    let bytes = (n * 4) as f64;
    pool.install(|| {
        let read = best(5, || {
            // An integer xor of the bits: vectorised (an f32 sum in order would be bound by the
            // add's latency, not by memory).
            let s: u32 = src.par_chunks(chunk).map(|c| c.iter().fold(0u32, |a, x| a ^ x.to_bits())).reduce(|| 0, |a, b| a ^ b);
            std::hint::black_box(s);
        });
        let write = best(5, || dst.par_chunks_mut(chunk).for_each(|c| c.fill(std::hint::black_box(1.5))));
        let copy = best(5, || dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.copy_from_slice(s)));
        println!(
            "{{\"bench\":\"memory_bandwidth\",\"threads\":{threads},\"mib\":{mib},\"read_gb_s\":{:.1},\"write_gb_s\":{:.1},\"copy_gb_s\":{:.1}}}",
            bytes / read / 1e9,
            bytes / write / 1e9,
            2.0 * bytes / copy / 1e9
        );
    });
}

fn main() {
    let mib: usize = std::env::args().nth(1).map(|s| s.parse().expect("MiB")).unwrap_or(512);
    measure(1, mib);
    let all = rayon::current_num_threads();
    if all > 1 {
        measure(all, mib);
    }
}
