//! Turning logits into the next token: logit bias, penalties, temperature, top-k, top-p, min-p and a seeded RNG.
//! Pure code over a logits slice — no model, no threads — so each rule is unit-tested exactly.

use crate::error::{EngineError, Result};
use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    /// llama.cpp's repetition penalty over the last `repeat_last_n` tokens (prompt included); 1 = off.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// OpenAI's penalties over the generated tokens.
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub logit_bias: Vec<(u32, f32)>,
    /// Same seed, same prompt, same parameters → same text. None draws a seed from the clock.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Rejects values that have no meaning, naming the parameter.
    pub fn validate(&self, vocab_size: usize) -> Result<()> {
        let bad = |m: String| Err(EngineError::InvalidRequest(m));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return bad(format!(
                "repeat_penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        for (name, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(format!("{name} must be in [-2, 2], got {v}"));
            }
        }
        for &(tok, bias) in &self.logit_bias {
            if tok as usize >= vocab_size {
                return bad(format!(
                    "logit_bias token {tok} is outside the vocabulary of {vocab_size}"
                ));
            }
            if !(-100.0..=100.0).contains(&bias) {
                return bad(format!(
                    "logit_bias for token {tok} must be in [-100, 100], got {bias}"
                ));
            }
        }
        Ok(())
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, and stable across releases (a dependency's RNG could
/// change the text a seed produces).
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
    recent: VecDeque<u32>,
    generated_counts: HashMap<u32, u32>,
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Sampler {
        let seed = params.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed)
        });
        let n = params.repeat_last_n;
        let recent = prompt[prompt.len().saturating_sub(n)..]
            .iter()
            .copied()
            .collect();
        Sampler {
            params,
            rng: Rng::new(seed),
            recent,
            generated_counts: HashMap::new(),
            candidates: Vec::new(),
        }
    }

    /// Records a generated token (for penalties).
    pub fn accept(&mut self, token: u32) {
        *self.generated_counts.entry(token).or_insert(0) += 1;
        if self.params.repeat_last_n > 0 {
            if self.recent.len() == self.params.repeat_last_n {
                self.recent.pop_front();
            }
            self.recent.push_back(token);
        }
    }

    /// Applies bias and penalties to `logits` in place.
    pub fn adjust(&self, logits: &mut [f32]) {
        let p = &self.params;
        for &(tok, bias) in &p.logit_bias {
            if let Some(l) = logits.get_mut(tok as usize) {
                *l += bias;
            }
        }
        if p.repeat_penalty != 1.0 {
            let mut seen = std::collections::HashSet::new();
            for &t in &self.recent {
                if seen.insert(t) {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l = if *l > 0.0 {
                            *l / p.repeat_penalty
                        } else {
                            *l * p.repeat_penalty
                        };
                    }
                }
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            for (&t, &c) in &self.generated_counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= p.presence_penalty + p.frequency_penalty * c as f32;
                }
            }
        }
    }

    /// Chooses the next token (does not record it: call `accept`).
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        if self.params.temperature == 0.0 {
            self.adjust(logits);
            return argmax(logits);
        }
        self.distribution(logits);
        let u = self.rng.next_f32();
        draw(&self.candidates, u)
    }

    /// A uniform draw in [0, 1) from this sequence's generator (speculative verification).
    pub fn uniform(&mut self) -> f32 {
        self.rng.next_f32()
    }

    /// The distribution `sample` draws from at temperature > 0: bias and penalties, temperature, top-k, top-p and
    /// min-p applied, as (token, probability) pairs summing to 1, most likely first. Speculative decoding verifies
    /// drafted tokens against it.
    pub fn distribution(&mut self, logits: &mut [f32]) -> &[(u32, f32)] {
        self.adjust(logits);
        let p = &self.params;
        let t = p.temperature.max(f32::MIN_POSITIVE);
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let inv_t = 1.0 / t;
        // Candidates within e^-25 of the best can matter; the rest have no probability mass to speak of.
        let floor = max - 25.0 * t;
        self.candidates.clear();
        self.candidates.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, &l)| l >= floor)
                .map(|(i, &l)| (i as u32, l)),
        );
        let c = &mut self.candidates;
        let by_logit_desc =
            |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < c.len() {
            c.select_nth_unstable_by(p.top_k - 1, by_logit_desc);
            c.truncate(p.top_k);
        }
        c.sort_unstable_by(by_logit_desc);
        // Softmax with temperature.
        let mut sum = 0.0;
        for x in c.iter_mut() {
            x.1 = ((x.1 - max) * inv_t).exp();
            sum += x.1;
        }
        c.iter_mut().for_each(|x| x.1 /= sum);
        if p.top_p < 1.0 {
            let mut cum = 0.0;
            let mut keep = c.len();
            for (i, x) in c.iter().enumerate() {
                cum += x.1;
                if cum >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep.max(1));
        }
        if p.min_p > 0.0 {
            let thresh = c[0].1 * p.min_p;
            let keep = c.iter().take_while(|x| x.1 >= thresh).count().max(1);
            c.truncate(keep);
        }
        let total: f32 = c.iter().map(|x| x.1).sum();
        c.iter_mut().for_each(|x| x.1 /= total);
        &self.candidates
    }
}

/// The token of `dist` ((token, probability) pairs summing to 1) that the uniform draw `u` in [0, 1) picks.
pub fn draw(dist: &[(u32, f32)], u: f32) -> u32 {
    let total: f32 = dist.iter().map(|x| x.1).sum();
    let mut r = u * total;
    for x in dist {
        r -= x.1;
        if r < 0.0 {
            return x.0;
        }
    }
    dist.last().map(|x| x.0).unwrap_or(0)
}

pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn greedy_takes_argmax() {
        let mut s = Sampler::new(params(0.0), &[]);
        assert_eq!(s.sample(&mut [0.1, 3.0, 2.0]), 1);
    }

    #[test]
    fn logit_bias_and_penalties_change_the_choice() {
        let mut p = params(0.0);
        p.logit_bias = vec![(2, 5.0)];
        assert_eq!(Sampler::new(p, &[]).sample(&mut [0.0, 3.0, 2.0]), 2);

        let mut p = params(0.0);
        p.repeat_penalty = 2.0;
        // token 1 (logit 3) is in the prompt window → 1.5 < 2.0.
        assert_eq!(Sampler::new(p, &[1]).sample(&mut [0.0, 3.0, 2.0]), 2);

        let mut p = params(0.0);
        p.frequency_penalty = 1.0;
        let mut s = Sampler::new(p, &[]);
        s.accept(1);
        s.accept(1);
        assert_eq!(s.sample(&mut [0.0, 3.0, 2.0]), 2); // 3 - 2 = 1 < 2
        let mut p = params(0.0);
        p.presence_penalty = 0.5;
        let mut s = Sampler::new(p, &[]);
        s.accept(1);
        let mut l = [0.0, 3.0, 2.0];
        s.adjust(&mut l);
        assert_eq!(l, [0.0, 2.5, 2.0]);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut p = params(1.0);
            p.seed = Some(seed);
            let mut s = Sampler::new(p, &[]);
            (0..20)
                .map(|_| s.sample(&mut logits.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_truncates() {
        let mut p = params(5.0);
        p.top_k = 1;
        let mut s = Sampler::new(p, &[]);
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [1.0, 1.5, 0.5]), 1);
        }
        // Probabilities ~[0.88, 0.12, ~0]: top_p 0.5 keeps only token 0.
        let mut p = params(1.0);
        p.top_p = 0.5;
        let mut s = Sampler::new(p, &[]);
        for _ in 0..50 {
            assert_eq!(s.sample(&mut [2.0, 0.0, -10.0]), 0);
        }
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let mut p = params(1.0);
        p.min_p = 0.5;
        let mut s = Sampler::new(p, &[]);
        // exp(-1) ≈ 0.37 of the best: below 0.5, never chosen.
        for _ in 0..100 {
            assert_ne!(s.sample(&mut [1.0, 0.0, 1.0]), 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        let mut s = Sampler::new(params(1.0), &[]);
        let ln = |p: f32| p.ln();
        let mut counts = [0usize; 3];
        for _ in 0..20000 {
            counts[s.sample(&mut [ln(0.5), ln(0.3), ln(0.2)]) as usize] += 1;
        }
        for (c, want) in counts.iter().zip([0.5, 0.3, 0.2]) {
            let got = *c as f32 / 20000.0;
            assert!((got - want).abs() < 0.02, "{counts:?}");
        }
    }

    #[test]
    fn invalid_values_are_rejected_by_name() {
        for (p, name) in [
            (
                SamplingParams {
                    temperature: -1.0,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    top_p: 1.5,
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplingParams {
                    min_p: 2.0,
                    ..Default::default()
                },
                "min_p",
            ),
            (
                SamplingParams {
                    presence_penalty: 3.0,
                    ..Default::default()
                },
                "presence_penalty",
            ),
            (
                SamplingParams {
                    logit_bias: vec![(99, 1.0)],
                    ..Default::default()
                },
                "logit_bias",
            ),
        ] {
            let e = p.validate(10).expect_err(name);
            assert!(e.to_string().contains(name), "{e}");
        }
        SamplingParams::default()
            .validate(10)
            .expect("defaults are valid");
    }
}
