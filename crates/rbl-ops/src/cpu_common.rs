//! What the CPU kernels share: one GEMM call shape, the split of a batch into rayon tasks, and
//! output buffers that are written in full before they are read.

/// dst[m×n] (row-major, contiguous) = (accumulate ? dst : 0) + lhs · rhs, where lhs is m×k and
/// rhs k×n, each given as (slice, column stride, row stride) with non-negative strides. Rows of
/// an operand may overlap (the halo convolution reads its input that way); every element the
/// strides reach must lie inside its slice, which is checked.
pub(crate) fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: (&[f32], isize, isize),
    rhs: (&[f32], isize, isize),
) {
    assert!(dst.len() >= m * n, "gemm: destination too small");
    let reach = |rows: usize, cols: usize, (s, cs, rs): (&[f32], isize, isize)| {
        assert!(cs >= 0 && rs >= 0, "gemm: negative stride");
        assert!(
            rows == 0 || cols == 0 || (rows - 1) * (rs as usize) + (cols - 1) * (cs as usize) < s.len(),
            "gemm: operand outside its slice"
        );
    };
    reach(m, k, lhs);
    reach(k, n, rhs);
    // SAFETY: the assertions above keep every element the strides address for lhs (m×k), rhs
    // (k×n) and dst (m×n) inside its slice; dst is a unique borrow, so it overlaps neither
    // operand; gemm reads lhs and rhs and writes only dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.0.as_ptr(),
            lhs.1,
            lhs.2,
            rhs.0.as_ptr(),
            rhs.1,
            rhs.2,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Images per rayon task for passes where each image is computed on its own (so the split does
/// not change the result): `tasks_per_thread` tasks for every worker of the pool, for balance,
/// and no more, so that per-task scratch buffers are reused.
pub(crate) fn images_per_task(batch: usize, tasks_per_thread: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1) * tasks_per_thread).max(1)
}

/// Images per weight-gradient task; the tasks' partial sums are added in order. Fixed rather
/// than derived from the thread count, so that the gradient, and with it a whole run, is the
/// same bitwise however many threads compute it.
pub(crate) const WEIGHT_GRAD_TASK_IMAGES: usize = 32;

/// A vector of `n` values that the caller overwrites completely before reading any: the
/// halo kernels' outputs are written in full (interior by the kernels, ring by `zero_ring`),
/// and zero-filling them first was a measurable share of the step (a memset of every
/// activation).
///
/// # Safety
/// The values are uninitialised: the caller must write every one of the `n` values before any
/// is read, and must not return the vector before then.
pub(crate) unsafe fn uninit_f32(n: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: the capacity is n; f32 has no invalid bit patterns, and the caller's contract
    // (above) is that all n values are written before any is read.
    #[allow(clippy::uninit_vec)]
    unsafe {
        v.set_len(n)
    };
    v
}

use crate::cpu_features::CpuLevel;

/// Whether the kernels may use AVX-512F: the CPU has it and `RBL_CPU_LEVEL` does not cap
/// below it; decided once.
pub(crate) fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| std::is_x86_feature_detected!("avx512f") && crate::cpu_features::level_cap() >= CpuLevel::Avx512)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn $name(args) [-> ret] { body }` so that the body, a plain-Rust kernel, runs
/// compiled with AVX-512F enabled where the kernels may use it, with AVX2 and FMA where they
/// may use those (a CPU without AVX-512, or `RBL_CPU_LEVEL=avx2`), and as built (SSE2 on
/// x86-64) elsewhere. The three builds stay reachable as `$name::baseline`, `$name::avx2` and
/// `$name::wide` (a module of the same name), for the tests that compare them.
///
/// The BatchNorm passes are loops over 16–64 channels per pixel; built for baseline x86-64
/// they run four SSE lanes at a time and are bound by their own instruction count, not by
/// memory. Compiled for AVX-512 or AVX2 the same source does the same IEEE operations per lane,
/// in the same order (Rust never fuses a multiply and an add, nor reorders float sums; an
/// explicit `mul_add` is one rounding in every build), so the results are the same bits: only
/// the register width changes. The tests compare the builds bit for bit.
macro_rules! vector_builds {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu_common::has_avx512f() {
                // SAFETY: `wide` needs AVX-512F, which the CPU has (detected at run time).
                return unsafe { $name::wide($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu_common::has_avx2_fma() {
                // SAFETY: `avx2` needs AVX2 and FMA, which the CPU has (detected at run time).
                return unsafe { $name::avx2($($arg),*) };
            }
            $name::baseline($($arg),*)
        }

        /// The three builds of the function of the same name.
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            /// As built for the target.
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn baseline($($arg: $ty),*) $(-> $ret)? $body

            /// With AVX2 and FMA enabled.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn avx2($($arg: $ty),*) $(-> $ret)? {
                baseline($($arg),*)
            }

            /// With AVX-512F enabled.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn wide($($arg: $ty),*) $(-> $ret)? {
                baseline($($arg),*)
            }
        }
    };
}
pub(crate) use vector_builds;

/// Whether the kernels may use AVX2 and FMA: the CPU has them and `RBL_CPU_LEVEL` does not cap
/// below them; decided once.
pub(crate) fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| {
            std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && crate::cpu_features::level_cap() >= CpuLevel::Avx2Fma
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn $name<const …>(args) { body }` so that the body, a plain-Rust kernel built on
/// `f32::mul_add`, runs compiled with AVX2 and FMA where the CPU has them, and as built
/// elsewhere; both builds stay reachable as `$name::baseline` and `$name::fma`.
///
/// For the kernels that give the AVX-512 kernels' sums on other CPUs
/// ([`halo_conv_portable`](super::halo_conv_portable)). `mul_add` is one correctly rounded
/// fused multiply-add however it is compiled: an FMA instruction where the feature is enabled,
/// the C library's `fmaf` (the same value, slowly) where not. So both builds give the same
/// bits, and enabling the feature only makes the lanes wider and the FMA one instruction.
macro_rules! fma_twin {
    ($(#[$meta:meta])* $vis:vis fn $name:ident $(<$(const $g:ident: $gt:ty),*>)? ($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name $(<$(const $g: $gt),*>)? ($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if $crate::cpu_common::has_avx2_fma() {
                // SAFETY: `fma` needs AVX2 and FMA, which the CPU has (detected at run time).
                return unsafe { $name::fma $(::<$($g),*>)? ($($arg),*) };
            }
            $name::baseline $(::<$($g),*>)? ($($arg),*)
        }

        /// The two builds of the function of the same name.
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            /// As built for the target.
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn baseline $(<$(const $g: $gt),*>)? ($($arg: $ty),*) $body

            /// With AVX2 and FMA enabled.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            pub(super) fn fma $(<$(const $g: $gt),*>)? ($($arg: $ty),*) {
                baseline $(::<$($g),*>)? ($($arg),*)
            }
        }
    };
}
pub(crate) use fma_twin;
