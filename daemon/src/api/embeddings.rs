//! Embeddings in both shapes: OpenAI's `POST /v1/embeddings` (floats or base64), Ollama's `POST /api/embed` and
//! its older `POST /api/embeddings`. Each translates its body into an `inference::EmbedRequest` and the vectors
//! back; the checks, quota and ledger are `Inference::embed`'s.

use super::error::{ApiError, Ollama, OllamaErrorBody, OpenAi, OpenAiErrorBody, Rendered};
use super::extract::{ApiJson, Body, Caller};
use super::AppState;
use crate::inference::{EmbedInput, EmbedRequest, Embedded};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

/// One text or several, or token ids of the model's own vocabulary (one list or several), taken as given.
#[derive(Deserialize, ToSchema, Clone)]
#[serde(untagged)]
pub enum Input {
    One(String),
    Many(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

impl Input {
    fn items(self) -> Vec<EmbedInput> {
        match self {
            Input::One(s) => vec![EmbedInput::Text(s)],
            Input::Many(v) => v.into_iter().map(EmbedInput::Text).collect(),
            Input::Ids(ids) => vec![EmbedInput::Ids(ids)],
            Input::IdLists(v) => v.into_iter().map(EmbedInput::Ids).collect(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingRequest {
    /// An embedding model (a sentence-transformers folder imported with `hearth model import`).
    pub model: String,
    /// A text, a list of texts, or token ids of the model's vocabulary (a list, or a list of lists; taken as
    /// given, special tokens included).
    pub input: Input,
    /// `float` (default) or `base64` (little-endian f32, what the openai SDK asks for).
    #[schema(pattern = "^(float|base64)$")]
    pub encoding_format: Option<String>,
    /// The model's own dimension only (its vectors are not trained to be cut).
    #[schema(minimum = 1)]
    pub dimensions: Option<u32>,
    /// The client's end-user id, stored on the ledger row.
    #[schema(max_length = 256)]
    pub user: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedBody {
    pub model: String,
    pub input: Input,
    /// Default true: an input over the model's length is cut; false: it is a 400.
    pub truncate: Option<bool>,
    /// The model's own dimension only.
    #[schema(minimum = 1)]
    pub dimensions: Option<u32>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LegacyEmbedBody {
    pub model: String,
    pub prompt: String,
}

fn check_dimensions(asked: Option<u32>, e: &Embedded) -> Result<(), ApiError> {
    let have = e.vectors.first().map_or(0, Vec::len);
    match asked {
        Some(d) if d as usize != have => Err(ApiError::invalid(
            format!("'dimensions' must be {have} for model '{}' (its vectors are not trained to be cut)", e.model),
            Some("dimensions"),
        )),
        _ => Ok(()),
    }
}

fn headers(e: &Embedded) -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::Ok();
    for (k, v) in &e.rate {
        b.insert_header((*k, v.as_str()));
    }
    b.insert_header(("x-request-id", e.request_id.as_str()));
    b
}

/// Standard base64 of the vector's little-endian f32 bytes.
fn base64_f32(v: &[f32]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(A[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Embeddings (OpenAI's shape).
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai", security(("api_key" = [])),
    request_body = EmbeddingRequest,
    responses((status = 200, description = "`{object: list, data: [{object: embedding, index, embedding}], model, usage}`"),
        (status = 400, body = OpenAiErrorBody, description = "bad input, an input over the model's length, not an embedding model"),
        (status = 401, body = OpenAiErrorBody), (status = 404, body = OpenAiErrorBody)))]
pub async fn openai(
    state: web::Data<AppState>,
    who: Caller<OpenAi>,
    body: ApiJson<EmbeddingRequest, OpenAi>,
) -> Result<HttpResponse, Rendered<OpenAi>> {
    let req = body.0;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("encoding_format '{other}' is not supported (float or base64)"),
                Some("encoding_format"),
            )
            .into())
        }
    };
    if req.user.as_ref().is_some_and(|u| u.len() > 256) {
        return Err(
            ApiError::invalid("'user' must be at most 256 characters", Some("user")).into(),
        );
    }
    let e = state
        .inference
        .embed(
            &who.0,
            EmbedRequest {
                model: req.model,
                endpoint: "embeddings",
                client_user: req.user,
                inputs: req.input.items(),
                truncate: false,
            },
        )
        .await?;
    check_dimensions(req.dimensions, &e)?;
    let data: Vec<_> = e
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                json!(base64_f32(v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(headers(&e).json(json!({
        "object": "list", "data": data, "model": e.model,
        "usage": {"prompt_tokens": e.prompt_tokens, "total_tokens": e.prompt_tokens},
    })))
}

/// Embeddings (Ollama's `/api/embed`).
#[utoipa::path(post, path = "/api/embed", tag = "ollama", security(("api_key" = [])), request_body = EmbedBody,
    responses((status = 200, description = "`{model, embeddings: [[...]], total_duration, load_duration, prompt_eval_count}`"),
        (status = 400, body = OllamaErrorBody), (status = 401, body = OllamaErrorBody),
        (status = 404, body = OllamaErrorBody)))]
pub async fn ollama_embed(
    state: web::Data<AppState>,
    who: Caller<Ollama>,
    body: ApiJson<EmbedBody, Ollama>,
) -> Result<HttpResponse, Rendered<Ollama>> {
    let req = body.0;
    let e = state
        .inference
        .embed(
            &who.0,
            EmbedRequest {
                model: req.model,
                endpoint: "ollama_embed",
                client_user: None,
                inputs: req.input.items(),
                truncate: req.truncate.unwrap_or(true),
            },
        )
        .await?;
    check_dimensions(req.dimensions, &e)?;
    Ok(headers(&e).json(json!({
        "model": e.model, "embeddings": e.vectors,
        "total_duration": e.total_duration.as_nanos() as u64,
        "load_duration": e.load_duration.as_nanos() as u64,
        "prompt_eval_count": e.prompt_tokens,
    })))
}

/// One embedding (Ollama's older `/api/embeddings`; long input is cut, as there).
#[utoipa::path(post, path = "/api/embeddings", tag = "ollama", security(("api_key" = [])),
    request_body = LegacyEmbedBody,
    responses((status = 200, description = "`{embedding: [...]}`"),
        (status = 400, body = OllamaErrorBody), (status = 401, body = OllamaErrorBody),
        (status = 404, body = OllamaErrorBody)))]
pub async fn ollama_embeddings(
    state: web::Data<AppState>,
    who: Caller<Ollama>,
    body: ApiJson<LegacyEmbedBody, Ollama>,
) -> Result<HttpResponse, Rendered<Ollama>> {
    let req = body.0;
    let e = state
        .inference
        .embed(
            &who.0,
            EmbedRequest {
                model: req.model,
                endpoint: "ollama_embed",
                client_user: None,
                inputs: vec![EmbedInput::Text(req.prompt)],
                truncate: true,
            },
        )
        .await?;
    let v = e.vectors.first().cloned().unwrap_or_default();
    Ok(headers(&e).json(json!({"embedding": v})))
}

impl Body for EmbeddingRequest {}
impl Body for EmbedBody {}
impl Body for LegacyEmbedBody {}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_the_little_endian_bytes() {
        // 1.0f32 = 00 00 80 3f; 2.0 = 00 00 00 40.
        assert_eq!(super::base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(super::base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(super::base64_f32(&[]), "");
    }
}
