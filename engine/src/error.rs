//! The engine's error type. The daemon maps these onto HTTP responses in one place.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid GGUF file: {reason}")]
    BadGguf { path: PathBuf, reason: String },
    #[error("{path}: tensor '{tensor}': {reason}")]
    BadTensor {
        path: PathBuf,
        tensor: String,
        reason: String,
    },
    #[error("{path}: unsupported tensor type {ty} in tensor '{tensor}'")]
    UnsupportedTensorType {
        path: PathBuf,
        tensor: String,
        ty: String,
    },
    #[error(
        "unsupported model architecture '{0}' (supported: llama, qwen2, qwen3, smollm, gemma3)"
    )]
    UnsupportedArchitecture(String),
    #[error("model metadata: {0}")]
    Metadata(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(
        "prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the context length of {context} tokens"
    )]
    ContextOverflow {
        prompt_tokens: usize,
        max_tokens: usize,
        context: usize,
    },
    #[error("cannot start compute threads: {0}")]
    Threads(String),
    #[error("speculative decoding: {0}")]
    DraftMismatch(String),
    #[error("the batch is full ({0} sequences)")]
    BatchFull(usize),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
