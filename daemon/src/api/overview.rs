//! `GET /admin/overview`: the dashboard's live page in one request — the latest sample, the last hour of
//! samples (column-wise, for uPlot), and today's energy and tokens per model from the ledger.

use super::error::{OpenAi, Rendered};
use super::extract::Admin;
use super::AppState;
use actix_web::{web, HttpResponse};
use serde_json::json;

type Result<T> = std::result::Result<T, Rendered<OpenAi>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/admin/overview").route(super::get_or_head().to(overview)));
}

/// Live figures and the last hour (sampled every 2 s), plus today's joules and J/token per model.
#[utoipa::path(get, path = "/admin/overview", tag = "admin", security(("api_key" = [])),
    responses((status = 200, description = "`{now, history, today: {tokens, joules, models: [...]}}`")))]
pub async fn overview(state: web::Data<AppState>, _a: Admin<OpenAi>) -> Result<HttpResponse> {
    let w = state.quota.windows();
    let energy = state.store.energy_by_model_on(&w.day_key).await?;
    let day = w.day_key.trim_start_matches("d:").to_owned();
    let f = crate::store::UsageFilter {
        from_day: day.clone(),
        to_day: day.clone(),
        ..Default::default()
    };
    let usage = state
        .store
        .usage_report(&f, crate::store::GroupBy::Model)
        .await?;
    let models: Vec<_> = usage
        .iter()
        .map(|g| {
            let figures: Vec<_> = energy
                .iter()
                .filter(|(m, _)| *m == g.group)
                .map(|(_, e)| e)
                .collect();
            json!({
                "model": g.group,
                "requests": g.requests,
                "tokens": g.total_tokens,
                "joules": g.joules,
                "energy": figures,
            })
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(json!({
            "now": state.history.latest(),
            "history": state.history.columns(),
            "today": {
                "day": day,
                "tokens": usage.iter().map(|g| g.total_tokens).sum::<i64>(),
                "requests": usage.iter().map(|g| g.requests).sum::<i64>(),
                "joules": usage.iter().fold(0.0, |j, g| j + g.joules),
                "models": models,
            },
            // Shown on the dashboard so that an open door is never a surprise.
            "keyless": {
                "networks": state.config.keyless.cidrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "user": state.config.keyless.user,
            },
        })))
}
