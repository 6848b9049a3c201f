//! Moves batches along: `validating` → `in_progress` → (`finalizing`) → `completed`, or `cancelling` →
//! `cancelled`, or `expired` after 24 h. Each pass claims pending lines in the database (up to the model's slots
//! per batch, while the batch window is open) with a lease this node renews, and runs them as tasks; a finished
//! line's outcome is stored at once. So several nodes on one database run each line once, a dead node's lines
//! are taken over when its leases run out, and after a restart a node gives back what it held. A line ended by
//! shutdown, or refused by a per-minute limit or a full queue, is given back and tried again.

use super::window::{Window, SETTING};
use super::Batches;
use crate::store::{BatchRecord, FileRecord, PendingLine};
use futures_util::future::LocalBoxFuture;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One line to run, as its owner (and the key the batch was created with).
pub struct Line {
    pub owner_id: String,
    pub key_id: Option<String>,
    pub endpoint: String,
    pub body: String,
}

/// What the API would have answered the line: its status code and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Runs a line through the front end whose request shape it has (the OpenAI one; wired by the server, so that
/// this wing never reaches up into `api`).
pub type RunLine = Arc<dyn Fn(Line) -> LocalBoxFuture<'static, Answer>>;

/// The runner's loop state: the wing's services, the model slots a batch may fill, how to run a line, and the
/// node its claims are made as.
#[derive(Clone)]
pub struct Runner {
    pub batches: Batches,
    pub slots: usize,
    pub run_line: RunLine,
    /// This serving process's node name (claims and their leases carry it).
    pub node: String,
    /// How long a claim holds without renewal (renewed every third of it).
    pub lease: Duration,
}

/// Per batch, the lines this process is running now.
type Inflight = Arc<Mutex<HashMap<String, HashSet<i64>>>>;

enum Outcome {
    /// Stored (done or failed).
    Stored,
    /// Try again after this long (shutdown, per-minute limit, full queue).
    Retry(Duration),
}

/// Starts the loop as a local task of the server's runtime; the wing's `Signals` wake and stop it.
pub fn start(runner: Runner) {
    let inflight: Inflight = Arc::default();
    tokio::task::spawn_local(async move {
        let signals = runner.batches.signals.clone();
        // What a previous process of this node held is nobody's now.
        match runner
            .batches
            .store
            .release_claims(&runner.node, None)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(lines = n, "gave back batch lines a previous process held"),
            Err(e) => tracing::warn!(error = %e, "giving back earlier batch claims failed"),
        }
        let mut renewed = std::time::Instant::now();
        while !signals.is_stopped() {
            if renewed.elapsed() >= runner.lease / 3 {
                let now = crate::store::now();
                let until = now + runner.lease.as_secs() as i64;
                match runner
                    .batches
                    .store
                    .renew_claims(&runner.node, now, until)
                    .await
                {
                    Ok(_) => renewed = std::time::Instant::now(),
                    Err(e) => tracing::warn!(error = %e, "renewing batch claims failed"),
                }
            }
            if let Err(e) = pass(&runner, &inflight).await {
                tracing::warn!(error = %e, "batch runner pass failed; retrying");
            }
            tokio::select! {
                _ = signals.woken() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
}

fn running(inflight: &Inflight, batch: &str) -> usize {
    inflight
        .lock()
        .map(|m| m.get(batch).map_or(0, HashSet::len))
        .unwrap_or(0)
}

async fn window_open(batches: &Batches) -> bool {
    match batches.store.setting(SETTING).await {
        Ok(Some(spec)) => spec
            .parse::<Window>()
            .map(|w| w.is_open(batches.quota.time_zone(), batches.quota.now()))
            .unwrap_or(true),
        _ => true,
    }
}

async fn pass(runner: &Runner, inflight: &Inflight) -> Result<(), crate::store::StoreError> {
    let wing = &runner.batches;
    let now = crate::store::now();
    let open = window_open(wing).await;
    let batches = wing.store.unfinished_batches().await?;
    // Forget ended batches (their claims are only there to stop a line running twice).
    if let Ok(mut m) = inflight.lock() {
        m.retain(|id, c| !c.is_empty() || batches.iter().any(|b| &b.id == id));
    }
    for mut b in batches {
        let busy = running(inflight, &b.id);
        match b.status.as_str() {
            "validating" => {
                wing.store
                    .set_batch_status(&b.id, "in_progress", now)
                    .await?;
                b.status = "in_progress".into();
            }
            "cancelling" if busy == 0 => {
                finalize(wing, &b, "cancelled").await?;
                continue;
            }
            "finalizing" => {
                finalize(wing, &b, "completed").await?;
                continue;
            }
            _ => {}
        }
        if b.status != "in_progress" {
            continue;
        }
        let pending = wing.store.count_pending_lines(&b.id).await?;
        if pending == 0 && busy == 0 {
            wing.store
                .set_batch_status(&b.id, "finalizing", now)
                .await?;
            finalize(wing, &b, "completed").await?;
            continue;
        }
        if now >= b.expires_at {
            if busy == 0 {
                finalize(wing, &b, "expired").await?;
            }
            continue;
        }
        let slots = runner.slots;
        if !open || busy >= slots || wing.signals.is_stopped() {
            continue;
        }
        let lines = wing
            .store
            .claim_lines(
                &b.id,
                &runner.node,
                (slots - busy) as i64,
                now,
                now + runner.lease.as_secs() as i64,
            )
            .await?;
        for line in lines {
            if let Ok(mut m) = inflight.lock() {
                m.entry(b.id.clone()).or_default().insert(line.line_no);
            }
            wing.signals.line_started();
            let (runner, inflight, b) = (runner.clone(), inflight.clone(), b.clone());
            tokio::task::spawn_local(async move {
                let line_no = line.line_no;
                let outcome = run_line(&runner, &b, line).await;
                runner.batches.signals.line_ended();
                if let Outcome::Retry(after) = outcome {
                    // Hold the claim while a per-minute limit or a full queue clears (each refused try is a
                    // `rejected` ledger row, so they are spaced out), then give the line back to any node.
                    tokio::time::sleep(after).await;
                    if let Err(e) = runner
                        .batches
                        .store
                        .release_claims(&runner.node, Some((&b.id, line_no)))
                        .await
                    {
                        tracing::warn!(batch = %b.id, line = line_no, error = %e, "giving back a batch line failed");
                    }
                }
                if let Ok(mut m) = inflight.lock() {
                    if let Some(c) = m.get_mut(&b.id) {
                        c.remove(&line_no);
                    }
                }
                runner.batches.signals.wake();
            });
        }
    }
    Ok(())
}

async fn run_line(runner: &Runner, b: &BatchRecord, line: PendingLine) -> Outcome {
    let Answer { status, body } = (runner.run_line)(Line {
        owner_id: b.owner_id.clone(),
        key_id: b.key_id.clone(),
        endpoint: b.endpoint.clone(),
        body: line.body.clone(),
    })
    .await;
    let code = body["error"]["code"].as_str().unwrap_or("");
    let aborted = body["choices"][0]["finish_reason"].as_str() == Some("abort");
    if status == 429 && code == "rate_limit_exceeded" {
        return Outcome::Retry(Duration::from_secs(5));
    }
    if aborted || status == 503 {
        return Outcome::Retry(Duration::from_secs(1));
    }
    let result = super::response_line(&line.custom_id, status, &body);
    // The line ran and was charged: storing its result is retried while the database cannot be reached
    // (PostgreSQL restarting) rather than running it again.
    let mut tries = 0;
    loop {
        match runner
            .batches
            .store
            .finish_line(&b.id, line.line_no, status == 200, &result)
            .await
        {
            Ok(_) => return Outcome::Stored,
            Err(e) if e.is_unavailable() && tries < 60 => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::error!(batch = %b.id, line = line.line_no, error = %e, "could not store a batch line's result");
                return Outcome::Retry(Duration::from_secs(1));
            }
        }
    }
}

/// Writes the output and error files from the stored line results and sets the final status.
async fn finalize(
    wing: &Batches,
    b: &BatchRecord,
    status: &str,
) -> Result<(), crate::store::StoreError> {
    let results = wing.store.line_results(&b.id).await?;
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
    let ended = wing
        .store
        .finalize_batch(
            &b.id,
            status,
            output.as_ref().map(|(f, c)| (f, c.as_str())),
            errors.as_ref().map(|(f, c)| (f, c.as_str())),
            now,
        )
        .await?;
    if ended {
        tracing::info!(batch = %b.id, status, completed = b.completed, failed = b.failed, "batch ended");
    }
    Ok(())
}
