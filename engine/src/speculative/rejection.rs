//! The verification rule of speculative sampling (Leviathan et al. 2023; Chen et al. 2023): a drafted token `d`,
//! drawn from the draft's distribution q, is kept with probability min(1, p(d)/q(d)) under the target's
//! distribution p; on rejection the token is drawn from the residual max(p − q, 0), normalised. The tokens that
//! come out are distributed exactly as p. A deterministic proposal (greedy draft, prompt lookup) is the case
//! q = one-hot(d): keep d with probability p(d), else draw from p without d.
//!
//! Distributions are sparse (token, probability) lists as `Sampler::distribution` returns them.

/// Probability of `token` in `dist` (0 when absent).
pub fn prob(dist: &[(u32, f32)], token: u32) -> f32 {
    dist.iter()
        .find(|x| x.0 == token)
        .map(|x| x.1)
        .unwrap_or(0.0)
}

/// Whether the drafted token `d` (with draft probability `q_d`) is kept under target distribution `p`, given the
/// uniform draw `u` in [0, 1).
pub fn keep(p: &[(u32, f32)], d: u32, q_d: f32, u: f32) -> bool {
    let p_d = prob(p, d);
    if q_d <= 0.0 {
        return false;
    }
    u < (p_d / q_d).min(1.0)
}

/// The residual distribution max(p − q, 0), normalised, into `out`. When p ≤ q everywhere (possible only through
/// rounding, since a rejection implies p(d) < q(d) somewhere and both sum to 1) it falls back to p.
pub fn residual(p: &[(u32, f32)], q: &[(u32, f32)], out: &mut Vec<(u32, f32)>) {
    out.clear();
    out.extend(
        p.iter()
            .map(|&(t, pt)| (t, (pt - prob(q, t)).max(0.0)))
            .filter(|x| x.1 > 0.0),
    );
    let total: f32 = out.iter().map(|x| x.1).sum();
    if total <= 0.0 {
        out.clear();
        out.extend_from_slice(p);
        return;
    }
    out.iter_mut().for_each(|x| x.1 /= total);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampling::{draw, Rng};

    /// The rule end to end: draft d ~ q, verify against p, resample on rejection; the output frequencies must be
    /// p's — whatever q is.
    fn output_frequencies(p: &[(u32, f32)], q: &[(u32, f32)], n: usize) -> Vec<f64> {
        let mut rng = Rng::new(42);
        let mut counts = [0usize; 4];
        let mut res = Vec::new();
        for _ in 0..n {
            let d = draw(q, rng.next_f32());
            let t = if keep(p, d, prob(q, d), rng.next_f32()) {
                d
            } else {
                residual(p, q, &mut res);
                draw(&res, rng.next_f32())
            };
            counts[t as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / n as f64).collect()
    }

    #[test]
    fn output_follows_the_target_distribution_for_any_draft() {
        let p = [(0, 0.5), (1, 0.3), (2, 0.2)];
        for q in [
            vec![(0, 1.0)],                     // deterministic proposal (lookup, greedy draft)
            vec![(2, 1.0)],                     // always the least likely token
            vec![(0, 0.2), (1, 0.2), (3, 0.6)], // mass on a token p never picks
            vec![(0, 0.5), (1, 0.3), (2, 0.2)], // q = p: every draft is kept
            vec![(0, 0.25), (1, 0.25), (2, 0.25), (3, 0.25)],
        ] {
            let f = output_frequencies(&p, &q, 200_000);
            for (t, want) in [(0, 0.5), (1, 0.3), (2, 0.2), (3, 0.0)] {
                assert!((f[t] - want).abs() < 0.006, "q={q:?}: {f:?}");
            }
        }
    }

    #[test]
    fn acceptance_probability_is_the_analytic_one() {
        // P(keep) = Σ_d q(d) · min(1, p(d)/q(d)) = Σ_d min(p(d), q(d)).
        let p = [(0, 0.5), (1, 0.3), (2, 0.2)];
        let q = [(0, 0.2), (1, 0.6), (2, 0.2)];
        let want = 0.2 + 0.3 + 0.2;
        let mut rng = Rng::new(7);
        let n = 200_000;
        let kept = (0..n)
            .filter(|_| {
                let d = draw(&q, rng.next_f32());
                keep(&p, d, prob(&q, d), rng.next_f32())
            })
            .count();
        assert!(((kept as f64 / n as f64) - want).abs() < 0.005);
    }

    #[test]
    fn residual_is_the_normalised_positive_part() {
        let p = [(0, 0.5), (1, 0.3), (2, 0.2)];
        let q = [(0, 0.2), (1, 0.6), (2, 0.2)];
        let mut r = Vec::new();
        residual(&p, &q, &mut r);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, 0);
        assert!((r[0].1 - 1.0).abs() < 1e-6);
        // One-hot q: p without the drafted token, renormalised.
        residual(&p, &[(0, 1.0)], &mut r);
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), [1, 2]);
        assert!((r[0].1 - 0.6).abs() < 1e-6 && (r[1].1 - 0.4).abs() < 1e-6);
        // Greedy target (p one-hot): a different draft is always rejected, and the residual is p's token.
        assert!(!keep(&[(5, 1.0)], 4, 1.0, 0.0));
        assert!(keep(&[(5, 1.0)], 5, 1.0, 0.999));
        residual(&[(5, 1.0)], &[(4, 1.0)], &mut r);
        assert_eq!(r, [(5, 1.0)]);
        // Rounding: p ≤ q everywhere falls back to p.
        residual(&p, &p, &mut r);
        assert_eq!(r, p);
    }
}
