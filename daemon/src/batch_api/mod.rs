//! OpenAI's Batch API: a JSONL file of requests runs in the background at batch priority, charged to its owner,
//! inside the admin's batch window, and survives restarts (each line's outcome is stored as it finishes). A line
//! is an OpenAI request body, so the runner hands it to the OpenAI front end through `runner::RunLine` (set up
//! by the server), which takes it through the same `inference` path as an HTTP request; nothing here knows HTTP.
//! `runner` moves batches along; `window` is the batch window; `cron` creates batches from cron expressions
//! (the API's and CLI's "schedules").

pub mod cron;
pub mod runner;
pub mod window;

use crate::auth::{AuthError, Authenticator, Principal};
use crate::quota::{Quota, QuotaError};
use crate::store::{BatchRecord, FileRecord, NewLine, Store, StoreError};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// Why a batch or a schedule could not be created, in the domain's words (`api::error` maps each to a status).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The caller's input to fix; `param` names the field.
    #[error("{message}")]
    Invalid {
        message: String,
        param: Option<&'static str>,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl BatchError {
    fn invalid(message: impl Into<String>, param: &'static str) -> BatchError {
        BatchError::Invalid {
            message: message.into(),
            param: Some(param),
        }
    }
}

/// What the batch wing works with: the store, the owner's quota, who owns a batch, and the signals to its tasks.
#[derive(Clone)]
pub struct Batches {
    pub store: Store,
    pub quota: Arc<Quota>,
    pub auth: Arc<Authenticator>,
    pub signals: Arc<Signals>,
}

/// Wake-ups between the API and the background batch tasks (`runner`, `schedules`).
#[derive(Default)]
pub struct Signals {
    runner: tokio::sync::Notify,
    schedules: tokio::sync::Notify,
    stopped: std::sync::atomic::AtomicBool,
    /// Batch lines between start and their stored outcome; shutdown waits for them so a finished line is never
    /// lost (and run again) for want of a last write.
    lines: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
}

impl Signals {
    /// A batch was created or cancelled: look now rather than at the next tick.
    pub fn wake(&self) {
        self.runner.notify_one();
    }

    pub async fn woken(&self) {
        self.runner.notified().await
    }

    /// Schedules changed through the API.
    pub fn reload_schedules(&self) {
        self.schedules.notify_one();
    }

    pub async fn schedules_changed(&self) {
        self.schedules.notified().await
    }

    /// Shutdown: no new batch lines start, no schedule fires.
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.runner.notify_one();
        self.schedules.notify_one();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn line_started(&self) {
        self.lines.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn line_ended(&self) {
        if self.lines.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.drained.notify_waiters();
        }
    }

    /// Resolves once no batch line is between its start and its stored outcome.
    pub async fn drained(&self) {
        loop {
            let wait = self.drained.notified();
            if self.lines.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            wait.await;
        }
    }
}

/// Endpoints a batch may target.
pub const ENDPOINTS: [&str; 2] = ["/v1/chat/completions", "/v1/completions"];
/// OpenAI's limit on requests per batch.
pub const MAX_LINES: usize = 50_000;
/// The only completion window OpenAI offers.
pub const COMPLETION_WINDOW: &str = "24h";

fn random_id(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        crate::auth::secrets::random_token(24).unwrap_or_else(|_| crate::store::now().to_string())
    )
}

pub fn file_id() -> String {
    random_id("file-")
}

/// A line of an error file: the request never got a response (malformed line).
pub fn error_line(custom_id: &str, code: &str, message: &str) -> String {
    json!({
        "id": random_id("batch_req_"), "custom_id": custom_id, "response": null,
        "error": {"code": code, "message": message},
    })
    .to_string()
}

/// A line of an output file (2xx) or error file (an error response).
pub fn response_line(custom_id: &str, status: u16, body: &Value) -> String {
    json!({
        "id": random_id("batch_req_"), "custom_id": custom_id,
        "response": {"status_code": status, "request_id": random_id("req_"), "body": body},
        "error": null,
    })
    .to_string()
}

/// Splits an uploaded file into batch lines. A line that is not a valid request for `endpoint` becomes a failed
/// line with its error (the rest still runs); an empty file or one over `MAX_LINES` is refused as a whole.
pub fn parse_lines(content: &str, endpoint: &str) -> Result<Vec<NewLine>, BatchError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, text) in content.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let line_no = i as i64 + 1;
        let fallback = format!("line-{line_no}");
        let parsed: Result<Value, _> = serde_json::from_str(text);
        let (custom_id, problem, body) = match parsed {
            Err(e) => (
                fallback,
                Some((
                    "invalid_json_line",
                    format!("line {line_no} is not valid JSON: {e}"),
                )),
                String::new(),
            ),
            Ok(v) => {
                let custom_id = v["custom_id"].as_str().map(str::to_owned);
                let problem = if custom_id.is_none() {
                    Some((
                        "missing_custom_id",
                        format!("line {line_no} has no string 'custom_id'"),
                    ))
                } else if custom_id.as_ref().is_some_and(|c| !seen.insert(c.clone())) {
                    Some((
                        "duplicate_custom_id",
                        format!("line {line_no}: custom_id is used by an earlier line"),
                    ))
                } else if v["method"].as_str() != Some("POST") {
                    Some((
                        "invalid_method",
                        format!("line {line_no}: 'method' must be \"POST\""),
                    ))
                } else if v["url"].as_str() != Some(endpoint) {
                    Some((
                        "invalid_url",
                        format!("line {line_no}: 'url' must be the batch's endpoint {endpoint}"),
                    ))
                } else if !v["body"].is_object() {
                    Some((
                        "invalid_body",
                        format!("line {line_no}: 'body' must be a JSON object"),
                    ))
                } else {
                    None
                };
                (
                    custom_id.unwrap_or(fallback),
                    problem,
                    v["body"].to_string(),
                )
            }
        };
        out.push(NewLine {
            line_no,
            failed: problem.map(|(code, message)| error_line(&custom_id, code, &message)),
            custom_id,
            body,
        });
        if out.len() > MAX_LINES {
            return Err(BatchError::invalid(
                format!("the input file has more than {MAX_LINES} requests"),
                "input_file_id",
            ));
        }
    }
    if out.is_empty() {
        return Err(BatchError::invalid(
            "the input file has no requests",
            "input_file_id",
        ));
    }
    Ok(out)
}

/// Tokens a line reserves at least: its max_tokens, else the owner's per-request cap, else the endpoint's default
/// (16 for completions; chat without either counts 0 here and is held to the limits line by line).
fn line_need(body: &str, endpoint: &str, cap: Option<u64>) -> u64 {
    let v: Value = serde_json::from_str(body).unwrap_or_default();
    let asked = v["max_completion_tokens"]
        .as_u64()
        .or_else(|| v["max_tokens"].as_u64());
    match (asked, cap, endpoint) {
        (Some(n), _, _) => n,
        (None, Some(c), _) => c,
        (None, None, "/v1/completions") => 16,
        _ => 0,
    }
}

impl Batches {
    /// Creates a batch from an uploaded file: the file must be the caller's (or any, for admins) with purpose
    /// `batch`; the sum of its lines' max_tokens must fit what is left of the owner's day and month allowances.
    pub async fn create(
        &self,
        who: &Principal,
        input_file_id: &str,
        endpoint: &str,
        metadata: Option<&Value>,
        schedule: Option<&str>,
    ) -> Result<BatchRecord, BatchError> {
        if !ENDPOINTS.contains(&endpoint) {
            return Err(BatchError::invalid(
                format!("endpoint '{endpoint}' is not supported (use /v1/chat/completions or /v1/completions)"),
                "endpoint",
            ));
        }
        let file = self
            .store
            .file(input_file_id)
            .await?
            .filter(|f| f.owner_id == who.user_id || who.is_admin())
            .ok_or_else(|| BatchError::NotFound(format!("file '{input_file_id}'")))?;
        if file.purpose != "batch" {
            return Err(BatchError::invalid(
                format!(
                    "file '{input_file_id}' has purpose '{}', not 'batch'",
                    file.purpose
                ),
                "input_file_id",
            ));
        }
        let content = self
            .store
            .file_content(input_file_id)
            .await?
            .unwrap_or_default();
        let lines = parse_lines(&content, endpoint)?;
        self.check_allowance(who, &lines, endpoint).await?;
        let now = crate::store::now();
        let b = BatchRecord {
            id: random_id("batch_"),
            owner_id: who.user_id.clone(),
            key_id: who.key_id.clone(),
            endpoint: endpoint.to_owned(),
            input_file_id: input_file_id.to_owned(),
            completion_window: COMPLETION_WINDOW.to_owned(),
            status: "validating".into(),
            metadata: metadata.map(|m| m.to_string()),
            schedule: schedule.map(str::to_owned),
            total: lines.len() as i64,
            failed: lines.iter().filter(|l| l.failed.is_some()).count() as i64,
            created_at: now,
            expires_at: now + 86_400,
            ..Default::default()
        };
        self.store.create_batch(&b, &lines).await?;
        Ok(b)
    }

    /// The sum of the good lines' max_tokens must fit what is left of the owner's day and month allowances.
    async fn check_allowance(
        &self,
        who: &Principal,
        lines: &[NewLine],
        endpoint: &str,
    ) -> Result<(), BatchError> {
        let limits = self
            .quota
            .limits(&who.user_id, who.role, who.key_id.as_deref())
            .await?;
        let need: u64 = lines
            .iter()
            .filter(|l| l.failed.is_none())
            .map(|l| line_need(&l.body, endpoint, limits.max_tokens_per_request))
            .sum();
        let (today, month, _) = self.quota.usage(&who.user_id).await?;
        for (limit, used, what) in [
            (limits.tokens_per_day, today.total_tokens, "per day"),
            (limits.tokens_per_month, month.total_tokens, "per month"),
        ] {
            if let Some(limit) = limit {
                let left = (limit as i64 - used).max(0) as u64;
                if need > left {
                    return Err(BatchError::invalid(
                        format!(
                            "this batch needs at least {need} tokens (the sum of its lines' max_tokens) but only \
                             {left} of the owner's {limit} tokens {what} are left"
                        ),
                        "input_file_id",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A batch as OpenAI shows it.
pub fn object(b: &BatchRecord) -> Value {
    let metadata: Value = b
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or(Value::Null);
    json!({
        "id": b.id, "object": "batch", "endpoint": b.endpoint, "errors": null,
        "input_file_id": b.input_file_id, "completion_window": b.completion_window, "status": b.status,
        "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
        "created_at": b.created_at, "in_progress_at": b.in_progress_at, "expires_at": b.expires_at,
        "finalizing_at": b.finalizing_at, "completed_at": b.completed_at, "failed_at": null,
        "expired_at": if b.status == "expired" { b.completed_at } else { None },
        "cancelling_at": b.cancelling_at, "cancelled_at": b.cancelled_at,
        "request_counts": {"total": b.total, "completed": b.completed, "failed": b.failed},
        "metadata": metadata,
    })
}

/// A file as OpenAI shows it.
pub fn file_object(f: &FileRecord) -> Value {
    json!({
        "id": f.id, "object": "file", "bytes": f.bytes, "created_at": f.created_at, "filename": f.filename,
        "purpose": f.purpose, "status": "processed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_lines_fail_alone() {
        let ok = r#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}"#;
        let text = format!(
            "{ok}\nnot json\n\n{}\n{}\n{}\n",
            ok.replace("\"a\"", "\"b\"")
                .replace("/v1/chat/completions", "/v1/embeddings"),
            ok,
            r#"{"method":"POST","url":"/v1/chat/completions","body":{}}"#
        );
        let lines = parse_lines(&text, "/v1/chat/completions").unwrap();
        let codes: Vec<Option<String>> = lines
            .iter()
            .map(|l| {
                l.failed.as_ref().map(|e| {
                    serde_json::from_str::<Value>(e).unwrap()["error"]["code"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
            })
            .collect();
        assert_eq!(
            codes,
            [
                None,
                Some("invalid_json_line".into()),
                Some("invalid_url".into()),
                Some("duplicate_custom_id".into()),
                Some("missing_custom_id".into())
            ]
        );
        assert_eq!(
            lines.iter().map(|l| l.line_no).collect::<Vec<_>>(),
            [1, 2, 4, 5, 6]
        );
        assert_eq!(lines[1].custom_id, "line-2");
        assert!(parse_lines("\n\n", "/v1/chat/completions").is_err());
    }

    #[test]
    fn quota_need_counts_max_tokens_or_the_cap() {
        assert_eq!(
            line_need(r#"{"max_tokens":40}"#, "/v1/chat/completions", Some(100)),
            40
        );
        assert_eq!(
            line_need(
                r#"{"max_completion_tokens":7,"max_tokens":40}"#,
                "/v1/chat/completions",
                None
            ),
            7
        );
        assert_eq!(line_need("{}", "/v1/chat/completions", Some(100)), 100);
        assert_eq!(line_need("{}", "/v1/completions", None), 16);
        assert_eq!(line_need("{}", "/v1/chat/completions", None), 0);
    }
}
