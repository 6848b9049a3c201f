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
    pub started_at: i64,
    pub last_seen: i64,
    /// What it reported with its last heartbeat (JSON).
    pub info: serde_json::Value,
}

impl Store {
    /// Registers a node or records its heartbeat.
    pub async fn heartbeat(&self, n: &NodeRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes (name, url, version, started_at, last_seen, info) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET url = $2, version = $3, started_at = $4, last_seen = $5, info = $6",
        )
        .bind(&n.name)
        .bind(&n.url)
        .bind(&n.version)
        .bind(n.started_at)
        .bind(n.last_seen)
        .bind(n.info.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every node that ever registered, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows = sqlx::query(
            "SELECT name, url, version, started_at, last_seen, info FROM nodes ORDER BY name",
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
                    started_at: r.try_get("started_at")?,
                    last_seen: r.try_get("last_seen")?,
                    info: serde_json::from_str(&info).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }
}
