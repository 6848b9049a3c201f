//! Activations quantized to int8 in blocks of 32 (scale = absmax / 127 held at f16 precision, round to nearest),
//! with scale × integer sum of each block so that kernels can fold weight offsets (Q4_0's −8, Q4_1's min, …) in one
//! multiply.

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
    /// Block scales (and d × Σq) of each token group (`token_groups`), block-major: `group_d[g][b * GROUP + t]`,
    /// so a multi-token kernel loads one block's scales for all its tokens in one vector load.
    pub group_d: Vec<f32>,
    pub group_dsum: Vec<f32>,
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
/// absent tokens).
#[derive(Clone, Copy)]
pub struct QGroup<'a> {
    pub rows: &'a [QRow<'a>],
    pub d: &'a [f32],
    pub dsum: &'a [f32],
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

/// One quantized row.
#[derive(Clone, Copy)]
pub struct QRow<'a> {
    pub q: &'a [i8],
    pub d: &'a [f32],
    pub dsum: &'a [f32],
}

impl QRow<'_> {
    /// No int8 form: for float kernels, which read only the f32 activations.
    pub const EMPTY: QRow<'static> = QRow {
        q: &[],
        d: &[],
        dsum: &[],
    };
}

impl QActs {
    /// Rows held (tokens).
    pub fn rows(&self) -> usize {
        self.q.len().checked_div(self.cols).unwrap_or(0)
    }

    /// The block-major scales of token group `g` of `token_groups(self.rows())`, built by `quantize_acts`.
    pub fn group_scales(&self, g: usize) -> (&[f32], &[f32]) {
        let n = self.cols / QK * GROUP;
        (
            &self.group_d[g * n..(g + 1) * n],
            &self.group_dsum[g * n..(g + 1) * n],
        )
    }

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
pub fn round_half_even(v: f32) -> f32 {
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
        // The scale at f16 precision, as llama.cpp's Q8_0/Q8_1 activation blocks hold it (and Q4_1's kernels round
        // d·Σq to f16, as Q8_1 does): near-ties then fall as llama.cpp's do more often (engine/tests/reference.rs).
        let d = half::f16::from_f32(d).to_f32();
        out.d[b] = d;
        out.dsum[b] = d * s as f32;
    }
    build_group_scales(out);
}

/// Lays out the block scales of every token group (`token_groups(rows)`) block-major for the multi-token kernels;
/// called by every quantizer once the rows are in.
pub fn build_group_scales(out: &mut QActs) {
    let (rows, cols) = (out.rows(), out.cols);
    let per_group = cols / QK * GROUP;
    let groups = if rows > 1 { rows.div_ceil(GROUP) } else { 0 };
    let (mut gd, mut gdsum) = (
        std::mem::take(&mut out.group_d),
        std::mem::take(&mut out.group_dsum),
    );
    gd.resize(groups * per_group, 0.0);
    gdsum.resize(groups * per_group, 0.0);
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
        }
    }
    out.group_d = gd;
    out.group_dsum = gdsum;
}
