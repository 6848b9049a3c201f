//! Activations for ternary layers: int8 per token by absmax, the BitNet b1.58 reference's rounding —
//! `scale = 127 / max(absmax, 1e-5)`, `q = clamp(round_half_even(x · scale), −128, 127)` (PyTorch's `round`), and
//! the product divided by `scale` afterwards (we multiply by `d = 1 / scale`). The per-block fields of `QActs` are
//! filled consistently (every block of a row has the row's scale), so int8 kernels of other types read the same
//! numbers.

use crate::quant::{QActs, QK};
use hearth_kernels::acts::{build_group_scales, round_half_even};

fn quantize_row(x: &[f32], amax: f32, q: &mut [i8]) -> (f32, i32) {
    let scale = 127.0 / amax.max(1e-5);
    let mut sum = 0i32;
    for (o, &v) in q.iter_mut().zip(x) {
        let r = round_half_even(v * scale).clamp(-128.0, 127.0) as i32;
        *o = r as i8;
        sum += r;
    }
    (1.0 / scale, sum)
}

fn prepare(out: &mut QActs, rows: usize, cols: usize) {
    let nb = rows * cols / QK;
    out.cols = cols;
    out.per_token = true;
    out.format = hearth_kernels::acts::ActFormat::Q8;
    out.sum.clear();
    out.q.resize(rows * cols, 0);
    out.d.resize(nb, 0.0);
    out.dsum.resize(nb, 0.0);
    out.row_d.resize(rows, 0.0);
    out.row_sum.resize(rows, 0);
}

fn finish_row(out: &mut QActs, r: usize, d: f32, sum: i32) {
    let cols = out.cols;
    let nb = cols / QK;
    out.row_d[r] = d;
    out.row_sum[r] = sum;
    for b in 0..nb {
        let s: i32 = out.q[r * cols + b * QK..r * cols + (b + 1) * QK]
            .iter()
            .map(|&v| v as i32)
            .sum();
        out.d[r * nb + b] = d;
        out.dsum[r * nb + b] = d * s as f32;
    }
}

/// Quantizes `x` ([rows × cols], cols a multiple of 32) per token into `out`.
pub fn quantize_per_token(x: &[f32], cols: usize, out: &mut QActs) {
    let rows = x.len() / cols;
    prepare(out, rows, cols);
    for (r, row) in x.chunks_exact(cols).enumerate() {
        let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let (d, sum) = quantize_row(row, amax, &mut out.q[r * cols..(r + 1) * cols]);
        finish_row(out, r, d, sum);
    }
    build_group_scales(out);
}

/// RMSNorm (`y = x / sqrt(mean(x²) + eps) · w`) of each row of `x` into `y`, and `y` quantized per token into
/// `out` — one pass to normalise and find the absmax, one to quantize, without re-reading `x`.
pub fn rms_norm_quantize(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], out: &mut QActs) {
    let cols = w.len();
    let rows = x.len() / cols;
    prepare(out, rows, cols);
    for (r, (xr, yr)) in x
        .chunks_exact(cols)
        .zip(y.chunks_exact_mut(cols))
        .enumerate()
    {
        crate::ops::rms_norm(xr, w, eps, yr);
        let amax = yr.iter().fold(0f32, |m, v| m.max(v.abs()));
        let (d, sum) = quantize_row(yr, amax, &mut out.q[r * cols..(r + 1) * cols]);
        finish_row(out, r, d, sum);
    }
    build_group_scales(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_like_torch_and_clamps() {
        // absmax 127 → scale 1: halves go to even, and the row's sum and scale are recorded.
        let mut x = vec![0f32; 32];
        x[..6].copy_from_slice(&[0.5, 1.5, 2.5, -0.5, -1.5, 127.0]);
        let mut q = QActs::default();
        quantize_per_token(&x, 32, &mut q);
        assert_eq!(&q.q[..6], &[0, 2, 2, 0, -2, 127]);
        assert_eq!(q.row_sum[0], 129);
        assert_eq!(q.row_d[0], 1.0);
        // The most negative value maps to −127 (absmax is symmetric), never below −128.
        x[5] = -127.0;
        quantize_per_token(&x, 32, &mut q);
        assert_eq!(q.q[5], -127);
        // All zeros: the 1e-5 floor keeps the scale finite.
        quantize_per_token(&[0f32; 32], 32, &mut q);
        assert!(q.q.iter().all(|&v| v == 0) && q.row_d[0].is_finite());
    }
}
