//! The two transactions that keep usage exact: admission (check + reserve + ledger row) and reconciliation
//! (real counts replace the reservation). Each begins with a write, so SQLite takes its write lock at once (no
//! read-to-write upgrade deadlock) and PostgreSQL locks the user's `quota_locks` row: concurrent admissions of
//! one user are serialised on every node that shares the database.
//!
//! The statements and their arguments are defined once here and run by two drivers: sqlx (PostgreSQL, and
//! SQLite when its fast path is busy) and the in-thread SQLite path (`sqlite_fast`), which avoids sqlx's
//! per-statement thread hop — admission is on every request's path.

use super::{Result, Store};
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
    /// The serving process that admits it (`Store::settle_interrupted` finds its rows after a crash).
    pub node: Option<&'a str>,
    pub user_id: &'a str,
    pub key_id: Option<&'a str>,
    pub model: &'a str,
    pub endpoint: &'a str,
    /// The `user` the client sent (OpenAI's end-user id), kept for its owner's reference.
    pub client_user: Option<&'a str>,
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
    /// Where it ran ('cpu', 'cuda:0'); None when it never reached a device.
    pub device: Option<&'a str>,
    /// Time between admission and its first step in a batch; None when it never started.
    pub queue_ms: Option<i64>,
    /// Device energy attributed to it, and what measured it (`rapl`, `nvml`, `estimate`); None without a sensor.
    pub energy_joules: Option<f64>,
    pub energy_source: Option<&'a str>,
}

/// The rolling minute is counted in per-second rows of `usage_windows` ('s:' + ten-digit Unix second: the keys
/// sort by time and after every 'd:'/'m:' key); housekeeping deletes old ones.
pub(crate) fn minute_bucket(second: i64) -> String {
    format!("s:{:010}", second.max(0))
}

/// Above every minute bucket key, in any collation (PostgreSQL's locale collations ignore punctuation).
const BUCKETS_END: &str = "t";

fn bucket_second(key: &str) -> Option<i64> {
    key.strip_prefix("s:")?.parse().ok()
}

/// An argument of one of the statements below; `$N` in the SQL is the N-th value of its list.
#[derive(Debug)]
pub(super) enum Arg<'a> {
    Int(i64),
    Text(&'a str),
    Owned(String),
    OptText(Option<&'a str>),
    OptInt(Option<i64>),
    OptFloat(Option<f64>),
}

pub(super) const LOCK_SQL: &str = "INSERT INTO quota_locks (user_id, n) VALUES ($1, 1) \
     ON CONFLICT (user_id) DO UPDATE SET n = quota_locks.n + 1";

/// Every read of admission in one statement and one index range of `usage_windows`: the day and month rows and
/// the per-second buckets of the rolling minute (at most 60, however busy the user) — never a ledger scan.
pub(super) const SNAPSHOT_SQL: &str = "SELECT \
     CAST(COALESCE(SUM(CASE WHEN window_key = $2 THEN tokens END), 0) AS BIGINT) AS dt, \
     CAST(COALESCE(SUM(CASE WHEN window_key = $2 THEN requests END), 0) AS BIGINT) AS dr, \
     CAST(COALESCE(SUM(CASE WHEN window_key = $3 THEN tokens END), 0) AS BIGINT) AS mt, \
     CAST(COALESCE(SUM(CASE WHEN window_key = $3 THEN requests END), 0) AS BIGINT) AS mr, \
     CAST(COALESCE(SUM(CASE WHEN window_key > $4 THEN requests END), 0) AS BIGINT) AS n, \
     CAST(COALESCE(SUM(CASE WHEN window_key > $4 THEN tokens END), 0) AS BIGINT) AS t, \
     MIN(CASE WHEN window_key > $4 THEN window_key END) AS oldest, \
     (SELECT COUNT(*) FROM requests WHERE user_id = $1 AND status = 'running') AS running \
     FROM usage_windows WHERE user_id = $1 \
     AND (window_key = $2 OR window_key = $3 OR (window_key > $4 AND window_key < $5))";

pub(super) const LEDGER_SQL: &str =
    "INSERT INTO requests (id, user_id, key_id, model, endpoint, prompt_tokens, completion_tokens, \
     finish_reason, started_at, duration_ms, status, reserved_tokens, charged_tokens, day_key, month_key, node, \
     client_user) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, 0, $9, $10, $10, $11, $12, $13, $14)";

pub(super) const CHARGE_SQL: &str =
    "INSERT INTO usage_windows (user_id, window_key, tokens, requests) VALUES ($1, $2, $4, 1), \
     ($1, $3, $4, 1), ($1, $5, $4, 1) ON CONFLICT (user_id, window_key) DO UPDATE SET \
     tokens = usage_windows.tokens + excluded.tokens, requests = usage_windows.requests + 1";

pub(super) const COMPLETE_SQL: &str =
    "UPDATE requests SET status = $2, finish_reason = $3, prompt_tokens = $4, completion_tokens = $5, \
     charged_tokens = $6, ended_at = $7, duration_ms = $8, device = $9, queue_ms = $10, \
     energy_joules = $11, energy_source = $12 \
     WHERE id = $1 AND status = 'running' \
     RETURNING user_id, reserved_tokens, day_key, month_key, started_at";

pub(super) const CORRECT_SQL: &str = "UPDATE usage_windows SET tokens = tokens + $4 \
     WHERE user_id = $1 AND window_key IN ($2, $3, $5)";

fn snapshot_args<'a>(
    user_id: &'a str,
    day_key: &'a str,
    month_key: &'a str,
    now: i64,
) -> Vec<Arg<'a>> {
    vec![
        Arg::Text(user_id),
        Arg::Text(day_key),
        Arg::Text(month_key),
        Arg::Owned(minute_bucket(now - 60)),
        Arg::Text(BUCKETS_END),
    ]
}

impl Admission<'_> {
    pub(super) fn lock_args(&self) -> Vec<Arg<'_>> {
        vec![Arg::Text(self.user_id)]
    }

    pub(super) fn snapshot_args(&self) -> Vec<Arg<'_>> {
        snapshot_args(self.user_id, self.day_key, self.month_key, self.now)
    }

    /// The ledger row: `running` with the reservation, or `rejected` with nothing charged.
    pub(super) fn ledger_args(&self, admitted: bool) -> Vec<Arg<'_>> {
        let reserve = if admitted { self.reserve } else { 0 };
        vec![
            Arg::Text(self.request_id),
            Arg::Text(self.user_id),
            Arg::OptText(self.key_id),
            Arg::Text(self.model),
            Arg::Text(self.endpoint),
            Arg::Int(self.prompt_tokens),
            Arg::Text(if admitted { "" } else { "quota" }),
            Arg::Int(self.now),
            Arg::Text(if admitted { "running" } else { "rejected" }),
            Arg::Int(reserve),
            Arg::Text(self.day_key),
            Arg::Text(self.month_key),
            Arg::OptText(self.node),
            Arg::OptText(self.client_user),
        ]
    }

    pub(super) fn charge_args(&self) -> Vec<Arg<'_>> {
        vec![
            Arg::Text(self.user_id),
            Arg::Text(self.day_key),
            Arg::Text(self.month_key),
            Arg::Int(self.reserve),
            Arg::Owned(minute_bucket(self.now)),
        ]
    }
}

impl Completion<'_> {
    pub(super) fn complete_args(&self) -> Vec<Arg<'_>> {
        vec![
            Arg::Text(self.request_id),
            Arg::Text(self.status),
            Arg::Text(self.finish_reason),
            Arg::Int(self.prompt_tokens),
            Arg::Int(self.completion_tokens),
            Arg::Int(self.prompt_tokens + self.completion_tokens),
            Arg::Int(self.now),
            Arg::Int(self.duration_ms),
            Arg::OptText(self.device),
            Arg::OptInt(self.queue_ms),
            Arg::OptFloat(self.energy_joules),
            Arg::OptText(self.energy_source),
        ]
    }
}

/// What COMPLETE_SQL returned: which counters to correct, and by how much.
pub(super) struct Completed {
    pub user_id: String,
    pub reserved: i64,
    pub day_key: String,
    pub month_key: String,
    pub started_at: i64,
}

impl Completed {
    pub(super) fn correct_args(&self, charged: i64) -> Vec<Arg<'_>> {
        vec![
            Arg::Text(&self.user_id),
            Arg::Text(&self.day_key),
            Arg::Text(&self.month_key),
            Arg::Int(charged - self.reserved),
            Arg::Owned(minute_bucket(self.started_at)),
        ]
    }
}

/// Builds the snapshot from SNAPSHOT_SQL's columns, whichever driver read them.
pub(super) fn snapshot_from<E>(
    int: impl Fn(&str) -> std::result::Result<i64, E>,
    oldest: Option<String>,
) -> std::result::Result<UsageSnapshot, E> {
    Ok(UsageSnapshot {
        day_tokens: int("dt")?,
        day_requests: int("dr")?,
        month_tokens: int("mt")?,
        month_requests: int("mr")?,
        minute_requests: int("n")?,
        minute_tokens: int("t")?,
        minute_oldest: oldest.as_deref().and_then(bucket_second),
        running: int("running")?,
    })
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind<'q>(sql: &'q str, args: &'q [Arg<'q>]) -> AnyQuery<'q> {
    args.iter().fold(sqlx::query(sql), |q, a| match a {
        Arg::Int(v) => q.bind(*v),
        Arg::Text(v) => q.bind(*v),
        Arg::Owned(v) => q.bind(v.as_str()),
        Arg::OptText(v) => q.bind(*v),
        Arg::OptInt(v) => q.bind(*v),
        Arg::OptFloat(v) => q.bind(*v),
    })
}

impl Store {
    /// Admission in one transaction: `check` sees the usage; if it accepts, the reservation is charged and a
    /// `running` ledger row written; if it refuses, a `rejected` row is written and nothing is charged.
    pub async fn admit<E>(
        &self,
        a: &Admission<'_>,
        check: impl Fn(&UsageSnapshot) -> std::result::Result<(), E>,
    ) -> Result<(UsageSnapshot, std::result::Result<(), E>)> {
        if let Some(fast) = &self.fast {
            if let Some(done) = fast.admit(a, &check)? {
                return Ok(done);
            }
        }
        let mut tx = self.pool().begin().await?;
        bind(LOCK_SQL, &a.lock_args()).execute(&mut *tx).await?;
        let args = a.snapshot_args();
        let r = bind(SNAPSHOT_SQL, &args).fetch_one(&mut *tx).await?;
        let snap = snapshot_from(|c| r.try_get::<i64, _>(c), r.try_get("oldest")?)?;
        let verdict = check(&snap);
        bind(LEDGER_SQL, &a.ledger_args(verdict.is_ok()))
            .execute(&mut *tx)
            .await?;
        if verdict.is_ok() {
            bind(CHARGE_SQL, &a.charge_args()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok((snap, verdict))
    }

    /// Replaces a running request's reservation by its real counts. False when it was not running (already
    /// reconciled, or never admitted).
    pub async fn reconcile(&self, c: &Completion<'_>) -> Result<bool> {
        if let Some(fast) = &self.fast {
            if let Some(done) = fast.reconcile(c)? {
                return Ok(done);
            }
        }
        let mut tx = self.pool().begin().await?;
        let args = c.complete_args();
        let Some(row) = bind(COMPLETE_SQL, &args).fetch_optional(&mut *tx).await? else {
            tx.rollback().await?;
            return Ok(false);
        };
        let done = Completed {
            user_id: row.try_get("user_id")?,
            reserved: row.try_get("reserved_tokens")?,
            day_key: row.try_get("day_key")?,
            month_key: row.try_get("month_key")?,
            started_at: row.try_get("started_at")?,
        };
        bind(
            CORRECT_SQL,
            &done.correct_args(c.prompt_tokens + c.completion_tokens),
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl Store {
    /// Settles what a dead process of `node` left `running` (a crash or kill -9 ends no request): each row
    /// becomes `interrupted`, charged nothing (what it generated was never recorded), and its reservation is
    /// released from the day, month and minute counters — so it no longer counts against the user's allowance or
    /// concurrency. Rows without a node (admitted before nodes were recorded) are settled too. Run at start-up,
    /// before this node admits anything. Returns how many rows were settled.
    pub async fn settle_interrupted(&self, node: &str, now: i64) -> Result<u64> {
        self.settle_running(node, true, now).await
    }

    /// `settle_interrupted` for another node that stopped without coming back (its heartbeat long expired): its
    /// rows only. Safe on every node at once: a row is settled once.
    pub async fn settle_dead_node(&self, node: &str, now: i64) -> Result<u64> {
        self.settle_running(node, false, now).await
    }

    async fn settle_running(&self, node: &str, unnamed_too: bool, now: i64) -> Result<u64> {
        let sql = if unnamed_too {
            "SELECT id, started_at FROM requests WHERE status = 'running' AND (node = $1 OR node IS NULL)"
        } else {
            "SELECT id, started_at FROM requests WHERE status = 'running' AND node = $1"
        };
        let rows = sqlx::query(sql).bind(node).fetch_all(self.pool()).await?;
        let mut settled = 0;
        for r in rows {
            let id: String = r.try_get("id")?;
            let started_at: i64 = r.try_get("started_at")?;
            let done = self
                .reconcile(&Completion {
                    request_id: &id,
                    status: "interrupted",
                    finish_reason: "interrupted",
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    now,
                    duration_ms: (now - started_at).max(0) * 1000,
                    device: None,
                    queue_ms: None,
                    energy_joules: None,
                    energy_source: None,
                })
                .await?;
            settled += u64::from(done);
        }
        Ok(settled)
    }

    /// A user's usage as admission would see it now, read without reserving anything (for the rate-limit
    /// headers of responses that admit nothing).
    pub async fn usage_snapshot(
        &self,
        user_id: &str,
        day_key: &str,
        month_key: &str,
        now: i64,
    ) -> Result<UsageSnapshot> {
        let args = snapshot_args(user_id, day_key, month_key, now);
        let r = bind(SNAPSHOT_SQL, &args).fetch_one(self.pool()).await?;
        Ok(snapshot_from(
            |c| r.try_get::<i64, _>(c),
            r.try_get("oldest")?,
        )?)
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

    /// Deletes rolling-minute buckets older than `before` (Unix seconds); they no longer count. Returns how many.
    pub async fn prune_minute_buckets(&self, before: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM usage_windows WHERE window_key >= 's:' AND window_key < $1")
                .bind(minute_bucket(before))
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }

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
