//! Admin API (`/admin/…`, admin role): users and API keys — what the CLI does, over HTTP for the dashboard.

use super::error::{ApiError, OpenAi, OpenAiErrorBody, Rendered};
use super::extract::{Admin, ApiJson, Body};
use super::AppState;
use crate::auth::accounts::{self, KeySpec};
use crate::store::{KeyRecord, LimitsOf, UserRecord};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

type Result<T> = std::result::Result<T, Rendered<OpenAi>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .wrap(actix_web::middleware::from_fn(super::extract::admin_first))
            .service(
                super::resource("/users")
                    .route(super::get_or_head().to(list_users))
                    .route(web::post().to(create_user)),
            )
            .service(super::resource("/users/{name}").route(web::patch().to(update_user)))
            .service(
                super::resource("/users/{name}/quota")
                    .route(super::get_or_head().to(get_quota))
                    .route(web::put().to(put_quota)),
            )
            .service(
                super::resource("/users/{name}/usage").route(super::get_or_head().to(user_usage)),
            )
            .service(super::resource("/jobs").route(super::get_or_head().to(jobs)))
            .service(super::resource("/devices").route(super::get_or_head().to(devices)))
            .service(super::resource("/models").route(super::get_or_head().to(models)))
            .service(super::resource("/nodes").route(super::get_or_head().to(nodes)))
            .service(super::resource("/models/import").route(web::post().to(import_model)))
            .service(super::resource("/models/pull").route(web::post().to(pull_model)))
            .service(super::resource("/models/pulls").route(super::get_or_head().to(pulls)))
            .service(super::resource("/models/{name}/load").route(web::post().to(load_model)))
            .service(super::resource("/models/{name}/unload").route(web::post().to(unload_model)))
            .service(super::resource("/usage").route(super::get_or_head().to(usage)))
            .service(super::resource("/usage/export").route(super::get_or_head().to(usage_export)))
            .service(
                super::resource("/keys")
                    .route(super::get_or_head().to(list_keys))
                    .route(web::post().to(create_key)),
            )
            .service(super::resource("/keys/{id}").route(web::delete().to(revoke_key)))
            .service(
                super::resource("/keys/{id}/quota")
                    .route(super::get_or_head().to(get_key_quota))
                    .route(web::put().to(put_key_quota)),
            )
            .configure(super::cron::routes),
    );
}

/// All users.
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = Vec<UserRecord>), (status = 401, body = OpenAiErrorBody),
        (status = 403, body = OpenAiErrorBody)))]
pub async fn list_users(state: web::Data<AppState>, _a: Admin<OpenAi>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.store.list_users().await?))
}

#[derive(Deserialize, ToSchema)]
pub struct NewUser {
    #[schema(pattern = "^[a-z0-9._@-]{1,64}$")]
    pub name: String,
    /// `admin` or `member` (default).
    #[schema(pattern = "^(admin|member)$")]
    pub role: Option<String>,
    /// Dashboard password (at least 8 characters); optional for API-only users.
    #[schema(min_length = 8)]
    pub password: Option<String>,
}

/// Creates a user.
#[utoipa::path(post, path = "/admin/users", tag = "admin", security(("api_key" = [])), request_body = NewUser,
    responses((status = 201, body = UserRecord), (status = 400, body = OpenAiErrorBody),
        (status = 409, body = OpenAiErrorBody)))]
pub async fn create_user(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    body: ApiJson<NewUser, OpenAi>,
) -> Result<HttpResponse> {
    let u = body.0;
    let user = accounts::add_user(
        &state.store,
        &u.name,
        u.role.as_deref().unwrap_or("member"),
        u.password.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Created().json(user))
}

#[derive(Deserialize, ToSchema)]
pub struct UserUpdate {
    pub disabled: Option<bool>,
    #[schema(pattern = "^(admin|member)$")]
    pub role: Option<String>,
    #[schema(min_length = 8)]
    pub password: Option<String>,
}

/// Disables/enables a user, changes the role or the password.
#[utoipa::path(patch, path = "/admin/users/{name}", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)), request_body = UserUpdate,
    responses((status = 200, body = UserRecord), (status = 404, body = OpenAiErrorBody)))]
pub async fn update_user(
    state: web::Data<AppState>,
    a: Admin<OpenAi>,
    path: web::Path<String>,
    body: ApiJson<UserUpdate, OpenAi>,
) -> Result<HttpResponse> {
    let (name, u) = (path.into_inner(), body.0);
    if name == a.0.user_name && (u.disabled == Some(true) || u.role.as_deref() == Some("member")) {
        return Err(ApiError::invalid("an admin cannot disable or demote themselves", None).into());
    }
    if let Some(p) = &u.password {
        let user = accounts::set_password(&state.store, &name, p).await?;
        // A password set by an admin signs the user out of every browser.
        state.store.delete_user_sessions(&user.id, None).await?;
    }
    let user =
        accounts::update_user(&state.store, &name, u.disabled, u.role.as_deref(), None).await?;
    Ok(HttpResponse::Ok().json(user))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct KeyFilter {
    /// Only this user's keys.
    pub user: Option<String>,
}

/// API keys (never their secrets).
#[utoipa::path(get, path = "/admin/keys", tag = "admin", security(("api_key" = [])), params(KeyFilter),
    responses((status = 200, body = Vec<KeyRecord>)))]
pub async fn list_keys(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    q: web::Query<KeyFilter>,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.store.list_keys(q.user.as_deref()).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct NewKeyRequest {
    #[schema(pattern = "^[a-z0-9._@-]{1,64}$")]
    pub user: String,
    #[serde(default)]
    pub name: String,
    /// Restrict the key to these models.
    pub models: Option<Vec<String>>,
    /// Lifetime, e.g. `"30d"`.
    #[schema(pattern = "^(0|([0-9]+(ms|s|m|h|d|w))+)$")]
    pub expires: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key itself — shown this once, never again.
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

/// Creates an API key; the response holds the only copy of it.
#[utoipa::path(post, path = "/admin/keys", tag = "admin", security(("api_key" = [])), request_body = NewKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 400, body = OpenAiErrorBody),
        (status = 404, body = OpenAiErrorBody)))]
pub async fn create_key(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    body: ApiJson<NewKeyRequest, OpenAi>,
) -> Result<HttpResponse> {
    let k = body.0;
    issue_key(&state, &k.user, &k.name, k.models, k.expires.as_deref()).await
}

/// Creates a key (`expires` as `"30d"`) and answers 201 with its only copy: `/admin/keys` and `/v1/me/keys`.
pub async fn issue_key(
    state: &AppState,
    user: &str,
    name: &str,
    models: Option<Vec<String>>,
    expires: Option<&str>,
) -> Result<HttpResponse> {
    let expires_in = expires
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(|e| ApiError::invalid(e, Some("expires")))?;
    let (record, key) = accounts::create_key(
        &state.store,
        KeySpec {
            user,
            name,
            models,
            expires_in,
        },
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(CreatedKey { key, record }))
}

/// Revokes a key and forgets its verified secret.
pub async fn withdraw_key(state: &AppState, id: &str) -> std::result::Result<(), ApiError> {
    accounts::revoke_key(&state.store, id).await?;
    state.auth.forget(id);
    Ok(())
}

/// Revokes a key; effective for the next request.
#[utoipa::path(delete, path = "/admin/keys/{id}", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "revoked"), (status = 404, body = OpenAiErrorBody)))]
pub async fn revoke_key(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    withdraw_key(&state, &path).await?;
    Ok(HttpResponse::NoContent().finish())
}

impl Body for NewUser {}
impl Body for UserUpdate {}
impl Body for NewKeyRequest {}

async fn user_id(
    state: &AppState,
    name: &str,
) -> std::result::Result<crate::store::UserRecord, ApiError> {
    state
        .store
        .user_by_name(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user '{name}' not found")))
}

/// A user's own limits (`own`) and the limits in effect (`effective`: the role's defaults overridden by them).
#[utoipa::path(get, path = "/admin/users/{name}/quota", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 200, description = "`{own, effective}`"), (status = 404, body = OpenAiErrorBody)))]
pub async fn get_quota(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let u = user_id(&state, &path).await?;
    let own = state.store.limits_of(LimitsOf::User(&u.id)).await?;
    let role = crate::auth::Role::parse(&u.role).unwrap_or(crate::auth::Role::Member);
    let effective = state.quota.limits(&u.id, role, None).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"own": own, "effective": effective})))
}

/// A user's usage today and this month against the limits in effect — what `GET /v1/me/usage` shows them.
#[utoipa::path(get, path = "/admin/users/{name}/usage", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 200, description = "as `GET /v1/me/usage`"), (status = 404, body = OpenAiErrorBody)))]
pub async fn user_usage(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let u = user_id(&state, &path).await?;
    let p = crate::auth::Principal {
        role: crate::auth::Role::parse(&u.role).unwrap_or(crate::auth::Role::Member),
        user_id: u.id,
        user_name: u.name,
        key_id: None,
        models: None,
        keyless: false,
    };
    Ok(HttpResponse::Ok().json(state.quota.report(&p, None).await?))
}

/// Replaces a user's own limits (fields left out fall back to the role's defaults).
#[utoipa::path(put, path = "/admin/users/{name}/quota", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)), request_body = crate::limits::Limits,
    responses((status = 200, body = crate::limits::Limits), (status = 400, body = OpenAiErrorBody),
        (status = 404, body = OpenAiErrorBody)))]
pub async fn put_quota(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    path: web::Path<String>,
    body: ApiJson<crate::limits::Limits, OpenAi>,
) -> Result<HttpResponse> {
    let u = user_id(&state, &path).await?;
    body.0.validate().map_err(|e| ApiError::invalid(e, None))?;
    state
        .store
        .set_limits(LimitsOf::User(&u.id), &body.0)
        .await?;
    Ok(HttpResponse::Ok().json(&body.0))
}

/// A key's own overrides (`own`) and the limits in effect for requests with it (`effective`: role defaults,
/// then the user's limits, then the key's).
#[utoipa::path(get, path = "/admin/keys/{id}/quota", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "`{key, user, own, effective}`"),
        (status = 404, body = OpenAiErrorBody)))]
pub async fn get_key_quota(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let (key, user) = key_and_user(&state, &path).await?;
    let own = state.store.limits_of(LimitsOf::Key(&key.id)).await?;
    let role = crate::auth::Role::parse(&user.role).unwrap_or(crate::auth::Role::Member);
    let effective = state.quota.limits(&user.id, role, Some(&key.id)).await?;
    Ok(HttpResponse::Ok().json(
        serde_json::json!({"key": key.id, "user": user.name, "own": own, "effective": effective}),
    ))
}

/// Replaces a key's overrides (fields left out fall back to the user's limits).
#[utoipa::path(put, path = "/admin/keys/{id}/quota", tag = "admin", security(("api_key" = [])),
    params(("id" = String, Path)), request_body = crate::limits::Limits,
    responses((status = 200, body = crate::limits::Limits), (status = 400, body = OpenAiErrorBody),
        (status = 404, body = OpenAiErrorBody)))]
pub async fn put_key_quota(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    path: web::Path<String>,
    body: ApiJson<crate::limits::Limits, OpenAi>,
) -> Result<HttpResponse> {
    let (key, _) = key_and_user(&state, &path).await?;
    body.0.validate().map_err(|e| ApiError::invalid(e, None))?;
    state
        .store
        .set_limits(LimitsOf::Key(&key.id), &body.0)
        .await?;
    Ok(HttpResponse::Ok().json(&body.0))
}

/// The device inventory, back ends, model placements and problems — what `hearth doctor` prints.
#[utoipa::path(get, path = "/admin/devices", tag = "admin", security(("api_key" = [])),
    responses((status = 200, description = "`{inventory, backends_built, models, power_zones, checks}`"),
        (status = 403, body = OpenAiErrorBody)))]
pub async fn devices(state: web::Data<AppState>, _a: Admin<OpenAi>) -> Result<HttpResponse> {
    let (cfg, state_dir, models) = (
        state.config.clone(),
        state.state_dir.clone(),
        state.sched.models().clone(),
    );
    // NVML and /proc reads block: off the actix thread.
    let report = web::block(move || crate::doctor::run(&cfg, &state_dir, &models))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(report))
}

/// Imported models: state (loaded / loading / unloaded), device and back end with the placement's reason
/// (planned for unloaded ones, or why it cannot be placed), idle expiry, preload.
#[utoipa::path(get, path = "/admin/models", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = Vec<crate::sched::ModelStatus>), (status = 403, body = OpenAiErrorBody)))]
pub async fn models(state: web::Data<AppState>, _a: Admin<OpenAi>) -> Result<HttpResponse> {
    let sched = state.sched.clone();
    // Placement reads each unloaded model's GGUF header: off the actix thread.
    let mut list = web::block(move || sched.status())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    for (model, figure) in state.store.energy_by_model().await? {
        if let Some(m) = list.iter_mut().find(|m| m.name == model) {
            m.energy.push(figure);
        }
    }
    Ok(HttpResponse::Ok().json(list))
}

/// Every node registered in the database (one for a single box): name, advertised URL, version, `alive` or
/// `expired` (no heartbeat for `cluster.expire`), when it was last seen, its loaded models with their running and
/// waiting requests, and which one is answering.
#[utoipa::path(get, path = "/admin/nodes", tag = "admin", security(("api_key" = [])),
    responses((status = 200, description = "`[{name, url, version, state, started_at, last_seen, seconds_since_seen, this, models: [{name, running, waiting}]}]`"),
        (status = 403, body = OpenAiErrorBody)))]
pub async fn nodes(state: web::Data<AppState>, _a: Admin<OpenAi>) -> Result<HttpResponse> {
    let list = state.store.nodes().await?;
    Ok(HttpResponse::Ok().json(crate::cluster::view(
        list,
        crate::store::now(),
        state.config.cluster.expire,
        &state.node,
    )))
}

#[derive(Deserialize, ToSchema)]
pub struct ImportRequest {
    /// A GGUF file on the server, readable by the daemon's user.
    pub path: String,
    /// Defaults to the file's name without `.gguf`.
    pub name: Option<String>,
}

impl Body for ImportRequest {}

/// Imports a GGUF file that is already on the server (what `hearth model import` does): validated as a runnable
/// model, then hard-linked or copied into the models directory. A corrupt or unsupported file is a 400 that
/// names the problem; nothing is left behind.
#[utoipa::path(post, path = "/admin/models/import", tag = "admin", security(("api_key" = [])),
    request_body = ImportRequest,
    responses((status = 201, description = "the manifest"), (status = 400, body = OpenAiErrorBody),
        (status = 409, body = OpenAiErrorBody)))]
pub async fn import_model(
    state: web::Data<AppState>,
    a: Admin<OpenAi>,
    body: ApiJson<ImportRequest, OpenAi>,
) -> Result<HttpResponse> {
    let ImportRequest { path, name } = body.0;
    let models = state.sched.models().clone();
    let manifest = web::block(move || models.import(std::path::Path::new(&path), name.as_deref()))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    tracing::info!(model = %manifest.name, by = %a.0.user_name, "model imported from the dashboard");
    Ok(HttpResponse::Created().json(manifest))
}

#[derive(Deserialize, ToSchema)]
pub struct PullRequest {
    /// An http:// or https:// URL of a GGUF file.
    #[schema(pattern = "^https?://[^/?#\\s]+")]
    pub url: String,
    pub name: String,
}

impl Body for PullRequest {}

/// Starts downloading a GGUF file into the models directory (202); `GET /admin/models/pulls` shows its progress.
/// The model appears once the file is complete and validates; a failed pull leaves nothing behind.
#[utoipa::path(post, path = "/admin/models/pull", tag = "admin", security(("api_key" = [])),
    request_body = PullRequest,
    responses((status = 202, description = "started"), (status = 400, body = OpenAiErrorBody),
        (status = 409, body = OpenAiErrorBody)))]
pub async fn pull_model(
    state: web::Data<AppState>,
    a: Admin<OpenAi>,
    body: ApiJson<PullRequest, OpenAi>,
) -> Result<HttpResponse> {
    let PullRequest { url, name } = body.0;
    state
        .pulls
        .start(
            state.sched.models().clone(),
            crate::pull::PullJob {
                url: url.clone(),
                name: name.clone(),
                sha256: None,
                watch: None,
            },
        )
        .map_err(|e| match e {
            crate::pull::PullError::Store(s) => ApiError::from(s),
            crate::pull::PullError::Busy(_) => ApiError::Conflict(e.to_string()),
            e => ApiError::invalid(e.to_string(), Some("url")),
        })?;
    tracing::info!(model = %name, %url, by = %a.0.user_name, "model pull started");
    Ok(HttpResponse::Accepted()
        .json(serde_json::json!({"name": name, "url": url, "state": "downloading"})))
}

/// Downloads in flight and ended since the daemon started: bytes, total, state (`downloading`, `verifying`,
/// `done`, `failed`) and the error.
#[utoipa::path(get, path = "/admin/models/pulls", tag = "admin", security(("api_key" = [])),
    responses((status = 200, description = "`[{name, url, state, bytes, total, error, started_at}]`")))]
pub async fn pulls(state: web::Data<AppState>, _a: Admin<OpenAi>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.pulls.list()))
}

/// Loads a model now (one load however many callers); answers when it is ready.
#[utoipa::path(post, path = "/admin/models/{name}/load", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 200, description = "`{model, state: \"loaded\"}`"), (status = 404, body = OpenAiErrorBody),
        (status = 503, body = OpenAiErrorBody)))]
pub async fn load_model(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let model = state.sched.resolve(&path)?;
    state.sched.load(&model).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"model": model, "state": "loaded"})))
}

/// Unloads a model once its running requests finish.
#[utoipa::path(post, path = "/admin/models/{name}/unload", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 200, description = "`{model, unloaded}`: false when it was not loaded"),
        (status = 404, body = OpenAiErrorBody)))]
pub async fn unload_model(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let model = state.sched.resolve(&path)?;
    let unloaded = state.sched.unload(&model);
    Ok(HttpResponse::Ok().json(serde_json::json!({"model": model, "unloaded": unloaded})))
}

async fn key_and_user(
    state: &AppState,
    id: &str,
) -> std::result::Result<(KeyRecord, UserRecord), ApiError> {
    state
        .store
        .key_with_user(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("API key '{id}' not found")))
}

impl Body for crate::limits::Limits {}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    pub user: Option<String>,
    pub model: Option<String>,
    /// First local date, inclusive (default: the first of this month).
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub from: Option<String>,
    /// Last local date, inclusive (default: today).
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub to: Option<String>,
    /// `day` (default), `model` or `user`.
    #[param(pattern = "^(day|model|user)$")]
    pub group_by: Option<String>,
}

/// The ledger export's range (no grouping: one row per request).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub user: Option<String>,
    pub model: Option<String>,
    /// First local date, inclusive (default: the first of this month).
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub from: Option<String>,
    /// Last local date, inclusive (default: today).
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
    pub to: Option<String>,
}

fn usage_filter(
    state: &AppState,
    from: Option<&str>,
    to: Option<&str>,
) -> std::result::Result<crate::store::UsageFilter<'static>, ApiError> {
    let r = crate::report::range(state.quota.time_zone(), state.quota.now(), from, to)
        .map_err(|e| ApiError::invalid(e, Some("from")))?;
    Ok(crate::store::UsageFilter {
        user: None,
        model: None,
        from: r.start,
        to: r.end,
        from_day: r.from_day,
        to_day: r.to_day,
    })
}

/// Usage totals grouped by local day, model or user (rejected requests counted apart, not in the totals).
#[utoipa::path(get, path = "/admin/usage", tag = "admin", security(("api_key" = [])), params(UsageQuery),
    responses((status = 200, description = "`{from, to, group_by, groups: [UsageGroup]}`"),
        (status = 400, body = OpenAiErrorBody)))]
pub async fn usage(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    q: web::Query<UsageQuery>,
) -> Result<HttpResponse> {
    let by_name = q.group_by.as_deref().unwrap_or("day");
    let by = crate::store::GroupBy::parse(by_name).ok_or_else(|| {
        ApiError::invalid("group_by must be day, model or user", Some("group_by"))
    })?;
    let mut f = usage_filter(&state, q.from.as_deref(), q.to.as_deref())?;
    f.user = q.user.as_deref();
    f.model = q.model.as_deref();
    let groups = state.store.usage_report(&f, by).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "from": f.from_day, "to": f.to_day, "group_by": by_name, "groups": groups,
    })))
}

/// The ledger rows of the range as CSV (one line per request).
#[utoipa::path(get, path = "/admin/usage/export", tag = "admin", security(("api_key" = [])), params(ExportQuery),
    responses((status = 200, description = "text/csv"), (status = 400, body = OpenAiErrorBody)))]
pub async fn usage_export(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse> {
    let mut f = usage_filter(&state, q.from.as_deref(), q.to.as_deref())?;
    f.user = q.user.as_deref();
    f.model = q.model.as_deref();
    let rows = state.store.usage_rows(&f).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "content-disposition",
            "attachment; filename=\"hearth-usage.csv\"",
        ))
        .body(crate::report::csv(&rows)))
}

/// Scheduled jobs: schedule, last run and result, next run.
#[utoipa::path(get, path = "/admin/jobs", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = Vec<crate::housekeeping::JobInfo>)))]
pub async fn jobs(state: web::Data<AppState>, _a: Admin<OpenAi>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(state.housekeeping.jobs().await))
}
