//! Quotas: atomic reservation under concurrency on SQLite and PostgreSQL (through the real `Quota` code path and
//! store), window roll-over at local midnight with a fixed clock, and the HTTP behaviour (429s, headers,
//! /v1/me/usage, caps, allowed models, CLI) against the real daemon.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

use harness::*;
use hearth::auth::{accounts, Principal, Role};
use hearth::config::QuotaDefaults;
use hearth::limits::Limits;
use hearth::quota::{Quota, QuotaError};
use hearth::store::{Completion, LimitsOf, Store};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::json;
use std::sync::{Arc, Mutex};

async fn member(store: &Store, name: &str) -> Principal {
    let u = accounts::add_user(store, name, "member", None)
        .await
        .unwrap();
    Principal {
        user_id: u.id,
        user_name: u.name,
        role: Role::Member,
        key_id: None,
        models: None,
        keyless: false,
    }
}

/// 64 concurrent admissions, each reserving 100 tokens, against 1 000 tokens per day: exactly 10 pass, and the
/// counters equal the ledger after reconciliation.
async fn no_overshoot(store: Store) {
    let quota = Quota::new(store.clone(), TimeZone::UTC, QuotaDefaults::default(), None);
    let who = member(&store, "alice").await;
    let limits = Limits {
        tokens_per_day: Some(1000),
        tokens_per_month: Some(5000),
        ..Default::default()
    };
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (quota, who, limits) = (quota.clone(), who.clone(), limits.clone());
            tokio::spawn(async move {
                let id = format!("r{i}");
                let r = quota
                    .admit(&who, &limits, &id, "smollm2", "chat", 40, 60)
                    .await;
                (id, r)
            })
        })
        .collect();
    let mut admitted = Vec::new();
    for t in tasks {
        let (id, r) = t.await.unwrap();
        match r {
            Ok(_) => admitted.push(id),
            Err(QuotaError::Exhausted { retry_after, .. }) => assert!(retry_after >= 1),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(admitted.len(), 10);
    let w = quota.windows();
    assert_eq!(
        store.window_usage(&who.user_id, &w.day_key).await.unwrap(),
        (1000, 10)
    );
    // Completion charges the real count (40 + 25) and releases the rest; twice is a no-op.
    for id in &admitted {
        let c = Completion {
            request_id: id,
            status: "ok",
            finish_reason: "stop",
            prompt_tokens: 40,
            completion_tokens: 25,
            now: hearth::store::now(),
            duration_ms: 1,
            device: None,
            queue_ms: None,
            energy_joules: None,
            energy_source: None,
        };
        assert!(store.reconcile(&c).await.unwrap());
        assert!(!store.reconcile(&c).await.unwrap());
    }
    assert_eq!(
        store.window_usage(&who.user_id, &w.day_key).await.unwrap(),
        (650, 10)
    );
    assert_eq!(
        store
            .window_usage(&who.user_id, &w.month_key)
            .await
            .unwrap(),
        (650, 10)
    );
    let rows = store.recent_requests(&who.user_id, 100).await.unwrap();
    assert_eq!(rows.len(), 64);
    assert_eq!(rows.iter().filter(|r| r.status == "rejected").count(), 54);
    let charged: i64 = rows.iter().map(|r| r.charged_tokens).sum();
    assert_eq!(charged, 650, "the ledger and the counters agree");
    // The freed 350 tokens admit three more requests of 100.
    let mut more = 0;
    for i in 0..5 {
        if quota
            .admit(&who, &limits, &format!("s{i}"), "smollm2", "chat", 40, 60)
            .await
            .is_ok()
        {
            more += 1;
        }
    }
    assert_eq!(more, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_admissions_never_overshoot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&hearth::store::sqlite_url(dir.path()))
        .await
        .unwrap();
    no_overshoot(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_admissions_never_overshoot() {
    let pg = PgDatabase::create();
    let store = Store::connect(&pg.url).await.unwrap();
    no_overshoot(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn day_window_rolls_over_at_local_midnight() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&hearth::store::sqlite_url(dir.path()))
        .await
        .unwrap();
    let now = Arc::new(Mutex::new(
        "2026-11-28T22:59:00Z".parse::<Timestamp>().unwrap(),
    ));
    let clock = {
        let now = now.clone();
        Arc::new(move || *now.lock().unwrap())
    };
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let quota = Quota::new(store.clone(), tz, QuotaDefaults::default(), Some(clock));
    let who = member(&store, "bob").await;
    let limits = Limits {
        tokens_per_day: Some(100),
        ..Default::default()
    };
    quota
        .admit(&who, &limits, "a", "m", "chat", 50, 50)
        .await
        .unwrap();
    // 23:59:30 Berlin: the day is used up; retry when it ends (30 s).
    *now.lock().unwrap() = "2026-11-28T22:59:30Z".parse().unwrap();
    match quota.admit(&who, &limits, "b", "m", "chat", 1, 1).await {
        Err(QuotaError::Exhausted { retry_after, .. }) => assert_eq!(retry_after, 30),
        other => panic!("{other:?}"),
    }
    // 00:00:30 Berlin (23:00:30 UTC, still 28 Nov in UTC): a new local day.
    *now.lock().unwrap() = "2026-11-28T23:00:30Z".parse().unwrap();
    quota
        .admit(&who, &limits, "c", "m", "chat", 50, 50)
        .await
        .unwrap();
    assert_eq!(
        store
            .window_usage(&who.user_id, "d:2026-11-29")
            .await
            .unwrap(),
        (100, 1)
    );
    assert_eq!(
        store.window_usage(&who.user_id, "m:2026-11").await.unwrap(),
        (200, 2)
    );
}

/// The rolling minute with a fixed clock: requests and tokens leave the window 60 s after they started, the
/// refusal says when, and reconciliation moves the minute's tokens from the reservation to the real count.
async fn minute_window_rolls(store: Store) {
    let now = Arc::new(Mutex::new(
        "2026-11-28T12:00:00Z".parse::<Timestamp>().unwrap(),
    ));
    let clock = {
        let now = now.clone();
        Arc::new(move || *now.lock().unwrap())
    };
    let at = |s: &str| *now.lock().unwrap() = s.parse().unwrap();
    let quota = Quota::new(
        store.clone(),
        TimeZone::UTC,
        QuotaDefaults::default(),
        Some(clock),
    );
    let who = member(&store, "carol").await;
    let limits = Limits {
        requests_per_minute: Some(2),
        tokens_per_minute: Some(300),
        ..Default::default()
    };
    quota
        .admit(&who, &limits, "m1", "m", "chat", 50, 50)
        .await
        .unwrap();
    at("2026-11-28T12:00:10Z");
    let h = quota
        .admit(&who, &limits, "m2", "m", "chat", 50, 50)
        .await
        .unwrap();
    let header = |name: &str| h.iter().find(|(k, _)| *k == name).unwrap().1.clone();
    assert_eq!(header("x-ratelimit-remaining-requests"), "0");
    assert_eq!(header("x-ratelimit-remaining-tokens"), "100");
    assert_eq!(header("x-ratelimit-reset-requests"), "50s");
    at("2026-11-28T12:00:20Z");
    match quota.admit(&who, &limits, "m3", "m", "chat", 1, 1).await {
        Err(QuotaError::RateLimited { retry_after, .. }) => {
            assert_eq!(
                retry_after, 40,
                "the first request leaves the window at 12:01:00"
            )
        }
        other => panic!("{other:?}"),
    }
    // 12:01:01: the first request has left the window, the second (at :10) still counts.
    at("2026-11-28T12:01:01Z");
    quota
        .admit(&who, &limits, "m4", "m", "chat", 100, 100)
        .await
        .unwrap();
    // Tokens: m2 (100) + m4 (200) fill 300; reconciling m4 to 120 frees 80.
    match quota.admit(&who, &limits, "m5", "m", "chat", 10, 10).await {
        Err(QuotaError::RateLimited { .. }) => {}
        other => panic!("{other:?}"),
    }
    let done = Completion {
        request_id: "m4",
        status: "ok",
        finish_reason: "stop",
        prompt_tokens: 100,
        completion_tokens: 20,
        now: 0,
        duration_ms: 1,
        device: None,
        queue_ms: None,
        energy_joules: None,
        energy_source: None,
    };
    assert!(store.reconcile(&done).await.unwrap());
    at("2026-11-28T12:01:11Z");
    // m2 left at 12:01:10; m4 now counts 120 of 300, and one request of 2.
    let h = quota
        .admit(&who, &limits, "m6", "m", "chat", 90, 90)
        .await
        .unwrap();
    let header = |name: &str| h.iter().find(|(k, _)| *k == name).unwrap().1.clone();
    assert_eq!(header("x-ratelimit-remaining-tokens"), "0");
    assert_eq!(header("x-ratelimit-remaining-requests"), "0");
    // The read-only path (headers of responses that admit nothing) sees the same window, through the stored
    // limits: at 12:01:30 m4 (120, reconciled) and m6 (180) count.
    store
        .set_limits(LimitsOf::User(&who.user_id), &limits)
        .await
        .unwrap();
    at("2026-11-28T12:01:30Z");
    let h = quota.current_headers(&who).await.unwrap();
    let header = |name: &str| h.iter().find(|(k, _)| *k == name).unwrap().1.clone();
    assert_eq!(header("x-ratelimit-limit-requests"), "2");
    assert_eq!(header("x-ratelimit-remaining-requests"), "0");
    assert_eq!(header("x-ratelimit-remaining-tokens"), "0");
    assert_eq!(
        header("x-ratelimit-reset-requests"),
        "31s",
        "m4 leaves at 12:02:01"
    );
    let pruned = store
        .prune_minute_buckets(
            "2026-11-28T12:01:05Z"
                .parse::<Timestamp>()
                .unwrap()
                .as_second(),
        )
        .await
        .unwrap();
    assert_eq!(
        pruned, 3,
        "the buckets of 12:00:00, 12:00:10 and 12:01:01 are past"
    );
}

#[tokio::test]
async fn sqlite_minute_window_rolls() {
    let dir = tempfile::tempdir().unwrap();
    minute_window_rolls(
        Store::connect(&hearth::store::sqlite_url(dir.path()))
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_minute_window_rolls() {
    let pg = PgDatabase::create();
    let store = Store::connect(&pg.url).await.unwrap();
    minute_window_rolls(store.clone()).await;
    store.close().await;
}

#[test]
fn http_limits_headers_and_usage() {
    let cfg = format!(
        "timezone = \"Europe/Berlin\"\n{BASE_CONFIG}\n[quota.member]\nrequests_per_minute = 4\ntokens_per_day = 100000\nmax_tokens_per_request = 64\n"
    );
    let d = Daemon::start_with(&cfg, &[]);
    let k = d.member_key("carol", None);

    // Success carries OpenAI's rate-limit headers.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"max_tokens": 4})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("4"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("3"));
    assert!(r
        .header("x-ratelimit-reset-requests")
        .unwrap()
        .ends_with('s'));

    // Over the per-request cap: 400 naming the cap; a request without max_tokens runs capped.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"max_tokens": 65})),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cap of 64"),
        "{}",
        r.text()
    );
    assert_eq!(r.json()["error"]["param"], "max_tokens");
    // Every /v1 response carries the headers: refusals before admission, malformed JSON, model lists.
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("4"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("3"));
    let bad = request(
        &d.addr,
        "POST",
        "/v1/chat/completions",
        Some(&k),
        b"{\"model\": ",
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.header("x-ratelimit-remaining-requests"), Some("3"));
    let models = d.get("/v1/models", Some(&k));
    assert_eq!(models.status, 200);
    assert_eq!(models.header("x-ratelimit-limit-requests"), Some("4"));
    assert_eq!(models.header("x-ratelimit-remaining-requests"), Some("3"));
    assert!(models
        .header("x-ratelimit-reset-requests")
        .unwrap()
        .ends_with('s'));
    // Not for a caller without a valid key, and not outside /v1.
    assert_eq!(
        d.get("/v1/models", Some("hth_nope_nope"))
            .header("x-ratelimit-limit-requests"),
        None
    );
    assert_eq!(
        d.get("/api/tags", Some(&k))
            .header("x-ratelimit-limit-requests"),
        None
    );

    // Requests 2-4 pass (the refused one above never reached admission); the 5th: 429 rate_limit_exceeded.
    for _ in 0..3 {
        assert_eq!(
            d.post(
                "/v1/completions",
                Some(&k),
                &json!({"model": "smollm2", "prompt": "a", "max_tokens": 1})
            )
            .status,
            200
        );
    }
    let r = d.post(
        "/v1/completions",
        Some(&k),
        &json!({"model": "smollm2", "prompt": "a", "max_tokens": 1}),
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    // Ollama: its own shape, status 429.
    let r = d.post(
        "/api/generate",
        Some(&k),
        &json!({"model": "smollm2", "prompt": "a", "stream": false}),
    );
    assert_eq!(r.status, 429);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("requests per minute"));

    // Self-service usage: today and month, limits, remaining.
    let r = d.get("/v1/me/usage", Some(&k));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    let u = r.json();
    assert_eq!(u["user"], "carol");
    assert_eq!(u["today"]["requests"], 4);
    assert_eq!(u["limits"]["tokens_per_day"], 100000);
    let total = u["today"]["total_tokens"].as_i64().unwrap();
    assert!(total > 0);
    assert_eq!(u["today"]["total_tokens"], u["month"]["total_tokens"]);
    assert_eq!(
        u["remaining"]["tokens_today"].as_i64().unwrap(),
        100000 - total
    );

    // Per-user limits through the CLI: a small day allowance → insufficient_quota; allowed models → 403.
    let o = d.cli(&[
        "quota",
        "set",
        "carol",
        "--tokens-per-day",
        "1",
        "--requests-per-minute",
        "100",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"max_tokens": 2})),
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "insufficient_quota");
    assert_eq!(r.json()["error"]["type"], "insufficient_quota");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() <= 25 * 3600);
    let o = d.cli(&[
        "quota",
        "set",
        "carol",
        "--clear",
        "--allowed-models",
        "other",
    ]);
    assert!(o.status.success());
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"max_tokens": 2})),
    );
    assert_eq!(r.status, 403);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'smollm2'"));
    let shown: serde_json::Value =
        serde_json::from_str(&ok_stdout(&d.cli(&["quota", "show", "carol"]))).unwrap();
    assert_eq!(shown["allowed_models"], json!(["other"]));
    assert_eq!(shown["tokens_per_day"], json!(null));

    // Bad input: absurd and negative limits, unknown user.
    let o = d.cli(&[
        "quota",
        "set",
        "carol",
        "--tokens-per-day",
        "99999999999999999",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("tokens_per_day"));
    assert!(!d
        .cli(&["quota", "set", "carol", "--tokens-per-day", "-5"])
        .status
        .success());
    assert!(!d.cli(&["quota", "show", "nobody"]).status.success());
    // And through the admin API.
    let a = d.admin_key.clone();
    let put = |body: serde_json::Value| {
        request(
            &d.addr,
            "PUT",
            "/admin/users/carol/quota",
            Some(&a),
            body.to_string().as_bytes(),
        )
    };
    let r = put(json!({"tokens_per_day": -1}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "tokens_per_day");
    assert_eq!(put(json!({"tokens_per_dya": 5})).status, 400);
    assert_eq!(put(json!({"requests_per_minute": 1})).status, 200);
    let q = d.get("/admin/users/carol/quota", Some(&a)).json();
    assert_eq!(q["own"]["requests_per_minute"], 1);
    assert_eq!(q["effective"]["max_tokens_per_request"], 64);
    assert_eq!(
        request(&d.addr, "PUT", "/admin/users/nobody/quota", Some(&a), b"{}").status,
        404
    );
}

#[test]
fn two_daemons_on_one_postgres_never_overshoot() {
    let pg = PgDatabase::create();
    let url = pg.url.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = format!("database_url = \"{url}\"\n{BASE_CONFIG}");
    {
        // Both start against the empty database at once: one creates the first admin, neither fails.
        let (d1, d2) = std::thread::scope(|s| {
            let a = s.spawn(|| Daemon::start_with(&cfg, &[]));
            let b = s.spawn(|| Daemon::start_with(&cfg, &[]));
            (a.join().unwrap(), b.join().unwrap())
        });
        let k = d1.member_key("dave", None);
        assert!(d2
            .cli(&["quota", "set", "dave", "--tokens-per-day", "200"])
            .status
            .success());
        let body = json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 20, "temperature": 0}).to_string();
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16)
                .map(|i| {
                    let addr = if i % 2 == 0 {
                        d1.addr.clone()
                    } else {
                        d2.addr.clone()
                    };
                    let (k, body) = (k.clone(), body.clone());
                    s.spawn(move || {
                        request(&addr, "POST", "/v1/completions", Some(&k), body.as_bytes()).status
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            statuses.iter().all(|&s| s == 200 || s == 429),
            "{statuses:?}"
        );
        assert!(
            statuses.contains(&429) && statuses.contains(&200),
            "{statuses:?}"
        );
        // Wait for every reconciliation, then compare the ledger with the counters and the limit.
        let store = rt.block_on(Store::connect(&url)).unwrap();
        let user = rt.block_on(store.user_by_name("dave")).unwrap().unwrap();
        let mut rows = Vec::new();
        for _ in 0..100 {
            rows = rt.block_on(store.recent_requests(&user.id, 100)).unwrap();
            if rows.iter().all(|r| r.status != "running") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let charged: i64 = rows.iter().map(|r| r.charged_tokens).sum();
        let day = Quota::new(
            store.clone(),
            TimeZone::system(),
            QuotaDefaults::default(),
            None,
        )
        .windows()
        .day_key;
        let (tokens, _) = rt.block_on(store.window_usage(&user.id, &day)).unwrap();
        assert_eq!(tokens, charged, "counters equal the ledger");
        assert!(charged <= 200, "charged {charged} over the limit of 200");
        assert_eq!(
            rows.iter().filter(|r| r.status == "ok").count(),
            statuses.iter().filter(|&&s| s == 200).count()
        );
        rt.block_on(store.close());
    }
}

#[test]
fn usage_survives_a_restart() {
    let mut d = Daemon::start();
    let k = d.member_key("erin", None);
    for _ in 0..2 {
        let r = d.post(
            "/v1/chat/completions",
            Some(&k),
            &chat("hi", json!({"max_tokens": 3})),
        );
        assert_eq!(r.status, 200);
    }
    let before = d.get("/v1/me/usage", Some(&k)).json();
    assert_eq!(before["today"]["requests"], 2);
    d.restart();
    let after = d.get("/v1/me/usage", Some(&k)).json();
    assert_eq!(after["today"], before["today"]);
    assert_eq!(after["month"], before["month"]);
}

#[test]
fn usage_reports_and_csv_export() {
    let d = Daemon::start_with(
        &format!("{BASE_CONFIG}\n[quota.member]\nrequests_per_minute = 2\n"),
        &[],
    );
    let k = d.member_key("frank", None);
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            d.post(
                "/v1/completions",
                Some(&k),
                &json!({"model": "smollm2", "prompt": "Hello", "max_tokens": 3}),
            )
            .status
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);
    let a = d.admin_key.clone();
    // Wait until both admitted requests are reconciled.
    let mut by_user = json!(null);
    for _ in 0..100 {
        by_user = d
            .get("/admin/usage?group_by=user&user=frank", Some(&a))
            .json();
        let running = d
            .get("/admin/usage/export?user=frank", Some(&a))
            .text()
            .contains(",running,");
        if !running {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let g = &by_user["groups"][0];
    assert_eq!(g["group"], "frank");
    assert_eq!(g["requests"], 2);
    assert_eq!(g["rejected"], 1);
    assert_eq!(
        g["total_tokens"].as_i64().unwrap(),
        g["prompt_tokens"].as_i64().unwrap() + g["completion_tokens"].as_i64().unwrap()
    );
    let me = d.get("/v1/me/usage", Some(&k)).json();
    assert_eq!(me["today"]["total_tokens"], g["total_tokens"]);
    let by_model = d.get("/admin/usage?group_by=model", Some(&a)).json();
    assert_eq!(by_model["groups"][0]["group"], "smollm2");
    let by_day = d.get("/admin/usage", Some(&a)).json();
    assert_eq!(by_day["group_by"], "day");
    assert_eq!(by_day["groups"].as_array().unwrap().len(), 1);
    assert_eq!(d.get("/admin/usage?group_by=week", Some(&a)).status, 400);
    assert_eq!(d.get("/admin/usage?from=yesterday", Some(&a)).status, 400);
    assert_eq!(d.get("/admin/usage", Some(&k)).status, 403);

    // CSV: a header and one line per request (the rejected one included), the same from the API and the CLI.
    let r = d.get("/admin/usage/export?user=frank", Some(&a));
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let csv = r.text();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,user,key_id,model"));
    assert_eq!(lines.len(), 4, "{csv}");
    assert_eq!(lines.iter().filter(|l| l.contains(",rejected,")).count(), 1);
    // Admitted rows name the device and the queue time; a rejected one ran nowhere.
    let head: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| head.iter().position(|h| *h == name).unwrap();
    for l in &lines[1..] {
        let f: Vec<&str> = l.split(',').collect();
        if f[col("status")] == "rejected" {
            assert_eq!((f[col("device")], f[col("queue_ms")]), ("", ""), "{l}");
        } else {
            assert_eq!(f[col("device")], "cpu", "{l}");
            assert!(f[col("queue_ms")].parse::<u64>().is_ok(), "{l}");
        }
    }
    let cli = ok_stdout(&d.cli(&["usage", "export", "--user", "frank"]));
    assert_eq!(cli, csv);
    let report = ok_stdout(&d.cli(&["usage", "report", "--group-by", "model"]));
    assert!(
        report.lines().nth(1).unwrap().starts_with("smollm2"),
        "{report}"
    );
    assert!(!d
        .cli(&["usage", "export", "--from", "2026-13-01"])
        .status
        .success());
}

/// Admissions on old local days, then the roll-up + prune: totals survive pruning, a second run changes nothing.
async fn rollup_keeps_totals(store: Store) {
    use hearth::store::{GroupBy, UsageFilter};
    let now = Arc::new(Mutex::new(
        "2026-08-01T10:00:00Z".parse::<Timestamp>().unwrap(),
    ));
    let clock = {
        let now = now.clone();
        Arc::new(move || *now.lock().unwrap())
    };
    let tz = TimeZone::get("Europe/Berlin").unwrap();
    let quota = Quota::new(
        store.clone(),
        tz.clone(),
        QuotaDefaults::default(),
        Some(clock),
    );
    let who = member(&store, "gina").await;
    let limits = Limits::default();
    for (i, day) in [
        "2026-08-01T10:00:00Z",
        "2026-09-15T10:00:00Z",
        "2026-11-27T10:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        *now.lock().unwrap() = day.parse().unwrap();
        for j in 0..2 {
            let id = format!("g{i}{j}");
            quota
                .admit(&who, &limits, &id, "smollm2", "chat", 10, 20)
                .await
                .unwrap();
            let c = Completion {
                request_id: &id,
                status: if j == 0 { "ok" } else { "cancelled" },
                finish_reason: "stop",
                prompt_tokens: 10,
                completion_tokens: 5 + i as i64,
                now: 0,
                duration_ms: 1,
                device: None,
                queue_ms: None,
                energy_joules: None,
                energy_source: None,
            };
            assert!(store.reconcile(&c).await.unwrap());
        }
    }
    let f = UsageFilter {
        from_day: "2026-08-01".into(),
        to_day: "2026-11-28".into(),
        ..Default::default()
    };
    let before = store.usage_report(&f, GroupBy::Day).await.unwrap();
    assert_eq!(before.len(), 3);
    assert_eq!(before[0].total_tokens, 2 * 10 + 2 * 5);
    assert_eq!(before[0].cancelled, 1);
    let today: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
    let retain = std::time::Duration::from_secs(30 * 86_400);
    let outcome = hearth::housekeeping::rollup_and_prune(&store, &tz, retain, today)
        .await
        .unwrap();
    assert_eq!(
        (outcome.day_groups, outcome.raw_rows_pruned),
        (3, 4),
        "three days rolled up; the two old days' raw rows pruned"
    );
    assert_eq!(
        outcome.minute_buckets_pruned, 3,
        "one rolling-minute bucket per admission second, all long past"
    );
    let after = store.usage_report(&f, GroupBy::Day).await.unwrap();
    assert_eq!(after, before, "totals survive pruning");
    let again = hearth::housekeeping::rollup_and_prune(&store, &tz, retain, today)
        .await
        .unwrap();
    assert_eq!((again.raw_rows_pruned, again.minute_buckets_pruned), (0, 0));
    assert_eq!(
        store.usage_report(&f, GroupBy::Day).await.unwrap(),
        before,
        "running twice is harmless"
    );
    assert_eq!(
        store.usage_report(&f, GroupBy::User).await.unwrap()[0].requests,
        6
    );
    assert_eq!(
        store
            .recent_requests(&who.user_id, 100)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn sqlite_rollup_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    rollup_keeps_totals(
        Store::connect(&hearth::store::sqlite_url(dir.path()))
            .await
            .unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rollup_and_prune() {
    let pg = PgDatabase::create();
    let store = Store::connect(&pg.url).await.unwrap();
    rollup_keeps_totals(store.clone()).await;
    store.close().await;
}

/// A key's limits replace its user's where set (admin API and CLI); the user's other keys are unaffected, and
/// usage is still counted per user.
#[test]
fn key_limits_override_the_users() {
    let d = Daemon::start_with(
        &format!("{BASE_CONFIG}\n[quota.member]\nrequests_per_minute = 50\n"),
        &[],
    );
    let bot = d.member_key("dave", None);
    let phone = ok_stdout(&d.cli(&["key", "create", "dave"]))
        .trim()
        .to_owned();
    let bot_id = bot.split('_').nth(1).unwrap().to_owned();
    let a = d.admin_key.clone();
    let put = |id: &str, body: serde_json::Value| {
        request(
            &d.addr,
            "PUT",
            &format!("/admin/keys/{id}/quota"),
            Some(&a),
            body.to_string().as_bytes(),
        )
    };
    let r = put(
        &bot_id,
        json!({"max_tokens_per_request": 8, "requests_per_minute": 3}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let q = d
        .get(&format!("/admin/keys/{bot_id}/quota"), Some(&a))
        .json();
    assert_eq!(q["user"], "dave");
    assert_eq!(q["own"]["max_tokens_per_request"], 8);
    assert_eq!(q["effective"]["requests_per_minute"], 3);

    let ask = |key: &str, max: u32| {
        d.post(
            "/v1/completions",
            Some(key),
            &json!({"model": "smollm2", "prompt": "a", "max_tokens": max}),
        )
    };
    let r = ask(&bot, 9);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("cap of 8"), "{}", r.text());
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("3"));
    let r = ask(&phone, 9);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("50"));
    // Counted per user: the phone's request is one of the bot key's 3 per minute.
    assert_eq!(ask(&bot, 2).status, 200);
    assert_eq!(ask(&bot, 2).status, 200);
    assert_eq!(
        ask(&bot, 2).status,
        429,
        "already 3 of dave's requests this minute"
    );
    assert_eq!(
        ask(&phone, 2).status,
        200,
        "the phone key keeps the user's 50"
    );

    // CLI: only the flags given change; --key and a user name are exclusive.
    let o = d.cli(&[
        "quota",
        "set",
        "--key",
        &bot_id,
        "--allowed-models",
        "other",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown: serde_json::Value =
        serde_json::from_str(&ok_stdout(&d.cli(&["quota", "show", "--key", &bot_id]))).unwrap();
    assert_eq!(shown["allowed_models"], json!(["other"]));
    assert_eq!(shown["max_tokens_per_request"], 8);
    let r = ask(&bot, 2);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!d.cli(&["quota", "show", "--key", "nokey"]).status.success());
    assert!(!d
        .cli(&["quota", "set", "dave", "--key", &bot_id])
        .status
        .success());
    assert!(!d.cli(&["quota", "show"]).status.success());
    // Bad input over HTTP: unknown key 404, absurd limit 400.
    assert_eq!(put("nokey", json!({"weight": 1})).status, 404);
    let r = put(&bot_id, json!({"tokens_per_day": -1}));
    assert_eq!(r.status, 400, "{}", r.text());
    // A revoked key is refused before its limits matter.
    let o = d.cli(&["key", "revoke", &bot_id]);
    assert!(o.status.success());
    assert_eq!(ask(&bot, 2).status, 401);
}

/// SQLite admission runs in the calling thread and never waits for a lock there: while another connection (the
/// CLI, another process) holds the write lock, it falls back to the pool, which waits — and the result is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_admission_waits_for_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&hearth::store::sqlite_url(dir.path()))
        .await
        .unwrap();
    let quota = Quota::new(store.clone(), TimeZone::UTC, QuotaDefaults::default(), None);
    let who = member(&store, "gina").await;
    let limits = Limits {
        tokens_per_day: Some(150),
        ..Default::default()
    };
    let other = rusqlite::Connection::open(dir.path().join("hearth.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let task = {
        let (quota, who, limits) = (quota.clone(), who.clone(), limits.clone());
        tokio::spawn(async move { quota.admit(&who, &limits, "w1", "m", "chat", 50, 50).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!task.is_finished(), "admission must wait for the lock");
    other.execute_batch("COMMIT").unwrap();
    task.await.unwrap().unwrap();
    // The fast path again: the second request would cross the day's 150.
    match quota.admit(&who, &limits, "w2", "m", "chat", 25, 26).await {
        Err(QuotaError::Exhausted { .. }) => {}
        other => panic!("{other:?}"),
    }
    let day = hearth::quota::windows_at(&TimeZone::UTC, Timestamp::now()).day_key;
    assert_eq!(
        store.window_usage(&who.user_id, &day).await.unwrap(),
        (100, 1)
    );
}
