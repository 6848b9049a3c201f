//! `GET /metrics` (Prometheus text format) and the middleware that counts API requests by model and status.
//! `/metrics` needs an admin key or the dedicated `metrics.token`, unless `metrics.public` opens it.

use super::error::{ApiError, OpenAi, Rendered};
use super::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/metrics").route(super::get_or_head().to(metrics)));
}

/// The exposition, for admins, the metrics token, or anyone when `metrics.public`.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"),
              (status = 401, description = "no or unknown credentials"), (status = 403, description = "not an admin")),
    security(("api_key" = [])))]
pub async fn metrics(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Rendered<OpenAi>> {
    let m = &state.config.metrics;
    if !m.public {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let bearer = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        let by_token = match (&m.token, bearer) {
            (Some(t), Some(b)) => crate::auth::secrets::same_secret(t.as_bytes(), b.as_bytes()),
            _ => false,
        };
        if !by_token {
            let who = state.auth.authenticate(header).await?;
            if !who.is_admin() {
                return Err(ApiError::Forbidden(
                    "/metrics requires an admin key or the metrics token".into(),
                )
                .into());
            }
        }
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render()))
}

/// Counts every request of an API (`openai` or `ollama`) in `hearth_requests_total{api,model,status}`.
pub async fn count_requests(
    api: &'static str,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let (res, model) = crate::inference::label::scoped(next.call(req)).await;
    let res = res?;
    if let Some(state) = state {
        state
            .metrics
            .serving
            .requests
            .with_label_values(&[api, model.as_deref().unwrap_or(""), res.status().as_str()])
            .inc();
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_whole() {
        assert!(crate::auth::secrets::same_secret(b"abcdef", b"abcdef"));
        assert!(!crate::auth::secrets::same_secret(b"abcdef", b"abcdeg"));
        assert!(!crate::auth::secrets::same_secret(b"abc", b"abcdef"));
    }
}
