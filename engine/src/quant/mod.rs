//! Quantized tensor formats. The block layouts, scalar dequantization, activation quantization and every SIMD
//! kernel live in the `hearth-kernels` crate (re-exported here under the paths the engine has always used); this
//! module adds the quantizers that write model files and the integer-row containers of the output head with their
//! threaded products.

mod quantize;
pub mod rows_i4;
pub mod rows_i8;

pub(crate) use hearth_kernels::dequant;
pub use hearth_kernels::dequantize_row;
pub use hearth_kernels::{
    balanced_groups, blocks, dot, interleave_scales, interleave_sums, quantize_acts,
    quantize_acts_as, quantize_acts_q8k, token_groups, ActFormat, GgmlType, QActs, QGroup, QRow,
    GROUP, QK,
};
pub use quantize::{quantize_q4_0, quantize_q8_0, quantize_tq1_0, quantize_tq2_0};
