//! Batch jobs against the real daemon and the demo model: OpenAI's Files + Batch API, a restart in the middle of
//! a batch, interactive requests before batch lines, the batch window, schedules, and every bad input.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

use harness::batches::*;
use harness::*;
use serde_json::{json, Value};
use std::io::Read;
use std::time::{Duration, Instant};

/// Ten good lines and two malformed ones; the daemon restarts after a few lines finished. The batch completes
/// after the restart with every good line exactly once in the output file (no finished line ran twice: ten `ok`
/// ledger rows) and the malformed lines in the error file.
#[test]
fn a_batch_survives_a_restart_and_bad_lines_fail_alone() {
    let mut d = Daemon::start();
    let key = d.member_key("ann", None);
    let mut lines: Vec<String> = (0..10)
        .map(|i| {
            line(
                &format!("req-{i}"),
                "/v1/chat/completions",
                &format!("Write a sentence about the number {i}."),
                24,
            )
        })
        .collect();
    lines.insert(3, "this is not json".into());
    lines.insert(7, line("wrong-url", "/v1/embeddings", "hi", 4));
    let f = upload(&d, &key, "batch", lines.join("\n").as_bytes());
    assert_eq!(f.status, 200, "{}", f.text());
    let file_id = f.json()["id"].as_str().unwrap().to_owned();
    let r = create(&d, &key, &file_id);
    assert_eq!(r.status, 200, "{}", r.text());
    let b = r.json();
    let id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(b["request_counts"]["total"], 12);
    let before = wait_batch(&d, &key, &id, |b| {
        b["request_counts"]["completed"].as_i64().unwrap() >= 2
    });
    assert!(
        !ended(&before),
        "the batch finished before the restart: {before}"
    );

    d.restart();
    let b = wait_batch(&d, &key, &id, ended);
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(
        b["request_counts"],
        json!({"total": 12, "completed": 10, "failed": 2})
    );
    let out = jsonl(&d, &key, &b["output_file_id"]);
    let mut ids: Vec<&str> = out
        .iter()
        .map(|o| o["custom_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..10).map(|i| format!("req-{i}")).collect::<Vec<_>>());
    for o in &out {
        assert_eq!(o["response"]["status_code"], 200);
        assert_eq!(o["response"]["body"]["object"], "chat.completion");
        assert!(
            o["response"]["body"]["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .len()
                > 1
        );
        assert!(o["error"].is_null());
    }
    let errors = jsonl(&d, &key, &b["error_file_id"]);
    let codes: Vec<&str> = errors
        .iter()
        .map(|e| e["error"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["invalid_json_line", "invalid_url"]);
    assert_eq!(errors[0]["custom_id"], "line-4");
    // Each good line was completed once; lines cut short by the restart are `cancelled` rows, charged for what ran.
    let rows: Vec<_> = d
        .ledger()
        .into_iter()
        .filter(|r| r["endpoint"] == "batch")
        .collect();
    eprintln!(
        "completed before the restart: {}; ledger rows: {} ok, {} cancelled by the restart",
        before["request_counts"]["completed"],
        rows.iter().filter(|r| r["status"] == "ok").count(),
        rows.iter().filter(|r| r["status"] == "cancelled").count()
    );
    assert_eq!(
        rows.iter().filter(|r| r["status"] == "ok").count(),
        10,
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .all(|r| r["status"] == "ok" || r["status"] == "cancelled"),
        "{rows:?}"
    );
}

/// While a batch fills the model's slots but one, interactive requests start at once: their queue time is
/// shorter than any batch line's run time.
#[test]
fn interactive_requests_go_before_batch_lines() {
    let d = Daemon::start();
    let key = d.member_key("bea", None);
    let lines: Vec<String> = (0..16)
        .map(|i| {
            line(
                &format!("b{i}"),
                "/v1/chat/completions",
                &format!("Tell a long story about {i} cats."),
                48,
            )
        })
        .collect();
    let f = upload(&d, &key, "batch", lines.join("\n").as_bytes()).json();
    let b = create(&d, &key, f["id"].as_str().unwrap()).json();
    let id = b["id"].as_str().unwrap().to_owned();
    wait_batch(&d, &key, &id, |b| {
        b["request_counts"]["completed"].as_i64().unwrap() >= 1
    });
    // Batch lines fill three of the four slots and never the fourth.
    let running = || {
        d.get("/admin/models", Some(&d.admin_key)).json()[0]["running"]
            .as_u64()
            .unwrap()
    };
    let t = Instant::now();
    while running() != 3 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "batch lines never filled three slots"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..10 {
        assert!(running() <= 3, "a batch line took the last free slot");
        std::thread::sleep(Duration::from_millis(30));
    }
    let asks: Vec<_> = (0..2)
        .map(|i| {
            let (addr, key) = (d.addr.clone(), key.clone());
            std::thread::spawn(move || {
                let body = chat(&format!("Say hi {i}."), json!({"max_tokens": 6}));
                request(
                    &addr,
                    "POST",
                    "/v1/chat/completions",
                    Some(&key),
                    body.to_string().as_bytes(),
                )
            })
        })
        .collect();
    for a in asks {
        assert_eq!(a.join().unwrap().status, 200);
    }
    let b = wait_batch(&d, &key, &id, ended);
    assert_eq!(b["request_counts"]["completed"], 16);
    let rows = d.ledger();
    let shortest_line = rows
        .iter()
        .filter(|r| r["endpoint"] == "batch")
        .map(|r| r["duration_ms"].parse::<u64>().unwrap())
        .min()
        .unwrap();
    for r in rows.iter().filter(|r| r["endpoint"] == "chat") {
        let queued: u64 = r["queue_ms"].parse().unwrap();
        assert!(
            queued < shortest_line,
            "an interactive request waited {queued} ms; batch lines take at least {shortest_line} ms"
        );
    }
}

/// Bad uploads and batch requests get clear errors; a batch over the owner's allowance is refused with the
/// numbers; the batch window holds lines back; schedules run from cron and on demand; the CLI does the same.
#[test]
fn bad_input_quota_window_and_schedules() {
    let d = Daemon::start_with(&format!("timezone = \"UTC\"\n{BASE_CONFIG}"), &[]);
    let key = d.member_key("cal", None);
    let other = d.member_key("dan", None);
    let good = line("a", "/v1/chat/completions", "Hi", 4);

    // Uploads.
    let r = upload(&d, &key, "batch", b"\xff\xfe not utf-8");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("UTF-8"), "{}", r.text());
    let r = upload(&d, &key, "fine-tune", good.as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.text().contains("purpose"), "{}", r.text());
    let f = upload(&d, &key, "batch", good.as_bytes()).json();
    let file = f["id"].as_str().unwrap();
    assert_eq!(
        d.get(&format!("/v1/files/{file}"), Some(&other)).status,
        404,
        "not theirs"
    );
    assert_eq!(
        d.get(&format!("/v1/files/{file}"), Some(&d.admin_key))
            .status,
        200,
        "admins see all"
    );
    let empty = upload(&d, &key, "batch", b"\n\n").json();

    // Batch requests.
    let bad = |body: Value, want: u16, text: &str| {
        let r = d.post("/v1/batches", Some(&key), &body);
        assert_eq!(r.status, want, "{body}: {}", r.text());
        assert!(r.text().contains(text), "{}", r.text());
    };
    bad(
        json!({"input_file_id": "file-nope", "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        404,
        "file-nope",
    );
    bad(
        json!({"input_file_id": file, "endpoint": "/v1/embeddings", "completion_window": "24h"}),
        400,
        "endpoint",
    );
    bad(
        json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "1h"}),
        400,
        "completion_window",
    );
    bad(
        json!({"input_file_id": empty["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        400,
        "no requests",
    );
    bad(
        json!({"input_file_id": file, "endpoint": "/v1/chat/completions"}),
        400,
        "completion_window",
    );
    let r = d.post("/v1/batches", Some(&other), &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}));
    assert_eq!(r.status, 404, "another user's file");
    assert_eq!(d.get("/v1/batches/batch_nope", Some(&key)).status, 404);

    // Over the allowance: refused at creation, with the numbers.
    ok_stdout(&d.cli(&["quota", "set", "cal", "--tokens-per-day", "100"]));
    let three: Vec<String> = (0..3)
        .map(|i| line(&format!("q{i}"), "/v1/chat/completions", "Hi", 50))
        .collect();
    let big = upload(&d, &key, "batch", three.join("\n").as_bytes()).json();
    let r = create(&d, &key, big["id"].as_str().unwrap());
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("needs at least 150 tokens") && r.text().contains("100"),
        "{}",
        r.text()
    );
    ok_stdout(&d.cli(&["quota", "set", "cal", "--clear"]));

    // The window: a window that excludes now holds lines back; clearing it lets them run.
    let r = d.put_json("/admin/schedules/window", &json!({"window": "25:00-26:00"}));
    assert_eq!(r.status, 400, "{}", r.text());
    let hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
        + 2)
        % 24;
    let closed = format!("{:02}:00-{:02}:00", hour, (hour + 1) % 24);
    let r = d.put_json("/admin/schedules/window", &json!({"window": closed}));
    assert_eq!(r.status, 200, "{}", r.text());
    let b = create(&d, &key, file).json();
    let id = b["id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_secs(2));
    let held = d.get(&format!("/v1/batches/{id}"), Some(&key)).json();
    assert_eq!(
        (
            held["status"].as_str(),
            held["request_counts"]["completed"].as_i64()
        ),
        (Some("in_progress"), Some(0)),
        "{held}"
    );
    let listed = d.get("/admin/schedules", Some(&d.admin_key)).json();
    assert_eq!(listed["window"], closed);
    assert_eq!(
        d.put_json("/admin/schedules/window", &json!({"window": null}))
            .status,
        200
    );
    let done = wait_batch(&d, &key, &id, ended);
    assert_eq!(done["status"], "completed");

    // Cancelling an ended batch is a conflict.
    assert_eq!(
        d.post(&format!("/v1/batches/{id}/cancel"), Some(&key), &json!({}))
            .status,
        409
    );

    // Schedules: bad cron, bad owner; one that fires every 2 s; run on demand; disable; remove.
    let sched = |body: Value| d.post("/admin/schedules", Some(&d.admin_key), &body);
    let r =
        sched(json!({"name": "s1", "cron": "every day", "input_file_id": file, "owner": "cal"}));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("cron"), "{}", r.text());
    assert_eq!(
        sched(json!({"name": "s1", "cron": "0 2 * * *", "input_file_id": file, "owner": "nobody"}))
            .status,
        404
    );
    let r = sched(
        json!({"name": "s1", "cron": "*/2 * * * * *", "input_file_id": file, "owner": "cal"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        sched(json!({"name": "s1", "cron": "0 2 * * *", "input_file_id": file, "owner": "cal"}))
            .status,
        409
    );
    let as_member =
        json!({"name": "s2", "cron": "0 2 * * *", "input_file_id": file, "owner": "cal"});
    assert_eq!(
        d.post("/admin/schedules", Some(&key), &as_member).status,
        403,
        "admins only"
    );
    let t = Instant::now();
    let fired = loop {
        let s = d.get("/admin/schedules", Some(&d.admin_key)).json();
        if !s["schedules"][0]["last_batch_id"].is_null() {
            break s["schedules"][0].clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "the schedule never fired: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let r = d.patch_json("/admin/schedules/s1", &json!({"enabled": false}));
    assert_eq!(r.status, 200, "{}", r.text());
    let scheduled = d
        .get(
            &format!("/v1/batches/{}", fired["last_batch_id"].as_str().unwrap()),
            Some(&key),
        )
        .json();
    assert_eq!(scheduled["metadata"], json!({"schedule": "s1"}));
    let r = d.post("/admin/schedules/s1/run", Some(&d.admin_key), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    wait_batch(&d, &key, r.json()["id"].as_str().unwrap(), ended);
    assert_eq!(
        d.delete("/admin/schedules/s1", Some(&d.admin_key)).status,
        204
    );
    assert_eq!(
        d.delete("/admin/schedules/s1", Some(&d.admin_key)).status,
        404
    );

    // The CLI: window, add from a local file, list, bad cron.
    ok_stdout(&d.cli(&["schedule", "window", "01:00-06:00"]));
    let input = d.state.path().join("nightly.jsonl");
    std::fs::write(&input, &good).unwrap();
    ok_stdout(&d.cli(&[
        "schedule",
        "add",
        "nightly",
        "--cron",
        "0 2 * * *",
        "--user",
        "cal",
        "--input",
        input.to_str().unwrap(),
    ]));
    let list: Value =
        serde_json::from_str(&ok_stdout(&d.cli(&["schedule", "list", "--json"]))).unwrap();
    assert_eq!(list["window"], "01:00-06:00");
    assert_eq!(list["schedules"][0]["name"], "nightly");
    assert_eq!(list["schedules"][0]["owner"], "cal");
    let o = d.cli(&[
        "schedule",
        "add",
        "bad",
        "--cron",
        "61 * * * *",
        "--user",
        "cal",
        "--file-id",
        file,
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid cron expression"));
    ok_stdout(&d.cli(&["schedule", "window", "--clear"]));
}

/// kill -9 three times while streams and a batch run. Every request that completed has its `ok` ledger row,
/// nothing stays `running` (the cut ones are `interrupted`), the user's counters equal the ledger again, and the
/// batch ends with each custom_id exactly once.
#[test]
fn three_kill_9s_during_streams_and_a_batch_lose_nothing() {
    let mut d = Daemon::start();
    let key = d.member_key("cy", None);
    let lines: Vec<String> = (0..12)
        .map(|i| {
            line(
                &format!("req-{i}"),
                "/v1/chat/completions",
                &format!("Write two sentences about the number {i}."),
                48,
            )
        })
        .collect();
    let f = upload(&d, &key, "batch", lines.join("\n").as_bytes());
    assert_eq!(f.status, 200, "{}", f.text());
    let r = create(&d, &key, f.json()["id"].as_str().unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let stream = chat(
        "Write a long story about a lighthouse.",
        json!({"max_tokens": 500, "stream": true}),
    )
    .to_string();
    for round in 0..3 {
        // One request that completes, then two streams that the kill cuts.
        let done = d.post(
            "/v1/chat/completions",
            Some(&key),
            &chat("Hi", json!({"max_tokens": 4})),
        );
        assert_eq!(done.status, 200, "round {round}: {}", done.text());
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            stream.len()
        );
        let mut cut: Vec<_> = (0..2)
            .map(|_| send_raw(&d.addr, &head, stream.as_bytes()))
            .collect();
        for c in &mut cut {
            // The first chunk: the stream is generating.
            let mut first = [0u8; 64];
            assert!(c.read(&mut first).unwrap() > 0, "round {round}: no stream");
        }
        d.kill_and_restart();
        drop(cut);
    }
    let b = wait_batch(&d, &key, &id, ended);
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(
        b["request_counts"],
        json!({"total": 12, "completed": 12, "failed": 0})
    );
    let mut ids: Vec<String> = jsonl(&d, &key, &b["output_file_id"])
        .iter()
        .map(|o| o["custom_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("req-{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    let rows = d.ledger();
    assert!(!rows.iter().any(|r| r["status"] == "running"), "{rows:?}");
    let ok = |endpoint: &str| {
        rows.iter()
            .filter(|r| r["endpoint"] == endpoint && r["status"] == "ok")
            .count()
    };
    assert_eq!(ok("chat"), 3, "{rows:?}");
    assert_eq!(ok("batch"), 12, "{rows:?}");
    let interrupted = rows.iter().filter(|r| r["status"] == "interrupted").count();
    assert!(interrupted >= 6, "the six cut streams at least: {rows:?}");
    let usage = d.get("/v1/me/usage", Some(&key)).json();
    let today = &usage["today"];
    assert_eq!(
        today["total_tokens"].as_i64().unwrap(),
        today["prompt_tokens"].as_i64().unwrap() + today["completion_tokens"].as_i64().unwrap(),
        "{usage}"
    );
    // The day's counters hold exactly what the ledger charged: the cut requests gave their reservations back.
    let charged: i64 = rows
        .iter()
        .filter(|r| r["user"] == "cy")
        .map(|r| r["charged_tokens"].parse::<i64>().unwrap_or(0))
        .sum();
    assert_eq!(
        today["total_tokens"].as_i64().unwrap(),
        charged,
        "the counters equal the ledger: {usage} {rows:?}"
    );
    eprintln!(
        "three kill -9s: {} ledger rows ({} interrupted), batch completed 12/12",
        rows.len(),
        interrupted
    );
}

/// Three nodes on one PostgreSQL database share a batch of 60 lines: lines are claimed in the database, so each
/// runs once (one `ok` ledger row per line), every node takes part, and one writes the output. Then the node
/// holding the most lines is killed mid-batch: its leases run out (3 s here) and the others finish them — each
/// custom_id still once.
#[test]
fn three_nodes_on_one_database_run_each_line_once() {
    let pg = PgDatabase::create();
    let config = format!(
        "database_url = \"{}\"\n[cluster]\nlease = \"3s\"\nheartbeat = \"1s\"\nexpire = \"3s\"\n{BASE_CONFIG}",
        pg.url
    );
    let mut nodes: Vec<Daemon> = (0..3).map(|_| Daemon::start_with(&config, &[])).collect();
    let key = nodes[0].member_key("cy", None);
    let names: Vec<String> = nodes
        .iter()
        .map(|d| {
            let v = d.get("/admin/nodes", Some(&d.admin_key)).json();
            let me = v
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["this"] == true)
                .unwrap()
                .clone();
            me["name"].as_str().unwrap().to_owned()
        })
        .collect();
    let batch = |via: &Daemon, n: usize, tag: &str| {
        let lines: Vec<String> = (0..n)
            .map(|i| {
                line(
                    &format!("{tag}-{i}"),
                    "/v1/chat/completions",
                    &format!("Say the number {i} in words."),
                    8,
                )
            })
            .collect();
        let f = upload(via, &key, "batch", lines.join("\n").as_bytes());
        assert_eq!(f.status, 200, "{}", f.text());
        let r = create(via, &key, f.json()["id"].as_str().unwrap());
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["id"].as_str().unwrap().to_owned()
    };
    let ids_once = |via: &Daemon, bt: &Value, tag: &str, n: usize| {
        let mut ids: Vec<String> = jsonl(via, &key, &bt["output_file_id"])
            .iter()
            .map(|o| o["custom_id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        let mut want: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
        want.sort();
        assert_eq!(ids, want);
    };
    let ok_rows = || {
        pg_counts(
            &pg.url,
            "SELECT node, COUNT(*) FROM requests WHERE endpoint = 'batch' AND status = 'ok' GROUP BY node",
        )
    };

    let t = Instant::now();
    let id = batch(&nodes[0], 60, "one");
    let bt = wait_batch(&nodes[0], &key, &id, ended);
    assert_eq!(bt["status"], "completed", "{bt}");
    assert_eq!(
        bt["request_counts"],
        json!({"total": 60, "completed": 60, "failed": 0})
    );
    ids_once(&nodes[0], &bt, "one", 60);
    let by_node = ok_rows();
    eprintln!(
        "60 lines on 3 nodes in {:.1} s: {by_node:?}",
        t.elapsed().as_secs_f64()
    );
    let total: i64 = by_node.iter().map(|r| r.1).sum();
    assert_eq!(total, 60, "each line ran once: {by_node:?}");
    assert_eq!(by_node.len(), 3, "every node took part: {by_node:?}");
    // The registry: every node alive, with the model it served; the CLI reads the same.
    std::thread::sleep(Duration::from_millis(1200));
    let a = &nodes[0];
    let registry = a.get("/admin/nodes", Some(&a.admin_key)).json();
    let list = registry.as_array().unwrap();
    assert_eq!(list.len(), 3, "{registry}");
    assert!(
        list.iter()
            .all(|n| n["state"] == "alive" && n["models"][0]["name"] == "smollm2"),
        "{registry}"
    );
    assert_eq!(
        list.iter().filter(|n| n["this"] == true).count(),
        1,
        "{registry}"
    );
    let cli: Value = serde_json::from_str(&ok_stdout(&a.cli(&["node", "list", "--json"]))).unwrap();
    assert_eq!(cli.as_array().unwrap().len(), 3, "{cli}");
    let outputs = pg_counts(
        &pg.url,
        "SELECT purpose, COUNT(*) FROM files GROUP BY purpose",
    );
    assert!(
        outputs.contains(&("batch_output".into(), 1)),
        "one output file: {outputs:?}"
    );

    // Kill the node holding the most lines mid-batch: the others take them over when the leases end.
    let id = batch(&nodes[0], 30, "two");
    let t = Instant::now();
    let holders = loop {
        let holders = pg_counts(
            &pg.url,
            "SELECT claimed_by, COUNT(*) FROM batch_lines WHERE status = 'pending' AND claimed_by IS NOT NULL \
             AND lease_until IS NOT NULL GROUP BY claimed_by",
        );
        if holders.len() >= 2 {
            break holders;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the nodes never held lines together: {holders:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let most = holders.iter().max_by_key(|h| h.1).unwrap().0.clone();
    let victim = names.iter().position(|n| *n == most).unwrap();
    nodes[victim].signal("KILL");
    assert!(nodes[victim].wait_exit(Duration::from_secs(10)).is_some());
    let survivor = &nodes[(victim + 1) % 3];
    let bt = wait_batch(survivor, &key, &id, ended);
    assert_eq!(bt["status"], "completed", "{bt}");
    assert_eq!(
        bt["request_counts"],
        json!({"total": 30, "completed": 30, "failed": 0})
    );
    ids_once(survivor, &bt, "two", 30);
    let total: i64 = ok_rows().iter().map(|r| r.1).sum();
    assert_eq!(
        total,
        60 + 30,
        "each line of both batches ran to completion once: {holders:?}"
    );
    // The killed node's heartbeat stopped: it shows expired (after 3 s), the answering node alive.
    let t = Instant::now();
    loop {
        let registry = survivor
            .get("/admin/nodes", Some(&survivor.admin_key))
            .json();
        let states: Vec<(String, String)> = registry
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap().to_owned(),
                    n["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if states.contains(&(most.clone(), "expired".into())) {
            assert_eq!(
                states.iter().filter(|s| s.1 == "alive").count(),
                2,
                "{registry}"
            );
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "{registry}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A schedule that fires every 2 s on three nodes of one database creates one batch per tick: each node's cron fires,
/// and only the node that takes the tick in the database creates the batch.
#[test]
fn a_schedule_fires_once_per_tick_across_nodes() {
    let pg = PgDatabase::create();
    let config = format!("database_url = \"{}\"\n{BASE_CONFIG}", pg.url);
    let a = Daemon::start_with(&config, &[]);
    a.member_key("cy", None);
    let input = a.state.path().join("tick.jsonl");
    std::fs::write(&input, line("t", "/v1/chat/completions", "Hi", 1)).unwrap();
    ok_stdout(&a.cli(&[
        "schedule",
        "add",
        "ticker",
        "--cron",
        "*/2 * * * * *",
        "--user",
        "cy",
        "--input",
        input.to_str().unwrap(),
    ]));
    // Nodes load schedules as they start (and every 30 s): restart the first, start two more; count only the
    // ticks all three saw.
    let mut a = a;
    a.restart();
    let b = Daemon::start_with(&config, &[]);
    let c = Daemon::start_with(&config, &[]);
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    std::thread::sleep(Duration::from_secs(9));
    let ticks = pg_counts(
        &pg.url,
        &format!(
            "SELECT CAST(created_at AS TEXT), COUNT(*) FROM batches \
             WHERE schedule = 'ticker' AND created_at >= {since} GROUP BY created_at"
        ),
    );
    assert!(
        ticks.len() >= 3,
        "ticks while the three nodes ran: {ticks:?}"
    );
    assert!(
        ticks.iter().all(|t| t.1 == 1),
        "one batch per tick: {ticks:?}"
    );
    // Without the tick claim each tick made a batch per node; which node takes a tick is a race.
    drop((b, c));
}
