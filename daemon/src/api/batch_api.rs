//! OpenAI's Files and Batch API (`/v1/files`, `/v1/batches`). Members see their own files and batches, admins
//! everyone's. The work itself is `crate::batch_api`.

use super::error::{ApiError, OpenAi, OpenAiErrorBody, Rendered};
use super::extract::{ApiJson, Body, Caller};
use super::AppState;
use crate::auth::Principal;
use crate::batch_api;
use crate::store::{BatchRecord, FileRecord};
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

type Result<T> = std::result::Result<T, Rendered<OpenAi>>;

/// Largest accepted upload.
pub const MAX_FILE_BYTES: usize = 64 << 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/files")
            .route(web::post().to(upload_file))
            .route(super::get_or_head().to(list_files)),
    )
    .service(
        super::resource("/files/{id}")
            .route(super::get_or_head().to(get_file))
            .route(web::delete().to(delete_file)),
    )
    .service(super::resource("/files/{id}/content").route(super::get_or_head().to(file_content)))
    .service(
        super::resource("/batches")
            .route(web::post().to(create_batch))
            .route(super::get_or_head().to(list_batches)),
    )
    .service(super::resource("/batches/{id}").route(super::get_or_head().to(get_batch)))
    .service(super::resource("/batches/{id}/cancel").route(web::post().to(cancel_batch)));
}

/// Members may only see what they own; admins see everything. Not theirs = not found (no probing of ids).
fn visible(who: &Principal, owner_id: &str) -> bool {
    who.is_admin() || who.user_id == owner_id
}

async fn own_file(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> std::result::Result<FileRecord, ApiError> {
    state
        .store
        .file(id)
        .await?
        .filter(|f| visible(who, &f.owner_id))
        .ok_or_else(|| ApiError::NotFound(format!("file '{id}' not found")))
}

async fn own_batch(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> std::result::Result<BatchRecord, ApiError> {
    state
        .store
        .batch(id)
        .await?
        .filter(|b| visible(who, &b.owner_id))
        .ok_or_else(|| ApiError::NotFound(format!("batch '{id}' not found")))
}

/// Upload a JSONL file (`multipart/form-data` with `purpose=batch` and `file`).
#[utoipa::path(post, path = "/v1/files", tag = "openai", security(("api_key" = [])),
    request_body(content_type = "multipart/form-data", description = "`purpose` (`batch`) and `file` (JSONL, UTF-8)"),
    responses((status = 200, description = "the file object"), (status = 400, body = OpenAiErrorBody),
        (status = 413, body = OpenAiErrorBody)))]
pub async fn upload_file(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    mut form: actix_multipart::Multipart,
) -> Result<HttpResponse> {
    let bad = |m: String| ApiError::invalid(m, None);
    let (mut purpose, mut file) = (None, None);
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|e| bad(format!("malformed multipart body: {e}")))?;
        let (name, filename) = match field.content_disposition() {
            Some(cd) => (
                cd.get_name().unwrap_or_default().to_owned(),
                cd.get_filename().map(str::to_owned),
            ),
            None => (String::new(), None),
        };
        let mut data = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(|e| bad(format!("malformed multipart body: {e}")))?;
            if data.len() + chunk.len() > MAX_FILE_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_FILE_BYTES).into());
            }
            data.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "purpose" => purpose = Some(String::from_utf8_lossy(&data).trim().to_owned()),
            "file" => file = Some((filename.unwrap_or_else(|| "upload.jsonl".into()), data)),
            _ => {}
        }
    }
    let purpose = purpose
        .ok_or_else(|| ApiError::invalid("missing form field 'purpose'", Some("purpose")))?;
    if purpose != "batch" {
        return Err(ApiError::invalid(
            format!("purpose '{purpose}' is not supported (use 'batch')"),
            Some("purpose"),
        )
        .into());
    }
    let (filename, data) =
        file.ok_or_else(|| ApiError::invalid("missing form field 'file'", Some("file")))?;
    let content = String::from_utf8(data).map_err(|e| {
        ApiError::invalid(
            format!(
                "the file is not valid UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
            Some("file"),
        )
    })?;
    let f = FileRecord {
        id: batch_api::file_id(),
        owner_id: who.0.user_id.clone(),
        purpose,
        filename,
        bytes: content.len() as i64,
        created_at: crate::store::now(),
    };
    state.store.insert_file(&f, &content).await?;
    Ok(HttpResponse::Ok().json(batch_api::file_object(&f)))
}

/// The caller's files (admins: everyone's), newest first.
#[utoipa::path(get, path = "/v1/files", tag = "openai", security(("api_key" = [])),
    responses((status = 200, description = "`{object: \"list\", data: [file]}`")))]
pub async fn list_files(state: web::Data<AppState>, who: Caller<OpenAi>) -> Result<HttpResponse> {
    let owner = (!who.0.is_admin()).then_some(who.0.user_id.as_str());
    let files = state.store.list_files(owner).await?;
    let data: Vec<_> = files.iter().map(batch_api::file_object).collect();
    Ok(HttpResponse::Ok().json(json!({"object": "list", "data": data, "has_more": false})))
}

#[utoipa::path(get, path = "/v1/files/{id}", tag = "openai", security(("api_key" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "the file object"), (status = 404, body = OpenAiErrorBody)))]
pub async fn get_file(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let f = own_file(&state, &who.0, &id).await?;
    Ok(HttpResponse::Ok().json(batch_api::file_object(&f)))
}

/// The file's bytes (batch inputs, and output and error files).
#[utoipa::path(get, path = "/v1/files/{id}/content", tag = "openai", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "JSONL", content_type = "application/jsonl"), (status = 404, body = OpenAiErrorBody)))]
pub async fn file_content(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    own_file(&state, &who.0, &id).await?;
    let content = state.store.file_content(&id).await?.unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type("application/jsonl")
        .body(content))
}

#[utoipa::path(delete, path = "/v1/files/{id}", tag = "openai", security(("api_key" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "`{id, object: \"file\", deleted: true}`"), (status = 404, body = OpenAiErrorBody)))]
pub async fn delete_file(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    own_file(&state, &who.0, &id).await?;
    let deleted = state.store.delete_file(&id).await?;
    Ok(HttpResponse::Ok().json(json!({"id": *id, "object": "file", "deleted": deleted})))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateBatch {
    pub input_file_id: String,
    /// `/v1/chat/completions` or `/v1/completions`.
    #[schema(pattern = "^/v1/(chat/)?completions$")]
    pub endpoint: String,
    /// Only `24h`.
    #[schema(pattern = "^24h$")]
    pub completion_window: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

impl Body for CreateBatch {}

/// Starts a batch over an uploaded file; it runs at batch priority inside the batch window.
#[utoipa::path(post, path = "/v1/batches", tag = "openai", security(("api_key" = [])), request_body = CreateBatch,
    responses((status = 200, description = "the batch object (status `validating`)"),
        (status = 400, body = OpenAiErrorBody, description = "bad endpoint or window, empty file, or more tokens than the owner's allowance left"),
        (status = 404, body = OpenAiErrorBody)))]
pub async fn create_batch(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    body: ApiJson<CreateBatch, OpenAi>,
) -> Result<HttpResponse> {
    let req = body.0;
    if req.completion_window != batch_api::COMPLETION_WINDOW {
        return Err(ApiError::invalid(
            format!(
                "completion_window must be '{}'",
                batch_api::COMPLETION_WINDOW
            ),
            Some("completion_window"),
        )
        .into());
    }
    if req.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::invalid("metadata must be an object", Some("metadata")).into());
    }
    let b = state
        .batches
        .create(
            &who.0,
            &req.input_file_id,
            &req.endpoint,
            req.metadata.as_ref(),
            None,
        )
        .await?;
    state.batches.signals.wake();
    Ok(HttpResponse::Ok().json(batch_api::object(&b)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// A batch id: list the ones created before it.
    pub after: Option<String>,
}

/// The caller's batches (admins: everyone's), newest first.
#[utoipa::path(get, path = "/v1/batches", tag = "openai", security(("api_key" = [])), params(ListQuery),
    responses((status = 200, description = "`{object: \"list\", data, first_id, last_id, has_more}`")))]
pub async fn list_batches(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 100", Some("limit")).into());
    }
    let owner = (!who.0.is_admin()).then_some(who.0.user_id.as_str());
    let mut list = state
        .store
        .list_batches(owner, limit + 1, q.after.as_deref())
        .await?;
    let has_more = list.len() as i64 > limit;
    list.truncate(limit as usize);
    let data: Vec<_> = list.iter().map(batch_api::object).collect();
    Ok(HttpResponse::Ok().json(json!({
        "object": "list", "data": data, "has_more": has_more,
        "first_id": list.first().map(|b| &b.id), "last_id": list.last().map(|b| &b.id),
    })))
}

#[utoipa::path(get, path = "/v1/batches/{id}", tag = "openai", security(("api_key" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "the batch object"), (status = 404, body = OpenAiErrorBody)))]
pub async fn get_batch(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let b = own_batch(&state, &who.0, &id).await?;
    Ok(HttpResponse::Ok().json(batch_api::object(&b)))
}

/// Stops starting lines; the batch becomes `cancelled` once its running lines end, with their results.
#[utoipa::path(post, path = "/v1/batches/{id}/cancel", tag = "openai", security(("api_key" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "the batch object (`cancelling`)"), (status = 404, body = OpenAiErrorBody),
        (status = 409, body = OpenAiErrorBody, description = "already ended")))]
pub async fn cancel_batch(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let b = own_batch(&state, &who.0, &id).await?;
    match b.status.as_str() {
        "validating" | "in_progress" => {
            state
                .store
                .set_batch_status(&b.id, "cancelling", crate::store::now())
                .await?;
            state.batches.signals.wake();
        }
        "cancelling" | "cancelled" => {}
        other => {
            return Err(ApiError::Conflict(format!(
                "batch '{}' has already ended ({other})",
                b.id
            ))
            .into());
        }
    }
    let b = own_batch(&state, &who.0, &id).await?;
    Ok(HttpResponse::Ok().json(batch_api::object(&b)))
}
