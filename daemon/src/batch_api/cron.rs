//! Recurring batches (tokio-cron-scheduler): each enabled schedule creates a batch from its input file, owned by
//! its user, whenever its cron expression fires (in the configured time zone, at its UTC offset when the
//! schedules were last loaded). Schedules live in the store; the daemon reloads them when the admin API changes
//! them and every 30 s (so `hearth schedule …` from the CLI takes effect too).

use super::{BatchError, Batches};
use crate::store::{BatchRecord, ScheduleRecord, Store};
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler};

/// A cron expression as tokio-cron-scheduler wants it (with seconds): 5 fields get `0` seconds prepended.
/// Errors say what is expected.
pub fn normalize(expr: &str) -> Result<String, String> {
    let fields = expr.split_whitespace().count();
    let six = match fields {
        5 => format!("0 {}", expr.trim()),
        6 => expr.trim().to_owned(),
        n => {
            return Err(format!(
                "invalid cron expression '{expr}': {n} fields; expected 5 (minute hour day month weekday) or 6 \
                 (with seconds first)"
            ))
        }
    };
    Job::new_async(six.as_str(), |_, _| Box::pin(async {}))
        .map(|_| six.clone())
        .map_err(|_| format!("invalid cron expression '{expr}'"))
}

/// A new schedule, checked: a valid name, cron expression and endpoint (default chat), an existing owner, and a
/// `batch` file. Shared by the admin API and `hearth schedule add`.
pub async fn checked(
    store: &Store,
    name: &str,
    cron: &str,
    input_file_id: &str,
    owner: &str,
    endpoint: Option<&str>,
) -> Result<ScheduleRecord, BatchError> {
    if !crate::auth::accounts::valid_user_name(name) {
        return Err(BatchError::invalid(
            "schedule names are 1–64 letters, digits, '.', '_' or '-'",
            "name",
        ));
    }
    normalize(cron).map_err(|e| BatchError::invalid(e, "cron"))?;
    let endpoint = endpoint.unwrap_or(super::ENDPOINTS[0]);
    if !super::ENDPOINTS.contains(&endpoint) {
        return Err(BatchError::invalid(
            format!("endpoint '{endpoint}' is not supported (use /v1/chat/completions or /v1/completions)"),
            "endpoint",
        ));
    }
    let owner = store
        .user_by_name(owner)
        .await?
        .ok_or_else(|| BatchError::NotFound(format!("user '{owner}'")))?;
    match store.file(input_file_id).await? {
        Some(f) if f.purpose == "batch" => {}
        Some(f) => {
            return Err(BatchError::invalid(
                format!("file '{}' has purpose '{}', not 'batch'", f.id, f.purpose),
                "input_file_id",
            ))
        }
        None => return Err(BatchError::NotFound(format!("file '{input_file_id}'"))),
    }
    Ok(ScheduleRecord {
        name: name.to_owned(),
        cron: cron.trim().to_owned(),
        input_file_id: input_file_id.to_owned(),
        owner_id: owner.id,
        owner: owner.name,
        endpoint: endpoint.to_owned(),
        enabled: true,
        created_at: crate::store::now(),
        last_run_at: None,
        last_batch_id: None,
    })
}

/// Creates the schedule's batch now (the cron job's action; also `POST /admin/schedules/{name}/run`).
pub async fn run_now(batches: &Batches, name: &str) -> Result<BatchRecord, BatchError> {
    run(batches, name, crate::store::now()).await
}

/// A schedule's cron tick on this node: with several nodes on one database each fires it, and only the node
/// that takes the tick (`claim_schedule_tick`) creates the batch. The tick is the fire time cut to the second:
/// each node fires just after the scheduled second of its own clock, so every node names that second unless its
/// timer ran a whole second late (rounding instead named the next second for a node 0.5 s late, and a loaded CI
/// run made two batches for one tick that way). None: another node took it.
async fn fire_tick(batches: &Batches, name: &str) -> Option<Result<BatchRecord, BatchError>> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let tick = ms / 1000;
    match batches.store.claim_schedule_tick(name, tick).await {
        Ok(true) => Some(run(batches, name, tick).await),
        Ok(false) => None,
        Err(e) => Some(Err(e.into())),
    }
}

/// Creates a schedule's batch now, recording the run at `at`.
async fn run(batches: &Batches, name: &str, at: i64) -> Result<BatchRecord, BatchError> {
    let s = batches
        .store
        .schedule(name)
        .await?
        .ok_or_else(|| BatchError::NotFound(format!("schedule '{name}'")))?;
    let result = async {
        let who = batches.auth.principal_of(&s.owner_id, None).await?;
        batches
            .create(
                &who,
                &s.input_file_id,
                &s.endpoint,
                Some(&serde_json::json!({"schedule": name})),
                Some(name),
            )
            .await
    }
    .await;
    batches
        .store
        .schedule_ran(name, at, result.as_ref().ok().map(|b| b.id.as_str()))
        .await?;
    if result.is_ok() {
        batches.signals.wake();
    }
    result
}

/// Loads the enabled schedules into a fresh scheduler whose jobs send their names to `fire`.
async fn load(
    list: &[ScheduleRecord],
    tz: &jiff::tz::TimeZone,
    fire: &tokio::sync::mpsc::UnboundedSender<String>,
) -> Result<JobScheduler, String> {
    let sched = JobScheduler::new().await.map_err(|e| e.to_string())?;
    let offset = tz.to_offset(jiff::Timestamp::now()).seconds();
    let zone = chrono::FixedOffset::east_opt(offset)
        .ok_or_else(|| format!("time zone offset {offset} s is out of range"))?;
    for s in list.iter().filter(|s| s.enabled) {
        let cron = match normalize(&s.cron) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(schedule = %s.name, error = %e, "schedule skipped");
                continue;
            }
        };
        let (tx, name) = (fire.clone(), s.name.clone());
        let job = Job::new_async_tz(cron.as_str(), zone, move |_, _| {
            let _ = tx.send(name.clone());
            Box::pin(async {})
        })
        .map_err(|e| e.to_string())?;
        sched.add(job).await.map_err(|e| e.to_string())?;
    }
    sched.start().await.map_err(|e| e.to_string())?;
    Ok(sched)
}

/// Keeps the cron jobs in step with the store and runs what fires.
pub fn start(batches: Batches) {
    let (fire, mut fired) = tokio::sync::mpsc::unbounded_channel::<String>();
    let firing = batches.clone();
    tokio::task::spawn_local(async move {
        while let Some(name) = fired.recv().await {
            match fire_tick(&firing, &name).await {
                Some(Ok(b)) => {
                    tracing::info!(schedule = %name, batch = %b.id, "scheduled batch created")
                }
                Some(Err(e)) => {
                    tracing::error!(schedule = %name, error = %e, "scheduled batch not created")
                }
                None => tracing::debug!(schedule = %name, "another node took this tick"),
            }
        }
    });
    tokio::task::spawn_local(async move {
        let mut loaded: Option<(Vec<ScheduleRecord>, JobScheduler)> = None;
        while !batches.signals.is_stopped() {
            match batches.store.schedules().await {
                Ok(list) => {
                    // Compare what matters to the jobs, not the run bookkeeping.
                    let key = |l: &[ScheduleRecord]| -> Vec<(String, String, bool)> {
                        l.iter()
                            .map(|s| (s.name.clone(), s.cron.clone(), s.enabled))
                            .collect()
                    };
                    if loaded
                        .as_ref()
                        .is_none_or(|(old, _)| key(old) != key(&list))
                    {
                        if let Some((_, mut old)) = loaded.take() {
                            let _ = old.shutdown().await;
                        }
                        match load(&list, batches.quota.time_zone(), &fire).await {
                            Ok(s) => loaded = Some((list, s)),
                            Err(e) => tracing::error!(error = %e, "schedules not loaded"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading schedules failed"),
            }
            tokio::select! {
                _ = batches.signals.schedules_changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
        if let Some((_, mut s)) = loaded {
            let _ = s.shutdown().await;
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn cron_expressions() {
        assert_eq!(super::normalize("30 2 * * *").unwrap(), "0 30 2 * * *");
        assert_eq!(super::normalize("*/5 * * * * *").unwrap(), "*/5 * * * * *");
        assert!(super::normalize("61 * * * *").is_err());
        assert!(super::normalize("every day")
            .unwrap_err()
            .contains("expected 5"));
    }
}
