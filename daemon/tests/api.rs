//! The HTTP API end to end: the real binary, real model, real HTTP over loopback.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Read;
use std::time::Duration;

fn chat(content: &str, extra: Value) -> Value {
    let mut v = json!({"model": "smollm2", "messages": [{"role": "user", "content": content}], "temperature": 0});
    for (k, x) in extra.as_object().expect("object") {
        v[k] = x.clone();
    }
    v
}

#[test]
fn openai_chat_completion_json_and_stream_agree() {
    let d = Daemon::start();
    let k = d.admin_key.clone();

    let models = d.get("/v1/models", Some(&k));
    assert_eq!(models.status, 200);
    let m = models.json();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "smollm2");
    assert_eq!(
        d.get("/v1/models/smollm2", Some(&k)).json()["id"],
        "smollm2"
    );

    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat(
            "What is the capital of France? Answer in one word.",
            json!({"max_tokens": 12}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "smollm2");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(text.contains("Paris"), "{text}");
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 5);
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    let reason = v["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(
        reason == "stop" || (reason == "length" && u["completion_tokens"] == 12),
        "{v}"
    );

    // The same greedy request streamed gives the same text, chunk by chunk.
    let s = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat(
            "What is the capital of France? Answer in one word.",
            json!({"max_tokens": 12, "stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(s.status, 200);
    assert!(s
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let events = s.sse();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let fin = &chunks[chunks.len() - 2];
    assert_eq!(fin["choices"][0]["finish_reason"], reason);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], v["usage"]);

    // max_completion_tokens wins over max_tokens; a stop string ends it early and is not included.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat(
            "Count from 1 to 20, separated by spaces.",
            json!({"max_tokens": 40, "max_completion_tokens": 3}),
        ),
    );
    assert_eq!(r.json()["usage"]["completion_tokens"], 3);
    assert_eq!(r.json()["choices"][0]["finish_reason"], "length");

    // Legacy completions: raw text, stop strings, default max_tokens 16.
    let c = d.post(
        "/v1/completions",
        Some(&k),
        &json!({"model": "smollm2", "prompt": "1, 2, 3, 4,", "temperature": 0, "stop": [" 7"]}),
    );
    assert_eq!(c.status, 200, "{}", c.text());
    let cv = c.json();
    assert_eq!(cv["object"], "text_completion");
    let ct = cv["choices"][0]["text"].as_str().unwrap();
    assert!(ct.starts_with(" 5, 6,"), "{ct:?}");
    assert!(!ct.contains('7'), "{ct:?}");
    assert_eq!(cv["choices"][0]["finish_reason"], "stop");
    let c = d.post(
        "/v1/completions",
        Some(&k),
        &json!({"model": "smollm2", "prompt": "Once upon a time", "temperature": 0}),
    );
    assert!(c.json()["usage"]["completion_tokens"].as_u64().unwrap() <= 16);
    let cs = d.post("/v1/completions", Some(&k), &json!({"model": "smollm2", "prompt": "1, 2, 3, 4,", "temperature": 0, "stop": " 7", "stream": true}));
    let evs = cs.sse();
    assert_eq!(evs.last().unwrap(), "[DONE]");
    let joined: String = evs[..evs.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(joined, ct);

    // Seeded sampling is reproducible; sampling parameters are accepted.
    let body = chat(
        "Write a word.",
        json!({"temperature": 1.0, "top_p": 0.9, "seed": 42, "max_tokens": 8,
        "presence_penalty": 0.5, "frequency_penalty": 0.5, "logit_bias": {"28": -100}, "user": "someone"}),
    );
    let a = d.post("/v1/chat/completions", Some(&k), &body).json();
    let b = d.post("/v1/chat/completions", Some(&k), &body).json();
    assert_eq!(a["choices"][0]["message"], b["choices"][0]["message"]);

    // Content given as parts.
    let parts = json!({"model": "smollm2", "temperature": 0, "max_tokens": 12,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France? Answer in one word."}]}]});
    assert_eq!(
        d.post("/v1/chat/completions", Some(&k), &parts).json()["choices"][0]["message"]["content"],
        text.as_str()
    );
}

#[test]
fn concurrent_requests_are_batched_and_all_answered() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let solo = d.post("/v1/completions", Some(&k), &json!({"model": "smollm2", "prompt": "The sky is", "temperature": 0, "max_tokens": 10})).json();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (addr, k) = (d.addr.clone(), k.clone());
            std::thread::spawn(move || {
                let body = json!({"model": "smollm2", "prompt": "The sky is", "temperature": 0, "max_tokens": 10});
                request(&addr, "POST", "/v1/completions", Some(&k), body.to_string().as_bytes())
            })
        })
        .collect();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["choices"][0]["text"], solo["choices"][0]["text"]);
    }
}

#[test]
fn ollama_api() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let tags = d.get("/api/tags", Some(&k)).json();
    let m = &tags["models"][0];
    assert_eq!(m["name"], "smollm2");
    assert_eq!(m["details"]["format"], "gguf");
    assert_eq!(m["details"]["family"], "llama");
    assert_eq!(m["details"]["quantization_level"], "Q4_1");
    assert!(m["modified_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        d.get("/api/version", Some(&k)).json()["version"],
        env!("CARGO_PKG_VERSION")
    );
    let show = d
        .post("/api/show", Some(&k), &json!({"model": "smollm2:latest"}))
        .json();
    assert!(show["template"].as_str().unwrap().contains("im_start"));
    assert_eq!(show["model_info"]["general.architecture"], "llama");

    // Streaming chat (the default) — NDJSON, last line done with counts.
    let r = d.post("/api/chat", Some(&k), &json!({"model": "smollm2", "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "options": {"temperature": 0, "num_predict": 12}}));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines = r.ndjson();
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert!(["stop", "length"].contains(&last["done_reason"].as_str().unwrap()));
    assert!(last["eval_count"].as_u64().unwrap() >= 1);
    assert!(last["prompt_eval_count"].as_u64().unwrap() > 5);
    assert!(last["total_duration"].as_u64().unwrap() >= last["eval_duration"].as_u64().unwrap());
    let text: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap().to_owned())
        .collect();
    assert!(text.contains("Paris"), "{text}");
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));

    // Non-streaming generate gives the same text as the streamed chat (same template, greedy).
    let g = d.post(
        "/api/generate",
        Some(&k),
        &json!({"model": "smollm2", "prompt": "What is the capital of France?", "stream": false,
        "options": {"temperature": 0, "num_predict": 12}}),
    );
    let gv = g.json();
    assert_eq!(gv["done"], true);
    assert_eq!(gv["response"].as_str().unwrap(), text);
    // Raw generate and stop.
    let raw = d
        .post(
            "/api/generate",
            Some(&k),
            &json!({"model": "smollm2", "prompt": "1, 2, 3, 4,", "raw": true, "stream": false,
        "options": {"temperature": 0, "num_predict": 30, "stop": [" 7"]}}),
        )
        .json();
    assert!(
        raw["response"].as_str().unwrap().starts_with(" 5, 6,"),
        "{raw}"
    );
    assert_eq!(raw["done_reason"], "stop");

    // keep_alive: loaded models show in /api/ps; keep_alive 0 unloads.
    let ps = d.get("/api/ps", Some(&k)).json();
    assert_eq!(ps["models"][0]["name"], "smollm2");
    let u = d
        .post(
            "/api/generate",
            Some(&k),
            &json!({"model": "smollm2", "keep_alive": 0}),
        )
        .json();
    assert_eq!(u["done_reason"], "unload");
    let mut unloaded = false;
    for _ in 0..100 {
        if d.get("/api/ps", Some(&k)).json()["models"] == json!([]) {
            unloaded = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(unloaded);
    let l = d
        .post(
            "/api/chat",
            Some(&k),
            &json!({"model": "smollm2", "messages": [], "keep_alive": "1m"}),
        )
        .json();
    assert_eq!(l["done_reason"], "load");
    assert_eq!(
        d.get("/api/ps", Some(&k)).json()["models"][0]["name"],
        "smollm2"
    );

    // Errors in Ollama's shape.
    let e = d.post(
        "/api/chat",
        Some(&k),
        &json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(e.status, 404);
    assert_eq!(e.json()["error"], "model 'nope' not found");
    let e = d.get("/api/tags", None);
    assert_eq!(e.status, 401);
    assert!(e.json()["error"].is_string());
}

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
        (chat("hi", json!({"n": 2})), "n"),
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
        row = ledger(&d).into_iter().find(|r| r.endpoint == "completions");
        if row.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let row = row.expect("a ledger row for the abandoned request");
    assert_eq!(row.finish_reason, "cancelled");
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
        found = ledger(&d).into_iter().find(|r| r.endpoint == "chat");
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

#[test]
fn openapi_spec_and_offline_docs() {
    let d = Daemon::start();
    let spec = d.get("/openapi.json", None);
    assert_eq!(spec.status, 200);
    let v = spec.json();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    let paths = v["paths"].as_object().unwrap();
    for p in [
        "/v1/models",
        "/v1/chat/completions",
        "/v1/completions",
        "/api/tags",
        "/api/version",
        "/api/show",
        "/api/chat",
        "/api/generate",
        "/api/ps",
        "/admin/users",
        "/admin/users/{name}",
        "/admin/keys",
        "/admin/keys/{id}",
        "/health",
        "/ready",
    ] {
        assert!(paths.contains_key(p), "{p} is not documented");
    }
    assert!(v["components"]["securitySchemes"]["api_key"].is_object());
    assert!(v["components"]["schemas"]["ChatCompletionRequest"].is_object());
    let docs = d.get("/docs", None);
    assert_eq!(docs.status, 200);
    let html = docs.text();
    assert!(html.contains("/openapi.json"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "the docs page must work offline"
    );
}

#[test]
fn json_mode_returns_a_json_object() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat(
            "Give me a JSON object describing a cat with name and age.",
            json!({"max_tokens": 200, "response_format": {"type": "json_object"}}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value =
        serde_json::from_str(content).unwrap_or_else(|e| panic!("not JSON ({e}): {content}"));
    assert!(parsed.is_object());
    // Ollama's format: "json".
    let r = d.post(
        "/api/chat",
        Some(&k),
        &json!({"model": "smollm2", "messages": [{"role": "user", "content": "Give me a JSON object describing a cat with name and age."}],
            "format": "json", "stream": false, "options": {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 200}}),
    );
    let v = r.json();
    assert_eq!(v["done_reason"], "stop", "{v}");
    let parsed: Value = serde_json::from_str(v["message"]["content"].as_str().unwrap()).unwrap();
    assert!(parsed.is_object());
    // Schemas are refused clearly, not ignored.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"response_format": {"type": "json_schema"}})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "response_format");
    let r = d.post("/api/chat", Some(&k), &json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "format": {"type": "object"}}));
    assert_eq!(r.status, 400);
}
