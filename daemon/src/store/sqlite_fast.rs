//! Quota admission and reconciliation on SQLite (and the limits read before them), run in the calling thread on
//! a dedicated connection.
//!
//! Why: through sqlx every statement is a hop to its SQLite worker thread and back; admission is five
//! statements on every request's path, and on a small shared machine those hops, not SQLite, set the tail
//! latency. Here the same statements (`quota.rs`, same text and arguments) run under a mutex held for tens of
//! microseconds. The connection never waits for a lock: `busy_timeout = 0`, so when another connection or
//! process (the CLI, the roll-up) holds the write lock the caller gets `None` and takes the sqlx path, which waits
//! off-thread. It never checkpoints either (that fsyncs the database file); every `CHECKPOINT_EVERY` commits it
//! asks the pool to, in the background.

use super::limits::{limits_from_columns, USER_AND_KEY_SQL};
use super::quota::{
    snapshot_from, Admission, Arg, Completed, Completion, UsageSnapshot, CHARGE_SQL, COMPLETE_SQL,
    CORRECT_SQL, LEDGER_SQL, LOCK_SQL, SNAPSHOT_SQL,
};
use super::Result;
use crate::limits::Limits;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ErrorCode, Statement, TransactionBehavior};
use sqlx::AnyPool;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

const CHECKPOINT_EVERY: u32 = 512;

pub(super) struct FastSqlite {
    conn: Mutex<Connection>,
    commits: AtomicU32,
    pool: AnyPool,
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Int(v) => ToSqlOutput::Owned(Value::Integer(*v)),
            Arg::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::Owned(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::OptText(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::OptInt(Some(v)) => ToSqlOutput::Owned(Value::Integer(*v)),
            Arg::OptFloat(Some(v)) => ToSqlOutput::Owned(Value::Real(*v)),
            Arg::OptText(None) | Arg::OptInt(None) | Arg::OptFloat(None) => {
                ToSqlOutput::Owned(Value::Null)
            }
        })
    }
}

/// Binds `$N` to `args[N-1]` (SQLite numbers named parameters by first appearance, not by N).
fn bind(stmt: &mut Statement<'_>, args: &[Arg<'_>]) -> rusqlite::Result<()> {
    for i in 1..=stmt.parameter_count() {
        let n = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| (1..=args.len()).contains(n))
            .ok_or(rusqlite::Error::InvalidParameterCount(i, args.len()))?;
        stmt.raw_bind_parameter(i, &args[n - 1])?;
    }
    Ok(())
}

fn execute(conn: &Connection, sql: &str, args: &[Arg<'_>]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, args)?;
    stmt.raw_execute()?;
    Ok(())
}

/// SQLITE_BUSY / SQLITE_LOCKED: someone else writes; the caller falls back to the waiting path.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl FastSqlite {
    /// Opens the second connection to the (already migrated) database file.
    pub(super) fn open(path: &Path, pool: AnyPool) -> rusqlite::Result<FastSqlite> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = 0; PRAGMA wal_autocheckpoint = 0;",
        )?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(FastSqlite {
            conn: Mutex::new(conn),
            commits: AtomicU32::new(0),
            pool,
        })
    }

    /// Runs `body` in an immediate transaction; None when the write lock is taken elsewhere.
    fn write<T>(
        &self,
        body: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        // A poisoned lock means a panic mid-transaction, which rusqlite rolled back on unwind.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let run = || -> rusqlite::Result<T> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = body(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        match run() {
            Ok(out) => {
                drop(conn);
                if self.commits.fetch_add(1, Ordering::Relaxed) % CHECKPOINT_EVERY
                    == CHECKPOINT_EVERY - 1
                {
                    self.checkpoint();
                }
                Ok(Some(out))
            }
            Err(e) if is_busy(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn checkpoint(&self) {
        let pool = self.pool.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %e, "SQLite checkpoint failed");
                }
            });
        }
    }

    /// The user's and the key's limit rows; None when the database is locked (a schema change).
    pub(super) fn user_and_key_limits(
        &self,
        user_id: &str,
        key_id: Option<&str>,
    ) -> Result<Option<(Limits, Limits)>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let read = || -> rusqlite::Result<(Limits, Limits)> {
            let mut stmt = conn.prepare_cached(USER_AND_KEY_SQL)?;
            bind(
                &mut stmt,
                &[Arg::Text(user_id), Arg::Text(key_id.unwrap_or(""))],
            )?;
            let mut rows = stmt.raw_query();
            let (mut user, mut key) = (Limits::default(), Limits::default());
            while let Some(r) = rows.next()? {
                let whose: String = r.get("whose")?;
                let l =
                    limits_from_columns(|c| r.get::<_, Option<i64>>(c), r.get("allowed_models")?)?;
                *(if whose == "u" { &mut user } else { &mut key }) = l;
            }
            Ok((user, key))
        };
        match read() {
            Ok(both) => Ok(Some(both)),
            Err(e) if is_busy(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn admit<E>(
        &self,
        a: &Admission<'_>,
        check: &impl Fn(&UsageSnapshot) -> std::result::Result<(), E>,
    ) -> Result<Option<(UsageSnapshot, std::result::Result<(), E>)>> {
        self.write(|tx| {
            execute(tx, LOCK_SQL, &a.lock_args())?;
            let mut stmt = tx.prepare_cached(SNAPSHOT_SQL)?;
            bind(&mut stmt, &a.snapshot_args())?;
            let mut rows = stmt.raw_query();
            let row = rows.next()?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            let snap = snapshot_from(|c| row.get::<_, i64>(c), row.get("oldest")?)?;
            drop(rows);
            let verdict = check(&snap);
            execute(tx, LEDGER_SQL, &a.ledger_args(verdict.is_ok()))?;
            if verdict.is_ok() {
                execute(tx, CHARGE_SQL, &a.charge_args())?;
            }
            Ok((snap, verdict))
        })
    }

    pub(super) fn reconcile(&self, c: &Completion<'_>) -> Result<Option<bool>> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(COMPLETE_SQL)?;
            bind(&mut stmt, &c.complete_args())?;
            let done = stmt
                .raw_query()
                .next()?
                .map(|r| {
                    Ok::<_, rusqlite::Error>(Completed {
                        user_id: r.get("user_id")?,
                        reserved: r.get("reserved_tokens")?,
                        day_key: r.get("day_key")?,
                        month_key: r.get("month_key")?,
                        started_at: r.get("started_at")?,
                    })
                })
                .transpose()?;
            drop(stmt);
            let Some(done) = done else {
                return Ok(false);
            };
            execute(
                tx,
                CORRECT_SQL,
                &done.correct_args(c.prompt_tokens + c.completion_tokens),
            )?;
            Ok(true)
        })
    }
}
