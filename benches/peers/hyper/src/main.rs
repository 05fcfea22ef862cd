//! hyper 1 peer: one current-thread tokio runtime per worker thread (pinned), each with its own
//! SO_REUSEPORT listener, so the kernel spreads connections over the workers and a connection
//! stays on its thread. No router: a match on method and path.

#[path = "../../common/args.rs"]
mod args;
#[path = "../../common/listener.rs"]
mod listener;
#[path = "../../common/pin.rs"]
mod pin;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use std::convert::Infallible;

const MAX_BODY: usize = 1024 * 1024;

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut rsp = Response::new(Full::new(body.into()));
    *rsp.status_mut() = status;
    rsp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    rsp
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let rsp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/plaintext") => respond(StatusCode::OK, "text/plain", "Hello, World!"),
        (&Method::GET, "/json") => {
            let body = serde_json::to_vec(&Message { message: "Hello, World!" }).unwrap();
            respond(StatusCode::OK, "application/json", body)
        }
        (&Method::POST, "/echo") => match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body.to_bytes()) {
                Ok(doc) => respond(StatusCode::OK, "application/json", serde_json::to_vec(&doc).unwrap()),
                Err(_) => respond(StatusCode::BAD_REQUEST, "text/plain", "invalid JSON"),
            },
            Err(_) => respond(StatusCode::PAYLOAD_TOO_LARGE, "text/plain", "Payload Too Large"),
        },
        (&Method::GET, path) if path.starts_with("/users/") && path.len() > 7 && !path[7..].contains('/') => {
            let id = percent_encoding::percent_decode_str(&path[7..]).decode_utf8_lossy();
            respond(StatusCode::OK, "application/json", serde_json::to_vec(&User { id: &id }).unwrap())
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "Not Found"),
    };
    Ok(rsp)
}

async fn serve(listener: std::net::TcpListener) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    let mut http = http1::Builder::new();
    // Flush pipelined responses together, as TechEmpower's hyper entry does.
    http.timer(TokioTimer::new()).pipeline_flush(true);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(stream), service_fn(handle));
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

fn main() {
    let args = args::parse();
    let addr = args.addr();
    let cpus = pin::allowed_cpus();
    let workers: Vec<_> = (0..args.workers)
        .map(|i| {
            // Bind on the main thread so that a bad port fails before any worker starts.
            let listener = listener::reuseport(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            listener.set_nonblocking(true).expect("O_NONBLOCK");
            let cpus = cpus.clone();
            std::thread::Builder::new()
                .name(format!("hyper-{i}"))
                .spawn(move || {
                    pin::pin_current(i, &cpus);
                    let rt =
                        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    rt.block_on(serve(listener));
                })
                .expect("spawn worker")
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
