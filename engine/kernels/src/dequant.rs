//! Scalar dequantization of every supported type: the reference the kernels are tested against, and the path
//! used for embedding look-ups and for types without a dedicated kernel.

use super::blocks::*;
use super::{bf16_to_f32, f16_to_f32, read_f16, GgmlType};

/// Dequantizes one row (`src` holds exactly `out.len()` elements of type `ty`). Returns false for a type without
/// a dequantizer (callers check `GgmlType::is_supported_weight` at load, so this is a guard, not a path).
pub fn dequantize_row(ty: GgmlType, src: &[u8], out: &mut [f32]) -> bool {
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::Q4_0 => blockwise(src, out, Q4_0_BYTES, 32, |b, y| {
            let d = read_f16(b, 0);
            for j in 0..16 {
                y[j] = ((b[2 + j] & 0xF) as i32 - 8) as f32 * d;
                y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
            }
        }),
        GgmlType::Q4_1 => blockwise(src, out, Q4_1_BYTES, 32, |b, y| {
            let (d, m) = (read_f16(b, 0), read_f16(b, 2));
            for j in 0..16 {
                y[j] = (b[4 + j] & 0xF) as f32 * d + m;
                y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
            }
        }),
        GgmlType::Q5_0 => blockwise(src, out, Q5_0_BYTES, 32, |b, y| {
            let d = read_f16(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for j in 0..16 {
                let h0 = ((qh >> j) << 4) & 0x10;
                let h1 = (qh >> (j + 12)) & 0x10;
                y[j] = (((b[6 + j] & 0xF) as u32 | h0) as i32 - 16) as f32 * d;
                y[j + 16] = (((b[6 + j] >> 4) as u32 | h1) as i32 - 16) as f32 * d;
            }
        }),
        GgmlType::Q5_1 => blockwise(src, out, Q5_1_BYTES, 32, |b, y| {
            let (d, m) = (read_f16(b, 0), read_f16(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            for j in 0..16 {
                let h0 = ((qh >> j) << 4) & 0x10;
                let h1 = (qh >> (j + 12)) & 0x10;
                y[j] = ((b[8 + j] & 0xF) as u32 | h0) as f32 * d + m;
                y[j + 16] = ((b[8 + j] >> 4) as u32 | h1) as f32 * d + m;
            }
        }),
        GgmlType::Q8_0 => blockwise(src, out, Q8_0_BYTES, 32, |b, y| {
            let d = read_f16(b, 0);
            for j in 0..32 {
                y[j] = (b[2 + j] as i8) as f32 * d;
            }
        }),
        GgmlType::Q2K => blockwise(src, out, Q2_K_BYTES, QK_K, dequant_q2k),
        GgmlType::Q3K => blockwise(src, out, Q3_K_BYTES, QK_K, dequant_q3k),
        GgmlType::Q4K => blockwise(src, out, Q4_K_BYTES, QK_K, dequant_q4k),
        GgmlType::Q5K => blockwise(src, out, Q5_K_BYTES, QK_K, dequant_q5k),
        GgmlType::Q6K => blockwise(src, out, Q6_K_BYTES, QK_K, dequant_q6k),
        GgmlType::TQ1_0 => blockwise(src, out, TQ1_0_BYTES, QK_K, dequant_tq1_0),
        GgmlType::TQ2_0 => blockwise(src, out, TQ2_0_BYTES, QK_K, dequant_tq2_0),
        _ => return false,
    }
    true
}

#[inline]
fn blockwise(
    src: &[u8],
    out: &mut [f32],
    bytes: usize,
    elems: usize,
    f: impl Fn(&[u8], &mut [f32]),
) {
    for (b, y) in src.chunks_exact(bytes).zip(out.chunks_exact_mut(elems)) {
        f(b, y);
    }
}

/// TQ2_0: 2-bit codes c (weight c − 1), four per byte. Bytes 32·g..32·g+32 hold elements 128·g + 32·l + m in bits
/// 2l..2l+2 (l = 0..4, m = 0..32); then the f16 scale.
fn dequant_tq2_0(b: &[u8], y: &mut [f32]) {
    let d = read_f16(b, 64);
    for g in 0..2 {
        for l in 0..4 {
            for m in 0..32 {
                let c = (b[32 * g + m] >> (2 * l)) & 3;
                y[128 * g + 32 * l + m] = (c as i32 - 1) as f32 * d;
            }
        }
    }
}

/// The base-3 digit `n` (most significant first) of a TQ1_0 byte: bytes hold 5 (or 4) digits as the fraction
/// q/256 of 3^5, so multiplying by 3^n shifts the wanted digit to the top, read by `× 3 >> 8`.
#[inline]
pub fn tq1_digit(q: u8, n: usize) -> i32 {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    ((q.wrapping_mul(POW3[n]) as u16 * 3) >> 8) as i32
}

/// TQ1_0: qs[48] (bytes 0..32 give elements n·32 + m for digits n = 0..5; bytes 32..48 give 160 + n·16 + m), qh[4]
/// (elements 240 + n·4 + j, digits n = 0..4), then the f16 scale. Digit c means weight c − 1.
fn dequant_tq1_0(b: &[u8], y: &mut [f32]) {
    let d = read_f16(b, 52);
    // (bytes, digits per byte), in element order.
    let groups: [(&[u8], usize); 3] = [(&b[0..32], 5), (&b[32..48], 5), (&b[48..52], 4)];
    let mut k = 0;
    for (bytes, digits) in groups {
        for n in 0..digits {
            for &q in bytes {
                y[k] = (tq1_digit(q, n) - 1) as f32 * d;
                k += 1;
            }
        }
    }
}

fn dequant_q2k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let qs = &b[16..80];
    let d = read_f16(b, 80);
    let min = read_f16(b, 82);
    let mut is = 0;
    let mut yi = 0;
    for n in 0..2 {
        let q = &qs[n * 32..n * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0xF) as f32;
                let ml = min * (sc >> 4) as f32;
                for l in 0..16 {
                    y[yi] = dl * ((q[l + 16 * half] >> shift) & 3) as f32 - ml;
                    yi += 1;
                }
            }
        }
    }
}

/// Unpacks Q3_K's twelve bytes of 6-bit scales into sixteen signed scales.
fn q3k_scales(raw: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let rd = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
    let (a0, a1, tmp) = (rd(0), rd(4), rd(8));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, w) in aux.iter().enumerate() {
        for (k, byte) in w.to_le_bytes().iter().enumerate() {
            out[i * 4 + k] = *byte as i8;
        }
    }
    out
}

fn dequant_q3k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let qs = &b[32..96];
    let scales = q3k_scales(&b[96..108]);
    let d_all = read_f16(b, 108);
    let mut m = 1u8;
    let mut is = 0;
    let mut yi = 0;
    for n in 0..2 {
        let q = &qs[n * 32..n * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 0..16 {
                    let i = l + 16 * half;
                    let low = ((q[i] >> shift) & 3) as i32;
                    let high = if hmask[i] & m != 0 { 0 } else { 4 };
                    y[yi] = dl * (low - high) as f32;
                    yi += 1;
                }
            }
            m <<= 1;
        }
    }
}

fn dequant_q4k(b: &[u8], y: &mut [f32]) {
    let d = read_f16(b, 0);
    let min = read_f16(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..144];
    for j in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        let q = &qs[j * 32..j * 32 + 32];
        for l in 0..32 {
            y[j * 64 + l] = d1 * (q[l] & 0xF) as f32 - m1;
            y[j * 64 + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn dequant_q5k(b: &[u8], y: &mut [f32]) {
    let d = read_f16(b, 0);
    let min = read_f16(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for j in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
        let q = &qs[j * 32..j * 32 + 32];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[j * 64 + l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
            y[j * 64 + 32 + l] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn dequant_q6k(b: &[u8], y: &mut [f32]) {
    let d = read_f16(b, 208);
    for n in 0..2 {
        let ql = &b[n * 64..n * 64 + 64];
        let qh = &b[128 + n * 32..128 + n * 32 + 32];
        let sc = &b[192 + n * 8..192 + n * 8 + 8];
        let y = &mut y[n * 128..n * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}
