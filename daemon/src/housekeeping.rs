//! Scheduled maintenance (tokio-cron-scheduler): the daily roll-up of the request ledger into per-day totals and
//! the pruning of raw rows older than `usage.retain_raw`. Registered at start, also run once then; listed by
//! `GET /admin/jobs`; safe to run twice (the roll-up is recomputed from the raw rows, the prune is a range delete),
//! but on several nodes sharing a database it runs once: each run is claimed in the database (`job_runs`), and
//! a node whose timer fires within `CLAIM_GAP` of another node's run skips it.

use crate::store::{Store, StoreError};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};

/// Daily at 03:15 UTC (quiet hours in most of Europe; the work itself is one short transaction).
pub const ROLLUP_SCHEDULE: &str = "0 15 3 * * *";

/// Runs of the roll-up closer together than this are the same run, taken by the first node.
const CLAIM_GAP: i64 = 3600;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobInfo {
    pub name: &'static str,
    /// Cron expression (seconds first), UTC.
    pub schedule: &'static str,
    pub last_run: Option<i64>,
    pub last_result: Option<String>,
    pub next_run: Option<i64>,
}

/// What one run of the roll-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupOutcome {
    pub day_groups: u64,
    pub raw_rows_pruned: u64,
    pub minute_buckets_pruned: u64,
}

impl std::fmt::Display for RollupOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} day groups rolled up, {} raw rows pruned, {} old rate-limit buckets deleted",
            self.day_groups, self.raw_rows_pruned, self.minute_buckets_pruned
        )
    }
}

/// One run: roll up every complete local day, prune raw rows older than `retain` (whole local days) and the
/// rolling-minute buckets that no longer count.
pub async fn rollup_and_prune(
    store: &Store,
    tz: &TimeZone,
    retain: Duration,
    now: Timestamp,
) -> Result<RollupOutcome, StoreError> {
    let today = now.to_zoned(tz.clone()).date();
    let days = (retain.as_secs() / 86_400).max(1) as i64;
    let cutoff_day = today.checked_sub(days.days()).unwrap_or(today);
    let cutoff = cutoff_day
        .to_zoned(tz.clone())
        .map(|z| z.timestamp().as_second())
        .unwrap_or(i64::MIN);
    let (day_groups, raw_rows_pruned) = store.rollup_and_prune(&today.to_string(), cutoff).await?;
    let minute_buckets_pruned = store.prune_minute_buckets(now.as_second() - 60).await?;
    Ok(RollupOutcome {
        day_groups,
        raw_rows_pruned,
        minute_buckets_pruned,
    })
}

pub struct Housekeeping {
    scheduler: Option<JobScheduler>,
    job: Option<uuid::Uuid>,
    info: Arc<Mutex<JobInfo>>,
}

impl Housekeeping {
    pub async fn start(
        store: Store,
        tz: TimeZone,
        retain: Duration,
        node: String,
    ) -> Result<Housekeeping, String> {
        let info = Arc::new(Mutex::new(JobInfo {
            name: "usage-rollup",
            schedule: ROLLUP_SCHEDULE,
            last_run: None,
            last_result: None,
            next_run: None,
        }));
        let run = {
            let info = info.clone();
            move || {
                let (store, tz, info, node) =
                    (store.clone(), tz.clone(), info.clone(), node.clone());
                async move {
                    let now = Timestamp::now();
                    match store
                        .claim_job_run("usage-rollup", &node, now.as_second(), CLAIM_GAP)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            let by = store.last_job_run("usage-rollup").await.ok().flatten();
                            let text = match by {
                                Some((n, at)) => format!("skipped: node {n} ran it at {at}"),
                                None => "skipped: another node ran it".to_owned(),
                            };
                            tracing::debug!(job = "usage-rollup", result = %text, "job skipped");
                            if let Ok(mut i) = info.lock() {
                                i.last_run = Some(now.as_second());
                                i.last_result = Some(text);
                            }
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "claiming the roll-up failed; running it here")
                        }
                    }
                    let result = rollup_and_prune(&store, &tz, retain, now).await;
                    let text = match &result {
                        Ok(outcome) => format!("ok: {outcome}"),
                        Err(e) => format!("error: {e}"),
                    };
                    match &result {
                        Ok(_) => tracing::info!(job = "usage-rollup", result = %text, "job ran"),
                        Err(_) => {
                            tracing::error!(job = "usage-rollup", result = %text, "job failed")
                        }
                    }
                    if let Ok(mut i) = info.lock() {
                        i.last_run = Some(crate::store::now());
                        i.last_result = Some(text);
                    }
                }
            }
        };
        // Once now (catches up after downtime), then on schedule.
        tokio::spawn(run());
        let scheduler = JobScheduler::new().await.map_err(|e| e.to_string())?;
        let job = Job::new_async(ROLLUP_SCHEDULE, move |_id, _l| Box::pin(run()))
            .map_err(|e| e.to_string())?;
        let id = scheduler.add(job).await.map_err(|e| e.to_string())?;
        scheduler.start().await.map_err(|e| e.to_string())?;
        Ok(Housekeeping {
            scheduler: Some(scheduler),
            job: Some(id),
            info,
        })
    }

    pub async fn jobs(&self) -> Vec<JobInfo> {
        let mut info = match self.info.lock() {
            Ok(i) => i.clone(),
            Err(_) => return Vec::new(),
        };
        if let (Some(s), Some(id)) = (&self.scheduler, self.job) {
            let mut s = s.clone();
            if let Ok(Some(next)) = s.next_tick_for_job(id).await {
                info.next_run = Some(next.timestamp());
            }
        }
        vec![info]
    }

    pub async fn shutdown(&self) {
        if let Some(s) = &self.scheduler {
            let _ = s.clone().shutdown().await;
        }
    }
}
