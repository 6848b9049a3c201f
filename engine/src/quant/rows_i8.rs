//! Int8 rows: each row of a matrix quantized to int8 with its own f32 scale (absmax / 127), multiplied with
//! per-token int8 activations as one exact integer dot product per row. The `head = "i8"` load option turns a
//! BitNet model's tied F16 head — half the bytes a generated token reads — into a quarter of its F16 size, with
//! a kernel that does a sixth of the Q8_0 kernel's work per byte (`hearth_kernels::rows_i8`).

use crate::quant::QActs;
use crate::threadpool::SharedMut;
use hearth_kernels::rows_i8::{dot4, I8Path};

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

/// out[t * stride + r] = row r · x[t] for rows lo..hi; `xq` quantized per token (|x| ≤ 127).
///
/// # Safety
/// `out` must hold n_tok × stride floats, and no other thread may write rows lo..hi of it.
pub(crate) unsafe fn matmul_rows_i8(
    m: &RowsI8,
    path: I8Path,
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
            let v = dot4(rows, x, path);
            let d = xq.row_d[t];
            for (i, &vi) in v.iter().enumerate().take(n) {
                // SAFETY: the caller owns rows lo..hi.
                unsafe { *out.ptr().add(t * stride + r + i) = vi as f32 * (d * m.scale[r + i]) };
            }
        }
        r += n;
    }
}
