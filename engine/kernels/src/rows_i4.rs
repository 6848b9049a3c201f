//! Int4 rows with 8-bit block scales · per-token int8 activations (the kernels of the engine's two-pass head,
//! `head = "i4-rescored"`): Σ_b s_b · Σ_{i∈b} q_i·x_i exactly in integers. Layout per row: 32 bytes per 64
//! columns; q + 8 of column 64k + j in the low nibble of byte 32k + j, of column 64k + 32 + j in its high nibble;
//! then the row's block scales, one byte per 32 columns. The scalar reference, AVX2 and AVX-512 (unsigned codes
//! summed, the offset removed with one dot product of the block scales and the token's block sums).

use crate::Isa;

/// Columns per 32-byte chunk (two blocks).
pub const CHUNK: usize = 64;

/// Σ_b s_b · Σ_{i∈b} q_i·x_i in i32, the reference.
pub fn dot_scalar((w, s): (&[u8], &[u8]), x: &[i8]) -> i32 {
    let mut total = 0i32;
    for (k, chunk) in w.chunks_exact(32).enumerate() {
        let (mut lo, mut hi) = (0i32, 0i32);
        for (j, &b) in chunk.iter().enumerate() {
            lo += ((b & 15) as i32 - 8) * x[CHUNK * k + j] as i32;
            hi += ((b >> 4) as i32 - 8) * x[CHUNK * k + 32 + j] as i32;
        }
        total += s[2 * k] as i32 * lo + s[2 * k + 1] as i32 * hi;
    }
    total
}

/// Block sums per token, padded to a multiple of 16 blocks for the vector loop (zero sums past the end).
pub fn padded_blocks(cols: usize) -> usize {
    (cols / 32).div_ceil(16) * 16
}

/// Each 32-column block's activation sum, the offset the AVX2 kernel removes (|Σ| ≤ 32·127 fits i16), appended
/// to `out` with the padding of `padded_blocks`.
pub fn block_sums(x: &[i8], out: &mut Vec<i16>) {
    let start = out.len();
    out.extend(
        x.chunks_exact(32)
            .map(|b| b.iter().map(|&v| v as i16).sum::<i16>()),
    );
    out.resize(start + padded_blocks(x.len()), 0);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn dot4_avx2(w: [(&[u8], &[u8]); 4], x: &[i8], xsum: &[i16]) -> [i32; 4] {
    use std::arch::x86_64::*;
    unsafe {
        let m = _mm256_set1_epi8(15);
        let mut acc = [_mm256_setzero_si256(); 4];
        let n = x.len() / CHUNK;
        for k in 0..n {
            let x0 = _mm256_loadu_si256(x.as_ptr().add(CHUNK * k) as *const __m256i);
            let x1 = _mm256_loadu_si256(x.as_ptr().add(CHUNK * k + 32) as *const __m256i);
            for (a, (codes, scales)) in acc.iter_mut().zip(&w) {
                let p = codes.as_ptr().add(32 * k);
                // The same place four rows on: the next group's rows, read after these four short streams.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(4 * codes.len()) as *const i8);
                let v = _mm256_loadu_si256(p as *const __m256i);
                // Unsigned codes c = q + 8 ≤ 15 × signed x: pairs ≤ 3810; times the block scale (≤ 127) four
                // products a lane ≤ 1.94 M per chunk — i32 holds a row of up to 65 536 columns (`quantize`).
                let plo = _mm256_maddubs_epi16(_mm256_and_si256(v, m), x0);
                let phi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m), x1);
                let slo = _mm256_set1_epi16(*scales.get_unchecked(2 * k) as i16);
                let shi = _mm256_set1_epi16(*scales.get_unchecked(2 * k + 1) as i16);
                *a = _mm256_add_epi32(
                    *a,
                    _mm256_add_epi32(_mm256_madd_epi16(plo, slo), _mm256_madd_epi16(phi, shi)),
                );
            }
        }
        let hs = crate::dot::lanes::hsum_i32;
        let mut out = [0i32; 4];
        for ((o, a), (_, scales)) in out.iter_mut().zip(acc).zip(&w) {
            *o = hs(a) - 8 * scale_offset_avx2(scales, xsum);
        }
        out
    }
}

/// Σ_b s_b·Σ_b x: with codes c = q + 8 the kernels sum Σ_b s_b·Σ c·x and take 8 times this off.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scale_offset_avx2(scales: &[u8], xsum: &[i16]) -> i32 {
    use std::arch::x86_64::*;
    unsafe {
        let mut off = _mm256_setzero_si256();
        let nb = scales.len();
        let mut b = 0;
        while b + 16 <= nb {
            let sv =
                _mm256_cvtepu8_epi16(_mm_loadu_si128(scales.as_ptr().add(b) as *const __m128i));
            let xv = _mm256_loadu_si256(xsum.as_ptr().add(b) as *const __m256i);
            off = _mm256_add_epi32(off, _mm256_madd_epi16(sv, xv));
            b += 16;
        }
        let tail: i32 = (b..nb).map(|i| scales[i] as i32 * xsum[i] as i32).sum();
        crate::dot::lanes::hsum_i32(off) + tail
    }
}

/// The AVX-512 kernel: two chunks (128 columns, four blocks) a step. The four block scales of a step arrive as one
/// 32-bit broadcast and a byte shuffle spreads each over its block's 16-bit lanes — the AVX2 kernel spends more
/// instructions broadcasting scales than multiplying.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn dot4_avx512(w: [(&[u8], &[u8]); 4], x: &[i8], xsum: &[i16]) -> [i32; 4] {
    use std::arch::x86_64::*;
    unsafe {
        let m = _mm512_set1_epi8(15);
        // pshufb controls (per 128-bit lane): 16-bit lanes take scale byte `i`, high byte zeroed by 0x80. The low
        // nibbles of a step are blocks 0 (bytes 0-31) and 2 (bytes 32-63), the high nibbles blocks 1 and 3.
        let ctl = |i: u8| i64::from_le_bytes([i, 0x80, i, 0x80, i, 0x80, i, 0x80]);
        let (c0, c1, c2, c3) = (ctl(0), ctl(1), ctl(2), ctl(3));
        let spread_lo = _mm512_set_epi64(c2, c2, c2, c2, c0, c0, c0, c0);
        let spread_hi = _mm512_set_epi64(c3, c3, c3, c3, c1, c1, c1, c1);
        let mut acc = [_mm512_setzero_si512(); 4];
        let n = x.len() / CHUNK;
        let xp = x.as_ptr();
        let mut k = 0;
        while k < n {
            // A last odd chunk runs in the low halves, the high halves zero (codes, activations and scales).
            let pair = k + 2 <= n;
            let o = CHUNK * k;
            let lo0 = _mm256_loadu_si256(xp.add(o) as *const __m256i);
            let hi0 = _mm256_loadu_si256(xp.add(o + 32) as *const __m256i);
            let (xlo, xhi) = if pair {
                (
                    _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(lo0),
                        _mm256_loadu_si256(xp.add(o + 64) as *const __m256i),
                    ),
                    _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(hi0),
                        _mm256_loadu_si256(xp.add(o + 96) as *const __m256i),
                    ),
                )
            } else {
                (_mm512_zextsi256_si512(lo0), _mm512_zextsi256_si512(hi0))
            };
            for (a, (codes, scales)) in acc.iter_mut().zip(&w) {
                let p = codes.as_ptr().add(32 * k);
                let (v, sb) = if pair {
                    _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(4 * codes.len()) as *const i8);
                    let s = (scales.as_ptr().add(2 * k) as *const i32).read_unaligned();
                    (
                        _mm512_loadu_si512(p as *const __m512i),
                        _mm512_set1_epi32(s),
                    )
                } else {
                    let s = u16::from_le_bytes([scales[2 * k], scales[2 * k + 1]]) as i32;
                    (
                        _mm512_zextsi256_si512(_mm256_loadu_si256(p as *const __m256i)),
                        _mm512_set1_epi32(s),
                    )
                };
                let plo = _mm512_maddubs_epi16(_mm512_and_si512(v, m), xlo);
                let phi = _mm512_maddubs_epi16(_mm512_and_si512(_mm512_srli_epi16(v, 4), m), xhi);
                let slo = _mm512_shuffle_epi8(sb, spread_lo);
                let shi = _mm512_shuffle_epi8(sb, spread_hi);
                *a = _mm512_add_epi32(
                    *a,
                    _mm512_add_epi32(_mm512_madd_epi16(plo, slo), _mm512_madd_epi16(phi, shi)),
                );
            }
            k += 2;
        }
        let mut out = [0i32; 4];
        for ((o, a), (_, scales)) in out.iter_mut().zip(acc).zip(&w) {
            *o = _mm512_reduce_add_epi32(a) - 8 * scale_offset_avx2(scales, xsum);
        }
        out
    }
}

/// The kernel a coarse head runs, chosen at load. The variant is private, so a value of this type is proof
/// that its kernel runs on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I4Path(Path);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Scalar,
    /// AVX2 detected at run time.
    Avx2,
    /// AVX-512 F and BW detected at run time.
    Avx512,
}

impl I4Path {
    /// The scalar reference.
    pub const SCALAR: I4Path = I4Path(Path::Scalar);

    /// The path for the engine's `Isa` (`HEARTH_ISA=avx2` selects the AVX2 kernel here too); only paths this
    /// CPU runs.
    pub fn for_isa(isa: Isa) -> I4Path {
        let runnable = Self::runnable();
        let want = match isa {
            Isa::Avx512Vnni => [Path::Avx512, Path::Avx2],
            Isa::Avx2 | Isa::AvxVnni => [Path::Avx2, Path::Avx2],
            Isa::Scalar | Isa::NeonDot => [Path::Scalar, Path::Scalar],
        };
        want.into_iter()
            .map(I4Path)
            .find(|p| runnable.contains(p))
            .unwrap_or(Self::SCALAR)
    }

    /// Every path this CPU can run, the scalar reference first.
    pub fn runnable() -> Vec<I4Path> {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::is_x86_feature_detected!("avx2");
            let avx512 = avx2
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw");
            [
                (true, Path::Scalar),
                (avx2, Path::Avx2),
                (avx512, Path::Avx512),
            ]
            .into_iter()
            .filter_map(|(ok, p)| ok.then_some(I4Path(p)))
            .collect()
        }
        #[cfg(not(target_arch = "x86_64"))]
        vec![Self::SCALAR]
    }
}

/// Four rows · one token; `xsum`: `block_sums(x)`.
pub fn dot4(w: [(&[u8], &[u8]); 4], x: &[i8], xsum: &[i16], path: I4Path) -> [i32; 4] {
    #[cfg(target_arch = "x86_64")]
    match path.0 {
        // SAFETY: an `I4Path` is made only for paths whose features were detected at run time (`runnable`).
        Path::Avx2 => return unsafe { dot4_avx2(w, x, xsum) },
        Path::Avx512 => return unsafe { dot4_avx512(w, x, xsum) },
        Path::Scalar => {}
    }
    let _ = (path, xsum);
    w.map(|r| dot_scalar(r, x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every runnable path equals the reference on random codes and scales, and on the extremes.
    #[test]
    fn simd_equals_scalar_exactly() {
        let mut s = 0x9e37_79b9_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for cols in [64, 192, 320, 2560] {
            let rows: Vec<(Vec<u8>, Vec<u8>)> = (0..4)
                .map(|i| {
                    let codes = (0..cols / 2)
                        .map(|_| match i {
                            3 => 0x88,
                            _ => (next() % 15 + 1) as u8 | ((next() % 15 + 1) as u8) << 4,
                        })
                        .collect();
                    let scales = (0..cols / 32).map(|_| (next() % 127 + 1) as u8).collect();
                    (codes, scales)
                })
                .collect();
            let rows = [0, 1, 2, 3].map(|i| (&rows[i].0[..], &rows[i].1[..]));
            for x in [
                (0..cols)
                    .map(|_| (next() % 255) as i32 as i8)
                    .map(|v| v.max(-127))
                    .collect::<Vec<i8>>(),
                vec![127; cols],
                vec![-127; cols],
            ] {
                let want = rows.map(|r| dot_scalar(r, &x));
                let mut xsum = Vec::new();
                block_sums(&x, &mut xsum);
                for path in I4Path::runnable() {
                    assert_eq!(dot4(rows, &x, &xsum, path), want, "{path:?} cols {cols}");
                }
            }
        }
    }
}
