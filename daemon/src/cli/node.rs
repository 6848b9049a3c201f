//! `hearth node list`: the cluster's registry as the database holds it (every node sharing it, alive or expired).

use super::accounts::runtime;
use anyhow::{Context, Result};
use clap::Subcommand;
use hearth::store::Store;

#[derive(Subcommand)]
pub enum NodeCommand {
    /// Every node registered in the database: state, version, loaded models, last seen.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn node(db_url: &str, cfg: &hearth::config::Config, me: &str, cmd: NodeCommand) -> Result<()> {
    runtime()?.block_on(async {
        let store = Store::connect(db_url)
            .await
            .context("opening the database")?;
        let NodeCommand::List { json } = cmd;
        let view = hearth::cluster::view(
            store.nodes().await?,
            hearth::store::now(),
            cfg.cluster.expire,
            me,
        );
        if json {
            println!("{}", serde_json::to_string_pretty(&view)?);
        } else {
            println!(
                "{:<40} {:<8} {:<9} {:>10}  models",
                "node", "state", "version", "last seen"
            );
            for n in view.as_array().into_iter().flatten() {
                let models: Vec<String> = n["models"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        format!(
                            "{} ({} running, {} waiting)",
                            m["name"].as_str().unwrap_or("?"),
                            m["running"],
                            m["waiting"]
                        )
                    })
                    .collect();
                println!(
                    "{:<40} {:<8} {:<9} {:>9}s  {}",
                    n["name"].as_str().unwrap_or("?"),
                    n["state"].as_str().unwrap_or("?"),
                    n["version"].as_str().unwrap_or("?"),
                    n["seconds_since_seen"],
                    if models.is_empty() {
                        "-".to_owned()
                    } else {
                        models.join(", ")
                    }
                );
            }
        }
        store.close().await;
        Ok(())
    })
}

/// `hearth doctor`'s cluster lines (`doctor::cluster_checks`).
pub fn doctor_checks(
    db_url: &str,
    cfg: &hearth::config::Config,
    me: &str,
) -> Result<Vec<hearth::doctor::Check>> {
    runtime()?.block_on(async {
        let store = Store::connect(db_url)
            .await
            .context("opening the database")?;
        Ok(hearth::doctor::cluster_checks(cfg, me, &store).await)
    })
}
