//! What constrained decoding costs: generation speed with no constraint, in JSON mode, and under a JSON Schema,
//! on the same prompt, greedy, one sequence. The schema asks for more items than the run generates, so every
//! step is constrained (none ends early). Prints tokens/s and the ratio to unconstrained decoding.
//! `cargo bench -p hearth-engine --bench constrained -- MODEL.gguf [--threads 2] [--tokens 128] [--reps 3]`

use hearth_engine::schema::Grammar;
use hearth_engine::{
    ChatMessage, Event, GenerateRequest, LoadOptions, LoadedModel, SamplingParams,
};
use std::sync::Arc;
use std::time::Instant;

fn arg(name: &str) -> Option<String> {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1).cloned())
}

fn main() {
    let Some(path) = std::env::args()
        .skip(1)
        .find(|a| a.ends_with(".gguf") && !a.starts_with("--"))
    else {
        eprintln!("usage: cargo bench -p hearth-engine --bench constrained -- MODEL.gguf [--threads N] [--tokens N] [--reps N]");
        return;
    };
    let threads: usize = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(2);
    let tokens: usize = arg("--tokens").and_then(|s| s.parse().ok()).unwrap_or(128);
    let reps: usize = arg("--reps").and_then(|s| s.parse().ok()).unwrap_or(3);
    let lm = LoadedModel::load(&path, &LoadOptions::default(), threads).expect("model loads");
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"items": {"type": "array", "minItems": 100, "items": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 24}, "qty": {"type": "integer"},
                           "aisle": {"enum": ["produce", "dairy", "bakery", "frozen"]}},
            "required": ["name", "qty", "aisle"]}}},
        "required": ["items"]
    });
    let grammar = Arc::new(Grammar::compile(&schema).expect("schema compiles"));
    let prompt = lm
        .chat_prompt(&[ChatMessage::new(
            "user",
            "List a week of groceries for a family of four as JSON: items with name, qty and aisle.",
        )])
        .expect("prompt");
    println!("constrained decoding, {tokens} tokens greedy, {threads} threads, best of {reps}");
    let mut base = 0.0;
    for (mode, json, schema) in [
        ("none", false, None),
        ("json_object", true, None),
        ("json_schema", false, Some(grammar.clone())),
    ] {
        let mut best = 0.0f64;
        let mut text = String::new();
        for _ in 0..reps {
            let mut batch = lm.new_batch(1, prompt.len() + tokens + 8);
            batch
                .add(GenerateRequest {
                    prompt: prompt.clone(),
                    max_tokens: tokens,
                    sampling: SamplingParams {
                        temperature: 0.0,
                        ..Default::default()
                    },
                    stop: Vec::new(),
                    ignore_eos: true,
                    json_object: json,
                    schema: schema.clone(),
                    no_speculation: true,
                    logprobs: None,
                })
                .expect("request");
            // The first step is the prompt; time the decoding steps after it.
            let mut started = None;
            let mut generated = 0usize;
            text.clear();
            while !batch.is_empty() {
                for ev in batch.step() {
                    match ev {
                        Event::Token { text: t, .. } => text.push_str(&t),
                        Event::Finished { text: t, usage, .. } => {
                            text.push_str(&t);
                            generated = usage.completion_tokens;
                        }
                    }
                }
                started.get_or_insert_with(Instant::now);
            }
            let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
            best = best.max((generated.saturating_sub(1)) as f64 / secs);
        }
        if mode == "none" {
            base = best;
        }
        println!(
            "{mode:>12}: {best:7.1} tokens/s  ({:.3}x of none)  {:?}",
            best / base,
            text.chars().take(70).collect::<String>()
        );
    }
}
