//! Bare monoio peer, the "bare runtime" baseline: one thread per worker (pinned), each with its
//! own monoio runtime (io_uring, epoll where io_uring is refused) and its own SO_REUSEPORT
//! listener; connections read into a buffer, httparse, hand-written responses (common/http.rs).

#[path = "../../common/args.rs"]
mod args;
#[path = "../../common/http.rs"]
mod http;
#[path = "../../common/pin.rs"]
mod pin;

use std::net::SocketAddr;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

const READ_CHUNK: usize = 8192;

async fn connection(mut stream: TcpStream) {
    let mut http = http::Http::new("monoio-bare");
    let mut rbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut wbuf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        let (len, cap) = (rbuf.len(), rbuf.capacity());
        let (res, slice) = stream.read(rbuf.slice_mut(len..cap)).await;
        rbuf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let done = http.process(&rbuf, &mut wbuf);
        rbuf.drain(..done.consumed);
        if !wbuf.is_empty() {
            let (res, buf) = stream.write_all(wbuf).await;
            wbuf = buf;
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

async fn serve(addr: SocketAddr) {
    let opts = ListenerOpts::new().reuse_port(true).backlog(4096);
    let listener = TcpListener::bind_with_config(addr, &opts).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(connection(stream));
            }
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

fn main() {
    let args = args::parse();
    let addr = args.addr();
    let cpus = pin::allowed_cpus();
    let workers: Vec<_> = (0..args.workers)
        .map(|i| {
            let cpus = cpus.clone();
            std::thread::Builder::new()
                .name(format!("monoio-{i}"))
                .spawn(move || {
                    pin::pin_current(i, &cpus);
                    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                        .with_entries(1024)
                        .build()
                        .expect("monoio runtime");
                    rt.block_on(serve(addr));
                })
                .expect("spawn worker")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
