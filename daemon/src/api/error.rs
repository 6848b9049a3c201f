//! Every failure of the HTTP API, mapped to a status and rendered in the caller's API's own shape — OpenAI's
//! `{"error":{"message","type","param","code"}}` for `/v1` and `/admin`, Ollama's `{"error":"…"}` for `/api`.
//! This is the one place where errors become responses.

use crate::auth::accounts::AccountError;
use crate::auth::sessions::LoginError;
use crate::auth::AuthError;
use crate::batch_api::BatchError;
use crate::inference::InferenceError;
use crate::models::ModelStoreError;
use crate::quota::QuotaError;
use crate::sched::SchedError;
use crate::store::StoreError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use hearth_engine::EngineError;
use std::marker::PhantomData;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("{0}")]
    ContextLengthExceeded(String),
    #[error("{0}")]
    Unauthorized(String),
    /// 401 from the dashboard's sign-in: `invalid_credentials`, not an API-key problem.
    #[error("{0}")]
    BadCredentials(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("model '{0}' not found")]
    ModelNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 404: no route has this path.
    #[error("{0}")]
    NoRoute(String),
    /// 405: the path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Unavailable(String),
    /// 429: `rate_limit_exceeded` (per-minute, concurrency) or `insufficient_quota` (day, month).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        code: &'static str,
        retry_after: u64,
        headers: Vec<(&'static str, String)>,
    },
    /// 502: a server Hearth fetched from failed (a model download).
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } | ApiError::ContextLengthExceeded(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) | ApiError::BadCredentials(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) | ApiError::NoRoute(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Overloaded(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. }
            | ApiError::ContextLengthExceeded(_)
            | ApiError::ModelNotFound(_)
            | ApiError::NotFound(_)
            | ApiError::Conflict(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::NoRoute(_)
            | ApiError::PayloadTooLarge(_) => "invalid_request_error",
            ApiError::Unauthorized(_) | ApiError::BadCredentials(_) => "authentication_error",
            ApiError::Forbidden(_) => "permission_error",
            ApiError::Overloaded(_) | ApiError::Unavailable(_) => "server_overloaded",
            ApiError::TooManyRequests { code, .. } => {
                if *code == "insufficient_quota" {
                    "insufficient_quota"
                } else {
                    "requests"
                }
            }
            ApiError::Internal(_) | ApiError::Upstream(_) => "server_error",
        }
    }

    /// OpenAI's `code`.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::ContextLengthExceeded(_) => Some("context_length_exceeded"),
            ApiError::ModelNotFound(_) => Some("model_not_found"),
            ApiError::Unauthorized(_) => Some("invalid_api_key"),
            ApiError::BadCredentials(_) => Some("invalid_credentials"),
            ApiError::PayloadTooLarge(_) => Some("payload_too_large"),
            ApiError::MethodNotAllowed(_) => Some("method_not_allowed"),
            ApiError::NoRoute(_) => Some("not_found"),
            ApiError::Forbidden(_) => Some("forbidden"),
            ApiError::Overloaded(_) => Some("queue_full"),
            ApiError::Upstream(_) => Some("upstream_error"),
            ApiError::TooManyRequests { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidRequest { param, .. } => param.as_deref(),
            ApiError::ContextLengthExceeded(_) => Some("messages"),
            ApiError::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    fn builder(&self) -> actix_web::HttpResponseBuilder {
        let mut b = HttpResponse::build(self.status());
        if matches!(self, ApiError::Overloaded(_) | ApiError::Unavailable(_)) {
            b.insert_header((header::RETRY_AFTER, "1"));
        }
        if let ApiError::TooManyRequests {
            retry_after,
            headers,
            ..
        } = self
        {
            b.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            for (k, v) in headers {
                b.insert_header((*k, v.as_str()));
            }
        }
        if matches!(self, ApiError::Unauthorized(_)) {
            b.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let ApiError::Internal(m) = self {
            tracing::error!(error = %m, "internal error");
        }
        b
    }
}

/// The error body of `/v1` and `/admin`, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OpenAiErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// The error body of `/api` (Ollama).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OllamaErrorBody {
    pub error: String,
}

/// How an API family renders errors.
pub trait Flavor: 'static {
    fn render(e: &ApiError) -> HttpResponse;
}

#[derive(Debug)]
pub struct OpenAi;
#[derive(Debug)]
pub struct Ollama;

impl ApiError {
    /// OpenAI's error body (also written into batch error files).
    pub fn openai_body(&self) -> OpenAiErrorBody {
        OpenAiErrorBody {
            error: OpenAiErrorDetail {
                message: self.to_string(),
                kind: self.kind().to_owned(),
                param: self.param().map(str::to_owned),
                code: self.code().map(str::to_owned),
            },
        }
    }
}

impl Flavor for OpenAi {
    fn render(e: &ApiError) -> HttpResponse {
        e.builder().json(e.openai_body())
    }
}

impl Flavor for Ollama {
    fn render(e: &ApiError) -> HttpResponse {
        e.builder().json(OllamaErrorBody {
            error: e.to_string(),
        })
    }
}

/// An `ApiError` bound to the API family that renders it.
pub struct Rendered<F>(pub ApiError, PhantomData<F>);

impl<F> std::fmt::Debug for Rendered<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<F> std::fmt::Display for Rendered<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<F: Flavor> ResponseError for Rendered<F> {
    fn status_code(&self) -> StatusCode {
        self.0.status()
    }
    fn error_response(&self) -> HttpResponse {
        F::render(&self.0)
    }
}

macro_rules! into_rendered {
    ($($t:ty),*) => {$(
        impl<F> From<$t> for Rendered<F> {
            fn from(e: $t) -> Self {
                Rendered(ApiError::from(e), PhantomData)
            }
        }
    )*};
}
into_rendered!(
    AuthError,
    SchedError,
    StoreError,
    AccountError,
    EngineError,
    QuotaError,
    LoginError,
    ModelStoreError,
    InferenceError,
    BatchError
);

impl<F> From<ApiError> for Rendered<F> {
    fn from(e: ApiError) -> Self {
        Rendered(e, PhantomData)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Store(s) => s.into(),
            AuthError::Internal(m) => ApiError::Internal(m),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> ApiError {
        match e {
            LoginError::BadCredentials => ApiError::BadCredentials(e.to_string()),
            LoginError::Limited(wait) => ApiError::TooManyRequests {
                message: e.to_string(),
                code: "rate_limit_exceeded",
                retry_after: wait.as_secs().max(1),
                headers: Vec::new(),
            },
            LoginError::Store(s) => s.into(),
            LoginError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<ModelStoreError> for ApiError {
    fn from(e: ModelStoreError) -> ApiError {
        match e {
            ModelStoreError::NotFound(m) => ApiError::ModelNotFound(m),
            ModelStoreError::Exists(_) => ApiError::Conflict(e.to_string()),
            // A file that is missing, unreadable, not GGUF or not runnable: the admin's input to fix.
            ModelStoreError::BadName(_)
            | ModelStoreError::Engine(_)
            | ModelStoreError::Io { .. } => ApiError::invalid(e.to_string(), Some("path")),
            ModelStoreError::Manifest { .. } => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(m) => ApiError::Conflict(format!("{m} already exists")),
            StoreError::NotFound(m) => ApiError::NotFound(format!("{m} not found")),
            e if e.is_unavailable() => {
                tracing::warn!(error = %e, "the database cannot be reached");
                ApiError::Unavailable(format!("the database cannot be reached right now: {e}"))
            }
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> ApiError {
        match e {
            AccountError::Store(s) => s.into(),
            AccountError::NoSuchUser(_) | AccountError::NoSuchKey(_) => {
                ApiError::NotFound(e.to_string())
            }
            AccountError::Io { .. } | AccountError::Secret(_) => ApiError::Internal(e.to_string()),
            e => ApiError::invalid(e.to_string(), None),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::ContextOverflow { .. } => ApiError::ContextLengthExceeded(e.to_string()),
            EngineError::InvalidRequest(m) => ApiError::invalid(m, None),
            // A chat template that refuses the conversation (e.g. roles must alternate) is the caller's to fix.
            EngineError::Template(m) => {
                ApiError::invalid(format!("chat template: {m}"), Some("messages"))
            }
            EngineError::BatchFull(_) => ApiError::Overloaded(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<SchedError> for ApiError {
    fn from(e: SchedError) -> ApiError {
        match e {
            SchedError::ModelNotFound(m) => ApiError::ModelNotFound(m),
            SchedError::Engine(e) => e.into(),
            SchedError::QueueFull { .. } => ApiError::Overloaded(e.to_string()),
            SchedError::ShuttingDown => ApiError::Unavailable(e.to_string()),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> ApiError {
        match e {
            QuotaError::ModelNotAllowed(_) => ApiError::Forbidden(e.to_string()),
            QuotaError::OverRequestCap { .. } => {
                ApiError::invalid(e.to_string(), Some("max_tokens"))
            }
            QuotaError::RateLimited {
                ref headers,
                retry_after,
                ..
            } => ApiError::TooManyRequests {
                message: e.to_string(),
                code: "rate_limit_exceeded",
                retry_after,
                headers: headers.clone(),
            },
            QuotaError::Exhausted {
                ref headers,
                retry_after,
                ..
            } => ApiError::TooManyRequests {
                message: e.to_string(),
                code: "insufficient_quota",
                retry_after,
                headers: headers.clone(),
            },
            QuotaError::Store(s) => s.into(),
        }
    }
}

impl From<InferenceError> for ApiError {
    fn from(e: InferenceError) -> ApiError {
        match e {
            InferenceError::KeyScope(_) => ApiError::Forbidden(e.to_string()),
            InferenceError::Sched(s) => s.into(),
            InferenceError::Quota(q) => q.into(),
            InferenceError::NotForGeneration(_) | InferenceError::NotForEmbeddings(_) => {
                ApiError::invalid(e.to_string(), Some("model"))
            }
            InferenceError::Input { message, param } => ApiError::invalid(message, Some(&param)),
            InferenceError::TooLong(m) => ApiError::invalid(m, Some("input")),
            InferenceError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> ApiError {
        match e {
            BatchError::Invalid { message, param } => ApiError::invalid(message, param),
            BatchError::NotFound(_) => ApiError::NotFound(e.to_string()),
            BatchError::Store(s) => s.into(),
            BatchError::Quota(q) => q.into(),
            BatchError::Auth(a) => a.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database that cannot be reached (PostgreSQL restarting) is a transient 503 with Retry-After; any other
    /// database failure stays a 500.
    #[test]
    fn an_unreachable_database_is_a_503() {
        let e: ApiError = StoreError::Db(sqlx::Error::PoolTimedOut).into();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let r = OpenAi::render(&e);
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let e: ApiError = StoreError::Db(sqlx::Error::RowNotFound).into();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
