//! Models: loading a GGUF file into weights plus a `ModelConfig`, and the forward pass.
//! Architecture files (`llama`, `gemma3`) only translate metadata and tensor names; the forward pass
//! (`forward`) is shared and never branches on the back end.

pub mod bitnet;
pub mod config;
mod forward;
pub mod gemma3;
pub mod llama;
pub mod rescore;

pub use config::{Activation, ModelConfig};
pub use forward::{Entry, Scratch};

use crate::error::{EngineError, Result};
use crate::gguf::GgufFile;
use crate::quant::dot::Isa;
use crate::quant::GgmlType;
use crate::weights::Weight;
use std::path::Path;
use std::sync::Arc;

/// The `dtype` load option by name: `f16`, `f32`.
pub fn parse_dtype(s: &str) -> Option<GgmlType> {
    match s {
        "f16" => Some(GgmlType::F16),
        "f32" => Some(GgmlType::F32),
        _ => None,
    }
}

/// The `head` load option: what the output head is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadOption {
    /// Converted at load: `I8` (int8 rows with per-row scales and per-token activations), `Q8_0`, `Q4_0`, `F16`.
    Convert(GgmlType),
    /// Two passes: an int4 copy of the head (one scale per row) scores every row, then the best candidates are
    /// scored again with the file's own head, so the top of the distribution has the file's exact logits while a
    /// token reads a quarter of an F16 head's bytes (`rescore`).
    Rescored,
}

impl HeadOption {
    /// Every accepted name: the one list the parser, the CLI's help and error messages use.
    pub const NAMES: [&'static str; 5] = ["i8", "q8_0", "q4_0", "i4-rescored", "f16"];
}

impl std::fmt::Display for HeadOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadOption::Rescored => f.write_str("i4-rescored"),
            HeadOption::Convert(GgmlType::I8) => f.write_str("i8"),
            HeadOption::Convert(ty) => f.write_str(&ty.to_string().to_lowercase()),
        }
    }
}

/// The `head` load option by name (one of `HeadOption::NAMES`).
pub fn parse_head(s: &str) -> Option<HeadOption> {
    match s {
        "i8" => Some(HeadOption::Convert(GgmlType::I8)),
        "q8_0" => Some(HeadOption::Convert(GgmlType::Q8_0)),
        "q4_0" => Some(HeadOption::Convert(GgmlType::Q4_0)),
        "f16" => Some(HeadOption::Convert(GgmlType::F16)),
        "i4-rescored" => Some(HeadOption::Rescored),
        _ => None,
    }
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Convert every matrix to this type at load (`f16`/`f32`): a higher-precision twin of a quantized file, e.g.
    /// as a speculative-decoding target. None keeps the file's types (zero-copy).
    pub dtype: Option<GgmlType>,
    /// Kernel path; None detects the best one.
    pub isa: Option<Isa>,
    /// How to read the output head. BitNet's tied F16 head is more than half of the bytes a generated token
    /// reads; the 8-bit conversions halve them, Q4_0 leaves 28 %, the rescored int4 pass 25 % (the embedding
    /// look-up keeps the file's F16 rows). None: the file's head as stored.
    pub head: Option<HeadOption>,
}

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Weight,
    pub wk: Weight,
    pub wv: Weight,
    pub wo: Weight,
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Weight,
    pub w_up: Weight,
    pub w_down: Weight,
    pub post_ffn_norm: Option<Vec<f32>>,
    /// BitNet: RMSNorm of the attention output before `wo`, and of the FFN hidden state before `w_down`.
    pub attn_sub_norm: Option<Vec<f32>>,
    pub ffn_sub_norm: Option<Vec<f32>>,
}

pub struct Model {
    pub config: ModelConfig,
    pub file: Arc<GgufFile>,
    pub isa: Isa,
    pub embed: Weight,
    /// The output head (the file's, or converted by the `head` option).
    pub output: Weight,
    /// `head = "i4-rescored"`: the int4 copy every row is first scored with; `output` rescores the best.
    pub coarse_head: Option<rescore::CoarseHead>,
    pub output_norm: Vec<f32>,
    pub layers: Vec<Layer>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish()
    }
}

/// Llama 3 style frequency factors (`rope_freqs.weight`), when present.
fn rope_freq_factors(file: &GgufFile) -> Result<Option<Vec<f32>>> {
    match file.tensor_info("rope_freqs.weight") {
        None => Ok(None),
        Some(info) => Ok(Some(read_f32_vec(file, &info.name)?)),
    }
}

fn read_f32_vec(file: &GgufFile, name: &str) -> Result<Vec<f32>> {
    let info = file
        .tensor_info(name)
        .ok_or_else(|| EngineError::BadTensor {
            path: file.path().to_path_buf(),
            tensor: name.to_owned(),
            reason: "required tensor is missing".into(),
        })?;
    let mut out = vec![0f32; info.n_elements() as usize];
    if !crate::quant::dequantize_row(info.ty, file.tensor_data(info), &mut out) {
        return Err(EngineError::UnsupportedTensorType {
            path: file.path().to_path_buf(),
            tensor: name.to_owned(),
            ty: info.ty.name(),
        });
    }
    Ok(out)
}

impl Model {
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model> {
        let file = Arc::new(GgufFile::open(path)?);
        Self::from_gguf(file, opts)
    }

    pub fn from_gguf(file: Arc<GgufFile>, opts: &LoadOptions) -> Result<Model> {
        let arch = file.architecture()?.to_owned();
        let config = if llama::ARCHITECTURES.contains(&arch.as_str()) {
            llama::config(&file, &arch)?
        } else if gemma3::ARCHITECTURES.contains(&arch.as_str()) {
            gemma3::config(&file, &arch)?
        } else if bitnet::ARCHITECTURES.contains(&arch.as_str()) {
            bitnet::config(&file, &arch)?
        } else {
            return Err(EngineError::UnsupportedArchitecture(arch));
        };
        let isa = opts.isa.unwrap_or_else(Isa::detect);
        let f = &file;
        let per_token = config.per_token_acts;
        let weight = |name: &str| -> Result<Weight> {
            let mut w = Weight::from_file(f, name, isa)?;
            if per_token && w.ty.is_ternary() && opts.dtype.is_none() {
                // Ternary matrices of a per-token model go to the ternary back end when they can.
                let bad = |reason: String| EngineError::BadTensor {
                    path: f.path().to_path_buf(),
                    tensor: name.to_owned(),
                    reason,
                };
                w.repack_ternary(isa).map_err(bad)?;
                // llama.cpp's BitNet conversion may carry the scale as a separate one-element tensor.
                let scale_name = name.replace(".weight", ".scale");
                if f.tensor_info(&scale_name).is_some() {
                    let s = read_f32_vec(f, &scale_name)?;
                    match (s.as_slice(), w.packed_scale_mut()) {
                        ([v], Some(p)) => *p *= v,
                        _ => {
                            return Err(bad(format!(
                                "{scale_name} needs a one-element scale and a ternary matrix with one scale"
                            )))
                        }
                    }
                }
            }
            match opts.dtype {
                Some(ty) if ty != w.ty => w.converted(ty, isa),
                _ => Ok(w),
            }
        };
        let vec = |name: &str| read_f32_vec(f, name);
        let opt_vec = |name: &str| -> Result<Option<Vec<f32>>> {
            if f.tensor_info(name).is_some() {
                vec(name).map(Some)
            } else {
                Ok(None)
            }
        };
        let c = &config;
        let (q_dim, kv_dim) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let p = |s: &str| format!("blk.{l}.{s}");
            let layer = Layer {
                attn_norm: vec(&p("attn_norm.weight"))?,
                wq: weight(&p("attn_q.weight"))?,
                wk: weight(&p("attn_k.weight"))?,
                wv: weight(&p("attn_v.weight"))?,
                wo: weight(&p("attn_output.weight"))?,
                bq: opt_vec(&p("attn_q.bias"))?,
                bk: opt_vec(&p("attn_k.bias"))?,
                bv: opt_vec(&p("attn_v.bias"))?,
                q_norm: opt_vec(&p("attn_q_norm.weight"))?,
                k_norm: opt_vec(&p("attn_k_norm.weight"))?,
                post_attn_norm: opt_vec(&p("post_attention_norm.weight"))?,
                ffn_norm: vec(&p("ffn_norm.weight"))?,
                w_gate: weight(&p("ffn_gate.weight"))?,
                w_up: weight(&p("ffn_up.weight"))?,
                w_down: weight(&p("ffn_down.weight"))?,
                post_ffn_norm: opt_vec(&p("post_ffw_norm.weight"))?,
                attn_sub_norm: opt_vec(&p("attn_sub_norm.weight"))?,
                ffn_sub_norm: opt_vec(&p("ffn_sub_norm.weight"))?,
            };
            let shape_err = |t: &Weight, rows: usize, cols: usize| EngineError::BadTensor {
                path: f.path().to_path_buf(),
                tensor: t.name.clone(),
                reason: format!(
                    "shape [{} x {}] does not match the metadata ([{rows} x {cols}])",
                    t.rows, t.cols
                ),
            };
            for (w, rows, cols) in [
                (&layer.wq, q_dim, c.d_model),
                (&layer.wk, kv_dim, c.d_model),
                (&layer.wv, kv_dim, c.d_model),
                (&layer.wo, c.d_model, q_dim),
                (&layer.w_gate, c.ffn_dim, c.d_model),
                (&layer.w_up, c.ffn_dim, c.d_model),
                (&layer.w_down, c.d_model, c.ffn_dim),
            ] {
                if w.rows != rows || w.cols != cols {
                    return Err(shape_err(w, rows, cols));
                }
            }
            let norm_err = |what: &str, len: usize, want: usize| EngineError::BadTensor {
                path: f.path().to_path_buf(),
                tensor: p(what),
                reason: format!("length {len}, expected {want}"),
            };
            if layer.attn_norm.len() != c.d_model {
                return Err(norm_err(
                    "attn_norm.weight",
                    layer.attn_norm.len(),
                    c.d_model,
                ));
            }
            if layer.ffn_norm.len() != c.d_model {
                return Err(norm_err("ffn_norm.weight", layer.ffn_norm.len(), c.d_model));
            }
            for (n, name, want) in [
                (&layer.q_norm, "attn_q_norm.weight", c.head_dim),
                (&layer.k_norm, "attn_k_norm.weight", c.head_dim),
                (
                    &layer.post_attn_norm,
                    "post_attention_norm.weight",
                    c.d_model,
                ),
                (&layer.post_ffn_norm, "post_ffw_norm.weight", c.d_model),
                (&layer.attn_sub_norm, "attn_sub_norm.weight", q_dim),
                (&layer.ffn_sub_norm, "ffn_sub_norm.weight", c.ffn_dim),
                (&layer.bq, "attn_q.bias", q_dim),
                (&layer.bk, "attn_k.bias", kv_dim),
                (&layer.bv, "attn_v.bias", kv_dim),
            ] {
                if let Some(v) = n {
                    if v.len() != want {
                        return Err(norm_err(name, v.len(), want));
                    }
                }
            }
            layers.push(layer);
        }
        // Embeddings stay in the file's type: rows are dequantized on look-up.
        let embed = Weight::from_file(f, "token_embd.weight", isa)?;
        if embed.cols != c.d_model || embed.rows != c.vocab_size {
            return Err(EngineError::BadTensor {
                path: f.path().to_path_buf(),
                tensor: "token_embd.weight".into(),
                reason: format!(
                    "shape [{} x {}], expected [{} x {}] (vocabulary x width)",
                    embed.rows, embed.cols, c.vocab_size, c.d_model
                ),
            });
        }
        // Tied embeddings: the output head is the embedding matrix.
        let output = if f.tensor_info("output.weight").is_some() {
            weight("output.weight")?
        } else {
            weight("token_embd.weight")?
        };
        let (output, coarse_head) = match opts.head {
            Some(HeadOption::Convert(GgmlType::I8)) => (output.to_rows_i8(isa), None),
            Some(HeadOption::Convert(ty)) if ty != output.ty => (output.converted(ty, isa)?, None),
            Some(HeadOption::Rescored) => {
                if !output.has_row_kernel() {
                    return Err(EngineError::InvalidRequest(format!(
                        "head i4-rescored: the file's head ({}) has no one-row kernel to rescore with",
                        output.ty
                    )));
                }
                let coarse = rescore::CoarseHead::new(&output, isa)
                    .map_err(|e| EngineError::InvalidRequest(format!("head i4-rescored: {e}")))?;
                (output, Some(coarse))
            }
            _ => (output, None),
        };
        let output_norm = vec("output_norm.weight")?;
        // Repacked ternary (I2_S) matrices read per-token activations, whatever the architecture says.
        let mut config = config;
        config.per_token_acts |= layers.iter().any(|l| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                .iter()
                .any(|w| w.wants_per_token())
        });
        Ok(Model {
            config,
            isa,
            embed,
            output,
            coarse_head,
            output_norm,
            layers,
            file,
        })
    }

    pub fn kv_dim(&self) -> usize {
        self.config.n_kv_heads * self.config.head_dim
    }
}
