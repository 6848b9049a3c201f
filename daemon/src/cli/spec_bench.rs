//! `hearth bench TARGET --draft DRAFT` / `--prompt-lookup`: generation speed with speculative decoding against the
//! target alone, in the same run, on an extractive prompt set (the answer copies from the prompt: summaries,
//! extraction, code edits) and an open-ended one; with acceptance rates, and a check that the greedy output is
//! identical. Generation time runs from the first token to the last (prompt processing is not counted, but the
//! draft model's catch-up on the prompt is: it happens while generating).

use super::bench::BenchArgs;
use anyhow::{bail, Result};
use hearth::models::ModelStore;
use hearth_engine::{Batch, ChatMessage, Event, GenerateRequest, SamplingParams};
use serde::Serialize;

/// Tasks whose answer copies from the input (repeat, quote, extract, correct, rename, edit code) — prompt
/// lookup's case. Chosen so that SmolLM2-135M actually performs them by copying; on a task the model answers in
/// its own words, lookup finds nothing to propose and the speed is the target's alone (the open-ended set).
const EXTRACTIVE: [&str; 8] = [
    "Repeat the following text exactly, word for word:\n\nThe committee met on Tuesday to review the budget for the new library. After a long discussion, the members agreed to fund the children's reading room, the study area on the second floor, and longer opening hours on weekends.",
    "Extract every sentence that mentions a date from this text and list them:\n\nThe museum opened on 3 May 1998. Its first director was Anna Berg. A new wing was added on 12 June 2005. The collection now holds twelve thousand objects. The museum will close for repairs on 1 March 2027.",
    "Rewrite this email, replacing the name Tom with Anna:\n\nHi Tom,\n\nThanks for sending the report. Tom, could you also send the slides from the meeting on Monday? The team would like to review them before Friday.\n\nBest regards,\nSam",
    "Correct the grammar in this text and output the corrected text:\n\nMe and him goes to the market every Saturdays. We buys apples, bread and cheeses for the week, and then we walks home together.",
    "Quote the second paragraph of this text exactly:\n\nThe town sits at the foot of the hills.\n\nEvery spring the river floods the lower fields, and the farmers move their animals to higher ground until the water goes down.\n\nIn summer the town holds a market.",
    "Fix the spelling in this text and output the corrected text:\n\nThe quick brown fox jumpd over the lazzy dog. The dog did not wake up, becuase it was very tired after a long day in the feilds.",
    "Here is a function:\n\ndef greet(name):\n    print('Hello, ' + name + '!')\n    print('Welcome to the team.')\n\nAdd a docstring to it and output the complete function.",
    "Here is a Python function:\n\ndef total_price(items):\n    total = 0\n    for item in items:\n        total = total + item.price * item.quantity\n    return total\n\nRewrite it with the variable `total` renamed to `amount`. Output only the code.",
];

const OPEN_ENDED: [&str; 6] = [
    "Write a short story about a lighthouse keeper.",
    "What are the benefits of regular exercise?",
    "Explain how a rainbow forms.",
    "Give me three ideas for a birthday party.",
    "Why is the sky blue?",
    "Describe your ideal weekend.",
];

#[derive(Serialize)]
struct SetResult {
    set: &'static str,
    prompts: usize,
    plain_tokens_per_s: f64,
    speculative_tokens_per_s: f64,
    speedup: f64,
    drafted_tokens: u64,
    accepted_tokens: u64,
    acceptance_rate: Option<f64>,
    identical: bool,
}

#[derive(Serialize)]
struct Report {
    target: String,
    mode: &'static str,
    draft: Option<String>,
    threads: usize,
    gen_tokens: usize,
    repetitions: usize,
    sets: Vec<SetResult>,
}

/// Generates one prompt alone in `batch`; its tokens and generation seconds.
fn generate(batch: &mut Batch, prompt: Vec<u32>, max_tokens: usize) -> Result<(Vec<u32>, f64)> {
    batch.add(GenerateRequest {
        prompt,
        max_tokens,
        sampling: SamplingParams::greedy(),
        ..Default::default()
    })?;
    let mut tokens = Vec::new();
    let mut secs = 0.0;
    for ev in batch.run_to_completion() {
        match ev {
            Event::Token { token, .. } => tokens.push(token),
            Event::Finished { usage, .. } => secs = usage.generation_time.as_secs_f64(),
        }
    }
    Ok((tokens, secs))
}

pub fn bench(store: &ModelStore, a: &BenchArgs) -> Result<()> {
    let lm = &super::bench::load(store, a)?;
    let spec = super::run::speculation(store, lm, a.draft.as_deref(), a.prompt_lookup, 1, a.head)?;
    let Some(spec) = spec else {
        bail!("--draft or --prompt-lookup is needed for a speculative benchmark");
    };
    let mode = if a.draft.is_some() {
        "draft"
    } else {
        "prompt_lookup"
    };
    let ctx = 2048.min(lm.model.config.context_length);
    let mut plain = lm.new_batch(1, ctx);
    let mut fast = lm.new_batch(1, ctx);
    fast.set_speculation(Some(spec));
    let prompt = |text: &str| lm.chat_prompt(&[ChatMessage::new("user", text)]);
    // Warm-up: weight pages, buffers and the speculation's cost model.
    for b in [&mut plain, &mut fast] {
        generate(b, prompt(OPEN_ENDED[0])?, 16)?;
    }
    let mut sets = Vec::new();
    for (name, texts) in [
        ("extractive", &EXTRACTIVE[..]),
        ("open-ended", &OPEN_ENDED[..]),
    ] {
        let before = fast.spec_stats().unwrap_or_default();
        let (mut t_plain, mut t_fast, mut n_plain, mut n_fast) = (0.0, 0.0, 0usize, 0usize);
        let mut identical = true;
        for rep in 0..a.repetitions {
            for text in texts.iter() {
                let p = prompt(text)?;
                // Alternate which goes first: neither always runs on a warmer machine.
                let order: [bool; 2] = if rep % 2 == 0 {
                    [false, true]
                } else {
                    [true, false]
                };
                let mut outs = [Vec::new(), Vec::new()];
                for speculative in order {
                    let b = if speculative { &mut fast } else { &mut plain };
                    let (toks, secs) = generate(b, p.clone(), a.gen_tokens)?;
                    // The first token comes from prompt processing; the rest are generation.
                    let n = toks.len().saturating_sub(1);
                    if speculative {
                        t_fast += secs;
                        n_fast += n;
                    } else {
                        t_plain += secs;
                        n_plain += n;
                    }
                    outs[usize::from(speculative)] = toks;
                }
                identical &= outs[0] == outs[1];
            }
        }
        let after = fast.spec_stats().unwrap_or_default();
        let (drafted, accepted) = (
            after.drafted - before.drafted,
            after.accepted - before.accepted,
        );
        let plain_rate = n_plain as f64 / t_plain.max(1e-9);
        let fast_rate = n_fast as f64 / t_fast.max(1e-9);
        sets.push(SetResult {
            set: name,
            prompts: texts.len(),
            plain_tokens_per_s: plain_rate,
            speculative_tokens_per_s: fast_rate,
            speedup: fast_rate / plain_rate.max(1e-9),
            drafted_tokens: drafted,
            accepted_tokens: accepted,
            acceptance_rate: (drafted > 0).then(|| accepted as f64 / drafted as f64),
            identical,
        });
    }
    let report = Report {
        target: a.model.clone(),
        mode,
        draft: a.draft.clone(),
        threads: a.threads,
        gen_tokens: a.gen_tokens,
        repetitions: a.repetitions,
        sets,
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "target {} ({}), speculation: {}{}, {} threads, up to {} tokens per prompt",
        report.target,
        lm.model.config.architecture,
        mode,
        report
            .draft
            .as_deref()
            .map(|d| format!(" with {d}"))
            .unwrap_or_default(),
        report.threads,
        report.gen_tokens
    );
    for s in &report.sets {
        println!(
            "{:<11} target alone {:>7.1} tok/s, speculative {:>7.1} tok/s: {:.2}x; acceptance {}; output {}",
            s.set,
            s.plain_tokens_per_s,
            s.speculative_tokens_per_s,
            s.speedup,
            s.acceptance_rate
                .map_or("none proposed".into(), |r| format!(
                    "{:.0}% of {}",
                    r * 100.0,
                    s.drafted_tokens
                )),
            if s.identical { "identical" } else { "DIFFERENT" }
        );
    }
    Ok(())
}
