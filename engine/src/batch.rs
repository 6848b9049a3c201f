//! Continuous batching: a `Batch` owns KV-cache slots for many sequences and advances all of them with one
//! forward pass per `step`. Sequences join (`add`) and leave (finish, `cancel`) between steps; prompts are
//! processed in chunks that share the step with decoding sequences.

use crate::error::{EngineError, Result};
use crate::json_mode::JsonState;
use crate::kv::KvCache;
use crate::model::{Entry, Model, Scratch};
use crate::sampling::{Sampler, SamplingParams};
use crate::stream::TextStream;
use crate::threadpool::ThreadPool;
use crate::tokenizer::Tokenizer;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    /// Keep generating through end-of-generation tokens (benchmarks, reference comparisons).
    pub ignore_eos: bool,
    /// Constrain the output to one JSON object (`json_mode`).
    pub json_object: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct SeqId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// End-of-generation token or a stop string.
    Stop,
    /// max_tokens reached.
    Length,
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Time from `add` until the prompt was processed and the first token sampled.
    pub time_to_first_token: Duration,
    /// Time from the first token to the last.
    pub generation_time: Duration,
    /// Prompt tokens whose keys and values were reused from the slot's previous sequence (not computed again).
    pub cached_tokens: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token and the text it releases (may be empty while a character or stop string is pending).
    Token { id: SeqId, token: u32, text: String },
    /// The sequence is done; `text` is the last released text, if any.
    Finished {
        id: SeqId,
        reason: FinishReason,
        text: String,
        usage: Usage,
    },
}

struct Seq {
    id: SeqId,
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Tokens whose keys/values are in the cache.
    n_past: usize,
    /// Prompt tokens taken over from the slot's previous sequence.
    reused: usize,
    max_tokens: usize,
    sampler: Sampler,
    stream: TextStream,
    ignore_eos: bool,
    json: Option<JsonState>,
    added: Instant,
    first_token_at: Option<Instant>,
}

impl Seq {
    fn generated(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }
    fn usage(&self) -> Usage {
        let now = Instant::now();
        let first = self.first_token_at.unwrap_or(now);
        Usage {
            prompt_tokens: self.prompt_len,
            completion_tokens: self.generated(),
            time_to_first_token: first - self.added,
            generation_time: now - first,
            cached_tokens: self.reused,
        }
    }
}

pub struct Batch {
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    pool: Arc<ThreadPool>,
    kv: KvCache,
    scratch: Scratch,
    slots: Vec<Option<Seq>>,
    context: usize,
    /// Upper bound of tokens per forward pass (prompt chunks fill what decoding leaves).
    pub max_step_tokens: usize,
    next_id: u64,
    entries: Vec<Entry>,
    /// Scratch logits for JSON mode's first, unconstrained draw.
    spare: Vec<f32>,
    /// Tokens each sequence had in the last forward pass (energy is shared by it).
    work: Vec<(SeqId, usize)>,
    /// Per slot, the tokens whose keys and values the slot still holds from its last sequence: a new sequence is
    /// put in the free slot sharing the longest prefix with its prompt, and that prefix is not computed again
    /// (identical tokens at identical positions give identical keys and values — the kernels are batch-invariant).
    cached: Vec<Vec<u32>>,
}

/// JSON mode: a token may follow if it keeps the output a valid JSON-object prefix; end-of-generation only once
/// the object is complete (and then nothing else).
fn json_allows(tok: &Tokenizer, js: &JsonState, id: u32) -> bool {
    if tok.is_eog(id) {
        js.is_complete()
    } else {
        let bytes = tok.token_bytes(id);
        !js.is_complete() && !bytes.is_empty() && js.accepts(bytes)
    }
}

fn mask_json(tok: &Tokenizer, js: &JsonState, logits: &mut [f32]) {
    for (id, l) in logits.iter_mut().enumerate() {
        if !json_allows(tok, js, id as u32) {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// A sequence left `slot`: what of its keys and values stays there for the next one (`cached`, that slot's list).
fn retire(kv: &mut KvCache, cached: &mut Vec<u32>, slot: usize, seq: &Seq) {
    let kept = kv.release(slot);
    cached.clear();
    if kept {
        cached.extend_from_slice(&seq.tokens[..seq.n_past]);
    }
}

/// How many leading tokens `a` and `b` share.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Batch {
    /// A batch of `n_slots` sequences of at most `context` tokens each (capped by the model's own context).
    pub fn new(
        model: Arc<Model>,
        tokenizer: Arc<Tokenizer>,
        pool: Arc<ThreadPool>,
        n_slots: usize,
        context: usize,
    ) -> Batch {
        let context = context.min(model.config.context_length).max(1);
        let kv = KvCache::new(model.config.n_layers, model.kv_dim(), n_slots.max(1));
        Batch {
            model,
            tokenizer,
            pool,
            kv,
            scratch: Scratch::default(),
            slots: (0..n_slots.max(1)).map(|_| None).collect(),
            context,
            max_step_tokens: 512,
            next_id: 0,
            entries: Vec::new(),
            spare: Vec::new(),
            work: Vec::new(),
            cached: (0..n_slots.max(1)).map(|_| Vec::new()).collect(),
        }
    }

    pub fn context(&self) -> usize {
        self.context
    }

    pub fn n_slots(&self) -> usize {
        self.slots.len()
    }

    pub fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.active() == 0
    }

    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(|s| s.is_none())
    }

    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes_used()
    }

    /// Tokens each sequence had in the last `step` (prompt chunk or one decoded token), in batch order.
    pub fn last_step_work(&self) -> &[(SeqId, usize)] {
        &self.work
    }

    /// Checks a request without adding it: every error a request can have is raised here, before any work.
    pub fn validate(&self, req: &GenerateRequest) -> Result<()> {
        let vocab = self.model.config.vocab_size;
        if req.prompt.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt is empty".into()));
        }
        if let Some(&t) = req.prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::InvalidRequest(format!(
                "token id {t} is outside the vocabulary of {vocab}"
            )));
        }
        if req.max_tokens == 0 {
            return Err(EngineError::InvalidRequest(
                "max_tokens must be at least 1".into(),
            ));
        }
        if req.prompt.len() + req.max_tokens > self.context {
            return Err(EngineError::ContextOverflow {
                prompt_tokens: req.prompt.len(),
                max_tokens: req.max_tokens,
                context: self.context,
            });
        }
        req.sampling.validate(vocab)
    }

    /// Adds a sequence; it starts at the next `step`.
    pub fn add(&mut self, req: GenerateRequest) -> Result<SeqId> {
        self.validate(&req)?;
        let (slot, shared) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_none())
            .map(|(i, _)| (i, common_prefix(&self.cached[i], &req.prompt)))
            // Longest shared prefix; the lowest slot among equals.
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .ok_or(EngineError::BatchFull(self.slots.len()))?;
        // At least the last prompt token is computed: its logits give the first generated token.
        let reuse = shared.min(req.prompt.len() - 1);
        self.cached[slot].clear();
        let id = SeqId(self.next_id);
        self.next_id += 1;
        // Room for the prompt now; generated positions are added as they come (`step`).
        self.kv.reserve(slot, req.prompt.len());
        self.slots[slot] = Some(Seq {
            id,
            prompt_len: req.prompt.len(),
            sampler: Sampler::new(req.sampling, &req.prompt),
            tokens: req.prompt,
            n_past: reuse,
            reused: reuse,
            max_tokens: req.max_tokens,
            stream: TextStream::new(req.stop),
            ignore_eos: req.ignore_eos,
            json: req.json_object.then(JsonState::default),
            added: Instant::now(),
            first_token_at: None,
        });
        Ok(id)
    }

    /// Stops a sequence now; returns its `Finished` event, or None if it is not in the batch.
    pub fn cancel(&mut self, id: SeqId) -> Option<Event> {
        let slot = self
            .slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.id == id))?;
        let mut seq = self.slots[slot].take()?;
        retire(&mut self.kv, &mut self.cached[slot], slot, &seq);
        let text = seq.stream.finish();
        Some(Event::Finished {
            id,
            reason: FinishReason::Cancelled,
            text,
            usage: seq.usage(),
        })
    }

    /// One forward pass over every active sequence; returns what happened.
    pub fn step(&mut self) -> Vec<Event> {
        self.entries.clear();
        let mut budget = self.max_step_tokens.max(1);
        // Decoding sequences first (one token each): they are latency-sensitive.
        for (slot, s) in self.slots.iter().enumerate() {
            if let Some(s) = s {
                if s.n_past >= s.prompt_len && budget > 0 {
                    self.entries.push(Entry {
                        slot,
                        pos: s.n_past,
                        token: s.tokens[s.n_past],
                        want_logits: true,
                    });
                    budget -= 1;
                }
            }
        }
        for (slot, s) in self.slots.iter().enumerate() {
            if let Some(s) = s {
                if s.n_past < s.prompt_len && budget > 0 {
                    let take = (s.prompt_len - s.n_past).min(budget);
                    for i in 0..take {
                        let pos = s.n_past + i;
                        self.entries.push(Entry {
                            slot,
                            pos,
                            token: s.tokens[pos],
                            want_logits: pos + 1 == s.prompt_len,
                        });
                    }
                    budget -= take;
                }
            }
        }
        self.work.clear();
        if self.entries.is_empty() {
            return Vec::new();
        }
        for e in &self.entries {
            self.kv.reserve(e.slot, e.pos + 1);
            if let Some(s) = &self.slots[e.slot] {
                match self.work.last_mut() {
                    Some((id, n)) if *id == s.id => *n += 1,
                    _ => self.work.push((s.id, 1)),
                }
            }
        }
        self.model
            .forward(&self.pool, &mut self.kv, &self.entries, &mut self.scratch);

        let vocab = self.model.config.vocab_size;
        let mut events = Vec::new();
        let mut out_row = 0;
        for e in &self.entries {
            let Some(seq) = self.slots[e.slot].as_mut() else {
                continue;
            };
            seq.n_past = seq.n_past.max(e.pos + 1);
            if !e.want_logits {
                continue;
            }
            let logits = &mut self.scratch.logits[out_row * vocab..(out_row + 1) * vocab];
            out_row += 1;
            let token = match &seq.json {
                None => seq.sampler.sample(logits),
                // Sample freely first (cheap, usually acceptable); mask the vocabulary only when the choice
                // would break the JSON — as llama.cpp does with grammars.
                Some(js) => {
                    self.spare.clear();
                    self.spare.extend_from_slice(logits);
                    let t = seq.sampler.sample(&mut self.spare);
                    if json_allows(&self.tokenizer, js, t) {
                        t
                    } else {
                        mask_json(&self.tokenizer, js, logits);
                        seq.sampler.sample(logits)
                    }
                }
            };
            if let Some(js) = &mut seq.json {
                js.feed(self.tokenizer.token_bytes(token));
            }
            seq.sampler.accept(token);
            seq.tokens.push(token);
            if seq.first_token_at.is_none() {
                seq.first_token_at = Some(Instant::now());
            }
            let eog = !seq.ignore_eos && self.tokenizer.is_eog(token);
            let delta = if eog {
                Default::default()
            } else {
                seq.stream.push(self.tokenizer.token_bytes(token))
            };
            let reason = if eog || delta.stopped {
                Some(FinishReason::Stop)
            } else if seq.generated() >= seq.max_tokens {
                Some(FinishReason::Length)
            } else {
                None
            };
            match reason {
                None => events.push(Event::Token {
                    id: seq.id,
                    token,
                    text: delta.text,
                }),
                Some(reason) => {
                    let mut text = delta.text;
                    if !delta.stopped {
                        text.push_str(&seq.stream.finish());
                    }
                    let mut usage = seq.usage();
                    // An end-of-generation token ends the text but is not part of it.
                    if eog {
                        usage.completion_tokens -= 1;
                    }
                    if !eog {
                        events.push(Event::Token {
                            id: seq.id,
                            token,
                            text: String::new(),
                        });
                    }
                    events.push(Event::Finished {
                        id: seq.id,
                        reason,
                        text,
                        usage,
                    });
                    if let Some(done) = self.slots[e.slot].take() {
                        retire(&mut self.kv, &mut self.cached[e.slot], e.slot, &done);
                    }
                }
            }
        }
        events
    }

    /// Runs until every sequence has finished, collecting the events (for CLI and tests).
    pub fn run_to_completion(&mut self) -> Vec<Event> {
        let mut all = Vec::new();
        while !self.is_empty() {
            all.extend(self.step());
        }
        all
    }
}
