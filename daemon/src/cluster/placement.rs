//! Which node should serve a request for a model: the one with the model loaded and the shortest queue, this
//! node on a tie; else one that has the model imported. Pure: it works on what the registry and this node's
//! scheduler say, so the rule is tested without processes.

use crate::store::NodeRecord;
use std::collections::HashMap;
use std::time::Duration;

/// Where to try to serve a request, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// This node (the handler answers, with a 404 if the model is not here either).
    Here,
    Peer(Peer),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub name: String,
    pub url: String,
}

/// This node's side of the comparison.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local {
    pub installed: bool,
    pub loaded: bool,
    /// Requests running or waiting for the model here.
    pub queue: u64,
}

/// A model name as nodes record it (`name:latest` is the same model as `name`).
fn same_model(recorded: &str, asked: &str) -> bool {
    recorded == asked || asked.strip_suffix(":latest") == Some(recorded)
}

/// The places that can serve `model`, best first. `inflight` counts the requests this node has forwarded to each
/// peer and not yet finished: a peer's reported queue is up to a heartbeat old, and without them a burst would all
/// go to the peer that looked idle.
pub fn place(
    model: &str,
    local: Local,
    nodes: &[NodeRecord],
    me: &str,
    now: i64,
    expire: Duration,
    inflight: &HashMap<String, u64>,
) -> Vec<Target> {
    // (not loaded, queue, not this node): the order of preference.
    let mut ranked: Vec<((bool, u64, bool), Target)> = Vec::new();
    if local.installed {
        ranked.push(((!local.loaded, local.queue, false), Target::Here));
    }
    for n in nodes {
        let alive = (now - n.last_seen).max(0) as u64 <= expire.as_secs();
        let Some(url) = n.url.as_deref().filter(|_| alive && n.name != me) else {
            continue;
        };
        let installed = n.info["installed"].as_array().is_some_and(|a| {
            a.iter()
                .any(|m| m.as_str().is_some_and(|m| same_model(m, model)))
        });
        if !installed {
            continue;
        }
        let loaded = n.info["models"].as_array().and_then(|a| {
            a.iter()
                .find(|m| m["name"].as_str().is_some_and(|m| same_model(m, model)))
        });
        let queue = loaded.map_or(0, |m| {
            m["running"].as_u64().unwrap_or(0) + m["waiting"].as_u64().unwrap_or(0)
        }) + inflight.get(&n.name).copied().unwrap_or(0);
        ranked.push((
            (loaded.is_none(), queue, true),
            Target::Peer(Peer {
                name: n.name.clone(),
                url: url.trim_end_matches('/').to_owned(),
            }),
        ));
    }
    ranked.sort_by_key(|(k, _)| *k);
    let mut out: Vec<Target> = ranked.into_iter().map(|(_, t)| t).collect();
    if out.is_empty() {
        out.push(Target::Here);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, last_seen: i64, installed: &[&str], loaded: &[(&str, u64)]) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            url: Some(format!("http://{name}:8080/")),
            version: "1".into(),
            host: name.into(),
            started_at: 0,
            last_seen,
            info: json!({
                "installed": installed,
                "models": loaded.iter().map(|(m, q)| json!({"name": m, "running": q, "waiting": 0})).collect::<Vec<_>>(),
            }),
        }
    }

    fn names(t: &[Target]) -> Vec<&str> {
        t.iter()
            .map(|t| match t {
                Target::Here => "here",
                Target::Peer(p) => p.name.as_str(),
            })
            .collect()
    }

    #[test]
    fn loaded_and_idle_first_this_node_on_a_tie() {
        let none = HashMap::new();
        let exp = Duration::from_secs(30);
        let nodes = vec![
            node("me", 100, &["m"], &[]),
            node("b", 100, &["m", "x"], &[("m", 2)]),
            node("c", 100, &["m"], &[("m", 0)]),
            node("d", 100, &["m"], &[]),
            node("dead", 10, &["m"], &[("m", 0)]),
        ];
        let here = |installed, loaded, queue| Local {
            installed,
            loaded,
            queue,
        };
        // The order this node ("me", at t = 100) would try for a model.
        let rank = |model: &str, local: Local, sent: &HashMap<String, u64>| {
            names(&place(model, local, &nodes, "me", 100, exp, sent))
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<String>>()
        };
        // Not loaded here: the loaded peers by queue, then the nodes that would have to load it (this one first).
        assert_eq!(
            rank("m", here(true, false, 0), &none),
            ["c", "b", "here", "d"]
        );
        // Loaded here and idle: here (ties go to this node).
        assert_eq!(rank("m", here(true, true, 0), &none)[0], "here");
        // Busy here: the idle loaded peer first.
        assert_eq!(
            rank("m", here(true, true, 3), &none)[..3],
            ["c", "b", "here"]
        );
        // What this node already sent to c counts against it.
        let sent = HashMap::from([("c".to_owned(), 5)]);
        assert_eq!(
            rank("m", here(true, true, 3), &sent)[..3],
            ["b", "here", "c"]
        );
        // Only elsewhere, with its Ollama tag; a model nobody has stays here (for the 404).
        assert_eq!(rank("x:latest", here(false, false, 0), &none), ["b"]);
        assert_eq!(rank("y", here(false, false, 0), &none), ["here"]);
        // Expired nodes and nodes without a URL are never chosen.
        let mut quiet = node("q", 100, &["z"], &[("z", 0)]);
        quiet.url = None;
        assert_eq!(
            names(&place(
                "z",
                here(false, false, 0),
                &[quiet],
                "me",
                100,
                exp,
                &none
            )),
            ["here"]
        );
        assert!(!rank("m", here(true, false, 0), &none).contains(&"dead".to_owned()));
    }
}
