//! `/admin/schedules`: the batch window and recurring batches (admin role). `hearth schedule …` does the same
//! from the CLI.

use super::error::{ApiError, OpenAi, OpenAiErrorBody, Rendered};
use super::extract::{Admin, ApiJson, Body};
use super::AppState;
use crate::batch_api::{self, cron, window};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, Rendered<OpenAi>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/schedules")
            .route(super::get_or_head().to(list))
            .route(web::post().to(create)),
    )
    .service(super::resource("/schedules/window").route(web::put().to(set_window)))
    .service(
        super::resource("/schedules/{name}")
            .route(web::patch().to(update))
            .route(web::delete().to(remove)),
    )
    .service(super::resource("/schedules/{name}/run").route(web::post().to(run)));
}

/// The batch window and every schedule.
#[utoipa::path(get, path = "/admin/schedules", tag = "admin", security(("api_key" = [])),
    responses((status = 200, description = "`{window, schedules: [{name, cron, input_file_id, owner, endpoint, enabled, created_at, last_run_at, last_batch_id}]}`")))]
pub async fn list(state: web::Data<AppState>, _a: Admin<OpenAi>) -> Result<HttpResponse> {
    let window = state.store.setting(window::SETTING).await?;
    let list = state.store.schedules().await?;
    Ok(HttpResponse::Ok().json(json!({"window": window, "schedules": list})))
}

#[derive(Deserialize, ToSchema)]
pub struct WindowBody {
    /// `HH:MM-HH:MM` local time, or null: batches run at any time.
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$")]
    pub window: Option<String>,
}

impl Body for WindowBody {}

/// Sets or clears the batch window.
#[utoipa::path(put, path = "/admin/schedules/window", tag = "admin", security(("api_key" = [])), request_body = WindowBody,
    responses((status = 200, description = "`{window}`"), (status = 400, body = OpenAiErrorBody)))]
pub async fn set_window(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    body: ApiJson<WindowBody, OpenAi>,
) -> Result<HttpResponse> {
    let w = body
        .0
        .window
        .map(|s| s.parse::<window::Window>())
        .transpose()
        .map_err(|e| ApiError::invalid(e, Some("window")))?;
    let text = w.map(|w| w.to_string());
    state
        .store
        .set_setting(window::SETTING, text.as_deref())
        .await?;
    state.batches.signals.wake();
    Ok(HttpResponse::Ok().json(json!({"window": text})))
}

#[derive(Deserialize, ToSchema)]
pub struct NewSchedule {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// 5 fields (minute hour day month weekday) or 6 (seconds first), in the configured time zone.
    pub cron: String,
    /// A `batch` file; each run creates a batch from it.
    pub input_file_id: String,
    /// The user the batches belong to (and are charged to).
    #[schema(pattern = "^[a-z0-9._@-]{1,64}$")]
    pub owner: String,
    /// `/v1/chat/completions` (default) or `/v1/completions`.
    #[schema(pattern = "^/v1/(chat/)?completions$")]
    pub endpoint: Option<String>,
}

impl Body for NewSchedule {}

/// Adds a recurring batch.
#[utoipa::path(post, path = "/admin/schedules", tag = "admin", security(("api_key" = [])), request_body = NewSchedule,
    responses((status = 201, description = "the schedule"), (status = 400, body = OpenAiErrorBody, description = "invalid cron expression, endpoint or file"),
        (status = 404, body = OpenAiErrorBody), (status = 409, body = OpenAiErrorBody)))]
pub async fn create(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    body: ApiJson<NewSchedule, OpenAi>,
) -> Result<HttpResponse> {
    let s = body.0;
    let rec = cron::checked(
        &state.store,
        &s.name,
        &s.cron,
        &s.input_file_id,
        &s.owner,
        s.endpoint.as_deref(),
    )
    .await?;
    state.store.insert_schedule(&rec).await?;
    state.batches.signals.reload_schedules();
    Ok(HttpResponse::Created().json(rec))
}

#[derive(Deserialize, ToSchema)]
pub struct ScheduleUpdate {
    pub cron: Option<String>,
    pub enabled: Option<bool>,
}

impl Body for ScheduleUpdate {}

#[utoipa::path(patch, path = "/admin/schedules/{name}", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)), request_body = ScheduleUpdate,
    responses((status = 200, description = "the schedule"), (status = 400, body = OpenAiErrorBody), (status = 404, body = OpenAiErrorBody)))]
pub async fn update(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    name: web::Path<String>,
    body: ApiJson<ScheduleUpdate, OpenAi>,
) -> Result<HttpResponse> {
    if let Some(c) = &body.0.cron {
        cron::normalize(c).map_err(|e| ApiError::invalid(e, Some("cron")))?;
    }
    let cron = body.0.cron.as_deref().map(str::trim);
    if !state
        .store
        .update_schedule(&name, cron, body.0.enabled)
        .await?
    {
        return Err(ApiError::NotFound(format!("schedule '{name}' not found")).into());
    }
    state.batches.signals.reload_schedules();
    let s = state.store.schedule(&name).await?;
    Ok(HttpResponse::Ok().json(s))
}

#[utoipa::path(delete, path = "/admin/schedules/{name}", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)), responses((status = 204, description = "removed"), (status = 404, body = OpenAiErrorBody)))]
pub async fn remove(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    if !state.store.delete_schedule(&name).await? {
        return Err(ApiError::NotFound(format!("schedule '{name}' not found")).into());
    }
    state.batches.signals.reload_schedules();
    Ok(HttpResponse::NoContent().finish())
}

/// Runs a schedule now: creates its batch as the cron job would.
#[utoipa::path(post, path = "/admin/schedules/{name}/run", tag = "admin", security(("api_key" = [])),
    params(("name" = String, Path)),
    responses((status = 200, description = "the batch object"), (status = 400, body = OpenAiErrorBody), (status = 404, body = OpenAiErrorBody)))]
pub async fn run(
    state: web::Data<AppState>,
    _a: Admin<OpenAi>,
    name: web::Path<String>,
) -> Result<HttpResponse> {
    let b = cron::run_now(&state.batches, &name).await?;
    Ok(HttpResponse::Ok().json(batch_api::object(&b)))
}
