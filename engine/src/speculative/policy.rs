//! How many tokens to draft. Each verification emits on average Σ_{i=0..k} α^i tokens (α: the chance a drafted
//! token is kept, i.i.d. — the usual model) and costs one target pass over 1 + k tokens plus k draft passes. The
//! policy measures both costs on this machine as the batch runs and picks the k with the most tokens per second;
//! k = 0 — plain decoding — whenever drafting does not pay, so speculation never makes a sequence slower than
//! it would be without (bar the occasional probe that re-measures the acceptance rate).

use std::time::Duration;

/// Most tokens drafted per verification.
pub const MAX_DRAFT: usize = 8;

/// Pass sizes whose cost is remembered one by one (a verification is 2..=MAX_DRAFT + 1 tokens per sequence).
const SIZES: usize = 2 * (MAX_DRAFT + 1);

/// What a forward pass over n tokens costs on this machine now: a moving average per pass size up to `SIZES`,
/// and above that a line through the largest sizes measured. A size keeps its figure while it is not run — a
/// least-squares line over recent passes would forget what drafting costs while plain decoding dominates, then
/// guess too low and draft again.
#[derive(Debug, Clone)]
pub struct PassCost {
    by_size: [Option<f64>; SIZES + 1],
    seen: [u32; SIZES + 1],
}

impl Default for PassCost {
    fn default() -> PassCost {
        PassCost {
            by_size: [None; SIZES + 1],
            seen: [0; SIZES + 1],
        }
    }
}

/// Least weight of a new observation in its size's average: follows the machine's load within a few dozen
/// passes. The first ten are averaged plainly, so one cold first pass does not stand for a size for long.
const NEW: f64 = 0.1;

impl PassCost {
    pub fn observe(&mut self, n: usize, took: Duration) {
        let t = took.as_secs_f64();
        if let (Some(slot), Some(seen)) = (self.by_size.get_mut(n), self.seen.get_mut(n)) {
            *seen = seen.saturating_add(1);
            let w = (1.0 / *seen as f64).max(NEW);
            *slot = Some(slot.map_or(t, |old| old + w * (t - old)));
        }
    }

    pub fn is_known(&self) -> bool {
        self.by_size.iter().any(Option::is_some)
    }

    /// Predicted seconds for a pass over `n` tokens; None before any observation. Unmeasured sizes are
    /// interpolated between measured ones, or extended along the slope of the two largest; with a single size
    /// measured an extra token is assumed to cost a tenth of a pass (a decode step reads all weights whatever n
    /// is) until passes of other sizes say otherwise.
    pub fn predict(&self, n: usize) -> Option<f64> {
        if let Some(Some(t)) = self.by_size.get(n) {
            return Some(*t);
        }
        let known = || {
            self.by_size
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (i as f64, t)))
        };
        let below = known().rfind(|&(i, _)| i < n as f64);
        let above = known().find(|&(i, _)| i > n as f64);
        let x = n as f64;
        match (below, above) {
            (Some((i0, t0)), Some((i1, t1))) => Some(t0 + (t1 - t0) * (x - i0) / (i1 - i0)),
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => {
                let mut largest = known().collect::<Vec<_>>();
                largest.sort_by(|a, b| b.0.total_cmp(&a.0));
                let slope = match largest[..] {
                    [(i1, t1), (i0, t0), ..] => ((t1 - t0) / (i1 - i0)).max(0.0),
                    _ => one.1 / (10.0 + one.0),
                };
                Some((one.1 + slope * (x - one.0)).max(0.0))
            }
        }
    }
}

/// The acceptance rate α, with recent verifications weighing most.
#[derive(Debug, Clone)]
pub struct Acceptance {
    kept: f64,
    tried: f64,
}

impl Acceptance {
    /// Starts as if `prior` of a few tokens had been kept.
    pub fn new(prior: f64) -> Acceptance {
        Acceptance {
            kept: 4.0 * prior,
            tried: 4.0,
        }
    }

    /// One verification: `kept` of `drafted` tokens were kept (a run ending at the first rejection).
    pub fn observe(&mut self, drafted: usize, kept: usize) {
        if drafted == 0 {
            return;
        }
        // Under the geometric model the positions after the first rejection were never judged.
        let judged = (kept + 1).min(drafted);
        self.kept = self.kept * 0.8 + kept as f64;
        self.tried = self.tried * 0.8 + judged as f64;
    }

    pub fn rate(&self) -> f64 {
        (self.kept / self.tried).clamp(0.0, 0.999)
    }
}

/// When the policy says k = 0, proposals stop — and so does the measurement of the acceptance rate that made it
/// say so. A `Prober` lets one proposal through now and then, less often the longer drafting keeps not paying.
#[derive(Debug, Clone)]
pub struct Prober {
    skipped: usize,
    after: usize,
}

/// Skipped chances before the first probe, and the longest wait between probes.
pub const FIRST_PROBE: usize = 16;
pub const LAST_PROBE: usize = 256;

impl Default for Prober {
    fn default() -> Prober {
        Prober {
            skipped: 0,
            after: FIRST_PROBE,
        }
    }
}

impl Prober {
    /// The draft length to use when the policy chose `k`: `k` itself, or 1 when it is time to probe.
    pub fn adjust(&mut self, k: usize) -> usize {
        if k > 0 {
            *self = Prober::default();
            return k;
        }
        self.skipped += 1;
        if self.skipped < self.after {
            return 0;
        }
        self.skipped = 0;
        self.after = (self.after * 2).min(LAST_PROBE);
        1
    }
}

/// Whether drafting could pay at all: at perfect acceptance some k beats plain decoding by the minimum gain. When it cannot (a draft
/// model nearly as slow as the target), there is nothing to probe for.
pub fn could_pay(max_k: usize, target: &PassCost, draft: Option<&PassCost>) -> bool {
    choose_k(0.999, max_k, target, draft) > 0
}

/// Seconds saved per emitted token by drafting `k` at acceptance `alpha` instead of decoding plainly (negative
/// when drafting loses; None before the costs are measured).
pub fn saving_per_token(
    alpha: f64,
    k: usize,
    target: &PassCost,
    draft: Option<&PassCost>,
) -> Option<f64> {
    let t1 = target.predict(1)?;
    let d1 = match draft {
        None => 0.0,
        Some(d) => d.predict(1)?,
    };
    let cost = target.predict(1 + k)? + k as f64 * d1;
    Some(t1 - cost / expected_tokens(alpha, k))
}

/// Whether drafting now is worth a catch-up costing `catch_up` seconds (the draft model has not seen the prompt,
/// or nothing since long): the saving over the tokens still to come — at most `horizon` of them counted, since
/// a sequence may stop early — must pay for it.
pub fn worth_catching_up(saving_per_token: f64, tokens_left: usize, catch_up: f64) -> bool {
    saving_per_token * tokens_left.min(CATCH_UP_HORIZON) as f64 > catch_up
}

/// Most future tokens counted against a catch-up: a sequence that may end at any time should not bet on more.
pub const CATCH_UP_HORIZON: usize = 128;

/// Expected tokens emitted by a verification of k drafted tokens at acceptance rate α.
pub fn expected_tokens(alpha: f64, k: usize) -> f64 {
    (0..=k).map(|i| alpha.powi(i as i32)).sum()
}

/// The expected gain over plain decoding a draft model must promise before it drafts: besides its per-token
/// passes (in the cost model) it must catch up on every token it has not seen — the whole prompt, the first
/// time — which the model leaves out. Free proposals (prompt lookup) need only beat plain decoding by 2%.
pub const DRAFT_MIN_GAIN: f64 = 1.25;
const LOOKUP_MIN_GAIN: f64 = 1.02;

/// The draft length with the best expected tokens per second, at most `max_k`; 0 unless it beats plain decoding
/// by the mode's minimum gain. `target` costs a verification pass, `draft` one draft pass (None: free, as prompt
/// lookup is).
pub fn choose_k(alpha: f64, max_k: usize, target: &PassCost, draft: Option<&PassCost>) -> usize {
    let Some(t1) = target.predict(1) else {
        return max_k.min(2);
    };
    let draft_one = match draft {
        None => 0.0,
        Some(d) => match d.predict(1) {
            Some(c) => c,
            // Draft cost unmeasured: draft a little to measure it.
            None => return max_k.min(2),
        },
    };
    let need = if draft.is_some() {
        DRAFT_MIN_GAIN
    } else {
        LOOKUP_MIN_GAIN
    };
    let plain = 1.0 / t1.max(1e-9);
    let mut best = (0.0, 0);
    for k in 1..=max_k.min(MAX_DRAFT) {
        let cost = target.predict(1 + k).unwrap_or(t1) + k as f64 * draft_one;
        let rate = expected_tokens(alpha, k) / cost.max(1e-9);
        // Ties go to the shorter draft: less work wasted on a wrong guess.
        if rate > plain * need && rate > best.0 * 1.02 {
            best = (rate, k);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1000.0)
    }

    #[test]
    fn pass_cost_remembers_each_size_and_interpolates_the_rest() {
        let mut c = PassCost::default();
        assert_eq!(c.predict(1), None);
        for n in [1, 2, 4, 8] {
            c.observe(n, ms(10.0 + 2.0 * n as f64));
        }
        let near = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b / 1000.0).abs() < 1e-9);
        assert!(near(c.predict(4), 18.0));
        assert!(near(c.predict(3), 16.0), "interpolated");
        assert!(near(c.predict(6), 22.0), "interpolated");
        assert!(
            near(c.predict(40), 90.0),
            "extended along the slope of sizes 4 and 8"
        );
        // Many plain passes do not wash out what a verification of 4 costs.
        for _ in 0..500 {
            c.observe(1, ms(12.0));
        }
        assert!(near(c.predict(1), 12.0));
        assert!(near(c.predict(4), 18.0));
        // A new figure moves its size's average by its share of the first ten, then by a tenth.
        c.observe(4, ms(28.0));
        assert!(near(c.predict(4), 23.0));
        let mut cold = PassCost::default();
        cold.observe(1, ms(30.0));
        for _ in 0..9 {
            cold.observe(1, ms(10.0));
        }
        assert!(near(cold.predict(1), 12.0), "{:?}", cold.predict(1));
        // One size only: a tenth of the pass per extra token.
        let mut c = PassCost::default();
        c.observe(1, ms(11.0));
        assert!(near(c.predict(1), 11.0) && near(c.predict(2), 12.0));
    }

    #[test]
    fn acceptance_follows_recent_verifications() {
        let mut a = Acceptance::new(0.5);
        for _ in 0..30 {
            a.observe(4, 4);
        }
        assert!(a.rate() > 0.95);
        for _ in 0..30 {
            a.observe(4, 0);
        }
        assert!(a.rate() < 0.05);
        a.observe(0, 0);
        assert!(a.rate() < 0.05);
    }

    #[test]
    fn k_is_zero_when_drafting_does_not_pay() {
        let mut target = PassCost::default();
        for n in 1..=9 {
            target.observe(n, ms(10.0 + 3.0 * n as f64));
        }
        // A draft pass costing 70% of the target's (llama.cpp's F16/Q4_1 SmolLM2 pair): loses even at α = 0.95.
        let mut draft = PassCost::default();
        draft.observe(1, ms(9.1));
        assert_eq!(choose_k(0.95, 8, &target, Some(&draft)), 0);
        // A draft at 5% of the target's cost pays, the more the better the acceptance.
        let mut cheap = PassCost::default();
        cheap.observe(1, ms(0.65));
        let k_hi = choose_k(0.95, 8, &target, Some(&cheap));
        let k_lo = choose_k(0.7, 8, &target, Some(&cheap));
        assert!(k_hi >= 4 && k_lo >= 1 && k_lo < k_hi, "{k_hi} {k_lo}");
        // Free proposals (prompt lookup) pay whenever verification is cheap per extra token.
        assert_eq!(choose_k(0.8, 8, &target, None), 3);
        assert_eq!(choose_k(0.05, 8, &target, None), 0);
        // The cap holds, and unmeasured costs draft a little.
        assert!(choose_k(0.99, 3, &target, None) <= 3);
        assert_eq!(choose_k(0.9, 8, &PassCost::default(), None), 2);
        assert_eq!(choose_k(0.9, 8, &target, Some(&PassCost::default())), 2);
    }

    #[test]
    fn probes_back_off_while_drafting_does_not_pay() {
        let mut p = Prober::default();
        let probes_in = |p: &mut Prober, n: usize| (0..n).filter(|_| p.adjust(0) == 1).count();
        assert_eq!(probes_in(&mut p, FIRST_PROBE), 1);
        // Then after 32, 64, … skipped chances, up to LAST_PROBE.
        assert_eq!(probes_in(&mut p, 2 * FIRST_PROBE), 1);
        assert_eq!(probes_in(&mut p, 10 * LAST_PROBE), 10 + 1);
        // A paying k resets the back-off and passes through.
        assert_eq!(p.adjust(3), 3);
        assert_eq!(probes_in(&mut p, FIRST_PROBE), 1);
    }

    #[test]
    fn drafting_cannot_pay_with_a_draft_as_slow_as_the_target() {
        let mut target = PassCost::default();
        for n in 1..=9 {
            target.observe(n, ms(10.0 + 4.0 * n as f64));
        }
        let mut slow = PassCost::default();
        slow.observe(1, ms(9.0));
        assert!(!could_pay(8, &target, Some(&slow)));
        let mut cheap = PassCost::default();
        cheap.observe(1, ms(1.0));
        assert!(could_pay(8, &target, Some(&cheap)));
        assert!(could_pay(8, &target, None));
        assert!(!could_pay(0, &target, None));
        // This machine's SmolLM2 pair (cargo bench --bench verify: F16 target 9.5 / 13 / 14.5 / 17.5 ms for 1–4
        // tokens, Q4_1 draft 6.5 ms a token): at best 4% faster even if every guess were right — below the gain
        // that pays for the draft's catch-up, so it never drafts and never probes.
        let mut f16 = PassCost::default();
        for (n, t) in [
            (1, 9.5),
            (2, 13.0),
            (3, 14.5),
            (4, 17.5),
            (1, 9.5),
            (2, 13.0),
        ] {
            f16.observe(n, ms(t));
        }
        let mut q4_1 = PassCost::default();
        q4_1.observe(1, ms(6.5));
        assert_eq!(choose_k(1.0, 8, &f16, Some(&q4_1)), 0);
        assert!(!could_pay(8, &f16, Some(&q4_1)));
    }

    #[test]
    fn a_catch_up_must_be_paid_for_by_the_tokens_to_come() {
        let mut target = PassCost::default();
        for (n, t) in [(1, 10.0), (2, 11.0), (3, 12.0)] {
            target.observe(n, ms(t));
        }
        let mut cheap = PassCost::default();
        cheap.observe(1, ms(0.5));
        // α = 0.9, k = 2: 2.71 tokens for 12 + 1 ms → 5.2 ms saved per token.
        let save = saving_per_token(0.9, 2, &target, Some(&cheap)).unwrap();
        assert!((save - (0.010 - 0.013 / 2.71)).abs() < 1e-9);
        // 100 tokens left pay for a 0.4 s catch-up; 50 do not; more than the horizon count as the horizon.
        assert!(worth_catching_up(save, 100, 0.4));
        assert!(!worth_catching_up(save, 50, 0.4));
        assert!(!worth_catching_up(save, 100_000, 5.0));
        assert!(!worth_catching_up(-0.001, 100, 0.0));
        assert_eq!(saving_per_token(0.9, 2, &PassCost::default(), None), None);
    }

    #[test]
    fn expected_tokens_is_the_geometric_sum() {
        assert_eq!(expected_tokens(0.5, 0), 1.0);
        assert!((expected_tokens(0.5, 3) - 1.875).abs() < 1e-12);
    }
}
