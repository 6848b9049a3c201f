//! The OpenAPI document (utoipa) at `/openapi.json`, and `/docs`: a self-contained page that renders it
//! (no CDN — the appliance may have no Internet).

use super::{
    admin, batch_api, cron, embeddings, error, metrics, ollama, ollama_models, openai, overview,
    session,
};
use actix_web::{web, HttpResponse};
use utoipa::openapi::schema::{ArrayItems, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::RefOr;
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
        openai::list_models, openai::get_model, openai::chat_completions, openai::completions, embeddings::openai, openai::me_usage,
        session::my_keys, session::create_my_key, session::revoke_my_key, session::my_request,
        session::login, session::logout, session::session, session::change_password, overview::overview,
        ollama::tags, ollama::version, ollama::show, ollama::ps, ollama_models::pull, ollama_models::create, ollama_models::delete, ollama_models::copy, ollama::chat, ollama::generate, embeddings::ollama_embed, embeddings::ollama_embeddings,
        admin::list_users, admin::create_user, admin::update_user, admin::get_quota, admin::put_quota, admin::user_usage,
        admin::list_keys, admin::create_key, admin::revoke_key, admin::get_key_quota, admin::put_key_quota, admin::usage, admin::usage_export, admin::jobs, admin::devices, admin::models, admin::nodes, admin::load_model, admin::unload_model, admin::import_model, admin::pull_model, admin::pulls,
        metrics::metrics,
        batch_api::upload_file, batch_api::list_files, batch_api::get_file, batch_api::file_content, batch_api::delete_file,
        batch_api::create_batch, batch_api::list_batches, batch_api::get_batch, batch_api::cancel_batch,
        cron::list, cron::set_window, cron::create, cron::update, cron::remove, cron::run,
    ),
    components(schemas(error::OpenAiErrorBody, error::OllamaErrorBody)),
    modifiers(&BearerKey, &Refusals, &NullIsAbsent),
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

/// `extract::parse_json` reads a `null` member as absent, in every request body: each optional property of a
/// request body (and of the objects inside it) is declared nullable here, so the spec says what the server
/// does rather than each field saying it by hand.
struct NullIsAbsent;

impl Modify for NullIsAbsent {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut todo = Vec::new();
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.post, &mut item.put, &mut item.patch]
                .into_iter()
                .flatten()
            {
                for c in op
                    .request_body
                    .iter_mut()
                    .flat_map(|b| b.content.values_mut())
                {
                    if let Some(s) = c.schema.as_mut() {
                        nullable_optionals(s, &mut todo);
                    }
                }
            }
        }
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let mut done = std::collections::HashSet::new();
        while let Some(name) = todo.pop() {
            if done.insert(name.clone()) {
                if let Some(s) = components.schemas.get_mut(&name) {
                    nullable_optionals(s, &mut todo);
                }
            }
        }
    }
}

/// Makes the optional properties of `s` nullable and notes the components it refers to (visited in turn).
fn nullable_optionals(s: &mut RefOr<Schema>, refs: &mut Vec<String>) {
    let s = match s {
        RefOr::Ref(r) => {
            refs.extend(r.ref_location.rsplit('/').next().map(str::to_owned));
            return;
        }
        RefOr::T(s) => s,
    };
    match s {
        Schema::Object(o) => {
            for (name, prop) in o.properties.iter_mut() {
                nullable_optionals(prop, refs);
                if !o.required.contains(name) {
                    add_null(prop);
                }
            }
        }
        Schema::Array(a) => {
            if let ArrayItems::RefOrSchema(items) = &mut a.items {
                nullable_optionals(items, refs);
            }
        }
        Schema::AllOf(x) => x.items.iter_mut().for_each(|i| nullable_optionals(i, refs)),
        Schema::OneOf(x) => x.items.iter_mut().for_each(|i| nullable_optionals(i, refs)),
        Schema::AnyOf(x) => x.items.iter_mut().for_each(|i| nullable_optionals(i, refs)),
        _ => {}
    }
}

fn add_null(prop: &mut RefOr<Schema>) {
    let with_null = |t: &mut SchemaType| match t {
        SchemaType::Type(one) if *one != Type::Null => {
            *t = SchemaType::Array(vec![one.clone(), Type::Null])
        }
        SchemaType::Array(v) if !v.contains(&Type::Null) => v.push(Type::Null),
        _ => {}
    };
    match prop {
        RefOr::T(Schema::Object(o)) => with_null(&mut o.schema_type),
        RefOr::T(Schema::Array(a)) => with_null(&mut a.schema_type),
        other => {
            let inner = std::mem::replace(other, RefOr::T(Schema::default()));
            *other = RefOr::T(Schema::OneOf(
                OneOfBuilder::new()
                    .item(inner)
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .build(),
            ));
        }
    }
}

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

/// The refusals an operation can meet, declared wherever they happen rather than by hand on each path (the
/// handlers share the extractors that produce them): 401 where a key or session is needed, 403 on admin routes
/// and where a key's model scope applies, 400 wherever a body or query is read, 413 wherever a body is read, 404
/// where the path names something, and 429 (quota, Retry-After) and 503 (queue full, Retry-After) where inference
/// is admitted. Each in the path's error shape: Ollama's under /api, OpenAI's elsewhere.
struct Refusals;

/// Operations that admit inference (quota, queue).
const ADMITS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/completions",
    "/api/chat",
    "/api/generate",
];

impl Modify for Refusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        for (path, item) in openapi.paths.paths.iter_mut() {
            let body = if path.starts_with("/api/") {
                "OllamaErrorBody"
            } else {
                "OpenAiErrorBody"
            };
            let admits = ADMITS.contains(&path.as_str());
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let params = op.parameters.iter().flatten();
                let in_path = params.clone().any(|p| p.parameter_in == ParameterIn::Path);
                let in_query = params.clone().any(|p| p.parameter_in == ParameterIn::Query);
                let reads_body = op.request_body.is_some();
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let statuses = [
                    (
                        "400",
                        reads_body || in_query,
                        "invalid request: the message names the field",
                    ),
                    ("401", secured, "no valid API key or session"),
                    (
                        "403",
                        secured && (path.starts_with("/admin") || admits),
                        "the key or user may not do this",
                    ),
                    ("404", in_path || admits, "not found"),
                    ("413", reads_body, "request body too large"),
                    (
                        "429",
                        admits,
                        "a quota or rate limit: see Retry-After and the x-ratelimit-* headers",
                    ),
                    (
                        "503",
                        admits,
                        "the model's queue is full, or the daemon is draining: see Retry-After",
                    ),
                ];
                for (code, applies, description) in statuses {
                    if applies && !op.responses.responses.contains_key(code) {
                        let response = ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name(body)))
                                    .build(),
                            )
                            .build();
                        op.responses
                            .responses
                            .insert(code.to_owned(), response.into());
                    }
                }
            }
        }
    }
}

/// The methods a documented path allows (`Allow` of a 405), HEAD wherever GET is.
pub fn allowed_methods(pattern: &str) -> Option<&'static str> {
    static ALLOWED: std::sync::OnceLock<std::collections::HashMap<String, String>> =
        std::sync::OnceLock::new();
    ALLOWED
        .get_or_init(|| {
            ApiDoc::openapi()
                .paths
                .paths
                .iter()
                .map(|(path, item)| {
                    let methods: Vec<&str> = [
                        ("GET, HEAD", item.get.is_some()),
                        ("POST", item.post.is_some()),
                        ("PUT", item.put.is_some()),
                        ("PATCH", item.patch.is_some()),
                        ("DELETE", item.delete.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(m, on)| on.then_some(m))
                    .collect();
                    (path.clone(), methods.join(", "))
                })
                .collect()
        })
        .get(pattern)
        .map(String::as_str)
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
