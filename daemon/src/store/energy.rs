//! Energy per token from the ledger's raw rows: joules over the tokens of the requests that carry joules, per
//! energy source (measured and estimated joules are never summed together).

use super::{Result, Store};
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct EnergyFigure {
    /// `rapl`, `nvml` or `estimate`.
    pub source: String,
    pub joules: f64,
    /// Prompt and generated tokens of the requests counted.
    pub tokens: i64,
    pub joules_per_token: f64,
}

const SUMS: &str = "SELECT energy_source, CAST(SUM(energy_joules) AS DOUBLE PRECISION) AS j, \
     CAST(SUM(prompt_tokens + completion_tokens) AS BIGINT) AS t";

fn figure(r: &sqlx::any::AnyRow) -> Result<EnergyFigure> {
    let joules: f64 = r.try_get("j")?;
    let tokens: i64 = r.try_get("t")?;
    Ok(EnergyFigure {
        source: r.try_get("energy_source")?,
        joules,
        tokens,
        joules_per_token: if tokens > 0 {
            joules / tokens as f64
        } else {
            0.0
        },
    })
}

impl Store {
    /// Per model and source, over every raw ledger row kept.
    pub async fn energy_by_model(&self) -> Result<Vec<(String, EnergyFigure)>> {
        let rows = sqlx::query(&format!(
            "{SUMS}, model FROM requests WHERE energy_joules IS NOT NULL AND energy_source IS NOT NULL \
             GROUP BY model, energy_source ORDER BY model, energy_source"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("model")?, figure(r)?)))
            .collect()
    }

    /// Per model and source, in one local day (`d:YYYY-MM-DD`).
    pub async fn energy_by_model_on(&self, day_key: &str) -> Result<Vec<(String, EnergyFigure)>> {
        let rows = sqlx::query(&format!(
            "{SUMS}, model FROM requests WHERE day_key = $1 AND energy_joules IS NOT NULL \
             AND energy_source IS NOT NULL GROUP BY model, energy_source ORDER BY model, energy_source"
        ))
        .bind(day_key)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("model")?, figure(r)?)))
            .collect()
    }

    /// One user's, per source, in a quota window (`d:…` day or `m:…` month key).
    pub async fn energy_of_user(&self, user_id: &str, window: &str) -> Result<Vec<EnergyFigure>> {
        let col = if window.starts_with("d:") {
            "day_key"
        } else {
            "month_key"
        };
        let rows = sqlx::query(&format!(
            "{SUMS} FROM requests WHERE user_id = $1 AND {col} = $2 AND energy_joules IS NOT NULL \
             AND energy_source IS NOT NULL GROUP BY energy_source ORDER BY energy_source"
        ))
        .bind(user_id)
        .bind(window)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(figure).collect()
    }
}
