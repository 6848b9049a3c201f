//! AVX2, AVX-VNNI and AVX-512 VNNI group kernels. Per 32-byte line (128 weights of one row): one 16-bit shift and four byte
//! masks give the four quarters of codes (two of them times 4); each multiplies 32 int8 activations as unsigned ×
//! signed bytes. AVX2 (`vpmaddubsw`) keeps 16-bit sums for eight chunks before widening (`vpmaddwd`); VNNI
//! (`vpdpbusd`, in its AVX-512VL or its VEX-encoded AVX-VNNI form) accumulates in 32 bits directly. Both are exact: integer arithmetic that cannot overflow for
//! absmax-quantized activations (|x| ≤ 127). With AVX-512 VNNI one token (decode) takes `vnni512`: whole
//! 128-byte chunks in 512-bit registers, a quarter of the instructions per weight byte; with AVX2 alone, `avx2_chunk`:
//! the same address order in 256-bit registers.

use super::Kernels;

macro_rules! ternary_isa {
    ($modname:ident, $features:literal, $vnni:expr, $dpbusd:ident) => {
        pub mod $modname {
            use crate::dot::lanes::hsum_i32;
            use crate::ternary::{CHUNK, GROUP};
            use std::arch::x86_64::*;

            /// How many 128-byte chunks ahead to prefetch (tuned with `cargo bench --bench ternary`).
            const PREFETCH: usize = 64;
            /// Chunks summed in 16 bits before widening to 32 (see the bound below).
            const WIDEN: usize = 8;

            #[target_feature(enable = $features)]
            unsafe fn group_impl<const T: usize>(w: &[u8], x: &[&[i8]; T]) -> [[i32; GROUP]; T] {
                unsafe {
                    let n_chunks = w.len() / CHUNK;
                    for xt in x {
                        debug_assert!(xt.len() >= n_chunks * CHUNK);
                    }
                    let m_lo = _mm256_set1_epi8(0b0011);
                    let m_hi = _mm256_set1_epi8(0b1100);
                    let ones = _mm256_set1_epi16(1);
                    let mut out = [[0i32; GROUP]; T];
                    for i in 0..GROUP {
                        // Quarters 0 and 2 come out as codes c (one shift by 4 serves both pairs); quarters 1 and 3
                        // as 4c, by mask alone. "even" sums c·x, "odd" 4c·x; odd is divided by 4 at the end (exact).
                        let mut even = [_mm256_setzero_si256(); T];
                        let mut odd = [_mm256_setzero_si256(); T];
                        // VNNI: second accumulators for quarters 2 and 3, so one token's four `vpdpbusd` a
                        // line form two chains each, not one (latency-bound at one token otherwise).
                        let mut even_b = [_mm256_setzero_si256(); T];
                        let mut odd_b = [_mm256_setzero_si256(); T];
                        let mut even16 = [_mm256_setzero_si256(); T];
                        let mut odd16 = [_mm256_setzero_si256(); T];
                        for k in 0..n_chunks {
                            let base = w.as_ptr().add(k * CHUNK);
                            if i < 2 {
                                // Line i of the chunk PREFETCH chunks ahead, spread over two row passes: one decode
                                // step streams 520 MB, and the hardware prefetcher alone leaves most of the
                                // bandwidth unused.
                                _mm_prefetch::<_MM_HINT_T0>(
                                    base.wrapping_add(PREFETCH * CHUNK + 64 * i) as *const i8,
                                );
                            }
                            let v = _mm256_loadu_si256(base.add(i * 32) as *const __m256i);
                            let v4 = _mm256_srli_epi16(v, 4);
                            let p0 = _mm256_and_si256(v, m_lo);
                            let p1 = _mm256_and_si256(v, m_hi);
                            let p2 = _mm256_and_si256(v4, m_lo);
                            let p3 = _mm256_and_si256(v4, m_hi);
                            for t in 0..T {
                                let xp = x[t].as_ptr().add(k * CHUNK) as *const __m256i;
                                let x0 = _mm256_loadu_si256(xp);
                                let x1 = _mm256_loadu_si256(xp.add(1));
                                let x2 = _mm256_loadu_si256(xp.add(2));
                                let x3 = _mm256_loadu_si256(xp.add(3));
                                if $vnni {
                                    even[t] = $dpbusd(even[t], p0, x0);
                                    even_b[t] = $dpbusd(even_b[t], p2, x2);
                                    odd[t] = $dpbusd(odd[t], p1, x1);
                                    odd_b[t] = $dpbusd(odd_b[t], p3, x3);
                                } else {
                                    // |x| ≤ 127 (absmax quantization), so a 16-bit lane gets at most
                                    // 2·2·127 = 508 per even product pair and 2·8·127 = 2032 per odd one: eight
                                    // chunks of both sums stay below 2^15 before widening.
                                    even16[t] = _mm256_add_epi16(
                                        even16[t],
                                        _mm256_add_epi16(
                                            _mm256_maddubs_epi16(p0, x0),
                                            _mm256_maddubs_epi16(p2, x2),
                                        ),
                                    );
                                    odd16[t] = _mm256_add_epi16(
                                        odd16[t],
                                        _mm256_add_epi16(
                                            _mm256_maddubs_epi16(p1, x1),
                                            _mm256_maddubs_epi16(p3, x3),
                                        ),
                                    );
                                }
                            }
                            if !$vnni && (k % WIDEN == WIDEN - 1 || k + 1 == n_chunks) {
                                for t in 0..T {
                                    even[t] = _mm256_add_epi32(
                                        even[t],
                                        _mm256_madd_epi16(even16[t], ones),
                                    );
                                    odd[t] =
                                        _mm256_add_epi32(odd[t], _mm256_madd_epi16(odd16[t], ones));
                                    even16[t] = _mm256_setzero_si256();
                                    odd16[t] = _mm256_setzero_si256();
                                }
                            }
                        }
                        for t in 0..T {
                            let e = _mm256_add_epi32(even[t], even_b[t]);
                            let o = _mm256_add_epi32(odd[t], odd_b[t]);
                            out[t][i] = hsum_i32(e) + (hsum_i32(o) >> 2);
                        }
                    }
                    out
                }
            }

            group_entry_points!();
        }
    };
}

// The AVX2 instance never reaches the dpbusd arm; the name only satisfies the macro.
ternary_isa!(avx2, "avx2,fma", false, _mm256_dpbusd_avx_epi32);
ternary_isa!(avx_vnni, "avx2,fma,avxvnni", true, _mm256_dpbusd_avx_epi32);
ternary_isa!(
    vnni,
    "avx2,fma,avx512vnni,avx512vl",
    true,
    _mm256_dpbusd_epi32
);

/// One token on 512-bit registers (AVX-512 VNNI): a chunk's 128 bytes are two loads, rows 0|1 and 2|3, against
/// each quarter of activations broadcast to both halves — a quarter of the vector instructions of the four
/// row passes above. Quarter l is masked in place (`0b11 << 2l`, i.e. 4^l·c, at most 128: still an unsigned
/// byte) and summed in its own accumulator, divided by 4^l at the end (exact: every lane is a multiple of it).
/// Eight independent `vpdpbusd` chains a chunk keep the multiply pipes busy at one token.
pub mod vnni512 {
    use crate::dot::lanes::hsum_i32;
    use crate::ternary::{CHUNK, GROUP};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512vnni,avx512vl,avx2")]
    unsafe fn group1(w: &[u8], x: &[i8]) -> [i32; GROUP] {
        unsafe {
            let n_chunks = w.len() / CHUNK;
            debug_assert!(x.len() >= n_chunks * CHUNK);
            let masks = [
                _mm512_set1_epi8(0b0000_0011),
                _mm512_set1_epi8(0b0000_1100),
                _mm512_set1_epi8(0b0011_0000),
                _mm512_set1_epi8(0b1100_0000u8 as i8),
            ];
            // a[l]: rows 0|1, quarter l; b[l]: rows 2|3.
            let mut a = [_mm512_setzero_si512(); 4];
            let mut b = [_mm512_setzero_si512(); 4];
            // No software prefetch: the chunks are read in address order, which the hardware prefetchers follow
            // (prefetching 8 KB ahead measured 0-7 % slower over the 30 layers on Zen 4).
            for k in 0..n_chunks {
                let base = w.as_ptr().add(k * CHUNK);
                let v01 = _mm512_loadu_si512(base as *const __m512i);
                let v23 = _mm512_loadu_si512(base.add(64) as *const __m512i);
                let xp = x.as_ptr().add(k * CHUNK) as *const __m256i;
                for l in 0..4 {
                    let xl = _mm512_broadcast_i64x4(_mm256_loadu_si256(xp.add(l)));
                    a[l] = _mm512_dpbusd_epi32(a[l], _mm512_and_si512(v01, masks[l]), xl);
                    b[l] = _mm512_dpbusd_epi32(b[l], _mm512_and_si512(v23, masks[l]), xl);
                }
            }
            let (r0, r1) = fold(a);
            let (r2, r3) = fold(b);
            [r0, r1, r2, r3]
        }
    }

    /// Σ_l q[l] / 4^l, summed over each 256-bit half (one row each).
    #[inline]
    #[target_feature(enable = "avx512f,avx2")]
    unsafe fn fold(q: [__m512i; 4]) -> (i32, i32) {
        let s = _mm512_add_epi32(
            _mm512_add_epi32(q[0], _mm512_srai_epi32::<2>(q[1])),
            _mm512_add_epi32(_mm512_srai_epi32::<4>(q[2]), _mm512_srai_epi32::<6>(q[3])),
        );
        // SAFETY: AVX2 is enabled here.
        unsafe {
            (
                hsum_i32(_mm512_castsi512_si256(s)),
                hsum_i32(_mm512_extracti64x4_epi64::<1>(s)),
            )
        }
    }

    pub fn t1(w: &[u8], x: &[&[i8]; 1]) -> [[i32; GROUP]; 1] {
        // SAFETY: selected only after run-time detection of AVX-512 VNNI (`Isa::best_supported`).
        [unsafe { group1(w, x[0]) }]
    }
}

/// One token on AVX2, in address order: each 128-byte chunk (the four rows' 32-byte lines) is read once, against
/// the chunk's four quarters of activations loaded once for all four rows — `avx2::t1` sweeps the matrix four
/// times (a row a pass) and loads the activations four times. The quarters come out as in `avx2` (c for 0 and 2
/// after one 16-bit shift, 4c for 1 and 3 by mask); the 4c·x pair sums are multiples of 4, so they are divided
/// in 16 bits (exact) and one 16-bit accumulator a row takes all four quarters.
pub mod avx2_chunk {
    use crate::dot::lanes::hsum_i32;
    use crate::ternary::{CHUNK, GROUP};
    use std::arch::x86_64::*;

    /// Chunks summed in 16 bits before widening: a chunk adds at most 2·(2·3·127) + 2·(2·12·127)/4 = 3048 to a
    /// lane (even for the unused code 3), so eight stay below 2^15.
    const WIDEN: usize = 8;

    #[target_feature(enable = "avx2,fma")]
    unsafe fn group1(w: &[u8], x: &[i8]) -> [i32; GROUP] {
        unsafe {
            let n_chunks = w.len() / CHUNK;
            debug_assert!(x.len() >= n_chunks * CHUNK);
            let m_lo = _mm256_set1_epi8(0b0011);
            let m_hi = _mm256_set1_epi8(0b1100);
            let ones = _mm256_set1_epi16(1);
            let mut acc16 = [_mm256_setzero_si256(); GROUP];
            let mut acc = [_mm256_setzero_si256(); GROUP];
            for k in 0..n_chunks {
                let base = w.as_ptr().add(k * CHUNK);
                let xp = x.as_ptr().add(k * CHUNK) as *const __m256i;
                let xs = [
                    _mm256_loadu_si256(xp),
                    _mm256_loadu_si256(xp.add(1)),
                    _mm256_loadu_si256(xp.add(2)),
                    _mm256_loadu_si256(xp.add(3)),
                ];
                for (r, acc16) in acc16.iter_mut().enumerate() {
                    let v = _mm256_loadu_si256(base.add(r * 32) as *const __m256i);
                    let v4 = _mm256_srli_epi16(v, 4);
                    let even = _mm256_add_epi16(
                        _mm256_maddubs_epi16(_mm256_and_si256(v, m_lo), xs[0]),
                        _mm256_maddubs_epi16(_mm256_and_si256(v4, m_lo), xs[2]),
                    );
                    let odd = _mm256_add_epi16(
                        _mm256_maddubs_epi16(_mm256_and_si256(v, m_hi), xs[1]),
                        _mm256_maddubs_epi16(_mm256_and_si256(v4, m_hi), xs[3]),
                    );
                    *acc16 =
                        _mm256_add_epi16(*acc16, _mm256_add_epi16(even, _mm256_srai_epi16(odd, 2)));
                }
                if k % WIDEN == WIDEN - 1 || k + 1 == n_chunks {
                    for (a, a16) in acc.iter_mut().zip(acc16.iter_mut()) {
                        *a = _mm256_add_epi32(*a, _mm256_madd_epi16(*a16, ones));
                        *a16 = _mm256_setzero_si256();
                    }
                }
            }
            [
                hsum_i32(acc[0]),
                hsum_i32(acc[1]),
                hsum_i32(acc[2]),
                hsum_i32(acc[3]),
            ]
        }
    }

    pub fn t1(w: &[u8], x: &[&[i8]; 1]) -> [[i32; GROUP]; 1] {
        // SAFETY: selected only after run-time detection of AVX2 (`Isa::best_supported`).
        [unsafe { group1(w, x[0]) }]
    }
}

pub const AVX2: Kernels = Kernels {
    t1: avx2_chunk::t1,
    t2: avx2::t2,
    t3: avx2::t3,
    t4: avx2::t4,
    name: "avx2 (vpmaddubsw, whole chunks at one token; i2 4-row groups, per-token int8)",
};

pub const AVX_VNNI: Kernels = Kernels {
    t1: avx_vnni::t1,
    t2: avx_vnni::t2,
    t3: avx_vnni::t3,
    t4: avx_vnni::t4,
    name: "avxvnni (vpdpbusd, i2 4-row groups, per-token int8)",
};

pub const VNNI: Kernels = Kernels {
    t1: vnni512::t1,
    t2: vnni::t2,
    t3: vnni::t3,
    t4: vnni::t4,
    name: "avx512vnni (vpdpbusd zmm at one token, ymm for 2-4; i2 4-row groups, per-token int8)",
};
