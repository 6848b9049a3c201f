//! Log-probabilities of generated tokens on a real model: each entry is the log-softmax of its position's logits
//! (checked against a teacher-forced forward of the whole output, normalised here in f64), the alternatives are
//! the most likely tokens in order, a stop string's tokens have no entries, and speculative decoding reports the
//! same numbers as plain decoding.
#![allow(clippy::unwrap_used)]

mod common;

use hearth_engine::logprobs::TokenLogprob;
use hearth_engine::{
    Event, GenerateRequest, LoadOptions, LoadedModel, SamplingParams, SeqId, Speculation,
};
use std::sync::OnceLock;

fn lm() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| {
        LoadedModel::load(common::model(common::SMOLLM2), &LoadOptions::default(), 2).unwrap()
    })
}

/// One sequence's tokens, text and log-probability entries.
struct Run {
    tokens: Vec<u32>,
    text: String,
    entries: Vec<TokenLogprob>,
}

fn run(req: GenerateRequest, spec: Option<Speculation>) -> Run {
    let mut batch = lm().new_batch(1, 512);
    batch.set_speculation(spec);
    let id: SeqId = batch.add(req).unwrap();
    let mut out = Run {
        tokens: vec![],
        text: String::new(),
        entries: vec![],
    };
    for e in batch.run_to_completion() {
        match e {
            Event::Token {
                id: i,
                token,
                text,
                logprobs,
            } if i == id => {
                out.tokens.push(token);
                out.text.push_str(&text);
                out.entries.extend(logprobs);
            }
            Event::Finished {
                id: i,
                text,
                logprobs,
                ..
            } if i == id => {
                out.text.push_str(&text);
                out.entries.extend(logprobs);
            }
            _ => {}
        }
    }
    out
}

fn request(prompt: &str, n: usize, top: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: lm().raw_prompt(prompt).unwrap(),
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        ignore_eos: true,
        logprobs: Some(top),
        ..Default::default()
    }
}

/// The f64 log-softmax of every row of a teacher-forced forward over `tokens`.
fn reference(tokens: &[u32]) -> Vec<Vec<f64>> {
    let lm = lm();
    let vocab = lm.model.config.vocab_size;
    let mut kv = hearth_engine::kv::KvCache::new(lm.model.config.n_layers, lm.model.kv_dim(), 1);
    kv.reserve(0, tokens.len());
    let mut scratch = hearth_engine::model::Scratch::default();
    let entries = common::positions(tokens);
    lm.model.forward(&lm.pool, &mut kv, &entries, &mut scratch);
    scratch.logits[..tokens.len() * vocab]
        .chunks(vocab)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let norm = max
                + row
                    .iter()
                    .map(|&l| (l as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            row.iter().map(|&l| l as f64 - norm).collect()
        })
        .collect()
}

#[test]
fn entries_are_the_log_softmax_of_each_position() {
    let req = request("The capital of France is", 12, 5);
    let prompt = req.prompt.clone();
    let r = run(req, None);
    assert_eq!(r.entries.len(), 12, "one entry per generated token");
    let all: Vec<u32> = prompt.iter().chain(&r.tokens).copied().collect();
    let rows = reference(&all);
    for (i, e) in r.entries.iter().enumerate() {
        assert_eq!(e.token, r.tokens[i]);
        assert_eq!(e.bytes, lm().tokenizer.token_bytes(e.token));
        // The row that chose token i is the one of the token before it.
        let row = &rows[prompt.len() - 1 + i];
        let want = row[e.token as usize];
        assert!(
            (e.logprob as f64 - want).abs() < 2e-3,
            "token {i}: {} vs {want}",
            e.logprob
        );
        assert_eq!(e.top.len(), 5);
        let mut best: Vec<(usize, f64)> = row.iter().copied().enumerate().collect();
        best.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (a, (id, lp)) in e.top.iter().zip(&best) {
            assert!(
                (a.logprob as f64 - lp).abs() < 2e-3,
                "token {i}: {a:?} vs {id} {lp}"
            );
        }
        assert!(e.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        // Greedy: the chosen token is the most likely one.
        assert_eq!(e.top[0].token, e.token);
        assert!(e.logprob <= 0.0);
        let mass: f64 = e.top.iter().map(|a| (a.logprob as f64).exp()).sum();
        assert!(mass <= 1.0 + 1e-4, "{mass}");
    }
}

#[test]
fn a_stop_string_has_no_entries_and_the_entries_spell_the_text() {
    let free = run(request("Once upon a time", 24, 0), None);
    let spelled: Vec<u8> = free.entries.iter().flat_map(|e| e.bytes.clone()).collect();
    assert_eq!(spelled, free.text.as_bytes());
    // Stop at the text of tokens 6..8: the entries end with token 5.
    let stop: Vec<u8> = free.entries[6..8]
        .iter()
        .flat_map(|e| e.bytes.clone())
        .collect();
    let stop = String::from_utf8(stop).unwrap();
    let before: Vec<u8> = free.entries[..6]
        .iter()
        .flat_map(|e| e.bytes.clone())
        .collect();
    // Only meaningful where the stop string does not occur earlier.
    assert!(
        !String::from_utf8_lossy(&before).contains(&stop),
        "{stop:?}"
    );
    let mut req = request("Once upon a time", 24, 0);
    req.stop = vec![stop];
    let stopped = run(req, None);
    assert_eq!(stopped.text.as_bytes(), &before[..]);
    assert_eq!(stopped.entries, free.entries[..6].to_vec());
}

#[test]
fn speculation_reports_what_plain_decoding_does() {
    let prompt = "Repeat this sentence exactly: The quick brown fox jumps over the lazy dog near the river bank.";
    let plain = run(request(prompt, 40, 3), None);
    let spec = run(request(prompt, 40, 3), Some(Speculation::prompt_lookup()));
    assert_eq!(plain.tokens, spec.tokens);
    assert_eq!(plain.entries.len(), spec.entries.len());
    for (a, b) in plain.entries.iter().zip(&spec.entries) {
        assert_eq!(a.token, b.token);
        assert!((a.logprob - b.logprob).abs() < 1e-4, "{a:?} vs {b:?}");
        let ids = |e: &TokenLogprob| e.top.iter().map(|t| t.token).collect::<Vec<_>>();
        assert_eq!(ids(a), ids(b));
    }
}

#[test]
fn more_than_twenty_alternatives_are_refused() {
    let mut batch = lm().new_batch(1, 64);
    let err = batch.add(request("Hi", 4, 21)).unwrap_err();
    assert!(err.to_string().contains("20"), "{err}");
}
