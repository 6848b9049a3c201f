//! Int8 rows · per-token int8 activations, as one exact integer dot product per row (the kernels of the
//! engine's `head = "i8"` rows): the scalar reference, AVX2 (`vpmaddubsw` on |w| and x with w's sign) and NEON
//! `sdot`. Four rows a call, so one activation load serves four rows.

use crate::Isa;

/// Σ w·x in i32, the reference.
pub fn dot_scalar(w: &[i8], x: &[i8]) -> i32 {
    w.iter().zip(x).map(|(&a, &b)| a as i32 * b as i32).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot4_avx2(w: [&[i8]; 4], x: &[i8]) -> [i32; 4] {
    use std::arch::x86_64::*;
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_si256(); 4];
        let n = x.len() / 32;
        for b in 0..n {
            let xv = _mm256_loadu_si256(x.as_ptr().add(32 * b) as *const __m256i);
            for (a, wr) in acc.iter_mut().zip(&w) {
                let p = wr.as_ptr().add(32 * b);
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(1024));
                let wv = _mm256_loadu_si256(p as *const __m256i);
                // |w| × (x with w's sign): unsigned × signed bytes; |w|, |x| ≤ 127 keeps each pair ≤ 32258.
                let prod = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(prod, ones));
            }
        }
        let mut out = [0i32; 4];
        for (o, a) in out.iter_mut().zip(acc) {
            *o = crate::dot::lanes::hsum_i32(a);
        }
        // Columns past the last multiple of 32 (none for real heads).
        for (o, wr) in out.iter_mut().zip(&w) {
            *o += dot_scalar(&wr[32 * n..], &x[32 * n..]);
        }
        out
    }
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon,dotprod")]
unsafe fn dot4_neon(w: [&[i8]; 4], x: &[i8]) -> [i32; 4] {
    use std::arch::aarch64::*;
    unsafe {
        let mut acc = [vdupq_n_s32(0); 4];
        let n = x.len() / 16;
        for b in 0..n {
            let xv = vld1q_s8(x.as_ptr().add(16 * b));
            for (a, wr) in acc.iter_mut().zip(&w) {
                let wv = vld1q_s8(wr.as_ptr().add(16 * b));
                // sdot: four signed byte products per 32-bit lane, exact (`vdotq_s32` is not stable yet).
                std::arch::asm!(
                    "sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b",
                    acc = inout(vreg) *a,
                    w = in(vreg) wv,
                    x = in(vreg) xv,
                    options(pure, nomem, nostack, preserves_flags)
                );
            }
        }
        let mut out = [0i32; 4];
        for ((o, a), wr) in out.iter_mut().zip(acc).zip(&w) {
            *o = vaddvq_s32(a) + dot_scalar(&wr[16 * n..], &x[16 * n..]);
        }
        out
    }
}

/// The path an int8-row head runs: SIMD (AVX2, or NEON with dotprod) only where detected — the field is private,
/// so a value of this type is proof that its kernel runs on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I8Path {
    simd: bool,
}

impl I8Path {
    /// The scalar reference.
    pub const SCALAR: I8Path = I8Path { simd: false };

    /// SIMD where this CPU has it and `isa` allows it (`HEARTH_ISA=scalar` gives the reference).
    pub fn for_isa(isa: Isa) -> I8Path {
        let isa = isa.or_scalar();
        I8Path {
            simd: isa != Isa::Scalar && Self::detected(),
        }
    }

    fn detected() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::is_x86_feature_detected!("avx2")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("neon")
                && std::arch::is_aarch64_feature_detected!("dotprod")
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        false
    }

    /// Every path this CPU can run, the reference first.
    pub fn runnable() -> Vec<I8Path> {
        let mut v = vec![Self::SCALAR];
        if Self::detected() {
            v.push(I8Path { simd: true });
        }
        v
    }
}

/// Four rows · one token (|w|, |x| ≤ 127), on `path`.
pub fn dot4(w: [&[i8]; 4], x: &[i8], path: I8Path) -> [i32; 4] {
    #[cfg(target_arch = "x86_64")]
    if path.simd {
        // SAFETY: an `I8Path` with `simd` is made only after AVX2 was detected at run time.
        return unsafe { dot4_avx2(w, x) };
    }
    #[cfg(target_arch = "aarch64")]
    if path.simd {
        // SAFETY: an `I8Path` with `simd` is made only after NEON and dotprod were detected at run time.
        return unsafe { dot4_neon(w, x) };
    }
    let _ = path;
    w.map(|r| dot_scalar(r, x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_equals_scalar_exactly() {
        let mut s = 0x2545_f491_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for cols in [32, 96, 2560, 2567] {
            let w: Vec<Vec<i8>> = (0..4)
                .map(|_| {
                    (0..cols)
                        .map(|_| (next() % 255) as i32 as i8)
                        .map(|v| v.max(-127))
                        .collect()
                })
                .collect();
            for x in [
                (0..cols)
                    .map(|_| (next() % 255) as i32 as i8)
                    .map(|v| v.max(-127))
                    .collect::<Vec<i8>>(),
                vec![127; cols],
                vec![-127; cols],
            ] {
                let rows = [&w[0][..], &w[1][..], &w[2][..], &w[3][..]];
                let want = rows.map(|r| dot_scalar(r, &x));
                for path in I8Path::runnable() {
                    assert_eq!(dot4(rows, &x, path), want, "{path:?} cols {cols}");
                }
            }
        }
    }
}
