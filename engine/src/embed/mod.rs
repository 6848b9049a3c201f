//! Text embeddings from a sentence-transformers folder (config.json, model.safetensors, tokenizer.json, and the
//! pooling and normalisation its modules.json asks for): the BERT encoder (`bert`), then mean or CLS pooling,
//! then L2 normalisation where the model has it. Tokenization is the folder's own tokenizer.json, run by the
//! `tokenizers` crate, so ids match the Python library's exactly. The same model as a BERT GGUF (`gguf`: written
//! from a folder, or by llama.cpp's converter) loads through `open_gguf`.

pub mod bert;
pub mod gguf;
pub mod safetensors;

use crate::error::{EngineError, Result};
use bert::{Bert, BertConfig};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
}

pub struct Embedder {
    bert: Bert,
    tokenizer: tokenizers::Tokenizer,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    /// Tensors per dtype and parameters, as the file holds them.
    types: std::collections::BTreeMap<String, usize>,
    parameters: u64,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::Metadata(format!("{}: {e}", path.display())))
}

/// The pooling a sentence-transformers folder asks for (`1_Pooling/config.json`; plain checkpoints: mean).
fn pooling_of(dir: &Path) -> Result<Pooling> {
    match read_json(&dir.join("1_Pooling/config.json")) {
        Ok(p) if p["pooling_mode_cls_token"] == true => Ok(Pooling::Cls),
        Ok(p) if p["pooling_mode_mean_tokens"] == true => Ok(Pooling::Mean),
        Ok(p) => Err(EngineError::Metadata(format!(
            "1_Pooling/config.json: only mean and CLS pooling are supported ({p})"
        ))),
        Err(_) => Ok(Pooling::Mean),
    }
}

/// Whether the model's vectors are L2-normalised (modules.json's Normalize; plain checkpoints: yes).
fn normalize_of(dir: &Path) -> bool {
    match read_json(&dir.join("modules.json")) {
        Ok(m) => m.as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x["type"].as_str().is_some_and(|t| t.ends_with("Normalize")))
        }),
        Err(_) => true,
    }
}

/// Whether a folder holds an embedding model this module reads.
pub fn is_embedding_folder(dir: &Path) -> bool {
    ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file())
}

impl Embedder {
    pub fn open(dir: &Path) -> Result<Embedder> {
        let config = BertConfig::from_json(&read_json(&dir.join("config.json"))?)?;
        let st = safetensors::SafeTensors::open(&dir.join("model.safetensors"))?;
        let bert = Bert::load(&st, config)?;
        let (types, parameters) = st.summary();
        let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| EngineError::Tokenizer(format!("tokenizer.json: {e}")))?;
        // Over-long input is the caller's decision (refuse or truncate), never the tokenizer's silent one.
        tokenizer
            .with_truncation(None)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        if tokenizer.get_vocab_size(true) > bert.config.vocab {
            return Err(EngineError::Tokenizer(format!(
                "tokenizer.json has {} tokens, the model {}",
                tokenizer.get_vocab_size(true),
                bert.config.vocab
            )));
        }
        // sentence-transformers' modules: pooling mode and Normalize; plain checkpoints: mean, normalised.
        let pooling = pooling_of(dir)?;
        let normalize = normalize_of(dir);
        let max_tokens = read_json(&dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|c| c["max_seq_length"].as_u64())
            .map_or(bert.config.positions, |m| {
                (m as usize).min(bert.config.positions)
            });
        Ok(Embedder {
            bert,
            tokenizer,
            pooling,
            normalize,
            max_tokens,
            types,
            parameters,
        })
    }

    /// A BERT GGUF (`gguf`): its vocabulary as a WordPiece tokenizer, its pooling, vectors L2-normalised (as
    /// llama.cpp's server gives them), inputs up to the position table.
    pub fn open_gguf(path: &Path) -> Result<Embedder> {
        let file = crate::gguf::GgufFile::open(path)?;
        let config = gguf::config(&file)?;
        let bert = Bert::load(&gguf::GgufTensors(&file), config)?;
        let tokenizer = gguf::wordpiece(&file)?;
        let mut types = std::collections::BTreeMap::new();
        for (t, n) in file.type_counts() {
            types.insert(t.name(), n);
        }
        Ok(Embedder {
            pooling: gguf::pooling(&file)?,
            normalize: true,
            max_tokens: bert.config.positions,
            parameters: file.tensors.iter().map(|t| t.n_elements()).sum(),
            types,
            bert,
            tokenizer,
        })
    }

    /// The model at `path`: a BERT GGUF file, or a sentence-transformers folder (or its model.safetensors).
    pub fn load(path: &Path) -> Result<Embedder> {
        if path.extension().is_some_and(|e| e == "gguf") {
            Embedder::open_gguf(path)
        } else if path.is_dir() {
            Embedder::open(path)
        } else {
            Embedder::open(path.parent().unwrap_or(Path::new(".")))
        }
    }

    /// Tensors per dtype in the weights file.
    pub fn tensor_types(&self) -> std::collections::BTreeMap<String, usize> {
        self.types.clone()
    }

    /// Elements of every tensor in the weights file.
    pub fn parameters(&self) -> u64 {
        self.parameters
    }

    /// The length of a vector.
    pub fn dimensions(&self) -> usize {
        self.bert.config.hidden
    }

    /// The most tokens (special ones included) one input may have.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Token ids of one input, with the model's special tokens (`[CLS] … [SEP]`), untruncated.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Cuts ids to `max_tokens`, keeping the closing special token (as sentence-transformers truncates).
    pub fn truncate(&self, ids: &mut Vec<u32>) {
        if ids.len() > self.max_tokens {
            let last = ids.last().copied();
            ids.truncate(self.max_tokens - 1);
            ids.extend(last);
        }
    }

    /// The vectors of several tokenized inputs (each at most `max_tokens`, every id in the vocabulary),
    /// computed in one forward pass.
    pub fn embed_batch(&self, inputs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        for ids in inputs {
            if ids.is_empty() || ids.len() > self.max_tokens {
                return Err(EngineError::InvalidRequest(format!(
                    "an input of {} tokens (1 to {} allowed)",
                    ids.len(),
                    self.max_tokens
                )));
            }
            if ids.iter().any(|&i| i as usize >= self.bert.config.vocab) {
                return Err(EngineError::InvalidRequest(
                    "token id outside the vocabulary".into(),
                ));
            }
        }
        let seqs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        let h = self.dimensions();
        Ok(self
            .bert
            .forward(&seqs)
            .into_iter()
            .zip(inputs)
            .map(|(states, ids)| {
                let mut v = match self.pooling {
                    Pooling::Cls => states[..h].to_vec(),
                    Pooling::Mean => {
                        let mut m = vec![0f32; h];
                        for row in states.chunks(h) {
                            m.iter_mut().zip(row).for_each(|(m, x)| *m += x);
                        }
                        m.iter_mut().for_each(|x| *x /= ids.len() as f32);
                        m
                    }
                };
                if self.normalize {
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                v
            })
            .collect())
    }

    /// The vector of one tokenized input.
    pub fn embed(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut v = self.embed_batch(&[ids.to_vec()])?;
        Ok(v.pop().unwrap_or_default())
    }

    /// The size of the vocabulary (token-id input is checked against it).
    pub fn vocab_size(&self) -> usize {
        self.bert.config.vocab
    }
}
