//! Quantized tensor formats: the ggml block layouts, dequantization, activation quantization and the dot-product
//! kernels (scalar reference + SIMD, chosen at run time).

pub(crate) mod acts;
pub mod blocks;
pub(crate) mod dequant;
pub mod dot;
mod quantize;
pub mod rows_i4;
pub mod rows_i8;
mod types;

pub use acts::{
    balanced_groups, interleave_scales, quantize_acts, token_groups, QActs, QGroup, QRow, GROUP, QK,
};
pub use dequant::dequantize_row;
pub use quantize::{quantize_q4_0, quantize_q8_0, quantize_tq1_0, quantize_tq2_0};
pub use types::GgmlType;

#[inline]
pub(crate) fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

#[inline]
pub(crate) fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

#[inline]
pub(crate) fn read_f16(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}
