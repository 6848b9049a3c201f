//! `hearth usage report|export`: the ledger, summed or as CSV, straight from the store.

use anyhow::{anyhow, Context, Result};
use hearth::store::{GroupBy, Store, UsageFilter};

#[derive(clap::Args)]
pub struct Range {
    /// First local date, inclusive (YYYY-MM-DD; default: the first of this month).
    #[arg(long)]
    from: Option<String>,
    /// Last local date, inclusive (default: today).
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    model: Option<String>,
}

#[derive(clap::Subcommand)]
pub enum UsageCommand {
    /// Totals per local day, model or user.
    Report {
        #[command(flatten)]
        range: Range,
        #[arg(long, default_value = "day", value_parser = ["day", "model", "user"])]
        group_by: String,
    },
    /// One CSV line per request, to standard output.
    Export {
        #[command(flatten)]
        range: Range,
    },
    /// Run the daily roll-up and raw-row pruning now (the daemon also runs it daily).
    Rollup,
}

pub fn usage(db_url: &str, cfg: &hearth::config::Config, cmd: UsageCommand) -> Result<()> {
    let tz = cfg.time_zone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let range = match &cmd {
        UsageCommand::Report { range, .. } | UsageCommand::Export { range } => range,
        UsageCommand::Rollup => {
            return rt.block_on(async {
                let store = Store::connect(db_url)
                    .await
                    .context("opening the database")?;
                let outcome = hearth::housekeeping::rollup_and_prune(
                    &store,
                    &tz,
                    cfg.usage.retain_raw,
                    jiff::Timestamp::now(),
                )
                .await?;
                println!("{outcome}");
                store.close().await;
                Ok(())
            });
        }
    };
    let r = hearth::report::range(
        &tz,
        jiff::Timestamp::now(),
        range.from.as_deref(),
        range.to.as_deref(),
    )
    .map_err(|e| anyhow!(e))?;
    let f = UsageFilter {
        user: range.user.as_deref(),
        model: range.model.as_deref(),
        from: r.start,
        to: r.end,
        from_day: r.from_day,
        to_day: r.to_day,
    };
    rt.block_on(async {
        let store = Store::connect(db_url)
            .await
            .context("opening the database")?;
        match &cmd {
            UsageCommand::Report { group_by, .. } => {
                let by = GroupBy::parse(group_by).ok_or_else(|| anyhow!("bad --group-by"))?;
                println!(
                    "{:<24} {:>9} {:>12} {:>12} {:>12} {:>9} {:>9}",
                    group_by.to_uppercase(),
                    "REQUESTS",
                    "PROMPT",
                    "COMPLETION",
                    "TOTAL",
                    "CANCELLED",
                    "REJECTED"
                );
                for g in store.usage_report(&f, by).await? {
                    println!(
                        "{:<24} {:>9} {:>12} {:>12} {:>12} {:>9} {:>9}",
                        g.group,
                        g.requests,
                        g.prompt_tokens,
                        g.completion_tokens,
                        g.total_tokens,
                        g.cancelled,
                        g.rejected
                    );
                }
            }
            UsageCommand::Rollup => {}
            UsageCommand::Export { .. } => {
                print!("{}", hearth::report::csv(&store.usage_rows(&f).await?));
            }
        }
        store.close().await;
        Ok(())
    })
}
