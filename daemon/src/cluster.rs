//! This node in the cluster's registry (`store::nodes`): it registers as it starts and records a heartbeat every
//! `cluster.heartbeat` with the models it has loaded and their load, so `/admin/nodes` and `hearth node list` on
//! any node show every node; one whose heartbeat is older than `cluster.expire` shows as expired.

use crate::sched::Scheduler;
use crate::store::{NodeRecord, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// What this node reports: its loaded models with their running and waiting requests.
fn report(sched: &Scheduler) -> serde_json::Value {
    let models: Vec<_> = sched
        .loaded()
        .into_iter()
        .map(|m| json!({"name": m.name, "running": m.running, "waiting": m.waiting}))
        .collect();
    json!({ "models": models })
}

/// Registers this node and keeps its heartbeat until the process ends (a local task of the server's runtime).
pub fn start(
    store: Store,
    sched: Arc<Scheduler>,
    name: String,
    url: Option<String>,
    every: Duration,
) {
    let started_at = crate::store::now();
    tokio::task::spawn_local(async move {
        loop {
            let beat = NodeRecord {
                name: name.clone(),
                url: url.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at,
                last_seen: crate::store::now(),
                info: report(&sched),
            };
            if let Err(e) = store.heartbeat(&beat).await {
                tracing::warn!(error = %e, "recording this node's heartbeat failed");
            }
            tokio::time::sleep(every).await;
        }
    });
}

/// The registry as admins see it: each node with its state (`alive`, or `expired` past `expire`), how long ago it
/// was seen, and whether it is the node answering.
pub fn view(nodes: Vec<NodeRecord>, now: i64, expire: Duration, me: &str) -> serde_json::Value {
    let list: Vec<_> = nodes
        .into_iter()
        .map(|n| {
            let age = (now - n.last_seen).max(0);
            let state = if age as u64 > expire.as_secs() {
                "expired"
            } else {
                "alive"
            };
            json!({
                "name": n.name, "url": n.url, "version": n.version, "state": state,
                "started_at": n.started_at, "last_seen": n.last_seen, "seconds_since_seen": age,
                "this": n.name == me, "models": n.info["models"],
            })
        })
        .collect();
    json!(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_past_expire_are_expired() {
        let n = |name: &str, last_seen| NodeRecord {
            name: name.into(),
            url: None,
            version: "1".into(),
            started_at: 0,
            last_seen,
            info: json!({"models": []}),
        };
        let v = view(
            vec![n("a", 100), n("b", 60)],
            105,
            Duration::from_secs(30),
            "a",
        );
        assert_eq!(v[0]["state"], "alive");
        assert_eq!(v[0]["this"], true);
        assert_eq!(v[1]["state"], "expired");
        assert_eq!(v[1]["seconds_since_seen"], 45);
    }
}
