//! This node in the cluster. The registry (`store::nodes`): it registers as it starts and records a heartbeat
//! every `cluster.heartbeat` with the models it has imported and loaded and their load, so `/admin/nodes` and
//! `hearth node list` on any node show every node; one whose heartbeat is older than `cluster.expire` shows as
//! expired. Routing (with `cluster.secret`): which node serves a request (`placement`), the credential nodes
//! present to each other (`credential`) and the forwarding itself (`forward`).

pub mod credential;
pub mod forward;
pub mod placement;

use crate::sched::Scheduler;
use crate::store::{NodeRecord, Store, StoreError};
use placement::{Local, Target};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// This node's devices as the registry shows them: the CPU's memory, and each GPU with its free memory.
fn devices(inv: &hearth_engine::devices::Inventory) -> serde_json::Value {
    let mut list = vec![json!({
        "id": "cpu", "name": inv.cpu.brand, "kernels": inv.cpu.kernels,
        "memory_total_bytes": inv.cpu.memory_total_bytes, "memory_free_bytes": inv.cpu.memory_available_bytes,
    })];
    list.extend(inv.gpus.iter().map(|g| {
        json!({"id": g.id, "name": g.name, "memory_total_bytes": g.memory_total_bytes,
               "memory_free_bytes": g.memory_free_bytes})
    }));
    if let Some(m) = &inv.metal {
        list.push(json!({"id": "metal", "name": m.name, "memory_total_bytes": m.working_set_bytes,
                         "memory_free_bytes": m.working_set_bytes.saturating_sub(m.allocated_bytes)}));
    }
    json!(list)
}

/// What this node reports: the models imported here, and the loaded ones with their running and waiting requests.
fn report(sched: &Scheduler) -> serde_json::Value {
    let models: Vec<_> = sched
        .loaded()
        .into_iter()
        .map(|m| json!({"name": m.name, "running": m.running, "waiting": m.waiting}))
        .collect();
    let manifests = sched.models().list().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "listing this node's models for the registry failed");
        Vec::new()
    });
    let installed: Vec<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
    // The manifests let other nodes list these models as their own (/v1/models, /api/tags).
    json!({ "models": models, "installed": installed, "manifests": manifests })
}

/// Routing between nodes: present when `cluster.secret` is set (on a PostgreSQL database).
pub struct Router {
    pub me: String,
    pub expire: Duration,
    pub credential: credential::Credential,
    pub client: forward::Client,
    store: Store,
    sched: Arc<Scheduler>,
    /// Requests this node has forwarded to each peer and not yet seen end.
    inflight: Mutex<HashMap<String, u64>>,
}

/// A forwarded request in flight to a peer: counted against that peer until dropped.
pub struct InFlight {
    router: Arc<Router>,
    peer: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut m) = self.router.inflight.lock() {
            if let Some(n) = m.get_mut(&self.peer) {
                *n = n.saturating_sub(1);
            }
        }
    }
}

impl Router {
    pub fn new(
        me: String,
        expire: Duration,
        credential: credential::Credential,
        client: forward::Client,
        store: Store,
        sched: Arc<Scheduler>,
    ) -> Arc<Router> {
        Arc::new(Router {
            me,
            expire,
            credential,
            client,
            store,
            sched,
            inflight: Mutex::default(),
        })
    }

    /// Where a request for `model` should go, best first: this node's own state now, the peers' as of their last
    /// heartbeat.
    pub async fn targets(&self, model: &str) -> Result<Vec<Target>, StoreError> {
        let installed = self.sched.resolve(model).ok();
        let local = match &installed {
            None => Local::default(),
            Some(name) => {
                let loaded = self.sched.loaded().into_iter().find(|m| &m.name == name);
                Local {
                    installed: true,
                    loaded: loaded.is_some(),
                    queue: loaded.map_or(0, |m| (m.running + m.waiting) as u64),
                }
            }
        };
        // Loaded here and idle ranks first whatever the peers report: no registry read on the common path.
        if local.loaded && local.queue == 0 {
            return Ok(vec![Target::Here]);
        }
        let nodes = self.store.nodes().await?;
        let inflight = self.inflight.lock().map(|m| m.clone()).unwrap_or_default();
        Ok(placement::place(
            model,
            local,
            &nodes,
            &self.me,
            crate::store::now(),
            self.expire,
            &inflight,
        ))
    }

    /// The models of other live nodes (by their last heartbeat) whose names are not in `here`, so that every node
    /// lists every model the cluster serves; the first node to report a name wins.
    pub async fn peer_models(
        &self,
        here: &[crate::models::Manifest],
    ) -> Result<Vec<crate::models::Manifest>, StoreError> {
        let now = crate::store::now();
        let mut out: Vec<crate::models::Manifest> = Vec::new();
        for n in self.store.nodes().await? {
            let alive = (now - n.last_seen).max(0) as u64 <= self.expire.as_secs();
            if !alive || n.name == self.me || n.url.is_none() {
                continue;
            }
            let Ok(list) =
                serde_json::from_value::<Vec<crate::models::Manifest>>(n.info["manifests"].clone())
            else {
                continue;
            };
            for m in list {
                let known = |o: &crate::models::Manifest| o.name == m.name;
                if !here.iter().any(known) && !out.iter().any(known) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// Counts a request forwarded to `peer` until the returned guard is dropped.
    pub fn sending(self: &Arc<Self>, peer: &str) -> InFlight {
        if let Ok(mut m) = self.inflight.lock() {
            *m.entry(peer.to_owned()).or_default() += 1;
        }
        InFlight {
            router: self.clone(),
            peer: peer.to_owned(),
        }
    }
}

/// Why this node cannot join the cluster.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "node name '{name}' is held by {holder}, seen {ago} s ago: give this node another cluster.name \
         (or, if that machine is gone for good, start this one again after cluster.expire)"
    )]
    NameTaken {
        name: String,
        holder: String,
        ago: i64,
    },
    #[error("registering this node: {0}")]
    Store(#[from] StoreError),
}

/// This node's registration: what `join` needs besides the store and scheduler.
pub struct Membership {
    pub name: String,
    /// The machine and state directory (`server::node_name`): tells a restart of this node from another machine
    /// configured with the same name.
    pub host: String,
    pub url: Option<String>,
    pub heartbeat: Duration,
    pub expire: Duration,
    pub lease: Duration,
}

/// Registers this node (refused while another live host holds its name), then keeps its heartbeat until the
/// process ends (a local task of the server's runtime). Each beat also checks this node's clock against the
/// database's and settles the `running` ledger rows of nodes that died and never came back.
pub async fn join(
    store: Store,
    sched: Arc<Scheduler>,
    metrics: Arc<crate::metrics::Metrics>,
    m: Membership,
) -> Result<(), JoinError> {
    let started_at = crate::store::now();
    let beat = {
        let (store, sched) = (store.clone(), sched.clone());
        let (name, host, url) = (m.name.clone(), m.host.clone(), m.url.clone());
        let expire = m.expire.as_secs() as i64;
        move || {
            let (store, sched) = (store.clone(), sched.clone());
            let record = NodeRecord {
                name: name.clone(),
                url: url.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                host: host.clone(),
                started_at,
                last_seen: crate::store::now(),
                info: report(&sched),
            };
            async move {
                let mut record = record;
                // NVML and /proc are read off the runtime's threads.
                if let Ok(inv) =
                    tokio::task::spawn_blocking(hearth_engine::devices::Inventory::detect).await
                {
                    record.info["devices"] = devices(&inv);
                }
                let held_until = record.last_seen - expire;
                store.heartbeat(&record, held_until).await
            }
        }
    };
    if !beat().await? {
        let holder = store.nodes().await?.into_iter().find(|n| n.name == m.name);
        let (holder, ago) = holder.map_or(("another host".to_owned(), 0), |h| {
            (h.host, crate::store::now() - h.last_seen)
        });
        return Err(JoinError::NameTaken {
            name: m.name,
            holder,
            ago,
        });
    }
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(m.heartbeat).await;
            match beat().await {
                Ok(true) => {}
                Ok(false) => tracing::error!(node = %m.name,
                    "another machine took this node's name while this node was not heard from: \
                     give one of them another cluster.name"),
                Err(e) => tracing::warn!(error = %e, "recording this node's heartbeat failed"),
            }
            check_clock(&store, m.lease).await;
            settle_dead(&store, &metrics, &m).await;
        }
    });
    Ok(())
}

/// Batch leases and cron ticks compare times written by different nodes: warn when this node's clock is off the
/// database server's by more than a third of `cluster.lease` (a lease's renewal interval).
async fn check_clock(store: &Store, lease: Duration) {
    let Ok(Some(db)) = store.database_clock().await else {
        return;
    };
    let skew = crate::store::now() - db;
    if skew.unsigned_abs() > (lease.as_secs() / 3).max(1) {
        tracing::warn!(skew_s = skew, lease_s = lease.as_secs(),
            "this node's clock is off the database server's: batch leases and cron ticks misbehave; keep the \
             clocks in step (NTP)");
    }
}

/// A node silent for longer than `expire` + `lease` is not coming back soon: what it left `running` is settled
/// (as its own restart would), so its users are not held at their concurrency limit by requests nobody serves.
async fn settle_dead(store: &Store, metrics: &crate::metrics::Metrics, m: &Membership) {
    let before = crate::store::now() - (m.expire + m.lease).as_secs() as i64;
    let dead = match store.dead_nodes_with_running(before).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "looking for dead nodes' requests failed");
            return;
        }
    };
    for node in dead.into_iter().filter(|n| *n != m.name) {
        match store.settle_dead_node(&node, crate::store::now()).await {
            Ok(0) => {}
            Ok(n) => {
                metrics
                    .serving
                    .interrupted
                    .with_label_values::<&str>(&[])
                    .inc_by(n);
                tracing::warn!(node = %node, requests = n, "settled the requests a dead node left running");
            }
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "settling a dead node's requests failed")
            }
        }
    }
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
                "this": n.name == me, "host": n.host, "models": n.info["models"], "installed": n.info["installed"], "devices": n.info["devices"],
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
            host: "h".into(),
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
