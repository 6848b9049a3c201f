//! Activations quantized to int8 in blocks of 32 (scale = absmax / 127, round to nearest), with scale × integer sum
//! of each block so that kernels can fold weight offsets (Q4_0's −8, Q4_1's min, …) in one multiply.

pub const QK: usize = 32;

/// A matrix of activations [rows × cols], quantized per 32-element block. Reused across steps to avoid
/// per-token allocation.
#[derive(Default, Debug, Clone)]
pub struct QActs {
    pub cols: usize,
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    /// d × Σq per block, precomputed once instead of in every weight row's kernel.
    pub dsum: Vec<f32>,
    /// Quantized per token (one scale per row, `ternary::quantize_per_token`) rather than per block; then
    /// `row_d` and `row_sum` hold each row's scale and integer sum.
    pub per_token: bool,
    pub row_d: Vec<f32>,
    pub row_sum: Vec<i32>,
}

/// One quantized row.
#[derive(Clone, Copy)]
pub struct QRow<'a> {
    pub q: &'a [i8],
    pub d: &'a [f32],
    pub dsum: &'a [f32],
}

impl QActs {
    pub fn row(&self, r: usize) -> QRow<'_> {
        let nb = self.cols / QK;
        QRow {
            q: &self.q[r * self.cols..(r + 1) * self.cols],
            d: &self.d[r * nb..(r + 1) * nb],
            dsum: &self.dsum[r * nb..(r + 1) * nb],
        }
    }
}

/// Round half to even (as `torch.round` and `nearbyint`) by the 1.5·2^23 trick: plain arithmetic the compiler
/// vectorises, no libm call. Exact for |v| < 2^22.
#[inline]
pub(crate) fn round_half_even(v: f32) -> f32 {
    (v + 12_582_912.0) - 12_582_912.0
}

/// Quantizes `x` ([rows × cols], cols a multiple of 32) into `out`.
pub fn quantize_acts(x: &[f32], cols: usize, out: &mut QActs) {
    debug_assert_eq!(cols % QK, 0);
    let rows = x.len() / cols;
    let nb = rows * cols / QK;
    out.cols = cols;
    out.per_token = false;
    out.q.resize(rows * cols, 0);
    out.d.resize(nb, 0.0);
    out.dsum.resize(nb, 0.0);
    for (b, chunk) in x.chunks_exact(QK).enumerate() {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut s = 0i32;
        for (o, &v) in out.q[b * QK..(b + 1) * QK].iter_mut().zip(chunk) {
            let q = round_half_even(v * id) as i32;
            *o = q as i8;
            s += q;
        }
        out.d[b] = d;
        out.dsum[b] = d * s as f32;
    }
}
