//! OpenAI-compatible API: `/v1/models`, `/v1/chat/completions`, `/v1/completions`, JSON or SSE — and the same
//! translation for the lines of a batch file (`batch_lines`). Each endpoint only translates: its body into an
//! `inference::Request`, the job's `Completion` or `Piece`s back into OpenAI's objects.

use super::error::{ApiError, OpenAi, OpenAiErrorBody, Rendered};
use super::extract::{field_error, ApiJson, Body, Caller};
use super::options::Options;
use super::structured::OutputFormat;
use super::{started_response, AppState};
use crate::auth::Authenticator;
use crate::batch_api::runner::{Answer, Line, RunLine};
use crate::inference::{Completion, Inference, Piece, Request, Started};
use crate::sched::{Priority, Prompt};
use crate::store::now as unix_now;
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;
use hearth_engine::logprobs::TokenLogprob;
use hearth_engine::tools::{FunctionCall, Tool, ToolCall, ToolChoice, ToolUse};
use hearth_engine::{ChatMessage, FinishReason, SamplingParams, Usage};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::ToSchema;

type Result<T> = std::result::Result<T, Rendered<OpenAi>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .wrap(actix_web::middleware::from_fn(
                super::rate_headers::rate_headers,
            ))
            .wrap(actix_web::middleware::from_fn(|req, next| {
                super::metrics::count_requests("openai", req, next)
            }))
            .service(super::resource("/models").route(super::get_or_head().to(list_models)))
            .service(super::resource("/models/{model}").route(super::get_or_head().to(get_model)))
            .service(super::resource("/chat/completions").route(web::post().to(chat_completions)))
            .service(super::resource("/completions").route(web::post().to(completions)))
            .service(
                super::resource("/embeddings").route(web::post().to(super::embeddings::openai)),
            )
            .service(super::resource("/me/usage").route(super::get_or_head().to(me_usage)))
            .configure(super::batch_api::routes),
    );
}

#[derive(Serialize, ToSchema)]
pub struct ModelObject {
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    pub created: i64,
    pub owned_by: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<ModelObject>,
}

fn model_object(m: &crate::models::Manifest) -> ModelObject {
    ModelObject {
        id: m.name.clone(),
        object: "model",
        created: m.imported_at as i64,
        owned_by: "hearth",
    }
}

/// Models the caller's key may use.
#[utoipa::path(get, path = "/v1/models", tag = "openai", security(("api_key" = [])),
    responses((status = 200, body = ModelList), (status = 401, body = OpenAiErrorBody)))]
pub async fn list_models(state: web::Data<AppState>, who: Caller<OpenAi>) -> Result<HttpResponse> {
    let list = super::forward::reachable_models(&state).await?;
    let data = list
        .iter()
        .filter(|m| who.0.may_use(&m.name))
        .map(model_object)
        .collect();
    Ok(HttpResponse::Ok().json(ModelList {
        object: "list",
        data,
    }))
}

/// One model.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai", security(("api_key" = [])),
    params(("model" = String, Path, description = "model name")),
    responses((status = 200, body = ModelObject), (status = 404, body = OpenAiErrorBody)))]
pub async fn get_model(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    // This node's manifest when it has the model (one read); the cluster's listing only when it does not.
    let m = match state.sched.resolve_model(&path) {
        Ok(m) => Some(m),
        Err(_) => {
            let asked = path.trim_end_matches(":latest");
            super::forward::reachable_models(&state)
                .await?
                .into_iter()
                .find(|m| m.name == *path || m.name == asked)
        }
    };
    let m = m
        .filter(|m| who.0.may_use(&m.name))
        .ok_or_else(|| ApiError::ModelNotFound(path.to_string()))?;
    Ok(HttpResponse::Ok().json(model_object(&m)))
}

/// `stop`: one string or a list.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

#[derive(Deserialize, ToSchema, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a last chunk with the request's token usage.
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ResponseFormat {
    /// `text`, `json_object` (one JSON object) or `json_schema` (a value of `json_schema.schema`).
    #[serde(rename = "type")]
    #[schema(pattern = "^(text|json_object|json_schema)$")]
    pub kind: String,
    /// With `type: json_schema`.
    pub json_schema: Option<JsonSchemaFormat>,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaFormat {
    /// The format's name, as OpenAI requires one.
    #[schema(pattern = "^[a-zA-Z0-9_-]{1,64}$")]
    pub name: String,
    /// The JSON Schema every output validates against (constrained decoding; keywords Hearth does not enforce
    /// are refused, see docs/api.md).
    #[schema(value_type = Object)]
    pub schema: Option<serde_json::Value>,
    /// Hearth always enforces the schema: `false` is accepted and changes nothing.
    pub strict: Option<bool>,
}

/// Sampling fields shared by both completion endpoints (extensions as in llama.cpp's and vLLM's servers).
#[derive(Deserialize, ToSchema, Clone, Default)]
pub struct SamplingFields {
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    /// 0 = greedy. Default 1.
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f32>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f32>,
    /// Extension: 0 = off.
    pub top_k: Option<u32>,
    /// Extension.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub min_p: Option<f32>,
    /// Extension: 1 = off.
    #[schema(minimum = 0.0, maximum = 10.0)]
    pub repetition_penalty: Option<f32>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub presence_penalty: Option<f32>,
    #[schema(minimum = -2.0, maximum = 2.0)]
    pub frequency_penalty: Option<f32>,
    /// Token id (as a string) → bias in [-100, 100].
    pub logit_bias: Option<HashMap<String, f32>>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    /// Choices to generate (1–8; each a sequence of the model's batch, admitted and charged on its own).
    #[schema(minimum = 1, maximum = 8)]
    pub n: Option<u32>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// The client's own end-user id: stored on the request's ledger row (exported as `client_user`), not
    /// used for generation.
    #[schema(max_length = 256)]
    pub user: Option<String>,
    /// Extension: `false` opts this request out of the model's speculative decoding (draft model or prompt
    /// lookup). Greedy output is the same either way.
    pub speculative: Option<bool>,
}

/// The most choices one request may ask for (`n` × prompts): each takes a slot of the model's batch.
const MAX_CHOICES: usize = 8;

fn in_range(name: &str, v: Option<f32>, lo: f32, hi: f32) -> std::result::Result<(), ApiError> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) || x.is_nan() => Err(ApiError::invalid(
            format!("'{name}' must be between {lo} and {hi}, got {x}"),
            Some(name),
        )),
        _ => Ok(()),
    }
}

impl SamplingFields {
    /// These fields over a derived model's default options (Ollama's names): what the request sets wins.
    fn under(self, o: &Options) -> SamplingFields {
        SamplingFields {
            max_tokens: self
                .max_tokens
                .or(o.num_predict.filter(|&n| n > 0).map(|n| n as u32)),
            temperature: self.temperature.or(o.temperature),
            top_p: self.top_p.or(o.top_p),
            top_k: self.top_k.or(o.top_k.map(|k| k as u32)),
            min_p: self.min_p.or(o.min_p),
            repetition_penalty: self.repetition_penalty.or(o.repeat_penalty),
            presence_penalty: self.presence_penalty.or(o.presence_penalty),
            frequency_penalty: self.frequency_penalty.or(o.frequency_penalty),
            seed: self.seed.or(o.seed),
            stop: self.stop.or(o.stop.clone().map(Stop::Many)),
            speculative: self.speculative.or(o.speculative),
            ..self
        }
    }

    fn sampling(&self) -> std::result::Result<SamplingParams, ApiError> {
        in_range("temperature", self.temperature, 0.0, 2.0)?;
        in_range("top_p", self.top_p, 0.0, 1.0)?;
        in_range("min_p", self.min_p, 0.0, 1.0)?;
        in_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        in_range("repetition_penalty", self.repetition_penalty, 0.0, 10.0)?;
        if self.user.as_ref().is_some_and(|u| u.len() > 256) {
            return Err(ApiError::invalid(
                "'user' must be at most 256 characters",
                Some("user"),
            ));
        }
        if self
            .n
            .is_some_and(|n| !(1..=MAX_CHOICES as u32).contains(&n))
        {
            return Err(ApiError::invalid(
                format!("'n' must be between 1 and {MAX_CHOICES}"),
                Some("n"),
            ));
        }
        let mut bias = Vec::new();
        for (k, v) in self.logit_bias.iter().flatten() {
            let id: u32 = k.parse().map_err(|_| {
                ApiError::invalid(
                    format!("logit_bias key '{k}' is not a token id"),
                    Some("logit_bias"),
                )
            })?;
            if !(-100.0..=100.0).contains(v) {
                return Err(ApiError::invalid(
                    format!("logit_bias value for token {id} must be between -100 and 100"),
                    Some("logit_bias"),
                ));
            }
            bias.push((id, *v));
        }
        bias.sort_by_key(|b| b.0);
        // OpenAI's defaults: plain temperature-1 sampling, no top-k/min-p filtering.
        Ok(SamplingParams {
            temperature: self.temperature.unwrap_or(1.0),
            top_p: self.top_p.unwrap_or(1.0),
            top_k: self.top_k.unwrap_or(0) as usize,
            min_p: self.min_p.unwrap_or(0.0),
            repeat_penalty: self.repetition_penalty.unwrap_or(1.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            logit_bias: bias,
            seed: self.seed.map(|s| s as u64),
            ..SamplingParams::default()
        })
    }

    /// The request these fields describe.
    fn request(
        &self,
        model: &str,
        endpoint: &'static str,
        prompt: Prompt,
        max_tokens: Option<u32>,
        format: OutputFormat,
    ) -> std::result::Result<Request, ApiError> {
        Ok(Request {
            model: model.to_owned(),
            endpoint,
            client_user: self.user.clone(),
            prompt,
            max_tokens: max_tokens.map(|n| n as usize),
            sampling: self.sampling()?,
            stop: self.stop()?,
            json: format.json,
            schema: format.schema,
            tools: None,
            think: None,
            speculative: self.speculative.unwrap_or(true),
            logprobs: None,
            context: None,
            keep_alive: None,
            priority: Priority::Interactive,
        })
    }

    fn stop(&self) -> std::result::Result<Vec<String>, ApiError> {
        let stop = self.stop.clone().map(Stop::into_vec).unwrap_or_default();
        if stop.len() > 4 {
            return Err(ApiError::invalid("at most 4 stop sequences", Some("stop")));
        }
        Ok(stop.into_iter().filter(|s| !s.is_empty()).collect())
    }
}

/// A message's content: text, or a list of parts of which the text ones are used.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ContentPart {
    /// `text` (the only kind supported).
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    pub kind: String,
    pub text: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ChatMessageIn {
    /// system, developer, user, assistant or tool.
    #[schema(pattern = "^(system|developer|user|assistant|tool)$")]
    pub role: String,
    pub content: Option<Content>,
    /// The participant's name: given to the chat template as `name`, or written before the content
    /// (`name: …`) where the template has no place for it.
    pub name: Option<String>,
    /// An assistant message's calls (given to the chat template as they came).
    pub tool_calls: Option<Vec<ToolCallIn>>,
    /// A tool message: the id of the call it answers (required there).
    pub tool_call_id: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ToolCallIn {
    pub id: String,
    /// `function`.
    #[serde(rename = "type")]
    #[schema(pattern = "^function$")]
    pub kind: String,
    pub function: FunctionCallIn,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct FunctionCallIn {
    pub name: String,
    /// The arguments: a JSON object, as text.
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ToolIn {
    /// `function`.
    #[serde(rename = "type")]
    #[schema(pattern = "^function$")]
    pub kind: String,
    pub function: FunctionIn,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct FunctionIn {
    #[schema(pattern = "^[a-zA-Z0-9_.-]{1,64}$")]
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema of the arguments (default: none taken). Compiled into the grammar of a forced call
    /// (`tool_choice: required` or this function) or of a strict tool, where unsupported keywords are refused.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
    /// `true`: a call's arguments always validate (a call whose arguments do not is answered as text).
    pub strict: Option<bool>,
}

/// `none`, `auto`, `required`, or `{"type": "function", "function": {"name": …}}`.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(untagged)]
pub enum ToolChoiceIn {
    /// `none`, `auto` or `required`.
    Mode(String),
    Named(NamedToolChoice),
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    #[schema(pattern = "^function$")]
    pub kind: String,
    pub function: ChoiceFunction,
}

#[derive(Deserialize, ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct ChoiceFunction {
    pub name: String,
}

/// The members of a top-level body that no field took (flattened bodies cannot deny unknown fields): each one
/// is refused by name.
pub type Unclaimed = serde_json::Map<String, serde_json::Value>;

fn refuse_unclaimed(rest: &Unclaimed) -> std::result::Result<(), ApiError> {
    match rest.keys().next() {
        Some(name) => Err(super::extract::not_supported(".", name)),
        None => Ok(()),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    pub model: String,
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessageIn>,
    /// Newer name of `max_tokens`; wins when both are given.
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u32>,
    pub response_format: Option<ResponseFormat>,
    /// Functions the model may call, rendered through its chat template (or Hearth's instructions where the
    /// template takes none).
    pub tools: Option<Vec<ToolIn>>,
    /// Default `auto` with tools. `required` or a named function forces one call, constrained to the
    /// function's parameter schema.
    pub tool_choice: Option<ToolChoiceIn>,
    /// Default true; `false`: at most one call per answer (the first).
    pub parallel_tool_calls: Option<bool>,
    /// Each generated token's log-probability (under the model's own distribution, before temperature,
    /// penalties and constraints) in `choices[].logprobs.content`.
    pub logprobs: Option<bool>,
    /// With `logprobs`: the most likely alternatives per token (0-20).
    #[schema(minimum = 0, maximum = 20)]
    pub top_logprobs: Option<i64>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unclaimed: Unclaimed,
}

#[derive(Deserialize, ToSchema)]
pub struct CompletionRequest {
    pub model: String,
    /// A string, or a list of strings (each prompt gets `n` choices, in order).
    pub prompt: PromptIn,
    /// Each generated token's log-probability, with this many most likely alternatives (0-20).
    #[schema(minimum = 0, maximum = 20)]
    pub logprobs: Option<i64>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unclaimed: Unclaimed,
}

#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PromptIn {
    One(String),
    Many(Vec<String>),
}

#[derive(Serialize, ToSchema, Clone, Copy)]
pub struct UsageOut {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

#[derive(Serialize, ToSchema, Clone, Copy)]
pub struct PromptTokensDetails {
    /// Prompt tokens not computed again: a shared prefix with the previous sequence of the same batch slot.
    pub cached_tokens: usize,
}

impl From<&Usage> for UsageOut {
    fn from(u: &Usage) -> UsageOut {
        UsageOut {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cached_tokens,
            },
        }
    }
}

/// vLLM's name for a generation stopped by the server (shutdown).
fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "abort",
    }
}

fn messages_in(msgs: &[ChatMessageIn]) -> std::result::Result<Vec<ChatMessage>, ApiError> {
    if msgs.is_empty() {
        return Err(ApiError::invalid(
            "'messages' must not be empty",
            Some("messages"),
        ));
    }
    // The ids of the calls made so far: a tool message answers one of them.
    let mut calls_made: std::collections::HashSet<&str> = std::collections::HashSet::new();
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "developer" => "system",
                r @ ("system" | "user" | "assistant" | "tool") => r,
                other => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role: unknown role '{other}'"),
                        Some(&format!("messages[{i}].role")),
                    ))
                }
            };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut s = String::new();
                    for p in parts {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => s.push_str(t),
                            (kind, _) => {
                                return Err(ApiError::invalid(
                                    format!("messages[{i}]: content part type '{kind}' is not supported (text only)"),
                                    Some(&format!("messages[{i}].content")),
                                ))
                            }
                        }
                    }
                    s
                }
            };
            let mut message = ChatMessage::new(role, &content);
            message.name = m.name.clone();
            let at = |field: &str| format!("messages[{i}].{field}");
            if let Some(calls) = &m.tool_calls {
                if role != "assistant" {
                    return Err(ApiError::invalid(
                        format!("{}: only an assistant message carries calls", at("tool_calls")),
                        Some(&at("tool_calls")),
                    ));
                }
                for (j, c) in calls.iter().enumerate() {
                    message.tool_calls.push(call_in(c, &at(&format!("tool_calls[{j}]")))?);
                    calls_made.insert(&c.id);
                }
            }
            match (role, &m.tool_call_id) {
                ("tool", Some(id)) if calls_made.contains(id.as_str()) => {
                    message.tool_call_id = Some(id.clone())
                }
                ("tool", Some(id)) => {
                    return Err(ApiError::invalid(
                        format!(
                            "{}: '{id}' answers no call of an earlier assistant message",
                            at("tool_call_id")
                        ),
                        Some(&at("tool_call_id")),
                    ))
                }
                ("tool", None) => {
                    return Err(ApiError::invalid(
                        format!("{}: a tool message names the call it answers", at("tool_call_id")),
                        Some(&at("tool_call_id")),
                    ))
                }
                (_, Some(_)) => {
                    return Err(ApiError::invalid(
                        format!("{}: only a tool message answers a call", at("tool_call_id")),
                        Some(&at("tool_call_id")),
                    ))
                }
                (_, None) => {}
            }
            Ok(message)
        })
        .collect()
}

/// A call in a conversation's history: its arguments text must be a JSON object.
fn call_in(c: &ToolCallIn, at: &str) -> std::result::Result<ToolCall, ApiError> {
    if c.kind != "function" {
        return Err(ApiError::invalid(
            format!("{at}.type: '{}' is not supported (function)", c.kind),
            Some(&format!("{at}.type")),
        ));
    }
    let arguments: serde_json::Value = serde_json::from_str(&c.function.arguments)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| {
            ApiError::invalid(
                format!("{at}.function.arguments must be a JSON object as text"),
                Some(&format!("{at}.function.arguments")),
            )
        })?;
    Ok(ToolCall::new(
        &c.id,
        FunctionCall {
            name: c.function.name.clone(),
            arguments,
        },
    ))
}

/// The tools a chat request offers, and its choice; None where it offers none or `tool_choice` is `none`.
fn tool_use(req: &ChatCompletionRequest) -> std::result::Result<Option<Arc<ToolUse>>, ApiError> {
    let tools = req.tools.as_deref().unwrap_or_default();
    let choice = match &req.tool_choice {
        None => ToolChoice::Auto,
        Some(ToolChoiceIn::Mode(m)) => match m.as_str() {
            "none" => return Ok(None),
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    format!(
                    "tool_choice '{other}' is not supported (none, auto, required or a function)"
                ),
                    Some("tool_choice"),
                ))
            }
        },
        Some(ToolChoiceIn::Named(n)) if n.kind == "function" => {
            ToolChoice::Function(n.function.name.clone())
        }
        Some(ToolChoiceIn::Named(n)) => {
            return Err(ApiError::invalid(
                format!("tool_choice.type '{}' is not supported (function)", n.kind),
                Some("tool_choice.type"),
            ))
        }
    };
    if tools.is_empty() {
        return match req.tool_choice {
            Some(_) => Err(ApiError::invalid(
                "'tool_choice' needs 'tools'",
                Some("tool_choice"),
            )),
            None => Ok(None),
        };
    }
    let list = tools_in(tools)?;
    let parallel = req.parallel_tool_calls.unwrap_or(true);
    ToolUse::new(list, choice, parallel)
        .map(|u| Some(Arc::new(u)))
        .map_err(super::structured::tool_error)
}

/// The functions of a `tools` list (both APIs send the same shape); one without `parameters` takes none.
pub fn tools_in(tools: &[ToolIn]) -> std::result::Result<Vec<Tool>, ApiError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.kind != "function" {
                return Err(ApiError::invalid(
                    format!("tools[{i}].type '{}' is not supported (function)", t.kind),
                    Some(&format!("tools[{i}].type")),
                ));
            }
            Ok(Tool {
                name: t.function.name.clone(),
                description: t.function.description.clone(),
                parameters: t.function.parameters.clone().unwrap_or_else(
                    || json!({"type": "object", "properties": {}, "additionalProperties": false}),
                ),
                strict: t.function.strict.unwrap_or(false),
            })
        })
        .collect()
}

/// The output format `response_format` asks for.
fn check_format(f: &Option<ResponseFormat>) -> std::result::Result<OutputFormat, ApiError> {
    let Some(f) = f else {
        return Ok(OutputFormat::TEXT);
    };
    if f.kind != "json_schema" && f.json_schema.is_some() {
        return Err(ApiError::invalid(
            "'response_format.json_schema' goes with type 'json_schema'",
            Some("response_format.json_schema"),
        ));
    }
    match f.kind.as_str() {
        "text" => Ok(OutputFormat::TEXT),
        "json_object" => Ok(OutputFormat::json_object()),
        "json_schema" => {
            let js = f.json_schema.as_ref().ok_or_else(|| {
                ApiError::invalid(
                    "type 'json_schema' needs 'response_format.json_schema'",
                    Some("response_format.json_schema"),
                )
            })?;
            if js.name.is_empty()
                || js.name.len() > 64
                || !js.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ApiError::invalid(
                    "'response_format.json_schema.name' must be 1-64 letters, digits, '_' or '-'",
                    Some("response_format.json_schema.name"),
                ));
            }
            match &js.schema {
                Some(s) => OutputFormat::schema(s, "response_format.json_schema.schema"),
                // OpenAI's own default: a schema-less format is any JSON object.
                None => Ok(OutputFormat::json_object()),
            }
        }
        other => Err(ApiError::invalid(
            format!("response_format type '{other}' is not supported (use text, json_object or json_schema)"),
            Some("response_format.type"),
        )),
    }
}

fn completion_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        crate::auth::secrets::random_token(24).unwrap_or_else(|_| unix_now().to_string())
    )
}

fn sse(data: &serde_json::Value) -> web::Bytes {
    web::Bytes::from(format!("data: {data}\n\n"))
}

fn sse_response(
    mut ok: actix_web::HttpResponseBuilder,
    body: impl futures_util::Stream<Item = std::result::Result<web::Bytes, actix_web::Error>> + 'static,
) -> HttpResponse {
    ok.content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body)
}

const FINGERPRINT: &str = concat!("hearth-", env!("CARGO_PKG_VERSION"));

/// A call's id, as OpenAI's look (`call_` and 24 random characters).
fn call_id() -> String {
    completion_id("call").replacen('-', "_", 1)
}

/// A call as OpenAI's messages carry it (arguments as JSON text).
fn call_out(id: &str, c: &FunctionCall) -> serde_json::Value {
    json!({"id": id, "type": "function",
           "function": {"name": c.name, "arguments": c.arguments.to_string()}})
}

/// The usage of several choices together.
fn usage_of(cs: &[Completion]) -> UsageOut {
    let mut u = UsageOut {
        prompt_tokens: 0,
        completion_tokens: 0,
        total_tokens: 0,
        prompt_tokens_details: PromptTokensDetails { cached_tokens: 0 },
    };
    for c in cs {
        u.add(&UsageOut::from(&c.usage));
    }
    u
}

impl UsageOut {
    fn add(&mut self, o: &UsageOut) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.total_tokens += o.total_tokens;
        self.prompt_tokens_details.cached_tokens += o.prompt_tokens_details.cached_tokens;
    }
}

/// A whole `chat.completion` object, a choice per completion; an answer with calls has `tool_calls` (content
/// null when it said nothing else) and ends with `tool_calls`.
fn chat_completion(id: &str, created: i64, model: &str, cs: &[Completion]) -> serde_json::Value {
    let choices: Vec<_> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut message = json!({"role": "assistant", "content": c.text});
            // A thinking model's thoughts, as DeepSeek's and vLLM's servers return them.
            if !c.thoughts.is_empty() {
                message["reasoning_content"] = json!(c.thoughts);
            }
            let mut reason = finish_reason(c.reason);
            if !c.calls.is_empty() {
                let calls: Vec<_> = c.calls.iter().map(|f| call_out(&call_id(), f)).collect();
                message["tool_calls"] = json!(calls);
                if c.text.trim().is_empty() {
                    message["content"] = serde_json::Value::Null;
                }
                reason = "tool_calls";
            }
            let logprobs = c
                .logprobs
                .as_deref()
                .map_or(json!(null), super::logprobs::chat);
            json!({"index": i, "message": message, "logprobs": logprobs, "finish_reason": reason})
        })
        .collect();
    json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": usage_of(cs),
    })
}

/// A whole `text_completion` object, a choice per completion.
fn text_completion(id: &str, created: i64, model: &str, cs: &[Completion]) -> serde_json::Value {
    let choices: Vec<_> = cs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let logprobs = c
                .logprobs
                .as_deref()
                .map_or(json!(null), |es| super::logprobs::legacy(es, 0).0);
            json!({"index": i, "text": c.text, "logprobs": logprobs, "finish_reason": finish_reason(c.reason)})
        })
        .collect();
    json!({
        "id": id, "object": "text_completion", "created": created, "model": model,
        "choices": choices,
        "usage": usage_of(cs),
    })
}

/// `n` copies of a request, for `n` choices; a seeded request's copies take seeds `seed`, `seed + 1`, … so
/// that they differ and still repeat.
fn copies(r: Request, n: usize) -> Vec<Request> {
    (0..n)
        .map(|j| {
            let mut c = r.clone();
            c.sampling.seed = r.sampling.seed.map(|s| s.wrapping_add(j as u64));
            c
        })
        .collect()
}

/// Starts every job of a request in order; on a refusal the ones started are dropped (cancelled, charged
/// nothing generated) and the refusal is the answer.
async fn start_all(
    state: &AppState,
    who: &crate::auth::Principal,
    reqs: Vec<Request>,
) -> std::result::Result<Vec<Started>, ApiError> {
    let mut jobs = Vec::with_capacity(reqs.len());
    for r in reqs {
        jobs.push(state.inference.start(who, r).await?);
    }
    Ok(jobs)
}

/// The pieces of several jobs as they come, each with its choice index.
fn merged(jobs: Vec<Started>) -> impl futures_util::Stream<Item = (usize, Piece)> {
    use futures_util::StreamExt;
    futures_util::stream::select_all(
        jobs.into_iter()
            .enumerate()
            .map(|(i, j)| j.pieces().map(move |p| (i, p)).boxed_local()),
    )
}

/// The request of a chat completion body.
pub fn chat_request(
    req: &ChatCompletionRequest,
    endpoint: &'static str,
) -> std::result::Result<Request, ApiError> {
    refuse_unclaimed(&req.unclaimed)?;
    let tools = tool_use(req)?;
    let format = check_format(&req.response_format)?;
    if tools.is_some() && (format.json || format.schema.is_some()) {
        return Err(ApiError::invalid(
            "'response_format' cannot constrain an answer that may be a tool call (drop it, or use tool_choice: none)",
            Some("response_format"),
        ));
    }
    if req.parallel_tool_calls.is_some() && tools.is_none() {
        return Err(ApiError::invalid(
            "'parallel_tool_calls' needs 'tools'",
            Some("parallel_tool_calls"),
        ));
    }
    let max_tokens = req.max_completion_tokens.or(req.sampling.max_tokens);
    let prompt = Prompt::Chat(messages_in(&req.messages)?);
    Ok(Request {
        tools,
        logprobs: super::logprobs::requested(req.logprobs, req.top_logprobs)?,
        ..req
            .sampling
            .request(&req.model, endpoint, prompt, max_tokens, format)?
    })
}

/// The request of a (legacy) completion body with one prompt; 16 tokens unless it says otherwise, as OpenAI's
/// default.
pub fn completion_request(
    req: &CompletionRequest,
    endpoint: &'static str,
) -> std::result::Result<Request, ApiError> {
    let mut all = completion_requests(req, endpoint, 1)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        _ => Err(ApiError::invalid(
            "one prompt here (a list of prompts is taken by POST /v1/completions)",
            Some("prompt"),
        )),
    }
}

/// The requests of a completion body: one per prompt (a string, or a list of them), `n` times each, in
/// OpenAI's choice order (prompt by prompt).
fn completion_requests(
    req: &CompletionRequest,
    endpoint: &'static str,
    n: usize,
) -> std::result::Result<Vec<Request>, ApiError> {
    refuse_unclaimed(&req.unclaimed)?;
    let prompts = match &req.prompt {
        PromptIn::One(s) => vec![s.clone()],
        PromptIn::Many(v) if !v.is_empty() => v.clone(),
        PromptIn::Many(_) => {
            return Err(ApiError::invalid(
                "'prompt' must not be empty",
                Some("prompt"),
            ))
        }
    };
    if prompts.len() * n > MAX_CHOICES {
        return Err(ApiError::invalid(
            format!(
                "{} prompts × n = {n} is more than {MAX_CHOICES} choices",
                prompts.len()
            ),
            Some("prompt"),
        ));
    }
    let max_tokens = Some(req.sampling.max_tokens.unwrap_or(16));
    let logprobs = super::logprobs::requested_count(req.logprobs)?;
    let mut out = Vec::new();
    for p in prompts {
        let r = req.sampling.request(
            &req.model,
            endpoint,
            Prompt::Text(p),
            max_tokens,
            OutputFormat::TEXT,
        )?;
        out.extend(copies(Request { logprobs, ..r }, n));
    }
    Ok(out)
}

/// A derived model's default options under a body's own sampling fields; returns them for `with_model_window`.
fn take_model_defaults(
    inference: &Inference,
    model: &str,
    sampling: &mut SamplingFields,
) -> std::result::Result<Option<Options>, ApiError> {
    let base = super::options::model_defaults(inference, model)?;
    if let Some(o) = &base {
        *sampling = std::mem::take(sampling).under(o);
    }
    Ok(base)
}

/// A derived model's window (`num_ctx`) and penalty range (`repeat_last_n`), which OpenAI's bodies have no
/// field for.
fn with_model_window(r: Request, o: Option<&Options>) -> Request {
    let Some(o) = o else {
        return r;
    };
    let mut r = r;
    r.context = r.context.or(o.num_ctx.map(|n| n.max(1) as usize));
    if let Some(n) = o.repeat_last_n {
        r.sampling.repeat_last_n = n.max(0) as usize;
    }
    r
}

/// A batch line asks for one choice: its output line holds one answer.
fn one_choice(n: Option<u32>) -> std::result::Result<(), ApiError> {
    match n {
        Some(n) if n != 1 => Err(ApiError::invalid(
            "a batch line asks for one choice ('n' 1)",
            Some("n"),
        )),
        _ => Ok(()),
    }
}

/// Batch-file lines through exactly the translation of `POST /v1/chat/completions` and `/v1/completions`, at
/// batch priority and never streamed: each answer is the status code and body the HTTP API would have sent.
pub fn batch_lines(auth: Arc<Authenticator>, inference: Inference) -> RunLine {
    Arc::new(move |line: Line| {
        let (auth, inference) = (auth.clone(), inference.clone());
        Box::pin(async move {
            match batch_line(&auth, &inference, &line).await {
                Ok(body) => Answer { status: 200, body },
                Err(e) => Answer {
                    status: e.status().as_u16(),
                    body: serde_json::to_value(e.openai_body()).unwrap_or_default(),
                },
            }
        })
    })
}

async fn batch_line(
    auth: &Authenticator,
    inference: &Inference,
    line: &Line,
) -> std::result::Result<serde_json::Value, ApiError> {
    let who = auth
        .principal_of(&line.owner_id, line.key_id.as_deref())
        .await?;
    let created = unix_now();
    let body = line.body.as_bytes();
    let (request, chat) = match line.endpoint.as_str() {
        "/v1/chat/completions" => {
            let mut b: ChatCompletionRequest = super::extract::parse_json(body)?;
            one_choice(b.sampling.n)?;
            let base = take_model_defaults(inference, &b.model, &mut b.sampling)?;
            (
                with_model_window(chat_request(&b, "batch")?, base.as_ref()),
                true,
            )
        }
        "/v1/completions" => {
            let mut b: CompletionRequest = super::extract::parse_json(body)?;
            one_choice(b.sampling.n)?;
            let base = take_model_defaults(inference, &b.model, &mut b.sampling)?;
            (
                with_model_window(completion_request(&b, "batch")?, base.as_ref()),
                false,
            )
        }
        other => {
            return Err(ApiError::invalid(
                format!("batch endpoint '{other}' is not supported (use /v1/chat/completions or /v1/completions)"),
                Some("url"),
            ))
        }
    };
    let request = Request {
        priority: Priority::Batch,
        ..request
    };
    let mut job = inference.start(&who, request).await?;
    let c = job.collect().await;
    Ok(if chat {
        chat_completion(&completion_id("chatcmpl"), created, &job.model, &[c])
    } else {
        text_completion(&completion_id("cmpl"), created, &job.model, &[c])
    })
}

/// Chat completion (OpenAI's shape; `stream: true` gives `chat.completion.chunk` events then `[DONE]`).
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", security(("api_key" = [])),
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "`chat.completion` JSON, or an SSE stream of `chat.completion.chunk`"),
        (status = 400, body = OpenAiErrorBody, description = "bad request, or context_length_exceeded"),
        (status = 401, body = OpenAiErrorBody), (status = 403, body = OpenAiErrorBody),
        (status = 404, body = OpenAiErrorBody, description = "model_not_found"),
        (status = 413, body = OpenAiErrorBody), (status = 503, body = OpenAiErrorBody, description = "queue full")))]
pub async fn chat_completions(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    body: ApiJson<ChatCompletionRequest, OpenAi>,
) -> Result<HttpResponse> {
    let mut req = body.0;
    let base = take_model_defaults(&state.inference, &req.model, &mut req.sampling)?;
    let n = req.sampling.n.unwrap_or(1) as usize;
    let one = with_model_window(chat_request(&req, "chat")?, base.as_ref());
    let mut jobs = start_all(&state, &who.0, copies(one, n)).await?;
    let mut ok = started_response(&jobs[0]);
    let (id, created, model) = (completion_id("chatcmpl"), unix_now(), jobs[0].model.clone());
    if !req.sampling.stream {
        let cs = futures_util::future::join_all(jobs.iter_mut().map(Started::collect)).await;
        return Ok(ok.json(chat_completion(&id, created, &model, &cs)));
    }
    let include_usage = req.sampling.stream_options.is_some_and(|o| o.include_usage);
    // A chunk carries the log-probabilities of the tokens whose text it sends (and of the last ones at the end).
    let chunk = move |index: usize,
                      delta: serde_json::Value,
                      reason: Option<&str>,
                      logprobs: Vec<TokenLogprob>| {
        let logprobs = match logprobs {
            es if es.is_empty() => serde_json::Value::Null,
            es => super::logprobs::chat(&es),
        };
        let mut v = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}],
        });
        if include_usage {
            v["usage"] = serde_json::Value::Null;
        }
        v
    };
    // Per choice: its calls so far (each call's index in `delta.tool_calls`), the log-probabilities waiting for
    // their chunk; the choices still running.
    let mut calls = vec![0usize; n];
    let mut pending: Vec<Vec<TokenLogprob>> = vec![Vec::new(); n];
    let mut running = n;
    let mut usage = usage_of(&[]);
    let body = merged(jobs).map(move |(i, piece)| {
        let lp = std::mem::take(&mut pending[i]);
        match piece {
            Piece::Start => sse(&chunk(
                i,
                json!({"role": "assistant", "content": ""}),
                None,
                lp,
            )),
            Piece::Logprobs(es) => {
                pending[i] = lp;
                pending[i].extend(es);
                web::Bytes::new()
            }
            Piece::Text(t) => sse(&chunk(i, json!({"content": t}), None, lp)),
            Piece::Thought(t) => sse(&chunk(i, json!({"reasoning_content": t}), None, lp)),
            // As OpenAI streams a call: its id and name with empty arguments, then the arguments.
            Piece::Call(c) => {
                let index = calls[i];
                calls[i] += 1;
                let head = json!({"tool_calls": [{"index": index, "id": call_id(), "type": "function",
                                                  "function": {"name": c.name, "arguments": ""}}]});
                let args = json!({"tool_calls": [{"index": index,
                                                  "function": {"arguments": c.arguments.to_string()}}]});
                web::Bytes::from(format!(
                    "data: {}\n\ndata: {}\n\n",
                    chunk(i, head, None, lp),
                    chunk(i, args, None, Vec::new())
                ))
            }
            Piece::End(reason, u) => {
                let reason = if calls[i] > 0 {
                    "tool_calls"
                } else {
                    finish_reason(reason)
                };
                usage.add(&UsageOut::from(&u));
                running -= 1;
                let mut out = format!("data: {}\n\n", chunk(i, json!({}), Some(reason), lp));
                if running == 0 {
                    if include_usage {
                        let mut last = chunk(0, json!({}), None, Vec::new());
                        last["choices"] = json!([]);
                        last["usage"] = json!(usage);
                        out.push_str(&format!("data: {last}\n\n"));
                    }
                    out.push_str("data: [DONE]\n\n");
                }
                web::Bytes::from(out)
            }
        }
    });
    Ok(sse_response(ok, sse_body(body)))
}

/// Rendered chunks as a response body (an empty chunk would end a chunked HTTP body early).
fn sse_body(
    s: impl futures_util::Stream<Item = web::Bytes> + 'static,
) -> impl futures_util::Stream<Item = std::result::Result<web::Bytes, actix_web::Error>> + 'static {
    use futures_util::StreamExt;
    s.filter(|b| std::future::ready(!b.is_empty())).map(Ok)
}

/// Text completion (legacy endpoint; no chat template): one prompt or a list, `n` choices each.
#[utoipa::path(post, path = "/v1/completions", tag = "openai", security(("api_key" = [])),
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "`text_completion` JSON, or an SSE stream of them then `[DONE]`"),
        (status = 400, body = OpenAiErrorBody), (status = 401, body = OpenAiErrorBody),
        (status = 404, body = OpenAiErrorBody), (status = 503, body = OpenAiErrorBody)))]
pub async fn completions(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    body: ApiJson<CompletionRequest, OpenAi>,
) -> Result<HttpResponse> {
    let mut req = body.0;
    let base = take_model_defaults(&state.inference, &req.model, &mut req.sampling)?;
    let n = req.sampling.n.unwrap_or(1) as usize;
    let reqs = completion_requests(&req, "completions", n)?
        .into_iter()
        .map(|r| with_model_window(r, base.as_ref()))
        .collect();
    let mut jobs = start_all(&state, &who.0, reqs).await?;
    let choices = jobs.len();
    let mut ok = started_response(&jobs[0]);
    let (id, created, model) = (completion_id("cmpl"), unix_now(), jobs[0].model.clone());
    if !req.sampling.stream {
        let cs = futures_util::future::join_all(jobs.iter_mut().map(Started::collect)).await;
        return Ok(ok.json(text_completion(&id, created, &model, &cs)));
    }
    let include_usage = req.sampling.stream_options.is_some_and(|o| o.include_usage);
    // Per choice: the log-probabilities waiting for their chunk, and the characters sent so far (`text_offset`).
    let mut pending: Vec<Vec<TokenLogprob>> = vec![Vec::new(); choices];
    let mut offsets = vec![0usize; choices];
    let mut chunk = move |index: usize, text: &str, reason: Option<&str>, lp: Vec<TokenLogprob>| {
        let logprobs = if lp.is_empty() {
            serde_json::Value::Null
        } else {
            let (v, end) = super::logprobs::legacy(&lp, offsets[index]);
            offsets[index] = end;
            v
        };
        json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason}],
        })
    };
    let mut running = choices;
    let mut usage = usage_of(&[]);
    let body = merged(jobs).map(move |(i, piece)| {
        let lp = std::mem::take(&mut pending[i]);
        match piece {
            // A completion offers no tools and renders no template: no calls or thoughts come.
            Piece::Start | Piece::Call(_) | Piece::Thought(_) => {
                pending[i] = lp;
                web::Bytes::new()
            }
            Piece::Logprobs(es) => {
                pending[i] = lp;
                pending[i].extend(es);
                web::Bytes::new()
            }
            Piece::Text(t) => sse(&chunk(i, &t, None, lp)),
            Piece::End(reason, u) => {
                usage.add(&UsageOut::from(&u));
                running -= 1;
                let mut out = format!(
                    "data: {}\n\n",
                    chunk(i, "", Some(finish_reason(reason)), lp)
                );
                if running == 0 {
                    if include_usage {
                        let mut last = chunk(0, "", None, Vec::new());
                        last["choices"] = json!([]);
                        last["usage"] = json!(usage);
                        out.push_str(&format!("data: {last}\n\n"));
                    }
                    out.push_str("data: [DONE]\n\n");
                }
                web::Bytes::from(out)
            }
        }
    });
    Ok(sse_response(ok, sse_body(body)))
}

impl Body for ChatCompletionRequest {
    fn refine(json: &serde_json::Value) -> Option<ApiError> {
        field_error::<SamplingFields>(json)
    }
    fn unclaimed(&self) -> Option<&Unclaimed> {
        Some(&self.unclaimed)
    }
}

impl Body for CompletionRequest {
    fn refine(json: &serde_json::Value) -> Option<ApiError> {
        field_error::<SamplingFields>(json)
    }
    fn unclaimed(&self) -> Option<&Unclaimed> {
        Some(&self.unclaimed)
    }
}

/// The caller's own usage today and this month (local time zone), their limits and what remains.
#[utoipa::path(get, path = "/v1/me/usage", tag = "openai", security(("api_key" = [])),
    responses((status = 200, description = "`{user, today, month, limits, remaining, resets, energy: {today, month}}` (energy: `[{source, joules, tokens, joules_per_token}]`)"),
        (status = 401, body = OpenAiErrorBody)))]
pub async fn me_usage(state: web::Data<AppState>, who: Caller<OpenAi>) -> Result<HttpResponse> {
    let p = &who.0;
    Ok(HttpResponse::Ok().json(state.quota.report(p, p.key_id.as_deref()).await?))
}
