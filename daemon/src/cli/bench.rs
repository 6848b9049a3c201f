//! `hearth bench MODEL`: prompt processing (pp) and generation (tg) tokens/s, and aggregate generation
//! tokens/s at several batch sizes. Medians of `--repetitions` runs. Tokens are pseudo-random ids (as
//! llama-bench does), so the numbers do not depend on a text.

use anyhow::{bail, Context, Result};
use hearth::models::ModelStore;
use hearth_engine::{Event, GenerateRequest, LoadOptions, LoadedModel, SamplingParams};
use serde::Serialize;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    pub model: String,
    #[arg(long, default_value_t = hearth_engine::default_threads())]
    pub threads: usize,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Generation at depth: each generating sequence first reads a prompt of this many tokens, so tg is measured
    /// with that much KV cache behind it (llama-bench's `-d`). Applies to every batch size; `--batch 1` keeps a
    /// deep run short.
    #[arg(long, default_value_t = 0)]
    pub depth: usize,
    /// Batch sizes for aggregate generation throughput.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    pub batch: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
    #[arg(long, value_parser = super::parse_dtype)]
    pub dtype: Option<hearth_engine::quant::GgmlType>,
    /// How to read the output head: i8 / q8_0 halve a tied F16 head's bytes per token (BitNet), q4_0 quarters
    /// them, i4-rescored scores every row with an int4 copy and rescores the best candidates with the file's head.
    #[arg(long, value_parser = super::head_parser())]
    pub head: Option<hearth_engine::model::HeadOption>,
    #[arg(long)]
    pub json: bool,
    /// Speculative benchmark: this model drafts for MODEL; reports the speed-up over MODEL alone on an
    /// extractive and an open-ended prompt set, with acceptance rates.
    #[arg(long, conflicts_with = "prompt_lookup")]
    pub draft: Option<String>,
    /// Speculative benchmark with prompt lookup instead of a draft model.
    #[arg(long)]
    pub prompt_lookup: bool,
}

#[derive(Serialize)]
struct BatchResult {
    batch: usize,
    tokens_per_s: f64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    architecture: String,
    isa: &'static str,
    threads: usize,
    prompt_tokens: usize,
    gen_tokens: usize,
    depth: usize,
    pp_tokens_per_s: f64,
    tg_tokens_per_s: f64,
    batches: Vec<BatchResult>,
    peak_rss_bytes: Option<u64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Deterministic ids away from the special tokens at the start of most vocabularies (id 1000 on, or the upper half
/// of a small test vocabulary).
fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let vocab = vocab as u64;
    let first = if vocab > 2000 { 1000 } else { vocab / 2 };
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (first + s % (vocab - first).max(1)) as u32
        })
        .collect()
}

fn request(prompt: Vec<u32>, max_tokens: usize) -> GenerateRequest {
    GenerateRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop: Vec::new(),
        ignore_eos: true,
        json_object: false,
        schema: None,
        no_speculation: true,
        logprobs: None,
    }
}

/// Steps until `n` sequences have each sampled their first token (their prompts read).
fn prefill(batch: &mut hearth_engine::Batch, n: usize) {
    let mut first = 0;
    while first < n && !batch.is_empty() {
        first += batch
            .step()
            .iter()
            .filter(|ev| matches!(ev, Event::Token { .. }))
            .count();
    }
}

/// Checks the flags and loads the model under test as they say (shared with the speculative benchmark).
pub fn load(store: &ModelStore, a: &BenchArgs) -> Result<LoadedModel> {
    if a.prompt_tokens == 0 || a.gen_tokens < 2 || a.repetitions == 0 {
        bail!("--prompt-tokens must be >= 1, --gen-tokens >= 2, --repetitions >= 1");
    }
    let path = store.resolve(&a.model)?;
    LoadedModel::load(
        &path,
        &LoadOptions {
            dtype: a.dtype,
            head: a.head,
            isa: None,
        },
        a.threads,
    )
    .with_context(|| format!("loading {}", path.display()))
}

/// Plain throughput (`hearth bench MODEL`; with `--draft`/`--prompt-lookup` main runs `spec_bench` instead).
pub fn bench(store: &ModelStore, a: BenchArgs) -> Result<()> {
    let lm = load(store, &a)?;
    let vocab = lm.model.config.vocab_size;
    let ctx = (a.prompt_tokens.max(a.depth) + a.gen_tokens + 8).min(lm.model.config.context_length);
    if a.depth + a.gen_tokens + 1 > ctx {
        bail!(
            "--depth {} + --gen-tokens {} exceed the model's context of {}",
            a.depth,
            a.gen_tokens,
            lm.model.config.context_length
        );
    }
    let max_batch = a.batch.iter().copied().max().unwrap_or(1).max(1);
    let mut batch = lm.new_batch(max_batch, ctx);
    batch.max_step_tokens = a.prompt_tokens.max(a.depth).max(max_batch);
    // The prompt each generating sequence reads first: one token, or `--depth` of them.
    let tg_prompt = |seed: u64| tokens(a.depth.max(1), vocab, seed);

    // Warm-up: touches every weight page and sizes the buffers.
    batch.add(request(tokens(16, vocab, 99), 2))?;
    batch.run_to_completion();

    let mut pp = Vec::new();
    let mut tg = Vec::new();
    let mut per_batch: Vec<Vec<f64>> = vec![Vec::new(); a.batch.len()];
    for rep in 0..a.repetitions {
        // pp: one step processes the whole prompt (and samples one token).
        batch.add(request(tokens(a.prompt_tokens, vocab, rep as u64), 1))?;
        let t = Instant::now();
        batch.run_to_completion();
        pp.push(a.prompt_tokens as f64 / t.elapsed().as_secs_f64());

        for (bi, &b) in a.batch.iter().enumerate() {
            let b = b.max(1);
            for i in 0..b {
                batch.add(request(
                    tg_prompt(1000 + (rep * 64 + i) as u64),
                    a.gen_tokens + 1,
                ))?;
            }
            // Read the prompts (one step unless deep prompts exceed a step's tokens) and sample each sequence's
            // token 1; time the next gen_tokens steps.
            prefill(&mut batch, b);
            let t = Instant::now();
            let mut generated = 0usize;
            while !batch.is_empty() {
                for ev in batch.step() {
                    if matches!(ev, Event::Token { .. } | Event::Finished { .. }) {
                        generated += usize::from(matches!(ev, Event::Token { .. }));
                    }
                }
            }
            let rate = generated as f64 / t.elapsed().as_secs_f64();
            per_batch[bi].push(rate);
            if b == 1 {
                tg.push(rate);
            }
        }
        if tg.len() <= rep {
            // No batch size 1 requested: measure tg on its own.
            batch.add(request(tg_prompt(7), a.gen_tokens + 1))?;
            prefill(&mut batch, 1);
            let t = Instant::now();
            batch.run_to_completion();
            tg.push(a.gen_tokens as f64 / t.elapsed().as_secs_f64());
        }
    }
    let report = Report {
        model: a.model.clone(),
        architecture: lm.model.config.architecture.clone(),
        isa: lm.model.isa.name(),
        threads: a.threads,
        prompt_tokens: a.prompt_tokens,
        gen_tokens: a.gen_tokens,
        depth: a.depth,
        pp_tokens_per_s: median(pp),
        tg_tokens_per_s: median(tg),
        batches: a
            .batch
            .iter()
            .zip(per_batch)
            .map(|(&b, v)| BatchResult {
                batch: b,
                tokens_per_s: median(v),
            })
            .collect(),
        peak_rss_bytes: peak_rss(),
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "model {} ({}), {} threads, {} kernels",
            report.model, report.architecture, report.threads, report.isa
        );
        println!(
            "pp{:<5} {:>9.1} tok/s",
            report.prompt_tokens, report.pp_tokens_per_s
        );
        let at = if report.depth > 0 {
            format!(" @ d{}", report.depth)
        } else {
            String::new()
        };
        println!(
            "tg{:<5} {:>9.1} tok/s{at}",
            report.gen_tokens, report.tg_tokens_per_s
        );
        for b in &report.batches {
            println!(
                "batch {:<3} {:>9.1} tok/s aggregate",
                b.batch, b.tokens_per_s
            );
        }
        if let Some(r) = report.peak_rss_bytes {
            println!("peak RSS {:.1} MiB", r as f64 / (1 << 20) as f64);
        }
    }
    Ok(())
}
