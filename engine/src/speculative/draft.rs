//! A draft model: a small model, with its own KV cache per batch slot, that proposes the next few tokens of
//! each speculating sequence. It catches up on the tokens it has not seen (the prompt the first time, then the
//! tokens verification kept), then drafts one token per pass for all sequences together.

use super::policy::PassCost;
use crate::kv::KvCache;
use crate::model::{Entry, Model, Scratch};
use crate::sampling::{argmax, Sampler};
use crate::threadpool::ThreadPool;
use std::sync::Arc;
use std::time::Instant;

pub struct Drafter {
    pub model: Arc<Model>,
    kv: KvCache,
    scratch: Scratch,
    /// Per slot: the tokens whose draft keys and values are valid, at positions 0..len.
    cached: Vec<Vec<u32>>,
    entries: Vec<Entry>,
    /// Cost of a draft pass (catch-up passes of many tokens are left out: they are prompt processing).
    pub cost: PassCost,
    /// Seconds per token of catching up on many tokens at once (the prompt, or everything since the last draft).
    catch_up_per_token: Option<f64>,
}

/// Tokens a draft pass catches up on as a matter of course: the ones verification kept and the bonus token.
pub const ROUTINE_LAG: usize = 2;

/// One sequence to draft for.
pub struct DraftJob<'a> {
    pub slot: usize,
    /// The sequence so far; its last token has not been run through the target yet.
    pub tokens: &'a [u32],
    /// Tokens wanted.
    pub k: usize,
    /// Sampled requests draw drafts from the draft's own distribution (kept in `q`); None drafts greedily.
    pub sampler: Option<&'a mut Sampler>,
    pub drafts: &'a mut Vec<u32>,
    pub q: &'a mut Vec<Vec<(u32, f32)>>,
}

/// Largest draft pass counted in the cost model.
const COSTED_PASS: usize = 64;

impl Drafter {
    pub fn new(model: Arc<Model>, n_slots: usize) -> Drafter {
        let kv = KvCache::with_heads(
            model.config.n_layers,
            model.config.n_kv_heads,
            model.config.head_dim,
            n_slots.max(1),
        );
        Drafter {
            model,
            kv,
            scratch: Scratch::default(),
            cached: (0..n_slots.max(1)).map(|_| Vec::new()).collect(),
            entries: Vec::new(),
            cost: PassCost::default(),
            catch_up_per_token: None,
        }
    }

    /// How many of `tokens` (a sequence whose last token the target has not run yet) the draft cache of `slot`
    /// lacks: what drafting for it now would first have to process.
    pub fn lag(&self, slot: usize, tokens: &[u32]) -> usize {
        let have = self.cached.get(slot).map_or(0, |c| {
            c.iter().zip(tokens).take_while(|(a, b)| a == b).count()
        });
        tokens.len().saturating_sub(have)
    }

    /// Predicted seconds to catch up on `lag` tokens beyond the routine ones; None before any catch-up was timed.
    pub fn catch_up_cost(&self, lag: usize) -> Option<f64> {
        if lag <= ROUTINE_LAG {
            return Some(0.0);
        }
        self.catch_up_per_token.map(|c| c * lag as f64)
    }

    /// The slot's sequence left: keep what the draft cache holds for a successor sharing its prefix, unless the
    /// cache frees its memory.
    pub fn release(&mut self, slot: usize) {
        if !self.kv.release(slot) {
            self.cached[slot].clear();
        }
    }

    pub fn kv_bytes(&self) -> usize {
        self.kv.bytes_used()
    }

    /// Fills each job's `drafts` (and `q`) with up to `k` tokens. `vocab_limit`: drafts stop at a token the
    /// target cannot embed (a padded draft vocabulary). `max_pass`: most tokens per catch-up pass.
    pub fn propose(
        &mut self,
        pool: &ThreadPool,
        jobs: &mut [DraftJob<'_>],
        vocab_limit: usize,
        max_pass: usize,
    ) {
        for j in jobs.iter_mut() {
            j.drafts.clear();
            j.q.clear();
        }
        // Catch up: every token up to and including the last, which gives the first draft's logits.
        self.entries.clear();
        for j in jobs.iter() {
            let n = j.tokens.len() - 1;
            let cached = &mut self.cached[j.slot];
            let keep = cached
                .iter()
                .zip(j.tokens)
                .take_while(|(a, b)| a == b)
                .count()
                .min(n);
            cached.truncate(keep);
            cached.extend_from_slice(&j.tokens[keep..]);
            self.kv.reserve(j.slot, n + j.k.max(1));
            for pos in keep..=n {
                self.entries.push(Entry {
                    slot: j.slot,
                    pos,
                    token: j.tokens[pos],
                    want_logits: pos == n,
                });
            }
        }
        let catch_up = std::mem::take(&mut self.entries);
        let mut done = 0;
        let mut job_of_row = Vec::with_capacity(jobs.len());
        while done < catch_up.len() {
            let end = (done + max_pass.max(1)).min(catch_up.len());
            let chunk = &catch_up[done..end];
            job_of_row.clear();
            for e in chunk.iter().filter(|e| e.want_logits) {
                job_of_row.push(jobs.iter().position(|j| j.slot == e.slot).unwrap_or(0));
            }
            let t0 = Instant::now();
            self.pass(pool, chunk);
            if chunk.len() > ROUTINE_LAG * jobs.len().max(1) {
                let per = t0.elapsed().as_secs_f64() / chunk.len() as f64;
                self.catch_up_per_token =
                    Some(self.catch_up_per_token.map_or(per, |c| c + 0.2 * (per - c)));
            }
            for (row, &ji) in job_of_row.iter().enumerate() {
                self.pick(&mut jobs[ji], row, vocab_limit);
            }
            done = end;
        }
        self.entries = catch_up;

        // Then one token per pass for the jobs that want more.
        let mut round = 1;
        loop {
            self.entries.clear();
            job_of_row.clear();
            for (ji, j) in jobs.iter().enumerate() {
                // A job stops when it has k drafts, or when its last pick was refused (vocab_limit).
                if j.drafts.len() == round && round < j.k {
                    let last = j.drafts[round - 1];
                    self.entries.push(Entry {
                        slot: j.slot,
                        pos: j.tokens.len() - 1 + round,
                        token: last,
                        want_logits: true,
                    });
                    self.cached[j.slot].push(last);
                    job_of_row.push(ji);
                }
            }
            if self.entries.is_empty() {
                break;
            }
            let entries = std::mem::take(&mut self.entries);
            self.pass(pool, &entries);
            self.entries = entries;
            for (row, &ji) in job_of_row.iter().enumerate() {
                self.pick(&mut jobs[ji], row, vocab_limit);
            }
            round += 1;
        }
    }

    fn pass(&mut self, pool: &ThreadPool, entries: &[Entry]) {
        let t0 = Instant::now();
        self.model
            .forward(pool, &mut self.kv, entries, &mut self.scratch);
        if entries.len() <= COSTED_PASS {
            self.cost.observe(entries.len(), t0.elapsed());
        }
    }

    /// The next draft of `job` from logits row `row`.
    fn pick(&mut self, job: &mut DraftJob<'_>, row: usize, vocab_limit: usize) {
        let vocab = self.model.config.vocab_size;
        let logits = &mut self.scratch.logits[row * vocab..(row + 1) * vocab];
        let (token, q) = match job.sampler.as_deref_mut() {
            None => {
                let t = argmax(logits);
                (t, vec![(t, 1.0)])
            }
            Some(s) => {
                let dist = s.distribution(logits).to_vec();
                let t = crate::sampling::draw(&dist, s.uniform());
                (t, dist)
            }
        };
        if (token as usize) < vocab_limit {
            job.drafts.push(token);
            job.q.push(q);
        } else {
            // Nothing after an unembeddable token; the job ends here.
            job.k = job.drafts.len();
        }
    }
}
