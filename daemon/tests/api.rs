//! The HTTP API end to end: the real binary, real model, real HTTP over loopback — OpenAI and Ollama shapes,
//! streaming, JSON mode and the API description. Auth and error paths: `api_errors.rs`.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::time::Duration;

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
    for n in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage["usage"][n], v["usage"][n], "{n}");
    }
    // The repeated prompt was reused from the slot the first request left (all but its last token).
    assert_eq!(
        usage["usage"]["prompt_tokens_details"]["cached_tokens"],
        v["usage"]["prompt_tokens"].as_u64().unwrap() - 1,
        "{usage}"
    );

    // The client's `user` lands on the ledger row; a field not acted on is a 400 naming it.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("Hi", json!({"max_tokens": 2, "user": "household-tablet"})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(d
        .ledger()
        .iter()
        .any(|row| row["client_user"] == "household-tablet"));
    let e = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat(
            "Hi",
            json!({"max_tokens": 2, "prediction": {"type": "content", "content": "x"}}),
        ),
    );
    assert_eq!(e.status, 400);
    assert_eq!(e.json()["error"]["param"], "prediction");

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

    // num_ctx is the request's window: the output ends at it, and a prompt that does not fit is refused.
    let w = d
        .post(
            "/api/generate",
            Some(&k),
            &json!({"model": "smollm2", "prompt": "1, 2, 3, 4,", "raw": true, "stream": false,
                "options": {"temperature": 0, "num_predict": 100, "num_ctx": 12}}),
        )
        .json();
    let used = w["prompt_eval_count"].as_u64().unwrap() + w["eval_count"].as_u64().unwrap();
    assert_eq!(
        (used, w["done_reason"].as_str()),
        (12, Some("length")),
        "{w}"
    );
    let e = d.post(
        "/api/generate",
        Some(&k),
        &json!({"model": "smollm2", "prompt": "1, 2, 3, 4,", "raw": true, "stream": false,
            "options": {"num_ctx": 4}}),
    );
    assert_eq!(e.status, 400, "{}", e.text());
    // An option not acted on is refused by name, never ignored (Ollama ignores it).
    let e = d.post(
        "/api/chat",
        Some(&k),
        &json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}],
            "options": {"typical_p": 0.5}}),
    );
    assert_eq!(e.status, 400);
    assert!(e.json()["error"]
        .as_str()
        .unwrap()
        .contains("'options.typical_p'"));

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
}

/// Structured outputs: whatever the 135M model would say, the text validates against the schema (checked by the
/// independent `jsonschema` crate), in both APIs; a keyword Hearth would not enforce is a 400 naming it.
#[test]
fn structured_outputs_validate_against_their_schema() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 20},
            "age": {"type": "integer"},
            "indoor": {"type": "boolean"},
            "colour": {"enum": ["black", "white", "ginger", "tabby"]},
            "toys": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 1, "maxItems": 3},
            "vet": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/vet"}]}
        },
        "required": ["name", "age", "indoor", "colour", "toys", "vet"],
        "additionalProperties": false,
        "$defs": {"vet": {"type": "object", "properties": {"town": {"type": "string", "maxLength": 16}},
            "required": ["town"]}}
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    for temperature in [0.0, 1.0] {
        let r = d.post(
            "/v1/chat/completions",
            Some(&k),
            &chat(
                "Describe a cat.",
                json!({"max_tokens": 300, "temperature": temperature, "seed": 7,
                    "response_format": {"type": "json_schema",
                        "json_schema": {"name": "cat", "schema": schema, "strict": true}}}),
            ),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        let parsed: Value =
            serde_json::from_str(content).unwrap_or_else(|e| panic!("not JSON ({e}): {content}"));
        assert!(validator.is_valid(&parsed), "{content}");
    }
    // Ollama's format: {schema}, streamed.
    let r = d.post(
        "/api/chat",
        Some(&k),
        &json!({"model": "smollm2", "messages": [{"role": "user", "content": "Describe a cat."}],
            "format": schema, "options": {"temperature": 0, "num_predict": 300}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.ndjson();
    let text: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lines.last().unwrap()["done_reason"], "stop");
    assert!(
        validator.is_valid(&serde_json::from_str(&text).unwrap()),
        "{text}"
    );
    // What Hearth would not enforce is refused by name and place, never ignored.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x",
            "schema": {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}}}}})),
    );
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["error"]["param"], "response_format.json_schema.schema");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("#/properties/when/format"),
        "{e}"
    );
    let r = d.post(
        "/api/chat",
        Some(&k),
        &json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}],
        "format": {"type": "string", "pattern": "^a"}}),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("pattern"));
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat("hi", json!({"response_format": {"type": "json_schema"}})),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "response_format.json_schema");
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 30},
                "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time", "description": "The time in a time zone",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 40}},
                "required": ["zone"]}}}
    ])
}

/// The arguments of a call validate against the schema of the function it names.
fn assert_valid_call(call: &Value, tools: &Value) -> String {
    let name = call["function"]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    let tool = tools
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} is not a declared tool"));
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("text"))
        .expect("arguments are JSON");
    let v = jsonschema::validator_for(&tool["function"]["parameters"]).unwrap();
    assert!(v.is_valid(&args), "{args} against {tool}");
    name
}

/// Tool calling on the real demo model (its template takes no tools, so Hearth's instructions stand in):
/// `required` and a named function force a well-formed call, in both response shapes and both APIs; a
/// conversation with calls and results goes back in; bad tool fields are 400s that name them.
#[test]
fn forced_tool_calls_are_well_formed_and_validate() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let tools = weather_tools();
    let ask = "What is the weather in Paris, in celsius?";
    for (choice, temperature) in [
        (json!("required"), 0.0),
        (json!("required"), 1.0),
        (
            json!({"type": "function", "function": {"name": "get_time"}}),
            0.7,
        ),
    ] {
        let r = d.post(
            "/v1/chat/completions",
            Some(&k),
            &chat(
                ask,
                json!({"tools": tools, "tool_choice": choice, "temperature": temperature,
                              "seed": 3, "max_tokens": 120}),
            ),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let choice0 = &v["choices"][0];
        assert_eq!(choice0["finish_reason"], "tool_calls", "{v}");
        let calls = choice0["message"]["tool_calls"].as_array().expect("calls");
        assert_eq!(calls.len(), 1, "{v}");
        assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(calls[0]["type"], "function");
        let name = assert_valid_call(&calls[0], &tools);
        if choice["type"] == "function" {
            assert_eq!(name, "get_time");
        }
    }
    // Streaming: the call comes as delta.tool_calls (index, id and name, then the arguments).
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat(
            ask,
            json!({"tools": tools, "tool_choice": "required", "stream": true, "max_tokens": 120}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let events: Vec<Value> = r
        .sse()
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let (mut id, mut name, mut args) = (String::new(), String::new(), String::new());
    for e in &events {
        for c in e["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(c["index"], 0);
            id.push_str(c["id"].as_str().unwrap_or(""));
            name.push_str(c["function"]["name"].as_str().unwrap_or(""));
            args.push_str(c["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert!(id.starts_with("call_"), "{events:?}");
    let streamed = json!({"function": {"name": name, "arguments": args}});
    assert_valid_call(&streamed, &tools);
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // The conversation goes on with the call and its result, and the model answers in text.
    let history = json!([
        {"role": "user", "content": ask},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21, \"sky\": \"sunny\"}"}
    ]);
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "smollm2", "messages": history, "tools": tools, "tool_choice": "none",
                "temperature": 0, "max_tokens": 40}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );
    assert!(
        v["usage"]["prompt_tokens"].as_u64().unwrap() > 60,
        "the call and its result are in the prompt: {v}"
    );

    // Ollama: tools in its shape; auto lets the model choose, and whatever it chose is well-formed.
    let r = d.post(
        "/api/chat",
        Some(&k),
        &json!({"model": "smollm2", "stream": false, "tools": tools,
                "messages": [{"role": "user", "content": ask}],
                "options": {"temperature": 0, "num_predict": 120}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    for c in v["message"]["tool_calls"].as_array().into_iter().flatten() {
        let as_openai = json!({"function": {"name": c["function"]["name"],
                                            "arguments": c["function"]["arguments"].to_string()}});
        assert_valid_call(&as_openai, &tools);
    }
    // Ollama history with a call (arguments as an object) and a tool result by tool name.
    let r = d.post(
        "/api/chat",
        Some(&k),
        &json!({"model": "smollm2", "stream": false, "tools": tools, "options": {"num_predict": 8},
                "messages": [{"role": "user", "content": ask},
                    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                        "arguments": {"city": "Paris", "unit": "celsius"}}}]},
                    {"role": "tool", "tool_name": "get_weather", "content": "21 degrees"}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // Bad tool fields: a 400 that names the field.
    let bad = [
        (
            json!({"tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice.function.name",
        ),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (
            json!({"tools": tools, "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters":
            {"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}}}],
            "tool_choice": "required"}),
            "tools[0].function.parameters",
        ),
        (
            json!({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}),
            "tools[0].type",
        ),
        (
            json!({"tools": [{"type": "function", "function": {"name": "a b"}}]}),
            "tools[0].function.name",
        ),
        (
            json!({"tools": tools, "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (json!({"parallel_tool_calls": false}), "parallel_tool_calls"),
    ];
    for (extra, param) in bad {
        let r = d.post("/v1/chat/completions", Some(&k), &chat("hi", extra.clone()));
        assert_eq!(r.status, 400, "{extra}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{extra}");
    }
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "smollm2", "messages": [{"role": "tool", "content": "21"}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "messages[0].tool_call_id");
    // A result for a call nobody made.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "smollm2", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_b", "content": "21"}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "messages[1].tool_call_id");
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "smollm2", "messages": [{"role": "assistant", "content": null,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"]["param"],
        "messages[0].tool_calls[0].function.arguments"
    );
    // /api/show: the demo model's template renders no tools itself.
    let r = d.post("/api/show", Some(&k), &json!({"model": "smollm2"}));
    assert_eq!(r.json()["capabilities"], json!(["completion"]));
}

/// Embeddings from the real all-MiniLM-L6-v2 folder, imported like any model: OpenAI's shape (floats and
/// base64, several inputs), Ollama's two endpoints, the same vectors everywhere, charged and on the ledger;
/// a generating model refuses embeddings and an embedding model refuses chat.
#[test]
fn embeddings_in_both_shapes() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let folder = demo_model().parent().unwrap().join("all-MiniLM-L6-v2");
    ok_stdout(&d.cli(&[
        "model",
        "import",
        folder.to_str().unwrap(),
        "--name",
        "minilm",
    ]));
    let texts = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ];
    let r = d.post(
        "/v1/embeddings",
        Some(&k),
        &json!({"model": "minilm", "input": texts, "user": "u-7"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-request-id").is_some());
    let v = r.json();
    assert_eq!(v["object"], "list");
    let vecs: Vec<Vec<f64>> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(
                (d["object"].as_str(), d["index"].as_u64()),
                (Some("embedding"), Some(i as u64))
            );
            serde_json::from_value(d["embedding"].clone()).unwrap()
        })
        .collect();
    assert_eq!(vecs.len(), 3);
    assert!(vecs.iter().all(|x| x.len() == 384));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    // sentence-transformers' documented figures for these sentences.
    assert!(
        (dot(&vecs[0], &vecs[1]) - 0.666).abs() < 2e-3,
        "{}",
        dot(&vecs[0], &vecs[1])
    );
    assert!((dot(&vecs[0], &vecs[2]) - 0.105).abs() < 2e-3);
    let tokens = v["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(v["usage"]["total_tokens"].as_u64(), Some(tokens));
    assert!(tokens >= 20, "{v}");
    // base64: the same floats, little-endian.
    let r = d.post(
        "/v1/embeddings",
        Some(&k),
        &json!({"model": "minilm", "input": texts[0], "encoding_format": "base64"}),
    );
    let b64 = r.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = base64_decode(&b64);
    let floats: Vec<f64> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect();
    assert!(floats
        .iter()
        .zip(&vecs[0])
        .all(|(a, b)| (a - b).abs() < 1e-6));
    // Token ids of the model's vocabulary, as given: the text's own ids give the text's vector.
    let ids = json!([101, 1996, 4633, 2003, 8403, 2651, 1012, 102]); // "The weather is lovely today."
    let r = d.post(
        "/v1/embeddings",
        Some(&k),
        &json!({"model": "minilm", "input": [ids]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let from_ids: Vec<f64> =
        serde_json::from_value(r.json()["data"][0]["embedding"].clone()).unwrap();
    assert!(from_ids
        .iter()
        .zip(&vecs[0])
        .all(|(a, b)| (a - b).abs() < 1e-6));
    // Ollama: /api/embed (several inputs) and /api/embeddings (one prompt) give the same vectors.
    let r = d.post(
        "/api/embed",
        Some(&k),
        &json!({"model": "minilm", "input": texts}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let o = r.json();
    assert_eq!(o["prompt_eval_count"].as_u64(), Some(tokens));
    let first: Vec<f64> = serde_json::from_value(o["embeddings"][0].clone()).unwrap();
    assert!(first
        .iter()
        .zip(&vecs[0])
        .all(|(a, b)| (a - b).abs() < 1e-6));
    let r = d.post(
        "/api/embeddings",
        Some(&k),
        &json!({"model": "minilm", "prompt": texts[2]}),
    );
    let legacy: Vec<f64> = serde_json::from_value(r.json()["embedding"].clone()).unwrap();
    assert!(legacy
        .iter()
        .zip(&vecs[2])
        .all(|(a, b)| (a - b).abs() < 1e-6));
    // Long input: Ollama truncates by default; OpenAI's shape and truncate: false refuse it by name.
    let long = "word ".repeat(600);
    assert_eq!(
        d.post(
            "/api/embed",
            Some(&k),
            &json!({"model": "minilm", "input": long})
        )
        .status,
        200
    );
    let r = d.post(
        "/api/embed",
        Some(&k),
        &json!({"model": "minilm", "input": long, "truncate": false}),
    );
    assert_eq!(r.status, 400);
    let r = d.post(
        "/v1/embeddings",
        Some(&k),
        &json!({"model": "minilm", "input": long}),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("input"))
    );
    // Bad input, by name; the wrong kind of model, by name.
    for (body, param) in [
        (json!({"model": "minilm", "input": [101, 99999]}), "input"),
        (
            json!({"model": "minilm", "input": [[101, 102], []]}),
            "input",
        ),
        (json!({"model": "minilm", "input": [1.5]}), "input"),
        (
            json!({"model": "minilm", "input": "x", "dimensions": 128}),
            "dimensions",
        ),
        (
            json!({"model": "minilm", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
        (json!({"model": "minilm", "input": []}), "input"),
        (json!({"model": "smollm2", "input": "x"}), "model"),
    ] {
        let r = d.post("/v1/embeddings", Some(&k), &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["error"]["param"], param, "{body}");
    }
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "minilm",
        "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("model"))
    );
    // Listed as a model, and on the ledger with its tokens and the client's user.
    let r = d.get("/v1/models", Some(&k));
    assert!(r.text().contains("\"minilm\""));
    let r = d.post("/api/show", Some(&k), &json!({"model": "minilm"}));
    assert_eq!(r.json()["capabilities"], json!(["embedding"]));
    let m = d.get("/metrics", Some(&k)).text();
    assert!(
        m.contains(r#"hearth_requests_total{api="openai",model="minilm",status="200"}"#),
        "embeddings count in the request metric"
    );
    let rows = d.ledger();
    let row = rows
        .iter()
        .find(|r| r.get("client_user").map(String::as_str) == Some("u-7"))
        .expect("an embeddings row");
    assert_eq!(
        row.get("prompt_tokens").map(String::as_str),
        Some(tokens.to_string().as_str())
    );
    assert_eq!(row.get("status").map(String::as_str), Some("ok"));
    assert_eq!(row.get("endpoint").map(String::as_str), Some("embeddings"));
}

fn base64_decode(s: &str) -> Vec<u8> {
    const A: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.chars().filter(|&c| c != '=') {
        bits = (bits << 6) | A.find(c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// A copy of the demo model with another chat template: how a model whose own template takes tools, or
/// thinks, is served (the same weights; only the template differs).
fn with_template(dst: &std::path::Path, template: &str) {
    use hearth_engine::gguf::{writer::GgufWriter, GgufFile, MetaValue};
    let g = GgufFile::open(demo_model()).unwrap();
    let mut w = GgufWriter::default();
    for (k, v) in &g.metadata {
        if k != "tokenizer.chat_template" {
            w.meta(k, v.clone());
        }
    }
    w.meta(
        "tokenizer.chat_template",
        MetaValue::String(template.into()),
    );
    for t in &g.tensors {
        w.tensor(&t.name, &t.dims, t.ty, g.tensor_data(t).to_vec());
    }
    w.write_to(dst).unwrap();
}

const CHATML_TURNS: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>\n{{ {'name': c.function.name, 'arguments': c.function.arguments} | tojson }}\n</tool_call>{% endfor %}{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}";

/// Templates of their own: one that renders `tools` (Hermes, as Qwen's) is given them and a forced call
/// still validates; one that thinks (Qwen3's switch) returns its thoughts apart — `reasoning_content`,
/// `message.thinking` — and `think: false` switches them off.
#[test]
fn model_templates_with_tools_and_thinking() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let dir = tempfile::tempdir().unwrap();
    let hermes = format!(
        "{{% if tools %}}<|im_start|>system\nYou may call these tools:\n<tools>{{% for t in tools %}}\n{{{{ t | tojson }}}}{{% endfor %}}\n</tools>\nCall one as <tool_call>\n{{\"name\": ..., \"arguments\": ...}}\n</tool_call><|im_end|>\n{{% endif %}}{CHATML_TURNS}{{% if add_generation_prompt %}}<|im_start|>assistant\n{{% endif %}}"
    );
    let thinking = format!(
        "{CHATML_TURNS}{{% if add_generation_prompt %}}<|im_start|>assistant\n{{% if enable_thinking is defined and enable_thinking is false %}}<think>\n\n</think>\n\n{{% else %}}<think>\n{{% endif %}}{{% endif %}}"
    );
    for (name, t) in [("hermes", &hermes), ("thinker", &thinking)] {
        let f = dir.path().join(format!("{name}.gguf"));
        with_template(&f, t);
        ok_stdout(&d.cli(&["model", "import", f.to_str().unwrap(), "--name", name]));
    }
    let caps = |m: &str| {
        d.post("/api/show", Some(&k), &json!({"model": m})).json()["capabilities"].clone()
    };
    assert_eq!(caps("hermes"), json!(["completion", "tools"]));
    assert_eq!(caps("thinker"), json!(["completion", "thinking"]));

    let tools = weather_tools();
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "hermes", "messages": [{"role": "user", "content": "Weather in Oslo?"}],
                "tools": tools, "tool_choice": "required", "temperature": 0, "max_tokens": 80}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert_valid_call(&v["choices"][0]["message"]["tool_calls"][0], &tools);

    // Thinking on (the template's default): the output starts inside the block, so it is thought.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "thinker", "messages": [{"role": "user", "content": "What is 2+2?"}],
                "temperature": 0, "max_tokens": 24}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let thought = v["choices"][0]["message"]["reasoning_content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!thought.is_empty(), "{v}");
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "thinker", "messages": [{"role": "user", "content": "What is 2+2?"}],
                "temperature": 0, "max_tokens": 24, "stream": true}),
    );
    let streamed: String = r
        .sse()
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            let v: Value = serde_json::from_str(e).unwrap();
            v["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, thought);
    // Ollama: think true → message.thinking; think false → the switch is off: an answer, no thoughts.
    let ask = |think: bool| {
        d.post(
            "/api/chat",
            Some(&k),
            &json!({"model": "thinker", "stream": false, "think": think,
                    "messages": [{"role": "user", "content": "What is 2+2?"}],
                    "options": {"temperature": 0, "num_predict": 24}}),
        )
        .json()
    };
    let on = ask(true);
    assert!(
        !on["message"]["thinking"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{on}"
    );
    let off = ask(false);
    assert!(off["message"].get("thinking").is_none(), "{off}");
    assert!(
        !off["message"]["content"].as_str().unwrap().is_empty(),
        "{off}"
    );
    // A model that does not think refuses think: true, by name.
    let r = d.post(
        "/api/chat",
        Some(&k),
        &json!({"model": "smollm2", "think": true, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("think"),
        "{}",
        r.text()
    );
}

/// `n` choices and lists of prompts: each choice a sequence of the batch, indexed in OpenAI's order, usage
/// summed, streamed interleaved with one `[DONE]`; each admitted and on the ledger.
#[test]
fn several_choices_and_prompts() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat(
            "Name a colour.",
            json!({"n": 3, "temperature": 1.0, "seed": 5, "max_tokens": 8}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert!(c["message"]["content"].is_string());
    }
    // Seeds seed, seed+1, seed+2: the same request again gives the same three choices.
    let again = d
        .post(
            "/v1/chat/completions",
            Some(&k),
            &chat(
                "Name a colour.",
                json!({"n": 3, "temperature": 1.0, "seed": 5, "max_tokens": 8}),
            ),
        )
        .json();
    assert_eq!(again["choices"], v["choices"]);
    let completion: u64 = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion >= 3, "{v}");
    // Streamed: both choices, each ends once, then one [DONE].
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &chat(
            "Say hi.",
            json!({"n": 2, "max_tokens": 6, "stream": true,
                                "stream_options": {"include_usage": true}}),
        ),
    );
    let events = r.sse();
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let parsed: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    for i in 0..2 {
        let ends = parsed
            .iter()
            .filter(|e| {
                e["choices"][0]["index"] == i && !e["choices"][0]["finish_reason"].is_null()
            })
            .count();
        assert_eq!(ends, 1, "choice {i}: {events:?}");
    }
    let usage = &parsed.last().unwrap()["usage"];
    assert!(usage["completion_tokens"].as_u64().unwrap() >= 2, "{usage}");
    // Completions: a list of prompts, n each, prompt by prompt.
    let r = d.post(
        "/v1/completions",
        Some(&k),
        &json!({"model": "smollm2", "prompt": ["1, 2, 3,", "a, b, c,"], "n": 2, "max_tokens": 3,
                "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let texts: Vec<&str> = v["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 4);
    assert!(
        texts[0].starts_with(" 4") && texts[1] == texts[0],
        "{texts:?}"
    );
    assert!(
        texts[2].starts_with(" d") && texts[3] == texts[2],
        "{texts:?}"
    );
    // Too many: a 400 naming the field; nothing ran.
    for (path, body, param) in [
        ("/v1/chat/completions", chat("hi", json!({"n": 9})), "n"),
        (
            "/v1/completions",
            json!({"model": "smollm2", "prompt": ["a", "b", "c"], "n": 3}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": "smollm2", "prompt": []}),
            "prompt",
        ),
    ] {
        let r = d.post(path, Some(&k), &body);
        assert_eq!(
            (r.status, r.json()["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}"
        );
    }
    // Every choice is a request of its own on the ledger: 3 + 3 + 2 + 4.
    assert_eq!(d.ledger().len(), 12);
}

/// Ollama's model management for admins: /api/copy gives a model a second name (the same files, linked),
/// /api/delete removes one; members get 403 before their body is read; unknown names are 404.
#[test]
fn ollama_copy_and_delete_models() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let r = d.post(
        "/api/copy",
        Some(&k),
        &json!({"source": "smollm2", "destination": "house-chat"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let tags = d.get("/api/tags", Some(&k)).text();
    assert!(
        tags.contains("house-chat") && tags.contains("smollm2"),
        "{tags}"
    );
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "house-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    );
    assert_eq!(r.status, 200, "the copy serves: {}", r.text());
    // Taken names and unknown sources.
    let r = d.post(
        "/api/copy",
        Some(&k),
        &json!({"source": "smollm2", "destination": "house-chat"}),
    );
    assert_eq!(r.status, 409);
    let r = d.post(
        "/api/copy",
        Some(&k),
        &json!({"source": "nope", "destination": "x"}),
    );
    assert_eq!(r.status, 404);
    // A member: 403 whatever the body.
    let m = d.member_key("bob", None);
    assert_eq!(
        d.post("/api/copy", Some(&m), &json!({"junk": 1})).status,
        403
    );
    let del = |key: &str, body: &Value| {
        request(
            &d.addr,
            "DELETE",
            "/api/delete",
            Some(key),
            body.to_string().as_bytes(),
        )
    };
    assert_eq!(del(&m, &json!({"model": "house-chat"})).status, 403);
    assert_eq!(del(&k, &json!({"model": "house-chat"})).status, 200);
    assert!(!d.get("/api/tags", Some(&k)).text().contains("house-chat"));
    assert_eq!(del(&k, &json!({"model": "house-chat"})).status, 404);
    // The original is untouched.
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    );
    assert_eq!(r.status, 200);
}

/// The bytes an entry list spells (OpenAI chat's and Ollama's `{token, logprob, bytes, top_logprobs}`).
fn spelled(entries: &Value) -> String {
    let bytes: Vec<u8> = entries
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["bytes"].as_array().unwrap().clone())
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    String::from_utf8(bytes).unwrap()
}

/// Log-probabilities in every shape: OpenAI chat (whole and streamed), legacy completions (whole and streamed),
/// Ollama chat and generate. The entries spell the answer exactly (a stop string's tokens have none), greedy
/// picks the likeliest, the alternatives come in order, and the streamed entries are the whole answer's.
#[test]
fn log_probabilities_in_every_shape() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let body = chat(
        "Count from one to ten in words, separated by commas.",
        json!({"max_tokens": 24, "temperature": 0, "logprobs": true, "top_logprobs": 3, "stop": [", five"]}),
    );
    let r = d.post("/v1/chat/completions", Some(&k), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let choice = &v["choices"][0];
    let content = choice["logprobs"]["content"].clone();
    let text = choice["message"]["content"].as_str().unwrap();
    assert_eq!(spelled(&content), text, "{v}");
    let n = content.as_array().unwrap().len();
    assert!(n >= 1 && n as u64 <= v["usage"]["completion_tokens"].as_u64().unwrap());
    for e in content.as_array().unwrap() {
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{e}");
        assert_eq!(
            top[0]["token"], e["token"],
            "greedy takes the likeliest: {e}"
        );
        assert_eq!(top[0]["logprob"], e["logprob"]);
        let lps: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(lps.windows(2).all(|w| w[0] >= w[1]) && lps[0] <= 0.0, "{e}");
    }
    // Without the switch: null, as OpenAI's.
    let plain = d
        .post(
            "/v1/chat/completions",
            Some(&k),
            &chat("Say hi.", json!({"max_tokens": 4})),
        )
        .json();
    assert!(plain["choices"][0]["logprobs"].is_null(), "{plain}");
    // Streamed: the chunks' entries are the whole answer's.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = d.post("/v1/chat/completions", Some(&k), &streamed).sse();
    let mut entries = Vec::new();
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let c: Value = serde_json::from_str(e).unwrap();
        if let Some(list) = c["choices"][0]["logprobs"]["content"].as_array() {
            entries.extend(list.iter().cloned());
        }
    }
    assert_eq!(Value::Array(entries), content);

    // Legacy completions: columns of equal length, tokens spelling the text, offsets counting characters.
    let body = json!({"model": "smollm2", "prompt": "1, 2, 3,", "max_tokens": 6, "temperature": 0,
                      "logprobs": 2});
    let v = d.post("/v1/completions", Some(&k), &body).json();
    let lp = &v["choices"][0]["logprobs"];
    let tokens: Vec<&str> = lp["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens.concat(), v["choices"][0]["text"].as_str().unwrap());
    assert_eq!(lp["token_logprobs"].as_array().unwrap().len(), tokens.len());
    let offsets: Vec<u64> = lp["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    let mut at = 0;
    for (t, o) in tokens.iter().zip(&offsets) {
        assert_eq!(*o, at);
        at += t.chars().count() as u64;
    }
    for (i, top) in lp["top_logprobs"].as_array().unwrap().iter().enumerate() {
        // The two likeliest and the chosen one (greedy: among them).
        assert_eq!(top.as_object().unwrap().len(), 2, "{top}");
        assert!(top.get(tokens[i]).is_some(), "{top}");
    }
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let mut joined = Vec::new();
    for e in d
        .post("/v1/completions", Some(&k), &streamed)
        .sse()
        .iter()
        .filter(|e| *e != "[DONE]")
    {
        let c: Value = serde_json::from_str(e).unwrap();
        if let Some(list) = c["choices"][0]["logprobs"]["text_offset"].as_array() {
            joined.extend(list.iter().map(|o| o.as_u64().unwrap()));
        }
    }
    assert_eq!(joined, offsets);

    // Ollama: `logprobs` beside the message or response, whole and streamed.
    let v = d
        .post(
            "/api/chat",
            Some(&k),
            &json!({"model": "smollm2", "stream": false, "logprobs": true, "top_logprobs": 2,
                    "messages": [{"role": "user", "content": "Say hello."}],
                    "options": {"temperature": 0, "num_predict": 8}}),
        )
        .json();
    assert_eq!(
        spelled(&v["logprobs"]),
        v["message"]["content"].as_str().unwrap(),
        "{v}"
    );
    let r = d.post(
        "/api/generate",
        Some(&k),
        &json!({"model": "smollm2", "prompt": "1, 2, 3,", "raw": true, "logprobs": true,
                "options": {"temperature": 0, "num_predict": 6}}),
    );
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (mut text, mut entries) = (String::new(), Vec::new());
    for l in &lines {
        text.push_str(l["response"].as_str().unwrap());
        entries.extend(l["logprobs"].as_array().cloned().unwrap_or_default());
    }
    assert_eq!(spelled(&Value::Array(entries)), text, "{lines:?}");

    // Bad input: a 400 naming the field, in both front ends.
    for (path, body, param) in [
        (
            "/v1/chat/completions",
            chat("hi", json!({"top_logprobs": 2})),
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            chat("hi", json!({"logprobs": true, "top_logprobs": 21})),
            "top_logprobs",
        ),
        (
            "/v1/completions",
            json!({"model": "smollm2", "prompt": "a", "logprobs": -1}),
            "logprobs",
        ),
    ] {
        let r = d.post(path, Some(&k), &body);
        assert_eq!(
            (r.status, r.json()["error"]["param"].as_str()),
            (400, Some(param)),
            "{body}"
        );
    }
    let r = d.post(
        "/api/chat",
        Some(&k),
        &json!({"model": "smollm2", "top_logprobs": 2,
                "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("top_logprobs"), "{}", r.text());
}

/// Ollama's /api/create: a model derived from another answers exactly as the base model does when given the same
/// system message, conversation prefix and template by hand; its parameters are defaults a request overrides;
/// /api/show tells what it changes; a second create replaces it; bad bodies are refused by field.
#[test]
fn ollama_create_derives_a_model() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let create = |body: Value| d.post("/api/create", Some(&k), &body);
    let chat_of = |model: &str, messages: Value, options: Value| {
        let r = d.post(
            "/api/chat",
            Some(&k),
            &json!({"model": model, "stream": false, "messages": messages, "options": options}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let greedy = json!({"temperature": 0, "num_predict": 12});
    let system = "You are a lighthouse keeper. Answer in one sentence.";
    let prefix = json!([{"role": "user", "content": "My name is Ada."},
                        {"role": "assistant", "content": "Hello Ada, welcome to the lighthouse."}]);
    let r = create(
        json!({"model": "keeper", "from": "smollm2", "system": system,
                          "messages": prefix, "parameters": {"num_predict": 3, "stop": ["\n\n"]}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert_eq!(
        text.lines().last(),
        Some(r#"{"status":"success"}"#),
        "{text}"
    );

    // The derived model = the base with the same messages written out.
    let ask = json!([{"role": "user", "content": "What is my name?"}]);
    let derived = chat_of("keeper", ask.clone(), greedy.clone());
    let mut by_hand = vec![json!({"role": "system", "content": system})];
    by_hand.extend(prefix.as_array().unwrap().iter().cloned());
    by_hand.extend(ask.as_array().unwrap().iter().cloned());
    let base = chat_of("smollm2", Value::Array(by_hand), greedy.clone());
    assert_eq!(derived["message"]["content"], base["message"]["content"]);
    assert_eq!(derived["prompt_eval_count"], base["prompt_eval_count"]);
    // A conversation's own system message wins over the model's.
    let own =
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]);
    let a = chat_of("keeper", own, greedy.clone());
    let mut b_msgs = vec![json!({"role": "system", "content": "Be brief."})];
    b_msgs.extend(prefix.as_array().unwrap().iter().cloned());
    b_msgs.push(json!({"role": "user", "content": "Hi"}));
    let b = chat_of("smollm2", Value::Array(b_msgs), greedy.clone());
    assert_eq!(a["prompt_eval_count"], b["prompt_eval_count"]);

    // Parameters are defaults: num_predict 3 when the request says nothing, the request's own otherwise.
    let v = chat_of("keeper", ask.clone(), json!({"temperature": 0}));
    assert!(v["eval_count"].as_u64().unwrap() <= 3, "{v}");
    let v = chat_of(
        "keeper",
        ask.clone(),
        json!({"temperature": 0, "num_predict": 6}),
    );
    assert!(v["eval_count"].as_u64().unwrap() > 3, "{v}");
    // Through OpenAI's API too.
    let v = d
        .post(
            "/v1/chat/completions",
            Some(&k),
            &json!({"model": "keeper", "messages": ask, "temperature": 0}),
        )
        .json();
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap() <= 3,
        "{v}"
    );

    // /api/show tells what it changes.
    let show = d
        .post("/api/show", Some(&k), &json!({"model": "keeper"}))
        .json();
    assert_eq!(show["system"], system);
    assert_eq!(show["details"]["parent_model"], "smollm2");
    let params = show["parameters"].as_str().unwrap();
    assert!(
        params.contains("num_predict 3") && params.contains("stop \"\\n\\n\""),
        "{params}"
    );
    assert!(show["modelfile"]
        .as_str()
        .unwrap()
        .starts_with("# Hearth model keeper\nFROM smollm2\n"));

    // Its own template, and a second create replaces the first (stream: false gives one status).
    let template = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:";
    let r = create(
        json!({"model": "keeper", "from": "smollm2", "template": template, "stream": false}),
    );
    assert_eq!((r.status, r.json()), (200, json!({"status": "success"})));
    let show = d
        .post("/api/show", Some(&k), &json!({"model": "keeper"}))
        .json();
    assert_eq!(show["template"], template);
    assert!(show.get("system").is_none(), "replaced: {show}");
    let derived = chat_of(
        "keeper",
        json!([{"role": "user", "content": "Hi"}]),
        greedy.clone(),
    );
    let raw = d
        .post(
            "/api/generate",
            Some(&k),
            &json!({"model": "smollm2", "prompt": "user: Hi\nassistant:", "raw": true, "stream": false,
                    "options": greedy}),
        )
        .json();
    assert_eq!(derived["message"]["content"], raw["response"], "{raw}");
    // A model made from a derived one keeps what it does not change.
    let r = create(json!({"model": "keeper2", "from": "keeper", "system": "Be kind."}));
    assert_eq!(r.status, 200, "{}", r.text());
    let show = d
        .post("/api/show", Some(&k), &json!({"model": "keeper2"}))
        .json();
    assert_eq!(
        (show["template"].as_str(), show["system"].as_str()),
        (Some(template), Some("Be kind."))
    );

    // Refusals: by field, before anything is written.
    for (body, status, needle) in [
        (
            json!({"model": "x", "from": "smollm2", "template": "{{ .Prompt }}"}),
            400,
            "template",
        ),
        (
            json!({"model": "x", "from": "smollm2", "parameters": {"mirostat": 1}}),
            400,
            "mirostat",
        ),
        (
            json!({"model": "x", "from": "smollm2", "quantize": "q4_K_M"}),
            400,
            "quantize",
        ),
        (json!({"model": "x"}), 400, "from"),
        (json!({"model": "x", "from": "nope"}), 404, "nope"),
        (
            json!({"model": "smollm2", "from": "keeper"}),
            409,
            "smollm2",
        ),
        (
            json!({"model": "bad/name", "from": "smollm2"}),
            400,
            "bad/name",
        ),
    ] {
        let r = create(body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(needle), "{body}: {}", r.text());
    }
    assert!(!d.get("/api/tags", Some(&k)).text().contains("\"x\""));
    let m = d.member_key("bob", None);
    assert_eq!(
        d.post("/api/create", Some(&m), &json!({"junk": 1})).status,
        403
    );
}

/// Ollama's /api/pull over the server's catalog: Ollama's progress lines and a served model; a file that is not
/// the pinned one is refused and nothing is imported; names outside the catalog are 404; a plain http:// entry
/// without a digest needs `insecure`; members get 403; an imported model is not fetched again.
#[test]
fn ollama_pull_from_the_catalog() {
    let base = serve_file(demo_model());
    let sha = {
        use sha2::Digest;
        let bytes = std::fs::read(demo_model()).unwrap();
        format!("{:x}", sha2::Sha256::digest(&bytes))
    };
    let config = format!(
        "{BASE_CONFIG}\n[catalog.\"tiny:q4\"]\nurl = \"{base}/ok.gguf\"\nsha256 = \"{sha}\"\n\
         [catalog.unpinned]\nurl = \"{base}/ok.gguf\"\n\
         [catalog.wrong]\nurl = \"{base}/ok.gguf\"\nsha256 = \"{}\"\n\
         [catalog.junk]\nurl = \"{base}/junk.gguf\"\nsha256 = \"{}\"\n",
        "0".repeat(64),
        "1".repeat(64)
    );
    let d = Daemon::start_with(&config, &[]);
    let k = d.admin_key.clone();
    let r = d.post("/api/pull", Some(&k), &json!({"model": "tiny:q4"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let lines: Vec<Value> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0], json!({"status": "pulling manifest"}));
    assert_eq!(
        lines.last().unwrap(),
        &json!({"status": "success"}),
        "{lines:?}"
    );
    let size = std::fs::metadata(demo_model()).unwrap().len();
    let progress: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("completed").is_some())
        .collect();
    let done = progress.last().unwrap();
    assert_eq!(
        (done["completed"].as_u64(), done["total"].as_u64()),
        (Some(size), Some(size))
    );
    assert_eq!(done["digest"], format!("sha256:{sha}"));
    assert_eq!(done["status"], format!("pulling {}", &sha[..12]));
    let r = d.post(
        "/api/generate",
        Some(&k),
        &json!({"model": "tiny:q4", "prompt": "1, 2, 3,", "raw": true, "stream": false,
                "options": {"num_predict": 2}}),
    );
    assert_eq!(r.status, 200, "the pulled model serves: {}", r.text());
    // Pulled again: nothing to fetch.
    let r = d.post(
        "/api/pull",
        Some(&k),
        &json!({"model": "tiny:q4", "stream": false}),
    );
    assert_eq!((r.status, r.json()), (200, json!({"status": "success"})));

    // Another file than the pinned one: refused, nothing imported (502 whole, an error line streamed).
    let r = d.post(
        "/api/pull",
        Some(&k),
        &json!({"model": "wrong", "stream": false}),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("sha256"), "{}", r.text());
    let r = d.post("/api/pull", Some(&k), &json!({"model": "junk"}));
    let last: Value = serde_json::from_str(r.text().lines().last().unwrap()).unwrap();
    assert!(last["error"].as_str().is_some(), "{last}");
    let tags = d.get("/api/tags", Some(&k)).text();
    assert!(!tags.contains("wrong") && !tags.contains("junk"), "{tags}");

    // Plain http:// without a digest: only with `insecure`.
    let r = d.post("/api/pull", Some(&k), &json!({"model": "unpinned"}));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("insecure"), "{}", r.text());
    let r = d.post(
        "/api/pull",
        Some(&k),
        &json!({"model": "unpinned", "insecure": true, "stream": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // A URL: named after its file.
    let r = d.post(
        "/api/pull",
        Some(&k),
        &json!({"model": format!("{base}/ok.gguf"), "insecure": true, "stream": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(d.get("/api/tags", Some(&k)).text().contains("\"ok\""));
    let r = d.post(
        "/api/pull",
        Some(&k),
        &json!({"model": format!("{base}/ok.bin"), "insecure": true}),
    );
    assert_eq!(r.status, 400, "{}", r.text());

    let r = d.post("/api/pull", Some(&k), &json!({"model": "llama3.2"}));
    assert_eq!(r.status, 404);
    assert!(r.text().contains("catalog"), "{}", r.text());
    let m = d.member_key("bob", None);
    assert_eq!(
        d.post("/api/pull", Some(&m), &json!({"model": "tiny:q4"}))
            .status,
        403
    );
}

/// A BERT GGUF (`hearth model convert` of the MiniLM folder, as llama.cpp's converter writes it) imports as an
/// embedding model and serves the folder's vectors; it is not for generation.
#[test]
fn a_bert_gguf_serves_embeddings() {
    let d = Daemon::start();
    let k = d.admin_key.clone();
    let folder = demo_model().parent().unwrap().join("all-MiniLM-L6-v2");
    let out = d.state.path().join("minilm-f16.gguf");
    ok_stdout(&d.cli(&[
        "model",
        "convert",
        folder.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    ok_stdout(&d.cli(&[
        "model",
        "import",
        out.to_str().unwrap(),
        "--name",
        "minilm-gguf",
    ]));
    ok_stdout(&d.cli(&[
        "model",
        "import",
        folder.to_str().unwrap(),
        "--name",
        "minilm",
    ]));
    let vector = |model: &str| -> Vec<f64> {
        let r = d.post(
            "/v1/embeddings",
            Some(&k),
            &json!({"model": model, "input": "The weather is lovely today.", "encoding_format": "float"}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (a, b) = (vector("minilm-gguf"), vector("minilm"));
    let cos = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>();
    assert!(cos > 0.9999, "cosine {cos}");
    let show = d
        .post("/api/show", Some(&k), &json!({"model": "minilm-gguf"}))
        .json();
    assert_eq!(show["capabilities"], json!(["embedding"]));
    assert_eq!(show["details"]["family"], "bert");
    let r = d.post(
        "/v1/chat/completions",
        Some(&k),
        &json!({"model": "minilm-gguf", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // A BitNet-only flag on an embedding folder is refused with the reason.
    let o = d.cli(&[
        "model",
        "convert",
        folder.to_str().unwrap(),
        "--out",
        "/tmp/x.gguf",
        "--format",
        "i2_s",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("f16"));
}
