//! Speculative decoding: cheap proposals for the next few tokens, verified by the target model in one batched
//! pass. Greedy output is exactly the target's; sampled output has exactly the target's distribution
//! (`rejection`). Proposals come from a draft model (`draft`) or from the sequence itself (`lookup`); `policy`
//! decides how many to make from measured costs and acceptance. `Batch` drives it (batch.rs).

pub mod draft;
pub mod lookup;
pub mod policy;
pub mod rejection;

use crate::error::{EngineError, Result};
use crate::loaded::LoadedModel;
use draft::Drafter;
use policy::{Acceptance, PassCost, Prober};

/// Where proposals come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecMode {
    Draft,
    PromptLookup,
}

/// Counters since the batch was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SpecStats {
    /// Tokens proposed for verification.
    pub drafted: u64,
    /// Proposed tokens the target kept.
    pub accepted: u64,
    /// Verification passes with at least one proposal.
    pub verifications: u64,
}

impl SpecStats {
    /// Kept / proposed; None before any proposal.
    pub fn acceptance(&self) -> Option<f64> {
        (self.drafted > 0).then(|| self.accepted as f64 / self.drafted as f64)
    }
}

/// A batch's speculation state: the proposer, the measured cost of a target pass, the counters.
pub struct Speculation {
    pub mode: SpecMode,
    pub drafter: Option<Drafter>,
    pub target_cost: PassCost,
    pub stats: SpecStats,
    /// Acceptance over all sequences: a new sequence starts from it.
    pub acceptance: Acceptance,
    /// Tokens the sequences of this batch have generated, on average (recent ones weigh most): how many a new one
    /// can be expected to produce, so a draft model's catch-up is charged against that, not max_tokens.
    pub typical_length: Option<f64>,
    /// Prompt lookup: acceptance of matches by their length (index 0..=LONGEST_MATCH; a longer match is more
    /// often a copy in progress), each with its own probes.
    pub lookup: Vec<(Acceptance, Prober)>,
}

/// Prompt lookup's prior acceptance for a match of `len` tokens, before any is measured.
fn lookup_prior(len: usize) -> Acceptance {
    Acceptance::new((0.1 * len as f64).min(0.8))
}

fn lookup_table() -> Vec<(Acceptance, Prober)> {
    (0..=lookup::LONGEST_MATCH)
        .map(|len| (lookup_prior(len), Prober::default()))
        .collect()
}

impl Speculation {
    /// A sequence finished after generating `n` tokens.
    pub fn note_finished(&mut self, n: usize) {
        let n = n as f64;
        self.typical_length = Some(self.typical_length.map_or(n, |t| t + 0.2 * (n - t)));
    }

    pub fn prompt_lookup() -> Speculation {
        Speculation {
            mode: SpecMode::PromptLookup,
            drafter: None,
            target_cost: PassCost::default(),
            stats: SpecStats::default(),
            acceptance: Acceptance::new(0.5),
            lookup: lookup_table(),
            typical_length: None,
        }
    }

    /// Drafting with `draft` for `target`: refused unless both tokenize identically.
    pub fn draft(target: &LoadedModel, draft: &LoadedModel, n_slots: usize) -> Result<Speculation> {
        if let Some(why) = target.tokenizer.vocabulary_difference(&draft.tokenizer) {
            return Err(EngineError::DraftMismatch(format!(
                "the draft model ({}) does not share the target's ({}) tokenizer: {why}",
                draft.model.config.architecture, target.model.config.architecture
            )));
        }
        Ok(Speculation {
            mode: SpecMode::Draft,
            drafter: Some(Drafter::new(draft.model.clone(), n_slots)),
            target_cost: PassCost::default(),
            stats: SpecStats::default(),
            acceptance: Acceptance::new(0.7),
            lookup: lookup_table(),
            typical_length: None,
        })
    }
}
