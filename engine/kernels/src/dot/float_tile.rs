//! F16 weights against one to four tokens, [`TILE_ROWS`] weight rows at a time, in AVX-512 registers.
//!
//! Why: the one-row kernel (`x86::float_impl`) reloads every token's activations for each weight row, so a pass of
//! four tokens is bound by loads, not by FMAs — a speculative verification pass of 8 tokens cost 3.2–3.8x one
//! token for F16. A tile of three rows × four tokens keeps 24 accumulators in the 32 zmm registers and loads each
//! activation vector once per three rows. F32 weights keep the row kernel: they stream twice the bytes per FMA,
//! and a tile measured 0.6–0.9x of it there (bandwidth-bound).
//!
//! Invariant: every (row, token) sum is bit-identical to the one-token kernel's. Each 16-lane accumulator here is
//! two of that kernel's 8-lane FMA chains side by side (lane for lane the same fused multiply-adds), and the
//! chains are split apart again before the tail and the reduction, which then run exactly as there. Greedy
//! speculative decoding and batching rely on a token's result not depending on how many tokens shared the pass.

use super::lanes::{hsum, load1, load8};
use super::{FloatTileFn, TILE_ROWS};
use std::arch::x86_64::*;

/// The tile kernel for F16 weights where the CPU has AVX-512F (checked at run time), else None.
pub fn kernel(ty: crate::GgmlType) -> Option<FloatTileFn> {
    let cpu = std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c");
    (ty == crate::GgmlType::F16 && cpu).then_some(tile_f16 as FloatTileFn)
}

fn tile_f16(w: &[&[u8]; TILE_ROWS], xf: &[&[f32]], out: &mut [[f32; 4]; TILE_ROWS]) {
    assert!(
        !xf.is_empty()
            && xf.len() <= 4
            && xf.iter().all(|x| x.len() == xf[0].len())
            && w.iter().all(|r| r.len() >= 2 * xf[0].len())
    );
    // Copies the N×R result into the caller's 4-wide rows.
    fn put<const N: usize>(o: [[f32; N]; TILE_ROWS], out: &mut [[f32; 4]; TILE_ROWS]) {
        for (dst, src) in out.iter_mut().zip(o) {
            dst[..N].copy_from_slice(&src);
        }
    }
    // SAFETY: lengths checked above; `kernel()` hands this out only after detecting the features.
    unsafe {
        match *xf {
            [a, b, c, d] => put(tile::<4>(w, &[a, b, c, d]), out),
            [a, b, c] => put(tile::<3>(w, &[a, b, c]), out),
            [a, b] => put(tile::<2>(w, &[a, b]), out),
            [a] => put(tile::<1>(w, &[a]), out),
            _ => unreachable!("checked above: one to four tokens"),
        }
    }
}

/// Sixteen F16 weights of a row from element `i`, as f32.
#[inline(always)]
unsafe fn load16(wp: *const u8, i: usize) -> __m512 {
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(wp.add(2 * i) as *const __m256i)) }
}

#[inline(always)]
unsafe fn high_half(v: __m512) -> __m256 {
    unsafe { _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)) }
}

#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn tile<const N: usize>(w: &[&[u8]; TILE_ROWS], xs: &[&[f32]; N]) -> [[f32; N]; TILE_ROWS] {
    unsafe {
        let n = xs[0].len();
        let mut wp = [std::ptr::null::<u8>(); TILE_ROWS];
        for r in 0..TILE_ROWS {
            wp[r] = w[r].as_ptr();
        }
        // lo[r][t] / hi[r][t]: chains 0–1 / 2–3 of the one-token kernel for row r, token t. Plain arrays
        // indexed by constants once unrolled, so they live in registers (no loop over the halves: LLVM then kept
        // them on the stack).
        let mut lo = [[_mm512_setzero_ps(); N]; TILE_ROWS];
        let mut hi = [[_mm512_setzero_ps(); N]; TILE_ROWS];
        let mut x = [_mm512_setzero_ps(); N];
        let mut i = 0;
        while i + 32 <= n {
            // The same place four tiles on (rows are contiguous in the matrix): the hardware prefetcher does not
            // follow three interleaved row streams well (without this the tile ran at half the row kernel's
            // speed; one tile ahead was too close, 16 too far). A prefetch never faults.
            for p in wp {
                let ahead = p.wrapping_add(2 * (4 * TILE_ROWS * n + i));
                _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
            }
            for t in 0..N {
                x[t] = _mm512_loadu_ps(xs[t].as_ptr().add(i));
            }
            for r in 0..TILE_ROWS {
                let wv = load16(wp[r], i);
                for t in 0..N {
                    lo[r][t] = _mm512_fmadd_ps(wv, x[t], lo[r][t]);
                }
            }
            for t in 0..N {
                x[t] = _mm512_loadu_ps(xs[t].as_ptr().add(i + 16));
            }
            for r in 0..TILE_ROWS {
                let wv = load16(wp[r], i + 16);
                for t in 0..N {
                    hi[r][t] = _mm512_fmadd_ps(wv, x[t], hi[r][t]);
                }
            }
            i += 32;
        }
        let mut out = [[0f32; N]; TILE_ROWS];
        for r in 0..TILE_ROWS {
            for t in 0..N {
                let mut c = [
                    _mm512_castps512_ps256(lo[r][t]),
                    high_half(lo[r][t]),
                    _mm512_castps512_ps256(hi[r][t]),
                    high_half(hi[r][t]),
                ];
                let mut j = i;
                while j + 8 <= n {
                    c[0] = _mm256_fmadd_ps(
                        load8::<true>(wp[r], j),
                        _mm256_loadu_ps(xs[t].as_ptr().add(j)),
                        c[0],
                    );
                    j += 8;
                }
                // The one-token kernel's reduction: (c0 + c1) + (c2 + c3), then across the lanes.
                let mut s = hsum(_mm256_add_ps(
                    _mm256_add_ps(c[0], c[1]),
                    _mm256_add_ps(c[2], c[3]),
                ));
                for (k, xv) in xs[t].iter().enumerate().skip(j) {
                    s += load1::<true>(wp[r], k) * xv;
                }
                out[r][t] = s;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dot::{kernel as one_token, Isa};
    use crate::{GgmlType, QRow};

    #[test]
    fn tiles_equal_the_one_token_kernel_bit_for_bit() {
        // F32 keeps the row kernel (see the module comment).
        assert!(kernel(GgmlType::F32).is_none());
        let ty = GgmlType::F16;
        let Some(tile) = kernel(ty) else {
            eprintln!("no AVX-512F here: nothing to compare");
            return;
        };
        let one = one_token(ty, Isa::Avx2).expect("AVX2 kernel (AVX-512F implies it)");
        // Every tail: whole 32-chunks, 8-chunks after them, single elements.
        for n in [32, 40, 64, 72, 96, 104, 576, 584, 1536, 2560, 41, 7] {
            let rows: Vec<Vec<u8>> = (0..TILE_ROWS)
                .map(|r| {
                    (0..n)
                        .flat_map(|i| {
                            let v = (((i * 37 + r * 101) % 113) as f32 - 56.0) / 17.0;
                            half::f16::from_f32(v).to_bits().to_le_bytes()
                        })
                        .collect()
                })
                .collect();
            let xs: Vec<Vec<f32>> = (0..4)
                .map(|t| {
                    (0..n)
                        .map(|i| (((i * 31 + t * 7) % 89) as f32 - 44.0) / (3.0 + t as f32))
                        .collect()
                })
                .collect();
            let w: [&[u8]; TILE_ROWS] = std::array::from_fn(|r| &rows[r][..]);
            let empty = QRow::EMPTY;
            for m in 1..=4 {
                let x: Vec<&[f32]> = xs[..m].iter().map(|v| &v[..]).collect();
                let mut got = [[f32::NAN; 4]; TILE_ROWS];
                tile(&w, &x, &mut got);
                for r in 0..TILE_ROWS {
                    for t in 0..m {
                        let want = one(w[r], empty, x[t]);
                        assert_eq!(
                            got[r][t].to_bits(),
                            want.to_bits(),
                            "{ty} n={n} {m} tokens, row {r} token {t}"
                        );
                    }
                }
            }
        }
    }
}
