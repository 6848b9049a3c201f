//! Maintenance that runs once for the whole cluster: a job's last run, taken by one node at a time.

use super::{Result, Store};

impl Store {
    /// Takes this run of job `name` for `node` at `now`: true when no run was taken in the last `gap` seconds (so
    /// exactly one of the nodes whose timers fire together runs it), false otherwise.
    pub async fn claim_job_run(&self, name: &str, node: &str, now: i64, gap: i64) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO job_runs (name, last_run_at, node) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET last_run_at = $2, node = $3 WHERE job_runs.last_run_at <= $4",
        )
        .bind(name)
        .bind(now)
        .bind(node)
        .bind(now - gap)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The node that took job `name`'s last run, and when.
    pub async fn last_job_run(&self, name: &str) -> Result<Option<(String, i64)>> {
        let row = sqlx::query("SELECT node, last_run_at FROM job_runs WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some((
                sqlx::Row::try_get(&r, "node")?,
                sqlx::Row::try_get(&r, "last_run_at")?,
            )),
            None => None,
        })
    }
}
