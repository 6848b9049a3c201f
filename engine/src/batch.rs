//! Continuous batching: a `Batch` owns KV-cache slots for many sequences and advances all of them with one
//! forward pass per `step`. Sequences join (`add`) and leave (finish, `cancel`) between steps; prompts are
//! processed in chunks that share the step with decoding sequences.

use crate::constraint::Constraint;
use crate::error::{EngineError, Result};
use crate::kv::KvCache;
use crate::logprobs::{Pending, TokenLogprob, MAX_TOP};
use crate::model::{Entry, Model, Scratch};
use crate::sampling::{draw, Sampler, SamplingParams};
use crate::speculative::draft::{DraftJob, ROUTINE_LAG};
use crate::speculative::policy::{
    choose_k, could_pay, saving_per_token, worth_catching_up, Acceptance, Prober, MAX_DRAFT,
};
use crate::speculative::{lookup, rejection, SpecMode, SpecStats, Speculation};
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
    /// Constrain the output to a value of this JSON Schema (wins over `json_object`).
    pub schema: Option<Arc<crate::schema::Grammar>>,
    /// Opt out of speculative decoding for this request (it is on wherever the batch has it).
    pub no_speculation: bool,
    /// Report each generated token's log-probability with this many alternatives (at most
    /// `logprobs::MAX_TOP`); None: none.
    pub logprobs: Option<usize>,
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
    /// A generated token and the text it releases (may be empty while a character or stop string is pending),
    /// with the log-probabilities of the tokens that text starts (where the request asked for them).
    Token {
        id: SeqId,
        token: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    /// The sequence is done; `text` is the last released text, if any, and `logprobs` the entries left.
    Finished {
        id: SeqId,
        reason: FinishReason,
        text: String,
        usage: Usage,
        logprobs: Vec<TokenLogprob>,
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
    constraint: Option<Constraint>,
    added: Instant,
    first_token_at: Option<Instant>,
    /// Speculation state; None when this sequence decodes plainly.
    spec: Option<SeqSpec>,
    /// Log-probabilities waiting for their text, where the request asked for them.
    logprobs: Option<Pending>,
}

/// A speculating sequence's state.
struct SeqSpec {
    acceptance: Acceptance,
    /// Sampled requests: the draft model's own sampler (its distribution is q in the verification rule).
    draft_sampler: Option<Sampler>,
    /// Proposals for this step, and the distribution each was drawn from.
    drafts: Vec<u32>,
    q: Vec<Vec<(u32, f32)>>,
    /// Prompt lookup: the length of this step's match (its acceptance is kept per length).
    matched: Option<usize>,
    /// Draft mode: one draft now and then while the policy says drafting does not pay.
    prober: Prober,
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
    /// Speculative decoding, when enabled (`set_speculation`).
    spec: Option<Speculation>,
    /// Scratch distributions for verification.
    dist: Vec<(u32, f32)>,
    resid: Vec<(u32, f32)>,
    /// The raw logits of a row whose log-probabilities are asked for (sampling changes them in place).
    raw: Vec<f32>,
}

/// Where each logits row of a step goes: `rows` rows of `slot`, starting at `first_row`; `decode`: the sequence
/// was decoding (its first row verifies the proposals that follow), not processing its prompt.
#[derive(Clone, Copy)]
struct Group {
    slot: usize,
    rows: usize,
    decode: bool,
}

/// How many tokens each speculating, decoding sequence proposes this step, as `(slot, k)` in slot order:
/// proposals share what the step's budget leaves after one token per decoding sequence, and every proposal must
/// be able to become output (room after this step's first token). Prompt lookup's proposals are already in
/// `drafts`; the draft model's are drawn afterwards.
fn proposal_counts(
    sp: &mut Speculation,
    slots: &mut [Option<Seq>],
    budget: usize,
) -> Vec<(usize, usize)> {
    let decoding = slots
        .iter()
        .flatten()
        .filter(|s| s.n_past >= s.prompt_len)
        .count();
    let mut spare = budget.saturating_sub(decoding);
    let mut wants = Vec::new();
    for (slot, s) in slots.iter_mut().enumerate() {
        let Some(s) = s else { continue };
        let generated = s.generated();
        let left = s.max_tokens.saturating_sub(generated);
        let room = left.saturating_sub(1).min(spare);
        let prompting = s.n_past < s.prompt_len;
        let Some(ss) = s.spec.as_mut() else { continue };
        ss.drafts.clear();
        ss.q.clear();
        ss.matched = None;
        if prompting || room == 0 {
            continue;
        }
        let k = match sp.mode {
            SpecMode::PromptLookup => lookup_count(sp, &s.tokens, ss, room),
            SpecMode::Draft => draft_count(sp, slot, &s.tokens, ss, room, left, generated),
        };
        if let Some(k) = k.filter(|&k| k > 0) {
            spare -= k;
            wants.push((slot, k));
        }
    }
    wants
}

/// Prompt lookup: proposals are free to look up; how many to verify depends on how reliable matches of this
/// length have been (a long match usually means the output is copying).
fn lookup_count(
    sp: &mut Speculation,
    tokens: &[u32],
    ss: &mut SeqSpec,
    room: usize,
) -> Option<usize> {
    let len = lookup::propose(tokens, room.min(MAX_DRAFT), &mut ss.drafts)?;
    let len = len.min(lookup::LONGEST_MATCH);
    let (acceptance, prober) = &mut sp.lookup[len];
    let k = prober.adjust(choose_k(
        acceptance.rate(),
        ss.drafts.len(),
        &sp.target_cost,
        None,
    ));
    ss.drafts.truncate(k);
    ss.q.extend(ss.drafts.iter().map(|&d| vec![(d, 1.0)]));
    ss.matched = Some(len);
    Some(k)
}

/// Draft model: as many as the policy expects to pay. Drafting first makes the draft model process what it has
/// not seen (the prompt, the first time): only when the tokens to come pay for that; no probing across such a
/// gap either, and none with a draft nearly as slow as the target, whatever it would guess. None: not this step.
fn draft_count(
    sp: &Speculation,
    slot: usize,
    tokens: &[u32],
    ss: &mut SeqSpec,
    room: usize,
    left: usize,
    generated: usize,
) -> Option<usize> {
    let draft_cost = sp.drafter.as_ref().map(|d| &d.cost);
    let alpha = ss.acceptance.rate();
    let mut k = choose_k(alpha, room, &sp.target_cost, draft_cost);
    let lag = sp.drafter.as_ref().map_or(0, |d| d.lag(slot, tokens));
    if k > 0 && lag > ROUTINE_LAG {
        let cost = sp.drafter.as_ref().and_then(|d| d.catch_up_cost(lag));
        let save = saving_per_token(alpha, k, &sp.target_cost, draft_cost);
        // Tokens still to come: at most what max_tokens allows, and about what sequences here have been
        // producing.
        let expected = sp.typical_length.map_or(left, |n| {
            (n as usize).saturating_sub(generated).clamp(8, left.max(8))
        });
        if let (Some(cost), Some(save)) = (cost, save) {
            if !worth_catching_up(save, expected.min(left), cost) {
                k = 0;
            }
        }
    }
    if k == 0 && (lag > ROUTINE_LAG || !could_pay(room, &sp.target_cost, draft_cost)) {
        return None;
    }
    Some(ss.prober.adjust(k))
}

/// Verifies a proposal `(d, qi)` against the target's logits: greedy keeps it when it is the argmax; sampled
/// keeps it with probability min(1, p(d)/q(d)), else draws from the residual (so the output distribution is the
/// target's). Returns the token and whether it is the proposal.
fn verify_proposal(
    seq: &mut Seq,
    logits: &mut [f32],
    (d, qi): (u32, usize),
    dist: &mut Vec<(u32, f32)>,
    resid: &mut Vec<(u32, f32)>,
) -> (u32, bool) {
    if seq.sampler.params.temperature == 0.0 {
        let t = seq.sampler.sample(logits);
        return (t, t == d);
    }
    dist.clear();
    dist.extend_from_slice(seq.sampler.distribution(logits));
    let q = seq
        .spec
        .as_ref()
        .and_then(|ss| ss.q.get(qi))
        .map_or(&[][..], |q| &q[..]);
    let q_d = rejection::prob(q, d);
    if rejection::keep(dist, d, q_d, seq.sampler.uniform()) {
        (d, true)
    } else {
        rejection::residual(dist, q, resid);
        (draw(resid, seq.sampler.uniform()), false)
    }
}

/// The next token without a proposal. In JSON mode: sample freely first (cheap, usually acceptable) and mask
/// the vocabulary only when the choice would break the JSON — as llama.cpp does with grammars.
fn sample(seq: &mut Seq, logits: &mut [f32], tok: &Tokenizer, spare: &mut Vec<f32>) -> u32 {
    let Some(c) = &seq.constraint else {
        return seq.sampler.sample(logits);
    };
    spare.clear();
    spare.extend_from_slice(logits);
    let t = seq.sampler.sample(spare);
    if c.allows(tok, t) {
        t
    } else {
        c.mask(tok, logits);
        seq.sampler.sample(logits)
    }
}

/// Appends a chosen token to the sequence; returns the text it releases and whether it ends generation.
fn append(seq: &mut Seq, token: u32, tok: &Tokenizer) -> (crate::stream::Delta, bool) {
    if let Some(c) = &mut seq.constraint {
        c.feed(tok.token_bytes(token));
    }
    seq.sampler.accept(token);
    seq.tokens.push(token);
    if seq.first_token_at.is_none() {
        seq.first_token_at = Some(Instant::now());
    }
    let eog = !seq.ignore_eos && tok.is_eog(token);
    let delta = if eog {
        Default::default()
    } else {
        seq.stream.push(tok.token_bytes(token))
    };
    (delta, eog)
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

impl crate::loaded::LoadedModel {
    /// A batch of `n_slots` sequences over this model (defined here, beside `Batch`, so that `loaded` does not
    /// depend on `batch`, which depends on `speculative`, which depends on `loaded`).
    pub fn new_batch(&self, n_slots: usize, context: usize) -> Batch {
        Batch::new(
            self.model.clone(),
            self.tokenizer.clone(),
            self.pool.clone(),
            n_slots,
            context,
        )
    }
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
        let kv = KvCache::with_heads(
            model.config.n_layers,
            model.config.n_kv_heads,
            model.config.head_dim,
            n_slots.max(1),
        );
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
            spec: None,
            dist: Vec::new(),
            resid: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// Turns speculative decoding on (prompt lookup, or a draft model: `Speculation::draft`) or off. Sequences
    /// already running keep decoding as they were.
    pub fn set_speculation(&mut self, spec: Option<Speculation>) {
        self.spec = spec;
    }

    pub fn speculation(&self) -> Option<SpecMode> {
        self.spec.as_ref().map(|s| s.mode)
    }

    /// Speculation counters since it was turned on.
    pub fn spec_stats(&self) -> Option<SpecStats> {
        self.spec.as_ref().map(|s| s.stats)
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
            + self
                .spec
                .as_ref()
                .and_then(|s| s.drafter.as_ref())
                .map_or(0, |d| d.kv_bytes())
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
        if req.logprobs.is_some_and(|k| k > MAX_TOP) {
            return Err(EngineError::InvalidRequest(format!(
                "at most {MAX_TOP} alternatives per token"
            )));
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
        // JSON mode masks the vocabulary token by token, and a seeded sampled request must give the same text
        // every time (speculation changes which random draws go where): both decode plainly.
        let seeded_sampling = req.sampling.temperature > 0.0 && req.sampling.seed.is_some();
        let spec = match &self.spec {
            Some(sp)
                if !req.no_speculation
                    && !req.json_object
                    && req.schema.is_none()
                    && !seeded_sampling =>
            {
                let draft_sampler = (sp.mode == SpecMode::Draft && req.sampling.temperature > 0.0)
                    .then(|| {
                        // q may be any distribution: the draft's own, tempered and truncated as the request
                        // asks, without the penalties (which depend on the target's history).
                        Sampler::new(
                            SamplingParams {
                                repeat_penalty: 1.0,
                                presence_penalty: 0.0,
                                frequency_penalty: 0.0,
                                seed: None,
                                ..req.sampling.clone()
                            },
                            &[],
                        )
                    });
                Some(SeqSpec {
                    acceptance: sp.acceptance.clone(),
                    draft_sampler,
                    drafts: Vec::new(),
                    q: Vec::new(),
                    matched: None,
                    prober: Prober::default(),
                })
            }
            _ => None,
        };
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
            constraint: Constraint::of(req.schema.as_ref(), req.json_object),
            added: Instant::now(),
            first_token_at: None,
            spec,
            logprobs: req.logprobs.map(Pending::new),
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
        if let Some(d) = self.spec.as_mut().and_then(|s| s.drafter.as_mut()) {
            d.release(slot);
        }
        let text = seq.stream.finish();
        let logprobs = seq
            .logprobs
            .as_mut()
            .map(|p| p.finish(seq.stream.text.len(), false))
            .unwrap_or_default();
        Some(Event::Finished {
            id,
            reason: FinishReason::Cancelled,
            text,
            usage: seq.usage(),
            logprobs,
        })
    }

    /// Proposals for the decoding sequences that speculate: how many each drafts (the policy), then the tokens
    /// (prompt lookup, or the draft model for all of them together). Leaves them in each `SeqSpec::drafts`.
    fn propose(&mut self, budget: usize) {
        let Some(sp) = self.spec.as_mut() else {
            return;
        };
        let wants = proposal_counts(sp, &mut self.slots, budget);
        if sp.mode != SpecMode::Draft {
            return;
        }
        let Some(drafter) = sp.drafter.as_mut() else {
            return;
        };
        let mut jobs: Vec<DraftJob<'_>> = Vec::with_capacity(wants.len());
        let mut wants = wants.into_iter().peekable();
        for (slot, s) in self.slots.iter_mut().enumerate() {
            let Some((_, k)) = wants.next_if(|w| w.0 == slot) else {
                continue;
            };
            let Some(s) = s.as_mut() else { continue };
            let Some(ss) = s.spec.as_mut() else { continue };
            jobs.push(DraftJob {
                slot,
                tokens: &s.tokens,
                k,
                sampler: ss.draft_sampler.as_mut(),
                drafts: &mut ss.drafts,
                q: &mut ss.q,
            });
        }
        if !jobs.is_empty() {
            drafter.propose(
                &self.pool,
                &mut jobs,
                self.model.config.vocab_size,
                self.max_step_tokens,
            );
        }
    }

    /// One forward pass over every active sequence; returns what happened.
    pub fn step(&mut self) -> Vec<Event> {
        self.entries.clear();
        let mut budget = self.max_step_tokens.max(1);
        self.propose(budget);
        let mut groups: Vec<Group> = Vec::new();
        self.plan_decoding(&mut budget, &mut groups);
        let prompt_work = self.plan_prompts(&mut budget, &mut groups);
        self.work.clear();
        if self.entries.is_empty() {
            return Vec::new();
        }
        self.reserve_and_count_work();
        self.forward(prompt_work);
        let mut events = Vec::new();
        let mut out_row = 0;
        let mut first = 0;
        for g in groups {
            let entries = first..first + g.rows;
            first += g.rows;
            if g.decode {
                self.verify(g, entries, out_row, &mut events);
                out_row += g.rows;
            } else if self.finish_prompt_chunk(g, entries, out_row, &mut events) {
                out_row += 1;
            }
        }
        events
    }

    /// Decoding sequences come first (one token each, plus their proposals): they are latency-sensitive.
    fn plan_decoding(&mut self, budget: &mut usize, groups: &mut Vec<Group>) {
        for (slot, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            if s.n_past < s.prompt_len || *budget == 0 {
                continue;
            }
            let drafts = s.spec.as_ref().map_or(&[][..], |ss| &ss.drafts[..]);
            self.entries.push(Entry {
                slot,
                pos: s.n_past,
                token: s.tokens[s.n_past],
                want_logits: true,
            });
            for (i, &d) in drafts.iter().enumerate() {
                self.entries.push(Entry {
                    slot,
                    pos: s.n_past + 1 + i,
                    token: d,
                    want_logits: true,
                });
            }
            *budget = budget.saturating_sub(1 + drafts.len());
            groups.push(Group {
                slot,
                rows: 1 + drafts.len(),
                decode: true,
            });
        }
    }

    /// Prompt chunks fill what decoding left of the budget; true when there are any.
    fn plan_prompts(&mut self, budget: &mut usize, groups: &mut Vec<Group>) -> bool {
        let mut prompt_work = false;
        for (slot, s) in self.slots.iter().enumerate() {
            let Some(s) = s else { continue };
            if s.n_past >= s.prompt_len || *budget == 0 {
                continue;
            }
            let take = (s.prompt_len - s.n_past).min(*budget);
            for i in 0..take {
                let pos = s.n_past + i;
                self.entries.push(Entry {
                    slot,
                    pos,
                    token: s.tokens[pos],
                    want_logits: pos + 1 == s.prompt_len,
                });
            }
            *budget -= take;
            prompt_work = true;
            groups.push(Group {
                slot,
                rows: take,
                decode: false,
            });
        }
        prompt_work
    }

    /// KV room for every entry, and how many tokens each sequence has in this pass (energy is shared by it).
    fn reserve_and_count_work(&mut self) {
        for e in &self.entries {
            self.kv.reserve(e.slot, e.pos + 1);
            if let Some(s) = &self.slots[e.slot] {
                match self.work.last_mut() {
                    Some((id, n)) if *id == s.id => *n += 1,
                    _ => self.work.push((s.id, 1)),
                }
            }
        }
    }

    /// The model over this step's entries; decode-only passes also measure what a verification costs (prompt
    /// chunks would skew the fit).
    fn forward(&mut self, prompt_work: bool) {
        let t0 = Instant::now();
        self.model
            .forward(&self.pool, &mut self.kv, &self.entries, &mut self.scratch);
        if let Some(sp) = self.spec.as_mut() {
            if !prompt_work {
                sp.target_cost.observe(self.entries.len(), t0.elapsed());
            }
        }
    }

    /// A prompt chunk is in the cache; the prompt's last one samples the first token from logits row `row`.
    /// Returns whether it used that row.
    fn finish_prompt_chunk(
        &mut self,
        g: Group,
        entries: std::ops::Range<usize>,
        row: usize,
        events: &mut Vec<Event>,
    ) -> bool {
        let last = self.entries[entries.end - 1];
        if let Some(seq) = self.slots[g.slot].as_mut() {
            seq.n_past = seq.n_past.max(last.pos + 1);
        }
        if last.want_logits && self.slots[g.slot].is_some() {
            self.emit(g.slot, row, None, events);
        }
        last.want_logits
    }

    /// A decoding sequence's rows: row r verifies proposal r (the entry after it); the last row has none and
    /// gives a bonus token. Stops at the first rejected proposal or when the sequence ends.
    fn verify(
        &mut self,
        g: Group,
        entries: std::ops::Range<usize>,
        first_row: usize,
        events: &mut Vec<Event>,
    ) {
        let drafted = g.rows - 1;
        let mut kept = 0;
        let mut finished = false;
        for r in 0..g.rows {
            let Some(seq) = self.slots[g.slot].as_mut() else {
                finished = true;
                break;
            };
            // The token fed at row r has its keys and values in the cache now.
            seq.n_past = self.entries[entries.start + r].pos + 1;
            let proposal = (r < drafted).then(|| (self.entries[entries.start + r + 1].token, r));
            let accepted = self.emit(g.slot, first_row + r, proposal, events);
            if self.slots[g.slot].is_none() {
                finished = true;
                if accepted {
                    kept += 1;
                }
                break;
            }
            if !accepted {
                break;
            }
            kept += 1;
        }
        if drafted > 0 {
            self.record_acceptance(g.slot, drafted, kept, finished);
        }
    }

    /// Counts a verification; its acceptance informs the policy unless the sequence ended inside its proposals
    /// (that says nothing about the rest of them).
    fn record_acceptance(&mut self, slot: usize, drafted: usize, kept: usize, finished: bool) {
        let matched = self.slots[slot]
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|ss| ss.matched);
        if let Some(sp) = self.spec.as_mut() {
            sp.stats.drafted += drafted as u64;
            sp.stats.accepted += kept as u64;
            sp.stats.verifications += 1;
            if !finished {
                sp.acceptance.observe(drafted, kept);
                if let Some(len) = matched {
                    sp.lookup[len].0.observe(drafted, kept);
                }
            }
        }
        if let Some(ss) = self.slots[slot].as_mut().and_then(|s| s.spec.as_mut()) {
            if !finished {
                ss.acceptance.observe(drafted, kept);
            }
        }
    }

    /// Picks the token from logits row `row` for the sequence in `slot` — verifying `proposal` when there is one
    /// — appends it, and pushes its events; a finished sequence leaves the batch. Returns whether the proposal
    /// was kept.
    fn emit(
        &mut self,
        slot: usize,
        row: usize,
        proposal: Option<(u32, usize)>,
        events: &mut Vec<Event>,
    ) -> bool {
        let vocab = self.model.config.vocab_size;
        let Some(seq) = self.slots[slot].as_mut() else {
            return false;
        };
        let logits = &mut self.scratch.logits[row * vocab..(row + 1) * vocab];
        if seq.logprobs.is_some() {
            self.raw.clear();
            self.raw.extend_from_slice(logits);
        }
        let (token, accepted) = match proposal {
            Some(proposal) => {
                verify_proposal(seq, logits, proposal, &mut self.dist, &mut self.resid)
            }
            None => (sample(seq, logits, &self.tokenizer, &mut self.spare), false),
        };
        let (delta, eog) = append(seq, token, &self.tokenizer);
        if let Some(p) = &mut seq.logprobs {
            // An end-of-generation token is not part of the answer: it has no entry.
            if !eog {
                p.push(crate::logprobs::of_logits(
                    &self.raw,
                    token,
                    p.top,
                    &self.tokenizer,
                ));
            }
        }
        let reason = if eog || delta.stopped {
            Some(FinishReason::Stop)
        } else if seq.generated() >= seq.max_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        let Some(reason) = reason else {
            let released = seq.stream.text.len();
            events.push(Event::Token {
                id: seq.id,
                token,
                text: delta.text,
                logprobs: seq
                    .logprobs
                    .as_mut()
                    .map(|p| p.release(released))
                    .unwrap_or_default(),
            });
            return accepted;
        };
        let mut text = delta.text;
        if !delta.stopped {
            text.push_str(&seq.stream.finish());
        }
        let released = seq.stream.text.len();
        let logprobs = seq
            .logprobs
            .as_mut()
            .map(|p| p.finish(released, delta.stopped))
            .unwrap_or_default();
        let mut usage = seq.usage();
        // An end-of-generation token ends the text but is not part of it.
        if eog {
            usage.completion_tokens -= 1;
        } else {
            events.push(Event::Token {
                id: seq.id,
                token,
                text: String::new(),
                logprobs: Vec::new(),
            });
        }
        events.push(Event::Finished {
            id: seq.id,
            reason,
            text,
            usage,
            logprobs,
        });
        let generated = seq.generated();
        self.leave(slot, generated);
        accepted
    }

    /// A finished sequence leaves its slot: its keys and values may stay for the next one, the draft model
    /// forgets it, and the policy learns its length.
    fn leave(&mut self, slot: usize, generated: usize) {
        if let Some(sp) = self.spec.as_mut() {
            sp.note_finished(generated);
        }
        if let Some(done) = self.slots[slot].take() {
            retire(&mut self.kv, &mut self.cached[slot], slot, &done);
            if let Some(d) = self.spec.as_mut().and_then(|s| s.drafter.as_mut()) {
                d.release(slot);
            }
        }
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
