//! Cost of quota admission + reconciliation (the two store transactions a generation request adds), on SQLite
//! and on the PostgreSQL server at 127.0.0.1:5432, sequentially, with limits set so every check runs.
//! Run: `cargo run --release -p hearth --example quota_bench [N]` (docs/benchmarks.md).

use hearth::auth::{accounts, Principal, Role};
use hearth::config::QuotaDefaults;
use hearth::limits::Limits;
use hearth::quota::Quota;
use hearth::store::{Completion, Store};
use sqlx::Connection;
use std::time::Instant;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(label: &str, store: Store, n: usize) -> anyhow::Result<()> {
    let quota = Quota::new(
        store.clone(),
        jiff::tz::TimeZone::UTC,
        QuotaDefaults::default(),
        None,
    );
    let u = accounts::add_user(&store, "bench", "member", None).await?;
    let who = Principal {
        user_id: u.id,
        user_name: u.name,
        role: Role::Member,
        key_id: None,
        models: None,
        keyless: false,
    };
    let limits = Limits {
        tokens_per_day: Some(u64::MAX / 4),
        tokens_per_month: Some(u64::MAX / 4),
        requests_per_minute: Some(1_000_000),
        tokens_per_minute: Some(u64::MAX / 4),
        max_concurrent_requests: Some(1000),
        ..Default::default()
    };
    let (mut admit, mut reconcile, mut read) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("b{i}");
        let t = Instant::now();
        quota.limits(&who.user_id, who.role, None).await?;
        read.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        quota
            .admit(&who, &limits, &id, "m", "chat", 30, 100)
            .await?;
        admit.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let c = Completion {
            request_id: &id,
            status: "ok",
            finish_reason: "stop",
            prompt_tokens: 30,
            completion_tokens: 50,
            now: hearth::store::now(),
            duration_ms: 1,
            device: None,
            queue_ms: None,
            energy_joules: None,
            energy_source: None,
        };
        store.reconcile(&c).await?;
        reconcile.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // The first requests warm caches and connections; report steady state.
    let skip = n / 10;
    let (a, r, l) = (
        &mut admit[skip..],
        &mut reconcile[skip..],
        &mut read[skip..],
    );
    println!(
        "| {label} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
        n - skip,
        pct(l, 0.5),
        pct(l, 0.99),
        pct(a, 0.5),
        pct(a, 0.99),
        pct(r, 0.5),
        pct(r, 0.99)
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    println!(
        "| store | requests | limits read p50 ms | p99 | admit p50 ms | admit p99 ms | reconcile p50 ms | reconcile p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let dir = tempfile::tempdir()?;
    run(
        "SQLite (WAL, file)",
        Store::connect(&hearth::store::sqlite_url(dir.path())).await?,
        n,
    )
    .await?;
    let base = std::env::var("HEARTH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let db = format!("hearth_bench_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    let store = Store::connect(&format!("{base}/{db}")).await?;
    let result = run("PostgreSQL 15 (loopback)", store.clone(), n).await;
    store.close().await;
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    result
}
