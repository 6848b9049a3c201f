//! K-quant kernels (Q4_K, Q5_K, Q6_K) on Q8_K activations (`ActFormat::Q8K`: one scale per 256) for x86-64 with
//! AVX2. Each 32-weight sub-block's product is scaled by its sub-scale in integers (`vpmaddubsw`, then `vpmaddwd`
//! against the scale instead of against ones), so a super-block of 256 weights costs each token one horizontal sum
//! — or, for eight tokens, one transpose — and the two FMAs of `scalar::k_accumulate`. The integer sums are exact
//! and the FMAs are the reference's, so every shape here (one row, four rows, many tokens) equals the scalar
//! reference bit for bit. `vpdpbusd` (VNNI) would save the `vpmaddwd` only to need a 32-bit multiply for the
//! scale, so VNNI brings nothing here; AVX-512BW does, to prompts: `many_wide` multiplies two sub-blocks per
//! instruction (the same integers, so the same bits), which doubles the work per instruction on CPUs with full-width
//! 512-bit units (AMD Zen 5, Intel server cores).

use super::lanes::{f16_at, hsum, hsum_i32, lane_sums, prefetch_next_rows};
use super::{DotFn, DotManyFn, DotR4Fn};
use crate::blocks::*;
use crate::GgmlType;
use crate::{QGroup, QRow, GROUP, QK};
use std::arch::x86_64::*;

/// How far ahead (in super-blocks) each row stream is prefetched.
const PREFETCH_BLOCKS: usize = 4;

/// One sub-block's weights, decoded: unsigned codes and the i16 multipliers of `vpmaddwd` (the sub-scale, or
/// Q6_K's two 16-weight sub-scales).
#[derive(Clone, Copy)]
struct Codes {
    q: __m256i,
    scale: __m256i,
}

/// A super-block header, decoded once per 256 weights.
#[derive(Clone, Copy)]
struct Hdr {
    d: f32,
    dmin: f32,
    /// Q4_K/Q5_K: the eight 6-bit sub-scales, then the eight mins.
    scales: [u8; 16],
}

trait KFormat {
    const BYTES: usize;
    /// Whether sub-blocks have mins (Q4_K, Q5_K), subtracted through the activations' block sums.
    const MINS: bool;
    /// Whether codes are offset by −32 (Q6_K), subtracted in the integer product.
    const MINUS_32: bool;
    unsafe fn header(blk: *const u8) -> Hdr;
    unsafe fn codes(blk: *const u8, h: &Hdr, j: usize) -> Codes;
}

/// The sub-scales and mins of a Q4_K/Q5_K super-block (`scale_min_k4` for all eight at once): bytes 0..4 hold the
/// low six bits of scales 0..4 and their top two bits feed scales 4..8; bytes 4..8 the same for the mins; bytes
/// 8..12 the low four bits of scales and mins 4..8.
#[inline(always)]
unsafe fn scales_mins(p: *const u8) -> [u8; 16] {
    unsafe {
        let a = |i: usize| std::ptr::read_unaligned(p.add(4 * i) as *const u32);
        let (a0, a1, a2) = (a(0), a(1), a(2));
        let (low6, low4, top2) = (0x3f3f_3f3f_u32, 0x0f0f_0f0f_u32, 0x0303_0303_u32);
        let words = [
            a0 & low6,
            (a2 & low4) | (((a0 >> 6) & top2) << 4),
            a1 & low6,
            ((a2 >> 4) & low4) | (((a1 >> 6) & top2) << 4),
        ];
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(words) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// Low nibbles (even `j`) or high nibbles (odd `j`) of the 32 bytes at `p`.
#[inline(always)]
unsafe fn nibbles(p: *const u8, j: usize) -> __m256i {
    unsafe {
        let q = _mm256_loadu_si256(p as *const __m256i);
        let q = if j.is_multiple_of(2) {
            q
        } else {
            _mm256_srli_epi16(q, 4)
        };
        _mm256_and_si256(q, _mm256_set1_epi8(0xF))
    }
}

struct Q4K;
impl KFormat for Q4K {
    const BYTES: usize = Q4_K_BYTES;
    const MINS: bool = true;
    const MINUS_32: bool = false;
    #[inline(always)]
    unsafe fn header(blk: *const u8) -> Hdr {
        unsafe {
            Hdr {
                d: f16_at(blk),
                dmin: f16_at(blk.add(2)),
                scales: scales_mins(blk.add(4)),
            }
        }
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, h: &Hdr, j: usize) -> Codes {
        unsafe {
            Codes {
                q: nibbles(blk.add(16 + 32 * (j / 2)), j),
                scale: _mm256_set1_epi16(h.scales[j] as i16),
            }
        }
    }
}

/// Q5_K: Q4_K's nibbles (at byte 48) with a fifth bit, bit j of byte l of `qh` (at byte 16) for element l of
/// sub-block j.
struct Q5K;
impl KFormat for Q5K {
    const BYTES: usize = Q5_K_BYTES;
    const MINS: bool = true;
    const MINUS_32: bool = false;
    #[inline(always)]
    unsafe fn header(blk: *const u8) -> Hdr {
        unsafe { Q4K::header(blk) }
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, h: &Hdr, j: usize) -> Codes {
        unsafe {
            let qh = _mm256_loadu_si256(blk.add(16) as *const __m256i);
            // Bit j of each byte moved to bit 4; bits shifted in from the neighbouring byte are masked off.
            let hb = match j {
                0 => _mm256_slli_epi16(qh, 4),
                1 => _mm256_slli_epi16(qh, 3),
                2 => _mm256_slli_epi16(qh, 2),
                3 => _mm256_slli_epi16(qh, 1),
                4 => qh,
                5 => _mm256_srli_epi16(qh, 1),
                6 => _mm256_srli_epi16(qh, 2),
                _ => _mm256_srli_epi16(qh, 3),
            };
            let q = _mm256_or_si256(
                nibbles(blk.add(48 + 32 * (j / 2)), j),
                _mm256_and_si256(hb, _mm256_set1_epi8(0x10)),
            );
            Codes {
                q,
                scale: _mm256_set1_epi16(h.scales[j] as i16),
            }
        }
    }
}

/// Q6_K: sub-block j = 4n + p is part p of half n (128 weights: low nibbles of 64 bytes, two high bits from 32
/// more), with a signed sub-scale per 16 weights (bytes 192 + 2j and 192 + 2j + 1) and codes offset by 32.
struct Q6K;
impl KFormat for Q6K {
    const BYTES: usize = Q6_K_BYTES;
    const MINS: bool = false;
    const MINUS_32: bool = true;
    #[inline(always)]
    unsafe fn header(blk: *const u8) -> Hdr {
        unsafe {
            Hdr {
                d: f16_at(blk.add(208)),
                dmin: 0.0,
                scales: [0; 16],
            }
        }
    }
    #[inline(always)]
    unsafe fn codes(blk: *const u8, _: &Hdr, j: usize) -> Codes {
        unsafe {
            let (n, p) = (j / 4, j % 4);
            let ql = nibbles(blk.add(n * 64 + 32 * (p % 2)), p / 2);
            let qh = _mm256_loadu_si256(blk.add(128 + n * 32) as *const __m256i);
            let qh = match p {
                0 => _mm256_slli_epi16(qh, 4),
                1 => _mm256_slli_epi16(qh, 2),
                2 => qh,
                _ => _mm256_srli_epi16(qh, 2),
            };
            let q = _mm256_or_si256(ql, _mm256_and_si256(qh, _mm256_set1_epi8(0x30)));
            let sc = blk.add(192 + 2 * j) as *const i8;
            Codes {
                q,
                scale: _mm256_set_m128i(
                    _mm_set1_epi16(*sc.add(1) as i16),
                    _mm_set1_epi16(*sc as i16),
                ),
            }
        }
    }
}

/// Eight i32 partial sums of sub-scale × Σ code·x over one sub-block (exact: |pair sums| < 2^15).
#[inline(always)]
unsafe fn product<F: KFormat>(c: &Codes, x: __m256i) -> __m256i {
    unsafe {
        let p = _mm256_maddubs_epi16(c.q, x);
        let p = if F::MINUS_32 {
            _mm256_sub_epi16(p, _mm256_maddubs_epi16(_mm256_set1_epi8(32), x))
        } else {
            p
        };
        _mm256_madd_epi16(p, c.scale)
    }
}

#[inline(always)]
unsafe fn load_x(xq: &QRow<'_>, b: usize) -> __m256i {
    debug_assert!((b + 1) * QK <= xq.q.len());
    unsafe { _mm256_loadu_si256(xq.q.as_ptr().add(b * QK) as *const __m256i) }
}

/// The eight mins of a header as floats.
#[inline(always)]
unsafe fn mins_f(h: &Hdr) -> __m256 {
    unsafe {
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
            h.scales.as_ptr().add(8) as *const __m128i,
        )))
    }
}

/// Σ mins × block sums of one super-block of one token: exact (|each| ≤ 63 · 4064, the total < 2^24), so the
/// order of the additions does not matter.
#[inline(always)]
unsafe fn min_sum(h: &Hdr, sums: *const f32) -> f32 {
    unsafe { hsum(_mm256_mul_ps(mins_f(h), _mm256_loadu_ps(sums))) }
}

#[inline(always)]
unsafe fn prefetch<F: KFormat>(blk: *const u8) {
    let ahead = blk.wrapping_add(PREFETCH_BLOCKS * F::BYTES);
    for line in (0..F::BYTES).step_by(64) {
        // SAFETY: a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8) };
    }
}

/// w · x for one row and one token.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn one<F: KFormat>(w: &[u8], xq: QRow<'_>) -> f32 {
    unsafe {
        let (mut acc, mut off) = (0f32, 0f32);
        for sb in 0..w.len() / F::BYTES {
            let blk = w.as_ptr().add(sb * F::BYTES);
            let h = F::header(blk);
            let mut ai = _mm256_setzero_si256();
            for j in 0..8 {
                ai = _mm256_add_epi32(
                    ai,
                    product::<F>(&F::codes(blk, &h, j), load_x(&xq, sb * 8 + j)),
                );
            }
            let dx = *xq.d.get_unchecked(sb * 8);
            acc = (hsum_i32(ai) as f32).mul_add(h.d * dx, acc);
            if F::MINS {
                off = min_sum(&h, xq.sum.as_ptr().add(sb * 8)).mul_add(h.dmin * dx, off);
            }
        }
        acc - off
    }
}

/// out[r] = w[r] · x for four rows and one token, row r in lane r: each activation vector is loaded once for the
/// four rows, and the four row streams are independent work in flight.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows4<F: KFormat>(w: &[&[u8]; 4], xq: QRow<'_>) -> [f32; 4] {
    unsafe {
        let (mut acc, mut off) = (_mm_setzero_ps(), _mm_setzero_ps());
        for sb in 0..w[0].len() / F::BYTES {
            let blk: [*const u8; 4] = std::array::from_fn(|r| w[r].as_ptr().add(sb * F::BYTES));
            prefetch_next_rows(w, sb, F::BYTES);
            let h: [Hdr; 4] = std::array::from_fn(|r| F::header(blk[r]));
            let mut ai = [_mm256_setzero_si256(); 4];
            for j in 0..8 {
                let x = load_x(&xq, sb * 8 + j);
                for r in 0..4 {
                    ai[r] = _mm256_add_epi32(ai[r], product::<F>(&F::codes(blk[r], &h[r], j), x));
                }
            }
            let dx = _mm_set1_ps(*xq.d.get_unchecked(sb * 8));
            let isum = _mm_cvtepi32_ps(_mm256_castsi256_si128(lane_sums(&ai)));
            let d = _mm_setr_ps(h[0].d, h[1].d, h[2].d, h[3].d);
            acc = _mm_fmadd_ps(isum, _mm_mul_ps(d, dx), acc);
            if F::MINS {
                let sums = xq.sum.as_ptr().add(sb * 8);
                let m = _mm_setr_ps(
                    min_sum(&h[0], sums),
                    min_sum(&h[1], sums),
                    min_sum(&h[2], sums),
                    min_sum(&h[3], sums),
                );
                let dmin = _mm_setr_ps(h[0].dmin, h[1].dmin, h[2].dmin, h[3].dmin);
                off = _mm_fmadd_ps(m, _mm_mul_ps(dmin, dx), off);
            }
        }
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), _mm_sub_ps(acc, off));
        out
    }
}

/// One super-block's share of the multi-token kernels, token t in lane t: `isums` its exact integer sums, scaled
/// with `k_accumulate`'s two FMAs (the mins through the tokens' block sums).
#[inline(always)]
unsafe fn super_step<F: KFormat>(
    h: &Hdr,
    isums: __m256i,
    g: &QGroup<'_>,
    sb: usize,
    acc: &mut __m256,
    off: &mut __m256,
) {
    unsafe {
        let dx = _mm256_loadu_ps(g.d.as_ptr().add(sb * 8 * GROUP));
        let isum = _mm256_cvtepi32_ps(isums);
        *acc = _mm256_fmadd_ps(isum, _mm256_mul_ps(_mm256_set1_ps(h.d), dx), *acc);
        if F::MINS {
            let mut m = _mm256_setzero_ps();
            for j in 0..8 {
                m = _mm256_fmadd_ps(
                    _mm256_set1_ps(h.scales[8 + j] as f32),
                    _mm256_loadu_ps(g.sum.as_ptr().add((sb * 8 + j) * GROUP)),
                    m,
                );
            }
            *off = _mm256_fmadd_ps(m, _mm256_mul_ps(_mm256_set1_ps(h.dmin), dx), *off);
        }
    }
}

/// out[t] = w · x[t] for N ≤ 8 tokens, token t in lane t: each sub-block is decoded once for all of them, and a
/// super-block's N integer sums are transposed into one vector and scaled there.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn many<F: KFormat, const N: usize>(w: &[u8], g: &QGroup<'_>) -> [f32; N] {
    unsafe {
        let (mut acc, mut off) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for sb in 0..w.len() / F::BYTES {
            let blk = w.as_ptr().add(sb * F::BYTES);
            prefetch::<F>(blk);
            let h = F::header(blk);
            let mut ai = [_mm256_setzero_si256(); N];
            for j in 0..8 {
                let c = F::codes(blk, &h, j);
                for (t, a) in ai.iter_mut().enumerate() {
                    *a = _mm256_add_epi32(
                        *a,
                        product::<F>(&c, load_x(g.rows.get_unchecked(t), sb * 8 + j)),
                    );
                }
            }
            super_step::<F>(&h, lane_sums(&ai), g, sb, &mut acc, &mut off);
        }
        let mut lanes = [0f32; GROUP];
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_sub_ps(acc, off));
        std::array::from_fn(|t| lanes[t])
    }
}

/// Sub-blocks 2k (low half) and 2k + 1 (high half) of a super-block: codes and `vpmaddwd` multipliers.
#[inline(always)]
unsafe fn codes_pair<F: KFormat>(blk: *const u8, h: &Hdr, k: usize) -> (__m512i, __m512i) {
    unsafe {
        let (a, b) = (F::codes(blk, h, 2 * k), F::codes(blk, h, 2 * k + 1));
        let join =
            |lo: __m256i, hi: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        (join(a.q, b.q), join(a.scale, b.scale))
    }
}

/// `product` for two sub-blocks at once.
#[inline(always)]
unsafe fn product_pair<F: KFormat>(q: __m512i, scale: __m512i, x: __m512i) -> __m512i {
    unsafe {
        let p = _mm512_maddubs_epi16(q, x);
        let p = if F::MINUS_32 {
            _mm512_sub_epi16(p, _mm512_maddubs_epi16(_mm512_set1_epi8(32), x))
        } else {
            p
        };
        _mm512_madd_epi16(p, scale)
    }
}

/// `many` on 512-bit registers: each instruction multiplies two sub-blocks (64 weights) of one token. The i32
/// partial sums are folded to 256 bits before the transpose, so every integer sum — and so every float — is `many`'s.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
unsafe fn many_wide<F: KFormat, const N: usize>(w: &[u8], g: &QGroup<'_>) -> [f32; N] {
    unsafe {
        let (mut acc, mut off) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for sb in 0..w.len() / F::BYTES {
            let blk = w.as_ptr().add(sb * F::BYTES);
            prefetch::<F>(blk);
            let h = F::header(blk);
            let mut ai = [_mm512_setzero_si512(); N];
            for k in 0..4 {
                let (q, scale) = codes_pair::<F>(blk, &h, k);
                for (t, a) in ai.iter_mut().enumerate() {
                    let xq = g.rows.get_unchecked(t);
                    debug_assert!((sb * 8 + 2 * k + 2) * QK <= xq.q.len());
                    let x = _mm512_loadu_si512(
                        xq.q.as_ptr().add((sb * 8 + 2 * k) * QK) as *const __m512i
                    );
                    *a = _mm512_add_epi32(*a, product_pair::<F>(q, scale, x));
                }
            }
            let halves: [__m256i; N] = std::array::from_fn(|t| {
                _mm256_add_epi32(
                    _mm512_castsi512_si256(ai[t]),
                    _mm512_extracti64x4_epi64::<1>(ai[t]),
                )
            });
            super_step::<F>(&h, lane_sums(&halves), g, sb, &mut acc, &mut off);
        }
        let mut lanes = [0f32; GROUP];
        _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_sub_ps(acc, off));
        std::array::from_fn(|t| lanes[t])
    }
}

/// Whether `xq` is a Q8_K row long enough for `w`.
fn fits<F: KFormat>(w: &[u8], xq: &QRow<'_>) -> bool {
    let blocks = w.len() / F::BYTES * 8;
    xq.is_q8k() && xq.d.len() >= blocks && xq.q.len() >= blocks * QK
}

/// The safe entry points of one K-quant: one row × one token, four rows × one token, one row × two to eight
/// tokens. `dot::kernel` and its siblings hand them out only after detecting AVX2, FMA and F16C; the lengths they
/// read are checked here.
macro_rules! entries {
    ($F:ty: $one:ident, $r4:ident, $many:ident, $many_wide:ident) => {
        pub fn $one(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
            assert!(fits::<$F>(w, &xq), "K-quant kernels read Q8_K activations");
            // SAFETY: lengths checked above; features detected before this kernel was handed out.
            unsafe { one::<$F>(w, xq) }
        }
        pub fn $r4(w: &[&[u8]; 4], xq: QRow<'_>) -> [f32; 4] {
            assert!(
                w.iter()
                    .all(|r| r.len() == w[0].len() && fits::<$F>(r, &xq)),
                "K-quant kernels read Q8_K activations"
            );
            // SAFETY: as above.
            unsafe { rows4::<$F>(w, xq) }
        }
        pub fn $many(w: &[u8], g: &QGroup<'_>, out: &mut [f32]) {
            let n = many_fits::<$F>(w, g, out);
            // SAFETY: as above.
            unsafe { tokens!(n, out, many::<$F, _>(w, g)) }
        }
        /// `$many` on 512-bit registers; handed out only after detecting AVX-512F and AVX-512BW.
        pub fn $many_wide(w: &[u8], g: &QGroup<'_>, out: &mut [f32]) {
            let n = many_fits::<$F>(w, g, out);
            // SAFETY: as above.
            unsafe { tokens!(n, out, many_wide::<$F, _>(w, g)) }
        }
    };
}

/// The token count of a multi-token call, after checking every length the kernels read.
fn many_fits<F: KFormat>(w: &[u8], g: &QGroup<'_>, out: &[f32]) -> usize {
    let n = g.rows.len();
    let blocks = w.len() / F::BYTES * 8;
    assert!(
        (2..=GROUP).contains(&n)
            && out.len() >= n
            && g.d.len() >= blocks * GROUP
            && g.sum.len() >= blocks * GROUP
            && g.rows.iter().all(|r| fits::<F>(w, r)),
        "K-quant kernels read Q8_K activations"
    );
    n
}

entries!(Q4K: q4k, q4k_r4, q4k_n, q4k_n_wide);
entries!(Q5K: q5k, q5k_r4, q5k_n, q5k_n_wide);
entries!(Q6K: q6k, q6k_r4, q6k_n, q6k_n_wide);

/// The one-token, four-row and multi-token kernels of a K-quant (AVX2, FMA and F16C detected by the caller;
/// `wide`: AVX-512F and AVX-512BW too, for the 512-bit multi-token kernel). Generation keeps 256 bits: it waits
/// on memory, not on multiplies.
pub fn kernels(ty: GgmlType, wide: bool) -> Option<(DotFn, DotR4Fn, DotManyFn)> {
    let (one, r4, many, many_wide): (DotFn, DotR4Fn, DotManyFn, DotManyFn) = match ty {
        GgmlType::Q4K => (q4k, q4k_r4, q4k_n, q4k_n_wide),
        GgmlType::Q5K => (q5k, q5k_r4, q5k_n, q5k_n_wide),
        GgmlType::Q6K => (q6k, q6k_r4, q6k_n, q6k_n_wide),
        _ => return None,
    };
    Some((one, r4, if wide { many_wide } else { many }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_decode_equals_scale_min_k4() {
        let mut s = 0x9e37_79b9_u32;
        for _ in 0..2000 {
            let bytes: [u8; 12] = std::array::from_fn(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                s as u8
            });
            // SAFETY: 12 readable bytes.
            let got = unsafe { super::scales_mins(bytes.as_ptr()) };
            for j in 0..8 {
                let (sc, m) = crate::blocks::scale_min_k4(j, &bytes);
                assert_eq!((got[j], got[8 + j]), (sc, m), "{bytes:?} sub-block {j}");
            }
        }
    }
}
