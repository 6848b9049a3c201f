//! The request ledger: one row per request that reached quota admission (every request is either rejected
//! before any token or recorded, so usage is never lost). Rows are written by `quota` admission and completed by `reconcile`.

use super::{Result, Store};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequestRecord {
    pub id: String,
    pub user_id: String,
    pub key_id: Option<String>,
    pub model: String,
    pub endpoint: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub finish_reason: String,
    pub started_at: i64,
    pub duration_ms: i64,
    /// running, ok, cancelled or rejected.
    pub status: String,
    /// Tokens counted against quotas: the reservation while running, then prompt + completion.
    pub charged_tokens: i64,
}

impl Store {
    pub async fn record_request(&self, r: &RequestRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO requests (id, user_id, key_id, model, endpoint, prompt_tokens, completion_tokens, \
             finish_reason, started_at, duration_ms, status, charged_tokens) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&r.id)
        .bind(&r.user_id)
        .bind(&r.key_id)
        .bind(&r.model)
        .bind(&r.endpoint)
        .bind(r.prompt_tokens)
        .bind(r.completion_tokens)
        .bind(&r.finish_reason)
        .bind(r.started_at)
        .bind(r.duration_ms)
        .bind(&r.status)
        .bind(r.charged_tokens)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The most recent requests of a user (newest first).
    pub async fn recent_requests(&self, user_id: &str, limit: i64) -> Result<Vec<RequestRecord>> {
        let rows = sqlx::query(
            "SELECT id, user_id, key_id, model, endpoint, prompt_tokens, completion_tokens, finish_reason, \
             started_at, duration_ms, status, charged_tokens FROM requests WHERE user_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RequestRecord {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    key_id: row.try_get("key_id")?,
                    model: row.try_get("model")?,
                    endpoint: row.try_get("endpoint")?,
                    prompt_tokens: row.try_get("prompt_tokens")?,
                    completion_tokens: row.try_get("completion_tokens")?,
                    finish_reason: row.try_get("finish_reason")?,
                    started_at: row.try_get("started_at")?,
                    duration_ms: row.try_get("duration_ms")?,
                    status: row.try_get("status")?,
                    charged_tokens: row.try_get("charged_tokens")?,
                })
            })
            .collect()
    }
}
