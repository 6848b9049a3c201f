//! AVX2 (+FMA, F16C) kernels, instantiated twice: once with `vpmaddubsw`+`vpmaddwd` for the u8×i8 inner product
//! and once with AVX-512 VNNI's `vpdpbusd` (256-bit form, AVX512VL). The instantiation is chosen at run time.

use super::{DotFn, DotManyFn, DotNFFn, DotR4Fn};
use crate::GgmlType;

/// The AVX2 or the VNNI instantiation of a kernel, as the function-pointer type `$t` names.
macro_rules! pick {
    ($vnni:expr, $t:ty, $name:ident) => {
        if $vnni {
            vnni_k::$name as $t
        } else {
            avx2_k::$name as $t
        }
    };
}

pub fn kernel(ty: GgmlType, vnni: bool) -> Option<DotFn> {
    Some(match ty {
        GgmlType::F32 => pick!(vnni, DotFn, f32_),
        GgmlType::F16 => pick!(vnni, DotFn, f16_),
        GgmlType::Q4_0 => pick!(vnni, DotFn, q4_0),
        GgmlType::Q4_1 => pick!(vnni, DotFn, q4_1),
        GgmlType::Q5_0 => pick!(vnni, DotFn, q5_0),
        GgmlType::Q8_0 => pick!(vnni, DotFn, q8_0),
        GgmlType::TQ2_0 => pick!(vnni, DotFn, tq2_0),
        _ => return None,
    })
}

/// Two-to-eight-token kernels (prompts, batches, speculative verification): each weight block is decoded once for
/// all the tokens; bit-identical per token to the one-token kernel.
///
/// `wide` (AVX-512F/BW/VNNI/VL detected): two sub-blocks per 512-bit `vpdpbusd`.
pub fn kernel_many(ty: GgmlType, vnni: bool, wide: bool) -> Option<DotManyFn> {
    if wide {
        match ty {
            GgmlType::Q4_0 => return Some(vnni_k::q4_0_n_wide),
            GgmlType::Q4_1 => return Some(vnni_k::q4_1_n_wide),
            GgmlType::Q5_0 => return Some(vnni_k::q5_0_n_wide),
            GgmlType::Q8_0 => return Some(vnni_k::q8_0_n_wide),
            GgmlType::TQ2_0 => return Some(vnni_k::tq2_0_n_wide),
            _ => {}
        }
    }
    Some(match ty {
        GgmlType::Q4_0 => pick!(vnni, DotManyFn, q4_0_n),
        GgmlType::Q4_1 => pick!(vnni, DotManyFn, q4_1_n),
        GgmlType::Q5_0 => pick!(vnni, DotManyFn, q5_0_n),
        GgmlType::Q8_0 => pick!(vnni, DotManyFn, q8_0_n),
        GgmlType::TQ2_0 => pick!(vnni, DotManyFn, tq2_0_n),
        _ => return None,
    })
}

/// One-to-four-token kernels for float weights (F16, F32): f32 activations, each token's sum exactly the one-token
/// kernel's.
pub fn kernel_float_n(ty: GgmlType, vnni: bool) -> Option<DotNFFn> {
    Some(match ty {
        GgmlType::F16 => pick!(vnni, DotNFFn, f16_xn),
        GgmlType::F32 => pick!(vnni, DotNFFn, f32_xn),
        _ => return None,
    })
}

/// Four-row kernels for one token (generation), where they exist.
pub fn kernel_r4(ty: GgmlType, vnni: bool) -> Option<DotR4Fn> {
    Some(match ty {
        GgmlType::Q4_0 => pick!(vnni, DotR4Fn, q4_0_r4),
        GgmlType::Q4_1 => pick!(vnni, DotR4Fn, q4_1_r4),
        GgmlType::Q5_0 => pick!(vnni, DotR4Fn, q5_0_r4),
        GgmlType::Q8_0 => pick!(vnni, DotR4Fn, q8_0_r4),
        GgmlType::TQ2_0 => pick!(vnni, DotR4Fn, tq2_0_r4),
        _ => return None,
    })
}

/// The safe entry points of one integer format `$F` inside `isa_kernels!`: `$one` (one row × one token), `$many`
/// (one row × two to eight tokens, through `many_impl`'s instantiation for that many) and, where given, `$r4` (four
/// rows × one token). `kernel()` hands them out only after run-time detection of the features, and every row
/// length was validated against the block size when the model was loaded.
macro_rules! int_entries {
    ($F:ty: $one:ident, $many:ident $(, $r4:ident)?) => {
        pub fn $one(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
            // SAFETY: see above.
            unsafe { one_impl::<$F>(w, xq) }
        }
        $(
            pub fn $r4(w: &[&[u8]; 4], xq: QRow<'_>) -> [f32; 4] {
                // SAFETY: see above.
                unsafe { rows4_impl::<$F>(w, xq) }
            }
        )?
        pub fn $many(w: &[u8], g: &QGroup<'_>, out: &mut [f32]) {
            let n = super::many_fits(g, out);
            // SAFETY: lengths checked above; features as above.
            unsafe { tokens!(n, out, many_impl::<$F, _>(w, g)) }
        }
    };
}

/// The 512-bit multi-token entry of an unsigned-code format (`many_wide_impl`); `kernel_many` hands it out only
/// after detecting AVX-512F, BW, VNNI and VL.
macro_rules! wide_entries {
    ($F:ty: $many_wide:ident) => {
        #[allow(dead_code)] // As `pair_sums`.
        pub fn $many_wide(w: &[u8], g: &QGroup<'_>, out: &mut [f32]) {
            let n = super::many_fits(g, out);
            // SAFETY: lengths checked; features as above.
            unsafe { tokens!(n, out, many_wide_impl::<$F, _>(w, g)) }
        }
    };
}

/// The token count of a multi-token call, after checking every length its kernel reads.
fn many_fits(g: &crate::QGroup<'_>, out: &[f32]) -> usize {
    let n = g.rows.len();
    let nb = g.rows.first().map_or(0, |r| r.d.len());
    assert!(
        (2..=crate::GROUP).contains(&n)
            && out.len() >= n
            && g.d.len() >= nb * crate::GROUP
            && g.dsum.len() >= nb * crate::GROUP
            && g.rows
                .iter()
                .all(|r| r.d.len() == nb && r.q.len() >= nb * crate::QK)
    );
    n
}

/// How far ahead of the float weight stream the multi-token kernel prefetches (measured on SmolLM2 F16, 2 threads:
/// 2 KiB beat 1 KiB and 4 KiB; none at all left four-token passes ~25% slower).
const F16_PREFETCH_BYTES: usize = 2048;

macro_rules! isa_kernels {
    ($modname:ident, $features:literal, $vnni:expr) => {
        pub mod $modname {
            use crate::dot::lanes::{f16_at, hsum, hsum_i32, lane_sums, load1, load8};
            use crate::blocks::*;
            use crate::{QGroup, QRow, GROUP, QK};
            use std::arch::x86_64::*;

            /// acc + Σ over groups of 4 of (u8 a) × (i8 b), as 8 × i32.
            #[inline(always)]
            unsafe fn mul_sum_us8(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
                // SAFETY: only reached from functions compiled with the needed features.
                unsafe {
                    if $vnni {
                        _mm256_dpbusd_epi32(acc, a, b)
                    } else {
                        _mm256_add_epi32(
                            acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)),
                        )
                    }
                }
            }

            /// 32 unsigned nibbles from 16 bytes: low nibbles first, then high nibbles.
            #[inline(always)]
            unsafe fn nibbles32(p: *const u8) -> __m256i {
                unsafe {
                    let qs = _mm_loadu_si128(p as *const __m128i);
                    let m = _mm_set1_epi8(0xF);
                    let lo = _mm_and_si128(qs, m);
                    let hi = _mm_and_si128(_mm_srli_epi16(qs, 4), m);
                    _mm256_set_m128i(hi, lo)
                }
            }

            /// Byte i = 0xFF where bit i of `x` is set.
            #[inline(always)]
            unsafe fn bytes_from_bits(x: u32) -> __m256i {
                unsafe {
                    let shuf = _mm256_set_epi64x(
                        0x0303030303030303,
                        0x0202020202020202,
                        0x0101010101010101,
                        0x0000000000000000,
                    );
                    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x as i32), shuf);
                    let bytes =
                        _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe_u64 as i64));
                    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
                }
            }

            #[inline(always)]
            unsafe fn load_x(xq: &QRow<'_>, b: usize) -> __m256i {
                debug_assert!((b + 1) * QK <= xq.q.len());
                unsafe { _mm256_loadu_si256(xq.q.as_ptr().add(b * QK) as *const __m256i) }
            }

            /// One 32-weight sub-block, decoded: unsigned 8-bit codes (or |w| for signed formats, with the signs to
            /// move onto x), the scale and the offset that multiplies the block's activation sum. (The K-quants
            /// have kernels of their own, `kquant`.)
            #[derive(Clone, Copy)]
            struct Sub {
                q: __m256i,
                sign: Option<__m256i>,
                dw: f32,
                cw: f32,
            }

            impl Sub {
                #[inline(always)]
                fn plain(q: __m256i, dw: f32, cw: f32) -> Sub {
                    Sub {
                        q,
                        sign: None,
                        dw,
                        cw,
                    }
                }
            }

            /// The block's integer dot product with activations `x`, as 8 × i32 partial sums (exact).
            #[inline(always)]
            unsafe fn int_dot(s: &Sub, x: __m256i) -> __m256i {
                unsafe {
                    let x = match s.sign {
                        Some(sg) => _mm256_sign_epi8(x, sg),
                        None => x,
                    };
                    mul_sum_us8(_mm256_setzero_si256(), s.q, x)
                }
            }

            /// `v` rounded to the nearest f16 (ties to even) and back.
            #[inline(always)]
            unsafe fn round_f16(v: f32) -> f32 {
                unsafe {
                    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(
                        _mm_set_ss(v),
                    )))
                }
            }

            /// Lane t = the exact sum of p[t]'s sixteen i16 lanes (t < N ≤ 8; later lanes 0), for `NARROW`
            /// formats' `vpmaddubsw` outputs: three levels of 16-bit horizontal adds leave each 128-bit half
            /// holding one sum per token (|each| ≤ 8 × 3 810 < 2^15), and the two halves are widened and added.
            /// The same integers `lane_sums` gives after `vpmaddwd`, one `vpmaddwd` per token cheaper.
            #[inline(always)]
            unsafe fn token_sums16<const N: usize>(p: &[__m256i; N]) -> __m256i {
                unsafe {
                    let z = _mm256_setzero_si256();
                    let g = |i: usize| if i < N { p[i] } else { z };
                    let lo = _mm256_hadd_epi16(
                        _mm256_hadd_epi16(g(0), g(1)),
                        _mm256_hadd_epi16(g(2), g(3)),
                    );
                    let hi = if N > 4 {
                        _mm256_hadd_epi16(
                            _mm256_hadd_epi16(g(4), g(5)),
                            _mm256_hadd_epi16(g(6), g(7)),
                        )
                    } else {
                        z
                    };
                    let c = _mm256_hadd_epi16(lo, hi);
                    _mm256_add_epi32(
                        _mm256_cvtepi16_epi32(_mm256_castsi256_si128(c)),
                        _mm256_cvtepi16_epi32(_mm256_extracti128_si256(c, 1)),
                    )
                }
            }

            /// A weight format read as a stream of 32-wide sub-blocks.
            trait Format {
                const BYTES: usize;
                const SUBS: usize;
                /// Whether `cw` (the offset times the block's activation sum) is ever non-zero.
                const OFFSET: bool = true;
                /// Whether the offset multiplies d·Σx rounded to f16 (llama.cpp's Q8_1 activations, which its Q4_1
                /// and Q5_1 kernels read) rather than as it is.
                const SUM_F16: bool = false;
                /// Whether codes are below 16 with no signs to move (Q4_0, Q4_1, TQ2_0): then eight tokens'
                /// `vpmaddubsw` pair sums, added up, still fit 16 bits (8 × 2 × 15 × 127 < 2^15), so the
                /// multi-token kernel can sum them across tokens before widening (`token_sums16`).
                const NARROW: bool = false;
                type Hdr: Copy;
                unsafe fn header(blk: *const u8) -> Self::Hdr;
                unsafe fn sub(blk: *const u8, hdr: Self::Hdr, j: usize) -> Sub;
            }

            struct Q4_0;
            impl Format for Q4_0 {
                const BYTES: usize = Q4_0_BYTES;
                const NARROW: bool = true;
                const SUBS: usize = 1;
                type Hdr = ();
                #[inline(always)]
                unsafe fn header(_: *const u8) {}
                #[inline(always)]
                unsafe fn sub(blk: *const u8, _: (), _: usize) -> Sub {
                    unsafe {
                        let dw = f16_at(blk);
                        Sub::plain(nibbles32(blk.add(2)), dw, -8.0 * dw)
                    }
                }
            }

            struct Q4_1;
            impl Format for Q4_1 {
                const BYTES: usize = Q4_1_BYTES;
                const NARROW: bool = true;
                const SUBS: usize = 1;
                const SUM_F16: bool = true;
                type Hdr = ();
                #[inline(always)]
                unsafe fn header(_: *const u8) {}
                #[inline(always)]
                unsafe fn sub(blk: *const u8, _: (), _: usize) -> Sub {
                    unsafe { Sub::plain(nibbles32(blk.add(4)), f16_at(blk), f16_at(blk.add(2))) }
                }
            }

            struct Q5_0;
            impl Format for Q5_0 {
                const BYTES: usize = Q5_0_BYTES;
                const SUBS: usize = 1;
                type Hdr = ();
                #[inline(always)]
                unsafe fn header(_: *const u8) {}
                #[inline(always)]
                unsafe fn sub(blk: *const u8, _: (), _: usize) -> Sub {
                    unsafe {
                        let dw = f16_at(blk);
                        let qh = std::ptr::read_unaligned(blk.add(2) as *const u32);
                        let q = _mm256_or_si256(
                            nibbles32(blk.add(6)),
                            _mm256_and_si256(bytes_from_bits(qh), _mm256_set1_epi8(0x10)),
                        );
                        Sub::plain(q, dw, -16.0 * dw)
                    }
                }
            }

            struct Q8_0;
            impl Format for Q8_0 {
                const BYTES: usize = Q8_0_BYTES;
                const SUBS: usize = 1;
                const OFFSET: bool = false;
                type Hdr = ();
                #[inline(always)]
                unsafe fn header(_: *const u8) {}
                #[inline(always)]
                unsafe fn sub(blk: *const u8, _: (), _: usize) -> Sub {
                    unsafe {
                        let w = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                        // |w| × (x with w's sign) keeps each product while making the first operand unsigned.
                        Sub {
                            sign: Some(w),
                            ..Sub::plain(_mm256_sign_epi8(w, w), f16_at(blk), 0.0)
                        }
                    }
                }
            }

            /// TQ2_0: sub-block j = 4g + l is bits 2l..2l+2 of bytes 32g..32g+32 (codes c, weight c − 1).
            struct TQ2_0;
            impl Format for TQ2_0 {
                const BYTES: usize = TQ2_0_BYTES;
                const NARROW: bool = true;
                const SUBS: usize = 8;
                type Hdr = f32;
                #[inline(always)]
                unsafe fn header(blk: *const u8) -> f32 {
                    unsafe { f16_at(blk.add(64)) }
                }
                #[inline(always)]
                unsafe fn sub(blk: *const u8, d: f32, j: usize) -> Sub {
                    unsafe {
                        let q = _mm256_loadu_si256(blk.add(32 * (j / 4)) as *const __m256i);
                        let q = _mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (j % 4) as i32));
                        Sub::plain(_mm256_and_si256(q, _mm256_set1_epi8(3)), d, -d)
                    }
                }
            }

            // The three shapes below — one row × one token, one row × N tokens, four rows × one token — give
            // every (row, token) exactly the same result: each sub-block's integer dot product is exact, then
            //   acc = fma(Σ, dw · dx, acc)   and   off = off + cw · (dx · Σx)   sub-block by sub-block,
            // and the result is acc + off. Only the lanes differ (scalar; one token per lane; one row per lane), so
            // batching and speculative verification never change a token's logits.

            /// w · x for one row and one token.
            #[target_feature(enable = $features)]
            unsafe fn one_impl<F: Format>(w: &[u8], xq: QRow<'_>) -> f32 {
                unsafe {
                    let nb = w.len() / F::BYTES;
                    let (mut acc, mut off) = (0f32, 0f32);
                    for b in 0..nb {
                        let blk = w.as_ptr().add(b * F::BYTES);
                        let hdr = F::header(blk);
                        for j in 0..F::SUBS {
                            let s = F::sub(blk, hdr, j);
                            let xb = b * F::SUBS + j;
                            let sum = hsum_i32(int_dot(&s, load_x(&xq, xb))) as f32;
                            acc = sum.mul_add(s.dw * *xq.d.get_unchecked(xb), acc);
                            if F::OFFSET {
                                let dxs = *xq.dsum.get_unchecked(xb);
                                let dxs = if F::SUM_F16 { round_f16(dxs) } else { dxs };
                                off += s.cw * dxs;
                            }
                        }
                    }
                    acc + off
                }
            }

            /// out[t] = w · x[t] for N ≤ 8 tokens, token t in lane t: each weight sub-block is decoded once for
            /// all of them, and one block's N sums are scaled with one multiply and one FMA.
            #[target_feature(enable = $features)]
            unsafe fn many_impl<F: Format, const N: usize>(w: &[u8], g: &QGroup<'_>) -> [f32; N] {
                unsafe {
                    let nb = w.len() / F::BYTES;
                    let (mut acc, mut off) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                    let (gd, gs) = (g.d.as_ptr(), g.dsum.as_ptr());
                    for b in 0..nb {
                        let blk = w.as_ptr().add(b * F::BYTES);
                        _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(8 * F::BYTES) as *const i8);
                        let hdr = F::header(blk);
                        for j in 0..F::SUBS {
                            let s = F::sub(blk, hdr, j);
                            let xb = b * F::SUBS + j;
                            let sums = if F::NARROW && !$vnni {
                                token_sums16::<N>(&std::array::from_fn(|t| {
                                    _mm256_maddubs_epi16(s.q, load_x(g.rows.get_unchecked(t), xb))
                                }))
                            } else {
                                lane_sums::<N>(&std::array::from_fn(|t| {
                                    int_dot(&s, load_x(g.rows.get_unchecked(t), xb))
                                }))
                            };
                            scale_step::<F>(&s, sums, gd.add(xb * GROUP), gs.add(xb * GROUP), &mut acc, &mut off);
                        }
                    }
                    let mut lanes = [0f32; GROUP];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(acc, off));
                    std::array::from_fn(|t| lanes[t])
                }
            }

            /// One sub-block's share of the multi-token kernels, token t in lane t: `sums` its integer dot
            /// products, `dx`/`dxs` the tokens' scales and scaled sums for it (`QGroup`'s block-major rows).
            #[inline(always)]
            unsafe fn scale_step<F: Format>(
                s: &Sub,
                sums: __m256i,
                dx: *const f32,
                dxs: *const f32,
                acc: &mut __m256,
                off: &mut __m256,
            ) {
                unsafe {
                    *acc = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(sums),
                        _mm256_mul_ps(_mm256_set1_ps(s.dw), _mm256_loadu_ps(dx)),
                        *acc,
                    );
                    if F::OFFSET {
                        let dxs = _mm256_loadu_ps(dxs);
                        let dxs = if F::SUM_F16 {
                            _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(dxs))
                        } else {
                            dxs
                        };
                        *off = _mm256_add_ps(*off, _mm256_mul_ps(_mm256_set1_ps(s.cw), dxs));
                    }
                }
            }

            /// Lane t of the first (second) result = the sum of the low (high) 256 bits of p[t] (t < N ≤ 8; later
            /// lanes 0): two sub-blocks' sums for N tokens, transposed with in-lane unpacks and two cross-lane
            /// shuffles (AVX-512 has no horizontal adds).
            #[inline(always)]
            #[allow(dead_code)] // Compiled in both instantiations; only `vnni_k`'s wide kernels are handed out.
            unsafe fn pair_sums<const N: usize>(p: &[__m512i; N]) -> (__m256i, __m256i) {
                unsafe {
                    let z = _mm512_setzero_si512();
                    let g = |i: usize| if i < N { p[i] } else { z };
                    // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] for tokens a, b.
                    let two = |a: __m512i, b: __m512i| {
                        _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
                    };
                    // Per 128-bit lane: the lane's sum for each of four tokens.
                    let four = |u: __m512i, v: __m512i| {
                        _mm512_add_epi32(_mm512_unpacklo_epi64(u, v), _mm512_unpackhi_epi64(u, v))
                    };
                    let lo = four(two(g(0), g(1)), two(g(2), g(3)));
                    let hi = if N > 4 {
                        four(two(g(4), g(5)), two(g(6), g(7)))
                    } else {
                        z
                    };
                    // Lanes 0, 1 are the first sub-block, 2, 3 the second: add lane pairs, tokens 0..4 from `lo`
                    // and 4..8 from `hi`, then order them [first 0..4, first 4..8, second 0..4, second 4..8].
                    let s = _mm512_add_epi32(
                        _mm512_shuffle_i32x4::<0x88>(lo, hi),
                        _mm512_shuffle_i32x4::<0xDD>(lo, hi),
                    );
                    let s = _mm512_shuffle_i32x4::<0xD8>(s, s);
                    (_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64::<1>(s))
                }
            }

            /// `many_impl` with 512-bit VNNI: two sub-blocks of a token per `vpdpbusd`, then the same integers,
            /// scaled in the same order — bit-identical to `many_impl`.
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx512vl,avx2,fma,f16c")]
            #[allow(dead_code)] // As `pair_sums`.
            unsafe fn many_wide_impl<F: Format, const N: usize>(w: &[u8], g: &QGroup<'_>) -> [f32; N] {
                unsafe {
                    let nsub = w.len() / F::BYTES * F::SUBS;
                    let (mut acc, mut off) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                    let (gd, gs) = (g.d.as_ptr(), g.dsum.as_ptr());
                    let sub = |xb: usize| {
                        let blk = w.as_ptr().add(xb / F::SUBS * F::BYTES);
                        _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(8 * F::BYTES) as *const i8);
                        F::sub(blk, F::header(blk), xb % F::SUBS)
                    };
                    let join = |a: __m256i, b: __m256i| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
                    let mut xb = 0;
                    while xb + 1 < nsub {
                        let (s0, s1) = (sub(xb), sub(xb + 1));
                        // Unsigned codes: codes × x. Signed codes (Q8_0; AVX-512 has no `vpsignb` to move their
                        // signs onto x): (x + 128) × w, started from −128 · Σw — the same lane sums.
                        let (q, start, flip) = match (s0.sign, s1.sign) {
                            (Some(w0), Some(w1)) => {
                                let w = join(w0, w1);
                                let sum_w = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), w);
                                (w, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<7>(sum_w)), true)
                            }
                            _ => (join(s0.q, s1.q), _mm512_setzero_si512(), false),
                        };
                        let p: [__m512i; N] = std::array::from_fn(|t| {
                            let xq = g.rows.get_unchecked(t);
                            debug_assert!((xb + 2) * QK <= xq.q.len());
                            let x = _mm512_loadu_si512(xq.q.as_ptr().add(xb * QK) as *const __m512i);
                            if flip {
                                _mm512_dpbusd_epi32(start, _mm512_xor_si512(x, _mm512_set1_epi8(-128)), q)
                            } else {
                                _mm512_dpbusd_epi32(start, q, x)
                            }
                        });
                        let (a, b) = pair_sums(&p);
                        scale_step::<F>(&s0, a, gd.add(xb * GROUP), gs.add(xb * GROUP), &mut acc, &mut off);
                        let xb1 = xb + 1;
                        scale_step::<F>(&s1, b, gd.add(xb1 * GROUP), gs.add(xb1 * GROUP), &mut acc, &mut off);
                        xb += 2;
                    }
                    if xb < nsub {
                        let s = sub(xb);
                        let sums = lane_sums::<N>(&std::array::from_fn(|t| {
                            int_dot(&s, load_x(g.rows.get_unchecked(t), xb))
                        }));
                        scale_step::<F>(&s, sums, gd.add(xb * GROUP), gs.add(xb * GROUP), &mut acc, &mut off);
                    }
                    let mut lanes = [0f32; GROUP];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(acc, off));
                    std::array::from_fn(|t| lanes[t])
                }
            }

            /// out[r] = w[r] · x for four rows and one token, row r in lane r: x and its scales are loaded once
            /// for the four rows, and the four row streams are independent work in flight.
            #[target_feature(enable = $features)]
            unsafe fn rows4_impl<F: Format>(w: &[&[u8]; 4], xq: QRow<'_>) -> [f32; 4] {
                unsafe {
                    let nb = w[0].len() / F::BYTES;
                    let (mut acc, mut off) = (_mm_setzero_ps(), _mm_setzero_ps());
                    for b in 0..nb {
                        let blk: [*const u8; 4] =
                            std::array::from_fn(|r| w[r].as_ptr().add(b * F::BYTES));
                        crate::dot::lanes::prefetch_next_rows(w, b, F::BYTES);
                        let hdr: [F::Hdr; 4] = std::array::from_fn(|r| F::header(blk[r]));
                        for j in 0..F::SUBS {
                            let xb = b * F::SUBS + j;
                            let x = load_x(&xq, xb);
                            let s: [Sub; 4] = std::array::from_fn(|r| F::sub(blk[r], hdr[r], j));
                            let p: [__m256i; 4] = std::array::from_fn(|r| int_dot(&s[r], x));
                            let sums = _mm256_castsi256_si128(lane_sums(&p));
                            let dw = _mm_setr_ps(s[0].dw, s[1].dw, s[2].dw, s[3].dw);
                            let dx = _mm_set1_ps(*xq.d.get_unchecked(xb));
                            acc = _mm_fmadd_ps(_mm_cvtepi32_ps(sums), _mm_mul_ps(dw, dx), acc);
                            if F::OFFSET {
                                let cw = _mm_setr_ps(s[0].cw, s[1].cw, s[2].cw, s[3].cw);
                                let dxs = *xq.dsum.get_unchecked(xb);
                                let dxs =
                                    _mm_set1_ps(if F::SUM_F16 { round_f16(dxs) } else { dxs });
                                off = _mm_add_ps(off, _mm_mul_ps(cw, dxs));
                            }
                        }
                    }
                    let mut out = [0f32; 4];
                    _mm_storeu_ps(out.as_mut_ptr(), _mm_add_ps(acc, off));
                    out
                }
            }

            /// `w` (F16 or F32) · each of the `N` rows of `xs`. Every row gets exactly the sum the one-row kernel
            /// gives it (the same four FMA chains, the same reduction), so a token's result does not depend on how
            /// many tokens shared the pass — speculative verification and batching rely on that.
            #[target_feature(enable = $features)]
            unsafe fn float_impl<const N: usize, const F16: bool>(
                w: &[u8],
                xs: &[&[f32]; N],
            ) -> [f32; N] {
                unsafe {
                    let n = xs[0].len();
                    let wp = w.as_ptr();
                    let bytes = if F16 { 2 } else { 4 };
                    // Four independent accumulators per row: one FMA chain would wait out its latency on every
                    // step (the tied F16 head of a BitNet model streams 650 MB per token through here).
                    let mut a = [[_mm256_setzero_ps(); 4]; N];
                    let mut i = 0;
                    while i + 32 <= n {
                        if N > 1 {
                            // Several tokens per weight make the loop compute-heavy enough that the hardware
                            // prefetcher falls behind the weight stream; rows are contiguous, so running past
                            // this row's end fetches the next one (a prefetch never faults).
                            _mm_prefetch::<_MM_HINT_T0>(
                                wp.wrapping_add(bytes * i + super::F16_PREFETCH_BYTES) as *const i8,
                            );
                            if !F16 {
                                // F32 rows stream twice the bytes: a second line per 32 weights.
                                _mm_prefetch::<_MM_HINT_T0>(
                                    wp.wrapping_add(bytes * i + super::F16_PREFETCH_BYTES + 64)
                                        as *const i8,
                                );
                            }
                        }
                        for k in 0..4 {
                            let wv = load8::<F16>(wp, i + 8 * k);
                            for t in 0..N {
                                a[t][k] = _mm256_fmadd_ps(
                                    wv,
                                    _mm256_loadu_ps(xs[t].as_ptr().add(i + 8 * k)),
                                    a[t][k],
                                );
                            }
                        }
                        i += 32;
                    }
                    while i + 8 <= n {
                        let wv = load8::<F16>(wp, i);
                        for t in 0..N {
                            a[t][0] = _mm256_fmadd_ps(
                                wv,
                                _mm256_loadu_ps(xs[t].as_ptr().add(i)),
                                a[t][0],
                            );
                        }
                        i += 8;
                    }
                    let mut out = [0f32; N];
                    for t in 0..N {
                        let at = &a[t];
                        let mut s = hsum(_mm256_add_ps(
                            _mm256_add_ps(at[0], at[1]),
                            _mm256_add_ps(at[2], at[3]),
                        ));
                        for j in i..n {
                            s += load1::<F16>(wp, j) * xs[t][j];
                        }
                        out[t] = s;
                    }
                    out
                }
            }

            int_entries!(Q4_0: q4_0, q4_0_n, q4_0_r4);
            int_entries!(Q4_1: q4_1, q4_1_n, q4_1_r4);
            int_entries!(Q5_0: q5_0, q5_0_n, q5_0_r4);
            int_entries!(Q8_0: q8_0, q8_0_n, q8_0_r4);
            int_entries!(TQ2_0: tq2_0, tq2_0_n, tq2_0_r4);
            wide_entries!(Q4_0: q4_0_n_wide);
            wide_entries!(Q4_1: q4_1_n_wide);
            wide_entries!(Q5_0: q5_0_n_wide);
            wide_entries!(Q8_0: q8_0_n_wide);
            wide_entries!(TQ2_0: tq2_0_n_wide);
            pub fn f32_(w: &[u8], _xq: QRow<'_>, xf: &[f32]) -> f32 {
                assert!(w.len() >= 4 * xf.len());
                // SAFETY: length checked; features detected before this kernel was handed out.
                unsafe { float_impl::<1, false>(w, &[xf])[0] }
            }
            pub fn f16_(w: &[u8], _xq: QRow<'_>, xf: &[f32]) -> f32 {
                assert!(w.len() >= 2 * xf.len());
                // SAFETY: length checked; features detected before this kernel was handed out.
                unsafe { float_impl::<1, true>(w, &[xf])[0] }
            }
            pub fn f16_xn(w: &[u8], xf: &[&[f32]], out: &mut [f32]) {
                float_xn::<true>(w, xf, out)
            }
            pub fn f32_xn(w: &[u8], xf: &[&[f32]], out: &mut [f32]) {
                float_xn::<false>(w, xf, out)
            }
            fn float_xn<const F16: bool>(w: &[u8], xf: &[&[f32]], out: &mut [f32]) {
                let bytes = if F16 { 2 } else { 4 };
                assert!(
                    xf.iter()
                        .all(|x| x.len() == xf[0].len() && w.len() >= bytes * x.len())
                        && out.len() >= xf.len()
                );
                // SAFETY: lengths checked above; features detected before this kernel was handed out.
                unsafe {
                    match *xf {
                        [a, b, c, d] => {
                            out[..4].copy_from_slice(&float_impl::<4, F16>(w, &[a, b, c, d]))
                        }
                        [a, b, c] => out[..3].copy_from_slice(&float_impl::<3, F16>(w, &[a, b, c])),
                        [a, b] => out[..2].copy_from_slice(&float_impl::<2, F16>(w, &[a, b])),
                        [a] => out[0] = float_impl::<1, F16>(w, &[a])[0],
                        _ => unreachable!("float kernels take one to four tokens"),
                    }
                }
            }
        }
    };
}

isa_kernels!(avx2_k, "avx2,fma,f16c", false);
isa_kernels!(vnni_k, "avx2,fma,f16c,avx512vnni,avx512vl", true);

#[cfg(test)]
mod tests {
    use super::super::act_format;
    use super::super::{kernel, scalar, Isa};
    use crate::{
        dequantize_row, interleave_scales, interleave_sums, quantize_acts_as, GgmlType, QActs,
        QGroup, QRow,
    };

    /// `many(w, rows)` with the rows' scales interleaved as `quantize_acts` lays them out.
    fn run_many(many: super::super::DotManyFn, w: &[u8], rows: &[QRow<'_>], out: &mut [f32]) {
        let n = rows[0].d.len() * crate::GROUP;
        let (mut d, mut dsum, mut sum) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        interleave_scales(rows, &mut d, &mut dsum);
        interleave_sums(rows, &mut sum);
        many(
            w,
            &QGroup {
                rows,
                d: &d,
                dsum: &dsum,
                sum: if rows[0].is_q8k() { &sum } else { &[] },
            },
            out,
        );
    }

    /// Deterministic pseudo-random bytes (xorshift): random block contents exercise every bit pattern.
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    /// Random blocks, with each f16 scale field overwritten by a small sane value so sums stay finite.
    fn random_row(ty: GgmlType, n: usize, seed: u64) -> Vec<u8> {
        let (elems, bb) = ty.block_geometry().expect("sized");
        let mut w = bytes(n / elems * bb, seed);
        let f16 = |v: f32| half::f16::from_f32(v).to_bits().to_le_bytes();
        let scale_offsets: &[usize] = match ty {
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
            GgmlType::Q6K => &[208],
            GgmlType::Q2K => &[80, 82],
            GgmlType::Q3K => &[108],
            _ => &[],
        };
        for blk in w.chunks_exact_mut(bb) {
            for (k, &o) in scale_offsets.iter().enumerate() {
                blk[o..o + 2].copy_from_slice(&f16(0.01 + 0.003 * k as f32));
            }
        }
        if ty == GgmlType::F16 {
            for c in w.chunks_exact_mut(2) {
                c.copy_from_slice(&f16((c[0] as f32 - 128.0) / 64.0));
            }
        }
        if ty == GgmlType::F32 {
            for c in w.chunks_exact_mut(4) {
                c.copy_from_slice(&((c[0] as f32 - 128.0) / 64.0).to_le_bytes());
            }
        }
        w
    }

    #[test]
    fn simd_kernels_match_scalar_and_dequantized_reference() {
        let n = 512;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        let x4: Vec<f32> = (0..4 * n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / (5.0 + (i / n) as f32))
            .collect();
        for ty in [
            GgmlType::F32,
            GgmlType::F16,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
            GgmlType::Q8_0,
            GgmlType::Q2K,
            GgmlType::Q3K,
            GgmlType::Q4K,
            GgmlType::Q5K,
            GgmlType::Q6K,
        ] {
            // Each type gets the activation form its kernel reads.
            let (mut xq, mut xq4) = (QActs::default(), QActs::default());
            quantize_acts_as(act_format(ty), &x, n, &mut xq);
            quantize_acts_as(act_format(ty), &x4, n, &mut xq4);
            // The f32 view of the int8 activations: the exact input the integer kernels see.
            let xdq: Vec<f32> = (0..n).map(|i| xq.q[i] as f32 * xq.d[i / 32]).collect();
            let w = random_row(ty, n, ty.id() as u64 + 7);
            let mut wf = vec![0f32; n];
            assert!(dequantize_row(ty, &w, &mut wf));
            let int8 = super::super::uses_int8_acts(ty);
            let input = if int8 { &xdq } else { &x };
            let reference: f32 = wf.iter().zip(input).map(|(a, b)| a * b).sum();
            let s = scalar::kernel(ty).expect("scalar kernel")(&w, xq.row(0), &x);
            let tol = 1e-3 * reference.abs().max(1.0);
            assert!(
                (s - reference).abs() < tol,
                "{ty}: scalar {s} vs dequantized reference {reference}"
            );
            for isa in [Isa::Avx2, Isa::Avx512Vnni] {
                if Isa::best_supported() == Isa::Scalar
                    || (isa == Isa::Avx512Vnni && Isa::best_supported() != isa)
                {
                    continue;
                }
                let v = kernel(ty, isa).expect("kernel")(&w, xq.row(0), &x);
                assert!((v - s).abs() < tol, "{ty} {isa:?}: {v} vs scalar {s}");
                if act_format(ty) == crate::ActFormat::Q8K {
                    // The K-quant kernels scale each super-block exactly as the reference does.
                    assert_eq!(v.to_bits(), s.to_bits(), "{ty} {isa:?}: {v} vs scalar {s}");
                }
                if let Some(r4) = super::super::kernel_r4(ty, isa) {
                    let w2 = random_row(ty, n, 99);
                    let got = r4(&[&w, &w2, &w, &w2], xq.row(0));
                    let want2 = scalar::kernel(ty).expect("scalar")(&w2, xq.row(0), &x);
                    for (g, want) in got.iter().zip([s, want2, s, want2]) {
                        assert!(
                            (g - want).abs() < 1e-3 * want.abs().max(1.0),
                            "{ty} {isa:?} r4: {g} vs {want}"
                        );
                    }
                }
                if let Some(many) = super::super::kernel_many(ty, isa) {
                    // Four different rows: the same row and three shifted copies of the activations.
                    let rows = [xq.row(0), xq4.row(1), xq4.row(2), xq4.row(3)];
                    let mut got = [0f32; 4];
                    run_many(many, &w, &rows, &mut got);
                    for (t, g) in got.iter().enumerate() {
                        let want = scalar::kernel(ty).expect("scalar")(&w, rows[t], &x);
                        assert!(
                            (g - want).abs() < 1e-3 * want.abs().max(1.0),
                            "{ty} {isa:?} x4 row {t}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
    #[test]
    fn float_multi_token_kernels_equal_the_one_token_kernel_bit_for_bit() {
        // Lengths with every tail: whole 32-chunks, 8-chunks after them, and single elements.
        for (ty, n) in [32, 64, 72, 96, 104, 576, 584, 2560, 41]
            .into_iter()
            .flat_map(|n| [(GgmlType::F16, n), (GgmlType::F32, n)])
        {
            let bytes = if ty == GgmlType::F16 { 2 } else { 4 };
            let w = random_row(ty, n.max(64), n as u64);
            let w = &w[..bytes * n];
            let xs: Vec<Vec<f32>> = (0..4)
                .map(|t| {
                    (0..n)
                        .map(|i| (((i * 31 + t * 7) % 89) as f32 - 44.0) / (3.0 + t as f32))
                        .collect()
                })
                .collect();
            let rows = [&xs[0][..], &xs[1][..], &xs[2][..], &xs[3][..]];
            for isa in [Isa::Avx2, Isa::Avx512Vnni] {
                if Isa::best_supported() == Isa::Scalar
                    || (isa == Isa::Avx512Vnni && Isa::best_supported() != isa)
                {
                    continue;
                }
                let one = kernel(ty, isa).expect("kernel");
                let many = super::super::kernel_float_n(ty, isa).expect("xn");
                let empty = crate::QRow::EMPTY;
                for m in 1..=4 {
                    let mut got = [0f32; 4];
                    many(w, &rows[..m], &mut got);
                    for (t, g) in got[..m].iter().enumerate() {
                        let want = one(w, empty, rows[t]);
                        assert_eq!(
                            g.to_bits(),
                            want.to_bits(),
                            "n={n} {isa:?} {m} tokens, token {t}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn multi_token_kernels_equal_the_one_token_kernel_bit_for_bit() {
        // 512: whole K-quant super-blocks; 544: 17 blocks of 32, an odd count the 512-bit kernels end alone.
        for n in [512, 544] {
            multi_token_case(n);
        }
    }

    fn multi_token_case(n: usize) {
        let x: Vec<f32> = (0..8 * n)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / (5.0 + (i / n) as f32))
            .collect();
        for ty in [
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q8_0,
            GgmlType::Q4K,
            GgmlType::Q5K,
            GgmlType::Q6K,
            GgmlType::TQ2_0,
        ] {
            if !n.is_multiple_of(ty.block_geometry().expect("sized").0) {
                continue;
            }
            let mut xq = QActs::default();
            quantize_acts_as(act_format(ty), &x, n, &mut xq);
            let rows: Vec<_> = (0..8).map(|t| xq.row(t)).collect();
            let w = random_row(ty, n, ty.id() as u64 + 3);
            for isa in [Isa::Avx2, Isa::Avx512Vnni] {
                if Isa::best_supported() == Isa::Scalar
                    || (isa == Isa::Avx512Vnni && Isa::best_supported() != isa)
                {
                    continue;
                }
                let one = kernel(ty, isa).expect("kernel");
                let many = super::super::kernel_many(ty, isa).expect("multi-token kernel");
                if let Some(r4) = super::super::kernel_r4(ty, isa) {
                    let w2 = random_row(ty, n, 17);
                    for t in 0..8 {
                        let got = r4(&[&w, &w2, &w2, &w], rows[t]);
                        let xf = &x[t * n..(t + 1) * n];
                        let want = [&w, &w2, &w2, &w].map(|r| one(r, rows[t], xf).to_bits());
                        assert_eq!(
                            got.map(f32::to_bits),
                            want,
                            "{ty} {isa:?} four rows, token {t}"
                        );
                    }
                }
                for m in 2..=8 {
                    let mut got = [0f32; 8];
                    run_many(many, &w, &rows[..m], &mut got);
                    for t in 0..m {
                        let want = one(&w, rows[t], &x[t * n..(t + 1) * n]);
                        assert_eq!(
                            got[t].to_bits(),
                            want.to_bits(),
                            "{ty} {isa:?} {m} tokens, token {t}"
                        );
                    }
                }
            }
        }
    }
}
