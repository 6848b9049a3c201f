//! What a user may use. Every field is optional: `None` = no limit (or, in a per-user row, "the role's default").

use serde::{Deserialize, Serialize};

/// Upper bounds that catch typos (a limit of 10^15 tokens is a mistake, not a plan).
const MAX_TOKENS: u64 = 1_000_000_000_000;
const MAX_RATE: u64 = 1_000_000;
const MAX_CONCURRENT: u64 = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Prompt + completion tokens per local calendar day.
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub tokens_per_day: Option<u64>,
    /// Prompt + completion tokens per local calendar month.
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub tokens_per_month: Option<u64>,
    /// Requests in any rolling 60 s.
    #[schema(maximum = 1_000_000)]
    pub requests_per_minute: Option<u64>,
    /// Tokens (reserved, then charged) in any rolling 60 s.
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub tokens_per_minute: Option<u64>,
    #[schema(maximum = 10_000)]
    pub max_concurrent_requests: Option<u64>,
    /// Cap on a request's completion tokens (and the default when a request sets none).
    #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
    pub max_tokens_per_request: Option<u64>,
    /// Models this user may use (None = all).
    pub allowed_models: Option<Vec<String>>,
    /// Share of the scheduler under contention (used by the scheduling issue).
    #[schema(minimum = 1, maximum = 1000)]
    pub weight: Option<u64>,
}

impl Limits {
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, v: Option<u64>, max: u64| match v {
            Some(x) if x > max => Err(format!("{name} = {x} is over the maximum of {max}")),
            _ => Ok(()),
        };
        check("tokens_per_day", self.tokens_per_day, MAX_TOKENS)?;
        check("tokens_per_month", self.tokens_per_month, MAX_TOKENS)?;
        check("tokens_per_minute", self.tokens_per_minute, MAX_TOKENS)?;
        check(
            "max_tokens_per_request",
            self.max_tokens_per_request,
            MAX_TOKENS,
        )?;
        check("requests_per_minute", self.requests_per_minute, MAX_RATE)?;
        check(
            "max_concurrent_requests",
            self.max_concurrent_requests,
            MAX_CONCURRENT,
        )?;
        check("weight", self.weight, 1000)?;
        if self.max_tokens_per_request == Some(0) {
            return Err("max_tokens_per_request must be at least 1".into());
        }
        if self.weight == Some(0) {
            return Err("weight must be at least 1".into());
        }
        if let Some(bad) = self
            .allowed_models
            .iter()
            .flatten()
            .find(|m| !crate::models::valid_name(m))
        {
            return Err(format!("allowed_models: '{bad}' is not a valid model name"));
        }
        Ok(())
    }

    /// These limits with `over`'s set fields taking precedence.
    pub fn overlaid(&self, over: &Limits) -> Limits {
        Limits {
            tokens_per_day: over.tokens_per_day.or(self.tokens_per_day),
            tokens_per_month: over.tokens_per_month.or(self.tokens_per_month),
            requests_per_minute: over.requests_per_minute.or(self.requests_per_minute),
            tokens_per_minute: over.tokens_per_minute.or(self.tokens_per_minute),
            max_concurrent_requests: over
                .max_concurrent_requests
                .or(self.max_concurrent_requests),
            max_tokens_per_request: over.max_tokens_per_request.or(self.max_tokens_per_request),
            allowed_models: over
                .allowed_models
                .clone()
                .or_else(|| self.allowed_models.clone()),
            weight: over.weight.or(self.weight),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_and_validation() {
        let role = Limits {
            tokens_per_day: Some(100),
            requests_per_minute: Some(5),
            ..Default::default()
        };
        let user = Limits {
            tokens_per_day: Some(50),
            allowed_models: Some(vec!["smollm2".into()]),
            ..Default::default()
        };
        let l = role.overlaid(&user);
        assert_eq!(l.tokens_per_day, Some(50));
        assert_eq!(l.requests_per_minute, Some(5));
        assert_eq!(
            l.allowed_models.as_deref(),
            Some(&["smollm2".to_owned()][..])
        );
        assert!(l.validate().is_ok());
        let absurd = Limits {
            tokens_per_day: Some(u64::MAX),
            ..Default::default()
        };
        assert!(absurd.validate().unwrap_err().contains("tokens_per_day"));
        let zero = Limits {
            max_tokens_per_request: Some(0),
            ..Default::default()
        };
        assert!(zero.validate().is_err());
        let bad_model = Limits {
            allowed_models: Some(vec!["../x".into()]),
            ..Default::default()
        };
        assert!(bad_model.validate().is_err());
    }
}
