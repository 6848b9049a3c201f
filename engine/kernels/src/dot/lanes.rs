//! Horizontal sums, float loads and prefetches shared by the x86-64 kernels (`dot::x86`'s two instantiations,
//! `kquant`, `float_tile`, the ternary and int-row kernels): plain SSE/AVX/F16C, inlined into callers compiled
//! with those features.

use std::arch::x86_64::*;

/// The sum of the eight lanes: low half + high half, then pairs, then the last two.
#[inline(always)]
pub unsafe fn hsum(v: __m256) -> f32 {
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// The sum of the eight i32 lanes.
#[inline(always)]
pub unsafe fn hsum_i32(v: __m256i) -> i32 {
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
        _mm_cvtsi128_si32(s)
    }
}

/// Lane t = the sum of p[t]'s eight lanes (t < N ≤ 8; later lanes 0): N block sums transposed into
/// one vector by a tree of horizontal adds.
#[inline(always)]
pub unsafe fn lane_sums<const N: usize>(p: &[__m256i; N]) -> __m256i {
    unsafe {
        let z = _mm256_setzero_si256();
        let g = |i: usize| if i < N { p[i] } else { z };
        let q0 = _mm256_hadd_epi32(_mm256_hadd_epi32(g(0), g(1)), _mm256_hadd_epi32(g(2), g(3)));
        let q1 = if N > 4 {
            _mm256_hadd_epi32(_mm256_hadd_epi32(g(4), g(5)), _mm256_hadd_epi32(g(6), g(7)))
        } else {
            z
        };
        // q0 = [Σlo p0..p3 | Σhi p0..p3], q1 the same for p4..p7.
        _mm256_add_epi32(
            _mm256_permute2x128_si256(q0, q1, 0x20),
            _mm256_permute2x128_si256(q0, q1, 0x31),
        )
    }
}

/// Prefetches the part of the next four rows that step `b` of a four-row kernel (each step reading `bytes` of
/// each row) answers for: rows are contiguous, so the next call's four rows follow `w[3]`, and spreading
/// their lines over this call's steps asks for each one a whole call ahead. Four interleaved row streams
/// defeat the hardware prefetcher (1B Q4_0 generation on a 2-vCPU Zen 3 ran at 5 GB/s per core without
/// this); a prefetch past the mapping never faults.
#[inline(always)]
pub unsafe fn prefetch_next_rows(w: &[&[u8]; 4], b: usize, bytes: usize) {
    let next = w[3].as_ptr().wrapping_add(w[3].len() + 4 * b * bytes);
    for line in (0..4 * bytes).step_by(64) {
        // SAFETY: a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(line) as *const i8) };
    }
}

/// The F16 value at `p`.
#[inline(always)]
pub unsafe fn f16_at(p: *const u8) -> f32 {
    unsafe {
        let h = std::ptr::read_unaligned(p as *const u16);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
    }
}

/// Eight weights from `wp` at element `i`: F16 converted, or F32 as they are.
#[inline(always)]
pub unsafe fn load8<const F16: bool>(wp: *const u8, i: usize) -> __m256 {
    unsafe {
        if F16 {
            _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * i) as *const __m128i))
        } else {
            _mm256_loadu_ps((wp as *const f32).add(i))
        }
    }
}

/// The weight at element `i`.
#[inline(always)]
pub unsafe fn load1<const F16: bool>(wp: *const u8, i: usize) -> f32 {
    unsafe {
        if F16 {
            f16_at(wp.add(2 * i))
        } else {
            std::ptr::read_unaligned((wp as *const f32).add(i))
        }
    }
}
