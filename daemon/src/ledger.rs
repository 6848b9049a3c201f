//! Completes ledger rows off the request path. Admission (`quota`) writes a `running` row with the reservation;
//! the scheduler calls the job's `on_finish` exactly once (finished, cancelled or abandoned), which queues the real
//! counts here; a single task reconciles them, and `close` drains the queue at shutdown.

use crate::sched::OnFinish;
use crate::store::{Completion, Store};
use hearth_engine::{FinishReason, Usage};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

struct Done {
    request_id: String,
    reason: FinishReason,
    usage: Usage,
    duration_ms: i64,
}

#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Done>,
}

pub struct LedgerTask(tokio::task::JoinHandle<()>);

impl Ledger {
    pub fn start(store: Store) -> (Ledger, LedgerTask) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
        let task = tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                let c = Completion {
                    request_id: &d.request_id,
                    status: match d.reason {
                        FinishReason::Cancelled => "cancelled",
                        FinishReason::Stop | FinishReason::Length => "ok",
                    },
                    finish_reason: d.reason.as_str(),
                    prompt_tokens: d.usage.prompt_tokens as i64,
                    completion_tokens: d.usage.completion_tokens as i64,
                    now: crate::store::now(),
                    duration_ms: d.duration_ms,
                };
                // Retry briefly: SQLite may be busy with the CLI; a reconciliation is worth a short wait.
                let mut tries = 0;
                while let Err(e) = store.reconcile(&c).await {
                    tries += 1;
                    if tries >= 5 {
                        tracing::error!(error = %e, request = %d.request_id, "could not record request usage");
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
                }
            }
        });
        (Ledger { tx }, LedgerTask(task))
    }

    /// The callback for one admitted request.
    pub fn on_finish(&self, request_id: String) -> OnFinish {
        let tx = self.tx.clone();
        let started = Instant::now();
        Arc::new(move |reason: FinishReason, usage: &Usage| {
            let _ = tx.send(Done {
                request_id: request_id.clone(),
                reason,
                usage: *usage,
                duration_ms: started.elapsed().as_millis() as i64,
            });
        })
    }
}

impl LedgerTask {
    /// Waits until every queued completion is written (all `Ledger` handles must be dropped first).
    pub async fn close(self) {
        let _ = self.0.await;
    }
}
