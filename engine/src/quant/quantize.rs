//! Quantizers, bit-exact with gguf-py (the llama.cpp project's GGUF library): the ternary types for writing
//! ternary model files (tests, synthetic models) in the real formats (rows are whole 256-element blocks), and
//! Q8_0 / Q4_0 for shrinking an output head at load.

use super::blocks::{QK_K, TQ1_0_BYTES, TQ2_0_BYTES};

/// Per block: the f16 scale (absmax) and the codes round(x / absmax) + 1 ∈ {0, 1, 2}, rounding half away from
/// zero in f32 as gguf-py does.
fn ternary_codes(block: &[f32]) -> (u16, [u8; QK_K]) {
    let d = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    let mut codes = [1u8; QK_K];
    for (c, &v) in codes.iter_mut().zip(block) {
        *c = ((v * id).round() as i32 + 1) as u8;
    }
    (half::f16::from_f32(d).to_bits(), codes)
}

/// TQ2_0: for each half g of the block, byte m holds elements 128·g + 32·l + m in bits 2l..2l+2.
pub fn quantize_tq2_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK_K * TQ2_0_BYTES);
    for block in x.chunks_exact(QK_K) {
        let (d, c) = ternary_codes(block);
        for g in 0..2 {
            for m in 0..32 {
                let mut b = 0u8;
                for l in 0..4 {
                    b |= c[128 * g + 32 * l + m] << (2 * l);
                }
                out.push(b);
            }
        }
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}

/// Packs base-3 digits (most significant first, 5 of them; fewer are padded with zeros) into the byte
/// ⌈v · 256 / 243⌉ that `dequant::tq1_digit` reads back.
fn pack5(digits: impl Iterator<Item = u8>) -> u8 {
    let v: u16 = digits
        .chain(std::iter::repeat(0))
        .take(5)
        .fold(0, |acc, d| acc * 3 + u16::from(d));
    (u32::from(v) * 256).div_ceil(243) as u8
}

/// TQ1_0: qs[0..32] hold elements n·32 + m (n = 0..5), qs[32..48] elements 160 + n·16 + m, qh[0..4] elements
/// 240 + n·4 + j (n = 0..4); then the f16 scale.
pub fn quantize_tq1_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / QK_K * TQ1_0_BYTES);
    for block in x.chunks_exact(QK_K) {
        let (d, c) = ternary_codes(block);
        for m in 0..32 {
            out.push(pack5((0..5).map(|n| c[n * 32 + m])));
        }
        for m in 0..16 {
            out.push(pack5((0..5).map(|n| c[160 + n * 16 + m])));
        }
        for j in 0..4 {
            out.push(pack5((0..4).map(|n| c[240 + n * 4 + j])));
        }
        out.extend_from_slice(&d.to_le_bytes());
    }
    out
}

/// Q8_0 (llama.cpp's reference quantizer): per 32 elements an f16 scale absmax / 127 and round(x / scale), halves
/// away from zero. Used to shrink an F16 output head at load (`LoadOptions::head`).
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * super::blocks::Q8_0_BYTES);
    for block in x.chunks_exact(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
    }
    out
}

/// Q4_0 (llama.cpp's reference quantizer): per 32 elements the value of largest magnitude m, an f16 scale
/// d = m / −8 and codes trunc(x / d + 8.5) clamped to 0..15 (weight (q − 8)·d); byte j holds element j in its low
/// nibble and element j + 16 in its high one. Used for the `head = "q4_0"` load option.
pub fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * super::blocks::Q4_0_BYTES);
    for block in x.chunks_exact(32) {
        let m = block
            .iter()
            .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = m / -8.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        let q = |v: f32| ((v * id + 8.5).trunc() as i32).clamp(0, 15) as u8;
        out.extend_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        out.extend((0..16).map(|j| q(block[j]) | q(block[j + 16]) << 4));
    }
    out
}
