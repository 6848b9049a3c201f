//! Limit rows: a user's own values (`quota_limits`) and a key's overrides (`key_limits`), both NULL where unset.

use super::{Result, Store};
use crate::limits::Limits;
use sqlx::Row;

macro_rules! limit_cols {
    () => {
        "tokens_per_day, tokens_per_month, requests_per_minute, tokens_per_minute, \
         max_concurrent_requests, max_tokens_per_request, allowed_models, weight"
    };
}
const LIMIT_COLS: &str = limit_cols!();

/// The user's row and the key's row (0–2 rows, `whose` = 'u' or 'k'): read on every request.
pub(super) const USER_AND_KEY_SQL: &str = concat!(
    "SELECT 'u' AS whose, ",
    limit_cols!(),
    " FROM quota_limits WHERE user_id = $1 UNION ALL SELECT 'k' AS whose, ",
    limit_cols!(),
    " FROM key_limits WHERE key_id = $2"
);

/// Whose limits a row holds.
#[derive(Debug, Clone, Copy)]
pub enum LimitsOf<'a> {
    User(&'a str),
    Key(&'a str),
}

impl LimitsOf<'_> {
    fn table_and_column(&self) -> (&'static str, &'static str) {
        match self {
            LimitsOf::User(_) => ("quota_limits", "user_id"),
            LimitsOf::Key(_) => ("key_limits", "key_id"),
        }
    }

    fn id(&self) -> &str {
        match self {
            LimitsOf::User(id) | LimitsOf::Key(id) => id,
        }
    }
}

/// Builds limits from a row's columns, whichever driver read them.
pub(super) fn limits_from_columns<E>(
    int: impl Fn(&str) -> std::result::Result<Option<i64>, E>,
    models: Option<String>,
) -> std::result::Result<Limits, E> {
    let u = |col: &str| Ok(int(col)?.map(|v| v.max(0) as u64));
    Ok(Limits {
        tokens_per_day: u("tokens_per_day")?,
        tokens_per_month: u("tokens_per_month")?,
        requests_per_minute: u("requests_per_minute")?,
        tokens_per_minute: u("tokens_per_minute")?,
        max_concurrent_requests: u("max_concurrent_requests")?,
        max_tokens_per_request: u("max_tokens_per_request")?,
        allowed_models: models.map(|m| {
            m.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        weight: u("weight")?,
    })
}

fn limits_from(row: &sqlx::any::AnyRow) -> Result<Limits> {
    Ok(limits_from_columns(
        |c| row.try_get::<Option<i64>, _>(c),
        row.try_get("allowed_models")?,
    )?)
}

impl Store {
    /// A user's or key's own limits row (all unset when there is none).
    pub async fn limits_of(&self, of: LimitsOf<'_>) -> Result<Limits> {
        let (table, col) = of.table_and_column();
        let row = sqlx::query(&format!(
            "SELECT {LIMIT_COLS} FROM {table} WHERE {col} = $1"
        ))
        .bind(of.id())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map_or(Ok(Limits::default()), limits_from)
    }

    /// The user's row and, when given, the key's row, in one round trip (the request path needs both).
    pub async fn user_and_key_limits(
        &self,
        user_id: &str,
        key_id: Option<&str>,
    ) -> Result<(Limits, Limits)> {
        if let Some(fast) = &self.fast {
            if let Some(both) = fast.user_and_key_limits(user_id, key_id)? {
                return Ok(both);
            }
        }
        let rows = sqlx::query(USER_AND_KEY_SQL)
            .bind(user_id)
            .bind(key_id.unwrap_or(""))
            .fetch_all(self.pool())
            .await?;
        let (mut user, mut key) = (Limits::default(), Limits::default());
        for r in &rows {
            let whose: String = r.try_get("whose")?;
            *(if whose == "u" { &mut user } else { &mut key }) = limits_from(r)?;
        }
        Ok((user, key))
    }

    /// Replaces a user's or key's limits row.
    pub async fn set_limits(&self, of: LimitsOf<'_>, l: &Limits) -> Result<()> {
        let (table, col) = of.table_and_column();
        let v = |x: Option<u64>| x.map(|x| x as i64);
        sqlx::query(&format!(
            "INSERT INTO {table} ({col}, {LIMIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT ({col}) DO UPDATE SET tokens_per_day = $2, tokens_per_month = $3, \
             requests_per_minute = $4, tokens_per_minute = $5, max_concurrent_requests = $6, \
             max_tokens_per_request = $7, allowed_models = $8, weight = $9"
        ))
        .bind(of.id())
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
}
