//! Completes ledger rows off the request path. Admission (`quota`) writes a `running` row with the reservation;
//! the scheduler calls the job's `on_finish` exactly once (finished, cancelled or abandoned), which queues the real
//! counts here; a single task reconciles them, and `close` drains the queue at shutdown.

use crate::sched::{JobEnd, OnFinish};
use crate::store::{Completion, Store};
use hearth_engine::FinishReason;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

struct Done {
    request_id: String,
    end: JobEnd,
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
                let e = &d.end;
                let c = Completion {
                    request_id: &d.request_id,
                    status: match (e.reason, &e.error) {
                        (_, Some(_)) => "error",
                        (FinishReason::Cancelled, None) => "cancelled",
                        (FinishReason::Stop | FinishReason::Length, None) => "ok",
                    },
                    finish_reason: if e.error.is_some() {
                        "error"
                    } else {
                        e.reason.as_str()
                    },
                    prompt_tokens: e.usage.prompt_tokens as i64,
                    completion_tokens: e.usage.completion_tokens as i64,
                    now: crate::store::now(),
                    duration_ms: d.duration_ms,
                    device: e.device.as_deref(),
                    queue_ms: e.queue_time.map(|q| q.as_millis() as i64),
                    energy_joules: e.energy.map(|s| s.joules),
                    energy_source: e.energy.map(|s| s.source.as_str()),
                };
                // Retry briefly: SQLite may be busy with the CLI; a reconciliation is worth a short wait — and
                // up to a minute while the database cannot be reached (PostgreSQL restarting), or the row would
                // stay `running` and hold its reservation.
                let mut tries = 0;
                while let Err(e) = store.reconcile(&c).await {
                    tries += 1;
                    let limit = if e.is_unavailable() { 60 } else { 5 };
                    if tries >= limit {
                        tracing::error!(error = %e, request = %d.request_id, "could not record request usage");
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100 * tries.min(10))).await;
                }
            }
        });
        (Ledger { tx }, LedgerTask(task))
    }

    /// The callback for one admitted request.
    pub fn on_finish(&self, request_id: String) -> OnFinish {
        let tx = self.tx.clone();
        let started = Instant::now();
        Arc::new(move |end: &JobEnd| {
            let _ = tx.send(Done {
                request_id: request_id.clone(),
                end: end.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Admission;
    use hearth_engine::Usage;
    use std::time::Duration;

    /// Each way a job can end lands in the ledger as its outcome: ok, cancelled, or error (a failure, charged
    /// for what was processed), with the device and queue time.
    #[tokio::test]
    async fn outcomes_reach_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&crate::store::sqlite_url(dir.path()))
            .await
            .unwrap();
        let user = crate::auth::accounts::add_user(&store, "erin", "member", None)
            .await
            .unwrap();
        let (ledger, task) = Ledger::start(store.clone());
        let ends = [
            (FinishReason::Stop, None, "ok"),
            (FinishReason::Cancelled, None, "cancelled"),
            (
                FinishReason::Cancelled,
                Some("batch refused".to_owned()),
                "error",
            ),
        ];
        for (i, (reason, error, _)) in ends.iter().enumerate() {
            let id = format!("r{i}");
            let a = Admission {
                request_id: &id,
                node: None,
                user_id: &user.id,
                key_id: None,
                model: "m",
                endpoint: "chat",
                client_user: None,
                prompt_tokens: 5,
                reserve: 50,
                now: crate::store::now(),
                day_key: "d:2026-11-28",
                month_key: "m:2026-11",
            };
            let (_, verdict) = store.admit(&a, |_| Ok::<(), ()>(())).await.unwrap();
            assert!(verdict.is_ok());
            ledger.on_finish(id)(&JobEnd {
                reason: *reason,
                usage: Usage {
                    prompt_tokens: 5,
                    completion_tokens: if error.is_some() { 0 } else { 3 },
                    ..Default::default()
                },
                device: Some("cpu".into()),
                queue_time: Some(Duration::from_millis(12)),
                error: error.clone(),
                energy: Some(crate::metrics::energy::Spent {
                    joules: 1.5,
                    source: crate::metrics::energy::Source::Rapl,
                }),
            });
        }
        drop(ledger);
        task.close().await;
        let rows = store.recent_requests(&user.id, 10).await.unwrap();
        for (i, (_, _, status)) in ends.iter().enumerate() {
            let r = rows.iter().find(|r| r.id == format!("r{i}")).unwrap();
            assert_eq!(r.status, *status);
        }
        let failed = rows.iter().find(|r| r.id == "r2").unwrap();
        assert_eq!(
            (failed.finish_reason.as_str(), failed.charged_tokens),
            ("error", 5)
        );
        let detail = store
            .usage_rows(&crate::store::UsageFilter {
                from: 0,
                to: i64::MAX,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(detail.iter().all(|r| r.device.as_deref() == Some("cpu")
            && r.queue_ms == Some(12)
            && r.energy_joules == Some(1.5)
            && r.energy_source.as_deref() == Some("rapl")));
        assert_eq!(
            store.window_usage(&user.id, "d:2026-11-28").await.unwrap(),
            (5 + 8 + 8, 3)
        );
    }
}
