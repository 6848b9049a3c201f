//! Continuous batching on a real model: sequences that share steps produce exactly what they produce alone,
//! sequences can join mid-flight and leave at once, and streamed text is valid UTF-8 that equals the decoded ids.

mod common;

use hearth_engine::{
    ChatMessage, Event, FinishReason, GenerateRequest, LoadOptions, LoadedModel, SamplingParams,
    SeqId,
};
use std::collections::HashMap;

fn greedy(prompt: Vec<u32>, n: usize) -> GenerateRequest {
    GenerateRequest {
        prompt,
        max_tokens: n,
        sampling: SamplingParams::greedy(),
        stop: vec![],
        ignore_eos: true,
        json_object: false,
        schema: None,
        no_speculation: false,
        logprobs: None,
    }
}

fn tokens_by_seq(events: &[Event]) -> HashMap<SeqId, Vec<u32>> {
    let mut m: HashMap<SeqId, Vec<u32>> = HashMap::new();
    for e in events {
        if let Event::Token { id, token, .. } = e {
            m.entry(*id).or_default().push(*token);
        }
    }
    m
}

#[test]
fn batched_sequences_equal_solo_runs_even_when_joining_late() {
    let lm = LoadedModel::load(common::model(common::SMOLLM2), &LoadOptions::default(), 2)
        .expect("load");
    let prompts = ["The sun rises in the", "fn main() {", "List three fruits:"];
    let solo: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut b = lm.new_batch(1, 128);
            b.add(greedy(lm.raw_prompt(p).expect("tok"), 12))
                .expect("add");
            tokens_by_seq(&b.run_to_completion())
                .into_values()
                .next()
                .expect("tokens")
        })
        .collect();

    let mut b = lm.new_batch(3, 128);
    b.max_step_tokens = 8; // forces prompts into chunks that share steps with decoding sequences
    let a = b
        .add(greedy(lm.raw_prompt(prompts[0]).expect("tok"), 12))
        .expect("add");
    let c = b
        .add(greedy(lm.raw_prompt(prompts[1]).expect("tok"), 12))
        .expect("add");
    let mut events = Vec::new();
    let (len_a, len_c) = (
        lm.raw_prompt(prompts[0]).expect("tok").len(),
        lm.raw_prompt(prompts[1]).expect("tok").len(),
    );
    // The first step is all prompt: 8 tokens of a (or all of it), the rest of the budget for c.
    events.extend(b.step());
    let first = b.last_step_work().to_vec();
    assert_eq!(first[0], (a, len_a.min(8)));
    assert_eq!(
        first.iter().map(|w| w.1).sum::<usize>(),
        8.min(len_a + len_c)
    );
    for _ in 0..4 {
        events.extend(b.step());
    }
    let late = b
        .add(greedy(lm.raw_prompt(prompts[2]).expect("tok"), 12))
        .expect("join mid-flight");
    events.extend(b.run_to_completion());
    let got = tokens_by_seq(&events);
    assert_eq!(got[&a], solo[0]);
    assert_eq!(got[&c], solo[1]);
    assert_eq!(got[&late], solo[2]);
}

#[test]
fn cancel_frees_the_slot_at_once() {
    let lm = LoadedModel::load(common::model(common::SMOLLM2), &LoadOptions::default(), 1)
        .expect("load");
    let mut b = lm.new_batch(1, 128);
    let id = b
        .add(greedy(lm.raw_prompt("Hello").expect("tok"), 50))
        .expect("add");
    b.step();
    b.step();
    assert!(b.add(greedy(vec![1], 2)).is_err(), "the only slot is taken");
    match b.cancel(id) {
        Some(Event::Finished {
            reason: FinishReason::Cancelled,
            usage,
            ..
        }) => assert_eq!(usage.completion_tokens, 2),
        other => panic!("unexpected {other:?}"),
    }
    assert!(b.is_empty());
    b.add(greedy(vec![1], 2)).expect("slot is free again");
}

#[test]
fn streamed_text_is_the_decoded_tokens_and_stops_at_stop_strings() {
    let lm =
        LoadedModel::load(common::model(common::GEMMA3), &LoadOptions::default(), 2).expect("load");
    let prompt = lm
        .chat_prompt(&[ChatMessage::new(
            "user",
            "Write the word 'hello' in Japanese and Greek.",
        )])
        .expect("chat");
    let mut b = lm.new_batch(1, 256);
    b.add(greedy(prompt.clone(), 40)).expect("add");
    let events = b.run_to_completion();
    let mut text = String::new();
    let mut toks = Vec::new();
    for e in &events {
        match e {
            Event::Token { token, text: t, .. } => {
                toks.push(*token);
                text.push_str(t);
            }
            Event::Finished { text: t, .. } => text.push_str(t),
        }
    }
    assert_eq!(
        text,
        lm.tokenizer.decode(&toks),
        "deltas concatenate to the decoded text"
    );
    assert!(!text.is_empty());

    // A stop string taken from the middle of that text ends generation just before it.
    let cut = text
        .char_indices()
        .nth(text.chars().count() / 2)
        .map(|(i, _)| i)
        .expect("middle");
    let stop: String = text[cut..].chars().take(3).collect();
    let mut b = lm.new_batch(1, 256);
    let mut r = greedy(prompt, 40);
    r.stop = vec![stop.clone()];
    b.add(r).expect("add");
    let mut stopped = String::new();
    let mut reason = None;
    for e in b.run_to_completion() {
        match e {
            Event::Token { text: t, .. } => stopped.push_str(&t),
            Event::Finished {
                text: t, reason: r, ..
            } => {
                stopped.push_str(&t);
                reason = Some(r);
            }
        }
    }
    assert_eq!(reason, Some(FinishReason::Stop));
    assert!(
        text.starts_with(&stopped) && !stopped.contains(&stop),
        "{stopped:?} / stop {stop:?}"
    );
}

#[test]
fn same_seed_same_text_different_seed_different_text() {
    let lm = LoadedModel::load(common::model(common::SMOLLM2), &LoadOptions::default(), 2)
        .expect("load");
    let run = |seed| {
        let mut b = lm.new_batch(1, 128);
        b.add(GenerateRequest {
            prompt: lm.raw_prompt("Once upon a time").expect("tok"),
            max_tokens: 24,
            sampling: SamplingParams {
                temperature: 1.0,
                seed: Some(seed),
                ..Default::default()
            },
            stop: vec![],
            ignore_eos: true,
            json_object: false,
            schema: None,
            no_speculation: false,
            logprobs: None,
        })
        .expect("add");
        tokens_by_seq(&b.run_to_completion())
            .into_values()
            .next()
            .expect("tokens")
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

/// A new sequence reuses the keys and values its slot kept from the previous one for their shared prompt prefix
/// (here the chat template's system prompt), computes only the rest, and generates exactly what a fresh batch
/// generates.
#[test]
fn a_shared_prompt_prefix_is_reused_without_changing_the_output() {
    let lm = LoadedModel::load(common::model(common::SMOLLM2), &LoadOptions::default(), 2)
        .expect("load");
    let first = lm
        .chat_prompt(&[ChatMessage::new("user", "Name three rivers.")])
        .expect("prompt");
    let second = lm
        .chat_prompt(&[ChatMessage::new("user", "Name three mountains.")])
        .expect("prompt");
    let shared = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(shared >= 8, "the template's prefix: {shared} tokens");

    let mut fresh = lm.new_batch(2, 256);
    fresh.add(greedy(second.clone(), 16)).expect("add");
    let want = tokens_by_seq(&fresh.run_to_completion());

    let mut b = lm.new_batch(2, 256);
    b.add(greedy(first, 16)).expect("add");
    b.run_to_completion();
    let id = b.add(greedy(second.clone(), 16)).expect("add");
    let mut events = b.step();
    assert_eq!(b.last_step_work(), [(id, second.len() - shared)]);
    events.extend(b.run_to_completion());
    assert_eq!(
        tokens_by_seq(&events)[&id],
        want.into_values().next().expect("tokens")
    );
    let usage = events.iter().find_map(|e| match e {
        Event::Finished { id: i, usage, .. } if *i == id => Some(*usage),
        _ => None,
    });
    let usage = usage.expect("finished");
    // Billed as the whole prompt; reported as partly cached (OpenAI's prompt_tokens_details.cached_tokens).
    assert_eq!(
        (usage.prompt_tokens, usage.cached_tokens),
        (second.len(), shared)
    );
}
