//! Gemma 3: embeddings scaled by sqrt(d_model), per-head q/k RMSNorm, post-attention and post-FFN norms,
//! GeGLU (tanh), NeoX rope, and five sliding-window layers (rope base 10 000) for every global layer
//! (rope base from the file, with linear scaling on global layers only). GGUF converters already add Gemma's
//! "+1" to every norm weight, so the norms here are plain RMSNorm.

use super::config::{Activation, Hparams, ModelConfig, Rope};
use crate::error::Result;
use crate::gguf::GgufFile;

pub const ARCHITECTURES: &[&str] = &["gemma3"];

/// Every sixth layer is global; the others use the sliding window.
const SWA_PATTERN: usize = 6;
const LOCAL_ROPE_BASE: f32 = 10_000.0;

pub fn config(file: &GgufFile, arch: &str) -> Result<ModelConfig> {
    let hp = Hparams { file, arch };
    let d_model = hp.usize("embedding_length")?;
    let n_heads = hp.usize("attention.head_count")?;
    let n_kv_heads = hp.usize_or("attention.head_count_kv", n_heads)?;
    let head_dim = hp.usize_or("attention.key_length", 256)?;
    let n_layers = hp.usize("block_count")?;
    let window = hp.usize_or("attention.sliding_window", 512)?;
    let rope_dims = hp.usize_or("rope.dimension_count", head_dim)?;
    let softcap = hp.f32_or("final_logit_softcapping", 0.0);
    Ok(ModelConfig {
        architecture: arch.to_owned(),
        n_layers,
        d_model,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn_dim: hp.usize("feed_forward_length")?,
        vocab_size: hp.vocab_size()?,
        context_length: hp.usize_or("context_length", 32768)?,
        rms_eps: hp.positive_f32_or("attention.layer_norm_rms_epsilon", 1e-6)?,
        activation: Activation::GeluTanh,
        embed_scale: Some((d_model as f32).sqrt()),
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        rope_global: Rope::new(
            rope_dims,
            hp.positive_f32_or("rope.freq_base", 1_000_000.0)?,
            hp.rope_freq_scale()?,
            None,
            true,
        ),
        rope_local: Rope::new(rope_dims, LOCAL_ROPE_BASE, 1.0, None, true),
        sliding_window: Some(window),
        layer_is_swa: (0..n_layers).map(|l| (l + 1) % SWA_PATTERN != 0).collect(),
        final_logit_softcap: (softcap > 0.0).then_some(softcap),
        per_token_acts: false,
    })
}
