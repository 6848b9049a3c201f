//! Int4 rows with 8-bit block scales: weight ≈ S_row · s_b · q, q ∈ −7..=7, one u8 scale s_b per 32 columns and
//! one f32 scale per row; multiplied with per-token int8 activations as one exact integer sum per row,
//! Σ_b s_b · Σ_{i∈b} q_i·x_i. The coarse pass of the two-pass output head (`head = "i4-rescored"`): a token reads
//! 4.25 bits per head weight to find the candidates, and the file's head gives the candidates' logits, so this
//! pass only has to rank well (block scales keep it about as close as Q4_0; one scale per row was not).
//!
//! Layout and kernels: `hearth_kernels::rows_i4`.

use crate::quant::QActs;
use crate::threadpool::{SharedMut, ThreadPool};
pub use hearth_kernels::rows_i4::I4Path;
use hearth_kernels::rows_i4::{block_sums, dot4, padded_blocks, CHUNK};

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
                let want = rows.map(|r| hearth_kernels::rows_i4::dot_scalar(r, &x));
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
