//! Tokenizers for synthetic files: a byte-level BPE with Llama 3's special tokens and chat template, or another
//! GGUF file's tokenizer copied in; either padded with reserved tokens to the shape's vocabulary.

use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgufFile, MetaArray, MetaValue};

const LLAMA3_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

/// GPT-2's byte ↔ printable-character map (the byte-level BPE alphabet).
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('?')
}

/// A byte-level BPE tokenizer with Llama 3's special tokens and chat template: 256 byte tokens, no merges. Text
/// round-trips exactly; ids are not Llama 3's (the weights are random anyway).
pub(crate) fn builtin_tokenizer(w: &mut GgufWriter, vocab: usize) {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_char(b).to_string()).collect();
    let mut types = vec![1i32; 256];
    let bos = tokens.len() as u32;
    for s in [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eot_id|>",
    ] {
        tokens.push(s.into());
        types.push(3);
    }
    pad_vocab(&mut tokens, &mut types, None, vocab);
    w.meta("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .meta("tokenizer.ggml.pre", MetaValue::String("llama-bpe".into()))
        .meta(
            "tokenizer.ggml.tokens",
            MetaValue::Array(MetaArray::String(tokens)),
        )
        .meta(
            "tokenizer.ggml.token_type",
            MetaValue::Array(MetaArray::I32(types)),
        )
        .meta(
            "tokenizer.ggml.merges",
            MetaValue::Array(MetaArray::String(Vec::new())),
        )
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(bos))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(bos + 4))
        .meta("tokenizer.ggml.eot_token_id", MetaValue::U32(bos + 4))
        .meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(true))
        .meta(
            "tokenizer.chat_template",
            MetaValue::String(LLAMA3_TEMPLATE.into()),
        );
}

/// Pads the vocabulary with reserved control tokens up to `vocab`.
fn pad_vocab(
    tokens: &mut Vec<String>,
    types: &mut Vec<i32>,
    scores: Option<&mut Vec<f32>>,
    vocab: usize,
) {
    let n = tokens.len();
    for i in n..vocab {
        tokens.push(format!("<|reserved_special_token_{}|>", i - n));
        types.push(3);
    }
    if let Some(s) = scores {
        s.resize(vocab, 0.0);
    }
}

pub(crate) fn tokenizer_len(src: Option<&GgufFile>) -> usize {
    src.and_then(|f| f.get("tokenizer.ggml.tokens"))
        .and_then(|v| v.as_array())
        .map_or(256 + 5, |a| a.len())
}

/// Copies `tokenizer.*` from another GGUF file, padding the token arrays to `vocab`.
pub(crate) fn copy_tokenizer(
    w: &mut GgufWriter,
    src: &GgufFile,
    vocab: usize,
) -> Result<(), String> {
    for (k, v) in &src.metadata {
        if !k.starts_with("tokenizer.") {
            continue;
        }
        let v = match (k.as_str(), v) {
            ("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::String(t))) => {
                let mut t = t.clone();
                let mut ty = Vec::new();
                pad_vocab(&mut t, &mut ty, None, vocab);
                MetaValue::Array(MetaArray::String(t))
            }
            ("tokenizer.ggml.token_type", MetaValue::Array(MetaArray::I32(t))) => {
                let mut t = t.clone();
                t.resize(vocab, 3);
                MetaValue::Array(MetaArray::I32(t))
            }
            ("tokenizer.ggml.scores", MetaValue::Array(MetaArray::F32(t))) => {
                let mut t = t.clone();
                t.resize(vocab, 0.0);
                MetaValue::Array(MetaArray::F32(t))
            }
            _ => v.clone(),
        };
        w.meta(k, v);
    }
    if src.get("tokenizer.ggml.tokens").is_none() {
        return Err(format!("{} has no tokenizer", src.path().display()));
    }
    Ok(())
}
