//! hearth-engine: local inference on GGUF models. No HTTP, SQL or users here — the daemon builds on this.
//!
//! Data flow: `gguf` (file) → `model` (weights + config) and `tokenizer`/`chat` (text ↔ ids) → `batch`
//! (continuous batching over the KV cache, `kv`) → `model::forward` (built on `weights::matmul` and the
//! `quant::dot` kernels, run on a `threadpool`) → `sampling` → `stream` (UTF-8 + stop strings).

pub mod attention;
pub mod batch;
pub mod chat;
pub mod constraint;
pub mod devices;
pub mod embed;
pub mod error;
pub mod gguf;
pub mod hugebuf;
pub mod json_mode;
pub mod json_text;
pub mod kv;
pub mod loaded;
pub mod logprobs;
pub mod model;
pub mod ops;
pub mod quant;
pub mod sampling;
pub mod schema;
pub mod speculative;
pub mod stream;
pub mod synth;
pub mod ternary;
pub mod think;
pub mod threadpool;
pub mod tokenizer;
pub mod tools;
pub mod weights;

pub use batch::{Batch, Event, FinishReason, GenerateRequest, SeqId, Usage};
pub use chat::{ChatMessage, ChatTemplate};
pub use error::{EngineError, Result};
pub use loaded::{default_threads, LoadedModel};
pub use model::{LoadOptions, Model};
pub use sampling::SamplingParams;
pub use speculative::{SpecMode, SpecStats, Speculation};
pub use tokenizer::Tokenizer;
