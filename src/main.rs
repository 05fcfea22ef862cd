//! The `ringo` binary: `ringo serve` runs the default app, `ringo config` prints the
//! effective configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ringo::config::Config;
use ringo::{IoBackend, Server};

#[derive(Parser)]
#[command(name = "ringo", version, about = "Thread-per-core HTTP/1.1 server on io_uring")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the default app (the default command).
    Serve(Flags),
    /// Print the effective configuration (defaults < file < RINGO_* env < flags) as TOML.
    Config(Flags),
}

#[derive(Args, Clone, Default)]
struct Flags {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data listener address [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Admin listener address [default: 127.0.0.1:9090].
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Number of shards [default: one per CPU in the affinity mask].
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Cores to run shards on, e.g. 0-3,6.
    #[arg(long, value_name = "LIST")]
    cores: Option<String>,
    /// io backend.
    #[arg(long, value_enum, value_name = "BACKEND")]
    io_backend: Option<IoBackend>,
    /// Log filter, e.g. info, debug, ringo=debug.
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
}

impl Flags {
    /// Applies the flags over the loaded configuration.
    fn apply(&self, cfg: &mut Config) {
        let s = &mut cfg.server;
        if let Some(v) = &self.listen {
            s.listen = v.clone();
        }
        if let Some(v) = &self.admin {
            s.admin = v.clone();
        }
        if let Some(v) = self.shards {
            s.shards = v;
        }
        if let Some(v) = &self.cores {
            s.cores = v.clone();
        }
        if let Some(v) = self.io_backend {
            s.io_backend = v;
        }
        if let Some(v) = &self.log {
            s.log = v.clone();
        }
    }
}

fn load(flags: &Flags) -> Result<Config, String> {
    let mut cfg = Config::load(flags.config.as_deref(), std::env::vars()).map_err(|e| e.to_string())?;
    flags.apply(&mut cfg);
    cfg.server_config().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (serve, flags) = match cli.command {
        None => (true, cli.flags),
        Some(Command::Serve(f)) => (true, f),
        Some(Command::Config(f)) => (false, f),
    };
    let cfg = match load(&flags) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("ringo: {e}");
            return ExitCode::from(2);
        }
    };
    if !serve {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.server.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).init();
    let server_cfg = match cfg.server_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringo: {e}");
            return ExitCode::from(2);
        }
    };
    match Server::new(ringo::default_app).config(server_cfg).run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringo: {e}");
            ExitCode::from(1)
        }
    }
}
