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
    #[error("{0}")]
    Internal(String),
}
