//! Prototype: padded-NHWC 3x3 conv as 3 GEMMs with overlapping rows.
use rayon::prelude::*;
use std::time::Instant;
unsafe fn g(m: usize, n: usize, k: usize, dst: *mut f32, dcs: isize, drs: isize, acc: bool, l: *const f32, lcs: isize, lrs: isize, r: *const f32, rcs: isize, rrs: isize) {
    unsafe { gemm::gemm(m, n, k, dst, dcs, drs, acc, l, lcs, lrs, r, rcs, rrs, 1.0f32, 1.0f32, false, false, false, gemm::Parallelism::None) }
}
fn main() {
    rbl::ops::allocator::keep_freed_buffers();
    let b = 128usize;
    for (c, hw) in [(16usize, 32usize), (32, 16), (64, 8)] {
        let (hp, wp) = (hw + 2, hw + 2);
        let img = hp * wp * c;
        let x: Vec<f32> = (0..b * img).map(|i| ((i * 7919 % 2003) as f32) / 1000.0 - 1.0).collect();
        let w: Vec<f32> = (0..9 * c * c).map(|i| ((i * 31 % 17) as f32) / 17.0 - 0.5).collect(); // [ky][kx][ci][co]
        let mut y = vec![0.0f32; b * img];
        let per_task = 8usize;
        let fwd = |y: &mut Vec<f32>| {
            y.par_chunks_mut(per_task * img).zip(x.par_chunks(per_task * img)).for_each(|(ys, xs)| {
                let nimg = xs.len() / img;
                if std::env::var("GROUP").is_ok() {
                    let m = nimg * img / c - 2 * wp - 2;
                    let q0 = wp + 1;
                    for ky in 0..3 {
                        unsafe {
                            g(m, c, 3 * c, ys.as_mut_ptr().add(q0 * c), 1, c as isize, ky > 0,
                              xs.as_ptr().add((q0 - wp - 1 + ky * wp) * c), 1, c as isize,
                              w.as_ptr().add(ky * 3 * c * c), 1, c as isize);
                        }
                    }
                    return;
                }
                if std::env::var("TRANS").is_ok() {
                  for i in 0..nimg {
                    let (xb, yb) = (&xs[i * img..][..img], &mut ys[i * img..][..img]);
                    let m = hw * wp - 2;
                    let q0 = wp + 1;
                    for ky in 0..3 {
                        unsafe {
                            g(c, m, 3 * c, yb.as_mut_ptr().add(q0 * c), c as isize, 1, ky > 0,
                              w.as_ptr().add(ky * 3 * c * c), c as isize, 1,
                              xb.as_ptr().add((q0 - wp - 1 + ky * wp) * c), c as isize, 1);
                        }
                    }
                  }
                  return;
                }
                for i in 0..nimg {
                    let (xb, yb) = (&xs[i * img..][..img], &mut ys[i * img..][..img]);
                    let m = hw * wp - 2;
                    let q0 = wp + 1;
                    for ky in 0..3 {
                        unsafe {
                            g(m, c, 3 * c, yb.as_mut_ptr().add(q0 * c), 1, c as isize, ky > 0,
                              xb.as_ptr().add((q0 - wp - 1 + ky * wp) * c), 1, c as isize,
                              w.as_ptr().add(ky * 3 * c * c), 1, c as isize);
                        }
                    }
                }
            });
        };
        fwd(&mut y);
        let reps = 10;
        let t = Instant::now();
        for _ in 0..reps { fwd(&mut y); }
        let f = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        // weight grad: dW[ky] (3c x c) = sum_q X[q+off, 0..3c]^T dY[q, :]
        let mut dw = vec![0.0f32; 9 * c * c];
        let wg = |dw: &mut Vec<f32>| {
            let parts: Vec<Vec<f32>> = x.par_chunks(32 * img).zip(y.par_chunks(32 * img)).map(|(xs, ys)| {
                let mut part = vec![0.0f32; 9 * c * c];
                let nimg = xs.len() / img;
                // whole group at once: rows q from wp+1 of first to end-wp-1 of last
                let m = nimg * img / c - 2 * wp - 2;
                let q0 = wp + 1;
                for ky in 0..3 {
                    unsafe {
                        g(3 * c, c, m, part.as_mut_ptr().add(ky * 3 * c * c), 1, c as isize, false,
                          xs.as_ptr().add((q0 - wp - 1 + ky * wp) * c), c as isize, 1,
                          ys.as_ptr().add(q0 * c), 1, c as isize);
                    }
                }
                part
            }).collect();
            for p in parts { for (d, s) in dw.iter_mut().zip(p) { *d += s; } }
        };
        wg(&mut dw);
        let t = Instant::now();
        for _ in 0..reps { wg(&mut dw); }
        let d = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
        let macs = (b * c * c * 9 * hw * hw) as f64;
        println!("{c}->{c} {hw}: fwd {f:.2} ms ({:.0} GF/s useful)  dw {d:.2} ms ({:.0} GF/s)", 2.0 * macs / f / 1e6, 2.0 * macs / d / 1e6);
    }
}
