//! Command line shared by every Rust peer: `<binary> --port PORT --workers N [--host ADDR]`.
//!
//! Included by each peer with `#[path = "../../common/args.rs"] mod args;`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::exit;

pub struct Args {
    pub host: String,
    pub port: u16,
    /// Worker threads (shards, executors, runtimes): at least 1.
    pub workers: usize,
}

impl Args {
    pub fn addr(&self) -> SocketAddr {
        match (self.host.as_str(), self.port).to_socket_addrs().ok().and_then(|mut a| a.next()) {
            Some(addr) => addr,
            None => usage(&format!("cannot resolve host `{}`", self.host)),
        }
    }
}

fn usage(err: &str) -> ! {
    let bin = std::env::args().next().unwrap_or_else(|| "peer".into());
    eprintln!("{bin}: {err}\nusage: {bin} [--port PORT (8080)] [--workers N (1)] [--host ADDR (127.0.0.1)]");
    exit(2)
}

pub fn parse() -> Args {
    let mut args = Args { host: "127.0.0.1".into(), port: 8080, workers: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (arg.clone(), None),
        };
        if flag == "-h" || flag == "--help" {
            usage("help");
        }
        let mut value = || {
            inline.clone().or_else(|| it.next()).unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.trim_start_matches('-') {
            "port" => args.port = value().parse().unwrap_or_else(|_| usage("bad --port")),
            "workers" => args.workers = value().parse().unwrap_or_else(|_| usage("bad --workers")),
            "host" => args.host = value(),
            _ => usage(&format!("unknown argument `{arg}`")),
        }
    }
    args.workers = args.workers.max(1);
    args
}
