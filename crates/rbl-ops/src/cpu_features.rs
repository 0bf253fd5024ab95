//! What this CPU offers rbl's kernels, and which path they take: reported by `rbl-bench` in
//! every result line, so a speed ratio always says which kind of CPU it was measured on
//! (rbl is ahead of PyTorch on AVX-512 CPUs and behind it on AVX2-only ones: a ratio without
//! its CPU's level is not a number anyone can use).

/// The widest instruction set the kernels may use, lowest first (so a cap compares with `>=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuLevel {
    /// As built for the target (SSE2 on x86-64).
    Baseline,
    /// AVX2 with FMA: the portable kernels, 8 lanes.
    Avx2Fma,
    /// AVX-512F: the tuned kernels (the default where the CPU has it).
    Avx512,
}

/// The environment variable that caps the kernels' instruction set below what the CPU has:
/// `avx2` runs an AVX-512 machine as an AVX2-only one (to measure that path, and to check it
/// gives the same bits), `baseline` as plain x86-64. Unset: everything the CPU has.
pub const LEVEL_VARIABLE: &str = "RBL_CPU_LEVEL";

/// The cap [`LEVEL_VARIABLE`] asks for, or the error naming it and its values.
pub fn requested_level() -> Result<CpuLevel, String> {
    match std::env::var(LEVEL_VARIABLE) {
        Err(std::env::VarError::NotPresent) => Ok(CpuLevel::Avx512),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "avx512" => Ok(CpuLevel::Avx512),
            "avx2" => Ok(CpuLevel::Avx2Fma),
            "baseline" => Ok(CpuLevel::Baseline),
            other => Err(format!("{LEVEL_VARIABLE}={other}: expected avx512, avx2 or baseline")),
        },
        Err(e) => Err(format!("{LEVEL_VARIABLE}: {e}")),
    }
}

/// The cap in force: [`requested_level`], or no cap where the variable is malformed (the
/// binaries check it first with [`requested_level`] and stop with its message).
pub(crate) fn level_cap() -> CpuLevel {
    requested_level().unwrap_or(CpuLevel::Avx512)
}

/// The widest path rbl's convolution and BatchNorm kernels take in this process: `avx512` (the
/// tuned kernels), `avx2-fma` (the portable kernels, 8 lanes with FMA) or `baseline` (as built).
/// Read from the same once-made decisions the kernels dispatch on, so it cannot disagree with
/// them (they include [`LEVEL_VARIABLE`]'s cap).
pub fn kernel_path() -> &'static str {
    if crate::cpu_common::has_avx512f() {
        "avx512"
    } else if crate::cpu_common::has_avx2_fma() {
        "avx2-fma"
    } else {
        "baseline"
    }
}

/// The instruction sets that matter to the kernels (x86-64; all false elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX-512 Foundation: the direct convolutions and the BatchNorm twins run 16 lanes wide.
    pub avx512f: bool,
    /// AVX2 with FMA: the portable kernels' fused multiply-adds run 8 lanes wide.
    pub avx2_fma: bool,
    /// AVX-512 BF16 (dot products of bf16 pairs into f32): what a bf16 path on the CPU would use.
    pub avx512_bf16: bool,
    /// AMX tiles with bf16 (Intel Sapphire Rapids and later).
    pub amx_bf16: bool,
}

/// This CPU's features, detected at run time (whatever [`LEVEL_VARIABLE`] caps the kernels to:
/// [`kernel_path`] says what they use).
pub fn cpu_features() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        CpuFeatures {
            avx512f: std::is_x86_feature_detected!("avx512f"),
            avx2_fma: std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
            avx512_bf16: std::is_x86_feature_detected!("avx512bf16"),
            amx_bf16: cpu_reports_amx_bf16(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        CpuFeatures { avx512f: false, avx2_fma: false, avx512_bf16: false, amx_bf16: false }
    }
}

/// CPUID leaf 7, sub-leaf 0, EDX bit 22: the CPU has AMX-BF16. (The standard library's
/// detection of it is unstable; whether the OS enables the tiles is not asked: this is a
/// report of the CPU, not a promise that a kernel could use them.)
#[cfg(target_arch = "x86_64")]
fn cpu_reports_amx_bf16() -> bool {
    // SAFETY: CPUID exists on every x86-64 CPU, and leaf 7 is answered (with zeros where the
    // CPU has fewer leaves, which reads as "no").
    #[allow(unused_unsafe)]
    let leaf = unsafe { std::arch::x86_64::__cpuid_count(7, 0) };
    leaf.edx & (1 << 22) != 0
}

impl CpuFeatures {
    /// The features present, space-separated in the names /proc/cpuinfo uses.
    pub fn names(&self) -> String {
        let all = [(self.avx512f, "avx512f"), (self.avx2_fma, "avx2 fma"), (self.avx512_bf16, "avx512_bf16"), (self.amx_bf16, "amx_bf16")];
        all.iter().filter(|(on, _)| *on).map(|(_, name)| *name).collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names follow the features; the path is the widest the CPU has under the cap.
    #[test]
    fn the_kernel_path_is_the_widest_the_cpu_has() {
        let none = CpuFeatures { avx512f: false, avx2_fma: false, avx512_bf16: false, amx_bf16: false };
        assert_eq!(none.names(), "");
        let all = CpuFeatures { avx512f: true, avx2_fma: true, avx512_bf16: true, amx_bf16: true };
        assert_eq!(all.names(), "avx512f avx2 fma avx512_bf16 amx_bf16");
        let here = cpu_features();
        let cap = level_cap();
        let widest = if here.avx512f && cap >= CpuLevel::Avx512 {
            "avx512"
        } else if here.avx2_fma && cap >= CpuLevel::Avx2Fma {
            "avx2-fma"
        } else {
            "baseline"
        };
        assert_eq!(kernel_path(), widest);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(here.avx512f, std::is_x86_feature_detected!("avx512f"));
    }
}
