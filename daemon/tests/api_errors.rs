//! The HTTP API's refusals end to end: authentication and administration, every bad input of the issue, a full
//! queue, and a client that goes away — with the real binary over loopback.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;

#[test]
fn auth_and_admin() {
    let d = Daemon::start();
    let admin = d.admin_key.clone();

    // Health and readiness need no key; everything else does.
    assert_eq!(d.get("/health", None).status, 200);
    assert_eq!(d.get("/ready", None).json()["status"], "ready");
    for (path, shape_openai) in [
        ("/v1/models", true),
        ("/api/tags", false),
        ("/admin/users", true),
    ] {
        let r = d.get(path, None);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        if shape_openai {
            assert_eq!(r.json()["error"]["type"], "authentication_error");
        }
        assert_eq!(
            d.get(
                path,
                Some("hth_aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
            )
            .status,
            401
        );
        assert_eq!(d.get(path, Some("sk-not-ours")).status, 401);
    }
    let wrong_secret = format!(
        "{}{}",
        &admin[..admin.len() - 1],
        if admin.ends_with('a') { 'b' } else { 'a' }
    );
    let r = d.get("/v1/models", Some(&wrong_secret));
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");

    // Admin API: users and keys.
    let u = d.post(
        "/admin/users",
        Some(&admin),
        &json!({"name": "bob", "password": "correct horse"}),
    );
    assert_eq!(u.status, 201, "{}", u.text());
    assert_eq!(u.json()["role"], "member");
    assert!(u.json().get("password_hash").is_none());
    assert_eq!(
        d.post("/admin/users", Some(&admin), &json!({"name": "bob"}))
            .status,
        409
    );
    assert_eq!(
        d.post("/admin/users", Some(&admin), &json!({"name": "Bob!"}))
            .status,
        400
    );
    let kr = d.post(
        "/admin/keys",
        Some(&admin),
        &json!({"user": "bob", "name": "phone", "models": ["smollm2"], "expires": "30d"}),
    );
    assert_eq!(kr.status, 201, "{}", kr.text());
    let kv = kr.json();
    let bob_key = kv["key"].as_str().unwrap().to_owned();
    let bob_id = kv["id"].as_str().unwrap().to_owned();
    assert!(kv["expires_at"].as_i64().unwrap() > kv["created_at"].as_i64().unwrap() + 29 * 86400);
    let listed = d.get("/admin/keys?user=bob", Some(&admin)).json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains(&bob_key[20..]),
        "a listing must not hold the secret"
    );
    assert_eq!(d.get("/v1/models", Some(&bob_key)).status, 200);

    // A member on /admin: 403.
    let r = d.get("/admin/users", Some(&bob_key));
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["type"], "permission_error");

    // Scoped keys: another model is 403 (the model exists), and /v1/models lists only allowed ones.
    let o = d.cli(&[
        "model",
        "import",
        demo_model().to_str().unwrap(),
        "--name",
        "other",
    ]);
    ok_stdout(&o);
    let r = d.post(
        "/v1/chat/completions",
        Some(&bob_key),
        &json!({"model": "other", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let ids: Vec<_> = d.get("/v1/models", Some(&bob_key)).json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("smollm2")]);
    assert_eq!(
        d.get("/v1/models", Some(&admin)).json()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Disabling (CLI, while the daemon runs) locks the user out at once; enabling restores.
    ok_stdout(&d.cli(&["user", "disable", "bob"]));
    let r = d.get("/v1/models", Some(&bob_key));
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("disabled"));
    let r = d.request_patch("/admin/users/bob", &admin, &json!({"disabled": false}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(d.get("/v1/models", Some(&bob_key)).status, 200);

    // Revocation over the API is immediate; so is revocation by the CLI.
    let r = request(
        &d.addr,
        "DELETE",
        &format!("/admin/keys/{bob_id}"),
        Some(&admin),
        b"",
    );
    assert_eq!(r.status, 204);
    assert_eq!(d.get("/v1/models", Some(&bob_key)).status, 401);
    assert_eq!(
        request(
            &d.addr,
            "DELETE",
            &format!("/admin/keys/{bob_id}"),
            Some(&admin),
            b""
        )
        .status,
        404
    );
    let k2 = d.member_key("carol", None);
    assert_eq!(d.get("/v1/models", Some(&k2)).status, 200);
    let id2 = &k2[4..16];
    ok_stdout(&d.cli(&["key", "revoke", id2]));
    let r = d.get("/v1/models", Some(&k2));
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));

    // Expired keys.
    let k3 = ok_stdout(&d.cli(&["key", "create", "carol", "--expires", "0"]))
        .trim()
        .to_owned();
    let r = d.get("/v1/models", Some(&k3));
    assert_eq!(r.status, 401);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));

    // `key list` shows state; `user list` too.
    let list = ok_stdout(&d.cli(&["key", "list", "carol"]));
    assert!(
        list.contains("revoked") && list.contains("expired"),
        "{list}"
    );
    let users: Value =
        serde_json::from_str(&ok_stdout(&d.cli(&["user", "list", "--json"]))).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 3);

    // The first admin's password is in a 0600 file; the log names the file and holds no secret.
    let pw_file = d.state.path().join("initial-admin-password");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&pw_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let pw = std::fs::read_to_string(&pw_file).unwrap();
    let log = d.log();
    assert!(log.contains("initial-admin-password"));
    assert!(!log.contains(pw.trim()), "the log holds the admin password");
    for secret in [&admin, &bob_key, &k2, &k3] {
        assert!(!log.contains(&secret[17..]), "the log holds a key secret");
    }
    assert!(!log.contains("correct horse"));
}

trait Patch {
    fn request_patch(&self, path: &str, key: &str, body: &Value) -> Resp;
}
impl Patch for Daemon {
    fn request_patch(&self, path: &str, key: &str, body: &Value) -> Resp {
        request(
            &self.addr,
            "PATCH",
            path,
            Some(key),
            body.to_string().as_bytes(),
        )
    }
}

#[test]
fn bad_input_gets_clear_errors() {
    let d = Daemon::start_with(&format!("max_body_bytes = 4096\n{BASE_CONFIG}"), &[]);
    let k = d.admin_key.clone();
    let post_raw = |path: &str, body: &[u8]| request(&d.addr, "POST", path, Some(&k), body);

    // Malformed JSON.
    let r = post_raw("/v1/chat/completions", b"{\"model\": \"smollm2\", ");
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["error"]["type"], "invalid_request_error");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{e}"
    );
    // Wrong type: the field is named.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"temperature": "hot"})),
    );
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["error"]["param"], "temperature", "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("temperature"));
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "smollm2", "messages": [{"role": "user", "content": 5}]}),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content"),
        "{}",
        r.text()
    );
    // Missing field.
    let r = d.post("/v1/chat/completions", Some(&k), &json!({"messages": []}));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model"),
        "{}",
        r.text()
    );
    // Out-of-range values and unsupported features.
    for (body, param) in [
        (chat("hi", json!({"temperature": 3})), "temperature"),
        (chat("hi", json!({"n": 9})), "n"),
        (chat("hi", json!({"logit_bias": {"abc": 1}})), "logit_bias"),
        (json!({"model": "smollm2", "messages": []}), "messages"),
        (
            json!({"model": "smollm2", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
    ] {
        let r = d.post("/v1/chat/completions", Some(&k), &body);
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json()["error"]["param"], param, "{}", r.text());
    }
    // Invalid UTF-8.
    let r = post_raw("/v1/chat/completions", b"{\"model\": \"smollm2\", \"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{}",
        r.text()
    );
    // Unknown model.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert_eq!(r.json()["error"]["param"], "model");
    // Prompt over the context (2048 in BASE_CONFIG): ~2.4k tokens, under the 4 KiB body limit? No — use max_tokens.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"max_tokens": 5000})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["code"],
        "context_length_exceeded",
        "{}",
        r.text()
    );
    let long = "word ".repeat(700);
    let r = d.post(
        "/v1/completions",
        Some(&k),
        &json!({"model": "smollm2", "prompt": long, "max_tokens": 1500}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");
    // Body over the configured limit.
    let big = "x".repeat(5000);
    let r = d.post(
        "/v1/completions",
        Some(&k),
        &json!({"model": "smollm2", "prompt": big}),
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    let r = d.post(
        "/api/generate",
        Some(&k),
        &json!({"model": "smollm2", "prompt": "x".repeat(5000)}),
    );
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].as_str().unwrap().contains("4096"));
    // Ollama: bad options are named; empty body.
    let r = d.post("/api/chat", Some(&k), &json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "options": {"temperature": "x"}}));
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("options.temperature"),
        "{}",
        r.text()
    );
    let r = post_raw("/api/generate", b"");
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("empty"));
    // Unknown routes answer JSON 404.
    let r = d.get("/v1/nothing", Some(&k));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "not_found");
    // A model file corrupted after import: a clear error naming the model, and the daemon carries on.
    let tmp = d.state.path().join("broken.gguf");
    std::fs::copy(demo_model(), &tmp).unwrap();
    ok_stdout(&d.cli(&["model", "import", tmp.to_str().unwrap(), "--name", "broken"]));
    let imported = d.state.path().join("models/broken/broken.gguf");
    let bytes = std::fs::read(&imported).unwrap();
    std::fs::remove_file(&imported).unwrap();
    std::fs::write(&imported, &bytes[..bytes.len() / 3]).unwrap();
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "broken", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("model 'broken' failed to load"), "{msg}");
    // Nothing was lost: the daemon still serves.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"max_tokens": 2})),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn full_queue_is_503_with_retry_after() {
    let d = Daemon::start_with(
        "[engine]\nthreads = 1\nmax_sequences = 1\nqueue_depth = 1\ncontext = 1024\n",
        &[],
    );
    let k = d.admin_key.clone();
    let long = json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 400, "stream": true, "temperature": 0}).to_string();
    let head = |len: usize| {
        format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {k}\r\nContent-Length: {len}\r\n\r\n"
    )
    };
    // One running, one waiting...
    let mut a = send_raw(&d.addr, &head(long.len()), long.as_bytes());
    let mut first = [0u8; 64];
    let _ = a.read(&mut first).unwrap();
    let b = send_raw(&d.addr, &head(long.len()), long.as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    // ...so the third is refused before any work.
    let r = d.post(
        "/v1/completions",
        Some(&k),
        &json!({"model": "smollm2", "prompt": "hi", "max_tokens": 2}),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"]["code"], "queue_full");
    drop((a, b));
}

/// Authorisation comes before the body: a member's POST to an admin route is 403 whatever it sends. `/api/chat`
/// refuses a role `/v1` refuses, and a file that is not GGUF is named as such with none of its bytes echoed.
#[test]
fn authorisation_comes_first_and_refusals_echo_nothing() {
    let d = Daemon::start();
    let member = d.member_key("mia", None);
    for path in ["/admin/keys", "/admin/schedules"] {
        for body in [&b"not json"[..], b"{}", b"{\"user\": 1}"] {
            let r = request(&d.addr, "POST", path, Some(&member), body);
            assert_eq!(r.status, 403, "{path}: {}", r.text());
        }
    }
    let r = d.post(
        "/api/chat",
        Some(&member),
        &json!({"model": "smollm2", "stream": false,
                "messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "hi"}]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("messages[1].role"), "{}", r.text());
    let not_a_model = d.state.path().join("shadow-like.txt");
    std::fs::write(&not_a_model, "root:$y$j9T$hash:19000:0:99999:7:::\n").unwrap();
    let r = d.post(
        "/admin/models/import",
        Some(&d.admin_key),
        &json!({"path": not_a_model.to_str().unwrap()}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let text = r.text();
    assert!(text.contains("not a GGUF file"), "{text}");
    assert!(!text.contains("$y$") && !text.contains("72, 6f"), "{text}");
    // HEAD answers wherever GET does; a method a path lacks is 405 in the API's error shape, not 404.
    for path in ["/health", "/openapi.json", "/v1/models", "/api/tags"] {
        let r = request(&d.addr, "HEAD", path, Some(&member), b"");
        assert_eq!(r.status, 200, "HEAD {path}");
        assert!(r.body.is_empty(), "HEAD {path} sent a body");
    }
    let r = request(&d.addr, "DELETE", "/v1/models", Some(&member), b"");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    let r = request(&d.addr, "GET", "/api/chat", Some(&member), b"");
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(
        r.json()["error"].as_str().unwrap().contains("not allowed"),
        "{}",
        r.text()
    );
    assert_eq!(
        request(&d.addr, "GET", "/v1/no-such-route", Some(&member), b"").status,
        404
    );
}

/// Reads the ledger rows of a daemon's SQLite database.
fn ledger(d: &Daemon) -> Vec<hearth::store::RequestRecord> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = hearth::store::Store::connect(&hearth::store::sqlite_url(d.state.path()))
            .await
            .unwrap();
        let admin = s.user_by_name("admin").await.unwrap().unwrap();
        let rows = s.recent_requests(&admin.id, 100).await.unwrap();
        s.close().await;
        rows
    })
}

#[test]
fn a_client_that_disconnects_cancels_its_generation_and_usage_is_recorded() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let body = json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 1000, "stream": true,
        "temperature": 0.8, "seed": 1}).to_string();
    let head = format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {k}\r\nContent-Length: {}\r\n\r\n", body.len());
    let mut s = send_raw(&d.addr, &head, body.as_bytes());
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf).unwrap();
    drop(s);
    let mut row = None;
    for _ in 0..300 {
        row = ledger(&d)
            .into_iter()
            .find(|r| r.endpoint == "completions" && r.status != "running");
        if row.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let row = row.expect("a ledger row for the abandoned request");
    assert_eq!(row.finish_reason, "cancelled");
    assert_eq!(row.status, "cancelled");
    // Charged for what was processed: the prompt and the tokens generated before the cancel.
    assert_eq!(
        row.charged_tokens,
        row.prompt_tokens + row.completion_tokens
    );
    assert!(row.completion_tokens < 1000, "{row:?}");
    assert!(row.prompt_tokens > 0);
    // A finished request is recorded with its counts.
    let r = d
        .post(
            "/v1/chat/completions",
            Some(&k),
            &chat("hi", json!({"max_tokens": 3})),
        )
        .json();
    let mut found = None;
    for _ in 0..100 {
        found = ledger(&d)
            .into_iter()
            .find(|r| r.endpoint == "chat" && r.status == "ok");
        if found.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let found = found.unwrap();
    assert_eq!(
        found.completion_tokens,
        r["usage"]["completion_tokens"].as_i64().unwrap()
    );
    assert_eq!(
        found.prompt_tokens,
        r["usage"]["prompt_tokens"].as_i64().unwrap()
    );
    assert_eq!(found.model, "smollm2");
}

/// `[keyless]`: a request without a key from a listed network acts as the configured user (a member whatever
/// the user's role: no /admin, no keys), charged and on the ledger as that user; from elsewhere it is a 401,
/// and a bad network is refused by `hearth config check`.
#[test]
fn keyless_networks_map_to_a_member() {
    let config = format!("{BASE_CONFIG}\n[keyless]\nnetworks = [\"10.0.0.0/8\", \"127.0.0.1/32\"]\nuser = \"household\"\n");
    let d = Daemon::start_with(&config, &[]);
    // The user does not exist yet: a keyless request is refused as unauthenticated.
    assert_eq!(d.get("/v1/models", None).status, 401);
    // An admin mapped user is still only a member without a key.
    ok_stdout(&d.cli(&["user", "add", "household", "--role", "admin"]));
    let r = d.post(
        "/v1/chat/completions",
        None,
        &chat("Say hi.", json!({"max_tokens": 4})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = d.post(
        "/api/chat",
        None,
        &json!({"model": "smollm2", "stream": false, "options": {"num_predict": 2},
                "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(d.get("/admin/users", None).status, 403);
    assert_eq!(
        d.post("/v1/me/keys", None, &json!({"name": "mine"})).status,
        403
    );
    assert_eq!(d.get("/v1/me/keys", None).status, 403);
    let usage = d.get("/v1/me/usage", None).json();
    assert_eq!(usage["user"], "household", "{usage}");
    let rows = d.ledger();
    assert_eq!(
        rows.iter()
            .filter(|r| r.get("user").map(String::as_str) == Some("household"))
            .count(),
        2,
        "{rows:?}"
    );
    // A wrong key is still wrong (the network does not excuse a bad credential).
    assert_eq!(d.get("/v1/models", Some("hth_wrong")).status, 401);
    // The dashboard's overview shows the open door.
    let o = d.get("/admin/overview", Some(&d.admin_key)).json();
    assert_eq!(
        o["keyless"],
        json!({"networks": ["10.0.0.0/8", "127.0.0.1/32"], "user": "household"})
    );

    // Not a listed network: 401 as before.
    let other = format!(
        "{BASE_CONFIG}\n[keyless]\nnetworks = [\"192.168.7.0/24\"]\nuser = \"household\"\n"
    );
    let d2 = Daemon::start_with(&other, &[]);
    ok_stdout(&d2.cli(&["user", "add", "household"]));
    assert_eq!(d2.get("/v1/models", None).status, 401);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[keyless]\nnetworks = [\"10.0.0.0/33\"]\nuser = \"x\"\n",
    )
    .unwrap();
    let o = hearth(
        dir.path(),
        &["--config", bad.to_str().unwrap(), "config", "check"],
    );
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("keyless.networks"),
        "{o:?}"
    );
    std::fs::write(&bad, "[keyless]\nnetworks = [\"10.0.0.0/8\"]\n").unwrap();
    let o = hearth(
        dir.path(),
        &["--config", bad.to_str().unwrap(), "config", "check"],
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("keyless.user"),
        "{o:?}"
    );
}
