//! Tokenizers built from GGUF metadata (`tokenizer.ggml.*`) into a `tokenizers::Tokenizer`, matching llama.cpp's
//! ids for the same file and text:
//! - `gpt2`: byte-level BPE with the file's merges and the pre-tokenizer regexes that `tokenizer.ggml.pre` names;
//! - `llama`: SentencePiece BPE. llama.cpp merges the adjacent pair whose concatenation has the highest score;
//!   that is BPE with merges ranked by the merged piece's score, which is how we build it (plus byte fallback).
//!
//! Decoding does not go through `tokenizers`: each token maps to its bytes (`pieces`) so a stream can hold back an
//! incomplete UTF-8 character (see `stream`).

mod spm;

use crate::error::{EngineError, Result};
use crate::gguf::{GgufFile, MetaArray};
use std::collections::{HashMap, HashSet};
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormSeq};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

/// llama.cpp's token types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i64(v: i64) -> TokenType {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Normal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum VocabKind {
    /// Byte-level BPE (GPT-2 style).
    Gpt2,
    /// SentencePiece BPE with scores.
    Spm,
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub kind: VocabKind,
    texts: Vec<String>,
    pieces: Vec<Vec<u8>>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    eog: HashSet<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab", &self.texts.len())
            .finish()
    }
}

/// Texts that mark the end of a turn in common chat formats (llama.cpp treats them as end-of-generation too).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// GPT-2's byte ↔ unicode table (bytes that are printable map to themselves; others to U+0100…).
fn byte_decoder() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.iter()
        .zip(cs)
        .filter_map(|(&b, c)| char::from_u32(c).map(|ch| (ch, b as u8)))
        .collect()
}

fn pre_tokenizer_for(pre: &str) -> Result<PreTokenizerWrapper> {
    const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
    const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Split::new(
            SplitPattern::Regex(re.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map(PreTokenizerWrapper::Split)
        .map_err(|e| EngineError::Tokenizer(format!("pre-tokenizer regex: {e}")))
    };
    let bytes = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false));
    Ok(match pre {
        // Digits one by one, then GPT-2's regex (llama.cpp's STARCODER/SMOLLM group).
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                split(GPT2)?,
                bytes,
            ]))
        }
        "llama3" | "llama-bpe" | "llama-v3" | "smaug-bpe" => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![split(LLAMA3)?, bytes]))
        }
        "qwen2" | "deepseek-r1-qwen" => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![split(QWEN2)?, bytes]))
        }
        _ => PreTokenizerWrapper::Sequence(Sequence::new(vec![split(GPT2)?, bytes])),
    })
}

impl Tokenizer {
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        let err = |m: String| EngineError::Tokenizer(format!("{}: {m}", file.path().display()));
        let model = file
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| err("tokenizer.ggml.model is missing".into()))?;
        let texts = match file.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(MetaArray::String(v)) => v.clone(),
            _ => {
                return Err(err(
                    "tokenizer.ggml.tokens is missing or not a string array".into(),
                ))
            }
        };
        let n = texts.len();
        let types: Vec<TokenType> = match file
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_array())
        {
            Some(a) => a
                .as_i64_vec()
                .ok_or_else(|| err("tokenizer.ggml.token_type is not an integer array".into()))?
                .into_iter()
                .map(TokenType::from_i64)
                .collect(),
            None => vec![TokenType::Normal; n],
        };
        if types.len() != n {
            return Err(err(format!("{} token types for {n} tokens", types.len())));
        }
        let id = |key: &str| -> Result<Option<u32>> {
            match file.get_u64(key) {
                None => Ok(None),
                Some(v) if (v as usize) < n => Ok(Some(v as u32)),
                Some(v) => Err(err(format!("{key} = {v} is outside the vocabulary of {n}"))),
            }
        };
        let (bos, eos, eot, eom, unk) = (
            id("tokenizer.ggml.bos_token_id")?,
            id("tokenizer.ggml.eos_token_id")?,
            id("tokenizer.ggml.eot_token_id")?,
            id("tokenizer.ggml.eom_token_id")?,
            id("tokenizer.ggml.unknown_token_id")?,
        );

        let (kind, mut inner, pieces) = match model {
            "gpt2" => {
                let merges = match file.get("tokenizer.ggml.merges").and_then(|v| v.as_array()) {
                    Some(MetaArray::String(v)) => v
                        .iter()
                        .map(|m| {
                            m.split_once(' ')
                                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                                .ok_or_else(|| err(format!("merge '{m}' has no space")))
                        })
                        .collect::<Result<Vec<_>>>()?,
                    _ => return Err(err("tokenizer.ggml.merges is missing".into())),
                };
                let pre = file.get_str("tokenizer.ggml.pre").unwrap_or("default");
                let vocab: tokenizers::models::bpe::Vocab = texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.clone(), i as u32))
                    .collect();
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .ignore_merges(matches!(pre, "llama3" | "llama-bpe" | "llama-v3"))
                    .build()
                    .map_err(|e| err(format!("BPE: {e}")))?;
                let mut tk = tokenizers::Tokenizer::new(bpe);
                tk.with_pre_tokenizer(Some(pre_tokenizer_for(pre)?));
                let dec = byte_decoder();
                let pieces = texts
                    .iter()
                    .zip(&types)
                    .map(|(t, ty)| match ty {
                        TokenType::Normal | TokenType::Unused => t
                            .chars()
                            .map(|c| dec.get(&c).copied().unwrap_or(b'?'))
                            .collect(),
                        TokenType::Control => Vec::new(),
                        _ => t.as_bytes().to_vec(),
                    })
                    .collect();
                (VocabKind::Gpt2, tk, pieces)
            }
            "llama" => {
                let scores = match file.get("tokenizer.ggml.scores").and_then(|v| v.as_array()) {
                    Some(MetaArray::F32(v)) if v.len() == n => v.clone(),
                    Some(_) => {
                        return Err(err(
                            "tokenizer.ggml.scores must be an f32 array, one per token".into(),
                        ))
                    }
                    None => vec![0.0; n],
                };
                let add_space_prefix = file
                    .get_bool("tokenizer.ggml.add_space_prefix")
                    .unwrap_or(true);
                let bpe = spm::build_bpe(
                    &texts,
                    &types,
                    &scores,
                    unk.map(|u| texts[u as usize].clone()),
                )
                .map_err(|e| err(format!("SentencePiece BPE: {e}")))?;
                let mut tk = tokenizers::Tokenizer::new(bpe);
                let mut norms = Vec::new();
                if add_space_prefix {
                    norms.push(NormalizerWrapper::Prepend(Prepend::new("▁".into())));
                }
                norms.push(NormalizerWrapper::Replace(
                    Replace::new(" ", "▁").map_err(|e| err(format!("normalizer: {e}")))?,
                ));
                tk.with_normalizer(Some(NormSeq::new(norms)));
                let pieces = texts
                    .iter()
                    .zip(&types)
                    .map(|(t, ty)| spm::piece_bytes(t, *ty))
                    .collect();
                (VocabKind::Spm, tk, pieces)
            }
            other => {
                return Err(err(format!(
                    "tokenizer model '{other}' is not supported (supported: gpt2, llama)"
                )))
            }
        };

        // Control and user-defined tokens are matched in the raw text before the model runs, as llama.cpp does.
        let added: Vec<AddedToken> = texts
            .iter()
            .zip(&types)
            .filter(|(t, ty)| {
                matches!(ty, TokenType::Control | TokenType::UserDefined) && !t.is_empty()
            })
            .map(|(t, ty)| AddedToken::from(t.clone(), *ty == TokenType::Control).normalized(false))
            .collect();
        inner.add_special_tokens(&added);

        let mut eog: HashSet<u32> = [eos, eot, eom].into_iter().flatten().collect();
        for (i, (t, ty)) in texts.iter().zip(&types).enumerate() {
            if matches!(ty, TokenType::Control | TokenType::UserDefined)
                && EOG_TEXTS.contains(&t.as_str())
            {
                eog.insert(i as u32);
            }
        }
        let add_bos = file
            .get_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(kind == VocabKind::Spm);
        let add_eos = file
            .get_bool("tokenizer.ggml.add_eos_token")
            .unwrap_or(false);
        Ok(Tokenizer {
            inner,
            kind,
            texts,
            pieces,
            bos,
            eos,
            eog,
            add_bos: add_bos && bos.is_some(),
            add_eos: add_eos && eos.is_some(),
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    /// Token ids for `text`. Special-token text (e.g. `<|im_start|>`) becomes the special token. With
    /// `add_special`, BOS/EOS are added as the file says — BOS only when the text does not already start with it.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| EngineError::Tokenizer(format!("encoding failed: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if add_special {
            if let Some(bos) = self.bos.filter(|_| self.add_bos) {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
            if let Some(eos) = self.eos.filter(|_| self.add_eos) {
                ids.push(eos);
            }
        }
        Ok(ids)
    }

    /// The bytes a token contributes to generated text (empty for control tokens).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The token's vocabulary string as stored in the file.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// Decodes ids to text (invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&i| self.token_bytes(i).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Why `other` does not map text to the same ids as this tokenizer (None: the same vocabulary, the same
    /// token strings, the same end-of-generation tokens). A draft model must pass this to draft for a target.
    pub fn vocabulary_difference(&self, other: &Tokenizer) -> Option<String> {
        if self.texts.len() != other.texts.len() {
            return Some(format!(
                "vocabularies of {} and {} tokens",
                self.texts.len(),
                other.texts.len()
            ));
        }
        if let Some(i) = (0..self.texts.len()).find(|&i| self.texts[i] != other.texts[i]) {
            return Some(format!(
                "token {i} is {:?} in one and {:?} in the other",
                self.texts[i], other.texts[i]
            ));
        }
        if self.eog != other.eog || self.bos != other.bos {
            return Some("different BOS or end-of-generation tokens".into());
        }
        None
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// Text of BOS / EOS for chat templates.
    pub fn bos_text(&self) -> &str {
        self.bos.and_then(|b| self.token_text(b)).unwrap_or("")
    }
    pub fn eos_text(&self) -> &str {
        self.eos.and_then(|b| self.token_text(b)).unwrap_or("")
    }
}
