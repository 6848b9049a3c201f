//! `GET /metrics` (Prometheus text format) and the middleware that counts API requests by model and status.
//! `/metrics` needs an admin key or the dedicated `metrics.token`, unless `metrics.public` opens it.

use super::error::{ApiError, OpenAi, Rendered};
use super::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use std::cell::RefCell;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

/// The exposition, for admins, the metrics token, or anyone when `metrics.public`.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain"),
              (status = 401, description = "no or unknown credentials"), (status = 403, description = "not an admin")),
    security(("api_key" = [])))]
pub async fn metrics(
    st: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, Rendered<OpenAi>> {
    let m = &st.config.metrics;
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
            let who = st.auth.authenticate(header).await?;
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
        .body(st.metrics.render()))
}

tokio::task_local! {
    /// The model a request resolved to, set by `start_job` (unknown names never become labels).
    static MODEL: RefCell<Option<String>>;
}

/// Records the model of the request being handled, for its `hearth_requests_total` line.
pub fn note_model(model: &str) {
    let _ = MODEL.try_with(|m| *m.borrow_mut() = Some(model.to_owned()));
}

/// Counts every request of an API (`openai` or `ollama`) in `hearth_requests_total{api,model,status}`.
pub async fn count_requests(
    api: &'static str,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let st = req.app_data::<web::Data<AppState>>().cloned();
    let (res, model) = MODEL
        .scope(RefCell::new(None), async {
            let res = next.call(req).await;
            (res, MODEL.with(|m| m.borrow_mut().take()))
        })
        .await;
    let res = res?;
    if let Some(st) = st {
        st.metrics
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
