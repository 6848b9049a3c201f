//! Moves batches along: `validating` → `in_progress` → (`finalizing`) → `completed`, or `cancelling` →
//! `cancelled`, or `expired` after 24 h. Each pass starts pending lines (up to the model's slots per batch, while
//! the batch window is open) as tasks; a finished line's outcome is stored at once, so after a restart only the
//! lines still pending run. A line ended by shutdown, or refused by a per-minute limit or a full queue, stays
//! pending and is tried again.

use super::window::{Window, SETTING};
use crate::api::openai::run_batch_line;
use crate::api::AppState;
use crate::store::{BatchRecord, FileRecord, PendingLine};
use actix_web::web;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per batch: the lines running now, and the lines this process has stored. A pass reads the pending lines from
/// the store, then claims them; a line that finishes while that read is under way would still be in the list, so
/// stored lines are remembered until the batch ends and never claimed again.
#[derive(Default)]
struct Claims {
    running: HashSet<i64>,
    stored: HashSet<i64>,
}

type Inflight = Arc<Mutex<HashMap<String, Claims>>>;

enum Outcome {
    /// Stored (done or failed).
    Stored,
    /// Try again after this long (shutdown, per-minute limit, full queue).
    Retry(Duration),
}

/// Starts the loop on the current (actix) runtime; `st.batch` wakes and stops it.
pub fn start(st: web::Data<AppState>) {
    let inflight: Inflight = Arc::default();
    actix_web::rt::spawn(async move {
        while !st.batch.is_stopped() {
            if let Err(e) = pass(&st, &inflight).await {
                tracing::warn!(error = %e, "batch runner pass failed; retrying");
            }
            tokio::select! {
                _ = st.batch.woken() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
}

fn running(inflight: &Inflight, batch: &str) -> usize {
    inflight
        .lock()
        .map(|m| m.get(batch).map_or(0, |c| c.running.len()))
        .unwrap_or(0)
}

async fn window_open(st: &AppState) -> bool {
    match st.store.setting(SETTING).await {
        Ok(Some(spec)) => spec
            .parse::<Window>()
            .map(|w| w.is_open(st.quota.time_zone(), st.quota.now()))
            .unwrap_or(true),
        _ => true,
    }
}

async fn pass(
    st: &web::Data<AppState>,
    inflight: &Inflight,
) -> Result<(), crate::store::StoreError> {
    let now = crate::store::now();
    let open = window_open(st).await;
    let batches = st.store.unfinished_batches().await?;
    // Forget ended batches (their claims are only there to stop a line running twice).
    if let Ok(mut m) = inflight.lock() {
        m.retain(|id, c| !c.running.is_empty() || batches.iter().any(|b| &b.id == id));
    }
    for mut b in batches {
        let busy = running(inflight, &b.id);
        match b.status.as_str() {
            "validating" => {
                st.store.set_batch_status(&b.id, "in_progress", now).await?;
                b.status = "in_progress".into();
            }
            "cancelling" if busy == 0 => {
                finalize(st, &b, "cancelled").await?;
                continue;
            }
            "finalizing" => {
                finalize(st, &b, "completed").await?;
                continue;
            }
            _ => {}
        }
        if b.status != "in_progress" {
            continue;
        }
        let pending = st.store.count_pending_lines(&b.id).await?;
        if pending == 0 && busy == 0 {
            st.store.set_batch_status(&b.id, "finalizing", now).await?;
            finalize(st, &b, "completed").await?;
            continue;
        }
        if now >= b.expires_at {
            if busy == 0 {
                finalize(st, &b, "expired").await?;
            }
            continue;
        }
        let slots = st.config.engine.max_sequences;
        if !open || busy >= slots || st.batch.is_stopped() {
            continue;
        }
        let lines = st
            .store
            .pending_lines(&b.id, (slots + busy) as i64, 0)
            .await?;
        let mut started = 0;
        for line in lines {
            if busy + started >= slots {
                break;
            }
            let claimed = inflight
                .lock()
                .map(|mut m| {
                    let c = m.entry(b.id.clone()).or_default();
                    !c.stored.contains(&line.line_no) && c.running.insert(line.line_no)
                })
                .unwrap_or(false);
            if !claimed {
                continue;
            }
            started += 1;
            st.batch.line_started();
            let (st, inflight, b) = (st.clone(), inflight.clone(), b.clone());
            actix_web::rt::spawn(async move {
                let line_no = line.line_no;
                let outcome = run_line(&st, &b, line).await;
                st.batch.line_ended();
                let stored = match outcome {
                    Outcome::Stored => true,
                    Outcome::Retry(after) => {
                        // Hold the claim: a per-minute limit or a full queue needs time to clear (and each refused
                        // try is a `rejected` ledger row, so they are spaced out).
                        tokio::time::sleep(after).await;
                        false
                    }
                };
                if let Ok(mut m) = inflight.lock() {
                    if let Some(c) = m.get_mut(&b.id) {
                        c.running.remove(&line_no);
                        if stored {
                            c.stored.insert(line_no);
                        }
                    }
                }
                st.batch.wake();
            });
        }
    }
    Ok(())
}

async fn run_line(st: &AppState, b: &BatchRecord, line: PendingLine) -> Outcome {
    let (status, body) = match st.auth.principal_of(&b.owner_id, b.key_id.as_deref()).await {
        Ok(who) => run_batch_line(st, &who, &b.endpoint, &line.body).await,
        Err(e) => {
            let e = crate::api::error::ApiError::from(e);
            (
                e.status().as_u16(),
                serde_json::to_value(e.openai_body()).unwrap_or_default(),
            )
        }
    };
    let code = body["error"]["code"].as_str().unwrap_or("");
    let aborted = body["choices"][0]["finish_reason"].as_str() == Some("abort");
    if status == 429 && code == "rate_limit_exceeded" {
        return Outcome::Retry(Duration::from_secs(5));
    }
    if aborted || status == 503 {
        return Outcome::Retry(Duration::from_secs(1));
    }
    let result = super::response_line(&line.custom_id, status, &body);
    match st
        .store
        .finish_line(&b.id, line.line_no, status == 200, &result)
        .await
    {
        Ok(_) => Outcome::Stored,
        Err(e) => {
            tracing::error!(batch = %b.id, line = line.line_no, error = %e, "could not store a batch line's result");
            Outcome::Retry(Duration::from_secs(1))
        }
    }
}

/// Writes the output and error files from the stored line results and sets the final status.
async fn finalize(
    st: &AppState,
    b: &BatchRecord,
    status: &str,
) -> Result<(), crate::store::StoreError> {
    let results = st.store.line_results(&b.id).await?;
    let now = crate::store::now();
    let file = |suffix: &str, lines: Vec<&String>| {
        (!lines.is_empty()).then(|| {
            let mut content = String::new();
            for l in lines {
                content.push_str(l);
                content.push('\n');
            }
            (
                FileRecord {
                    id: super::file_id(),
                    owner_id: b.owner_id.clone(),
                    purpose: "batch_output".into(),
                    filename: format!("{}_{suffix}.jsonl", b.id),
                    bytes: content.len() as i64,
                    created_at: now,
                },
                content,
            )
        })
    };
    let output = file(
        "output",
        results.iter().filter(|r| r.0).map(|r| &r.1).collect(),
    );
    let errors = file(
        "error",
        results.iter().filter(|r| !r.0).map(|r| &r.1).collect(),
    );
    st.store
        .finalize_batch(
            &b.id,
            status,
            output.as_ref().map(|(f, c)| (f, c.as_str())),
            errors.as_ref().map(|(f, c)| (f, c.as_str())),
            now,
        )
        .await?;
    tracing::info!(batch = %b.id, status, completed = b.completed, failed = b.failed, "batch ended");
    Ok(())
}
