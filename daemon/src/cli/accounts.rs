//! `hearth user …` and `hearth key …`: the same operations as the admin API, straight on the store (works while
//! the daemon runs: SQLite in WAL mode, or the shared PostgreSQL).

use anyhow::{bail, Context, Result};
use hearth::auth::accounts::{self, KeySpec};
use hearth::store::{LimitsOf, Store};
use std::io::Read;

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        #[arg(long, default_value = "member", value_parser = ["admin", "member"])]
        role: String,
        /// Read the dashboard password from standard input (else the user has none: API keys only).
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: their keys stop working at once.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Set a user's password from standard input.
    Passwd { name: String },
}

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Create an API key for USER; prints only the key (it is not shown again).
    Create {
        user: String,
        #[arg(long, default_value = "")]
        name: String,
        /// Comma-separated models the key may use (default: all).
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Lifetime, e.g. 30d, 12h.
        #[arg(long, value_parser = hearth::config::parse_duration)]
        expires: Option<std::time::Duration>,
    },
    /// List keys (of USER, or all).
    List {
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; effective for the next request.
    Revoke { id: String },
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn read_password() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from standard input")?;
    let p = s.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        bail!("no password on standard input");
    }
    Ok(p)
}

fn date(t: Option<i64>) -> String {
    t.map(|t| {
        hearth::api::ollama::rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64),
        )[..16]
            .replace('T', " ")
    })
    .unwrap_or_else(|| "-".into())
}

pub fn user(db_url: &str, cmd: UserCommand) -> Result<()> {
    runtime()?.block_on(async {
        let store = Store::connect(db_url)
            .await
            .context("opening the database")?;
        match cmd {
            UserCommand::Add {
                name,
                role,
                password_stdin,
            } => {
                let pw = password_stdin.then(read_password).transpose()?;
                let u = accounts::add_user(&store, &name, &role, pw.as_deref()).await?;
                eprintln!("created user {} ({})", u.name, u.role);
            }
            UserCommand::List { json } => {
                let users = store.list_users().await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&users)?);
                } else {
                    println!("{:<24} {:<8} {:<9} CREATED", "NAME", "ROLE", "STATUS");
                    for u in users {
                        let status = if u.disabled { "disabled" } else { "active" };
                        println!(
                            "{:<24} {:<8} {:<9} {}",
                            u.name,
                            u.role,
                            status,
                            date(Some(u.created_at))
                        );
                    }
                }
            }
            UserCommand::Disable { name } => {
                accounts::update_user(&store, &name, Some(true), None, None).await?;
                eprintln!("disabled user {name}");
            }
            UserCommand::Enable { name } => {
                accounts::update_user(&store, &name, Some(false), None, None).await?;
                eprintln!("enabled user {name}");
            }
            UserCommand::Passwd { name } => {
                let pw = read_password()?;
                accounts::set_password(&store, &name, &pw).await?;
                eprintln!("password of {name} changed");
            }
        }
        store.close().await;
        Ok(())
    })
}

pub fn key(db_url: &str, cmd: KeyCommand) -> Result<()> {
    runtime()?.block_on(async {
        let store = Store::connect(db_url)
            .await
            .context("opening the database")?;
        match cmd {
            KeyCommand::Create {
                user,
                name,
                models,
                expires,
            } => {
                let (_, key) = accounts::create_key(
                    &store,
                    KeySpec {
                        user: &user,
                        name: &name,
                        models,
                        expires_in: expires,
                    },
                )
                .await?;
                println!("{key}");
            }
            KeyCommand::List { user, json } => {
                let keys = store.list_keys(user.as_deref()).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&keys)?);
                } else {
                    println!(
                        "{:<14} {:<16} {:<16} {:<20} {:<16} {:<16} STATUS",
                        "ID", "USER", "NAME", "MODELS", "CREATED", "LAST USED"
                    );
                    let now = hearth::store::now();
                    for k in keys {
                        let status = if k.revoked_at.is_some() {
                            "revoked".to_owned()
                        } else if k.expires_at.is_some_and(|e| e <= now) {
                            "expired".to_owned()
                        } else if let Some(e) = k.expires_at {
                            format!("expires {}", date(Some(e)))
                        } else {
                            "active".to_owned()
                        };
                        println!(
                            "{:<14} {:<16} {:<16} {:<20} {:<16} {:<16} {}",
                            k.id,
                            k.user_name,
                            if k.name.is_empty() { "-" } else { &k.name },
                            k.models.map(|m| m.join(",")).unwrap_or_else(|| "*".into()),
                            date(Some(k.created_at)),
                            date(k.last_used_at),
                            status
                        );
                    }
                }
            }
            KeyCommand::Revoke { id } => {
                accounts::revoke_key(&store, &id).await?;
                eprintln!("revoked key {id}");
            }
        }
        store.close().await;
        Ok(())
    })
}

/// Whose limits: a user by name, or one API key.
#[derive(clap::Args)]
pub struct LimitsSubject {
    #[arg(required_unless_present = "key")]
    user: Option<String>,
    /// An API key id (`hth_…` prefix id from `hearth key list`): its limits replace the user's where set.
    #[arg(long, conflicts_with = "user")]
    key: Option<String>,
}

/// One flag per limit; absent flags leave the stored value alone.
#[derive(clap::Args)]
pub struct LimitFlags {
    #[arg(long)]
    tokens_per_day: Option<u64>,
    #[arg(long)]
    tokens_per_month: Option<u64>,
    #[arg(long)]
    requests_per_minute: Option<u64>,
    #[arg(long)]
    tokens_per_minute: Option<u64>,
    #[arg(long)]
    max_concurrent_requests: Option<u64>,
    #[arg(long)]
    max_tokens_per_request: Option<u64>,
    /// Comma-separated models the user may use.
    #[arg(long, value_delimiter = ',')]
    allowed_models: Option<Vec<String>>,
    #[arg(long)]
    weight: Option<u64>,
}

impl From<LimitFlags> for hearth::limits::Limits {
    fn from(f: LimitFlags) -> Self {
        hearth::limits::Limits {
            tokens_per_day: f.tokens_per_day,
            tokens_per_month: f.tokens_per_month,
            requests_per_minute: f.requests_per_minute,
            tokens_per_minute: f.tokens_per_minute,
            max_concurrent_requests: f.max_concurrent_requests,
            max_tokens_per_request: f.max_tokens_per_request,
            allowed_models: f.allowed_models,
            weight: f.weight,
        }
    }
}

#[derive(clap::Subcommand)]
pub enum QuotaCommand {
    /// Set a user's limits, or with --key one key's overrides (only the flags given change; --clear drops the
    /// user's or key's own values, so the role's defaults or the user's limits apply again).
    Set {
        #[command(flatten)]
        subject: LimitsSubject,
        #[arg(long)]
        clear: bool,
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// Show a user's or key's own limits (JSON).
    Show {
        #[command(flatten)]
        subject: LimitsSubject,
    },
}

pub fn quota(db_url: &str, cmd: QuotaCommand) -> Result<()> {
    runtime()?.block_on(async {
        let store = Store::connect(db_url)
            .await
            .context("opening the database")?;
        let (QuotaCommand::Set { subject, .. } | QuotaCommand::Show { subject }) = &cmd;
        let (id, is_key) = match (&subject.user, &subject.key) {
            (_, Some(key)) => match store.key(key).await? {
                Some(k) => (k.id, true),
                None => bail!("API key '{key}' not found"),
            },
            (Some(name), None) => match store.user_by_name(name).await? {
                Some(u) => (u.id, false),
                None => bail!("user '{name}' not found"),
            },
            (None, None) => bail!("name a user or --key"),
        };
        let of = if is_key {
            LimitsOf::Key(&id)
        } else {
            LimitsOf::User(&id)
        };
        match cmd {
            QuotaCommand::Show { .. } => {
                let l = store.limits_of(of).await?;
                println!("{}", serde_json::to_string_pretty(&l)?);
            }
            QuotaCommand::Set { clear, limits, .. } => {
                let current = if clear {
                    Default::default()
                } else {
                    store.limits_of(of).await?
                };
                let l = current.overlaid(&limits.into());
                l.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
                store.set_limits(of, &l).await?;
                println!("{}", serde_json::to_string_pretty(&l)?);
            }
        }
        store.close().await;
        Ok(())
    })
}
