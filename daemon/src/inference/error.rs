//! Why an inference request was refused or failed, in the domain's words (`api::error` maps each to a status).

use crate::quota::QuotaError;
use crate::sched::SchedError;

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The caller's API key is scoped to other models.
    #[error("this API key may not use model '{0}'")]
    KeyScope(String),
    /// Not found, failed to load, refused by the engine (context, sampling), queue full, shutting down.
    #[error(transparent)]
    Sched(#[from] SchedError),
    /// The user's limits: model not allowed, over the per-request cap, rate limited, allowance used up.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// A generation request for an embedding model.
    #[error("model '{0}' is an embedding model: use /v1/embeddings or /api/embed")]
    NotForGeneration(String),
    /// An embedding request for a model that generates text.
    #[error(
        "model '{0}' does not make embeddings (import a sentence-transformers folder, docs/api.md)"
    )]
    NotForEmbeddings(String),
    /// One input of an embedding request cannot be embedded (`param`: where it is).
    #[error("{message}")]
    Input { message: String, param: String },
    /// An input longer than the model takes, where truncation was not allowed.
    #[error("{0}")]
    TooLong(String),
    #[error("{0}")]
    Internal(String),
}
