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

pub fn config(file: &GgufFile, arch: &str) -> Result<ModelConfig> {
    let hp = Hparams { file, arch };
    let d_model = hp.usize("embedding_length")?;
    let n_heads = hp.usize("attention.head_count")?;
    let n_kv_heads = hp.usize_or("attention.head_count_kv", n_heads)?;
    let head_dim = hp.usize_or("attention.key_length", d_model / n_heads)?;
    let rope_dims = hp.usize_or("rope.dimension_count", head_dim)?;
    let rope = Rope::new(
        rope_dims,
        hp.f32_or("rope.freq_base", 500_000.0),
        hp.rope_freq_scale()?,
        None,
        false,
    );
    let n_layers = hp.usize("block_count")?;
    Ok(ModelConfig {
        architecture: arch.to_owned(),
        n_layers,
        d_model,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim: hp.usize("feed_forward_length")?,
        vocab_size: hp.vocab_size()?,
        context_length: hp.usize_or("context_length", 4096)?,
        rms_eps: hp.f32_or("attention.layer_norm_rms_epsilon", 1e-5),
        activation: Activation::ReluSquared,
        embed_scale: None,
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        rope_local: rope.clone(),
        rope_global: rope,
        sliding_window: None,
        layer_is_swa: vec![false; n_layers],
        final_logit_softcap: None,
        per_token_acts: true,
    })
}
