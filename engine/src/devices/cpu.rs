//! The CPU: cores, memory and the SIMD features our kernels (and users) care about.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CpuInfo {
    pub brand: String,
    pub arch: &'static str,
    pub physical_cores: Option<usize>,
    pub logical_cores: usize,
    /// Of avx2, fma, f16c, avx512f, avx512_vnni, avx_vnni (x86-64); neon, dotprod, i8mm (aarch64).
    pub simd: Vec<&'static str>,
    /// The dot-product kernel set the engine picks on this CPU (`quant::dot::Isa`).
    pub kernels: &'static str,
    /// The ternary back end's kernel path (`ternary::kernels::Kernels`).
    pub ternary_kernels: &'static str,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
}

/// SIMD features of the running CPU, by the names users know from /proc/cpuinfo and vendor docs.
pub fn simd_features() -> Vec<&'static str> {
    let mut f = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        let checks: [(&'static str, bool); 6] = [
            ("avx2", std::is_x86_feature_detected!("avx2")),
            ("fma", std::is_x86_feature_detected!("fma")),
            ("f16c", std::is_x86_feature_detected!("f16c")),
            ("avx512f", std::is_x86_feature_detected!("avx512f")),
            ("avx512_vnni", std::is_x86_feature_detected!("avx512vnni")),
            ("avx_vnni", avx_vnni()),
        ];
        f.extend(checks.iter().filter(|(_, on)| *on).map(|(n, _)| *n));
    }
    #[cfg(target_arch = "aarch64")]
    {
        let checks: [(&'static str, bool); 3] = [
            ("neon", std::arch::is_aarch64_feature_detected!("neon")),
            (
                "dotprod",
                std::arch::is_aarch64_feature_detected!("dotprod"),
            ),
            ("i8mm", std::arch::is_aarch64_feature_detected!("i8mm")),
        ];
        f.extend(checks.iter().filter(|(_, on)| *on).map(|(n, _)| *n));
    }
    f
}

/// AVX-VNNI (the VEX-encoded form on Alder Lake / Zen 5 without AVX-512): CPUID leaf 7, sub-leaf 1, EAX bit 4,
/// and the OS must save AVX state (which the avx2 check covers).
#[cfg(target_arch = "x86_64")]
fn avx_vnni() -> bool {
    // CPUID exists on every x86-64 CPU (safe since Rust 1.87); leaf 7 is valid when the maximum leaf is ≥ 7.
    let max_leaf = std::arch::x86_64::__cpuid(0).eax;
    if max_leaf < 7 || !std::is_x86_feature_detected!("avx2") {
        return false;
    }
    let r = std::arch::x86_64::__cpuid_count(7, 1);
    r.eax & (1 << 4) != 0
}

pub fn detect() -> CpuInfo {
    let mut sys = sysinfo::System::new();
    sys.refresh_cpu_all();
    sys.refresh_memory();
    let brand = sys
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_owned())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    CpuInfo {
        brand,
        arch: std::env::consts::ARCH,
        physical_cores: sysinfo::System::physical_core_count(),
        logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        simd: simd_features(),
        kernels: crate::quant::dot::Isa::detect().name(),
        ternary_kernels:
            crate::ternary::kernels::Kernels::for_isa(crate::quant::dot::Isa::detect()).name,
        memory_total_bytes: sys.total_memory(),
        memory_available_bytes: sys.available_memory(),
    }
}
