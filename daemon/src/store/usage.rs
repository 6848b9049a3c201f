//! Usage reports over the ledger: totals grouped by day, model or user, and the raw rows for export.

use super::{Result, Store};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Day,
    Model,
    User,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "day" => Some(GroupBy::Day),
            "model" => Some(GroupBy::Model),
            "user" => Some(GroupBy::User),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct UsageFilter<'a> {
    pub user: Option<&'a str>,
    pub model: Option<&'a str>,
    /// Unix seconds, inclusive (raw rows, for export).
    pub from: i64,
    /// Unix seconds, exclusive.
    pub to: i64,
    /// Local days `YYYY-MM-DD`, inclusive (reports, which also cover days whose raw rows were pruned).
    pub from_day: String,
    pub to_day: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct UsageGroup {
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub cancelled: i64,
    pub rejected: i64,
    /// Device energy of the group's requests, as recorded (measured, or estimated where configured so).
    pub joules: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct UsageRow {
    pub id: String,
    pub user: String,
    pub key_id: Option<String>,
    pub model: String,
    pub endpoint: String,
    pub status: String,
    pub finish_reason: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub charged_tokens: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    /// Where it ran; empty for rejected requests and ones that never left the queue.
    pub device: Option<String>,
    /// Waiting time before its first batch step.
    pub queue_ms: Option<i64>,
    pub energy_joules: Option<f64>,
    /// `rapl`, `nvml` or `estimate`.
    pub energy_source: Option<String>,
    /// The `user` the client sent with the request (OpenAI's end-user id).
    pub client_user: Option<String>,
}

/// Raw ledger rows as per-row counts by local day (rows admitted before quotas existed have no day and are left
/// out of day-based reports). A macro so the two queries below share it as one literal.
macro_rules! raw_by_day {
    () => {
        "SELECT user_id, SUBSTR(day_key, 3) AS day, model, \
         CASE WHEN status <> 'rejected' THEN 1 ELSE 0 END AS requests, \
         CASE WHEN status <> 'rejected' THEN prompt_tokens ELSE 0 END AS prompt, \
         CASE WHEN status <> 'rejected' THEN completion_tokens ELSE 0 END AS completion, \
         CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END AS cancelled, \
         CASE WHEN status = 'rejected' THEN 1 ELSE 0 END AS rejected, \
         CASE WHEN status <> 'rejected' THEN COALESCE(energy_joules, 0) ELSE 0 END AS joules \
         FROM requests WHERE day_key <> ''"
    };
}

/// Finished raw rows (what the roll-up may fold).
const FINISHED_BY_DAY: &str = concat!(raw_by_day!(), " AND status <> 'running'");

/// Raw rows, plus the roll-up of days older than every remaining raw row (their raw rows were pruned).
const LEDGER_BY_DAY: &str = concat!(
    raw_by_day!(),
    " UNION ALL SELECT user_id, day, model, requests, prompt_tokens, completion_tokens, cancelled, rejected, \
     energy_joules FROM usage_daily WHERE day < (SELECT COALESCE(MIN(SUBSTR(day_key, 3)), '9999') FROM requests \
     WHERE day_key <> '')"
);

/// `AND` conditions for the optional user and model filters, numbered after the two range parameters.
fn filter_sql(range: &str, model_col: &str, f: &UsageFilter<'_>) -> (String, Vec<String>) {
    let mut sql = String::from(range);
    let mut binds = Vec::new();
    if let Some(u) = f.user {
        binds.push(u.to_owned());
        sql.push_str(&format!(" AND u.name = ${}", binds.len() + 2));
    }
    if let Some(m) = f.model {
        binds.push(m.to_owned());
        sql.push_str(&format!(" AND {model_col} = ${}", binds.len() + 2));
    }
    (sql, binds)
}

impl Store {
    /// Totals per group over local days: raw rows, plus the daily roll-up for days whose raw rows were pruned
    /// (pruning removes whole days older than every remaining raw row).
    pub async fn usage_report(&self, f: &UsageFilter<'_>, by: GroupBy) -> Result<Vec<UsageGroup>> {
        let col = match by {
            GroupBy::Day => "l.day",
            GroupBy::Model => "l.model",
            GroupBy::User => "u.name",
        };
        let (cond, binds) = filter_sql("l.day >= $1 AND l.day <= $2", "l.model", f);
        let q = format!(
            "SELECT {col} AS grp, CAST(SUM(l.requests) AS BIGINT) AS requests, \
             CAST(SUM(l.prompt) AS BIGINT) AS prompt, CAST(SUM(l.completion) AS BIGINT) AS completion, \
             CAST(SUM(l.cancelled) AS BIGINT) AS cancelled, CAST(SUM(l.rejected) AS BIGINT) AS rejected, \
             CAST(SUM(l.joules) AS DOUBLE PRECISION) AS joules FROM ({LEDGER_BY_DAY}) l JOIN users u ON u.id = l.user_id WHERE {cond} GROUP BY {col} ORDER BY {col}"
        );
        let mut query = sqlx::query(&q).bind(&f.from_day).bind(&f.to_day);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                let (p, c): (i64, i64) = (r.try_get("prompt")?, r.try_get("completion")?);
                Ok(UsageGroup {
                    group: r.try_get("grp")?,
                    requests: r.try_get("requests")?,
                    prompt_tokens: p,
                    completion_tokens: c,
                    total_tokens: p + c,
                    cancelled: r.try_get("cancelled")?,
                    rejected: r.try_get("rejected")?,
                    joules: r.try_get("joules")?,
                })
            })
            .collect()
    }

    /// Recomputes the daily roll-up of every complete local day before `today` (`YYYY-MM-DD`) from the raw rows
    /// still present, then deletes raw rows that started before `cutoff` (Unix seconds, a local midnight).
    /// Idempotent. Returns (groups written, rows deleted).
    pub async fn rollup_and_prune(&self, today: &str, cutoff: i64) -> Result<(u64, u64)> {
        let mut tx = self.pool().begin().await?;
        let written = sqlx::query(&format!(
            "INSERT INTO usage_daily (user_id, day, model, requests, prompt_tokens, completion_tokens, cancelled, \
             rejected, energy_joules) SELECT user_id, day, model, SUM(requests), SUM(prompt), SUM(completion), \
             SUM(cancelled), SUM(rejected), SUM(joules) FROM ({FINISHED_BY_DAY}) raw WHERE day < $1 \
             GROUP BY user_id, day, model \
             ON CONFLICT (user_id, day, model) DO UPDATE SET requests = excluded.requests, \
             prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens, \
             cancelled = excluded.cancelled, rejected = excluded.rejected, \
             energy_joules = excluded.energy_joules"
        ))
        .bind(today)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let deleted = sqlx::query(
            "DELETE FROM requests WHERE started_at < $1 AND status <> 'running' AND day_key <> '' \
             AND SUBSTR(day_key, 3) < $2",
        )
        .bind(cutoff)
        .bind(today)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((written, deleted))
    }

    /// Every ledger row in the range, oldest first (for CSV export).
    pub async fn usage_rows(&self, f: &UsageFilter<'_>) -> Result<Vec<UsageRow>> {
        let (cond, binds) = filter_sql("r.started_at >= $1 AND r.started_at < $2", "r.model", f);
        let q = format!(
            "SELECT {ROW_COLS} FROM requests r JOIN users u ON u.id = r.user_id WHERE {cond} \
             ORDER BY r.started_at, r.id"
        );
        let mut query = sqlx::query(&q).bind(f.from).bind(f.to);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter().map(row_from).collect()
    }

    /// One ledger row of one user (None: no such request, or someone else's).
    pub async fn request_of(&self, user_id: &str, id: &str) -> Result<Option<UsageRow>> {
        let row = sqlx::query(&format!(
            "SELECT {ROW_COLS} FROM requests r JOIN users u ON u.id = r.user_id \
             WHERE r.id = $1 AND r.user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(row_from).transpose()
    }
}

const ROW_COLS: &str = "r.id, u.name AS user_name, r.key_id, r.model, r.endpoint, r.status, r.finish_reason, \
     r.prompt_tokens, r.completion_tokens, r.charged_tokens, r.started_at, r.duration_ms, r.device, r.queue_ms, \
     r.energy_joules, r.energy_source, r.client_user";

fn row_from(r: &sqlx::any::AnyRow) -> Result<UsageRow> {
    Ok(UsageRow {
        id: r.try_get("id")?,
        user: r.try_get("user_name")?,
        key_id: r.try_get("key_id")?,
        model: r.try_get("model")?,
        endpoint: r.try_get("endpoint")?,
        status: r.try_get("status")?,
        finish_reason: r.try_get("finish_reason")?,
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        charged_tokens: r.try_get("charged_tokens")?,
        started_at: r.try_get("started_at")?,
        duration_ms: r.try_get("duration_ms")?,
        device: r.try_get("device")?,
        queue_ms: r.try_get("queue_ms")?,
        energy_joules: r.try_get("energy_joules")?,
        energy_source: r.try_get("energy_source")?,
        client_user: r.try_get("client_user")?,
    })
}
