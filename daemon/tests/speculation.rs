//! Speculative decoding through the daemon: `[models.NAME] draft` and `prompt_lookup`, the `speculative: false`
//! opt-out, the counters in `/admin/models` and `/metrics`, and the refusals (a draft with another tokenizer, a
//! draft that is not imported, a model drafting for itself).
#![allow(clippy::unwrap_used)]

mod harness;

use harness::*;
use serde_json::json;

/// A prompt whose answer copies from it: prompt lookup has something to propose.
const COPY: &str = "Repeat the following text exactly, word for word:\n\nThe committee met on Tuesday to review \
                    the budget for the new library. After a long discussion, the members agreed to fund the \
                    children's reading room.";

fn config(extra: &str) -> String {
    format!("{BASE_CONFIG}\n[metrics]\npublic = true\n{extra}")
}

fn completion(d: &Daemon, model: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut body = chat(COPY, json!({"max_tokens": 48}));
    body["model"] = json!(model);
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = d.post("/v1/chat/completions", Some(&d.admin_key), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn text(j: &serde_json::Value) -> String {
    j["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn model_status(d: &Daemon, name: &str) -> serde_json::Value {
    let list = d.get("/admin/models", Some(&d.admin_key)).json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap()
        .clone()
}

fn metric(d: &Daemon, series: &str) -> f64 {
    let body = d.get("/metrics", None).text();
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn prompt_lookup_and_a_draft_model_give_the_same_greedy_text_and_report_their_counters() {
    let d = Daemon::start_with(
        &config(
            "[models.smollm2]\nprompt_lookup = true\n\
             [models.smollm2-f16]\ndtype = \"f16\"\ndraft = \"smollm2\"\n",
        ),
        &[],
    );
    ok_stdout(&d.cli(&[
        "model",
        "import",
        demo_model().to_str().unwrap(),
        "--name",
        "smollm2-f16",
    ]));

    // Prompt lookup: identical text with and without it, and proposals were made and kept.
    let plain = completion(&d, "smollm2", json!({"speculative": false}));
    let looked_up = completion(&d, "smollm2", json!({}));
    assert_eq!(text(&plain), text(&looked_up));
    assert_eq!(
        plain["usage"]["completion_tokens"],
        looked_up["usage"]["completion_tokens"]
    );
    let m = model_status(&d, "smollm2");
    let spec = &m["speculation"];
    assert_eq!(spec["mode"], "prompt_lookup", "{m}");
    let drafted = spec["drafted_tokens"].as_u64().unwrap();
    let accepted = spec["accepted_tokens"].as_u64().unwrap();
    assert!(drafted > 0 && accepted > 0 && accepted <= drafted, "{m}");
    let rate = spec["acceptance_rate"].as_f64().unwrap();
    assert!(
        (rate - accepted as f64 / drafted as f64).abs() < 1e-9,
        "{m}"
    );
    // The same counts in /metrics, by model.
    assert_eq!(
        metric(&d, "hearth_spec_draft_tokens_total{model=\"smollm2\"}"),
        drafted as f64
    );
    assert_eq!(
        metric(&d, "hearth_spec_accepted_tokens_total{model=\"smollm2\"}"),
        accepted as f64
    );

    // A draft model: the F16 twin drafted by the Q4_1 file gives the twin's own greedy text. (Whether it drafts
    // is the policy's call — on this machine that pair does not pay — so only the text and the status are fixed.)
    let alone = completion(&d, "smollm2-f16", json!({"speculative": false}));
    let drafted_text = completion(&d, "smollm2-f16", json!({}));
    assert_eq!(text(&alone), text(&drafted_text));
    let m = model_status(&d, "smollm2-f16");
    assert_eq!(m["speculation"]["mode"], "draft", "{m}");
    assert_eq!(m["speculation"]["draft"], "smollm2", "{m}");

    // The Ollama API takes the same opt-out in its options: no proposals for that request, the same text as
    // with them. (Ollama's own defaults — repeat_penalty 1.1 — apply, so it is compared with itself.)
    let ollama = |options: serde_json::Value| {
        let mut o = json!({"temperature": 0, "num_predict": 48});
        for (k, v) in options.as_object().unwrap() {
            o[k] = v.clone();
        }
        let r = d.post(
            "/api/chat",
            Some(&d.admin_key),
            &json!({"model": "smollm2", "stream": false,
                    "messages": [{"role": "user", "content": COPY}], "options": o}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["message"]["content"].as_str().unwrap().to_owned()
    };
    let before = metric(&d, "hearth_spec_draft_tokens_total{model=\"smollm2\"}");
    let opted_out = ollama(json!({"speculative": false}));
    assert_eq!(
        metric(&d, "hearth_spec_draft_tokens_total{model=\"smollm2\"}"),
        before,
        "speculative: false proposed nothing"
    );
    assert!(!opted_out.is_empty());
    assert_eq!(ollama(json!({})), opted_out);
}

#[test]
fn a_draft_with_another_tokenizer_or_missing_is_a_clear_load_error() {
    let gemma = demo_model().with_file_name("gemma-3-270m-Q4_K_M.gguf");
    let d = Daemon::start_with(
        &config(
            "[models.smollm2]\ndraft = \"gemma\"\n\
             [models.gemma]\ndraft = \"nowhere\"\n",
        ),
        &[],
    );
    ok_stdout(&d.cli(&[
        "model",
        "import",
        gemma.to_str().unwrap(),
        "--name",
        "gemma",
    ]));
    let r = d.post(
        "/v1/chat/completions",
        Some(&d.admin_key),
        &chat("hi", json!({"max_tokens": 4})),
    );
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("smollm2") && msg.contains("gemma") && msg.contains("tokenizer"),
        "{msg}"
    );
    let mut body = chat("hi", json!({"max_tokens": 4}));
    body["model"] = json!("gemma");
    let r = d.post("/v1/chat/completions", Some(&d.admin_key), &body);
    assert_eq!(r.status, 500, "{}", r.text());
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("nowhere"), "{msg}");
}

#[test]
fn config_check_refuses_a_model_drafting_for_itself_and_a_bad_dtype() {
    let dir = tempfile::tempdir().unwrap();
    for (cfg, want) in [
        (
            "[models.a]\ndraft = \"a\"\n",
            "models.a.draft: a model cannot draft for itself",
        ),
        (
            "[models.a]\ndtype = \"q4\"\n",
            "models.a.dtype: 'q4' (use f16 or f32)",
        ),
    ] {
        let f = dir.path().join("hearth.toml");
        std::fs::write(&f, cfg).unwrap();
        let o = hearth(dir.path(), &["config", "check", f.to_str().unwrap()]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{err}");
    }
}
