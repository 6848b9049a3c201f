//! BERT embedding models as GGUF files, named as llama.cpp's converter names them: architecture `bert`, tensors
//! `token_embd`, `position_embd`, `token_types`, `token_embd_norm`, `blk.N.{attn_q,attn_k,attn_v,attn_output,
//! attn_output_norm,ffn_up,ffn_down,layer_output_norm}`, the `bert.*` hyperparameters and pooling type, and the
//! WordPiece vocabulary in llama.cpp's "phantom space" spelling (a word-initial piece gains U+2581, a `##`
//! continuation loses its `##`, control tokens stay as they are). `write` converts a sentence-transformers folder;
//! `GgufTensors` and `wordpiece` read such a file back for `Embedder::open_gguf`.

use super::bert::{tensor_names, BertConfig, Tensors};
use super::Pooling;
use crate::error::{EngineError, Result};
use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgufFile, MetaArray, MetaValue};
use crate::quant::GgmlType;
use std::path::Path;

/// GGUF's token type of a control (special) token.
const CONTROL: i32 = 3;
const NORMAL: i32 = 1;
/// llama.cpp's word-start marker.
const PHANTOM: char = '\u{2581}';

/// llama.cpp's name of a Hugging Face BERT tensor (`bert.` prefixes dropped).
pub fn gguf_name(hf: &str) -> Option<String> {
    let hf = hf.strip_prefix("bert.").unwrap_or(hf);
    let (base, suffix) = hf.rsplit_once('.')?;
    let name = match base {
        "embeddings.word_embeddings" => "token_embd".to_owned(),
        "embeddings.position_embeddings" => "position_embd".to_owned(),
        "embeddings.token_type_embeddings" => "token_types".to_owned(),
        "embeddings.LayerNorm" => "token_embd_norm".to_owned(),
        _ => {
            let (layer, part) = base.strip_prefix("encoder.layer.")?.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let g = match part {
                "attention.self.query" => "attn_q",
                "attention.self.key" => "attn_k",
                "attention.self.value" => "attn_v",
                "attention.output.dense" => "attn_output",
                "attention.output.LayerNorm" => "attn_output_norm",
                "intermediate.dense" => "ffn_up",
                "output.dense" => "ffn_down",
                "output.LayerNorm" => "layer_output_norm",
                _ => return None,
            };
            format!("blk.{layer}.{g}")
        }
    };
    Some(format!("{name}.{suffix}"))
}

/// A token as llama.cpp's BERT vocabulary spells it.
fn phantom(token: &str, control: bool) -> String {
    if control {
        token.to_owned()
    } else if let Some(rest) = token.strip_prefix("##") {
        rest.to_owned()
    } else {
        format!("{PHANTOM}{token}")
    }
}

/// A token of llama.cpp's BERT vocabulary as WordPiece spells it. Files from older converters kept `[…]` tokens
/// as they were without marking them control.
fn unphantom(token: &str, control: bool) -> String {
    if control || (token.starts_with('[') && token.ends_with(']')) {
        token.to_owned()
    } else if let Some(rest) = token.strip_prefix(PHANTOM) {
        rest.to_owned()
    } else {
        format!("##{token}")
    }
}

fn bad(path: &Path, m: impl std::fmt::Display) -> EngineError {
    EngineError::Metadata(format!("{}: {m}", path.display()))
}

/// Converts a sentence-transformers folder (config.json, model.safetensors, tokenizer.json with a WordPiece
/// model, pooling) to a BERT GGUF. Matrices and embedding tables are written as `ty` (F32, F16 or Q8_0; a table
/// whose rows Q8_0 cannot block stays F16), vectors as F32.
pub fn write(dir: &Path, ty: GgmlType) -> Result<GgufWriter> {
    if !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0) {
        return Err(EngineError::InvalidRequest(format!(
            "an embedding model converts to f32, f16 or q8_0, not {}",
            ty.name()
        )));
    }
    let config = BertConfig::from_json(&super::read_json(&dir.join("config.json"))?)?;
    let st = super::safetensors::SafeTensors::open(&dir.join("model.safetensors"))?;
    let pooling = super::pooling_of(dir)?;
    let tj = super::read_json(&dir.join("tokenizer.json"))?;
    let tpath = dir.join("tokenizer.json");
    if tj["model"]["type"] != "WordPiece" {
        return Err(bad(&tpath, "only WordPiece (BERT) tokenizers convert"));
    }
    let vocab = tj["model"]["vocab"]
        .as_object()
        .ok_or_else(|| bad(&tpath, "model.vocab is not a map"))?;
    let mut tokens = vec![String::new(); config.vocab];
    for (t, id) in vocab {
        let id = id.as_u64().unwrap_or(u64::MAX) as usize;
        let slot = tokens.get_mut(id).ok_or_else(|| {
            bad(
                &tpath,
                format!("token '{t}' has id {id}, past the model's vocabulary"),
            )
        })?;
        *slot = t.clone();
    }
    let mut types = vec![NORMAL; config.vocab];
    let mut special = |content: &str| -> Option<u32> {
        let id = tj["added_tokens"]
            .as_array()?
            .iter()
            .find(|a| a["content"] == content && a["special"] == true)?["id"]
            .as_u64()? as usize;
        *types.get_mut(id)? = CONTROL;
        Some(id as u32)
    };
    let ids = [
        ("tokenizer.ggml.cls_token_id", special("[CLS]")),
        ("tokenizer.ggml.seperator_token_id", special("[SEP]")),
        ("tokenizer.ggml.padding_token_id", special("[PAD]")),
        ("tokenizer.ggml.unknown_token_id", special("[UNK]")),
        ("tokenizer.ggml.mask_token_id", special("[MASK]")),
    ];
    if ids[0].1.is_none() || ids[1].1.is_none() {
        return Err(bad(&tpath, "no special [CLS] and [SEP] tokens"));
    }
    let tokens: Vec<String> = tokens
        .iter()
        .zip(&types)
        .map(|(t, &ty)| phantom(t, ty == CONTROL))
        .collect();

    let mut w = GgufWriter::default();
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("bert")
        .to_owned();
    let u32m = |n: usize| MetaValue::U32(n as u32);
    w.meta("general.architecture", MetaValue::String("bert".into()))
        .meta("general.name", MetaValue::String(name))
        .meta("general.file_type", MetaValue::U32(file_type(ty)))
        .meta("bert.context_length", u32m(config.positions))
        .meta("bert.embedding_length", u32m(config.hidden))
        .meta("bert.feed_forward_length", u32m(config.intermediate))
        .meta("bert.block_count", u32m(config.layers))
        .meta("bert.attention.head_count", u32m(config.heads))
        .meta(
            "bert.attention.layer_norm_epsilon",
            MetaValue::F32(config.eps),
        )
        .meta("bert.attention.causal", MetaValue::Bool(false))
        .meta(
            "bert.pooling_type",
            MetaValue::U32(match pooling {
                Pooling::Mean => 1,
                Pooling::Cls => 2,
            }),
        )
        .meta("tokenizer.ggml.model", MetaValue::String("bert".into()))
        .meta(
            "tokenizer.ggml.tokens",
            MetaValue::Array(MetaArray::String(tokens)),
        )
        .meta(
            "tokenizer.ggml.token_type",
            MetaValue::Array(MetaArray::I32(types)),
        )
        .meta("tokenizer.ggml.token_type_count", u32m(config.type_vocab));
    for (key, id) in ids {
        if let Some(id) = id {
            w.meta(key, MetaValue::U32(id));
        }
    }
    let prefix = if st.has("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    };
    for (hf, shape) in tensor_names(&config) {
        let data = st.tensor(&format!("{prefix}{hf}"), &shape)?;
        let gname = gguf_name(&hf).ok_or_else(|| bad(dir, format!("no GGUF name for {hf}")))?;
        // ggml lists dimensions innermost first.
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        let row = shape.last().copied().unwrap_or(0);
        let t = match (shape.len(), ty) {
            (1, _) | (_, GgmlType::F32) => GgmlType::F32,
            (_, GgmlType::Q8_0) if row % 32 == 0 => GgmlType::Q8_0,
            _ => GgmlType::F16,
        };
        let bytes = match t {
            GgmlType::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgmlType::Q8_0 => crate::quant::quantize_q8_0(&data),
            _ => data
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
                .collect(),
        };
        w.tensor(&gname, &dims, t, bytes);
    }
    Ok(w)
}

/// `general.file_type` as llama.cpp numbers it (ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7).
fn file_type(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        _ => 7,
    }
}

/// A BERT GGUF's tensors, answered by their Hugging Face names and dequantized to f32.
pub struct GgufTensors<'a>(pub &'a GgufFile);

impl Tensors for GgufTensors<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let file = self.0;
        let path = file.path();
        let gname = gguf_name(name).ok_or_else(|| bad(path, format!("no GGUF name for {name}")))?;
        let info = file
            .tensor_info(&gname)
            .ok_or_else(|| bad(path, format!("tensor '{gname}' is missing")))?;
        let want: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        if info.dims != want {
            return Err(bad(
                path,
                format!(
                    "tensor '{gname}' has dims {:?}, expected {want:?}",
                    info.dims
                ),
            ));
        }
        let row = shape.last().copied().unwrap_or(0);
        let rows: usize = shape[..shape.len().saturating_sub(1)].iter().product();
        let bytes = file.tensor_data(info);
        let row_bytes = bytes.len() / rows.max(1);
        let mut out = vec![0f32; rows * row];
        for (r, dst) in out.chunks_mut(row.max(1)).enumerate() {
            let src = &bytes[r * row_bytes..(r + 1) * row_bytes];
            if !crate::quant::dequantize_row(info.ty, src, dst) {
                return Err(bad(
                    path,
                    format!("tensor '{gname}': type {} is not read", info.ty.name()),
                ));
            }
        }
        Ok(out)
    }

    fn has(&self, name: &str) -> bool {
        // The GGUF names drop any `bert.` prefix: the file answers the unprefixed names only.
        !name.starts_with("bert.")
            && gguf_name(name).is_some_and(|g| self.0.tensor_info(&g).is_some())
    }
}

fn meta_usize(file: &GgufFile, key: &str) -> Result<usize> {
    file.get_u64(key)
        .filter(|&x| x > 0 && x < 1 << 24)
        .map(|x| x as usize)
        .ok_or_else(|| bad(file.path(), format!("{key} is missing or out of range")))
}

/// The encoder's configuration from a BERT GGUF's metadata.
pub fn config(file: &GgufFile) -> Result<BertConfig> {
    if file.get_str("general.architecture") != Some("bert") {
        return Err(EngineError::UnsupportedArchitecture(
            file.get_str("general.architecture")
                .unwrap_or("?")
                .to_owned(),
        ));
    }
    let vocab = match file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
        Some(a) => a.len(),
        None => return Err(bad(file.path(), "tokenizer.ggml.tokens is missing")),
    };
    let c = BertConfig {
        vocab,
        hidden: meta_usize(file, "bert.embedding_length")?,
        layers: meta_usize(file, "bert.block_count")?,
        heads: meta_usize(file, "bert.attention.head_count")?,
        intermediate: meta_usize(file, "bert.feed_forward_length")?,
        positions: meta_usize(file, "bert.context_length")?,
        type_vocab: file
            .get_u64("tokenizer.ggml.token_type_count")
            .map_or(2, |n| n as usize),
        eps: file
            .get_f64("bert.attention.layer_norm_epsilon")
            .unwrap_or(1e-12) as f32,
    };
    if !(c.hidden.is_multiple_of(c.heads) && c.eps.is_finite() && c.eps > 0.0 && c.eps < 1.0) {
        return Err(bad(
            file.path(),
            "bert.embedding_length must divide into the heads, the norm epsilon in (0, 1)",
        ));
    }
    Ok(c)
}

/// The pooling a BERT GGUF asks for (`bert.pooling_type`: 1 mean, 2 CLS; absent: mean).
pub fn pooling(file: &GgufFile) -> Result<Pooling> {
    match file.get_u64("bert.pooling_type") {
        None | Some(1) => Ok(Pooling::Mean),
        Some(2) => Ok(Pooling::Cls),
        Some(p) => Err(bad(
            file.path(),
            format!("bert.pooling_type {p} is not supported (1 mean, 2 CLS)"),
        )),
    }
}

/// The WordPiece tokenizer a BERT GGUF's vocabulary describes: BERT's normaliser (lower case, accents stripped,
/// as llama.cpp's WPM tokenizer does), its pre-tokenizer, and `[CLS] … [SEP]` around every input.
pub fn wordpiece(file: &GgufFile) -> Result<tokenizers::Tokenizer> {
    use tokenizers::models::wordpiece::WordPiece;
    use tokenizers::normalizers::bert::BertNormalizer;
    use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
    use tokenizers::processors::bert::BertProcessing;
    let path = file.path();
    let tok_err = |m: String| EngineError::Tokenizer(format!("{}: {m}", path.display()));
    let Some(MetaArray::String(raw)) = file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array())
    else {
        return Err(tok_err("tokenizer.ggml.tokens is missing".into()));
    };
    let types = file
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.as_array())
        .and_then(MetaArray::as_i64_vec)
        .unwrap_or_default();
    let control = |i: usize| types.get(i).copied() == Some(CONTROL as i64);
    let tokens: Vec<String> = raw
        .iter()
        .enumerate()
        .map(|(i, t)| unphantom(t, control(i)))
        .collect();
    let id_of = |key: &str| -> Result<u32> {
        file.get_u64(key)
            .filter(|&i| (i as usize) < tokens.len())
            .map(|i| i as u32)
            .ok_or_else(|| tok_err(format!("{key} is missing or out of range")))
    };
    let (cls, sep) = (
        id_of("tokenizer.ggml.cls_token_id")?,
        id_of("tokenizer.ggml.seperator_token_id")?,
    );
    let unk = id_of("tokenizer.ggml.unknown_token_id")
        .map(|i| tokens[i as usize].clone())
        .unwrap_or_else(|_| "[UNK]".into());
    // WordPiece is built from its serialised form: the builder wants a map type the crate does not export.
    let vocab: serde_json::Map<String, serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), serde_json::Value::from(i)))
        .collect();
    // (From text: its deserialiser borrows the type tag.)
    let text = serde_json::json!({
        "type": "WordPiece",
        "unk_token": unk,
        "continuing_subword_prefix": "##",
        "max_input_chars_per_word": 100,
        "vocab": vocab,
    })
    .to_string();
    let model: WordPiece = serde_json::from_str(&text).map_err(|e| tok_err(e.to_string()))?;
    let mut t = tokenizers::Tokenizer::new(model);
    t.with_normalizer(Some(BertNormalizer::new(true, true, None, true)));
    t.with_pre_tokenizer(Some(BertPreTokenizer));
    t.with_post_processor(Some(BertProcessing::new(
        (tokens[sep as usize].clone(), sep),
        (tokens[cls as usize].clone(), cls),
    )));
    let specials: Vec<tokenizers::AddedToken> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| control(*i))
        .map(|(_, t)| tokenizers::AddedToken::from(t.clone(), true))
        .collect();
    t.add_special_tokens(&specials);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_llama_cpp() {
        assert_eq!(
            gguf_name("encoder.layer.3.attention.self.query.weight").as_deref(),
            Some("blk.3.attn_q.weight")
        );
        assert_eq!(
            gguf_name("bert.encoder.layer.0.output.LayerNorm.bias").as_deref(),
            Some("blk.0.layer_output_norm.bias")
        );
        assert_eq!(
            gguf_name("embeddings.token_type_embeddings.weight").as_deref(),
            Some("token_types.weight")
        );
        assert_eq!(gguf_name("pooler.dense.weight"), None);
    }

    #[test]
    fn phantom_spelling_round_trips() {
        for (t, control) in [
            ("hello", false),
            ("##ing", false),
            ("[CLS]", true),
            ("[unused3]", false),
        ] {
            let p = phantom(t, control);
            assert_eq!(unphantom(&p, control), t, "{t} → {p}");
        }
        assert_eq!(phantom("hello", false), "\u{2581}hello");
        assert_eq!(phantom("##ing", false), "ing");
    }
}
