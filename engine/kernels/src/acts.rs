//! Activations quantized to int8, in one of two forms (`ActFormat`): blocks of 32 with an f16-precision scale
//! (llama.cpp's Q8_0/Q8_1, read by the 32-weight formats) or super-blocks of 256 with one f32 scale (llama.cpp's
//! Q8_K, read by the K-quants, whose kernels then scale a whole super-block in integers). Either way each
//! 32-block keeps scale × integer sum so that kernels can fold weight offsets (Q4_0's −8, Q4_1's min, …) in one
//! multiply.

pub const QK: usize = 32;

/// Elements per Q8_K super-block.
pub const QK_SUPER: usize = 256;

/// How activations are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActFormat {
    /// One scale per 32 elements, absmax / 127 at f16 precision (llama.cpp's Q8_0 and Q8_1).
    #[default]
    Q8,
    /// One f32 scale per 256 elements (llama.cpp's Q8_K): `d` repeats it for each of the eight 32-blocks, and
    /// `sum` holds each 32-block's integer sum (exact in f32). The K-quant kernels need this form; the others read
    /// it as 32-blocks that share a scale.
    Q8K,
}

/// A matrix of activations [rows × cols], quantized per 32-element block. Reused across steps to avoid
/// per-token allocation.
#[derive(Default, Debug, Clone)]
pub struct QActs {
    pub cols: usize,
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    /// d × Σq per block, precomputed once instead of in every weight row's kernel.
    pub dsum: Vec<f32>,
    pub format: ActFormat,
    /// Σq per 32-block as an exact f32 (`ActFormat::Q8K` only; empty otherwise).
    pub sum: Vec<f32>,
    /// Quantized per token (one scale per row, `ternary::quantize_per_token`) rather than per block; then
    /// `row_d` and `row_sum` hold each row's scale and integer sum.
    pub per_token: bool,
    pub row_d: Vec<f32>,
    pub row_sum: Vec<i32>,
    /// Block scales (and d × Σq) of each token group (`token_groups`), block-major: `group_d[g][b * GROUP + t]`,
    /// so a multi-token kernel loads one block's scales for all its tokens in one vector load.
    pub group_d: Vec<f32>,
    pub group_dsum: Vec<f32>,
    /// The same for `sum` (`ActFormat::Q8K` only).
    pub group_sum: Vec<f32>,
}

/// Most tokens a multi-token kernel takes at once.
pub const GROUP: usize = 8;

/// The tokens 0..n in balanced groups of at most `GROUP` (9 → 5 + 4, not 8 + 1), as (first, count).
pub fn token_groups(n: usize) -> impl Iterator<Item = (usize, usize)> {
    balanced_groups(n, GROUP)
}

/// 0..n in the fewest groups of at most `max`, their sizes differing by at most one, as (first, count).
pub fn balanced_groups(n: usize, max: usize) -> impl Iterator<Item = (usize, usize)> {
    let groups = n.div_ceil(max);
    (0..groups).scan(0, move |t0, g| {
        let m = n / groups + usize::from(g < n % groups);
        let first = *t0;
        *t0 += m;
        Some((first, m))
    })
}

/// Up to `GROUP` activation rows with their block scales also laid out block-major (`d[b * GROUP + t]`, zero for
/// absent tokens); `sum` the same for the integer sums of Q8_K rows (empty for Q8 ones).
#[derive(Clone, Copy)]
pub struct QGroup<'a> {
    pub rows: &'a [QRow<'a>],
    pub d: &'a [f32],
    pub dsum: &'a [f32],
    pub sum: &'a [f32],
}

/// Writes the block-major scales of `rows` (at most `GROUP`) to `d` and `dsum`, `blocks × GROUP` each.
pub fn interleave_scales(rows: &[QRow<'_>], d: &mut [f32], dsum: &mut [f32]) {
    assert!(rows.len() <= GROUP);
    let nb = rows.first().map_or(0, |r| r.d.len());
    assert!(d.len() >= nb * GROUP && dsum.len() >= nb * GROUP);
    for b in 0..nb {
        for t in 0..GROUP {
            let r = rows.get(t);
            d[b * GROUP + t] = r.map_or(0.0, |r| r.d[b]);
            dsum[b * GROUP + t] = r.map_or(0.0, |r| r.dsum[b]);
        }
    }
}

/// Writes the block-major integer sums of Q8_K `rows` (at most `GROUP`) to `sum`, `blocks × GROUP`.
pub fn interleave_sums(rows: &[QRow<'_>], sum: &mut [f32]) {
    assert!(rows.len() <= GROUP);
    let nb = rows.first().map_or(0, |r| r.sum.len());
    assert!(sum.len() >= nb * GROUP);
    for b in 0..nb {
        for t in 0..GROUP {
            sum[b * GROUP + t] = rows.get(t).map_or(0.0, |r| r.sum[b]);
        }
    }
}

/// One quantized row.
#[derive(Clone, Copy)]
pub struct QRow<'a> {
    pub q: &'a [i8],
    pub d: &'a [f32],
    pub dsum: &'a [f32],
    /// Σq per 32-block (Q8_K rows; empty for Q8 ones).
    pub sum: &'a [f32],
}

impl QRow<'_> {
    /// No int8 form: for float kernels, which read only the f32 activations.
    pub const EMPTY: QRow<'static> = QRow {
        q: &[],
        d: &[],
        dsum: &[],
        sum: &[],
    };

    /// Whether the row is in Q8_K form (one scale per 256, integer block sums).
    pub fn is_q8k(&self) -> bool {
        !self.d.is_empty() && self.sum.len() == self.d.len()
    }
}

impl QActs {
    /// Rows held (tokens).
    pub fn rows(&self) -> usize {
        self.q.len().checked_div(self.cols).unwrap_or(0)
    }

    /// Token group `g` of `token_groups(self.rows())` (`rows` holds its rows), with the block-major scales
    /// `quantize_acts` built for it.
    pub fn group<'a>(&'a self, g: usize, rows: &'a [QRow<'a>]) -> QGroup<'a> {
        let n = self.cols / QK * GROUP;
        QGroup {
            rows,
            d: &self.group_d[g * n..(g + 1) * n],
            dsum: &self.group_dsum[g * n..(g + 1) * n],
            sum: if self.format == ActFormat::Q8K {
                &self.group_sum[g * n..(g + 1) * n]
            } else {
                &[]
            },
        }
    }

    pub fn row(&self, r: usize) -> QRow<'_> {
        let nb = self.cols / QK;
        QRow {
            q: &self.q[r * self.cols..(r + 1) * self.cols],
            d: &self.d[r * nb..(r + 1) * nb],
            dsum: &self.dsum[r * nb..(r + 1) * nb],
            sum: if self.format == ActFormat::Q8K {
                &self.sum[r * nb..(r + 1) * nb]
            } else {
                &[]
            },
        }
    }
}

/// Round half to even (as `torch.round` and `nearbyint`) by the 1.5·2^23 trick: plain arithmetic the compiler
/// vectorises, no libm call. Exact for |v| < 2^22.
#[inline]
pub fn round_half_even(v: f32) -> f32 {
    (v + 12_582_912.0) - 12_582_912.0
}

/// Quantizes `x` ([rows × cols]) into `out` in `format` (cols a multiple of 32, or of 256 for Q8_K).
pub fn quantize_acts_as(format: ActFormat, x: &[f32], cols: usize, out: &mut QActs) {
    match format {
        ActFormat::Q8 => quantize_acts(x, cols, out),
        ActFormat::Q8K => quantize_acts_q8k(x, cols, out),
    }
}

/// Quantizes `x` ([rows × cols], cols a multiple of 32) into `out`, one f16-precision scale per 32 (`ActFormat::Q8`).
pub fn quantize_acts(x: &[f32], cols: usize, out: &mut QActs) {
    debug_assert_eq!(cols % QK, 0);
    let rows = x.len() / cols;
    let nb = rows * cols / QK;
    out.cols = cols;
    out.per_token = false;
    out.format = ActFormat::Q8;
    out.sum.clear();
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
        // The scale at f16 precision, as llama.cpp's Q8_0/Q8_1 activation blocks hold it (and Q4_1's kernels round
        // d·Σq to f16, as Q8_1 does): near-ties then fall as llama.cpp's do more often (engine/tests/reference.rs).
        let d = half::f16::from_f32(d).to_f32();
        out.d[b] = d;
        out.dsum[b] = d * s as f32;
    }
    build_group_scales(out);
}

/// Quantizes `x` ([rows × cols], cols a multiple of 256) into `out` as llama.cpp's `quantize_row_q8_K` does
/// (`ActFormat::Q8K`): per 256 elements, the value of largest magnitude maps to −127, codes round half to even,
/// and the scale is the reciprocal of that multiplier, kept in f32.
pub fn quantize_acts_q8k(x: &[f32], cols: usize, out: &mut QActs) {
    assert_eq!(cols % QK_SUPER, 0, "Q8_K activations need whole 256-blocks");
    let rows = x.len() / cols;
    let nb = rows * cols / QK;
    out.cols = cols;
    out.per_token = false;
    out.format = ActFormat::Q8K;
    out.q.resize(rows * cols, 0);
    out.d.resize(nb, 0.0);
    out.dsum.resize(nb, 0.0);
    out.sum.resize(nb, 0.0);
    for (s, chunk) in x.chunks_exact(QK_SUPER).enumerate() {
        // The first element of largest magnitude, with its sign.
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in chunk {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        let (iscale, d) = if amax > 0.0 {
            let iscale = -127.0 / max;
            (iscale, 1.0 / iscale)
        } else {
            (0.0, 0.0)
        };
        let q = &mut out.q[s * QK_SUPER..(s + 1) * QK_SUPER];
        for (o, &v) in q.iter_mut().zip(chunk) {
            *o = round_half_even(iscale * v).min(127.0) as i8;
        }
        for j in 0..QK_SUPER / QK {
            let b = s * (QK_SUPER / QK) + j;
            let sum: i32 = q[j * QK..(j + 1) * QK].iter().map(|&v| v as i32).sum();
            out.d[b] = d;
            out.sum[b] = sum as f32;
            out.dsum[b] = d * sum as f32;
        }
    }
    build_group_scales(out);
}

/// Lays out the block scales of every token group (`token_groups(rows)`) block-major for the multi-token kernels;
/// called by every quantizer once the rows are in.
pub fn build_group_scales(out: &mut QActs) {
    let (rows, cols) = (out.rows(), out.cols);
    let per_group = cols / QK * GROUP;
    let groups = if rows > 1 { rows.div_ceil(GROUP) } else { 0 };
    let (mut gd, mut gdsum, mut gsum) = (
        std::mem::take(&mut out.group_d),
        std::mem::take(&mut out.group_dsum),
        std::mem::take(&mut out.group_sum),
    );
    let q8k = out.format == ActFormat::Q8K;
    gd.resize(groups * per_group, 0.0);
    gdsum.resize(groups * per_group, 0.0);
    gsum.resize(if q8k { groups * per_group } else { 0 }, 0.0);
    if groups > 0 {
        let mut rows_buf = [out.row(0); GROUP];
        for (g, (t0, m)) in token_groups(rows).enumerate() {
            for (k, r) in rows_buf[..m].iter_mut().enumerate() {
                *r = out.row(t0 + k);
            }
            interleave_scales(
                &rows_buf[..m],
                &mut gd[g * per_group..(g + 1) * per_group],
                &mut gdsum[g * per_group..(g + 1) * per_group],
            );
            if q8k {
                interleave_sums(
                    &rows_buf[..m],
                    &mut gsum[g * per_group..(g + 1) * per_group],
                );
            }
        }
    }
    out.group_d = gd;
    out.group_dsum = gdsum;
    out.group_sum = gsum;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8k_maps_the_largest_magnitude_to_minus_127_and_keeps_exact_block_sums() {
        // Two rows of 256: the first has its largest magnitude negative, the second positive and tied.
        let mut x = vec![0f32; 512];
        for (i, v) in x.iter_mut().enumerate() {
            *v = ((i * 37 % 101) as f32 - 50.0) / 10.0;
        }
        x[3] = -12.7;
        x[256 + 9] = 25.4;
        x[256 + 10] = -25.4;
        let mut q = QActs::default();
        quantize_acts_q8k(&x, 256, &mut q);
        assert_eq!(q.format, ActFormat::Q8K);
        // Row 0: max = −12.7, so the multiplier is +10 and d = 0.1; the element itself becomes −127.
        assert_eq!(q.q[3], -127);
        assert_eq!(q.d[0], 1.0 / (-127.0 / -12.7f32));
        // Row 1: the first of the tied magnitudes (+25.4) sets the sign: d < 0 and it maps to −127, its
        // negative twin to +127.
        assert_eq!((q.q[256 + 9], q.q[256 + 10]), (-127, 127));
        assert!(q.d[8] < 0.0);
        for b in 0..16 {
            // One scale per 256, repeated for its eight 32-blocks; sums exact.
            assert_eq!(q.d[b], q.d[b / 8 * 8]);
            let s: i32 = q.q[b * 32..(b + 1) * 32].iter().map(|&v| v as i32).sum();
            assert_eq!(q.sum[b], s as f32);
            assert_eq!(q.dsum[b], q.d[b] * s as f32);
        }
        // Codes round half to even: 0.5 and 1.5 steps of a scale-1 block.
        let mut y = vec![0f32; 256];
        y[0] = -127.0;
        y[1] = 0.5;
        y[2] = 1.5;
        y[3] = -2.5;
        quantize_acts_q8k(&y, 256, &mut q);
        assert_eq!(&q.q[..4], &[-127, 0, 2, -2]);
        // A zero block: zero scale and codes, never NaN.
        quantize_acts_q8k(&[0f32; 256], 256, &mut q);
        assert!(q.q.iter().all(|&v| v == 0) && q.d.iter().all(|&d| d == 0.0));
    }

    #[test]
    fn q8k_rows_and_groups_carry_the_sums_and_q8_rows_do_not() {
        let x: Vec<f32> = (0..3 * 256).map(|i| (i % 17) as f32 - 8.0).collect();
        let mut q = QActs::default();
        quantize_acts_q8k(&x, 256, &mut q);
        let rows = [q.row(0), q.row(1), q.row(2)];
        assert!(rows.iter().all(|r| r.is_q8k() && r.sum.len() == 8));
        let g = q.group(0, &rows);
        for b in 0..8 {
            for (t, r) in rows.iter().enumerate() {
                assert_eq!(g.sum[b * GROUP + t], r.sum[b]);
                assert_eq!(g.d[b * GROUP + t], r.d[b]);
            }
        }
        let mut p = QActs::default();
        quantize_acts(&x, 256, &mut p);
        let rows = [p.row(0), p.row(1)];
        assert!(!rows[0].is_q8k() && p.group(0, &rows).sum.is_empty());
    }
}
