//! Writes one `requests` row per admitted request, off the request path. The scheduler calls the job's
//! `on_finish` exactly once (finished, cancelled or abandoned), which queues the row here; a single task
//! writes them, and `close` drains the queue at shutdown.

use crate::sched::OnFinish;
use crate::store::{RequestRecord, Store};
use hearth_engine::FinishReason;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Who asked for what; completed into a row when the job ends.
#[derive(Debug, Clone)]
pub struct Ticket {
    pub request_id: String,
    pub user_id: String,
    pub key_id: Option<String>,
    pub model: String,
    pub endpoint: &'static str,
}

#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<RequestRecord>,
}

pub struct LedgerTask(tokio::task::JoinHandle<()>);

impl Ledger {
    pub fn start(store: Store) -> (Ledger, LedgerTask) {
        let (tx, mut rx) = mpsc::unbounded_channel::<RequestRecord>();
        let task = tokio::spawn(async move {
            while let Some(rec) = rx.recv().await {
                // Retry briefly: SQLite may be busy with the CLI; a row is worth a short wait.
                let mut tries = 0;
                while let Err(e) = store.record_request(&rec).await {
                    tries += 1;
                    if tries >= 5 {
                        tracing::error!(error = %e, request = %rec.id, "could not record request usage");
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
                }
            }
        });
        (Ledger { tx }, LedgerTask(task))
    }

    /// The callback for one job.
    pub fn on_finish(&self, ticket: Ticket) -> OnFinish {
        let tx = self.tx.clone();
        let started = Instant::now();
        let started_at = crate::store::now();
        Arc::new(move |reason: FinishReason, usage: &hearth_engine::Usage| {
            let _ = tx.send(RequestRecord {
                id: ticket.request_id.clone(),
                user_id: ticket.user_id.clone(),
                key_id: ticket.key_id.clone(),
                model: ticket.model.clone(),
                endpoint: ticket.endpoint.to_owned(),
                prompt_tokens: usage.prompt_tokens as i64,
                completion_tokens: usage.completion_tokens as i64,
                finish_reason: reason.as_str().to_owned(),
                started_at,
                duration_ms: started.elapsed().as_millis() as i64,
            });
        })
    }
}

impl LedgerTask {
    /// Waits until every queued row is written (all `Ledger` handles must be dropped first).
    pub async fn close(self) {
        let _ = self.0.await;
    }
}
