//! Hyper-parameters of a transformer, read from GGUF metadata by each architecture's file.

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Activation {
    /// SwiGLU: silu(gate) * up.
    Silu,
    /// GeGLU with the tanh approximation: gelu(gate) * up.
    GeluTanh,
    /// BitNet: relu(gate)² * up.
    ReluSquared,
}

/// Rotary embedding parameters for one class of layers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rope {
    /// Number of dimensions rotated per head (the rest pass through).
    pub dims: usize,
    /// Inverse frequency of each rotated pair, already including base, linear scaling and frequency factors.
    pub inv_freq: Vec<f32>,
    /// NeoX layout pairs (i, i + dims/2); otherwise adjacent pairs.
    pub neox: bool,
}

impl Rope {
    pub fn new(
        dims: usize,
        base: f32,
        freq_scale: f32,
        factors: Option<&[f32]>,
        neox: bool,
    ) -> Rope {
        let inv_freq = (0..dims / 2)
            .map(|i| {
                let f = base.powf(-(2.0 * i as f32) / dims as f32) * freq_scale;
                match factors {
                    Some(fs) => f / fs.get(i).copied().unwrap_or(1.0),
                    None => f,
                }
            })
            .collect();
        Rope {
            dims,
            inv_freq,
            neox,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelConfig {
    pub architecture: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub vocab_size: usize,
    pub context_length: usize,
    pub rms_eps: f32,
    pub activation: Activation,
    /// Multiply token embeddings by this (Gemma: sqrt(d_model)).
    pub embed_scale: Option<f32>,
    pub attn_scale: f32,
    /// Rope for global layers and, where different, for sliding-window layers.
    pub rope_global: Rope,
    pub rope_local: Rope,
    /// Sliding-window size and which layers use it.
    pub sliding_window: Option<usize>,
    pub layer_is_swa: Vec<bool>,
    pub final_logit_softcap: Option<f32>,
    /// Activations entering matrices are quantized per token by absmax (BitNet) instead of per 32-block.
    pub per_token_acts: bool,
}

/// Typed access to `{arch}.*` keys with clear errors.
pub struct Hparams<'a> {
    pub file: &'a GgufFile,
    pub arch: &'a str,
}

impl Hparams<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    pub fn usize(&self, k: &str) -> Result<usize> {
        let key = self.key(k);
        self.file
            .get_u64(&key)
            .map(|v| v as usize)
            .filter(|&v| v > 0 && v < (1 << 28))
            .ok_or_else(|| {
                EngineError::Metadata(format!(
                    "{}: {key} is missing or invalid",
                    self.file.path().display()
                ))
            })
    }
    pub fn usize_or(&self, k: &str, default: usize) -> Result<usize> {
        if self.file.get(&self.key(k)).is_some() {
            self.usize(k)
        } else {
            Ok(default)
        }
    }
    pub fn f32_or(&self, k: &str, default: f32) -> f32 {
        self.file
            .get_f64(&self.key(k))
            .map(|v| v as f32)
            .unwrap_or(default)
    }
    /// A value the arithmetic divides by or raises to a power (norm epsilon, rope base, scaling factor): NaN,
    /// infinite, zero or negative would load fine and generate nothing, so the key is refused by name.
    pub fn positive_f32_or(&self, k: &str, default: f32) -> Result<f32> {
        let v = self.f32_or(k, default);
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(EngineError::Metadata(format!(
                "{}: {} must be a finite positive number, not {v}",
                self.file.path().display(),
                self.key(k)
            )))
        }
    }
    pub fn str(&self, k: &str) -> Option<&str> {
        self.file.get_str(&self.key(k))
    }
    pub fn vocab_size(&self) -> Result<usize> {
        if let Some(n) = self
            .file
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .map(|a| a.len())
        {
            return Ok(n);
        }
        self.usize("vocab_size")
    }

    /// Linear rope scaling factor → frequency scale; other scaling types are refused rather than run wrongly.
    pub fn rope_freq_scale(&self) -> Result<f32> {
        match self.str("rope.scaling.type") {
            None | Some("none") => Ok(1.0),
            Some("linear") => {
                Ok(1.0 / self.positive_f32_or("rope.scaling.factor", 1.0)?)
            }
            Some(other) => Err(EngineError::Metadata(format!(
                "{}: rope scaling type '{other}' is not supported (supported: linear, llama3 frequency factors)",
                self.file.path().display()
            ))),
        }
    }
}
