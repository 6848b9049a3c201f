//! The llama family: Llama 2/3, SmolLM2, Mistral-style files, Qwen2/2.5 (q/k/v biases) and Qwen3 (q/k norms).
//! GGUF llama files store q/k permuted for adjacent-pair rope; Qwen files use NeoX pairs.

use super::config::{Activation, Hparams, ModelConfig, Rope};
use crate::error::Result;
use crate::gguf::GgufFile;

pub const ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "smollm3", "mistral"];

pub fn config(file: &GgufFile, arch: &str) -> Result<ModelConfig> {
    let hp = Hparams { file, arch };
    let d_model = hp.usize("embedding_length")?;
    let n_heads = hp.usize("attention.head_count")?;
    let n_kv_heads = hp.usize_or("attention.head_count_kv", n_heads)?;
    let head_dim = hp.usize_or("attention.key_length", d_model / n_heads)?;
    let rope_dims = hp.usize_or("rope.dimension_count", head_dim)?;
    let neox = matches!(arch, "qwen2" | "qwen3");
    let factors = super::rope_freq_factors(file)?;
    let rope = Rope::new(
        rope_dims,
        hp.positive_f32_or("rope.freq_base", 10000.0)?,
        hp.rope_freq_scale()?,
        factors.as_deref(),
        neox,
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
        rms_eps: hp.positive_f32_or("attention.layer_norm_rms_epsilon", 1e-5)?,
        activation: Activation::Silu,
        embed_scale: None,
        attn_scale: 1.0 / (head_dim as f32).sqrt(),
        rope_local: rope.clone(),
        rope_global: rope,
        sliding_window: None,
        layer_is_swa: vec![false; n_layers],
        final_logit_softcap: None,
        per_token_acts: false,
    })
}
