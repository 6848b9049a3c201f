//! Quota rows and the two transactions that keep usage exact: admission (check + reserve + ledger row) and
//! reconciliation (real counts replace the reservation). Each begins with a write, so SQLite takes its write
//! lock at once (no read-to-write upgrade deadlock) and PostgreSQL locks the user's `quota_locks` row: concurrent
//! admissions of one user are serialised on every node that shares the database.

use super::{Result, Store};
use crate::quota::Limits;
use sqlx::Row;

/// What a user has used, as admission sees it (inside its transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageSnapshot {
    pub day_tokens: i64,
    pub month_tokens: i64,
    pub day_requests: i64,
    pub month_requests: i64,
    /// Rolling 60 s.
    pub minute_requests: i64,
    pub minute_tokens: i64,
    /// Unix seconds of the oldest request in the rolling minute (when the minute window frees up).
    pub minute_oldest: Option<i64>,
    pub running: i64,
}

pub struct Admission<'a> {
    pub request_id: &'a str,
    pub user_id: &'a str,
    pub key_id: Option<&'a str>,
    pub model: &'a str,
    pub endpoint: &'a str,
    pub prompt_tokens: i64,
    pub reserve: i64,
    pub now: i64,
    pub day_key: &'a str,
    pub month_key: &'a str,
}

pub struct Completion<'a> {
    pub request_id: &'a str,
    /// `ok`, `cancelled` or `error`.
    pub status: &'a str,
    pub finish_reason: &'a str,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub now: i64,
    pub duration_ms: i64,
}

const LIMIT_COLS: &str =
    "tokens_per_day, tokens_per_month, requests_per_minute, tokens_per_minute, \
     max_concurrent_requests, max_tokens_per_request, allowed_models, weight";

fn opt_u64(row: &sqlx::any::AnyRow, col: &str) -> Result<Option<u64>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(|v| v.max(0) as u64))
}

impl Store {
    /// A user's own limits row (unset fields fall back to the role's defaults).
    pub async fn user_limits(&self, user_id: &str) -> Result<Limits> {
        let row = sqlx::query(&format!(
            "SELECT {LIMIT_COLS} FROM quota_limits WHERE user_id = $1"
        ))
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(Limits::default());
        };
        let models: Option<String> = row.try_get("allowed_models")?;
        Ok(Limits {
            tokens_per_day: opt_u64(&row, "tokens_per_day")?,
            tokens_per_month: opt_u64(&row, "tokens_per_month")?,
            requests_per_minute: opt_u64(&row, "requests_per_minute")?,
            tokens_per_minute: opt_u64(&row, "tokens_per_minute")?,
            max_concurrent_requests: opt_u64(&row, "max_concurrent_requests")?,
            max_tokens_per_request: opt_u64(&row, "max_tokens_per_request")?,
            allowed_models: models.map(|m| {
                m.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            weight: opt_u64(&row, "weight")?,
        })
    }

    /// Replaces a user's limits row.
    pub async fn set_user_limits(&self, user_id: &str, l: &Limits) -> Result<()> {
        let v = |x: Option<u64>| x.map(|x| x as i64);
        sqlx::query(&format!(
            "INSERT INTO quota_limits (user_id, {LIMIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (user_id) DO UPDATE SET tokens_per_day = $2, tokens_per_month = $3, \
             requests_per_minute = $4, tokens_per_minute = $5, max_concurrent_requests = $6, \
             max_tokens_per_request = $7, allowed_models = $8, weight = $9"
        ))
        .bind(user_id)
        .bind(v(l.tokens_per_day))
        .bind(v(l.tokens_per_month))
        .bind(v(l.requests_per_minute))
        .bind(v(l.tokens_per_minute))
        .bind(v(l.max_concurrent_requests))
        .bind(v(l.max_tokens_per_request))
        .bind(l.allowed_models.as_ref().map(|m| m.join(",")))
        .bind(v(l.weight))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// (tokens, requests) of one window.
    pub async fn window_usage(&self, user_id: &str, key: &str) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT tokens, requests FROM usage_windows WHERE user_id = $1 AND window_key = $2",
        )
        .bind(user_id)
        .bind(key)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some(r) => (r.try_get("tokens")?, r.try_get("requests")?),
            None => (0, 0),
        })
    }

    /// Admission in one transaction: `check` sees the usage; if it accepts, the reservation is charged and a
    /// `running` ledger row written; if it refuses, a `rejected` row is written and nothing is charged.
    pub async fn admit<E>(
        &self,
        a: &Admission<'_>,
        check: impl FnOnce(&UsageSnapshot) -> std::result::Result<(), E>,
    ) -> Result<(UsageSnapshot, std::result::Result<(), E>)> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO quota_locks (user_id, n) VALUES ($1, 1) \
             ON CONFLICT (user_id) DO UPDATE SET n = quota_locks.n + 1",
        )
        .bind(a.user_id)
        .execute(&mut *tx)
        .await?;
        // Every read in one statement: each statement is a round trip (to sqlx's SQLite thread or the server).
        let r = sqlx::query(
            "SELECT \
             COALESCE((SELECT tokens FROM usage_windows WHERE user_id = $1 AND window_key = $2), 0) AS dt, \
             COALESCE((SELECT requests FROM usage_windows WHERE user_id = $1 AND window_key = $2), 0) AS dr, \
             COALESCE((SELECT tokens FROM usage_windows WHERE user_id = $1 AND window_key = $3), 0) AS mt, \
             COALESCE((SELECT requests FROM usage_windows WHERE user_id = $1 AND window_key = $3), 0) AS mr, \
             (SELECT COUNT(*) FROM requests WHERE user_id = $1 AND started_at > $4 AND status <> 'rejected') AS n, \
             (SELECT CAST(COALESCE(SUM(charged_tokens), 0) AS BIGINT) FROM requests \
               WHERE user_id = $1 AND started_at > $4 AND status <> 'rejected') AS t, \
             (SELECT MIN(started_at) FROM requests \
               WHERE user_id = $1 AND started_at > $4 AND status <> 'rejected') AS oldest, \
             (SELECT COUNT(*) FROM requests WHERE user_id = $1 AND status = 'running') AS running",
        )
        .bind(a.user_id)
        .bind(a.day_key)
        .bind(a.month_key)
        .bind(a.now - 60)
        .fetch_one(&mut *tx)
        .await?;
        let snap = UsageSnapshot {
            day_tokens: r.try_get("dt")?,
            day_requests: r.try_get("dr")?,
            month_tokens: r.try_get("mt")?,
            month_requests: r.try_get("mr")?,
            minute_requests: r.try_get("n")?,
            minute_tokens: r.try_get("t")?,
            minute_oldest: r.try_get("oldest")?,
            running: r.try_get("running")?,
        };

        let verdict = check(&snap);
        let (status, reserve) = match verdict {
            Ok(()) => ("running", a.reserve),
            Err(_) => ("rejected", 0),
        };
        sqlx::query(
            "INSERT INTO requests (id, user_id, key_id, model, endpoint, prompt_tokens, completion_tokens, \
             finish_reason, started_at, duration_ms, status, reserved_tokens, charged_tokens, day_key, month_key) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, 0, $9, $10, $10, $11, $12)",
        )
        .bind(a.request_id)
        .bind(a.user_id)
        .bind(a.key_id)
        .bind(a.model)
        .bind(a.endpoint)
        .bind(a.prompt_tokens)
        .bind(if reserve > 0 { "" } else { "quota" })
        .bind(a.now)
        .bind(status)
        .bind(reserve)
        .bind(a.day_key)
        .bind(a.month_key)
        .execute(&mut *tx)
        .await?;
        if verdict.is_ok() {
            sqlx::query(
                "INSERT INTO usage_windows (user_id, window_key, tokens, requests) VALUES ($1, $2, $4, 1), \
                 ($1, $3, $4, 1) ON CONFLICT (user_id, window_key) DO UPDATE SET \
                 tokens = usage_windows.tokens + excluded.tokens, requests = usage_windows.requests + 1",
            )
            .bind(a.user_id)
            .bind(a.day_key)
            .bind(a.month_key)
            .bind(reserve)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((snap, verdict))
    }

    /// Replaces a running request's reservation by its real counts. False when it was not running (already
    /// reconciled, or never admitted).
    pub async fn reconcile(&self, c: &Completion<'_>) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let charged = c.prompt_tokens + c.completion_tokens;
        let row = sqlx::query(
            "UPDATE requests SET status = $2, finish_reason = $3, prompt_tokens = $4, completion_tokens = $5, \
             charged_tokens = $6, ended_at = $7, duration_ms = $8 WHERE id = $1 AND status = 'running' \
             RETURNING user_id, reserved_tokens, day_key, month_key",
        )
        .bind(c.request_id)
        .bind(c.status)
        .bind(c.finish_reason)
        .bind(c.prompt_tokens)
        .bind(c.completion_tokens)
        .bind(charged)
        .bind(c.now)
        .bind(c.duration_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let user: String = row.try_get("user_id")?;
        let reserved: i64 = row.try_get("reserved_tokens")?;
        let (day, month): (String, String) = (row.try_get("day_key")?, row.try_get("month_key")?);
        sqlx::query(
            "UPDATE usage_windows SET tokens = tokens + $4 WHERE user_id = $1 AND window_key IN ($2, $3)",
        )
        .bind(&user)
        .bind(&day)
        .bind(&month)
        .bind(charged - reserved)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl Store {
    /// (prompt tokens, completion tokens, requests) charged in a window, from the ledger (admitted requests).
    pub async fn window_detail(&self, user_id: &str, key: &str) -> Result<(i64, i64, i64)> {
        let col = if key.starts_with("d:") {
            "day_key"
        } else {
            "month_key"
        };
        let r = sqlx::query(&format!(
            "SELECT CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS p, CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS c, COUNT(*) AS n \
             FROM requests WHERE user_id = $1 AND {col} = $2 AND status <> 'rejected'"
        ))
        .bind(user_id)
        .bind(key)
        .fetch_one(self.pool())
        .await?;
        Ok((r.try_get("p")?, r.try_get("c")?, r.try_get("n")?))
    }
}
