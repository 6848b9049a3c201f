//! Group kernels: for one packed group (4 rows) and T tokens of int8 activations, the integer sums Σ c·x (codes
//! c ∈ {0, 1, 2}, not yet offset by −1). `scalar` is the reference; `x86` the AVX2, AVX-VNNI and AVX-512 VNNI versions,
//! `neon` the AArch64 `sdot` one, which must agree with it exactly (integer arithmetic, no rounding anywhere).

/// `t1`..`t4` (the `Group*Fn` shapes) over a module's `group_impl::<T>`, a `#[target_feature]` function that the
/// module's `Kernels` is selected for only after run-time detection of those features.
macro_rules! group_entry_points {
    () => {
        pub fn t1(w: &[u8], x: &[&[i8]; 1]) -> [[i32; GROUP]; 1] {
            // SAFETY: selected only after run-time detection of the features (`Isa::best_supported`).
            unsafe { group_impl::<1>(w, x) }
        }
        pub fn t2(w: &[u8], x: &[&[i8]; 2]) -> [[i32; GROUP]; 2] {
            // SAFETY: as above.
            unsafe { group_impl::<2>(w, x) }
        }
        pub fn t3(w: &[u8], x: &[&[i8]; 3]) -> [[i32; GROUP]; 3] {
            // SAFETY: as above.
            unsafe { group_impl::<3>(w, x) }
        }
        pub fn t4(w: &[u8], x: &[&[i8]; 4]) -> [[i32; GROUP]; 4] {
            // SAFETY: as above.
            unsafe { group_impl::<4>(w, x) }
        }
    };
}

#[cfg(target_arch = "aarch64")]
pub mod neon;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use crate::quant::dot::Isa;

/// One group × one token.
pub type Group1Fn = fn(group: &[u8], x: &[&[i8]; 1]) -> [[i32; 4]; 1];
/// One group × two and × three tokens (small batches, speculative verification: the line is decoded once).
pub type Group2Fn = fn(group: &[u8], x: &[&[i8]; 2]) -> [[i32; 4]; 2];
pub type Group3Fn = fn(group: &[u8], x: &[&[i8]; 3]) -> [[i32; 4]; 3];
/// One group × four tokens (prompt processing: each 32-byte line is decoded once for four tokens).
pub type Group4Fn = fn(group: &[u8], x: &[&[i8]; 4]) -> [[i32; 4]; 4];

/// The kernel set for one instruction-set path.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub t1: Group1Fn,
    pub t2: Group2Fn,
    pub t3: Group3Fn,
    pub t4: Group4Fn,
    /// What `hearth doctor` reports.
    pub name: &'static str,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Kernels {
    pub fn for_isa(isa: Isa) -> Kernels {
        #[cfg(target_arch = "x86_64")]
        match isa {
            Isa::Avx512Vnni => return x86::VNNI,
            Isa::AvxVnni => return x86::AVX_VNNI,
            Isa::Avx2 => return x86::AVX2,
            Isa::Scalar | Isa::NeonDot => {}
        }
        #[cfg(target_arch = "aarch64")]
        if isa == Isa::NeonDot {
            return neon::DOTPROD;
        }
        let _ = isa;
        scalar::KERNELS
    }
}
