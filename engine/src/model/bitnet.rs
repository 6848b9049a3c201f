//! BitNet b1.58 (microsoft/bitnet-b1.58-2B-4T and its kind): the llama layout plus a sub-norm before each output
//! projection (`attn_sub_norm` on the attention output, `ffn_sub_norm` on the FFN's hidden state), a gated
//! squared-ReLU FFN, no biases, a tied F16 head, ternary matrices, and activations quantized to int8 per token
//! before every ternary matrix. Per layer:
//! `h = x + o(attn_sub_norm(attn(attn_norm(x))))`, `y = h + down(ffn_sub_norm(relu(gate(n)))² ⊙ up(n)))`
//! with `n = ffn_norm(h)`. GGUF files store q/k permuted for adjacent-pair rope, as llama files do.

use super::config::{Activation, Hparams, ModelConfig, Rope};
use crate::error::Result;
use crate::gguf::GgufFile;

/// bitnet.cpp writes `bitnet-b1.58`; llama.cpp `bitnet`; some conversions `bitnet-25`.
pub const ARCHITECTURES: &[&str] = &["bitnet-b1.58", "bitnet", "bitnet-25"];

/// The llama hyper-parameters, with BitNet's activation, per-token activations and rope base (500 000 when the
/// file does not say).
pub fn config(file: &GgufFile, arch: &str) -> Result<ModelConfig> {
    let mut c = super::llama::config(file, arch)?;
    c.activation = Activation::ReluSquared;
    c.per_token_acts = true;
    let hp = Hparams { file, arch };
    if hp.f32_or("rope.freq_base", 0.0) == 0.0 {
        let rope = Rope::new(
            c.rope_global.dims,
            500_000.0,
            hp.rope_freq_scale()?,
            None,
            false,
        );
        c.rope_local = rope.clone();
        c.rope_global = rope;
    }
    Ok(c)
}
