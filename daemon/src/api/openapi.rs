//! The OpenAPI document (utoipa) at `/openapi.json`, and `/docs`: a self-contained page that renders it
//! (no CDN — the appliance may have no Internet).

use super::{admin, batch_api, cron, error, metrics, ollama, openai, overview, session};
use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Hearth API", description = "OpenAI- and Ollama-compatible inference, and administration. \
        Every route except /health, /ready, /openapi.json, /docs, /auth/login and the dashboard's files needs \
        `Authorization: Bearer hth_…` or a dashboard session cookie (whose POST/PUT/PATCH/DELETE requests must \
        carry its CSRF token in X-CSRF-Token); /metrics also accepts `metrics.token`, or nothing when \
        `metrics.public`."),
    paths(
        super::health, super::ready,
        openai::list_models, openai::get_model, openai::chat_completions, openai::completions, openai::me_usage,
        session::my_keys, session::create_my_key, session::revoke_my_key, session::my_request,
        session::login, session::logout, session::session, session::change_password, overview::overview,
        ollama::tags, ollama::version, ollama::show, ollama::ps, ollama::chat, ollama::generate,
        admin::list_users, admin::create_user, admin::update_user, admin::get_quota, admin::put_quota, admin::user_usage,
        admin::list_keys, admin::create_key, admin::revoke_key, admin::get_key_quota, admin::put_key_quota, admin::usage, admin::usage_export, admin::jobs, admin::devices, admin::models, admin::load_model, admin::unload_model, admin::import_model, admin::pull_model, admin::pulls,
        metrics::metrics,
        batch_api::upload_file, batch_api::list_files, batch_api::get_file, batch_api::file_content, batch_api::delete_file,
        batch_api::create_batch, batch_api::list_batches, batch_api::get_batch, batch_api::cancel_batch,
        cron::list, cron::set_window, cron::create, cron::update, cron::remove, cron::run,
    ),
    components(schemas(error::OpenAiErrorBody, error::OllamaErrorBody)),
    modifiers(&BearerKey),
    tags(
        (name = "openai", description = "OpenAI-compatible"),
        (name = "ollama", description = "Ollama-compatible"),
        (name = "admin", description = "Users and keys (admin role)"),
        (name = "health", description = "Probes (no auth)"),
        (name = "dashboard", description = "Dashboard sign-in: session cookie and CSRF token"),
        (name = "metrics", description = "Prometheus exposition (admin key, metrics.token, or metrics.public)"),
    )
)]
pub struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("hth_<id>_<secret>")
                    .build(),
            ),
        );
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/openapi.json").route(super::get_or_head().to(spec)))
        .service(super::resource("/docs").route(super::get_or_head().to(docs)));
}

async fn spec() -> HttpResponse {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    HttpResponse::Ok().json(doc)
}

async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "content-security-policy",
            "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        ))
        .body(include_str!("docs.html"))
}
