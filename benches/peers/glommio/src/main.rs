//! glommio peer: one executor per worker, pinned (`Placement::Fixed`), each with its own
//! SO_REUSEPORT listener; connections read into a buffer, httparse,
//! hand-written responses (common/http.rs, shared with monoio-bare).

#[path = "../../common/args.rs"]
mod args;
#[path = "../../common/http.rs"]
mod http;
#[path = "../../common/listener.rs"]
mod listener;
#[path = "../../common/pin.rs"]
mod pin;

use std::os::fd::{FromRawFd, IntoRawFd, RawFd};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};

const READ_CHUNK: usize = 8192;

async fn connection(mut stream: TcpStream) {
    let mut http = http::Http::new("glommio");
    let mut rbuf = vec![0u8; READ_CHUNK];
    let mut filled = 0;
    let mut wbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        if rbuf.len() - filled < READ_CHUNK / 4 {
            rbuf.resize(rbuf.len() + READ_CHUNK, 0);
        }
        match stream.read(&mut rbuf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => filled += n,
        }
        let done = http.process(&rbuf[..filled], &mut wbuf);
        rbuf.copy_within(done.consumed..filled, 0);
        filled -= done.consumed;
        if !wbuf.is_empty() {
            let res = stream.write_all(&wbuf).await;
            wbuf.clear();
            if res.is_err() {
                return;
            }
        }
        if done.close {
            return;
        }
    }
}

async fn serve(listener: RawFd) {
    // Our own socket rather than TcpListener::bind, which sets SO_REUSEPORT but not
    // SO_REUSEADDR (a restart would then fail on the last run's TIME_WAIT sockets).
    let listener = unsafe { TcpListener::from_raw_fd(listener) };
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(connection(stream)).detach();
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn main() {
    let args = args::parse();
    let addr = args.addr();
    let cpus = pin::allowed_cpus();
    let executors: Vec<_> = (0..args.workers)
        .map(|i| {
            let listener =
                listener::reuseport(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}")).into_raw_fd();
            let placement = pin::cpu_for(i, &cpus).map_or(Placement::Unbound, Placement::Fixed);
            LocalExecutorBuilder::new(placement)
                .name(&format!("glommio-{i}"))
                .spawn(move || serve(listener))
                .expect("spawn executor")
        })
        .collect();
    for ex in executors {
        let _ = ex.join();
    }
}
