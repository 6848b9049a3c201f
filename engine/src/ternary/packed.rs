//! The repacked ternary layout and the matrix × activations product over it.
//!
//! Rows are taken four at a time (a group); a group is stored as `cols / 128` chunks of 128 bytes, each chunk
//! holding 32 bytes per row. Byte j of a row's 32 holds the codes of columns 128k + j + 32l in bits 2l..2l+2
//! (l = 0..4); code c means weight c − 1. One contiguous stream per group feeds four rows at once, and the
//! 32-byte lines decode with one shift and one mask per quarter.

use super::kernels::{Kernels, CHUNK, GROUP};
use crate::hugebuf::HugeBuf;
use crate::quant::QActs;
use crate::threadpool::SharedMut;

/// A ternary matrix [rows × cols]: codes in the layout above and one scale for the whole matrix.
pub struct Packed {
    pub rows: usize,
    pub cols: usize,
    pub scale: f32,
    data: HugeBuf,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Packed([{}x{}] scale {})",
            self.rows, self.cols, self.scale
        )
    }
}

/// Code 1 (weight 0) in all four positions: padding rows contribute nothing.
const ZERO_CODES: u8 = 0b0101_0101;

impl Packed {
    /// Packs a matrix whose row r's codes (0, 1 or 2, `cols` of them) `fill(r, buf)` writes; `fill` returns an
    /// error for data it cannot decode. Groups are packed in parallel.
    pub fn from_rows(
        rows: usize,
        cols: usize,
        scale: f32,
        fill: impl Fn(usize, &mut [u8]) -> Result<(), String> + Sync,
    ) -> Result<Packed, String> {
        if cols == 0 || !cols.is_multiple_of(CHUNK) {
            return Err(format!(
                "row length {cols} is not a multiple of the ternary block size {CHUNK}"
            ));
        }
        let n_groups = rows.div_ceil(GROUP);
        let gb = cols; // 4 rows × cols/4 bytes
                       // On huge pages: a decode step streams every matrix once (see `hugebuf`).
        let mut data = HugeBuf::new(n_groups * gb, ZERO_CODES);
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(n_groups.max(1));
        let per = n_groups.div_ceil(threads).max(1);
        let fill = &fill;
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let handles: Vec<_> = data
                .chunks_mut(per * gb)
                .enumerate()
                .map(|(ci, part)| {
                    s.spawn(move || -> Result<(), String> {
                        let mut codes = vec![1u8; cols];
                        for (gi, grp) in part.chunks_mut(gb).enumerate() {
                            let g = ci * per + gi;
                            for i in 0..GROUP {
                                let r = g * GROUP + i;
                                if r >= rows {
                                    break;
                                }
                                fill(r, &mut codes)?;
                                if let Some(c) = codes.iter().position(|&c| c > 2) {
                                    return Err(format!(
                                        "row {r}, column {c}: code 3 is not a ternary value"
                                    ));
                                }
                                put_row(grp, i, &codes);
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("packing thread panicked".into()))
                })
                .collect()
        });
        results.into_iter().collect::<Result<(), String>>()?;
        Ok(Packed {
            rows,
            cols,
            scale,
            data,
        })
    }

    pub fn n_groups(&self) -> usize {
        self.rows.div_ceil(GROUP)
    }

    /// The bytes of group g (rows 4g..4g+4).
    pub fn group(&self, g: usize) -> &[u8] {
        &self.data[g * self.cols..(g + 1) * self.cols]
    }

    pub fn n_bytes(&self) -> usize {
        self.data.len()
    }

    /// The code (0, 1, 2) of element (r, c).
    pub fn code(&self, r: usize, c: usize) -> u8 {
        let (g, i) = (r / GROUP, r % GROUP);
        let (k, j, l) = (c / CHUNK, c % 32, (c % CHUNK) / 32);
        (self.group(g)[k * CHUNK + i * 32 + j] >> (2 * l)) & 3
    }

    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate().take(self.cols) {
            *o = (self.code(r, c) as i32 - 1) as f32 * self.scale;
        }
    }
}

/// Writes row `i` (0..4) of a group from its codes.
fn put_row(grp: &mut [u8], i: usize, codes: &[u8]) {
    for (k, c) in codes.chunks_exact(CHUNK).enumerate() {
        let line = &mut grp[k * CHUNK + i * 32..k * CHUNK + i * 32 + 32];
        for (j, b) in line.iter_mut().enumerate() {
            *b = c[j] | c[32 + j] << 2 | c[64 + j] << 4 | c[96 + j] << 6;
        }
    }
}

/// Tokens per tile in prompt processing: the tile's int8 activations (≤ 32 × 6912 bytes) stay in L2 while every
/// group of the thread's row range passes over them.
const TOKEN_TILE: usize = 32;

/// out[t * out_stride + r] = Σ_c w[r, c] · x[t, c] for rows `lo..hi`, every token. `xq` must be quantized per token
/// (`quantize_per_token`). Groups straddling `lo` or `hi` are computed whole but only their rows in range written,
/// so concurrent callers with disjoint ranges never write the same element.
///
/// # Safety
/// `out` must point to at least `n_tok * out_stride` floats, and no other thread may write rows `lo..hi` of it.
#[allow(clippy::too_many_arguments)] // the rows of one thread's share: flat on purpose, called per matrix
pub(crate) unsafe fn matmul_packed(
    w: &Packed,
    k: &Kernels,
    lo: usize,
    hi: usize,
    xq: &QActs,
    n_tok: usize,
    out: SharedMut<f32>,
    out_stride: usize,
) {
    debug_assert!(xq.per_token && xq.cols == w.cols);
    let (g_lo, g_hi) = (lo / GROUP, hi.div_ceil(GROUP));
    let emit = |g: usize, t: usize, dots: &[i32; GROUP]| {
        let f = xq.row_d[t] * w.scale;
        let sum = xq.row_sum[t];
        for (i, &v) in dots.iter().enumerate() {
            let r = g * GROUP + i;
            if r >= lo && r < hi {
                // Σ (c − 1)·x = Σ c·x − Σ x, exact in i32; one float multiply at the end.
                // SAFETY: the caller owns rows lo..hi of `out`.
                unsafe { *out.ptr().add(t * out_stride + r) = (v - sum) as f32 * f };
            }
        }
    };
    let x = |t: usize| &xq.q[t * xq.cols..(t + 1) * xq.cols];
    let mut t0 = 0;
    while t0 < n_tok {
        let t1 = (t0 + TOKEN_TILE).min(n_tok);
        for g in g_lo..g_hi {
            let grp = w.group(g);
            let mut t = t0;
            while t + 4 <= t1 {
                let d = (k.t4)(grp, &[x(t), x(t + 1), x(t + 2), x(t + 3)]);
                for (j, dj) in d.iter().enumerate() {
                    emit(g, t + j, dj);
                }
                t += 4;
            }
            // The one to three tokens left decode the group once more, not once per token.
            match t1 - t {
                3 => {
                    for (j, dj) in (k.t3)(grp, &[x(t), x(t + 1), x(t + 2)]).iter().enumerate() {
                        emit(g, t + j, dj);
                    }
                }
                2 => {
                    for (j, dj) in (k.t2)(grp, &[x(t), x(t + 1)]).iter().enumerate() {
                        emit(g, t + j, dj);
                    }
                }
                1 => emit(g, t, &(k.t1)(grp, &[x(t)])[0]),
                _ => {}
            }
        }
        t0 = t1;
    }
}
