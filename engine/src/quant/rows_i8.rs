//! Int8 rows: each row of a matrix quantized to int8 with its own f32 scale (absmax / 127), multiplied with
//! per-token int8 activations as one exact integer dot product per row. The `head = "i8"` load option turns a
//! BitNet model's tied F16 head — half the bytes a generated token reads — into a quarter of its F16 size, with
//! a kernel that does a sixth of the Q8_0 kernel's work per byte.

use crate::quant::QActs;
use crate::threadpool::SharedMut;

pub struct RowsI8 {
    pub rows: usize,
    pub cols: usize,
    q: Vec<i8>,
    scale: Vec<f32>,
}

impl RowsI8 {
    /// Quantizes rows given by `row(r, buf)` (f32, `cols` of them).
    pub fn quantize(rows: usize, cols: usize, row: impl Fn(usize, &mut [f32])) -> RowsI8 {
        let mut q = vec![0i8; rows * cols];
        let mut scale = vec![0f32; rows];
        let mut buf = vec![0f32; cols];
        for r in 0..rows {
            row(r, &mut buf);
            let amax = buf.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            for (o, v) in q[r * cols..(r + 1) * cols].iter_mut().zip(&buf) {
                *o = (v * id).round().clamp(-127.0, 127.0) as i8;
            }
            scale[r] = d;
        }
        RowsI8 {
            rows,
            cols,
            q,
            scale,
        }
    }

    pub fn row(&self, r: usize) -> &[i8] {
        &self.q[r * self.cols..(r + 1) * self.cols]
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let d = self.scale[r];
        out.iter_mut()
            .zip(self.row(r))
            .for_each(|(o, &v)| *o = v as f32 * d);
    }

    pub fn n_bytes(&self) -> usize {
        self.q.len() + 4 * self.rows
    }
}

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
            *o = crate::quant::dot::x86::lanes::hsum_i32(a);
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

/// Four rows · one token, on the best path (`simd`: AVX2, or NEON with dotprod, detected at load).
fn dot4(w: [&[i8]; 4], x: &[i8], simd: bool) -> [i32; 4] {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is set only when AVX2 was detected at run time.
        return unsafe { dot4_avx2(w, x) };
    }
    #[cfg(target_arch = "aarch64")]
    if simd {
        // SAFETY: `simd` is set only when NEON and dotprod were detected at run time.
        return unsafe { dot4_neon(w, x) };
    }
    let _ = simd;
    w.map(|r| dot_scalar(r, x))
}

/// out[t * stride + r] = row r · x[t] for rows lo..hi; `xq` quantized per token (|x| ≤ 127).
///
/// # Safety
/// `out` must hold n_tok × stride floats, and no other thread may write rows lo..hi of it.
pub(crate) unsafe fn matmul_rows_i8(
    m: &RowsI8,
    simd: bool,
    (lo, hi): (usize, usize),
    xq: &QActs,
    n_tok: usize,
    out: SharedMut<f32>,
) {
    debug_assert!(xq.per_token && xq.cols == m.cols);
    let stride = m.rows;
    // Rows outer, tokens inner: four rows (10 KB at the head's width) stay in L1 while every token passes, so a
    // batched decode step reads the head from memory once, not once per sequence.
    let mut r = lo;
    while r < hi {
        let n = (hi - r).min(4);
        let rows = [0, 1, 2, 3].map(|i| m.row(r + i.min(n - 1)));
        for t in 0..n_tok {
            let x = &xq.q[t * m.cols..(t + 1) * m.cols];
            let v = dot4(rows, x, simd);
            let d = xq.row_d[t];
            for (i, &vi) in v.iter().enumerate().take(n) {
                // SAFETY: the caller owns rows lo..hi.
                unsafe { *out.ptr().add(t * stride + r + i) = vi as f32 * (d * m.scale[r + i]) };
            }
        }
        r += n;
    }
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
                assert_eq!(dot4(rows, &x, false), want);
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") {
                    assert_eq!(dot4(rows, &x, true), want);
                }
                #[cfg(target_arch = "aarch64")]
                if std::arch::is_aarch64_feature_detected!("dotprod") {
                    assert_eq!(dot4(rows, &x, true), want);
                }
            }
        }
    }
}
