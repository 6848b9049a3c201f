//! Overload and soak: two members drive the daemon over loopback for `HEARTH_SOAK_SECS` (40 s in `make test`,
//! 600 s in `make soak`) with more clients than it has slots and queue — streaming and whole answers, both APIs,
//! clients that hang up mid-stream, malformed bodies — and one member runs into a daily token quota.
//! It must never answer 5xx other than 503 + Retry-After (queue full), the queue never exceeds its depth, the
//! ledger holds exactly one row per admitted request and none `running` at the end, the capped member is never
//! charged past the quota, and the resident memory stops growing after warm-up. Prints the figures
//! (docs/reliability.md).

mod harness;

use harness::{request, send_raw, Daemon};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const QUEUE_DEPTH: u64 = 4;
const CLIENTS: usize = 8;
/// Small enough that bob runs into it within the short run.
const BOB_TOKENS_PER_DAY: u64 = 500;

#[derive(Default)]
struct Tally {
    /// status code → count, per kind of request.
    by_status: BTreeMap<(String, u16), u64>,
    /// Streams the client hung up on after the first chunk.
    hung_up: u64,
    /// Malformed bodies sent (faults).
    malformed: u64,
    /// Answers with status 200 (whole or streamed to the end, or hung up on).
    admitted: u64,
    server_errors: Vec<String>,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// xorshift: the soak's mix is reproducible without a dependency.
fn next(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// One request of the mix; returns how long the client waits before its next one (it honours a refusal's
/// Retry-After, capped, as real clients do — a client that retried at once would only measure its own loop).
fn one_request(addr: &str, key: &str, roll: u64, t: &Mutex<Tally>) -> Duration {
    let prompts = [
        "Name three colours.",
        "Write a haiku about bread.",
        "What is 7 times 6?",
        "Tell me a long story about a lighthouse keeper.",
    ];
    let prompt = prompts[(roll % 4) as usize];
    let max_tokens = 8 + (roll >> 8) % 40;
    let (kind, path, body, stream, hang_up) = match roll % 10 {
        0..=2 => (
            "chat",
            "/v1/chat/completions",
            json!({"model": "smollm2", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}),
            false,
            false,
        ),
        3..=4 => (
            "chat-stream",
            "/v1/chat/completions",
            json!({"model": "smollm2", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": true}),
            true,
            false,
        ),
        5 => (
            "hang-up",
            "/v1/chat/completions",
            json!({"model": "smollm2", "messages": [{"role": "user", "content": prompts[3]}], "max_tokens": 300, "stream": true}),
            true,
            true,
        ),
        6 => (
            "ollama-generate",
            "/api/generate",
            json!({"model": "smollm2", "prompt": prompt, "stream": false, "options": {"num_predict": max_tokens}}),
            false,
            false,
        ),
        7 => (
            "ollama-chat-stream",
            "/api/chat",
            json!({"model": "smollm2", "messages": [{"role": "user", "content": prompt}], "options": {"num_predict": max_tokens}}),
            true,
            false,
        ),
        8 => (
            "completion",
            "/v1/completions",
            json!({"model": "smollm2", "prompt": prompt, "max_tokens": max_tokens}),
            false,
            false,
        ),
        _ => {
            // A fault: a truncated body. It must be a 400 and leave nothing behind.
            let r = request(
                addr,
                "POST",
                "/v1/chat/completions",
                Some(key),
                b"{\"model\": \"smol",
            );
            let mut t = t.lock().expect("tally");
            t.malformed += 1;
            *t.by_status
                .entry(("malformed".into(), r.status))
                .or_default() += 1;
            if r.status != 400 {
                t.server_errors.push(format!(
                    "malformed body answered {}: {}",
                    r.status,
                    r.text()
                ));
            }
            return Duration::ZERO;
        }
    };
    let body = body.to_string();
    if hang_up {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut s = send_raw(addr, &head, body.as_bytes());
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        drop(s); // the client goes away mid-stream
        let mut t = t.lock().expect("tally");
        *t.by_status.entry((kind.into(), status)).or_default() += 1;
        if status == 200 {
            t.hung_up += 1;
            t.admitted += 1;
        } else if !(status == 429 || status == 503) {
            t.server_errors.push(format!("{kind}: {status}: {head}"));
        }
        return backoff(status);
    }
    let r = request(addr, "POST", path, Some(key), body.as_bytes());
    let wait = backoff(r.status);
    let mut t = t.lock().expect("tally");
    *t.by_status.entry((kind.into(), r.status)).or_default() += 1;
    match r.status {
        200 => {
            t.admitted += 1;
            let text = r.text();
            let finished = if path == "/v1/chat/completions" && stream {
                text.contains("data: [DONE]")
            } else if stream {
                text.contains("\"done\":true")
            } else {
                text.contains("\"usage\"") || text.contains("\"done\":true")
            };
            if !finished {
                t.server_errors
                    .push(format!("{kind}: 200 without an ending: {text}"));
            }
        }
        429 => {}
        503 if r.header("retry-after").is_some() => {}
        s => t.server_errors.push(format!("{kind}: {s}: {}", r.text())),
    }
    wait
}

fn backoff(status: u16) -> Duration {
    match status {
        503 => Duration::from_secs(1),
        429 => Duration::from_secs(2),
        _ => Duration::ZERO,
    }
}

#[test]
fn overload_and_soak_hold_every_bound() {
    let secs: u64 = std::env::var("HEARTH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let d = Daemon::start_with(
        "[engine]\nthreads = 1\nmax_sequences = 2\ncontext = 1024\n[power]\ncpu_watts_estimate = 20\n",
        &[("HEARTH_ENGINE_QUEUE_DEPTH", &QUEUE_DEPTH.to_string())],
    );
    let ann = d.member_key("ann", None);
    let bob = d.member_key("bob", None);
    harness::ok_stdout(&d.cli(&[
        "quota",
        "set",
        "bob",
        "--tokens-per-day",
        &BOB_TOKENS_PER_DAY.to_string(),
    ]));
    let pid = d.child.id();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, key) = (
                d.addr.clone(),
                if i % 2 == 0 { ann.clone() } else { bob.clone() },
            );
            let (tally, stop) = (tally.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ (i as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(one_request(&addr, &key, next(&mut s), &tally));
                }
            })
        })
        .collect();

    // The monitor: the queue against its depth, and RSS once a second.
    let mut rss = Vec::new();
    let mut most_waiting = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let m = d.get("/admin/models", Some(&d.admin_key)).json();
        let waiting = m[0]["waiting"].as_u64().unwrap_or(0);
        most_waiting = most_waiting.max(waiting);
        rss.push(rss_kib(pid));
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    // Hung-up streams end at their next token; wait for the ledger to settle.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = d.ledger();
        if rows.iter().all(|r| r["status"] != "running") || Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let t = tally.lock().expect("tally");
    let count = |s: &str| rows.iter().filter(|r| r["status"] == s).count() as u64;
    let (ok, cancelled, running, errors) = (
        count("ok"),
        count("cancelled"),
        count("running"),
        count("error"),
    );
    // The quota counts charged tokens (a hung-up stream is charged what it generated).
    let bob_charged: u64 = rows
        .iter()
        .filter(|r| r["user"] == "bob" && r["status"] != "rejected")
        .map(|r| r["charged_tokens"].parse::<u64>().unwrap_or(0))
        .sum();
    let warm = rss.get(rss.len() / 4).copied().unwrap_or(0);
    let (first, last) = (
        rss.first().copied().unwrap_or(0),
        rss.last().copied().unwrap_or(0),
    );
    let sent: u64 = t.by_status.values().sum();
    println!(
        "soak: {secs} s, {CLIENTS} clients, queue depth {QUEUE_DEPTH}: {sent} requests, {} admitted, {} hung up, \
         {} malformed (faults), {} server errors; ledger ok {ok} cancelled {cancelled} error {errors} running \
         {running} rejected {}; most waiting {most_waiting}; bob charged {bob_charged} of {BOB_TOKENS_PER_DAY} \
         (overshoot {}); RSS start {first} KiB, after warm-up {warm} KiB, end {last} KiB",
        t.admitted,
        t.hung_up,
        t.malformed,
        t.server_errors.len(),
        count("rejected"),
        bob_charged.saturating_sub(BOB_TOKENS_PER_DAY),
    );
    for ((kind, status), n) in &t.by_status {
        println!("soak:   {kind} {status}: {n}");
    }
    assert!(
        t.server_errors.is_empty(),
        "unexpected answers: {:#?}",
        t.server_errors
    );
    assert_eq!(running, 0, "rows left running");
    assert_eq!(errors, 0, "requests that failed in the engine");
    assert_eq!(
        ok + cancelled,
        t.admitted,
        "one ledger row per admitted request"
    );
    assert!(cancelled <= t.hung_up, "only hung-up streams are cancelled");
    let refused_by_quota: u64 = t
        .by_status
        .iter()
        .filter(|((_, status), _)| *status == 429)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        count("rejected"),
        refused_by_quota,
        "one `rejected` row per 429"
    );
    assert!(
        most_waiting <= QUEUE_DEPTH,
        "the queue held {most_waiting} > depth {QUEUE_DEPTH}"
    );
    assert!(
        bob_charged <= BOB_TOKENS_PER_DAY,
        "bob was charged {bob_charged} > his quota {BOB_TOKENS_PER_DAY}"
    );
    assert!(
        t.admitted > 0 && sent > t.admitted,
        "the soak both served and refused"
    );
    // Memory: after warm-up the resident set may wobble (allocator arenas, SQLite cache) but not climb.
    assert!(
        last <= warm + warm / 4 + 32 * 1024,
        "RSS grew from {warm} KiB after warm-up to {last} KiB"
    );
}
