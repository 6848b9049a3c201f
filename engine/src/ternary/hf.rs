//! Hugging Face BitNet checkpoints (config.json + model.safetensors, as microsoft/bitnet-b1.58-2B-4T publishes
//! them) → a BitNet GGUF file.
//!
//! Projections are `weight` uint8 [out/4, in], packed along the output dimension: bit pair i of byte [r, k] is the
//! code of row r + i·out/4 (code c means weight c − 1), with a `weight_scale` (bf16, one element). Transformers'
//! `BitLinear` *divides* by it (`y / (input_scale · weight_scale)`), so it is 1 / mean|W|; GGUF's I2_S scale is the
//! multiplier mean|W|. The GGUF scale is therefore 1 / weight_scale — settled numerically by the tiny-model
//! fixture (`tests/golden/bitnet-tiny`), whose logits come from transformers itself. q and k rows are permuted
//! for adjacent-pair rope, as llama.cpp's converters do, because GGUF BitNet files are read that way.

use super::synth::{encode_ternary, header, Shape};
use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgufFile, MetaValue};
use crate::quant::GgmlType;
use std::collections::BTreeMap;
use std::path::Path;

/// A header entry's array of non-negative integers (`shape`, `data_offsets`); missing → empty.
fn usizes(t: &serde_json::Map<String, serde_json::Value>, key: &str) -> Vec<usize> {
    t.get(key)
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|v| v as usize))
                .collect()
        })
        .unwrap_or_default()
}

/// One tensor of a safetensors file.
struct StTensor {
    dtype: String,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A safetensors file read whole: 8-byte header length, JSON header, data.
pub struct SafeTensors {
    bytes: Vec<u8>,
    base: usize,
    tensors: BTreeMap<String, StTensor>,
}

impl SafeTensors {
    pub fn read(path: &Path) -> Result<SafeTensors, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bad = |why: &str| format!("{}: not a safetensors file ({why})", path.display());
        let len: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("too short"))?;
        let len = u64::from_le_bytes(len) as usize;
        let header = bytes
            .get(8..8usize.saturating_add(len))
            .ok_or_else(|| bad("header runs past the end"))?;
        let json: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(header).map_err(|e| bad(&format!("header: {e}")))?;
        let base = 8 + len;
        let mut tensors = BTreeMap::new();
        for (name, v) in json {
            if name == "__metadata__" {
                continue;
            }
            let t: serde_json::Map<String, serde_json::Value> = serde_json::from_value(v)
                .map_err(|_| bad(&format!("{name}: entry is not an object")))?;
            let dtype = t
                .get("dtype")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_owned();
            let shape = usizes(&t, "shape");
            let offs = usizes(&t, "data_offsets");
            let [start, end] = offs[..] else {
                return Err(bad(&format!("{name}: data_offsets missing")));
            };
            if start > end || base + end > bytes.len() {
                return Err(bad(&format!("{name}: data lies outside the file")));
            }
            tensors.insert(
                name,
                StTensor {
                    dtype,
                    shape,
                    start,
                    end,
                },
            );
        }
        Ok(SafeTensors {
            bytes,
            base,
            tensors,
        })
    }

    fn get(&self, name: &str) -> Result<(&StTensor, &[u8]), String> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| format!("tensor {name} is missing"))?;
        Ok((t, &self.bytes[self.base + t.start..self.base + t.end]))
    }

    /// A float tensor (F32, F16 or BF16) as f32.
    pub fn floats(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        let (t, b) = self.get(name)?;
        let v: Vec<f32> = match t.dtype.as_str() {
            "F32" => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "F16" => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            "BF16" => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => return Err(format!("tensor {name}: dtype {other} is not a float type")),
        };
        if v.len() != t.shape.iter().product::<usize>() {
            return Err(format!(
                "tensor {name}: {} values for shape {:?}",
                v.len(),
                t.shape
            ));
        }
        Ok((t.shape.clone(), v))
    }

    /// A packed ternary projection: codes row-major [out × in] and the GGUF (multiplier) scale.
    pub fn ternary(&self, name: &str) -> Result<(usize, usize, Vec<u8>, f32), String> {
        let (t, b) = self.get(&format!("{name}.weight"))?;
        if t.dtype != "U8" || t.shape.len() != 2 || b.len() != t.shape[0] * t.shape[1] {
            return Err(format!(
                "{name}.weight: expected packed uint8 [out/4, in], found {} {:?}",
                t.dtype, t.shape
            ));
        }
        let (q, cols) = (t.shape[0], t.shape[1]);
        let rows = 4 * q;
        let mut codes = vec![1u8; rows * cols];
        for r in 0..q {
            for k in 0..cols {
                let byte = b[r * cols + k];
                for i in 0..4 {
                    codes[(r + i * q) * cols + k] = (byte >> (2 * i)) & 3;
                }
            }
        }
        if codes.contains(&3) {
            return Err(format!("{name}.weight: code 3 is not a ternary value"));
        }
        let (_, s) = self.floats(&format!("{name}.weight_scale"))?;
        let ws = match s[..] {
            [v] if v.is_finite() && v > 0.0 => v,
            _ => {
                return Err(format!(
                    "{name}.weight_scale: expected one positive number, found {s:?}"
                ))
            }
        };
        Ok((rows, cols, codes, 1.0 / ws))
    }
}

/// Reorders the rows of q or k (heads × head_dim rows) from rotate-half pairs (i, i + hd/2) to adjacent pairs.
fn permute_rows<T: Copy>(v: &[T], n_heads: usize, cols: usize) -> Vec<T> {
    let rows = v.len() / cols;
    let hd = rows / n_heads;
    let mut out = Vec::with_capacity(v.len());
    for h in 0..n_heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let r = h * hd + j * (hd / 2) + i;
                out.extend_from_slice(&v[r * cols..(r + 1) * cols]);
            }
        }
    }
    out
}

/// `tokenizer.*` keys from a checkpoint's tokenizer.json (byte-level BPE, as Llama 3's) and tokenizer_config.json:
/// tokens by id (gaps and the rest of the vocabulary padded with reserved control tokens), types (added special
/// tokens are control, other added ones user-defined), merges, BOS/EOS/EOT, chat template. The pre-tokenizer is
/// named `llama-bpe` when the file splits digits in threes as Llama 3's does, else GPT-2's.
fn tokenizer_from_json(w: &mut GgufWriter, dir: &Path, vocab: usize) -> Result<(), String> {
    use crate::gguf::MetaArray;
    let read = |name: &str| -> Result<Option<serde_json::Value>, String> {
        let p = dir.join(name);
        if !p.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let Some(tj) = read("tokenizer.json")? else {
        return Ok(());
    };
    let model = &tj["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(format!(
            "tokenizer.json: model type {} (only BPE is supported)",
            model["type"]
        ));
    }
    let mut tokens: Vec<Option<String>> = vec![None; vocab];
    let mut types = vec![1i32; vocab];
    let mut put = |id: u64, text: &str, ty: i32| -> Result<(), String> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            format!("tokenizer.json: token id {id} is beyond the vocabulary of {vocab}")
        })?;
        *slot = Some(text.to_owned());
        types[id as usize] = ty;
        Ok(())
    };
    for (text, id) in model["vocab"]
        .as_object()
        .ok_or("tokenizer.json: model.vocab is missing")?
    {
        put(
            id.as_u64()
                .ok_or("tokenizer.json: a vocabulary id is not a number")?,
            text,
            1,
        )?;
    }
    for t in tj["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(text)) = (t["id"].as_u64(), t["content"].as_str()) else {
            return Err("tokenizer.json: an added token lacks id or content".into());
        };
        put(
            id,
            text,
            if t["special"].as_bool() == Some(true) {
                3
            } else {
                4
            },
        )?;
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.unwrap_or_else(|| format!("<|reserved_special_token_{i}|>")))
        .collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.starts_with("<|reserved_special_token_") {
            types[i] = 3;
        }
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .ok_or("tokenizer.json: model.merges is missing")?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Array(p) => match (
                p.first().and_then(|a| a.as_str()),
                p.get(1).and_then(|b| b.as_str()),
            ) {
                (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                _ => Err("tokenizer.json: a merge is not a pair of strings".to_owned()),
            },
            _ => Err("tokenizer.json: a merge is neither a string nor a pair".to_owned()),
        })
        .collect::<Result<_, _>>()?;
    let pre = if tj["pre_tokenizer"].to_string().contains(r"\p{N}{1,3}") {
        "llama-bpe"
    } else {
        "default"
    };
    let id_of = |text: &str| tokens.iter().position(|t| t == text).map(|i| i as u32);
    let cfg = read("tokenizer_config.json")?.unwrap_or_default();
    let special = |k: &str| -> Option<u32> {
        let v = &cfg[k];
        v.as_str().or_else(|| v["content"].as_str()).and_then(id_of)
    };
    w.meta("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .meta("tokenizer.ggml.pre", MetaValue::String(pre.into()))
        .meta(
            "tokenizer.ggml.token_type",
            MetaValue::Array(MetaArray::I32(types)),
        )
        .meta(
            "tokenizer.ggml.merges",
            MetaValue::Array(MetaArray::String(merges)),
        );
    if let Some(b) = special("bos_token") {
        w.meta("tokenizer.ggml.bos_token_id", MetaValue::U32(b));
    }
    if let Some(e) = special("eos_token") {
        w.meta("tokenizer.ggml.eos_token_id", MetaValue::U32(e));
    }
    if let Some(e) = id_of("<|eot_id|>") {
        w.meta("tokenizer.ggml.eot_token_id", MetaValue::U32(e));
    }
    if let Some(b) = cfg["add_bos_token"].as_bool() {
        w.meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(b));
    }
    if let Some(t) = cfg["chat_template"].as_str() {
        w.meta("tokenizer.chat_template", MetaValue::String(t.into()));
    }
    w.meta(
        "tokenizer.ggml.tokens",
        MetaValue::Array(MetaArray::String(tokens)),
    );
    Ok(())
}

fn cfg_usize(cfg: &serde_json::Value, k: &str) -> Result<usize, String> {
    cfg.get(k)
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .ok_or_else(|| format!("config.json: {k} is missing"))
}

/// Converts the checkpoint in `dir` to a GGUF writer with ternary matrices of `ty`. `tokenizer`: a GGUF file whose
/// tokenizer to embed; None reads the checkpoint's tokenizer.json (+ tokenizer_config.json) when there is one, else
/// writes none (ids only).
pub fn convert(
    dir: &Path,
    ty: GgmlType,
    tokenizer: Option<&GgufFile>,
) -> Result<GgufWriter, String> {
    let cfg_text = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| format!("{}/config.json: {e}", dir.display()))?;
    let cfg: serde_json::Value =
        serde_json::from_str(&cfg_text).map_err(|e| format!("config.json: {e}"))?;
    let st = SafeTensors::read(&dir.join("model.safetensors"))?;
    let d = cfg_usize(&cfg, "hidden_size")?;
    let f = cfg_usize(&cfg, "intermediate_size")?;
    let n_layers = cfg_usize(&cfg, "num_hidden_layers")?;
    let n_heads = cfg_usize(&cfg, "num_attention_heads")?;
    let n_kv = cfg_usize(&cfg, "num_key_value_heads").unwrap_or(n_heads);
    let vocab = cfg_usize(&cfg, "vocab_size")?;
    let ctx = cfg_usize(&cfg, "max_position_embeddings").unwrap_or(4096);
    let eps = cfg
        .get("rms_norm_eps")
        .and_then(|v| v.as_f64())
        .unwrap_or(1e-5) as f32;
    let theta = cfg
        .get("rope_theta")
        .and_then(|v| v.as_f64())
        .unwrap_or(500_000.0) as f32;
    if let Some(act) = cfg.get("hidden_act").and_then(|v| v.as_str()) {
        if act != "relu2" {
            return Err(format!(
                "config.json: hidden_act {act} (BitNet b1.58 uses relu2)"
            ));
        }
    }

    let shape = Shape {
        d_model: d,
        n_layers,
        ffn_dim: f,
        n_heads,
        n_kv_heads: n_kv,
        vocab: Some(vocab),
        context: ctx,
    };
    let mut w = header(
        ty,
        &format!("{} ({ty})", dir.display()),
        &shape,
        vocab,
        theta,
        eps,
    );
    match tokenizer {
        Some(src) => crate::synth::tokenizer::copy_tokenizer(&mut w, src, vocab)?,
        None => tokenizer_from_json(&mut w, dir, vocab)?,
    }

    let (shape, embd) = st.floats("model.embed_tokens.weight")?;
    if shape != [vocab, d] {
        return Err(format!(
            "model.embed_tokens.weight: shape {shape:?}, expected [{vocab}, {d}]"
        ));
    }
    let f16 = |v: &[f32]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| half::f16::from_f32(*x).to_bits().to_le_bytes())
            .collect()
    };
    w.tensor(
        "token_embd.weight",
        &[d as u64, vocab as u64],
        GgmlType::F16,
        f16(&embd),
    );
    if st.tensors.contains_key("lm_head.weight") {
        let (_, head) = st.floats("lm_head.weight")?;
        w.tensor(
            "output.weight",
            &[d as u64, vocab as u64],
            GgmlType::F16,
            f16(&head),
        );
    }
    let norm = |w: &mut GgufWriter, from: &str, to: &str, n: usize| -> Result<(), String> {
        let (_, v) = st.floats(from)?;
        if v.len() != n {
            return Err(format!("{from}: {} values, expected {n}", v.len()));
        }
        w.f32_tensor(to, &[n as u64], &v);
        Ok(())
    };
    norm(&mut w, "model.norm.weight", "output_norm.weight", d)?;
    for l in 0..n_layers {
        let hf = |s: &str| format!("model.layers.{l}.{s}");
        let gg = |s: &str| format!("blk.{l}.{s}");
        norm(
            &mut w,
            &hf("input_layernorm.weight"),
            &gg("attn_norm.weight"),
            d,
        )?;
        norm(
            &mut w,
            &hf("self_attn.attn_sub_norm.weight"),
            &gg("attn_sub_norm.weight"),
            d,
        )?;
        norm(
            &mut w,
            &hf("post_attention_layernorm.weight"),
            &gg("ffn_norm.weight"),
            d,
        )?;
        norm(
            &mut w,
            &hf("mlp.ffn_sub_norm.weight"),
            &gg("ffn_sub_norm.weight"),
            f,
        )?;
        for (from, to, heads) in [
            ("self_attn.q_proj", "attn_q.weight", Some(n_heads)),
            ("self_attn.k_proj", "attn_k.weight", Some(n_kv)),
            ("self_attn.v_proj", "attn_v.weight", None),
            ("self_attn.o_proj", "attn_output.weight", None),
            ("mlp.gate_proj", "ffn_gate.weight", None),
            ("mlp.up_proj", "ffn_up.weight", None),
            ("mlp.down_proj", "ffn_down.weight", None),
        ] {
            let (rows, cols, codes, scale) = st.ternary(&hf(from))?;
            let codes = match heads {
                Some(h) => permute_rows(&codes, h, cols),
                None => codes,
            };
            // TQ types store an f16 scale; I2_S keeps the f32.
            let scale = if ty == GgmlType::I2S {
                scale
            } else {
                half::f16::from_f32(scale).to_f32()
            };
            w.tensor(
                &gg(to),
                &[cols as u64, rows as u64],
                ty,
                encode_ternary(&codes, scale, cols, ty),
            );
        }
    }
    Ok(w)
}
