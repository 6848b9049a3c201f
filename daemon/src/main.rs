//! `hearth` — the command line. Thin: parse arguments, call the library, print.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hearth::models::ModelStore;
use std::path::PathBuf;

mod cli;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Hearth: a self-hosted AI appliance")]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "HEARTH_CONFIG")]
    config: Option<PathBuf>,
    /// State directory (database, models). Default: ./.hearth in development, /var/lib/hearth when packaged.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a model, streaming it to stdout.
    Run(cli::run::RunArgs),
    /// Measure prompt processing and generation speed.
    Bench(cli::bench::BenchArgs),
    /// Manage the models directory.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Import a GGUF file into the models directory.
    Import {
        file: PathBuf,
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
    let state = hearth::paths::state_dir(cli.state_dir);
    let _ = cli.config;
    let store = ModelStore::new(&state);
    match cli.command {
        Command::Run(args) => cli::run::run(&store, args),
        Command::Bench(args) => cli::bench::bench(&store, args),
        Command::Model { command } => match command {
            ModelCommand::Import { file, name } => {
                if !file.is_file() {
                    bail!("{}: no such file", file.display());
                }
                let m = store
                    .import(&file, name.as_deref())
                    .with_context(|| format!("importing {}", file.display()))?;
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
            ModelCommand::Rm { name } => {
                store.remove(&name)?;
                println!("removed {name}");
                Ok(())
            }
        },
    }
}
