//! Hearth's CPU kernels, behind their own wall: the ggml block layouts (`types`, `blocks`), the scalar
//! dequantization (`dequant`), the int8 activation layouts the kernels read (`acts`), and the dot products —
//! `dot` for GGUF block formats, `ternary` for packed ternary groups, `rows_i4` / `rows_i8` for the output head's
//! integer rows — each with a scalar reference and AVX2 / AVX-VNNI / AVX-512 VNNI (x86-64) or NEON `sdot`
//! (AArch64) versions. The `unsafe` of the matrix products lives here (the engine keeps two small AVX2 helpers
//! of its own, `ops` dot/axpy and `attention`); what the crate hands out is safe to call: a kernel for an
//! instruction set is only returned when the running CPU has it (`Isa::or_scalar`, `I4Path`, `I8Path`), and the
//! ISA-specific entry points are private.
//!
//! **Invariant: every kernel equals its scalar reference, and the tests prove it.** Kernels that sum in
//! integers — the ternary groups, the int8 and int4 rows, each 32-weight block of the GGUF formats, each
//! 256-weight super-block of the K-quants — are bit-identical to the reference there. The K-quants then scale
//! each super-block with the reference's two FMAs (`dot::scalar::k_accumulate`), so every K-quant kernel is
//! bit-identical to the reference outright. The other GGUF formats accumulate their blocks' products in floats
//! and equal the reference to float rounding (tested to 1e-3 relative); every shape of such a kernel — four rows,
//! many tokens, the F16 tile — is bit-identical to its own one-token kernel, so a token's result never depends on
//! the batch it ran in. Each module's tests compare every path this CPU can run (`Isa::runnable`) with the
//! reference; `scripts/test-aarch64` runs them for the NEON paths under QEMU.

pub mod acts;
pub mod blocks;
pub mod dequant;
pub mod dot;
pub mod rows_i4;
pub mod rows_i8;
pub mod ternary;
mod types;

pub use acts::{
    balanced_groups, interleave_scales, interleave_sums, quantize_acts, quantize_acts_as,
    quantize_acts_q8k, token_groups, ActFormat, QActs, QGroup, QRow, GROUP, QK,
};
pub use dequant::dequantize_row;
pub use dot::Isa;
pub use types::GgmlType;

#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

#[inline]
pub fn read_f16(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}
