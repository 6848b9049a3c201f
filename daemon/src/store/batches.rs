//! Files, batches and their lines, schedules and settings (migration 0006). A line moves from `pending` to `done`
//! or `failed` exactly once, in the same transaction as its batch's counters, so a restart resumes where it was.

use super::{Result, Store};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: String,
    pub owner_id: String,
    pub purpose: String,
    pub filename: String,
    pub bytes: i64,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchRecord {
    pub id: String,
    pub owner_id: String,
    pub key_id: Option<String>,
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// JSON object text.
    pub metadata: Option<String>,
    /// The schedule that created it.
    pub schedule: Option<String>,
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub in_progress_at: Option<i64>,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
}

/// An input line, as stored at creation.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLine {
    pub line_no: i64,
    pub custom_id: String,
    pub body: String,
    /// `pending`, or `failed` with its error line when the line was malformed.
    pub failed: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingLine {
    pub line_no: i64,
    pub custom_id: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ScheduleRecord {
    pub name: String,
    /// Cron expression (5 fields, or 6 with seconds), in the configured time zone.
    pub cron: String,
    pub input_file_id: String,
    #[serde(skip)]
    pub owner_id: String,
    /// The owner's user name.
    pub owner: String,
    pub endpoint: String,
    pub enabled: bool,
    pub created_at: i64,
    pub last_run_at: Option<i64>,
    pub last_batch_id: Option<String>,
}

const FILE_COLS: &str = "id, owner_id, purpose, filename, bytes, created_at";
const BATCH_COLS: &str = "id, owner_id, key_id, endpoint, input_file_id, completion_window, status, output_file_id, \
     error_file_id, metadata, schedule, total, completed, failed, created_at, expires_at, in_progress_at, \
     finalizing_at, completed_at, cancelling_at, cancelled_at";
const SCHEDULE_COLS: &str =
    "s.name, s.cron, s.input_file_id, s.owner_id, u.name AS owner, s.endpoint, s.enabled, \
     s.created_at, s.last_run_at, s.last_batch_id";

/// The one INSERT of a file (uploads, and output/error files inside a batch's final transaction).
fn file_insert<'q>(
    f: &'q FileRecord,
    content: &'q str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(
        "INSERT INTO files (id, owner_id, purpose, filename, bytes, created_at, content) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&f.id)
    .bind(&f.owner_id)
    .bind(&f.purpose)
    .bind(&f.filename)
    .bind(f.bytes)
    .bind(f.created_at)
    .bind(content)
}

fn file_from(r: &AnyRow) -> Result<FileRecord> {
    Ok(FileRecord {
        id: r.try_get("id")?,
        owner_id: r.try_get("owner_id")?,
        purpose: r.try_get("purpose")?,
        filename: r.try_get("filename")?,
        bytes: r.try_get("bytes")?,
        created_at: r.try_get("created_at")?,
    })
}

fn batch_from(r: &AnyRow) -> Result<BatchRecord> {
    Ok(BatchRecord {
        id: r.try_get("id")?,
        owner_id: r.try_get("owner_id")?,
        key_id: r.try_get("key_id")?,
        endpoint: r.try_get("endpoint")?,
        input_file_id: r.try_get("input_file_id")?,
        completion_window: r.try_get("completion_window")?,
        status: r.try_get("status")?,
        output_file_id: r.try_get("output_file_id")?,
        error_file_id: r.try_get("error_file_id")?,
        metadata: r.try_get("metadata")?,
        schedule: r.try_get("schedule")?,
        total: r.try_get("total")?,
        completed: r.try_get("completed")?,
        failed: r.try_get("failed")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        in_progress_at: r.try_get("in_progress_at")?,
        finalizing_at: r.try_get("finalizing_at")?,
        completed_at: r.try_get("completed_at")?,
        cancelling_at: r.try_get("cancelling_at")?,
        cancelled_at: r.try_get("cancelled_at")?,
    })
}

fn schedule_from(r: &AnyRow) -> Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        name: r.try_get("name")?,
        cron: r.try_get("cron")?,
        input_file_id: r.try_get("input_file_id")?,
        owner_id: r.try_get("owner_id")?,
        owner: r.try_get("owner")?,
        endpoint: r.try_get("endpoint")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        created_at: r.try_get("created_at")?,
        last_run_at: r.try_get("last_run_at")?,
        last_batch_id: r.try_get("last_batch_id")?,
    })
}

/// The timestamp column a status change sets.
fn status_time_column(status: &str) -> Option<&'static str> {
    Some(match status {
        "in_progress" => "in_progress_at",
        "finalizing" => "finalizing_at",
        "completed" => "completed_at",
        "cancelling" => "cancelling_at",
        "cancelled" => "cancelled_at",
        _ => return None,
    })
}

impl Store {
    pub async fn insert_file(&self, f: &FileRecord, content: &str) -> Result<()> {
        file_insert(f, content).execute(self.pool()).await?;
        Ok(())
    }

    pub async fn file(&self, id: &str) -> Result<Option<FileRecord>> {
        let row = sqlx::query(&format!("SELECT {FILE_COLS} FROM files WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(file_from).transpose()
    }

    pub async fn file_content(&self, id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT content FROM files WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("content")).transpose()?)
    }

    /// Newest first; `owner` None = everyone's.
    pub async fn list_files(&self, owner: Option<&str>) -> Result<Vec<FileRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLS} FROM files WHERE ($1 IS NULL OR owner_id = $1) ORDER BY created_at DESC, id DESC"
        ))
        .bind(owner)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(file_from).collect()
    }

    pub async fn delete_file(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM files WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// The batch and all its lines, in one transaction.
    pub async fn create_batch(&self, b: &BatchRecord, lines: &[NewLine]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO batches (id, owner_id, key_id, endpoint, input_file_id, completion_window, status, \
             metadata, schedule, total, failed, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&b.id)
        .bind(&b.owner_id)
        .bind(&b.key_id)
        .bind(&b.endpoint)
        .bind(&b.input_file_id)
        .bind(&b.completion_window)
        .bind(&b.status)
        .bind(&b.metadata)
        .bind(&b.schedule)
        .bind(lines.len() as i64)
        .bind(lines.iter().filter(|l| l.failed.is_some()).count() as i64)
        .bind(b.created_at)
        .bind(b.expires_at)
        .execute(&mut *tx)
        .await?;
        for l in lines {
            sqlx::query(
                "INSERT INTO batch_lines (batch_id, line_no, custom_id, body, status, result) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&b.id)
            .bind(l.line_no)
            .bind(&l.custom_id)
            .bind(&l.body)
            .bind(if l.failed.is_some() {
                "failed"
            } else {
                "pending"
            })
            .bind(&l.failed)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn batch(&self, id: &str) -> Result<Option<BatchRecord>> {
        let row = sqlx::query(&format!("SELECT {BATCH_COLS} FROM batches WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(batch_from).transpose()
    }

    /// Newest first, at most `limit`, after the batch `after` (OpenAI's cursor); `owner` None = everyone's.
    pub async fn list_batches(
        &self,
        owner: Option<&str>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<BatchRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BATCH_COLS} FROM batches WHERE ($1 IS NULL OR owner_id = $1) AND ($2 IS NULL OR \
             (created_at, id) < (SELECT created_at, id FROM batches WHERE id = $2)) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(owner)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(batch_from).collect()
    }

    /// Batches the runner has to move on: not yet in a final state.
    pub async fn unfinished_batches(&self) -> Result<Vec<BatchRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {BATCH_COLS} FROM batches \
             WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling') ORDER BY created_at, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(batch_from).collect()
    }

    pub async fn set_batch_status(&self, id: &str, status: &str, now: i64) -> Result<()> {
        let set_time = status_time_column(status)
            .map(|c| format!(", {c} = $3"))
            .unwrap_or_default();
        sqlx::query(&format!(
            "UPDATE batches SET status = $2{set_time} WHERE id = $1"
        ))
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Up to `limit` pending lines after line `after`, in file order.
    pub async fn pending_lines(
        &self,
        batch_id: &str,
        limit: i64,
        after: i64,
    ) -> Result<Vec<PendingLine>> {
        let rows = sqlx::query(
            "SELECT line_no, custom_id, body FROM batch_lines \
             WHERE batch_id = $1 AND status = 'pending' AND line_no > $2 ORDER BY line_no LIMIT $3",
        )
        .bind(batch_id)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingLine {
                    line_no: r.try_get("line_no")?,
                    custom_id: r.try_get("custom_id")?,
                    body: r.try_get("body")?,
                })
            })
            .collect()
    }

    /// Claims up to `limit` pending lines of a batch for `node` until `lease_until` (unix seconds), in file
    /// order: lines nobody holds, or whose lease ended before `now` (a dead node's). On PostgreSQL concurrent
    /// claims skip each other's rows (`FOR UPDATE SKIP LOCKED`); SQLite runs one writer at a time.
    pub async fn claim_lines(
        &self,
        batch_id: &str,
        node: &str,
        limit: i64,
        now: i64,
        lease_until: i64,
    ) -> Result<Vec<PendingLine>> {
        let lock = match self.backend() {
            super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Backend::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE batch_lines SET claimed_by = $2, lease_until = $3 \
             WHERE batch_id = $1 AND line_no IN (\
               SELECT line_no FROM batch_lines WHERE batch_id = $1 AND status = 'pending' \
               AND (lease_until IS NULL OR lease_until < $4) ORDER BY line_no LIMIT $5{lock}) \
             RETURNING line_no, custom_id, body"
        ))
        .bind(batch_id)
        .bind(node)
        .bind(lease_until)
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut lines = rows
            .iter()
            .map(|r| {
                Ok(PendingLine {
                    line_no: r.try_get("line_no")?,
                    custom_id: r.try_get("custom_id")?,
                    body: r.try_get("body")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        lines.sort_by_key(|l| l.line_no);
        Ok(lines)
    }

    /// Extends `node`'s unexpired claims on pending lines to `lease_until`; returns how many.
    pub async fn renew_claims(&self, node: &str, now: i64, lease_until: i64) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE batch_lines SET lease_until = $3 \
             WHERE claimed_by = $1 AND status = 'pending' AND lease_until >= $2",
        )
        .bind(node)
        .bind(now)
        .bind(lease_until)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// Gives back `node`'s claim on a pending line (to be tried again, by any node); `None`: every claim of the
    /// node (at start-up: what a previous process of the node held).
    pub async fn release_claims(&self, node: &str, line: Option<(&str, i64)>) -> Result<u64> {
        let q = match line {
            Some((batch, no)) => sqlx::query(
                "UPDATE batch_lines SET claimed_by = NULL, lease_until = NULL \
                 WHERE claimed_by = $1 AND status = 'pending' AND batch_id = $2 AND line_no = $3",
            )
            .bind(node)
            .bind(batch)
            .bind(no),
            None => sqlx::query(
                "UPDATE batch_lines SET claimed_by = NULL, lease_until = NULL \
                 WHERE claimed_by = $1 AND status = 'pending'",
            )
            .bind(node),
        };
        Ok(q.execute(self.pool()).await?.rows_affected())
    }

    pub async fn count_pending_lines(&self, batch_id: &str) -> Result<i64> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n FROM batch_lines WHERE batch_id = $1 AND status = 'pending'",
        )
        .bind(batch_id)
        .fetch_one(self.pool())
        .await?;
        Ok(r.try_get("n")?)
    }

    /// Records a line's outcome once (a second call is a no-op and returns false) with the batch's counters.
    pub async fn finish_line(
        &self,
        batch_id: &str,
        line_no: i64,
        ok: bool,
        result: &str,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let n = sqlx::query(
            "UPDATE batch_lines SET status = $3, result = $4 \
             WHERE batch_id = $1 AND line_no = $2 AND status = 'pending'",
        )
        .bind(batch_id)
        .bind(line_no)
        .bind(if ok { "done" } else { "failed" })
        .bind(result)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            let col = if ok { "completed" } else { "failed" };
            sqlx::query(&format!(
                "UPDATE batches SET {col} = {col} + 1 WHERE id = $1"
            ))
            .bind(batch_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Each finished line's (ok, result), in file order.
    pub async fn line_results(&self, batch_id: &str) -> Result<Vec<(bool, String)>> {
        let rows = sqlx::query(
            "SELECT status, result FROM batch_lines WHERE batch_id = $1 AND status <> 'pending' ORDER BY line_no",
        )
        .bind(batch_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let result: Option<String> = r.try_get("result")?;
                Ok((status == "done", result.unwrap_or_default()))
            })
            .collect()
    }

    /// Ends a batch: its output and error files (when non-empty) and its final status, in one transaction.
    pub async fn finalize_batch(
        &self,
        id: &str,
        status: &str,
        output: Option<(&FileRecord, &str)>,
        errors: Option<(&FileRecord, &str)>,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let time_col = status_time_column(status).unwrap_or("completed_at");
        // Once: with several nodes on one database, the first to end a batch writes its files; the others find
        // it ended (the row lock makes a concurrent one wait, then see the new status).
        let won = sqlx::query(&format!(
            "UPDATE batches SET status = $2, output_file_id = $3, error_file_id = $4, {time_col} = $5 \
             WHERE id = $1 AND status NOT IN ('completed', 'cancelled', 'expired', 'failed')"
        ))
        .bind(id)
        .bind(status)
        .bind(output.map(|(f, _)| f.id.clone()))
        .bind(errors.map(|(f, _)| f.id.clone()))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !won {
            tx.rollback().await?;
            return Ok(false);
        }
        for (f, content) in output.iter().chain(errors.iter()) {
            file_insert(f, content).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Sets (Some) or clears (None) a setting.
    pub async fn set_setting(&self, name: &str, value: Option<&str>) -> Result<()> {
        match value {
            Some(v) => sqlx::query(
                "INSERT INTO settings (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(v),
            None => sqlx::query("DELETE FROM settings WHERE name = $1").bind(name),
        }
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn insert_schedule(&self, s: &ScheduleRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedules (name, cron, input_file_id, owner_id, endpoint, enabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.name)
        .bind(&s.cron)
        .bind(&s.input_file_id)
        .bind(&s.owner_id)
        .bind(&s.endpoint)
        .bind(i64::from(s.enabled))
        .bind(s.created_at)
        .execute(self.pool())
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                super::StoreError::Conflict(format!("schedule '{}'", s.name))
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules s JOIN users u ON u.id = s.owner_id ORDER BY s.name"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(schedule_from).collect()
    }

    pub async fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules s JOIN users u ON u.id = s.owner_id WHERE s.name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(schedule_from).transpose()
    }

    /// Changes the cron expression and/or enabled flag; false when there is no such schedule.
    pub async fn update_schedule(
        &self,
        name: &str,
        cron: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE schedules SET cron = COALESCE($2, cron), enabled = COALESCE($3, enabled) WHERE name = $1",
        )
        .bind(name)
        .bind(cron)
        .bind(enabled.map(i64::from))
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM schedules WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Takes a schedule's tick `at` (unix seconds) for this node: true for the one node that moves the
    /// schedule's last run to it, false for every other node whose clock fired the same tick.
    pub async fn claim_schedule_tick(&self, name: &str, at: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE schedules SET last_run_at = $2 \
             WHERE name = $1 AND (last_run_at IS NULL OR last_run_at < $2)",
        )
        .bind(name)
        .bind(at)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn schedule_ran(&self, name: &str, at: i64, batch_id: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE schedules SET last_run_at = $2, last_batch_id = $3 WHERE name = $1")
            .bind(name)
            .bind(at)
            .bind(batch_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
