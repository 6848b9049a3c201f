//! The x-ratelimit-* headers (OpenAI's names) on every `/v1` response of an authenticated caller. Generation
//! responses and 429s carry the figures of their own admission; everything else (model lists, usage, errors
//! before admission) gets the caller's per-minute limits and what is left of them now.

use super::AppState;
use crate::auth::Principal;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

pub async fn rate_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let has = |h: &str| res.headers().contains_key(h);
    if has("x-ratelimit-limit-requests") || has("x-ratelimit-limit-tokens") {
        return Ok(res);
    }
    let Some(state) = res.request().app_data::<web::Data<AppState>>().cloned() else {
        return Ok(res);
    };
    let known = res.request().extensions().get::<Principal>().cloned();
    let who = match known {
        Some(p) => p,
        // The handler failed before its caller was resolved (e.g. malformed JSON): resolve it here.
        None => {
            let header = res
                .request()
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match header {
                Some(h) => match state.auth.authenticate(Some(&h)).await {
                    Ok(p) => p,
                    Err(_) => return Ok(res),
                },
                None => return Ok(res),
            }
        }
    };
    match state.quota.current_headers(&who).await {
        Ok(headers) => {
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.headers_mut().insert(HeaderName::from_static(name), v);
                }
            }
        }
        // Headers are advisory: a store hiccup must not turn a good answer into an error.
        Err(e) => tracing::warn!(error = %e, "rate-limit headers unavailable"),
    }
    Ok(res)
}
