//! What a crash or a burst must not break: a kill -9 leaves no request `running` that locks its user out, and a
//! burst of requests is bounded by the queue depth whatever the arrival pattern (503 + Retry-After, nothing
//! charged).

mod harness;

use harness::{chat, send_raw, Daemon, BASE_CONFIG};
use serde_json::json;
use std::io::Read;
use std::time::{Duration, Instant};

/// Four streams of a member whose limit is four concurrent requests, then kill -9: after the restart the four
/// rows are `interrupted` (charged nothing, reservation released), none is `running`, the member's usage shows
/// no reserved tokens, a new request is served, and the settlement is counted.
#[test]
fn a_killed_daemon_does_not_lock_the_user_out() {
    let mut d = Daemon::start();
    let ann = d.member_key("ann", None);
    harness::ok_stdout(&d.cli(&["quota", "set", "ann", "--max-concurrent-requests", "4"]));
    let body = chat(
        "Write a long story about a lighthouse.",
        json!({"max_tokens": 1000, "stream": true}),
    )
    .to_string();
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let head = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ann}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            send_raw(&d.addr, &head, body.as_bytes())
        })
        .collect();
    // All four generating: their rows are `running` with their reservations.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = d.get("/admin/models", Some(&d.admin_key)).json();
        if m[0]["running"] == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the four streams never ran: {m}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let running = d
        .ledger()
        .iter()
        .filter(|r| r["status"] == "running")
        .count();
    assert_eq!(running, 4);
    let refused = d.post(
        "/v1/chat/completions",
        Some(&ann),
        &chat("Hi", json!({"max_tokens": 2})),
    );
    assert_eq!(
        refused.status,
        429,
        "the limit holds while they run: {}",
        refused.text()
    );

    d.kill_and_restart();
    drop(streams);
    let rows = d.ledger();
    let ann_rows: Vec<_> = rows.iter().filter(|r| r["user"] == "ann").collect();
    assert!(!rows.iter().any(|r| r["status"] == "running"), "{rows:?}");
    let interrupted: Vec<_> = ann_rows
        .iter()
        .filter(|r| r["status"] == "interrupted")
        .collect();
    assert_eq!(interrupted.len(), 4, "{ann_rows:?}");
    for r in &interrupted {
        assert_eq!(r["prompt_tokens"], "0", "{r:?}");
        assert_eq!(r["completion_tokens"], "0", "{r:?}");
    }
    let usage = d.get("/v1/me/usage", Some(&ann)).json();
    assert_eq!(usage["today"]["total_tokens"], 0, "{usage}");
    let served = d.post(
        "/v1/chat/completions",
        Some(&ann),
        &chat("Hi", json!({"max_tokens": 2})),
    );
    assert_eq!(served.status, 200, "{}", served.text());
    let metrics = d.get("/metrics", Some(&d.admin_key)).text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "hearth_interrupted_requests_total 4"),
        "{metrics}"
    );
}

/// Thirty simultaneous requests against four slots and a queue depth of four: at most eight are accepted (four
/// running, four waiting), every other one is a 503 with Retry-After, and only the accepted ones have ledger rows.
#[test]
fn a_burst_is_bounded_by_the_queue_depth() {
    let d = Daemon::start_with(BASE_CONFIG, &[("HEARTH_ENGINE_QUEUE_DEPTH", "4")]);
    let key = d.member_key("bob", None);
    // Load the model and verify the key first, so the burst meets a ready worker.
    let warm = d.post(
        "/v1/completions",
        Some(&key),
        &json!({"model": "smollm2", "prompt": "Hi", "max_tokens": 1}),
    );
    assert_eq!(warm.status, 200, "{}", warm.text());
    let body = json!({"model": "smollm2", "prompt": "Count: 1, 2, 3,", "max_tokens": 200, "temperature": 0})
        .to_string();
    let head = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // Open all thirty connections first, then read: every request arrives before any can finish.
    let conns: Vec<_> = (0..30)
        .map(|_| send_raw(&d.addr, &head, body.as_bytes()))
        .collect();
    let answers: Vec<harness::Resp> = conns
        .into_iter()
        .map(|mut c| {
            let mut raw = Vec::new();
            c.read_to_end(&mut raw).expect("read");
            harness::parse_response(&raw)
        })
        .collect();
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let full: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        ok + full.len(),
        30,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    eprintln!(
        "burst of 30 against 4 slots + depth 4: {ok} accepted, {} refused with 503",
        full.len()
    );
    assert!((4..=8).contains(&ok), "accepted {ok}");
    for r in &full {
        assert!(r.header("retry-after").is_some(), "{:?}", r);
        assert_eq!(r.json()["error"]["code"], "queue_full", "{}", r.text());
    }
    // The warm-up and the accepted ones; a refused request was never admitted, so it has no row.
    let rows = d.ledger();
    assert_eq!(
        rows.iter().filter(|r| r["user"] == "bob").count(),
        ok + 1,
        "{rows:?}"
    );
}
