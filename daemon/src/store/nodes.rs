//! The node registry: one row per serving node, written by its heartbeat. Rows only; what a node reports and when
//! it counts as expired live in `cluster`.

use super::{Result, Store};
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRecord {
    pub name: String,
    /// Where other nodes and admins reach it (`[cluster] url`), when configured.
    pub url: Option<String>,
    pub version: String,
    /// The machine and state directory running it: a name held by another host is not taken over while alive.
    pub host: String,
    pub started_at: i64,
    pub last_seen: i64,
    /// What it reported with its last heartbeat (JSON).
    pub info: serde_json::Value,
}

impl Store {
    /// Registers a node or records its heartbeat. False, and nothing written, when another host holds the name
    /// and was seen after `held_until` (it is alive: two machines configured with one `cluster.name`).
    pub async fn heartbeat(&self, n: &NodeRecord, held_until: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO nodes (name, url, version, host, started_at, last_seen, info) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name) DO UPDATE SET url = $2, version = $3, host = $4, started_at = $5, last_seen = $6, \
             info = $7 WHERE nodes.host = $4 OR nodes.host = '' OR nodes.last_seen < $8",
        )
        .bind(&n.name)
        .bind(&n.url)
        .bind(&n.version)
        .bind(&n.host)
        .bind(n.started_at)
        .bind(n.last_seen)
        .bind(n.info.to_string())
        .bind(held_until)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// Names of nodes last seen before `before` that still have requests `running` in the ledger.
    pub async fn dead_nodes_with_running(&self, before: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT r.node AS node FROM requests r JOIN nodes n ON n.name = r.node \
             WHERE r.status = 'running' AND n.last_seen < $1",
        )
        .bind(before)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("node")?)).collect()
    }

    /// Every node that ever registered, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query(
            "SELECT name, url, version, host, started_at, last_seen, info FROM nodes ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let info: String = r.try_get("info")?;
                Ok(NodeRecord {
                    name: r.try_get("name")?,
                    url: r.try_get("url")?,
                    version: r.try_get("version")?,
                    host: r.try_get("host")?,
                    started_at: r.try_get("started_at")?,
                    last_seen: r.try_get("last_seen")?,
                    info: serde_json::from_str(&info).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }
}
