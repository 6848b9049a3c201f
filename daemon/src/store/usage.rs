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
    fn column(self) -> &'static str {
        match self {
            // The local day of admission, as charged against daily quotas.
            GroupBy::Day => "SUBSTR(r.day_key, 3)",
            GroupBy::Model => "r.model",
            GroupBy::User => "u.name",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct UsageFilter<'a> {
    pub user: Option<&'a str>,
    pub model: Option<&'a str>,
    /// Unix seconds, inclusive.
    pub from: i64,
    /// Unix seconds, exclusive.
    pub to: i64,
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
}

#[derive(Debug, Clone, Serialize, PartialEq)]
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
    pub energy_joules: Option<f64>,
}

fn filter_sql(f: &UsageFilter<'_>) -> (String, Vec<String>) {
    let mut sql = String::from("r.started_at >= $1 AND r.started_at < $2");
    let mut binds = Vec::new();
    if let Some(u) = f.user {
        binds.push(u.to_owned());
        sql.push_str(&format!(" AND u.name = ${}", binds.len() + 2));
    }
    if let Some(m) = f.model {
        binds.push(m.to_owned());
        sql.push_str(&format!(" AND r.model = ${}", binds.len() + 2));
    }
    (sql, binds)
}

impl Store {
    pub async fn usage_report(&self, f: &UsageFilter<'_>, by: GroupBy) -> Result<Vec<UsageGroup>> {
        let (cond, binds) = filter_sql(f);
        let col = by.column();
        let sum = |c: &str| {
            format!("CAST(COALESCE(SUM(CASE WHEN r.status <> 'rejected' THEN {c} ELSE 0 END), 0) AS BIGINT)")
        };
        let q = format!(
            "SELECT {col} AS grp, \
             CAST(COALESCE(SUM(CASE WHEN r.status <> 'rejected' THEN 1 ELSE 0 END), 0) AS BIGINT) AS requests, \
             {} AS prompt, {} AS completion, \
             CAST(COALESCE(SUM(CASE WHEN r.status = 'cancelled' THEN 1 ELSE 0 END), 0) AS BIGINT) AS cancelled, \
             CAST(COALESCE(SUM(CASE WHEN r.status = 'rejected' THEN 1 ELSE 0 END), 0) AS BIGINT) AS rejected \
             FROM requests r JOIN users u ON u.id = r.user_id WHERE {cond} GROUP BY {col} ORDER BY {col}",
            sum("r.prompt_tokens"),
            sum("r.completion_tokens"),
        );
        let mut query = sqlx::query(&q).bind(f.from).bind(f.to);
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
                })
            })
            .collect()
    }

    /// Every ledger row in the range, oldest first (for CSV export).
    pub async fn usage_rows(&self, f: &UsageFilter<'_>) -> Result<Vec<UsageRow>> {
        let (cond, binds) = filter_sql(f);
        let q = format!(
            "SELECT r.id, u.name AS user_name, r.key_id, r.model, r.endpoint, r.status, r.finish_reason, \
             r.prompt_tokens, r.completion_tokens, r.charged_tokens, r.started_at, r.duration_ms, r.energy_joules \
             FROM requests r JOIN users u ON u.id = r.user_id WHERE {cond} ORDER BY r.started_at, r.id"
        );
        let mut query = sqlx::query(&q).bind(f.from).bind(f.to);
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
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
                    energy_joules: r.try_get("energy_joules")?,
                })
            })
            .collect()
    }
}
