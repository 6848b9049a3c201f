//! Several nodes on one PostgreSQL database, routing between them (`cluster.secret`): a request that reaches a
//! node without its model is served by the node that has it — streams pass through, the request is charged once
//! and the ledger names the serving node; a node with another secret is refused; a node that dies mid-stream
//! ends that stream with an error event and new requests are not sent to it.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};

const SECRET: &str = "household-cluster-secret";

fn config(pg: &PgDatabase, secret: &str) -> String {
    format!(
        "database_url = \"{}\"\n[cluster]\nheartbeat = \"1s\"\nexpire = \"3s\"\nlease = \"3s\"\nsecret = \"{secret}\"\n{BASE_CONFIG}",
        pg.url
    )
}

/// Imports the demo model on this node only, under another name.
fn import_only_here(d: &Daemon, name: &str) {
    ok_stdout(&d.cli(&[
        "model",
        "import",
        demo_model().to_str().unwrap(),
        "--name",
        name,
    ]));
}

/// The registry as `d` sees it, once `ready` holds (heartbeats come every second).
fn nodes_when(d: &Daemon, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = d.get("/admin/nodes", Some(&d.admin_key)).json();
        let list = v.as_array().unwrap().clone();
        if ready(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "the registry never got there: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn own_name(d: &Daemon) -> String {
    let list = nodes_when(d, |l| l.iter().any(|n| n["this"] == true));
    let me = list.iter().find(|n| n["this"] == true).unwrap();
    me["name"].as_str().unwrap().to_owned()
}

fn has_model(n: &Value, model: &str) -> bool {
    n["installed"]
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m == model))
}

/// One counter's value in a daemon's `/metrics` (0 when the series does not exist).
fn metric(d: &Daemon, series: &str) -> f64 {
    let text = d.get("/metrics", Some(&d.admin_key)).text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The checks of `hearth doctor --json` on a node's state and config.
fn doctor_checks(d: &Daemon) -> Vec<Value> {
    let report: Value = serde_json::from_str(&ok_stdout(&d.cli(&["doctor", "--json"]))).unwrap();
    report["checks"].as_array().unwrap().clone()
}

fn content(r: &Resp) -> String {
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_request_for_a_model_on_another_node_is_served_there_once() {
    let pg = PgDatabase::create();
    let a = Daemon::start_with(&config(&pg, SECRET), &[]);
    let b = Daemon::start_with(&config(&pg, SECRET), &[]);
    import_only_here(&b, "only-b");
    let b_name = own_name(&b);
    nodes_when(&a, |l| {
        l.iter()
            .any(|n| n["name"] == b_name.as_str() && has_model(n, "only-b"))
    });
    let key = a.member_key("ann", None);
    // Each node reports its devices with their free memory.
    let registry = nodes_when(&a, |l| l.iter().all(|n| n["devices"].is_array()));
    for n in &registry {
        let cpu = &n["devices"][0];
        assert_eq!(cpu["id"], "cpu", "{n}");
        assert!(cpu["memory_free_bytes"].as_u64().unwrap() > 0, "{n}");
    }
    // `hearth doctor` on A: the clock agrees with PostgreSQL's, A is registered with its URL, and B answers at its
    // URL and accepts A's secret.
    let checks = doctor_checks(&a);
    for name in [
        "cluster clock",
        "cluster registration",
        &format!("cluster node {b_name}"),
    ] {
        let c = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name}: {checks:?}"));
        assert_eq!(c["ok"], true, "{c}");
    }
    let b_line = checks
        .iter()
        .find(|c| c["name"] == format!("cluster node {b_name}").as_str())
        .unwrap();
    assert!(
        b_line["detail"]
            .as_str()
            .unwrap()
            .contains("accepts this node's cluster.secret"),
        "{b_line}"
    );
    let only_b = |extra: Value| {
        let mut v = chat("Name three colours.", extra);
        v["model"] = json!("only-b");
        v
    };

    // A lists B's model as its own (OpenAI and Ollama), and /api/show reaches B.
    let listed = a.get("/v1/models", Some(&key)).json();
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "only-b"),
        "{listed}"
    );
    assert_eq!(
        a.get("/v1/models/only-b", Some(&key)).json()["id"],
        "only-b"
    );
    let tags = a.get("/api/tags", Some(&key)).json();
    let tag = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "only-b")
        .cloned();
    assert!(tag.is_some_and(|t| t["size"].as_u64() > Some(0)), "{tags}");
    let show = a.post("/api/show", Some(&key), &json!({"model": "only-b"}));
    assert_eq!(show.status, 200, "{}", show.text());
    assert_eq!(show.header("x-hearth-node"), Some(b_name.as_str()));

    // Served by B directly, then through A: the same greedy answer, and the answer says B served it.
    let direct = b.post(
        "/v1/chat/completions",
        Some(&key),
        &only_b(json!({"max_tokens": 12})),
    );
    assert_eq!(direct.status, 200, "{}", direct.text());
    let via = a.post(
        "/v1/chat/completions",
        Some(&key),
        &only_b(json!({"max_tokens": 12})),
    );
    assert_eq!(via.status, 200, "{}", via.text());
    assert_eq!(via.header("x-hearth-node"), Some(b_name.as_str()));
    assert_eq!(content(&via), content(&direct));

    // A stream passes through event by event, ending as B ended it.
    let s = a.post(
        "/v1/chat/completions",
        Some(&key),
        &only_b(
            json!({"max_tokens": 12, "stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(s.status, 200, "{}", s.text());
    assert!(s
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events = s.sse();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let streamed: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, content(&direct));

    // Ollama's API, streamed and whole.
    let lines = a
        .post(
            "/api/chat",
            Some(&key),
            &json!({"model": "only-b", "messages": [{"role": "user", "content": "Hi"}],
                    "options": {"num_predict": 6, "temperature": 0}}),
        )
        .ndjson();
    assert_eq!(lines.last().unwrap()["done"], true, "{lines:?}");
    let g = a.post(
        "/api/generate",
        Some(&key),
        &json!({"model": "only-b:latest", "prompt": "Hi", "stream": false, "options": {"num_predict": 4}}),
    );
    assert_eq!(g.status, 200, "{}", g.text());
    assert_eq!(g.header("x-hearth-node"), Some(b_name.as_str()));
    assert!(g.json()["eval_count"].as_u64().unwrap() >= 1);

    // B's errors come back as B gave them; a model no node has is A's own 404.
    let bad = a.post(
        "/v1/chat/completions",
        Some(&key),
        &only_b(json!({"n": 99})),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    let none = a.post(
        "/v1/chat/completions",
        Some(&key),
        &chat("Hi", json!({"model": "nowhere"})),
    );
    assert_eq!(none.status, 404, "{}", none.text());

    // Charged once, by the node that served: five rows, all B's.
    let rows = pg_counts(
        &pg.url,
        "SELECT node, COUNT(*) FROM requests WHERE model = 'only-b' GROUP BY node",
    );
    assert_eq!(rows, vec![(b_name.clone(), 5)], "{rows:?}");
    let forwarded = format!("hearth_forwarded_requests_total{{node=\"{b_name}\",outcome=\"ok\"}}");
    // The four served through A, B's 400 and the /api/show.
    assert_eq!(metric(&a, &forwarded), 6.0);

    // The usage roll-up ran once for the two nodes (each ran it at start): one took it, the other skipped.
    let runs = pg_counts(&pg.url, "SELECT node, COUNT(*) FROM job_runs GROUP BY node");
    assert_eq!(runs.len(), 1, "{runs:?}");
    let ran: Vec<bool> = [&a, &b]
        .iter()
        .map(|d| d.log().contains("job=\"usage-rollup\"") && d.log().contains("job ran"))
        .collect();
    assert_eq!(ran.iter().filter(|r| **r).count(), 1, "{ran:?}");

    // Quotas hold across nodes: one user's 2 × 32 concurrent requests, sent to both nodes at once, never pass the
    // day's allowance (room for 10 more requests' reservations, the prompt plus max_tokens each).
    let used = |status: &str| {
        pg_counts(
            &pg.url,
            &format!(
                "SELECT 'ann', CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT) FROM requests \
                 WHERE status {status}"
            ),
        )[0]
            .1
    };
    let burst_body = chat("Name three colours.", json!({"max_tokens": 2}));
    let one = a.post("/v1/chat/completions", Some(&key), &burst_body);
    assert_eq!(one.status, 200, "{}", one.text());
    let per_request = one.json()["usage"]["prompt_tokens"].as_i64().unwrap() + 2;
    let limit = used("= 'ok'") + 10 * per_request + per_request / 2;
    ok_stdout(&a.cli(&[
        "quota",
        "set",
        "ann",
        "--tokens-per-day",
        &limit.to_string(),
    ]));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let (node, body, key) = (if i % 2 == 0 { &a } else { &b }, &burst_body, &key);
                s.spawn(move || node.post("/v1/chat/completions", Some(key), body).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!((1..=10).contains(&served), "{served} served: {statuses:?}");
    eprintln!("2 nodes x 32 concurrent: {served} served within the day limit, the rest refused: {statuses:?}");
    assert!(
        statuses.iter().all(|s| [200, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(used("IN ('ok', 'running')") <= limit);

    // A request that claims to come from a node, without the secret, is refused and counted.
    let forged = request_with(
        &b.addr,
        "POST",
        "/v1/chat/completions",
        &[
            ("Authorization", &format!("Bearer {key}")),
            ("x-hearth-cluster", "v1 node=mallory ts=0 sig=00"),
        ],
        only_b(json!({"max_tokens": 2})).to_string().as_bytes(),
    );
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert!(
        forged.text().contains("refused by node"),
        "{}",
        forged.text()
    );
    assert_eq!(
        metric(&b, "hearth_cluster_refused_total{reason=\"bad_signature\"}"),
        1.0
    );
}

/// Reads a raw streamed response until `enough` holds for what has arrived.
fn read_until(s: &mut std::net::TcpStream, enough: impl Fn(&str) -> bool) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if n == 0 || enough(&text) {
            return text;
        }
    }
}

#[test]
fn another_secret_is_refused_and_a_dead_node_ends_its_streams_cleanly() {
    let pg = PgDatabase::create();
    let a = Daemon::start_with(&config(&pg, SECRET), &[]);
    let mut b = Daemon::start_with(&config(&pg, SECRET), &[]);
    let c = Daemon::start_with(&config(&pg, "a-different-secret-here"), &[]);
    import_only_here(&b, "only-b");
    let b_name = own_name(&b);
    for d in [&a, &c] {
        nodes_when(d, |l| {
            l.iter()
                .any(|n| n["name"] == b_name.as_str() && has_model(n, "only-b"))
        });
    }
    let key = a.member_key("bo", None);
    let on_c = doctor_checks(&c);
    let b_line = on_c
        .iter()
        .find(|c| c["name"] == format!("cluster node {b_name}").as_str())
        .unwrap();
    assert_eq!(b_line["ok"], false, "{b_line}");
    assert!(
        b_line["detail"]
            .as_str()
            .unwrap()
            .contains("refuses this node's cluster.secret"),
        "{b_line}"
    );
    let body = |stream: bool| {
        let mut v = chat(
            "Write a long story about a lighthouse.",
            json!({"max_tokens": 2000, "stream": stream, "logit_bias": {"0": -100, "2": -100}}),
        );
        v["model"] = json!("only-b");
        v
    };

    // C's secret differs: B refuses it, C serves nothing through B and says why.
    let r = c.post("/v1/chat/completions", Some(&key), &body(false));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("refused this node's cluster credential"),
        "{}",
        r.text()
    );
    assert!(b.log().contains("refused a forwarded request"));
    // Twice: C's doctor check above, and this request.
    assert_eq!(
        metric(&b, "hearth_cluster_refused_total{reason=\"bad_signature\"}"),
        2.0
    );
    assert!(pg_counts(&pg.url, "SELECT node, COUNT(*) FROM requests GROUP BY node").is_empty());

    // A stream through A; B dies mid-stream: the client gets an error event, not a hang or a silent cut.
    let text = body(true).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    );
    let mut s = send_raw(&a.addr, &head, text.as_bytes());
    read_until(&mut s, |t| t.matches("\"content\":").count() >= 4);
    b.signal("KILL");
    assert!(b.wait_exit(Duration::from_secs(10)).is_some());
    let rest = read_until(&mut s, |_| false);
    assert!(
        rest.contains("\"code\":\"upstream_error\"")
            && rest.contains("stopped answering mid-stream"),
        "{rest}"
    );
    assert!(!rest.contains("[DONE]"), "{rest}");
    eprintln!(
        "the stream's end after kill -9 of the serving node: {}",
        &rest[rest.len().saturating_sub(300)..]
    );

    // New requests are not sent to the dead node: a clean 503 naming it now, A's 404 once it has expired.
    let t = Instant::now();
    let r = a.post("/v1/chat/completions", Some(&key), &body(false));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("cannot reach node"), "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(5));
    nodes_when(&a, |l| {
        l.iter()
            .any(|n| n["name"] == b_name.as_str() && n["state"] == "expired")
    });
    let r = a.post("/v1/chat/completions", Some(&key), &body(false));
    assert_eq!(r.status, 404, "{}", r.text());
    // B never comes back: once it has been silent for expire + lease, a live node settles the stream it left
    // running, so its user is not held at a concurrency limit by a request nobody serves.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = pg_counts(
            &pg.url,
            "SELECT status, COUNT(*) FROM requests GROUP BY status",
        );
        if rows == vec![("interrupted".to_owned(), 1)] {
            break;
        }
        assert!(Instant::now() < deadline, "never settled: {rows:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        a.log()
            .contains("settled the requests a dead node left running")
            || c.log()
                .contains("settled the requests a dead node left running")
    );
    let count = |outcome: &str| {
        metric(
            &a,
            &format!("hearth_forwarded_requests_total{{node=\"{b_name}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!((count("ok"), count("unreachable")), (1.0, 1.0));
}

#[test]
fn a_name_held_by_a_live_node_or_a_newer_schema_is_refused_with_the_fix() {
    let pg = PgDatabase::create();
    let named = format!(
        "{}\nname = \"shared\"\n",
        config(&pg, SECRET).replace(BASE_CONFIG, "")
    );
    let _first = Daemon::start_with(&format!("{named}{BASE_CONFIG}"), &[]);
    let other = tempfile::tempdir().unwrap();
    let cfg = other.path().join("hearth.toml");
    std::fs::write(&cfg, format!("{named}{BASE_CONFIG}")).unwrap();
    let o = hearth(
        other.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "serve",
            "--bind",
            "127.0.0.1:0",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("node name 'shared' is held by"), "{err}");
    assert!(err.contains("give this node another cluster.name"), "{err}");

    // The database migrated by a newer hearth: this one refuses to use it and says to upgrade.
    pg_exec(
        &pg.url,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', true, '\\x00', 0)",
    );
    let o = hearth(
        other.path(),
        &["--config", cfg.to_str().unwrap(), "user", "list"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("schema version 9999"), "{err}");
    assert!(err.contains("upgrade this node"), "{err}");
}

#[test]
fn forwarding_over_tls_trusts_the_configured_ca() {
    let pg = PgDatabase::create();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key_file) = ca_and_node_cert(certs.path());
    let tls_node = format!(
        "{}[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        config(&pg, SECRET),
        cert.display(),
        key_file.display()
    );
    let trusting = config(&pg, SECRET).replace(
        &format!("secret = \"{SECRET}\"\n"),
        &format!("secret = \"{SECRET}\"\nca = \"{}\"\n", ca.display()),
    );
    let a = Daemon::start_with(&trusting, &[]);
    let b = Daemon::start_with(&tls_node, &[]);
    import_only_here(&b, "only-b");
    let list = nodes_when(&a, |l| {
        l.iter()
            .any(|n| n["this"] == false && has_model(n, "only-b"))
    });
    let b_node = list.iter().find(|n| n["this"] == false).unwrap();
    assert!(
        b_node["url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{b_node}"
    );
    let key = a.member_key("cy", None);
    let mut body = chat("Hi", json!({"max_tokens": 3, "stream": true}));
    body["model"] = json!("only-b");
    let r = a.post("/v1/chat/completions", Some(&key), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-hearth-node"), b_node["name"].as_str());
    assert_eq!(r.sse().last().map(String::as_str), Some("[DONE]"));
}
