//! The CPU ternary back end (BitNet b1.58). Ternary weights from any of the file formats — bitnet.cpp's I2_S,
//! llama.cpp's TQ2_0 and TQ1_0 (when every block shares one scale, as converted BitNet models do) — are repacked
//! at load into one 2-bit, 4-row-interleaved layout (`Packed`). Activations are quantized per token to int8 by
//! absmax (`acts`), so a row · token product is one integer dot product and one float multiply at the end;
//! `kernels` holds the scalar reference and the AVX2 / AVX-512 VNNI versions. `synth` writes BitNet-shaped GGUF
//! files with random ternary weights; `hf` converts Hugging Face BitNet checkpoints (safetensors) to GGUF.

pub mod acts;
pub mod formats;
pub mod hf;
mod packed;
pub mod synth;

pub use acts::{quantize_per_token, rms_norm_quantize};
/// The group kernels over the packed layout (scalar reference and SIMD), from `hearth-kernels`.
pub use hearth_kernels::ternary as kernels;
pub use kernels::{CHUNK, GROUP};
pub(crate) use packed::matmul_packed;
pub use packed::Packed;
