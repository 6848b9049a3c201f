//! Int4 rows with 8-bit block scales: weight ≈ S_row · s_b · q, q ∈ −7..=7, one u8 scale s_b per 32 columns and
//! one f32 scale per row; multiplied with per-token int8 activations as one exact integer sum per row,
//! Σ_b s_b · Σ_{i∈b} q_i·x_i. The coarse pass of the two-pass output head (`head = "i4-rescored"`): a token reads
//! 4.25 bits per head weight to find the candidates, and the file's head gives the candidates' logits, so this
//! pass only has to rank well (block scales keep it about as close as Q4_0; one scale per row was not).
//!
//! Layout per row: 32 bytes per 64 columns; q + 8 of column 64k + j in the low nibble of byte 32k + j, of column
//! 64k + 32 + j in its high nibble; then the row's block scales, one byte per 32 columns.

use crate::quant::dot::Isa;
use crate::quant::QActs;
use crate::threadpool::{SharedMut, ThreadPool};

/// Columns per 32-byte chunk (two blocks).
const CHUNK: usize = 64;

pub struct RowsI4 {
    pub rows: usize,
    pub cols: usize,
    codes: Vec<u8>,
    block_scales: Vec<u8>,
    scale: Vec<f32>,
}

impl RowsI4 {
    /// Quantizes rows given by `row(r, buf)` (f32, `cols` of them, a multiple of 64).
    pub fn quantize(
        rows: usize,
        cols: usize,
        row: impl Fn(usize, &mut [f32]),
    ) -> Result<RowsI4, String> {
        if cols == 0 || !cols.is_multiple_of(CHUNK) || cols > 65_536 {
            return Err(format!(
                "int4 rows need a width that is a multiple of {CHUNK} up to 65536, not {cols}"
            ));
        }
        let (rb, nb) = (cols / 2, cols / 32);
        let mut codes = vec![0u8; rows * rb];
        let mut block_scales = vec![1u8; rows * nb];
        let mut scale = vec![0f32; rows];
        let mut buf = vec![0f32; cols];
        let mut q = vec![8u8; cols];
        for r in 0..rows {
            row(r, &mut buf);
            let amax = buf.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s_row = amax / (7.0 * 127.0);
            let bs = &mut block_scales[r * nb..(r + 1) * nb];
            for ((blk, qb), sb) in buf.chunks_exact(32).zip(q.chunks_exact_mut(32)).zip(bs) {
                let bmax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
                *sb = if s_row > 0.0 {
                    (bmax / (7.0 * s_row)).ceil().clamp(1.0, 127.0) as u8
                } else {
                    1
                };
                let step = s_row * *sb as f32;
                let id = if step > 0.0 { 1.0 / step } else { 0.0 };
                for (o, &v) in qb.iter_mut().zip(blk) {
                    *o = ((v * id).round().clamp(-7.0, 7.0) as i32 + 8) as u8;
                }
            }
            let out = &mut codes[r * rb..(r + 1) * rb];
            for (k, c) in q.chunks_exact(CHUNK).enumerate() {
                for j in 0..32 {
                    out[32 * k + j] = c[j] | c[32 + j] << 4;
                }
            }
            scale[r] = s_row;
        }
        Ok(RowsI4 {
            rows,
            cols,
            codes,
            block_scales,
            scale,
        })
    }

    fn row(&self, r: usize) -> (&[u8], &[u8]) {
        let (rb, nb) = (self.cols / 2, self.cols / 32);
        (
            &self.codes[r * rb..(r + 1) * rb],
            &self.block_scales[r * nb..(r + 1) * nb],
        )
    }

    pub fn n_bytes(&self) -> usize {
        self.codes.len() + self.block_scales.len() + 4 * self.rows
    }
}

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
fn padded_blocks(cols: usize) -> usize {
    (cols / 32).div_ceil(16) * 16
}

/// Each 32-column block's activation sum, the offset the AVX2 kernel removes (|Σ| ≤ 32·127 fits i16), appended
/// to `out` with the padding of `padded_blocks`.
fn block_sums(x: &[i8], out: &mut Vec<i16>) {
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
        let hs = crate::quant::dot::x86::lanes::hsum_i32;
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
        crate::quant::dot::x86::lanes::hsum_i32(off) + tail
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

/// The kernel a coarse head runs, chosen at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I4Path {
    Scalar,
    /// AVX2 detected at run time.
    Avx2,
    /// AVX-512 F and BW detected at run time.
    Avx512,
}

impl I4Path {
    /// The path for the engine's `Isa` (`HEARTH_ISA=avx2` selects the AVX2 kernel here too).
    pub fn for_isa(isa: Isa) -> I4Path {
        match isa {
            Isa::Avx512Vnni if Self::runnable().contains(&I4Path::Avx512) => I4Path::Avx512,
            Isa::Avx2 | Isa::AvxVnni | Isa::Avx512Vnni => I4Path::Avx2,
            Isa::Scalar | Isa::NeonDot => I4Path::Scalar,
        }
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
                (true, I4Path::Scalar),
                (avx2, I4Path::Avx2),
                (avx512, I4Path::Avx512),
            ]
            .into_iter()
            .filter_map(|(ok, p)| ok.then_some(p))
            .collect()
        }
        #[cfg(not(target_arch = "x86_64"))]
        vec![I4Path::Scalar]
    }
}

/// Four rows · one token; `xsum`: `block_sums(x)`.
fn dot4(w: [(&[u8], &[u8]); 4], x: &[i8], xsum: &[i16], path: I4Path) -> [i32; 4] {
    #[cfg(target_arch = "x86_64")]
    match path {
        // SAFETY: each path is chosen only when its features were detected at run time (`I4Path::runnable`).
        I4Path::Avx2 => return unsafe { dot4_avx2(w, x, xsum) },
        I4Path::Avx512 => return unsafe { dot4_avx512(w, x, xsum) },
        I4Path::Scalar => {}
    }
    let _ = (path, xsum);
    w.map(|r| dot_scalar(r, x))
}

/// out[t * m.rows + r] = row r · x[t] for every row and token, rows split across the pool; `xq` quantized per
/// token (|x| ≤ 127). `sums`: a buffer for the tokens' block sums, kept by the caller so a step allocates nothing.
pub fn matmul(
    pool: &ThreadPool,
    m: &RowsI4,
    path: I4Path,
    xq: &QActs,
    n_tok: usize,
    sums: &mut Vec<i16>,
    out: &mut [f32],
) {
    debug_assert!(xq.per_token && xq.cols == m.cols && out.len() >= n_tok * m.rows);
    let out = SharedMut(out.as_mut_ptr());
    sums.clear();
    for t in 0..n_tok {
        block_sums(&xq.q[t * m.cols..(t + 1) * m.cols], sums);
    }
    let (sums, per) = (&sums[..], padded_blocks(m.cols));
    // Claimed chunks of 256 rows (≥ 80 KB at 2560 columns): the pass is long, and a static split waits for the
    // slower thread.
    pool.run_chunks(m.rows, 4, 256, &|range| {
        // Rows outer, tokens inner: four rows stay in L1 while every token passes.
        let mut r = range.start;
        while r < range.end {
            let n = (range.end - r).min(4);
            let rows = [0, 1, 2, 3].map(|i| m.row(r + i.min(n - 1)));
            for (t, xs) in sums.chunks_exact(per).enumerate() {
                let x = &xq.q[t * m.cols..(t + 1) * m.cols];
                let v = dot4(rows, x, xs, path);
                let d = xq.row_d[t];
                for (i, &vi) in v.iter().enumerate().take(n) {
                    // SAFETY: this thread owns rows of `range`; the index is within `out`.
                    unsafe {
                        *out.ptr().add(t * m.rows + r + i) = vi as f32 * (d * m.scale[r + i])
                    };
                }
            }
            r += n;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_equals_scalar_exactly_and_quantization_is_close() {
        let mut s = 0x9e37_79b9_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for cols in [64, 192, 320, 2560] {
            // Rows of mixed magnitude (a block of outliers, a block of zeros), and a row of all zeros.
            let w: Vec<Vec<f32>> = (0..4)
                .map(|i| {
                    (0..cols)
                        .map(|c| {
                            let v = (next() % 2001) as f32 / 1000.0 - 1.0;
                            match (i, c / 32) {
                                (3, _) => 0.0,
                                (_, 0) => 20.0 * v,
                                (_, 1) if cols > 64 => 0.0,
                                _ => v,
                            }
                        })
                        .collect()
                })
                .collect();
            let m = RowsI4::quantize(4, cols, |r, buf| buf.copy_from_slice(&w[r])).unwrap();
            // Each weight within half a step of its block's scale.
            for (r, wr) in w.iter().enumerate() {
                let (codes, scales) = m.row(r);
                for (c, &v) in wr.iter().enumerate() {
                    let (k, j) = (c / CHUNK, c % 32);
                    let b = codes[32 * k + j];
                    let q = if c % CHUNK < 32 { b & 15 } else { b >> 4 } as i32 - 8;
                    let step = m.scale[r] * scales[c / 32] as f32;
                    assert!(
                        (q as f32 * step - v).abs() <= 0.5 * step + 1e-6,
                        "row {r} col {c}"
                    );
                }
            }
            for x in [
                (0..cols)
                    .map(|_| (next() % 255) as i32 as i8)
                    .map(|v| v.max(-127))
                    .collect::<Vec<i8>>(),
                vec![127; cols],
                vec![-127; cols],
            ] {
                let rows = [m.row(0), m.row(1), m.row(2), m.row(3)];
                let want = rows.map(|r| dot_scalar(r, &x));
                let mut xsum = Vec::new();
                block_sums(&x, &mut xsum);
                for path in I4Path::runnable() {
                    assert_eq!(dot4(rows, &x, &xsum, path), want, "{path:?} cols {cols}");
                }
            }
        }
        assert!(RowsI4::quantize(1, 96, |_, _| {}).is_err());
    }
}
