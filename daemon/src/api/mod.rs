//! The HTTP API (actix-web): thin handlers that parse, call `auth` / `sched` / `store`, and render.
//! `openai` (/v1), `ollama` (/api), `admin` (/admin), `openapi` (/openapi.json, /docs).

pub mod admin;
pub mod batches;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod ollama;
pub mod openai;
pub mod openapi;
pub mod overview;
mod rate_headers;
pub mod schedules;
pub mod session;

use crate::auth::{Authenticator, Principal};
use crate::config::Config;
use crate::ledger::Ledger;
use crate::quota::{Quota, RateHeaders};
use crate::sched::{Admitted, Gate, JobEvent, JobSpec, Scheduler};
use crate::store::Store;
use actix_web::{web, HttpResponse};
use error::ApiError;
use hearth_engine::{FinishReason, Usage};
use std::path::PathBuf;
use std::sync::Arc;

pub struct AppState {
    pub config: Config,
    pub state_dir: PathBuf,
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub sched: Arc<Scheduler>,
    pub ledger: Ledger,
    pub quota: Arc<Quota>,
    pub housekeeping: Arc<crate::sched::housekeeping::Housekeeping>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The last hour of live figures, for the dashboard.
    pub history: Arc<crate::metrics::history::History>,
    /// Model downloads started from the dashboard, with their progress.
    pub pulls: Arc<crate::pull::Pulls>,
    /// Wakes and stops the batch runner and the schedules.
    pub batch: Arc<crate::batches::Signals>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .configure(dashboard::routes)
        .configure(session::routes)
        .configure(openai::routes)
        .configure(ollama::routes)
        .configure(overview::routes)
        .configure(admin::routes)
        .configure(metrics::routes)
        .configure(openapi::routes);
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, description = "alive")))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the store answers and the model directory is readable.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, description = "ready"), (status = 503, description = "not ready, with the reason")))]
pub async fn ready(st: web::Data<AppState>) -> HttpResponse {
    let mut problems = Vec::new();
    if let Err(e) = st.store.ping().await {
        problems.push(format!("store: {e}"));
    }
    let root = st.sched.models().root().to_owned();
    if let Err(e) = std::fs::read_dir(&root) {
        problems.push(format!("models directory {}: {e}", root.display()));
    }
    if problems.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "not ready", "problems": problems}))
    }
}

/// A job that passed every check and holds its quota reservation.
pub struct Started {
    pub model: String,
    pub admitted: Admitted,
    /// x-ratelimit-* headers for the response.
    pub rate: RateHeaders,
    /// The ledger row's id, sent as `x-request-id` (`GET /v1/me/requests/{id}` reads its energy).
    pub request_id: String,
}

impl Started {
    pub fn response(&self) -> actix_web::HttpResponseBuilder {
        let mut b = HttpResponse::Ok();
        for (k, v) in &self.rate {
            b.insert_header((*k, v.as_str()));
        }
        b.insert_header(("x-request-id", self.request_id.as_str()));
        b
    }
}

/// The path of every generation request: model (404) → key scope (403) → user limits (403 model, 400 cap) →
/// the worker tokenizes and validates (400) → quota admission reserves prompt + max_tokens atomically (429) →
/// only then may the job run. Nothing is computed for a request refused on the way.
pub async fn start_job(
    st: &AppState,
    who: &Principal,
    model: &str,
    endpoint: &'static str,
    mut spec: JobSpec,
) -> Result<Started, ApiError> {
    let model = st.sched.resolve(model)?;
    metrics::note_model(&model);
    if !who.may_use(&model) {
        return Err(ApiError::Forbidden(format!(
            "this API key may not use model '{model}'"
        )));
    }
    let limits = st
        .quota
        .limits(&who.user_id, who.role, who.key_id.as_deref())
        .await?;
    spec.max_tokens = st.quota.plan(&limits, &model, spec.max_tokens)?;
    spec.owner = Some(crate::sched::Owner {
        user: who.user_id.clone(),
        name: who.user_name.clone(),
        weight: limits.weight.unwrap_or(1),
    });
    let request_id =
        crate::auth::secrets::random_token(20).map_err(|e| ApiError::Internal(e.to_string()))?;
    let gate = Gate::default();
    spec.gate = Some(gate.clone());
    spec.on_finish = Some(st.ledger.on_finish(request_id.clone()));
    let admitted = st.sched.submit(&model, spec).await?;
    let admission = st
        .quota
        .admit(
            who,
            &limits,
            &request_id,
            &model,
            endpoint,
            admitted.prompt_tokens,
            admitted.max_tokens,
        )
        .await;
    match admission {
        Ok(rate) => {
            gate.open();
            Ok(Started {
                model,
                admitted,
                rate,
                request_id,
            })
        }
        Err(e) => {
            gate.refuse();
            Err(e.into())
        }
    }
}

/// Waits for the whole completion (non-streaming responses).
pub async fn collect(admitted: &mut Admitted) -> (String, FinishReason, Usage) {
    let mut text = String::new();
    while let Some(ev) = admitted.events.recv().await {
        match ev {
            JobEvent::Text(t) => text.push_str(&t),
            JobEvent::Done { reason, usage } => return (text, reason, usage),
        }
    }
    // The worker stopped without a final event (it only does so when shutting down).
    (
        text,
        FinishReason::Cancelled,
        Usage {
            prompt_tokens: admitted.prompt_tokens,
            ..Default::default()
        },
    )
}

/// What a streaming renderer is given, in order: `Start`, any number of `Text`, one `End`.
pub enum Piece {
    Start,
    Text(String),
    End(FinishReason, Usage),
}

/// Turns a job's events into a response body. Empty renderings are dropped (an empty chunk would end a
/// chunked HTTP body early).
pub fn event_stream<F>(
    admitted: Admitted,
    render: F,
) -> impl futures_util::Stream<Item = Result<web::Bytes, actix_web::Error>>
where
    F: FnMut(Piece) -> web::Bytes + 'static,
{
    use futures_util::StreamExt;
    futures_util::stream::unfold(
        (admitted, render, 0u8),
        |(mut a, mut render, phase)| async move {
            let piece = match phase {
                0 => Piece::Start,
                1 => match a.events.recv().await {
                    Some(JobEvent::Text(t)) => Piece::Text(t),
                    Some(JobEvent::Done { reason, usage }) => Piece::End(reason, usage),
                    None => Piece::End(
                        FinishReason::Cancelled,
                        Usage {
                            prompt_tokens: a.prompt_tokens,
                            ..Default::default()
                        },
                    ),
                },
                _ => return None,
            };
            let next = if matches!(piece, Piece::End(..)) {
                2
            } else {
                1
            };
            Some((render(piece), (a, render, next)))
        },
    )
    .filter(|b| std::future::ready(!b.is_empty()))
    .map(Ok)
}
