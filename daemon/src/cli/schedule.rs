//! `hearth schedule …`: the batch window and recurring batches, straight on the store (the running daemon picks
//! changes up within 30 s) — the same checks as `/admin/schedules`.

use super::accounts::runtime;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use hearth::batch_api::{self, cron, window::Window};
use hearth::store::{FileRecord, Store};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// List the batch window and the schedules.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show, set (`01:00-06:00`, local time) or clear (--clear) the batch window.
    Window {
        spec: Option<String>,
        #[arg(long, conflicts_with = "spec")]
        clear: bool,
    },
    /// Add a recurring batch: the input file runs as a batch of USER's each time CRON fires.
    Add {
        name: String,
        /// 5 fields (minute hour day month weekday) or 6 (seconds first), local time.
        #[arg(long)]
        cron: String,
        #[arg(long)]
        user: String,
        /// A JSONL file on this machine, stored as the user's batch file.
        #[arg(long, conflicts_with = "file_id", required_unless_present = "file_id")]
        input: Option<PathBuf>,
        /// An already uploaded batch file.
        #[arg(long)]
        file_id: Option<String>,
        /// /v1/chat/completions (default) or /v1/completions.
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Change a schedule's cron expression, or enable / disable it.
    Set {
        name: String,
        #[arg(long)]
        cron: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Remove a schedule.
    Rm { name: String },
}

pub fn schedule(db_url: &str, cmd: ScheduleCommand) -> Result<()> {
    runtime()?.block_on(async {
        let store = Store::connect(db_url)
            .await
            .context("opening the database")?;
        match cmd {
            ScheduleCommand::List { json } => {
                let w = store.setting(batch_api::window::SETTING).await?;
                let list = store.schedules().await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"window": w, "schedules": list})
                        )?
                    );
                } else {
                    println!(
                        "batch window: {}",
                        w.as_deref().unwrap_or("none (any time)")
                    );
                    for s in list {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}",
                            s.name,
                            s.cron,
                            s.owner,
                            s.endpoint,
                            s.input_file_id,
                            if s.enabled { "enabled" } else { "disabled" }
                        );
                    }
                }
            }
            ScheduleCommand::Window { spec, clear } => {
                if clear {
                    store.set_setting(batch_api::window::SETTING, None).await?;
                } else if let Some(spec) = spec {
                    let w: Window = spec.parse().map_err(anyhow::Error::msg)?;
                    store
                        .set_setting(batch_api::window::SETTING, Some(&w.to_string()))
                        .await?;
                }
                let w = store.setting(batch_api::window::SETTING).await?;
                println!(
                    "batch window: {}",
                    w.as_deref().unwrap_or("none (any time)")
                );
            }
            ScheduleCommand::Add {
                name,
                cron,
                user,
                input,
                file_id,
                endpoint,
            } => {
                let file_id = match (input, file_id) {
                    (_, Some(id)) => id,
                    (Some(path), None) => {
                        let owner = store
                            .user_by_name(&user)
                            .await?
                            .with_context(|| format!("user '{user}' not found"))?;
                        let content = std::fs::read_to_string(&path).with_context(|| {
                            format!("reading {} (a UTF-8 JSONL file)", path.display())
                        })?;
                        let f = FileRecord {
                            id: batch_api::file_id(),
                            owner_id: owner.id,
                            purpose: "batch".into(),
                            filename: path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_else(|| "input.jsonl".into()),
                            bytes: content.len() as i64,
                            created_at: hearth::store::now(),
                        };
                        store.insert_file(&f, &content).await?;
                        f.id
                    }
                    (None, None) => bail!("give --input FILE or --file-id ID"),
                };
                let rec = cron::checked(&store, &name, &cron, &file_id, &user, endpoint.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                store.insert_schedule(&rec).await?;
                println!("schedule '{name}' added (input file {file_id})");
            }
            ScheduleCommand::Set {
                name,
                cron,
                enable,
                disable,
            } => {
                if let Some(c) = &cron {
                    cron::normalize(c).map_err(anyhow::Error::msg)?;
                }
                let enabled = (enable || disable).then_some(enable);
                if !store
                    .update_schedule(&name, cron.as_deref(), enabled)
                    .await?
                {
                    bail!("schedule '{name}' not found");
                }
            }
            ScheduleCommand::Rm { name } => {
                if !store.delete_schedule(&name).await? {
                    bail!("schedule '{name}' not found");
                }
            }
        }
        Ok(())
    })
}
