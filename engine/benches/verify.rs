//! What a speculative verification pass costs: one sequence's forward pass over n new tokens (n = 1 is plain
//! decoding; n = 1 + k verifies k proposals) after a context of `--context` tokens, relative to n = 1.
//! `cargo bench -p hearth-engine --bench verify -- MODEL.gguf [--dtype f16] [--head i8] [--threads 2]
//! [--context 128]`.
//! Speculation pays when k proposals of acceptance α emit Σα^i tokens for less than that many plain passes, so
//! these ratios are what the speculation policy learns at run time (`speculative::policy::PassCost`).

use hearth_engine::kv::KvCache;
use hearth_engine::model::{Entry, Scratch};
use hearth_engine::quant::GgmlType;
use hearth_engine::{LoadOptions, LoadedModel};
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
        eprintln!("usage: cargo bench -p hearth-engine --bench verify -- MODEL.gguf [--dtype f16|f32] [--head i8|q8_0] [--threads N] [--context N]");
        return;
    };
    let threads: usize = arg("--threads").and_then(|s| s.parse().ok()).unwrap_or(2);
    let context: usize = arg("--context").and_then(|s| s.parse().ok()).unwrap_or(128);
    let dtype = match arg("--dtype").as_deref() {
        Some("f16") => Some(GgmlType::F16),
        Some("f32") => Some(GgmlType::F32),
        _ => None,
    };
    let head = arg("--head").and_then(|s| hearth_engine::model::parse_head(&s));
    let opts = LoadOptions {
        dtype,
        head,
        ..Default::default()
    };
    let lm = LoadedModel::load(&path, &opts, threads).expect("model loads");
    let m = &lm.model;
    let mut kv = KvCache::new(m.config.n_layers, m.kv_dim(), 1);
    let mut s = Scratch::default();
    let vocab = m.config.vocab_size as u32;
    let token = |i: usize| (i as u32 * 7919 + 13) % vocab;
    kv.reserve(0, context + 16);
    let prompt: Vec<Entry> = (0..context)
        .map(|pos| Entry {
            slot: 0,
            pos,
            token: token(pos),
            want_logits: false,
        })
        .collect();
    for chunk in prompt.chunks(64) {
        m.forward(&lm.pool, &mut kv, chunk, &mut s);
    }
    println!(
        "{} ({}), {threads} threads, context {context}",
        path,
        dtype.map_or("file types".to_string(), |t| t.to_string())
    );
    println!(
        "{:>7} {:>9} {:>12} {:>14}",
        "tokens", "ms", "vs 1 token", "ms per token"
    );
    let mut one = 0.0;
    for n in 1..=9 {
        // Every token wants logits, as in verification; positions after the context are rewritten each time.
        let entries: Vec<Entry> = (0..n)
            .map(|i| Entry {
                slot: 0,
                pos: context + i,
                token: token(context + i),
                want_logits: true,
            })
            .collect();
        // The best of many passes: on a shared machine the other samples measure the neighbours.
        let mut ms = f64::MAX;
        for _ in 0..40 {
            let t = Instant::now();
            m.forward(&lm.pool, &mut kv, &entries, &mut s);
            ms = ms.min(t.elapsed().as_secs_f64() * 1e3);
        }
        if n == 1 {
            one = ms;
        }
        println!(
            "{n:>7} {ms:>9.2} {:>11.2}x {:>14.2}",
            ms / one,
            ms / n as f64
        );
    }
}
