//! Ternary file formats → codes (0, 1, 2 for −1, 0, +1) and one scale, and the I2_S encoder.
//!
//! I2_S (bitnet.cpp): the tensor row-major in 128-weight blocks of 32 bytes; byte j of a block holds weights
//! j, j+32, j+64, j+96 in bits 7:6, 5:4, 3:2, 1:0; then one f32 scale at byte n/4 (a multiplier: mean |W| of the
//! original weights) and padding to 32 bytes. TQ2_0 / TQ1_0 carry an f16 scale per 256-weight block; a tensor
//! converted from BitNet has the same scale in every block (blocks of only zeros carry 0 and are ignored), and only
//! such tensors can be repacked — others keep llama.cpp's per-block kernels.

use super::{Packed, CHUNK};
use crate::quant::blocks::{QK_K, TQ1_0_BYTES, TQ2_0_BYTES};
use crate::quant::dequant::tq1_digit;
use crate::quant::GgmlType;

/// Bytes of I2_S codes per row.
pub fn i2s_row_bytes(cols: usize) -> usize {
    cols / 4
}

/// Decodes row `r` of I2_S codes.
pub fn i2s_row_codes(data: &[u8], r: usize, cols: usize, out: &mut [u8]) {
    let rb = i2s_row_bytes(cols);
    for (blk, o) in data[r * rb..(r + 1) * rb]
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(CHUNK))
    {
        for (j, &b) in blk.iter().enumerate() {
            for l in 0..4 {
                o[32 * l + j] = (b >> (6 - 2 * l)) & 3;
            }
        }
    }
}

/// The per-tensor scale of an I2_S tensor of `n` elements: the f32 at byte n/4.
pub fn i2s_scale(data: &[u8], n: usize) -> Result<f32, String> {
    let at = n / 4;
    let bytes: [u8; 4] = data
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("I2_S data ends before its scale (byte {at})"))?;
    let s = f32::from_le_bytes(bytes);
    if !s.is_finite() || s < 0.0 {
        return Err(format!(
            "I2_S scale {s} is not a finite non-negative number"
        ));
    }
    Ok(s)
}

/// Encodes codes (row-major, `n` a multiple of 128) and a scale as I2_S tensor data (n/4 + 32 bytes).
pub fn encode_i2s(codes: &[u8], scale: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(codes.len() / 4 + 32);
    for blk in codes.chunks_exact(CHUNK) {
        for j in 0..32 {
            out.push(blk[j] << 6 | blk[32 + j] << 4 | blk[64 + j] << 2 | blk[96 + j]);
        }
    }
    out.extend_from_slice(&scale.to_le_bytes());
    out.resize(codes.len() / 4 + 32, 0);
    out
}

/// Codes of one 256-weight TQ2_0 / TQ1_0 block and its f16 scale bits.
fn tq_block(ty: GgmlType, b: &[u8], out: &mut [u8]) -> u16 {
    match ty {
        GgmlType::TQ2_0 => {
            for g in 0..2 {
                for l in 0..4 {
                    for m in 0..32 {
                        out[128 * g + 32 * l + m] = (b[32 * g + m] >> (2 * l)) & 3;
                    }
                }
            }
            u16::from_le_bytes([b[64], b[65]])
        }
        _ => {
            let groups: [(&[u8], usize); 3] = [(&b[0..32], 5), (&b[32..48], 5), (&b[48..52], 4)];
            let mut k = 0;
            for (bytes, digits) in groups {
                for n in 0..digits {
                    for &q in bytes {
                        out[k] = tq1_digit(q, n) as u8;
                        k += 1;
                    }
                }
            }
            u16::from_le_bytes([b[52], b[53]])
        }
    }
}

/// The scale shared by every non-zero block of a TQ2_0 / TQ1_0 tensor, or None when blocks differ (then the tensor
/// keeps its per-block kernels). A tensor of only zeros has scale 0.
pub fn tq_uniform_scale(ty: GgmlType, data: &[u8]) -> Option<f32> {
    let bb = match ty {
        GgmlType::TQ2_0 => TQ2_0_BYTES,
        GgmlType::TQ1_0 => TQ1_0_BYTES,
        _ => return None,
    };
    let mut codes = [0u8; QK_K];
    let mut shared: Option<u16> = None;
    for b in data.chunks_exact(bb) {
        let d = tq_block(ty, b, &mut codes);
        if codes.iter().all(|&c| c == 1) {
            continue;
        }
        match shared {
            None => shared = Some(d),
            Some(s) if s == d => {}
            Some(_) => return None,
        }
    }
    Some(shared.map_or(0.0, |d| half::f16::from_bits(d).to_f32()))
}

/// Repacks a ternary tensor ([rows × cols] of `ty`, its whole data) into the packed layout. TQ types must have a
/// uniform scale (`tq_uniform_scale`); Ok(None) when they do not.
pub fn pack(ty: GgmlType, data: &[u8], rows: usize, cols: usize) -> Result<Option<Packed>, String> {
    match ty {
        GgmlType::I2S => {
            if !cols.is_multiple_of(CHUNK) {
                return Err(format!("row length {cols} is not a multiple of 128"));
            }
            let scale = i2s_scale(data, rows * cols)?;
            Packed::from_rows(rows, cols, scale, |r, out| {
                i2s_row_codes(data, r, cols, out);
                Ok(())
            })
            .map(Some)
        }
        GgmlType::TQ2_0 | GgmlType::TQ1_0 => {
            let Some(scale) = tq_uniform_scale(ty, data) else {
                return Ok(None);
            };
            let bb = if ty == GgmlType::TQ2_0 {
                TQ2_0_BYTES
            } else {
                TQ1_0_BYTES
            };
            let rb = cols / QK_K * bb;
            Packed::from_rows(rows, cols, scale, |r, out| {
                for (b, o) in data[r * rb..(r + 1) * rb]
                    .chunks_exact(bb)
                    .zip(out.chunks_exact_mut(QK_K))
                {
                    tq_block(ty, b, o);
                }
                Ok(())
            })
            .map(Some)
        }
        other => Err(format!("{other} is not a ternary type")),
    }
}
