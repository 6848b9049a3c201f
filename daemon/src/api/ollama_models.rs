//! Ollama's model management for admins: `/api/pull` (a model of the configured catalog, with Ollama's progress
//! lines), `/api/create` (a model derived from another: system prompt, conversation prefix, chat template, default
//! options), `/api/copy` and `/api/delete`. The caller is authorised before the body is read; the models directory
//! (`models`) and the downloads (`pull`) do the work.

use super::error::{ApiError, Ollama, OllamaErrorBody, Rendered};
use super::extract::{Admin, Body};
use super::options::options_of;
use super::AppState;
use crate::models::{Derived, DerivedMessage};
use crate::pull::PullEvent;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, Rendered<Ollama>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/pull").route(web::post().to(pull)))
        .service(super::resource("/create").route(web::post().to(create)))
        .service(super::resource("/delete").route(web::delete().to(delete)))
        .service(super::resource("/copy").route(web::post().to(copy)));
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    pub model: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyRequest {
    pub source: String,
    pub destination: String,
}

/// Deletes an imported model (admin; the caller is authorised before the body is read). A loaded model is
/// unloaded first.
#[utoipa::path(delete, path = "/api/delete", tag = "ollama", security(("api_key" = [])), request_body = DeleteRequest,
    responses((status = 200, description = "deleted"), (status = 400, body = OllamaErrorBody),
        (status = 403, body = OllamaErrorBody), (status = 404, body = OllamaErrorBody)))]
pub async fn delete(
    state: web::Data<AppState>,
    _admin: Admin<Ollama>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let req: DeleteRequest = super::extract::parse_json(&body)?;
    let name = state.sched.resolve(&req.model)?;
    state.sched.unload(&name);
    let models = state.sched.models().clone();
    web::block(move || models.remove(&name))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(HttpResponse::Ok().finish())
}

/// Copies an imported model under a new name (admin): the same files, linked, a manifest of its own.
#[utoipa::path(post, path = "/api/copy", tag = "ollama", security(("api_key" = [])), request_body = CopyRequest,
    responses((status = 200, description = "copied"), (status = 400, body = OllamaErrorBody),
        (status = 403, body = OllamaErrorBody), (status = 404, body = OllamaErrorBody),
        (status = 409, body = OllamaErrorBody, description = "the destination name is taken")))]
pub async fn copy(
    state: web::Data<AppState>,
    _admin: Admin<Ollama>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let req: CopyRequest = super::extract::parse_json(&body)?;
    let source = state.sched.resolve(&req.source)?;
    let models = state.sched.models().clone();
    web::block(move || models.copy(&source, &req.destination))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(HttpResponse::Ok().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The new model's name. A derived model of that name is replaced; an imported one is not (409).
    pub model: String,
    /// The model it is made from (its weights are shared).
    pub from: Option<String>,
    /// The system message of every conversation that brings none.
    pub system: Option<String>,
    /// A Jinja chat template (as GGUF's `tokenizer.chat_template`) in place of the model's own. Ollama's Go
    /// templates are refused.
    pub template: Option<String>,
    /// Default options, Ollama's names (`temperature`, `num_ctx`, `stop`, …): a request's own options win.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Map<String, Value>>,
    /// Messages put before every conversation.
    pub messages: Option<Vec<CreateMessage>>,
    /// A string or a list of strings.
    #[schema(value_type = Option<Object>)]
    pub license: Option<Value>,
    /// Default true: NDJSON status lines.
    pub stream: Option<bool>,
    /// Not taken: a model's files come by import or pull (400 naming it).
    #[schema(value_type = Option<Object>)]
    pub files: Option<Value>,
    /// Not taken: LoRA adapters are not supported (400 naming it).
    #[schema(value_type = Option<Object>)]
    pub adapters: Option<Value>,
    /// Not taken: `hearth model convert` quantizes (400 naming it).
    pub quantize: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct CreateMessage {
    #[schema(pattern = "^(system|user|assistant)$")]
    pub role: String,
    pub content: String,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("{field}: {why}"), Some(field))
}

/// The derivation a create body asks for, every part checked: nothing is written for a bad one.
fn derivation(req: &CreateRequest) -> std::result::Result<Derived, ApiError> {
    if req.files.is_some() {
        return Err(invalid(
            "files",
            "not supported: import or pull the GGUF file, then create from it",
        ));
    }
    if req.adapters.is_some() {
        return Err(invalid("adapters", "LoRA adapters are not supported"));
    }
    if req.quantize.is_some() {
        return Err(invalid(
            "quantize",
            "not supported here: `hearth model convert` writes other quantizations",
        ));
    }
    let from = req
        .from
        .clone()
        .ok_or_else(|| invalid("from", "name the model to make this one from"))?;
    if let Some(t) = &req.template {
        check_template(t)?;
    }
    let parameters = req.parameters.clone().unwrap_or_default();
    let _ = options_of(&parameters).map_err(|e| invalid("parameters", e))?;
    let messages = req
        .messages
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, m)| match m.role.as_str() {
            "system" | "user" | "assistant" => Ok(DerivedMessage {
                role: m.role.clone(),
                content: m.content.clone(),
            }),
            other => Err(invalid(
                &format!("messages[{i}].role"),
                format!("unknown role '{other}' (use system, user or assistant)"),
            )),
        })
        .collect::<std::result::Result<_, _>>()?;
    let license = match &req.license {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(parts)) if parts.iter().all(Value::is_string) => Some(
            parts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n\n"),
        ),
        Some(_) => return Err(invalid("license", "a string or a list of strings")),
    };
    Ok(Derived {
        from,
        system: req.system.clone(),
        template: req.template.clone(),
        messages,
        parameters,
        license,
    })
}

/// A chat template Hearth can render: Jinja that compiles and renders a short conversation.
fn check_template(source: &str) -> std::result::Result<(), ApiError> {
    // Ollama's Go templates read fields with a leading dot: `{{ .Prompt }}`, `{{- range .Messages }}`.
    let go = [
        "{{ .",
        "{{.",
        "{{- .",
        "{{- range .",
        "{{ range .",
        "{{ if .",
        "{{- if .",
    ];
    if go.iter().any(|g| source.contains(g)) {
        return Err(invalid(
            "template",
            "this is an Ollama (Go) template; Hearth renders Jinja chat templates, as GGUF files and Hugging Face \
             carry them (tokenizer.chat_template)",
        ));
    }
    let t = hearth_engine::ChatTemplate::new(source, "<s>", "</s>")
        .map_err(|e| invalid("template", e))?;
    t.render(&[hearth_engine::ChatMessage::new("user", "Hello")], true)
        .map_err(|e| invalid("template", e))?;
    Ok(())
}

/// Creates a model from another (admin): the same weights with its own system prompt, messages, template and
/// default options. Answers Ollama's status lines, ending with `success`.
#[utoipa::path(post, path = "/api/create", tag = "ollama", security(("api_key" = [])), request_body = CreateRequest,
    responses((status = 200, description = "`{\"status\": \"success\"}` (NDJSON status lines when streamed)"),
        (status = 400, body = OllamaErrorBody), (status = 403, body = OllamaErrorBody),
        (status = 404, body = OllamaErrorBody),
        (status = 409, body = OllamaErrorBody, description = "an imported model has that name")))]
pub async fn create(
    state: web::Data<AppState>,
    admin: Admin<Ollama>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let req: CreateRequest = super::extract::parse_json(&body)?;
    let derived = derivation(&req)?;
    let source = state.sched.resolve_model(&derived.from)?;
    if source.is_embedding() {
        return Err(invalid("from", format!("'{}' is an embedding model", source.name)).into());
    }
    let to = req.model.clone();
    let from = source.name.clone();
    let models = state.sched.models().clone();
    let name = to.clone();
    let m = web::block(move || models.create(&from, &name, derived))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    // A replaced model's worker still renders the old template: the next request loads the new one.
    state.sched.unload(&m.name);
    // The unload is asynchronous: wait (bounded) until the old worker is gone, so the next request loads anew.
    for _ in 0..250 {
        if !state.sched.loaded().iter().any(|l| l.name == m.name) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::info!(model = %m.name, from = %source.name, by = %admin.0.user_name, "model created");
    let lines = [
        json!({"status": format!("using model {}", source.name)}),
        json!({"status": "writing manifest"}),
        json!({"status": "success"}),
    ];
    Ok(if req.stream.unwrap_or(true) {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        HttpResponse::Ok()
            .content_type("application/x-ndjson")
            .body(body)
    } else {
        HttpResponse::Ok().json(json!({"status": "success"}))
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// A name of the server's catalog (`[catalog]` in its config; `name:latest` is `name`), or the URL of a
    /// GGUF file (the model is named after the file).
    pub model: Option<String>,
    /// Older clients send `name`.
    pub name: Option<String>,
    /// `true` allows a catalog entry's plain `http://` URL that pins no `sha256` (as Ollama's flag allows an
    /// insecure registry).
    pub insecure: Option<bool>,
    /// Default true: NDJSON progress lines.
    pub stream: Option<bool>,
}

fn ndjson(lines: &[Value]) -> web::Bytes {
    web::Bytes::from(lines.iter().map(|l| format!("{l}\n")).collect::<String>())
}

/// Pulls a model of the catalog (admin): downloaded, checked against its digest, validated and imported under
/// that name. A model already imported with that file is not fetched again.
#[utoipa::path(post, path = "/api/pull", tag = "ollama", security(("api_key" = [])), request_body = PullRequest,
    responses((status = 200, description = "NDJSON progress lines (`status`, `digest`, `total`, `completed`) ending in `{\"status\": \"success\"}` or `{\"error\": …}`; one object with `stream: false`"),
        (status = 400, body = OllamaErrorBody), (status = 403, body = OllamaErrorBody),
        (status = 404, body = OllamaErrorBody, description = "not in the catalog"),
        (status = 409, body = OllamaErrorBody, description = "being pulled, or imported from another file"),
        (status = 502, body = OllamaErrorBody, description = "the download failed (`stream: false`)")))]
pub async fn pull(
    state: web::Data<AppState>,
    admin: Admin<Ollama>,
    body: web::Bytes,
) -> Result<HttpResponse> {
    let req: PullRequest = super::extract::parse_json(&body)?;
    let asked = req
        .model
        .or(req.name)
        .ok_or_else(|| invalid("model", "name the model to pull"))?;
    let (name, entry) = if asked.starts_with("https://") || asked.starts_with("http://") {
        // A URL of a GGUF file: named after the file, as `POST /admin/models/pull` names it.
        let file = crate::pull::file_name_of(&asked)
            .ok_or_else(|| invalid("model", "a URL to pull must end in a .gguf file name"))?;
        let name = file.trim_end_matches(".gguf").to_owned();
        let entry = crate::config::CatalogEntry {
            url: asked.clone(),
            sha256: None,
        };
        (name, entry)
    } else {
        let name = asked.strip_suffix(":latest").unwrap_or(&asked).to_owned();
        let catalog = &state.config.catalog;
        let entry = [asked.clone(), name.clone(), format!("{name}:latest")]
            .iter()
            .find_map(|k| catalog.get(k))
            .cloned()
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "model '{asked}' is not in this server's catalog (an admin adds it under [catalog] in the \
                     config; a GGUF file's URL can be pulled as the model name)"
                ))
            })?;
        (name, entry)
    };
    if entry.url.starts_with("http://") && entry.sha256.is_none() && req.insecure != Some(true) {
        return Err(invalid(
            "insecure",
            "the catalog has this model at a plain http:// URL without a sha256: pull with insecure true, or \
             pin its sha256 in the catalog",
        )
        .into());
    }
    let stream = req.stream.unwrap_or(true);
    let digest = entry
        .sha256
        .as_deref()
        .map(|h| format!("sha256:{}", h.to_ascii_lowercase()))
        .unwrap_or_default();
    let models = state.sched.models().clone();
    if let Ok(m) = models.get(&name) {
        return match &entry.sha256 {
            Some(h) if !h.eq_ignore_ascii_case(&m.sha256) => Err(ApiError::Conflict(format!(
                "model '{name}' is imported from another file (sha256 {}); delete it to pull the catalog's",
                m.sha256
            ))
            .into()),
            _ if stream => Ok(HttpResponse::Ok()
                .content_type("application/x-ndjson")
                .body(ndjson(&[
                    json!({"status": "pulling manifest"}),
                    json!({"status": "success"}),
                ]))),
            _ => Ok(HttpResponse::Ok().json(json!({"status": "success"}))),
        };
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    state
        .pulls
        .start(
            models,
            crate::pull::PullJob {
                url: entry.url.clone(),
                name: name.clone(),
                sha256: entry.sha256.clone(),
                watch: Some(tx),
            },
        )
        .map_err(|e| match e {
            crate::pull::PullError::Store(s) => ApiError::from(s),
            crate::pull::PullError::Busy(_) => ApiError::Conflict(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        })?;
    tracing::info!(model = %name, url = %entry.url, by = %admin.0.user_name, "catalog pull started");
    if !stream {
        while let Some(ev) = rx.recv().await {
            if let PullEvent::Done(result) = ev {
                return match result {
                    Ok(()) => Ok(HttpResponse::Ok().json(json!({"status": "success"}))),
                    Err(e) => Err(ApiError::Upstream(e).into()),
                };
            }
        }
        return Err(ApiError::Internal("the pull ended without a result".into()).into());
    }
    // Ollama names a layer by its digest's first 12 digits; without a digest, the model's name.
    let short: String = match &entry.sha256 {
        Some(h) => h.chars().take(12).collect::<String>().to_ascii_lowercase(),
        None => name.clone(),
    };
    let first = futures_util::stream::once(std::future::ready(ndjson(&[
        json!({"status": "pulling manifest"}),
    ])));
    let rest = futures_util::stream::unfold(Some(rx), move |rx| {
        let (digest, short) = (digest.clone(), short.clone());
        async move {
            let mut rx = rx?;
            let line = match rx.recv().await {
                Some(PullEvent::Progress { bytes, total }) => {
                    let mut l = json!({"status": format!("pulling {short}"), "completed": bytes});
                    if !digest.is_empty() {
                        l["digest"] = json!(digest);
                    }
                    if let Some(t) = total {
                        l["total"] = json!(t);
                    }
                    return Some((ndjson(&[l]), Some(rx)));
                }
                Some(PullEvent::Done(Ok(()))) => ndjson(&[
                    json!({"status": "verifying sha256 digest"}),
                    json!({"status": "writing manifest"}),
                    json!({"status": "success"}),
                ]),
                Some(PullEvent::Done(Err(e))) => ndjson(&[json!({"error": e})]),
                None => ndjson(&[json!({"error": "the pull ended without a result"})]),
            };
            Some((line, None))
        }
    });
    use futures_util::StreamExt;
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(first.chain(rest).map(Ok::<_, actix_web::Error>)))
}

impl Body for PullRequest {}
impl Body for DeleteRequest {}
impl Body for CopyRequest {}
impl Body for CreateRequest {}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> CreateRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_bad_derivation_is_refused_naming_its_field() {
        for (v, field) in [
            (json!({"model": "m"}), "from"),
            (
                json!({"model": "m", "from": "x", "quantize": "q4_K_M"}),
                "quantize",
            ),
            (
                json!({"model": "m", "from": "x", "files": {"a.gguf": "sha256:00"}}),
                "files",
            ),
            (
                json!({"model": "m", "from": "x", "adapters": {}}),
                "adapters",
            ),
            (
                json!({"model": "m", "from": "x", "template": "{{ .Prompt }}"}),
                "template",
            ),
            (
                json!({"model": "m", "from": "x", "template": "{% for %}"}),
                "template",
            ),
            (
                json!({"model": "m", "from": "x", "parameters": {"mirostat": 1}}),
                "parameters",
            ),
            (
                json!({"model": "m", "from": "x", "parameters": {"temperature": 99}}),
                "parameters",
            ),
            (
                json!({"model": "m", "from": "x", "messages": [{"role": "tool", "content": "1"}]}),
                "messages[0].role",
            ),
            (json!({"model": "m", "from": "x", "license": 3}), "license"),
        ] {
            let e = derivation(&body(v.clone())).unwrap_err();
            assert_eq!(e.param(), Some(field), "{v}: {e}");
        }
    }

    #[test]
    fn a_good_derivation_keeps_what_it_says() {
        let d = derivation(&body(json!({
            "model": "m", "from": "x", "system": "Be brief.",
            "template": "{% for m in messages %}{{ m.content }}{% endfor %}",
            "parameters": {"temperature": 0.2, "stop": ["END"], "num_ctx": 512},
            "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            "license": ["MIT", "CC-BY"],
        })))
        .unwrap();
        assert_eq!(d.from, "x");
        assert_eq!(d.system.as_deref(), Some("Be brief."));
        assert_eq!(d.messages.len(), 2);
        assert_eq!(d.license.as_deref(), Some("MIT\n\nCC-BY"));
        let o = options_of(&d.parameters).unwrap();
        assert_eq!(o.temperature, Some(0.2));
        assert_eq!(o.num_ctx, Some(512));
    }
}
