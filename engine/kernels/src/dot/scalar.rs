//! Scalar reference kernels. Integer inner products, then the block scales — the same arithmetic the SIMD
//! versions do, so they agree to float rounding.

use super::DotFn;
use crate::blocks::*;
use crate::{dequantize_row, read_f16, GgmlType, QRow, QK};

pub fn kernel(ty: GgmlType) -> Option<DotFn> {
    Some(match ty {
        GgmlType::F32 => dot_f32,
        GgmlType::F16 => dot_f16,
        GgmlType::BF16 => dot_dequant::<30>,
        GgmlType::Q2K => dot_dequant::<10>,
        GgmlType::Q3K => dot_dequant::<11>,
        GgmlType::Q4_0 => dot_q4_0,
        GgmlType::Q4_1 => dot_q4_1,
        GgmlType::Q5_0 => dot_q5_0,
        GgmlType::Q5_1 => dot_q5_1,
        GgmlType::Q8_0 => dot_q8_0,
        GgmlType::Q4K => dot_q4k,
        GgmlType::Q5K => dot_q5k,
        GgmlType::Q6K => dot_q6k,
        GgmlType::TQ2_0 => dot_tq2_0,
        GgmlType::TQ1_0 => dot_dequant::<34>,
        _ => return None,
    })
}

/// Dequantizes 256 elements at a time and takes an f32 dot: the fallback for types without an integer kernel.
/// `T` is the ggml type id.
pub fn dot_dequant<const T: u32>(w: &[u8], _xq: QRow<'_>, xf: &[f32]) -> f32 {
    let ty = GgmlType::from_id(T);
    let Some((elems, bytes)) = ty.block_geometry() else {
        return f32::NAN;
    };
    let per = 256 / elems * bytes;
    let mut buf = [0f32; 256];
    let mut sum = 0f32;
    for (chunk, x) in w.chunks(per).zip(xf.chunks(256)) {
        let k = x.len();
        dequantize_row(ty, chunk, &mut buf[..k]);
        sum += buf[..k].iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
    }
    sum
}

pub fn dot_f32(w: &[u8], _xq: QRow<'_>, xf: &[f32]) -> f32 {
    w.chunks_exact(4)
        .zip(xf)
        .map(|(c, x)| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * x)
        .sum()
}

pub fn dot_f16(w: &[u8], _xq: QRow<'_>, xf: &[f32]) -> f32 {
    w.chunks_exact(2)
        .zip(xf)
        .map(|(c, x)| read_f16(c, 0) * x)
        .sum()
}

#[inline]
fn idot(a: impl Iterator<Item = i32>, x: &[i8]) -> i32 {
    a.zip(x).map(|(a, &b)| a * b as i32).sum()
}

/// Unsigned nibbles of a 16-byte `qs`: low nibbles are elements 0..16, high nibbles 16..32.
#[inline]
fn nibbles(qs: &[u8]) -> impl Iterator<Item = i32> + '_ {
    qs.iter()
        .map(|&b| (b & 0xF) as i32)
        .chain(qs.iter().map(|&b| (b >> 4) as i32))
}

/// TQ2_0: per 32-element sub-block, the integer dot of the codes c (weight c − 1) with the int8 activations; the
/// −1 is folded in through the activations' `dsum` (d × Σq).
pub fn dot_tq2_0(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
    let mut s = 0f32;
    for (b, blk) in w.chunks_exact(TQ2_0_BYTES).enumerate() {
        let mut acc = 0f32;
        for g in 0..2 {
            for l in 0..4 {
                let sub = b * 8 + g * 4 + l;
                let codes = blk[32 * g..32 * g + 32]
                    .iter()
                    .map(|&q| ((q >> (2 * l)) & 3) as i32);
                let dot = idot(codes, &xq.q[sub * QK..]);
                acc += xq.d[sub] * dot as f32 - xq.dsum[sub];
            }
        }
        s += read_f16(blk, 64) * acc;
    }
    s
}

pub fn dot_q4_0(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
    let mut s = 0f32;
    for (b, blk) in w.chunks_exact(Q4_0_BYTES).enumerate() {
        let dot = idot(nibbles(&blk[2..18]), &xq.q[b * QK..]);
        s += read_f16(blk, 0) * (xq.d[b] * dot as f32 - 8.0 * xq.dsum[b]);
    }
    s
}

/// d·Σx at f16 precision: llama.cpp's Q8_1 activations hold it so, and its Q4_1/Q5_1 kernels multiply the min by it.
fn sum_f16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

pub fn dot_q4_1(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
    let mut s = 0f32;
    for (b, blk) in w.chunks_exact(Q4_1_BYTES).enumerate() {
        let dot = idot(nibbles(&blk[4..20]), &xq.q[b * QK..]);
        s += read_f16(blk, 0) * xq.d[b] * dot as f32 + read_f16(blk, 2) * sum_f16(xq.dsum[b]);
    }
    s
}

fn q5_values(qh: u32, qs: &[u8]) -> impl Iterator<Item = i32> + '_ {
    (0..32).map(move |i| {
        let nib = if i < 16 { qs[i] & 0xF } else { qs[i - 16] >> 4 };
        (nib as i32) | ((((qh >> i) & 1) as i32) << 4)
    })
}

pub fn dot_q5_0(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
    let mut s = 0f32;
    for (b, blk) in w.chunks_exact(Q5_0_BYTES).enumerate() {
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let dot = idot(q5_values(qh, &blk[6..22]), &xq.q[b * QK..]);
        s += read_f16(blk, 0) * (xq.d[b] * dot as f32 - 16.0 * xq.dsum[b]);
    }
    s
}

pub fn dot_q5_1(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
    let mut s = 0f32;
    for (b, blk) in w.chunks_exact(Q5_1_BYTES).enumerate() {
        let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
        let dot = idot(q5_values(qh, &blk[8..24]), &xq.q[b * QK..]);
        s += read_f16(blk, 0) * xq.d[b] * dot as f32 + read_f16(blk, 2) * sum_f16(xq.dsum[b]);
    }
    s
}

pub fn dot_q8_0(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
    let mut s = 0f32;
    for (b, blk) in w.chunks_exact(Q8_0_BYTES).enumerate() {
        let dot = idot(blk[2..34].iter().map(|&v| v as i8 as i32), &xq.q[b * QK..]);
        s += read_f16(blk, 0) * xq.d[b] * dot as f32;
    }
    s
}

/// One K-quant super-block's share, on Q8_K activations (`ActFormat::Q8K`): the exact integer sums `isum` (sub-block
/// products times their sub-scales) and `msum` (mins times the activations' block sums) scaled once each by the
/// super-block's d·dx and dmin·dx. Every K-quant kernel accumulates with exactly these two FMAs, super-block by
/// super-block, so they all equal this reference bit for bit.
#[inline]
pub fn k_accumulate(acc: &mut (f32, f32), isum: i32, msum: i32, d: f32, dmin: f32, dx: f32) {
    acc.0 = (isum as f32).mul_add(d * dx, acc.0);
    acc.1 = (msum as f32).mul_add(dmin * dx, acc.1);
}

/// Q4_K and Q5_K: codes `code(j, l)` of sub-block j, element l.
fn dot_k_min<const BYTES: usize>(
    w: &[u8],
    xq: QRow<'_>,
    code: impl Fn(&[u8], usize, usize) -> i32,
) -> f32 {
    assert!(xq.is_q8k(), "K-quant kernels read Q8_K activations");
    let mut acc = (0f32, 0f32);
    for (sb, blk) in w.chunks_exact(BYTES).enumerate() {
        let (mut isum, mut msum) = (0i32, 0i32);
        // The activations' integer block sums of this super-block, exact in f32.
        for (j, &sum) in xq.sum[sb * 8..sb * 8 + 8].iter().enumerate() {
            let (sc, m) = scale_min_k4(j, &blk[4..16]);
            let x = &xq.q[(sb * 8 + j) * QK..];
            isum += sc as i32 * idot((0..32).map(|l| code(blk, j, l)), x);
            msum += m as i32 * sum as i32;
        }
        let dx = xq.d[sb * 8];
        k_accumulate(&mut acc, isum, msum, read_f16(blk, 0), read_f16(blk, 2), dx);
    }
    acc.0 - acc.1
}

pub fn dot_q4k(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
    dot_k_min::<Q4_K_BYTES>(w, xq, |blk, j, l| {
        ((blk[16 + (j / 2) * 32 + l] >> (4 * (j % 2))) & 0xF) as i32
    })
}

pub fn dot_q5k(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
    dot_k_min::<Q5_K_BYTES>(w, xq, |blk, j, l| {
        let lo = (blk[48 + (j / 2) * 32 + l] >> (4 * (j % 2))) & 0xF;
        let hi = (blk[16 + l] >> j) & 1;
        (lo | (hi << 4)) as i32
    })
}

pub fn dot_q6k(w: &[u8], xq: QRow<'_>, _xf: &[f32]) -> f32 {
    assert!(xq.is_q8k(), "K-quant kernels read Q8_K activations");
    let mut acc = (0f32, 0f32);
    for (sb, blk) in w.chunks_exact(Q6_K_BYTES).enumerate() {
        let mut isum = 0i32;
        for n in 0..2 {
            let ql = &blk[n * 64..n * 64 + 64];
            let qh = &blk[128 + n * 32..128 + n * 32 + 32];
            let sc = &blk[192 + n * 8..192 + n * 8 + 8];
            for part in 0..4 {
                let b = sb * 8 + n * 4 + part;
                let x = &xq.q[b * QK..b * QK + QK];
                for half in 0..2 {
                    let mut dot = 0i32;
                    for l in half * 16..half * 16 + 16 {
                        let (lo_byte, hi_shift) = match part {
                            0 => (ql[l] & 0xF, 0),
                            1 => (ql[l + 32] & 0xF, 2),
                            2 => (ql[l] >> 4, 4),
                            _ => (ql[l + 32] >> 4, 6),
                        };
                        let q = (lo_byte | (((qh[l] >> hi_shift) & 3) << 4)) as i32 - 32;
                        dot += q * x[l] as i32;
                    }
                    isum += dot * (sc[part * 2 + half] as i8) as i32;
                }
            }
        }
        k_accumulate(&mut acc, isum, 0, read_f16(blk, 208), 0.0, xq.d[sb * 8]);
    }
    acc.0 - acc.1
}
