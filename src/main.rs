//! The `ringo` binary: `ringo serve` runs the default app, `ringo config` prints the
//! effective configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ringo::config::{Config, Stack};
use ringo::doctor::{Host, Status, layout};
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
    /// Check this host for running ringo (io_uring, limits, CPUs, IRQs, NUMA…).
    Doctor(DoctorArgs),
}

#[derive(Args, Clone)]
struct DoctorArgs {
    #[command(flatten)]
    flags: Flags,
    /// Print findings as JSON.
    #[arg(long)]
    json: bool,
    /// Propose a CPU layout (shards, control thread, IRQs) instead of checking.
    #[arg(long)]
    layout: bool,
    /// Read /proc and /sys under this root instead of / (no live probes).
    #[arg(long, value_name = "DIR", env = "RINGO_SYSROOT")]
    root: Option<PathBuf>,
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
    /// The default app's middleware: bare or default (request id + access log).
    #[arg(long, value_enum, value_name = "STACK")]
    stack: Option<Stack>,
    /// Redis for the data path (/items/:id) and cluster rate limits, e.g.
    /// redis://127.0.0.1:6379.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
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
        if let Some(v) = self.stack {
            s.stack = v;
        }
        if let Some(v) = &self.redis {
            cfg.redis.url = v.clone();
        }
    }
}

fn load(flags: &Flags) -> Result<Config, String> {
    for var in Config::unknown_env_vars(std::env::vars()) {
        eprintln!("ringo: ignoring {var}: no such setting");
    }
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
        Some(Command::Doctor(args)) => return doctor(&args),
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
    // Every line logged while serving a request starts with its request and trace ids.
    let format = tracing_subscriber::fmt::format().with_target(false).with_ansi(ansi);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .event_format(ringo::logging::RequestIds(format))
        .init();
    let server_cfg = match cfg.server_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringo: {e}");
            return ExitCode::from(2);
        }
    };
    // The access log's writer runs beside the server when the stack logs.
    let sink = match cfg.server.stack {
        Stack::Bare => None,
        Stack::Default => match ringo::access_log::AccessLogSink::start(cfg.access_log.output()) {
            Ok(sink) => Some(sink),
            Err(e) => {
                eprintln!("ringo: cannot start the access log ({:?}): {e}", cfg.access_log.output());
                return ExitCode::from(1);
            }
        },
    };
    let app_config = cfg.clone();
    let app_sink = sink.clone();
    let factory = move || ringo::default_app_from(&app_config, app_sink.as_ref());
    let outcome = Server::new(factory).config(server_cfg).run();
    if let Some(sink) = sink {
        // The shards are gone and handed over their last lines: write them out.
        sink.drain(std::time::Duration::from_secs(2));
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ ringo::ServerError::Abandoned(_)) => {
            eprintln!("ringo: {e}");
            ExitCode::from(ringo::EXIT_ABANDONED as u8)
        }
        Err(e) => {
            eprintln!("ringo: {e}");
            ExitCode::from(1)
        }
    }
}

fn doctor(args: &DoctorArgs) -> ExitCode {
    let cfg = match load(&args.flags) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("ringo: {e}");
            return ExitCode::from(2);
        }
    };
    let host = match &args.root {
        Some(root) => Host::at(root),
        None => Host::real(),
    };
    if args.layout {
        let topo = layout::read_topology(&host);
        let plan = layout::propose(&topo);
        if args.json {
            let doc = serde_json::json!({ "topology": topo, "layout": plan });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        } else {
            print!("{}", layout::render(&topo, &plan));
        }
        return ExitCode::SUCCESS;
    }
    let findings = ringo::doctor::run(&host, &cfg);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings).unwrap_or_default());
    } else {
        print!("{}", ringo::doctor::render(&findings));
    }
    if findings.iter().any(|f| f.status == Status::Fail) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
