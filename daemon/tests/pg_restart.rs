//! PostgreSQL restarting under load (issue #31): two nodes share a batch and serve chat while the database server
//! restarts. They reconnect on their own; every line runs once (one `ok` ledger row and one output line per
//! custom_id); requests that needed the database in the gap are 503s (transient, `Retry-After`), never 500s; and
//! no ledger row is left `running`. The test restarts the test machine's PostgreSQL server (`pg_ctlcluster`), so
//! it is the only test of its binary: cargo runs test binaries one at a time.

#![allow(clippy::unwrap_used)]

mod harness;

use harness::batches::*;
use harness::*;
use std::time::{Duration, Instant};

/// The local PostgreSQL cluster on port 5432, as `pg_ctlcluster` names it: (version, name).
fn local_cluster() -> (String, String) {
    let out = std::process::Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .expect(
            "pg_lsclusters (postgresql-common): this test restarts the local PostgreSQL server",
        );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("5432"))
        .unwrap_or_else(|| panic!("no local PostgreSQL cluster on port 5432: {text}"));
    let mut f = line.split_whitespace();
    (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
}

#[test]
fn nodes_ride_out_a_postgresql_restart() {
    let (version, cluster) = local_cluster();
    let pg = PgDatabase::create();
    // Leases longer than the restart: a claim outlives the outage, so no line is taken over while it still runs.
    let config = format!(
        "database_url = \"{}\"\n[cluster]\nlease = \"30s\"\nheartbeat = \"1s\"\nexpire = \"10s\"\n{BASE_CONFIG}",
        pg.url
    );
    let a = Daemon::start_with(&config, &[]);
    let b = Daemon::start_with(&config, &[]);
    let key = a.member_key("dee", None);
    // Long enough lines that the batch is still running when the restart ends: at 8 tokens a line, a 2-vCPU Zen 5
    // finished all 40 inside the restart window.
    let lines: Vec<String> = (0..40)
        .map(|i| {
            line(
                &format!("l-{i}"),
                "/v1/chat/completions",
                &format!("Count to {i}."),
                32,
            )
        })
        .collect();
    let f = upload(&a, &key, "batch", lines.join("\n").as_bytes());
    assert_eq!(f.status, 200, "{}", f.text());
    let id = create(&a, &key, f.json()["id"].as_str().unwrap()).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_batch(&a, &key, &id, |bt| {
        bt["request_counts"]["completed"].as_u64() >= Some(5)
    });

    let started = || {
        pg_counts(
            &pg.url,
            "SELECT CAST(pg_postmaster_start_time() AS TEXT), CAST(0 AS BIGINT)",
        )[0]
        .0
        .clone()
    };
    let before = started();

    // Chat on both nodes through the restart.
    let statuses = std::thread::scope(|s| {
        let chatter = s.spawn(|| {
            let mut seen = Vec::new();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(8) {
                for d in [&a, &b] {
                    let r = d.post(
                        "/v1/chat/completions",
                        Some(&key),
                        &chat("Hi", serde_json::json!({"max_tokens": 2})),
                    );
                    assert!(
                        r.status == 200 || r.status == 503,
                        "{}: {}",
                        r.status,
                        r.text()
                    );
                    seen.push(r.status);
                }
            }
            seen
        });
        std::thread::sleep(Duration::from_millis(500));
        let o = std::process::Command::new("pg_ctlcluster")
            .args([
                version.as_str(),
                cluster.as_str(),
                "restart",
                "--",
                "-m",
                "fast",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // The restart came in the middle of the batch.
        let mid = a.get(&format!("/v1/batches/{id}"), Some(&key)).json();
        assert!(
            mid["request_counts"]["completed"].as_u64().unwrap() < 40,
            "{mid}"
        );
        chatter.join().unwrap()
    });
    assert_ne!(started(), before, "PostgreSQL restarted");
    eprintln!("chat through the restart: {statuses:?}");
    assert!(statuses.contains(&200));

    let bt = wait_batch(&a, &key, &id, ended);
    assert_eq!(bt["status"], "completed", "{bt}");
    assert_eq!(
        bt["request_counts"],
        serde_json::json!({"total": 40, "completed": 40, "failed": 0})
    );
    let mut ids: Vec<String> = jsonl(&a, &key, &bt["output_file_id"])
        .iter()
        .map(|o| o["custom_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..40).map(|i| format!("l-{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    // The ledger settles: one ok row per line, nothing left running.
    let t = Instant::now();
    loop {
        let rows = pg_counts(
            &pg.url,
            "SELECT endpoint || ':' || status, COUNT(*) FROM requests GROUP BY endpoint, status",
        );
        let batch_ok = rows.iter().find(|r| r.0 == "batch:ok").map_or(0, |r| r.1);
        let running = rows.iter().filter(|r| r.0.ends_with(":running")).count();
        if running == 0 {
            assert_eq!(batch_ok, 40, "each line ran once: {rows:?}");
            eprintln!("ledger after the restart: {rows:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "rows left running: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
