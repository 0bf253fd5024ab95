//! This machine's peak fp32 throughput: independent fused multiply-adds on every register the
//! loop can keep busy, on 1 thread and on every thread rayon has (RAYON_NUM_THREADS). The
//! denominator of "fraction of peak" in bench/README.md.
//!
//! `cargo run --release -p rbl-ops --features dev --example peak_flops`
//!
//! AVX-512 (16 lanes) where the CPU has it, else AVX2+FMA (8 lanes), else scalar mul_add: the
//! widest FMA the kernels themselves use. 24 accumulator chains hide the FMA latency (4 cycles
//! × 2 ports on current cores needs ≥ 8 in flight; more costs nothing).

use std::time::Instant;

const CHAINS: usize = 24;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
/// FLOPs done: `iters` × CHAINS × 16 lanes × 2.
unsafe fn fma_avx512(iters: u64) -> (f32, u64) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); CHAINS];
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    let mut sum = _mm512_set1_ps(0.0);
    for x in acc {
        sum = _mm512_add_ps(sum, x);
    }
    (_mm512_reduce_add_ps(sum), iters * CHAINS as u64 * 16 * 2)
}

/// Chains for AVX2's 16 registers (two hold the constants): 24 spilled to the stack and
/// measured 45 GFLOP/s where 12 give the 2 FMA/cycle peak.
const CHAINS_AVX2: usize = 12;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
/// FLOPs done: `iters` × CHAINS_AVX2 × 8 lanes × 2.
unsafe fn fma_avx2(iters: u64) -> (f32, u64) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); CHAINS_AVX2];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut out = [0f32; 8];
    let mut sum = _mm256_set1_ps(0.0);
    for x in acc {
        sum = _mm256_add_ps(sum, x);
    }
    // SAFETY: `out` holds exactly the 8 f32 lanes written; storeu has no alignment need.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
    (out.iter().sum(), iters * CHAINS_AVX2 as u64 * 8 * 2)
}

fn fma_scalar(iters: u64) -> (f32, u64) {
    let mut acc = [0f32; CHAINS];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = x.mul_add(0.999_999, 1e-7);
        }
    }
    (acc.iter().sum(), iters * CHAINS as u64 * 2)
}

/// Runs the widest loop the kernels take on this CPU (under `RBL_CPU_LEVEL`'s cap, so a capped
/// AVX-512 machine reports the AVX2 peak its kernels can reach); returns (checksum, FLOPs, name).
fn fma(iters: u64) -> (f32, u64, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        let path = rbl_ops::kernel_path();
        if path == "avx512" && is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU was just checked to have AVX-512F, the only feature the function enables.
            let (s, f) = unsafe { fma_avx512(iters) };
            return (s, f, "avx512");
        }
        if path != "baseline" && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU was just checked to have AVX2 and FMA, the features the function enables.
            let (s, f) = unsafe { fma_avx2(iters) };
            return (s, f, "avx2+fma");
        }
    }
    let (s, f) = fma_scalar(iters);
    (s, f, "scalar")
}

fn main() {
    let iters = 50_000_000u64;
    fma(iters / 10); // warm the core's clock up
    let threads = rayon::current_num_threads();
    for n in [1, threads] {
        let t0 = Instant::now();
        let results: Vec<(f32, u64, &str)> = {
            use rayon::prelude::*;
            (0..n).into_par_iter().map(|_| fma(iters)).collect()
        };
        let secs = t0.elapsed().as_secs_f64();
        let flops: u64 = results.iter().map(|r| r.1).sum();
        let checksum: f32 = results.iter().map(|r| r.0).sum();
        println!(
            "{{\"bench\":\"peak_fp32\",\"isa\":\"{}\",\"threads\":{n},\"gflop_s\":{:.1},\"checksum\":{checksum:.3}}}",
            results[0].2,
            flops as f64 / secs / 1e9
        );
    }
}
