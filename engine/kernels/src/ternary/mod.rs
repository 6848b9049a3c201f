//! Ternary group kernels: for one packed group (4 rows) and T tokens of int8 activations, the integer sums
//! Σ c·x (codes c ∈ {0, 1, 2}, not yet offset by −1). `scalar` is the reference; `x86` the AVX2, AVX-VNNI and
//! AVX-512 VNNI versions, `neon` the AArch64 `sdot` one, which must agree with it exactly (integer arithmetic, no
//! rounding anywhere). The packed layout itself (and the matmul over it) is the engine's `ternary::packed`: rows
//! four at a time, each group `cols / CHUNK` chunks of 128 bytes, 32 bytes per row, byte j of a row's line holding
//! the codes of columns 128k + j + 32l in bits 2l..2l+2.

/// Columns per chunk (one 32-byte line per row).
pub const CHUNK: usize = 128;
/// Rows per interleaved group.
pub const GROUP: usize = 4;

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

use crate::dot::Isa;

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
    /// The kernel set of an instruction-set path; a path this CPU lacks gives the scalar reference.
    pub fn for_isa(isa: Isa) -> Kernels {
        let isa = isa.or_scalar();
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

/// Every one-token kernel this CPU can run, named: each ISA's row passes and the chunk-ordered kernels that
/// replace them (the ternary benchmark sets them side by side; the tests hold each to the reference).
pub fn one_token_variants() -> Vec<(&'static str, Group1Fn)> {
    let mut v: Vec<(&'static str, Group1Fn)> = vec![("scalar", scalar::KERNELS.t1)];
    let run = Isa::runnable();
    #[cfg(target_arch = "x86_64")]
    {
        if run.contains(&Isa::Avx2) {
            v.push(("avx2 rows", x86::avx2::t1));
            v.push(("avx2 chunks", x86::avx2_chunk::t1));
        }
        if run.contains(&Isa::AvxVnni) {
            v.push(("avxvnni rows", x86::avx_vnni::t1));
        }
        if run.contains(&Isa::Avx512Vnni) {
            v.push(("vnni ymm rows", x86::vnni::t1));
            v.push(("vnni zmm chunks", x86::vnni512::t1));
        }
    }
    #[cfg(target_arch = "aarch64")]
    if run.contains(&Isa::NeonDot) {
        v.push(("neon sdot", neon::DOTPROD.t1));
    }
    let _ = run;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packed group of random codes (each 2-bit field 0, 1 or 2) over `cols` columns.
    fn group(cols: usize, next: &mut impl FnMut() -> u64) -> Vec<u8> {
        (0..cols / CHUNK * CHUNK)
            .map(|_| (0..4).fold(0u8, |b, l| b | ((next() % 3) as u8) << (2 * l)))
            .collect()
    }

    /// Every kernel of every runnable path — the kernel sets and each one-token variant — equals the scalar
    /// reference exactly, on random activations and on the extremes.
    #[test]
    fn every_kernel_equals_the_reference() {
        let mut s = 0x5eed_1234_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for cols in [128, 384, 2560] {
            let g = group(cols, &mut next);
            let mut xs: Vec<Vec<i8>> = (0..4)
                .map(|_| {
                    (0..cols)
                        .map(|_| ((next() % 255) as i32 - 127) as i8)
                        .collect()
                })
                .collect();
            xs.push(vec![127; cols]);
            xs.push(vec![-127; cols]);
            for x in &xs {
                let want = (scalar::KERNELS.t1)(&g, &[&x[..]]);
                for (name, t1) in one_token_variants() {
                    assert_eq!(t1(&g, &[&x[..]]), want, "{name} cols {cols}");
                }
            }
            let each: Vec<[i32; GROUP]> = xs[..4]
                .iter()
                .map(|x| (scalar::KERNELS.t1)(&g, &[&x[..]])[0])
                .collect();
            for isa in Isa::runnable() {
                let k = Kernels::for_isa(isa);
                let four = (k.t4)(&g, &[&xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]]);
                assert_eq!(four[..], each[..], "{isa:?} t4 cols {cols}");
                let three = (k.t3)(&g, &[&xs[0][..], &xs[1][..], &xs[2][..]]);
                assert_eq!(three[..], each[..3], "{isa:?} t3 cols {cols}");
                let two = (k.t2)(&g, &[&xs[0][..], &xs[1][..]]);
                assert_eq!(two[..], each[..2], "{isa:?} t2 cols {cols}");
                assert_eq!(
                    (k.t1)(&g, &[&xs[0][..]])[0],
                    each[0],
                    "{isa:?} t1 cols {cols}"
                );
            }
        }
    }
}
