//! Ollama-compatible API on the same port: `/api/tags`, `/api/version`, `/api/show`, `/api/ps`, `/api/chat`,
//! `/api/generate` (NDJSON streaming by default, as Ollama does). Same API-key auth as `/v1`.

use super::error::{ApiError, Ollama, OllamaErrorBody, Rendered};
use super::extract::{ApiJson, Body, Caller};
use super::options::Options;
use super::structured::OutputFormat;
use super::{rendered_body, started_response, AppState};
use crate::config::parse_duration;
use crate::inference::{Piece, Request, Started};
use crate::sched::Prompt;
use actix_web::{web, HttpResponse};
use hearth_engine::logprobs::TokenLogprob;
use hearth_engine::tools::{FunctionCall, ToolCall, ToolChoice, ToolFormat, ToolUse};
use hearth_engine::{ChatMessage, FinishReason, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, Rendered<Ollama>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .wrap(actix_web::middleware::from_fn(|req, next| {
                super::metrics::count_requests("ollama", req, next)
            }))
            .service(super::resource("/tags").route(super::get_or_head().to(tags)))
            .service(super::resource("/version").route(super::get_or_head().to(version)))
            .service(super::resource("/show").route(web::post().to(show)))
            .service(super::resource("/ps").route(super::get_or_head().to(ps)))
            .service(super::resource("/chat").route(web::post().to(chat)))
            .service(super::resource("/generate").route(web::post().to(generate)))
            .configure(super::ollama_models::routes)
            .service(
                super::resource("/embed").route(web::post().to(super::embeddings::ollama_embed)),
            )
            .service(
                super::resource("/embeddings")
                    .route(web::post().to(super::embeddings::ollama_embeddings)),
            ),
    );
}

/// RFC 3339 UTC time (Ollama's timestamps), from Unix time.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

fn human_params(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.0}M", n as f64 / 1e6),
        n => format!("{n}"),
    }
}

fn details(m: &crate::models::Manifest) -> Value {
    json!({
        "parent_model": m.derived.as_ref().map(|d| d.from.as_str()).unwrap_or_default(),
        "format": "gguf",
        "family": m.architecture,
        "families": [m.architecture],
        "parameter_size": human_params(m.parameters),
        "quantization_level": m.file_type.clone().unwrap_or_default(),
    })
}

fn imported(m: &crate::models::Manifest) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(m.imported_at)
}

/// Models the caller's key may use.
#[utoipa::path(get, path = "/api/tags", tag = "ollama", security(("api_key" = [])),
    responses((status = 200, description = "`{\"models\": [...]}`"), (status = 401, body = OllamaErrorBody)))]
pub async fn tags(state: web::Data<AppState>, who: Caller<Ollama>) -> Result<HttpResponse> {
    let list = super::forward::reachable_models(&state).await?;
    let models: Vec<Value> = list
        .iter()
        .filter(|m| who.0.may_use(&m.name))
        .map(|m| {
            json!({
                "name": m.name, "model": m.name, "modified_at": rfc3339(imported(m)),
                "size": m.size_bytes, "digest": m.sha256, "details": details(m),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "models": models })))
}

/// Server version.
#[utoipa::path(get, path = "/api/version", tag = "ollama", security(("api_key" = [])),
    responses((status = 200, description = "`{\"version\": \"…\"}`")))]
pub async fn version(_who: Caller<Ollama>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShowRequest {
    pub model: Option<String>,
    /// Older clients send `name`.
    pub name: Option<String>,
}

/// Details of one model: format, family, parameters, chat template.
#[utoipa::path(post, path = "/api/show", tag = "ollama", security(("api_key" = [])), request_body = ShowRequest,
    responses((status = 200, description = "model details"), (status = 404, body = OllamaErrorBody)))]
pub async fn show(
    state: web::Data<AppState>,
    who: Caller<Ollama>,
    body: ApiJson<ShowRequest, Ollama>,
) -> Result<HttpResponse> {
    let asked = body
        .0
        .model
        .or(body.0.name)
        .ok_or_else(|| ApiError::invalid("missing field 'model'", Some("model")))?;
    let name = state.sched.resolve(&asked)?;
    if !who.0.may_use(&name) {
        return Err(ApiError::ModelNotFound(asked).into());
    }
    let models = state.sched.models();
    let m = models
        .get(&name)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let derived = m.derived.clone().unwrap_or_default();
    let template = match &derived.template {
        Some(t) => t.clone(),
        None => hearth_engine::gguf::GgufFile::open(models.file_path(&m))
            .ok()
            .and_then(|g| g.get_str("tokenizer.chat_template").map(str::to_owned))
            .unwrap_or_default(),
    };
    // `tools` where the model's own template renders them (every model can still be offered tools: Hearth's
    // instructions stand in, docs/api.md).
    let mut capabilities = vec!["completion"];
    if m.is_embedding() {
        capabilities = vec!["embedding"];
    } else {
        if ToolFormat::of_template(&template).is_some() {
            capabilities.push("tools");
        }
        if hearth_engine::think::template_thinks(&template) {
            capabilities.push("thinking");
        }
    }
    let mut info = serde_json::Map::new();
    info.insert("general.architecture".into(), json!(m.architecture));
    info.insert("general.parameter_count".into(), json!(m.parameters));
    if let Some(c) = m.context_length {
        info.insert(format!("{}.context_length", m.architecture), json!(c));
    }
    let mut out = json!({
        "modelfile": modelfile(&m, &derived),
        "parameters": parameter_lines(&derived.parameters),
        "template": template,
        "details": details(&m),
        "model_info": info,
        "capabilities": capabilities,
        "modified_at": rfc3339(imported(&m)),
    });
    if let Some(s) = &derived.system {
        out["system"] = json!(s);
    }
    if let Some(l) = &derived.license {
        out["license"] = json!(l);
    }
    Ok(HttpResponse::Ok().json(out))
}

/// A model's default options as Ollama's `parameters` text: `name value` lines (a line per stop string).
fn parameter_lines(p: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    for (k, v) in p {
        match v {
            Value::Array(items) => {
                for i in items {
                    out.push_str(&format!("{k} {i}\n"));
                }
            }
            v => out.push_str(&format!("{k} {v}\n")),
        }
    }
    out
}

/// The Modelfile that would make this model (for clients that show it; Hearth's create takes JSON).
fn modelfile(m: &crate::models::Manifest, d: &crate::models::Derived) -> String {
    let mut out = format!("# Hearth model {}\n", m.name);
    match m.derived {
        Some(_) => out.push_str(&format!("FROM {}\n", d.from)),
        None => out.push_str(&format!("FROM {}\n", m.file)),
    }
    if let Some(t) = &d.template {
        out.push_str(&format!("TEMPLATE \"\"\"{t}\"\"\"\n"));
    }
    if let Some(s) = &d.system {
        out.push_str(&format!("SYSTEM \"\"\"{s}\"\"\"\n"));
    }
    for line in parameter_lines(&d.parameters).lines() {
        out.push_str(&format!("PARAMETER {line}\n"));
    }
    for msg in &d.messages {
        out.push_str(&format!(
            "MESSAGE {} \"\"\"{}\"\"\"\n",
            msg.role, msg.content
        ));
    }
    if let Some(l) = &d.license {
        out.push_str(&format!("LICENSE \"\"\"{l}\"\"\"\n"));
    }
    out
}

/// Loaded models.
#[utoipa::path(get, path = "/api/ps", tag = "ollama", security(("api_key" = [])),
    responses((status = 200, description = "`{\"models\": [...]}`")))]
pub async fn ps(state: web::Data<AppState>, _who: Caller<Ollama>) -> Result<HttpResponse> {
    let mut out = Vec::new();
    for l in state.sched.loaded() {
        let m = state.sched.models().get(&l.name).ok();
        out.push(json!({
            "name": l.name, "model": l.name, "size": l.size_bytes,
            "digest": m.as_ref().map(|m| m.sha256.clone()).unwrap_or_default(),
            "details": m.as_ref().map(details).unwrap_or(Value::Null),
            "expires_at": rfc3339(l.expires_at.unwrap_or(UNIX_EPOCH + Duration::from_secs(253_402_300_799))),
            "size_vram": 0, "context_length": l.context,
        }));
    }
    Ok(HttpResponse::Ok().json(json!({ "models": out })))
}

/// `keep_alive`: seconds as a number, a duration string ("5m"), negative = forever.
fn keep_alive(v: &Option<Value>) -> std::result::Result<Option<Duration>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "keep_alive must be a number of seconds or a duration such as \"5m\"",
            Some("keep_alive"),
        )
    };
    Ok(match v {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let s = n.as_f64().ok_or_else(bad)?;
            // Negative, or more seconds than a Duration holds (`1e300`): forever.
            Some(if s < 0.0 {
                Duration::MAX
            } else {
                Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
            })
        }
        Some(Value::String(s)) if s.starts_with('-') => Some(Duration::MAX),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(Duration::from_secs(s.parse().map_err(|_| bad())?))
        }
        Some(Value::String(s)) => Some(parse_duration(s).map_err(|_| bad())?),
        Some(_) => return Err(bad()),
    })
}

/// The output format: `"json"` (JSON mode) or a JSON Schema object (structured outputs).
fn check_format(f: &Option<Value>) -> std::result::Result<OutputFormat, ApiError> {
    match f {
        None | Some(Value::Null) => Ok(OutputFormat::TEXT),
        Some(Value::String(s)) if s.is_empty() => Ok(OutputFormat::TEXT),
        Some(Value::String(s)) if s == "json" => Ok(OutputFormat::json_object()),
        Some(s @ Value::Object(_)) => OutputFormat::schema(s, "format"),
        Some(_) => Err(ApiError::invalid(
            "'format' must be \"json\" or a JSON Schema object",
            Some("format"),
        )),
    }
}

/// `think: true` asks for the reasoning apart from the answer, which Hearth does not do yet: refused, never
/// ignored. `false` is what every model served here does.
/// `think` sets the template's thinking switch, so it needs the template: not with `raw`.
fn check_think(think: Option<bool>, raw: bool) -> std::result::Result<(), ApiError> {
    if raw && think.is_some() {
        return Err(ApiError::invalid(
            "'think' goes through the chat template, which 'raw' skips",
            Some("think"),
        ));
    }
    Ok(())
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct OllamaMessage {
    #[schema(pattern = "^(system|user|assistant|tool)$")]
    pub role: String,
    #[serde(default)]
    pub content: String,
    /// An assistant message's calls.
    pub tool_calls: Option<Vec<OllamaToolCall>>,
    /// A tool message: the tool whose result it is (given to the template as the message's `name`).
    pub tool_name: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct OllamaToolCall {
    pub function: OllamaFunctionCall,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct OllamaFunctionCall {
    /// The call's position among the message's calls, where a client repeats it (checked).
    pub index: Option<usize>,
    pub name: String,
    #[schema(value_type = Object)]
    pub arguments: serde_json::Map<String, Value>,
}

/// Ollama's roles (`system`, `user`, `assistant`, `tool`); any other is refused, naming the message.
fn messages_in(msgs: &[OllamaMessage]) -> std::result::Result<Vec<ChatMessage>, ApiError> {
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            let at = |field: &str| format!("messages[{i}].{field}");
            if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool") {
                return Err(ApiError::invalid(
                    format!(
                        "{}: unknown role '{}' (use system, user, assistant or tool)",
                        at("role"),
                        m.role
                    ),
                    Some(&at("role")),
                ));
            }
            let mut message = ChatMessage::new(&m.role, &m.content);
            if let Some(calls) = &m.tool_calls {
                if m.role != "assistant" {
                    return Err(ApiError::invalid(
                        format!(
                            "{}: only an assistant message carries calls",
                            at("tool_calls")
                        ),
                        Some(&at("tool_calls")),
                    ));
                }
                for (j, c) in calls.iter().enumerate() {
                    if c.function.index.is_some_and(|k| k != j) {
                        let f = at(&format!("tool_calls[{j}].function.index"));
                        return Err(ApiError::invalid(format!("{f} must be {j}"), Some(&f)));
                    }
                    message.tool_calls.push(ToolCall::new(
                        "",
                        FunctionCall {
                            name: c.function.name.clone(),
                            arguments: Value::Object(c.function.arguments.clone()),
                        },
                    ));
                }
            }
            if let Some(name) = &m.tool_name {
                if m.role != "tool" {
                    return Err(ApiError::invalid(
                        format!("{}: only a tool message names its tool", at("tool_name")),
                        Some(&at("tool_name")),
                    ));
                }
                message.name = Some(name.clone());
            }
            Ok(message)
        })
        .collect()
}

/// The tools of an `/api/chat` body (Ollama has no `tool_choice`: the model decides).
fn tool_use(
    tools: &Option<Vec<super::openai::ToolIn>>,
) -> std::result::Result<Option<Arc<ToolUse>>, ApiError> {
    let tools = tools.as_deref().unwrap_or_default();
    if tools.is_empty() {
        return Ok(None);
    }
    let list = super::openai::tools_in(tools)?;
    ToolUse::new(list, ToolChoice::Auto, true)
        .map(|u| Some(Arc::new(u)))
        .map_err(super::structured::tool_error)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    pub model: String,
    #[serde(default)]
    pub messages: Vec<OllamaMessage>,
    /// Functions the model may call (Ollama's client always sends this list, often empty).
    pub tools: Option<Vec<super::openai::ToolIn>>,
    /// Default true: NDJSON.
    pub stream: Option<bool>,
    /// `"json"`: JSON mode; a JSON Schema object: structured outputs.
    #[schema(value_type = Option<serde_json::Value>)]
    pub format: Option<Value>,
    #[serde(default)]
    pub options: Options,
    #[schema(value_type = Option<String>)]
    pub keep_alive: Option<Value>,
    /// The template's thinking switch (`enable_thinking`); a thinking model's thoughts come as
    /// `message.thinking`. `true` on a model that does not think is a 400.
    pub think: Option<bool>,
    /// Each generated token's log-probability in `logprobs` (the model's own distribution).
    pub logprobs: Option<bool>,
    /// With `logprobs`: the most likely alternatives per token (0-20).
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub model: String,
    #[serde(default)]
    pub prompt: String,
    pub system: Option<String>,
    /// No chat template.
    #[serde(default)]
    pub raw: bool,
    pub stream: Option<bool>,
    /// `"json"`: JSON mode; a JSON Schema object: structured outputs.
    #[schema(value_type = Option<serde_json::Value>)]
    pub format: Option<Value>,
    #[serde(default)]
    pub options: Options,
    #[schema(value_type = Option<String>)]
    pub keep_alive: Option<Value>,
    /// The template's thinking switch; thoughts come as `thinking`. Not with `raw`.
    pub think: Option<bool>,
    /// Each generated token's log-probability in `logprobs` (the model's own distribution).
    pub logprobs: Option<bool>,
    /// With `logprobs`: the most likely alternatives per token (0-20).
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<i64>,
}

#[derive(Serialize)]
struct Timings {
    total_duration: u64,
    load_duration: u64,
    prompt_eval_count: usize,
    prompt_eval_duration: u64,
    eval_count: usize,
    eval_duration: u64,
}

fn timings(started: Instant, load: Duration, u: &Usage) -> Timings {
    Timings {
        total_duration: started.elapsed().as_nanos() as u64,
        load_duration: load.as_nanos() as u64,
        prompt_eval_count: u.prompt_tokens,
        prompt_eval_duration: u.time_to_first_token.as_nanos() as u64,
        eval_count: u.completion_tokens,
        eval_duration: u.generation_time.as_nanos() as u64,
    }
}

fn done_reason(r: FinishReason) -> &'static str {
    r.as_str()
}

fn ndjson(v: &Value) -> web::Bytes {
    web::Bytes::from(format!("{v}\n"))
}

/// An empty request only loads (or, with keep_alive 0, unloads) the model, as in Ollama.
async fn load_or_unload(
    state: &AppState,
    who: &crate::auth::Principal,
    model: &str,
    keep: Option<Duration>,
    chat: bool,
) -> Result<HttpResponse> {
    let name = state.sched.resolve(model)?;
    if !who.may_use(&name) {
        return Err(ApiError::Forbidden(format!("this API key may not use model '{name}'")).into());
    }
    let reason = if keep == Some(Duration::ZERO) {
        state.sched.unload(&name);
        "unload"
    } else {
        state.sched.load(&name).await?;
        "load"
    };
    let now = rfc3339(SystemTime::now());
    let mut v = json!({"model": name, "created_at": now, "done": true, "done_reason": reason});
    if chat {
        v["message"] = json!({"role": "assistant", "content": ""});
    } else {
        v["response"] = json!("");
    }
    Ok(HttpResponse::Ok().json(v))
}

fn respond(mut job: Started, chat: bool, stream: bool, started: Instant) -> HttpResponse {
    let mut ok = started_response(&job);
    let (model, load) = (job.model.clone(), job.load_duration);
    let text_field = move |t: &str| {
        if chat {
            ("message", json!({"role": "assistant", "content": t}))
        } else {
            ("response", json!(t))
        }
    };
    if !stream {
        let fut = async move {
            let c = job.collect().await;
            let (k, mut v) = text_field(&c.text);
            if !c.calls.is_empty() {
                v["tool_calls"] = json!(c.calls.iter().map(call_out).collect::<Vec<_>>());
            }
            let mut out = json!({"model": model, "created_at": rfc3339(SystemTime::now()), "done": true,
                "done_reason": done_reason(c.reason)});
            out[k] = v;
            if !c.thoughts.is_empty() {
                thinking_field(&mut out, k, &c.thoughts);
            }
            if let Some(es) = &c.logprobs {
                out["logprobs"] = json!(super::logprobs::entries(es));
            }
            merge(&mut out, &timings(started, load, &c.usage));
            out
        };
        return ok.streaming(futures_util::stream::once(async move {
            Ok::<_, actix_web::Error>(web::Bytes::from(fut.await.to_string()))
        }));
    }
    // The log-probabilities of tokens whose text has not been sent yet: they go with the next line.
    let mut pending: Vec<TokenLogprob> = Vec::new();
    let body = rendered_body(job, move |piece| {
        let line = |out: &mut Value, lp: Vec<TokenLogprob>| {
            if !lp.is_empty() {
                out["logprobs"] = json!(super::logprobs::entries(&lp));
            }
            ndjson(out)
        };
        let lp = std::mem::take(&mut pending);
        match piece {
            Piece::Start => {
                pending = lp;
                web::Bytes::new()
            }
            Piece::Logprobs(es) => {
                pending = lp;
                pending.extend(es);
                web::Bytes::new()
            }
            Piece::Text(t) => {
                let (k, v) = text_field(&t);
                let mut out = json!({"model": model, "created_at": rfc3339(SystemTime::now()), "done": false});
                out[k] = v;
                line(&mut out, lp)
            }
            Piece::Thought(t) => {
                let (k, v) = text_field("");
                let mut out = json!({"model": model, "created_at": rfc3339(SystemTime::now()), "done": false});
                out[k] = v;
                thinking_field(&mut out, k, &t);
                line(&mut out, lp)
            }
            // As Ollama streams a call: a whole call in its own message.
            Piece::Call(c) => {
                let (k, mut v) = text_field("");
                v["tool_calls"] = json!([call_out(&c)]);
                let mut out = json!({"model": model, "created_at": rfc3339(SystemTime::now()), "done": false});
                out[k] = v;
                line(&mut out, lp)
            }
            Piece::End(reason, usage) => {
                let (k, v) = text_field("");
                let mut out = json!({"model": model, "created_at": rfc3339(SystemTime::now()), "done": true,
                    "done_reason": done_reason(reason)});
                out[k] = v;
                merge(&mut out, &timings(started, load, &usage));
                line(&mut out, lp)
            }
        }
    });
    ok.content_type("application/x-ndjson").streaming(body)
}

/// Thoughts where Ollama puts them: `message.thinking` (chat) or `thinking` beside `response` (generate).
fn thinking_field(out: &mut Value, text_key: &str, thoughts: &str) {
    if text_key == "message" {
        out["message"]["thinking"] = json!(thoughts);
    } else {
        out["thinking"] = json!(thoughts);
    }
}

/// A call as Ollama's messages carry it (arguments as an object).
fn call_out(c: &FunctionCall) -> Value {
    json!({"function": {"name": c.name, "arguments": c.arguments}})
}

fn merge(out: &mut Value, t: &Timings) {
    if let (Some(o), Ok(Value::Object(t))) = (out.as_object_mut(), serde_json::to_value(t)) {
        o.extend(t);
    }
}

/// Chat with a model (NDJSON stream unless `stream: false`).
#[utoipa::path(post, path = "/api/chat", tag = "ollama", security(("api_key" = [])), request_body = ChatRequest,
    responses((status = 200, description = "NDJSON lines; the last has `done: true`, `done_reason` and counts"),
        (status = 400, body = OllamaErrorBody), (status = 401, body = OllamaErrorBody),
        (status = 404, body = OllamaErrorBody)))]
pub async fn chat(
    state: web::Data<AppState>,
    who: Caller<Ollama>,
    body: ApiJson<ChatRequest, Ollama>,
) -> Result<HttpResponse> {
    let started = Instant::now();
    let mut req = body.0;
    if let Some(base) = super::options::model_defaults(&state.inference, &req.model)? {
        req.options = req.options.under(&base);
    }
    match chat_call(&req)? {
        Call::Load(keep) => load_or_unload(&state, &who.0, &req.model, keep, true).await,
        Call::Generate(request) => {
            let job = state.inference.start(&who.0, *request).await?;
            Ok(respond(job, true, req.stream.unwrap_or(true), started))
        }
    }
}

/// Generate a completion (chat template applied unless `raw`).
#[utoipa::path(post, path = "/api/generate", tag = "ollama", security(("api_key" = [])), request_body = GenerateRequest,
    responses((status = 200, description = "NDJSON lines; the last has `done: true`, `done_reason` and counts"),
        (status = 400, body = OllamaErrorBody), (status = 401, body = OllamaErrorBody),
        (status = 404, body = OllamaErrorBody)))]
pub async fn generate(
    state: web::Data<AppState>,
    who: Caller<Ollama>,
    body: ApiJson<GenerateRequest, Ollama>,
) -> Result<HttpResponse> {
    let started = Instant::now();
    let mut req = body.0;
    if let Some(base) = super::options::model_defaults(&state.inference, &req.model)? {
        req.options = req.options.under(&base);
    }
    match generate_call(&req)? {
        Call::Load(keep) => load_or_unload(&state, &who.0, &req.model, keep, false).await,
        Call::Generate(request) => {
            let job = state.inference.start(&who.0, *request).await?;
            Ok(respond(job, false, req.stream.unwrap_or(true), started))
        }
    }
}

/// What an `/api/chat` or `/api/generate` body asks for: generation, or (empty messages or prompt, as Ollama's
/// clients send) loading the model — or unloading it with `keep_alive: 0`.
pub enum Call {
    Generate(Box<Request>),
    Load(Option<Duration>),
}

/// The translation of an `/api/chat` body.
pub fn chat_call(req: &ChatRequest) -> std::result::Result<Call, ApiError> {
    check_think(req.think, false)?;
    let tools = tool_use(&req.tools)?;
    let format = check_format(&req.format)?;
    if tools.is_some() && (format.json || format.schema.is_some()) {
        return Err(ApiError::invalid(
            "'format' cannot constrain an answer that may be a tool call",
            Some("format"),
        ));
    }
    let keep = keep_alive(&req.keep_alive)?;
    if req.messages.is_empty() {
        return Ok(Call::Load(keep));
    }
    let messages = messages_in(&req.messages)?;
    let request = req.options.request(
        &req.model,
        "ollama_chat",
        Prompt::Chat(messages),
        format,
        keep,
    )?;
    Ok(Call::Generate(Box::new(Request {
        tools,
        think: req.think,
        logprobs: super::logprobs::requested(req.logprobs, req.top_logprobs)?,
        ..request
    })))
}

/// The translation of an `/api/generate` body (chat template applied unless `raw`).
pub fn generate_call(req: &GenerateRequest) -> std::result::Result<Call, ApiError> {
    check_think(req.think, req.raw)?;
    let format = check_format(&req.format)?;
    let keep = keep_alive(&req.keep_alive)?;
    if req.prompt.is_empty() {
        return Ok(Call::Load(keep));
    }
    let prompt = if req.raw {
        Prompt::Text(req.prompt.clone())
    } else {
        let mut m = Vec::new();
        if let Some(s) = &req.system {
            m.push(ChatMessage::new("system", s));
        }
        m.push(ChatMessage::new("user", &req.prompt));
        Prompt::Chat(m)
    };
    let request = req
        .options
        .request(&req.model, "ollama_generate", prompt, format, keep)?;
    Ok(Call::Generate(Box::new(Request {
        think: req.think,
        logprobs: super::logprobs::requested(req.logprobs, req.top_logprobs)?,
        ..request
    })))
}

impl Body for ShowRequest {}
impl Body for ChatRequest {}
impl Body for GenerateRequest {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_000_000)),
            "2026-11-30T00:53:20.000000000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn keep_alive_forms() {
        assert_eq!(keep_alive(&None).unwrap(), None);
        assert_eq!(keep_alive(&Some(json!(0))).unwrap(), Some(Duration::ZERO));
        assert_eq!(keep_alive(&Some(json!(-1))).unwrap(), Some(Duration::MAX));
        assert_eq!(
            keep_alive(&Some(json!("10m"))).unwrap(),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            keep_alive(&Some(json!("30"))).unwrap(),
            Some(Duration::from_secs(30))
        );
        assert!(keep_alive(&Some(json!("soon"))).is_err());
        assert!(keep_alive(&Some(json!([1]))).is_err());
    }
}
