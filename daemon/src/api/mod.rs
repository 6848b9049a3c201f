//! The HTTP API (actix-web): thin handlers that parse, call the services below (`inference` for generation,
//! `batch_api`, `auth`, `quota`, `store`), and render. The only module that knows HTTP types.
//! `openai` (/v1), `ollama` (/api), `admin` (/admin), `openapi` (/openapi.json, /docs).

pub mod admin;
pub mod batch_api;
pub mod bodies;
pub mod cron;
pub mod dashboard;
pub mod embeddings;
pub mod error;
pub mod extract;
pub mod forward;
pub mod logprobs;
pub mod metrics;
pub mod ollama;
pub mod ollama_models;
pub mod openai;
pub mod openapi;
pub mod options;
pub mod overview;
mod rate_headers;
pub mod session;
pub mod structured;

use crate::auth::Authenticator;
use crate::batch_api::Batches;
use crate::config::Config;
use crate::inference::{Inference, Piece, Started};
use crate::quota::Quota;
use crate::sched::Scheduler;
use crate::store::Store;
use actix_web::{web, HttpResponse};
use futures_util::{Stream, StreamExt};
use std::path::PathBuf;
use std::sync::Arc;

pub struct AppState {
    pub config: Config,
    pub state_dir: PathBuf,
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub sched: Arc<Scheduler>,
    /// The one path of a generation request (the front ends below translate into and out of it).
    pub inference: Inference,
    pub quota: Arc<Quota>,
    pub housekeeping: Arc<crate::housekeeping::Housekeeping>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The last hour of live figures, for the dashboard.
    pub history: Arc<crate::metrics::history::History>,
    /// Model downloads started from the dashboard, with their progress.
    pub pulls: Arc<crate::pull::Pulls>,
    /// OpenAI's Batch API and recurring batches (with the signals that wake and stop their tasks).
    pub batches: Batches,
    /// This serving process's node name (the cluster's registry, ledger rows, batch claims).
    pub node: String,
    /// Routing between nodes, with `cluster.secret` (`forward`).
    pub router: Option<Arc<crate::cluster::Router>>,
}

/// A route for GET that answers HEAD too (actix sends a HEAD response's headers without its body).
pub fn get_or_head() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// A path and its routes: a method the path lacks is 405 (in the caller's API's error shape), not 404.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    let e = error::ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.path()
    ));
    let mut response = render_for_path(&req, &e);
    // RFC 9110: a 405 lists what the path does allow. The OpenAPI document knows; paths it does not list
    // (the dashboard's files) are GET and HEAD.
    let allow = req
        .match_pattern()
        .and_then(|p| openapi::allowed_methods(&p))
        .unwrap_or("GET, HEAD");
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, v);
    }
    response
}

/// The app's default service: no route has this path.
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    let e = error::ApiError::NoRoute(format!("no route for {} {}", req.method(), req.path()));
    render_for_path(&req, &e)
}

/// An error outside any handler, in the shape of the API family the path belongs to.
fn render_for_path(req: &actix_web::HttpRequest, e: &error::ApiError) -> HttpResponse {
    use error::Flavor;
    if req.path().starts_with("/api/") {
        error::Ollama::render(e)
    } else {
        error::OpenAi::render(e)
    }
}

/// A query string or path segment the handler's types refuse: 400 in the API's own shape, not actix's text.
fn bad_part(
    part: &str,
    e: impl std::fmt::Display,
    req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let e = error::ApiError::invalid(format!("invalid {part}: {e}"), None);
    actix_web::error::InternalError::from_response(e.to_string(), render_for_path(req, &e)).into()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default().error_handler(|e, req| bad_part("query string", e, req)),
    )
    .app_data(web::PathConfig::default().error_handler(|e, req| bad_part("path", e, req)))
    .service(resource("/health").route(get_or_head().to(health)))
    .service(resource("/ready").route(get_or_head().to(ready)))
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
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let mut problems = Vec::new();
    if let Err(e) = state.store.ping().await {
        problems.push(format!("store: {e}"));
    }
    let root = state.sched.models().root().to_owned();
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

/// The 200 response of a started job, with its x-ratelimit-* and x-request-id headers.
pub fn started_response(job: &Started) -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::Ok();
    for (k, v) in &job.rate {
        b.insert_header((*k, v.as_str()));
    }
    b.insert_header(("x-request-id", job.request_id.as_str()));
    b
}

/// A job's pieces rendered into a response body. Empty renderings are dropped (an empty chunk would end a
/// chunked HTTP body early).
pub fn rendered_body<F>(
    job: Started,
    render: F,
) -> impl Stream<Item = Result<web::Bytes, actix_web::Error>>
where
    F: FnMut(Piece) -> web::Bytes + 'static,
{
    job.pieces()
        .map(render)
        .filter(|b| std::future::ready(!b.is_empty()))
        .map(Ok)
}
