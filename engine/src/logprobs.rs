//! Log-probabilities of generated tokens (OpenAI's `logprobs`, Ollama's `logprobs`): the chosen token's and the
//! most likely alternatives', under the model's own distribution — the log-softmax of the raw logits, before
//! temperature, penalties, biases and constraints, as vLLM and llama.cpp's server report them by default.
//!
//! Entries are given out with the text they start, so that a stop string's tokens (whose text is never given out)
//! have no entries, and the entries of an answer are the tokens of its text.

use crate::tokenizer::Tokenizer;
use std::collections::VecDeque;

/// The most alternatives a request may ask for per token (OpenAI's limit).
pub const MAX_TOP: usize = 20;

/// One generated token.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenLogprob {
    pub token: u32,
    /// The token's bytes (a piece of a UTF-8 character for byte tokens).
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The `top` most likely tokens at this position, most likely first (may include the chosen one).
    pub top: Vec<Alternative>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Alternative {
    pub token: u32,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// The log of the sum of the exponentials of `logits` (the softmax's normaliser), computed stably.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    // f64 accumulation: a 262 144-token vocabulary sums many small terms.
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// The `k` largest logits as `(token, logit)`, largest first; ties go to the lower id (a stable order).
fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return top;
    }
    for (i, &l) in logits.iter().enumerate() {
        if top.len() == k && l <= top[k - 1].1 {
            continue;
        }
        let at = top.partition_point(|&(_, x)| x >= l);
        top.insert(at, (i as u32, l));
        top.truncate(k);
    }
    top
}

/// The entry of `chosen` from the raw logits of its position, with the `k` most likely alternatives.
pub fn of_logits(logits: &[f32], chosen: u32, k: usize, tok: &Tokenizer) -> TokenLogprob {
    let norm = log_sum_exp(logits);
    let lp = |l: f32| l - norm;
    TokenLogprob {
        token: chosen,
        bytes: tok.token_bytes(chosen).to_vec(),
        logprob: lp(logits
            .get(chosen as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY)),
        top: top_k(logits, k)
            .into_iter()
            .map(|(t, l)| Alternative {
                token: t,
                bytes: tok.token_bytes(t).to_vec(),
                logprob: lp(l),
            })
            .collect(),
    }
}

/// A sequence's entries waiting for their text: each is given out once the text released reaches past where
/// its bytes start.
#[derive(Debug, Default)]
pub struct Pending {
    /// How many alternatives each entry carries.
    pub top: usize,
    entries: VecDeque<(usize, TokenLogprob)>,
    /// Bytes of all generated tokens so far (the next entry's start).
    generated: usize,
}

impl Pending {
    pub fn new(top: usize) -> Pending {
        Pending {
            top,
            ..Default::default()
        }
    }

    pub fn push(&mut self, e: TokenLogprob) {
        let start = self.generated;
        self.generated += e.bytes.len();
        self.entries.push_back((start, e));
    }

    /// The entries whose text starts before `released` bytes of output were given out.
    pub fn release(&mut self, released: usize) -> Vec<TokenLogprob> {
        let mut out = Vec::new();
        while self.entries.front().is_some_and(|(s, _)| *s < released) {
            out.extend(self.entries.pop_front().map(|(_, e)| e));
        }
        out
    }

    /// What is left when the sequence ends: all of it, unless a stop string ended it (then only the entries whose
    /// text was given out; the stop string's tokens have none).
    pub fn finish(&mut self, released: usize, stopped: bool) -> Vec<TokenLogprob> {
        let mut out = self.release(released);
        if !stopped {
            out.extend(self.entries.drain(..).map(|(_, e)| e));
        }
        self.entries.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_probabilities_normalise() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5];
        let norm = log_sum_exp(&logits);
        let total: f64 = logits.iter().map(|&l| ((l - norm) as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        // A huge logit does not overflow.
        let big = [1000.0f32, 0.0];
        assert!((log_sum_exp(&big) - 1000.0).abs() < 1e-3);
    }

    #[test]
    fn top_k_is_the_k_largest_in_order_with_ties_by_id() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5, 2.0];
        assert_eq!(top_k(&logits, 3), vec![(1, 3.0), (3, 3.0), (5, 2.0)]);
        assert_eq!(top_k(&logits, 0), vec![]);
        assert_eq!(top_k(&logits, 10).len(), 6);
        // Against a full sort on pseudo-random logits.
        let mut x = 0x2545_f491_u64;
        let many: Vec<f32> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 1000) as f32 / 37.0
            })
            .collect();
        let mut sorted: Vec<(u32, f32)> = many
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(top_k(&many, 20), sorted[..20].to_vec());
    }

    fn entry(token: u32, bytes: &str) -> TokenLogprob {
        TokenLogprob {
            token,
            bytes: bytes.as_bytes().to_vec(),
            logprob: -1.0,
            top: vec![],
        }
    }

    #[test]
    fn entries_wait_for_their_text_and_a_stop_string_has_none() {
        let mut p = Pending::new(0);
        p.push(entry(1, "Hello"));
        p.push(entry(2, " E"));
        // "Hello " is given out; " E" starts at 5, inside it.
        assert_eq!(p.release(6).len(), 2);
        p.push(entry(3, "N"));
        p.push(entry(4, "D"));
        // The stop string "END" matched: nothing more was given out.
        assert!(p.finish(7, true).is_empty());

        let mut p = Pending::new(0);
        p.push(entry(1, "a"));
        p.push(entry(2, "\u{e9}"));
        assert_eq!(p.release(1).len(), 1);
        // Ended by length or end of generation: everything.
        assert_eq!(p.finish(1, false).len(), 1);
    }
}
