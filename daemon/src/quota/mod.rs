//! May they? Per-user limits (role defaults from the config, overridden per user), enforced without overshoot:
//! admission reserves the request's maximum (prompt + max_tokens) in the same store transaction that checks the
//! limits, completion reconciles to the real count (`store::quota`). Day and month windows follow the configured
//! time zone; minute windows roll.

mod windows;

use crate::limits::Limits;
pub use windows::{windows_at, Windows};

use crate::auth::{Principal, Role};
use crate::config::QuotaDefaults;
use crate::store::{Admission, Store, StoreError, UsageSnapshot};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use std::sync::Arc;

/// Where "now" comes from: the system clock, or a fixed one in tests of window roll-over.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("model '{0}' is not in this user's allowed models")]
    ModelNotAllowed(String),
    #[error("max_tokens {asked} is over this user's per-request cap of {cap} tokens")]
    OverRequestCap { cap: u64, asked: u64 },
    /// A per-minute or concurrency limit: try again soon.
    #[error("rate limit reached: {what}; retry in {retry_after} s")]
    RateLimited {
        what: String,
        retry_after: u64,
        headers: Vec<(&'static str, String)>,
    },
    /// A day or month allowance is used up.
    #[error("quota exhausted: {what}; it resets in {retry_after} s")]
    Exhausted {
        what: String,
        retry_after: u64,
        headers: Vec<(&'static str, String)>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Quota {
    store: Store,
    tz: TimeZone,
    defaults: QuotaDefaults,
    clock: Clock,
    /// Where refusals and remaining allowances are exported (set once by the server).
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
    /// The serving process whose admissions these are (set once by the server; None in the CLI and tests).
    node: std::sync::OnceLock<String>,
}

/// The x-ratelimit-* headers (OpenAI's names) for a response.
pub type RateHeaders = Vec<(&'static str, String)>;

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct WindowUsage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub requests: i64,
}

fn duration_text(secs: i64) -> String {
    let s = secs.max(0);
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// How a request reached admission: the ledger's name for its entry point and the `user` the client sent.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub endpoint: &'a str,
    pub client_user: Option<&'a str>,
}

impl<'a> From<&'a str> for Entry<'a> {
    fn from(endpoint: &'a str) -> Entry<'a> {
        Entry {
            endpoint,
            client_user: None,
        }
    }
}

impl Quota {
    pub fn new(
        store: Store,
        tz: TimeZone,
        defaults: QuotaDefaults,
        clock: Option<Clock>,
    ) -> Arc<Quota> {
        Arc::new(Quota {
            store,
            tz,
            defaults,
            clock: clock.unwrap_or_else(|| Arc::new(Timestamp::now)),
            metrics: Default::default(),
            node: Default::default(),
        })
    }

    /// Admits as `node` from now on, after settling what a dead process of that node left `running`
    /// (`Store::settle_interrupted`): such rows no longer count against the user's allowance or concurrency.
    /// Returns how many were settled (also counted in `hearth_interrupted_requests_total`).
    pub async fn serve_as(&self, node: &str) -> Result<u64, QuotaError> {
        let settled = self
            .store
            .settle_interrupted(node, crate::store::now())
            .await?;
        let _ = self.node.set(node.to_owned());
        if let Some(m) = self.metrics.get() {
            m.serving
                .interrupted
                .with_label_values::<&str>(&[])
                .inc_by(settled);
        }
        Ok(settled)
    }

    /// Exports refusals (`hearth_rate_limited_requests_total`) and allowances left (`hearth_quota_remaining_tokens`).
    pub fn export_to(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// After an admission: what is left of each limited token window, this reservation counted.
    fn observe_remaining(&self, user: &str, l: &Limits, s: &UsageSnapshot, reserve: i64) {
        let Some(m) = self.metrics.get() else { return };
        let windows = [
            ("minute", l.tokens_per_minute, s.minute_tokens),
            ("day", l.tokens_per_day, s.day_tokens),
            ("month", l.tokens_per_month, s.month_tokens),
        ];
        for (window, limit, used) in windows {
            if let Some(limit) = limit {
                m.serving
                    .quota_remaining
                    .with_label_values(&[user, window])
                    .set((limit as i64 - used - reserve).max(0));
            }
        }
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    pub fn windows(&self) -> Windows {
        windows_at(&self.tz, (self.clock)())
    }

    /// The limits that apply to a request: the role's defaults, overridden by the user's own row, overridden by
    /// the key's row when the request came with a key. Usage is counted per user whichever key is used.
    pub async fn limits(
        &self,
        user_id: &str,
        role: Role,
        key_id: Option<&str>,
    ) -> Result<Limits, QuotaError> {
        let base = match role {
            Role::Admin => &self.defaults.admin,
            Role::Member => &self.defaults.member,
        };
        let (user, key) = self.store.user_and_key_limits(user_id, key_id).await?;
        Ok(base.overlaid(&user).overlaid(&key))
    }

    /// Checks what can be checked before any work: the model and the per-request cap. Returns the max_tokens to
    /// run with (the cap when the request set none).
    pub fn plan(
        &self,
        limits: &Limits,
        model: &str,
        asked: Option<usize>,
    ) -> Result<Option<usize>, QuotaError> {
        if limits
            .allowed_models
            .as_ref()
            .is_some_and(|m| !m.iter().any(|x| x == model))
        {
            return Err(QuotaError::ModelNotAllowed(model.to_owned()));
        }
        match (limits.max_tokens_per_request, asked) {
            (Some(cap), Some(n)) if n as u64 > cap => Err(QuotaError::OverRequestCap {
                cap,
                asked: n as u64,
            }),
            (Some(cap), None) => Ok(Some(cap as usize)),
            (_, asked) => Ok(asked),
        }
    }

    fn headers(
        &self,
        l: &Limits,
        s: &UsageSnapshot,
        now: i64,
        reserve: i64,
        admitted: bool,
    ) -> RateHeaders {
        let mut h = Vec::new();
        let (req, tok) = if admitted { (1, reserve) } else { (0, 0) };
        let reset = s.minute_oldest.map_or(0, |o| o + 60 - now);
        if let Some(rpm) = l.requests_per_minute {
            h.push(("x-ratelimit-limit-requests", rpm.to_string()));
            let left = (rpm as i64 - s.minute_requests - req).max(0);
            h.push(("x-ratelimit-remaining-requests", left.to_string()));
            h.push((
                "x-ratelimit-reset-requests",
                duration_text(if admitted && s.minute_oldest.is_none() {
                    60
                } else {
                    reset
                }),
            ));
        }
        if let Some(tpm) = l.tokens_per_minute {
            h.push(("x-ratelimit-limit-tokens", tpm.to_string()));
            let left = (tpm as i64 - s.minute_tokens - tok).max(0);
            h.push(("x-ratelimit-remaining-tokens", left.to_string()));
            h.push((
                "x-ratelimit-reset-tokens",
                duration_text(if admitted && s.minute_oldest.is_none() {
                    60
                } else {
                    reset
                }),
            ));
        }
        h
    }

    /// The x-ratelimit-* headers for a response that admitted nothing (model lists, errors before admission):
    /// the caller's per-minute limits and what is left of them now.
    pub async fn current_headers(&self, who: &Principal) -> Result<RateHeaders, QuotaError> {
        let l = self
            .limits(&who.user_id, who.role, who.key_id.as_deref())
            .await?;
        if l.requests_per_minute.is_none() && l.tokens_per_minute.is_none() {
            return Ok(Vec::new());
        }
        let now_ts = (self.clock)();
        let w = windows_at(&self.tz, now_ts);
        let now = now_ts.as_second();
        let snap = self
            .store
            .usage_snapshot(&who.user_id, &w.day_key, &w.month_key, now)
            .await?;
        Ok(self.headers(&l, &snap, now, 0, false))
    }

    /// Admission: checks every counting limit and reserves `prompt_tokens + max_tokens`, atomically.
    #[allow(clippy::too_many_arguments)]
    pub async fn admit(
        &self,
        who: &Principal,
        limits: &Limits,
        request_id: &str,
        model: &str,
        entry: impl Into<Entry<'_>>,
        prompt_tokens: usize,
        max_tokens: usize,
    ) -> Result<RateHeaders, QuotaError> {
        let entry = entry.into();
        let now_ts = (self.clock)();
        let now = now_ts.as_second();
        let w = windows_at(&self.tz, now_ts);
        let reserve = (prompt_tokens + max_tokens) as i64;
        let l = limits.clone();
        let (snap, verdict) = self
            .store
            .admit(
                &Admission {
                    request_id,
                    node: self.node.get().map(String::as_str),
                    user_id: &who.user_id,
                    key_id: who.key_id.as_deref(),
                    model,
                    endpoint: entry.endpoint,
                    client_user: entry.client_user,
                    prompt_tokens: prompt_tokens as i64,
                    reserve,
                    now,
                    day_key: &w.day_key,
                    month_key: &w.month_key,
                },
                |s| check(&l, s, reserve, now, &w),
            )
            .await?;
        match verdict {
            Ok(()) => {
                self.observe_remaining(&who.user_name, limits, &snap, reserve);
                Ok(self.headers(limits, &snap, now, reserve, true))
            }
            Err((kind, what, retry_after)) => {
                if let Some(m) = self.metrics.get() {
                    m.serving
                        .rate_limited
                        .with_label_values(&[&who.user_name, kind.limit()])
                        .inc();
                }
                let headers = self.headers(limits, &snap, now, reserve, false);
                let retry_after = retry_after.max(1) as u64;
                Err(match kind {
                    Kind::Rate(_) => QuotaError::RateLimited {
                        what,
                        retry_after,
                        headers,
                    },
                    Kind::Allowance(_) => QuotaError::Exhausted {
                        what,
                        retry_after,
                        headers,
                    },
                })
            }
        }
    }

    /// Today's and this month's usage of a user (for `/v1/me/usage`).
    pub async fn usage(
        &self,
        user_id: &str,
    ) -> Result<(WindowUsage, WindowUsage, Windows), QuotaError> {
        let w = self.windows();
        let mut out = Vec::new();
        for key in [&w.day_key, &w.month_key] {
            let (prompt, completion, requests) = self.store.window_detail(user_id, key).await?;
            let (tokens, _) = self.store.window_usage(user_id, key).await?;
            out.push(WindowUsage {
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: tokens,
                requests,
            });
        }
        let month = out.pop().unwrap_or_default();
        let today = out.pop().unwrap_or_default();
        Ok((today, month, w))
    }

    /// A user's usage against the limits in effect (with `key`: those of requests made with that key), what
    /// remains, when the windows reset, and the energy used (`/v1/me/usage`, `/admin/users/{name}/usage`).
    pub async fn report(
        &self,
        who: &Principal,
        key: Option<&str>,
    ) -> Result<serde_json::Value, QuotaError> {
        let limits = self.limits(&who.user_id, who.role, key).await?;
        let (today, month, w) = self.usage(&who.user_id).await?;
        let energy_today = self.store.energy_of_user(&who.user_id, &w.day_key).await?;
        let energy_month = self
            .store
            .energy_of_user(&who.user_id, &w.month_key)
            .await?;
        let left = |limit: Option<u64>, used: i64| limit.map(|l| (l as i64 - used).max(0));
        Ok(serde_json::json!({
            "user": who.user_name,
            "today": today,
            "month": month,
            "limits": limits,
            "remaining": {
                "tokens_today": left(limits.tokens_per_day, today.total_tokens),
                "tokens_this_month": left(limits.tokens_per_month, month.total_tokens),
            },
            "resets": {"day": w.day_reset, "month": w.month_reset},
            "energy": {"today": energy_today, "month": energy_month},
        }))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Rate(&'static str),
    Allowance(&'static str),
}

impl Kind {
    /// The `reason` label of `hearth_rate_limited_requests_total`: the limit's config name.
    fn limit(self) -> &'static str {
        match self {
            Kind::Rate(l) | Kind::Allowance(l) => l,
        }
    }
}

/// The limit check run inside the admission transaction; on refusal: what, and seconds until it may pass.
fn check(
    l: &Limits,
    s: &UsageSnapshot,
    reserve: i64,
    now: i64,
    w: &Windows,
) -> Result<(), (Kind, String, i64)> {
    let minute_reset = s.minute_oldest.map_or(1, |o| o + 60 - now);
    if let Some(c) = l.max_concurrent_requests {
        if s.running + 1 > c as i64 {
            return Err((
                Kind::Rate("max_concurrent_requests"),
                format!("{c} concurrent requests"),
                1,
            ));
        }
    }
    if let Some(rpm) = l.requests_per_minute {
        if s.minute_requests + 1 > rpm as i64 {
            return Err((
                Kind::Rate("requests_per_minute"),
                format!("{rpm} requests per minute"),
                minute_reset,
            ));
        }
    }
    if let Some(tpm) = l.tokens_per_minute {
        if s.minute_tokens + reserve > tpm as i64 {
            return Err((
                Kind::Rate("tokens_per_minute"),
                format!("{tpm} tokens per minute (this request reserves {reserve})"),
                minute_reset,
            ));
        }
    }
    if let Some(d) = l.tokens_per_day {
        if s.day_tokens + reserve > d as i64 {
            return Err((
                Kind::Allowance("tokens_per_day"),
                format!(
                    "{d} tokens per day ({} used, this request reserves {reserve})",
                    s.day_tokens
                ),
                w.day_reset - now,
            ));
        }
    }
    if let Some(m) = l.tokens_per_month {
        if s.month_tokens + reserve > m as i64 {
            return Err((
                Kind::Allowance("tokens_per_month"),
                format!(
                    "{m} tokens per month ({} used, this request reserves {reserve})",
                    s.month_tokens
                ),
                w.month_reset - now,
            ));
        }
    }
    Ok(())
}
