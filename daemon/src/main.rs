//! `hearth` — the command line. Thin: parse arguments, call the library, print.

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use hearth::config::Config;
use hearth::models::ModelStore;
use std::net::SocketAddr;
use std::path::PathBuf;

mod cli;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Hearth: a self-hosted AI appliance")]
struct Cli {
    /// Configuration file (TOML). Default: ./hearth.toml, else /etc/hearth/hearth.toml, if present.
    #[arg(long, global = true, env = "HEARTH_CONFIG")]
    config: Option<PathBuf>,
    /// State directory (database, models). Default: the config's state_dir, else ./.hearth.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: the HTTP API on the configured address.
    Serve {
        /// Listen here instead of the configured `bind` (HOST:PORT; port 0 picks a free one).
        #[arg(long)]
        bind: Option<SocketAddr>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: cli::accounts::UserCommand,
    },
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        command: cli::accounts::KeyCommand,
    },
    /// Usage reports from the request ledger.
    Usage {
        #[command(subcommand)]
        command: cli::usage::UsageCommand,
    },
    /// Per-user limits.
    Quota {
        #[command(subcommand)]
        command: cli::accounts::QuotaCommand,
    },
    /// The nodes sharing this database (the cluster's registry).
    Node {
        #[command(subcommand)]
        command: cli::node::NodeCommand,
    },
    /// Batch window and recurring batches.
    Schedule {
        #[command(subcommand)]
        command: cli::schedule::ScheduleCommand,
    },
    /// Generate text from a model, streaming it to stdout.
    Run(cli::run::RunArgs),
    /// Measure prompt processing and generation speed.
    Bench(cli::bench::BenchArgs),
    /// Check this machine: devices, back ends, where each model would run, and fixable problems.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (hearth.1, hearth-SUBCOMMAND.1) into a directory (used by packaging).
    #[command(hide = true)]
    Manpages { dir: PathBuf },
    /// Manage the models directory.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file (default: the one in use); errors give line and column.
    Check { file: Option<PathBuf> },
    /// Print the effective configuration (file, then HEARTH_* variables) as TOML-like text.
    Show,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Import a GGUF file, or a sentence-transformers folder (an embedding model), into the models directory.
    Import {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
    /// Download a GGUF file (http:// or https://) and import it, with progress on stderr.
    Pull {
        url: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List imported models.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an imported model.
    Rm { name: String },
    /// Write a model with random weights at a real architecture's shape (tests and benchmarks without the real
    /// weights), e.g. `hearth model synth bitnet --preset 2b4t --format i2_s --out bitnet.gguf` or
    /// `hearth model synth llama --preset 8b --type q4_k_m --out llama-8b.gguf`.
    Synth {
        /// Architecture family: bitnet (BitNet b1.58, ternary) or llama (Llama 3).
        family: String,
        /// bitnet: tiny (a few MB, the default), 2b4t (microsoft/bitnet-b1.58-2B-4T's shape) or 2b4t-draft (the
        /// same vocabulary, a tenth of the width, 2 layers: a speculative draft for 2b4t). llama: 1b, 3b (Llama
        /// 3.2), 8b (Llama 3.1) or tiny.
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// bitnet: the ternary encoding, i2_s (default), tq2_0 or tq1_0.
        #[arg(long)]
        format: Option<String>,
        /// llama: the file type as llama-quantize names it, q4_k_m (default), q4_0, q8_0 or q6_k (with its
        /// per-tensor exceptions: Q6_K head, Q6_K attn_v/ffn_down on some layers in Q4_K_M).
        #[arg(long = "type")]
        file_type: Option<String>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Embed this GGUF file's tokenizer (padded to the vocabulary) instead of the built-in byte-level one.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Layers, instead of the preset's. With the same seed, the first layers, embeddings and norms equal the
        /// full model's: a layer-truncated copy (a self-speculation draft).
        #[arg(long)]
        layers: Option<usize>,
        /// bitnet: the embedding's (tied head's) type: f16 as published, or q8_0 / q4_0 — a file for llama.cpp
        /// whose head reads as many bytes as Hearth's `--head q8_0|q4_0` (like-for-like benchmarks).
        #[arg(long)]
        embed: Option<String>,
    },
    /// Convert to GGUF: a Hugging Face BitNet b1.58 checkpoint (config.json + model.safetensors), or a
    /// sentence-transformers BERT folder (an embedding model, written as llama.cpp's `bert` GGUF).
    Convert {
        dir: PathBuf,
        /// BitNet: the ternary encoding, i2_s (default), tq2_0 or tq1_0. BERT: f16 (default), f32 or q8_0.
        #[arg(long)]
        format: Option<String>,
        #[arg(long)]
        out: PathBuf,
        /// Embed this GGUF file's tokenizer instead of the checkpoint's tokenizer.json (without either, ids only).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
    },
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HEARTH_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    if let Err(e) = real_main(cli) {
        eprintln!("hearth: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics on a write error (a closed pipe, `| head`).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "hearth", &mut script);
            return write_stdout(&script);
        }
        Command::Manpages { dir } => {
            for page in cli::manpages::write_all(Cli::command(), dir)? {
                println!("{}", dir.join(page).display());
            }
            return Ok(());
        }
        _ => {}
    }
    let config_path = cli.config.clone().or_else(hearth::config::default_path);
    if let Command::Config {
        command: ConfigCommand::Check { file },
    } = &cli.command
    {
        let Some(path) = file.clone().or(config_path) else {
            bail!("no configuration file given, and neither ./hearth.toml nor /etc/hearth/hearth.toml exists");
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let cfg = Config::parse(&text, &path)?;
        cfg.check_files()?;
        println!("{}: ok", path.display());
        return Ok(());
    }
    let cfg = Config::load(config_path.as_deref(), |k| std::env::var(k).ok())?;
    let state = hearth::paths::state_dir(cli.state_dir, cfg.state_dir.as_deref());
    let owner = touches_state(&cli.command)
        .then(|| cli::service_user::foreign_owner(&state))
        .flatten();
    let mut staged = None;
    if let Some(owner) = owner {
        if let Command::Model {
            command: ModelCommand::Import { file, .. },
        } = &cli.command
        {
            if file.is_file() {
                staged = Some(cli::service_user::stage(owner, file, &state)?);
            }
        }
        cli::service_user::switch_to(owner, &state)?;
    }
    let store = ModelStore::at(hearth::server::models_dir(&cfg, &state));
    let db_url = || hearth::server::database_url(&cfg, &state);
    match cli.command {
        Command::Serve { bind } => hearth::server::run(cfg.clone(), state.clone(), bind),
        Command::Config { command } => match command {
            ConfigCommand::Check { .. } => Ok(()),
            ConfigCommand::Show => {
                println!("{cfg:#?}");
                println!("state_dir (effective) = {}", state.display());
                Ok(())
            }
        },
        Command::User { command } => cli::accounts::user(&db_url(), command),
        Command::Key { command } => cli::accounts::key(&db_url(), command),
        Command::Quota { command } => cli::accounts::quota(&db_url(), command),
        Command::Schedule { command } => cli::schedule::schedule(&db_url(), command),
        Command::Node { command } => {
            let me = cfg
                .cluster
                .name
                .clone()
                .unwrap_or_else(|| hearth::server::node_name(&state));
            cli::node::node(&db_url(), &cfg, &me, command)
        }
        Command::Usage { command } => cli::usage::usage(&db_url(), &cfg, command),
        Command::Doctor { json } => {
            let mut r = hearth::doctor::run(&cfg, &state, &store);
            if db_url().starts_with("postgres") {
                let me = cfg
                    .cluster
                    .name
                    .clone()
                    .unwrap_or_else(|| hearth::server::node_name(&state));
                r.checks
                    .extend(cli::node::doctor_checks(&db_url(), &cfg, &me)?);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", hearth::doctor::render(&r));
            }
            Ok(())
        }
        Command::Completions { .. } | Command::Manpages { .. } => Ok(()),
        Command::Run(args) => cli::run::run(&store, args),
        Command::Bench(args) if args.draft.is_some() || args.prompt_lookup => {
            cli::spec_bench::bench(&store, &args)
        }
        Command::Bench(args) => cli::bench::bench(&store, args),
        Command::Model { command } => match command {
            ModelCommand::Pull { url, name } => {
                cli::model_files::pull(&store, &url, name.as_deref())
            }
            ModelCommand::Import { file, name } => {
                let src = staged.as_deref().unwrap_or(&file);
                if !src.is_file() && !src.is_dir() {
                    bail!("{}: no such file or folder", file.display());
                }
                let imported = store.import(src, name.as_deref());
                if let Some(staged) = &staged {
                    cli::service_user::unstage(staged);
                }
                let m = imported.with_context(|| format!("importing {}", file.display()))?;
                println!(
                    "imported {} ({}, {}, {} bytes)",
                    m.name,
                    m.architecture,
                    m.file_type.as_deref().unwrap_or("?"),
                    m.size_bytes
                );
                Ok(())
            }
            ModelCommand::List { json } => {
                let list = store.list()?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    println!(
                        "{:<32} {:<10} {:<8} {:>10} {:>8}  SHA256",
                        "NAME", "ARCH", "TYPE", "SIZE", "CONTEXT"
                    );
                    for m in list {
                        println!(
                            "{:<32} {:<10} {:<8} {:>9.1}M {:>8}  {}",
                            m.name,
                            m.architecture,
                            m.file_type.as_deref().unwrap_or("?"),
                            m.size_bytes as f64 / 1e6,
                            m.context_length.map(|c| c.to_string()).unwrap_or_default(),
                            &m.sha256[..12]
                        );
                    }
                }
                Ok(())
            }
            ModelCommand::Synth {
                family,
                preset,
                format,
                file_type,
                out,
                seed,
                tokenizer,
                layers,
                embed,
            } => cli::model_files::synth(&cli::model_files::SynthArgs {
                family: &family,
                preset: &preset,
                format: format.as_deref(),
                file_type: file_type.as_deref(),
                out: &out,
                seed,
                tokenizer: tokenizer.as_deref(),
                layers,
                embed: embed.as_deref(),
            }),
            ModelCommand::Convert {
                dir,
                format,
                out,
                tokenizer,
            } => cli::model_files::convert(&dir, format.as_deref(), &out, tokenizer.as_ref()),
            ModelCommand::Rm { name } => {
                store.remove(&name)?;
                println!("removed {name}");
                Ok(())
            }
        },
    }
}

/// Commands that read or write the state directory (database, models): run as its owner when started as root.
/// Synth and convert write where `--out` says, as the caller.
fn touches_state(command: &Command) -> bool {
    !matches!(
        command,
        Command::Config { .. }
            | Command::Completions { .. }
            | Command::Manpages { .. }
            | Command::Model {
                command: ModelCommand::Synth { .. } | ModelCommand::Convert { .. }
            }
    )
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
