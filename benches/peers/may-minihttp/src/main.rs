//! may_minihttp peer: stackful may coroutines scheduled over `may::config().set_workers(N)`
//! worker threads, one listener. Routes and bodies as ringo's default app.

#[path = "../../common/args.rs"]
mod args;

use std::io::{self, Read};

use bytes::BufMut;
use may_minihttp::{HttpServer, HttpService, Request, Response};
use serde::Serialize;

const MAX_BODY: usize = 1024 * 1024;

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
}

#[derive(Clone)]
struct Peer;

enum Route {
    Plaintext,
    Json,
    User(String),
    Echo,
    NotFound,
}

fn route(req: &Request) -> Route {
    let target = req.path();
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (req.method(), path) {
        ("GET", "/plaintext") => Route::Plaintext,
        ("GET", "/json") => Route::Json,
        ("POST", "/echo") => Route::Echo,
        ("GET", p) => match p.strip_prefix("/users/") {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                Route::User(percent_encoding::percent_decode_str(id).decode_utf8_lossy().into_owned())
            }
            _ => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

/// The client asked to close (`Connection: close`, or HTTP/1.0 without keep-alive).
/// may_minihttp keeps every connection open; saying `Connection: close` in the response makes
/// the client close it, so that connection churn churns.
fn wants_close(req: &Request) -> bool {
    let header = req.headers().iter().find(|h| h.name.eq_ignore_ascii_case("connection"));
    match header {
        Some(h) if h.value.eq_ignore_ascii_case(b"close") => true,
        Some(h) if h.value.eq_ignore_ascii_case(b"keep-alive") => false,
        _ => req.version() == 0,
    }
}

impl HttpService for Peer {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        if wants_close(&req) {
            rsp.header("Connection: close");
        }
        match route(&req) {
            Route::Plaintext => {
                rsp.header("Content-Type: text/plain").body("Hello, World!");
            }
            Route::Json => {
                rsp.header("Content-Type: application/json");
                serde_json::to_writer(rsp.body_mut().writer(), &Message { message: "Hello, World!" })?;
            }
            Route::User(id) => {
                rsp.header("Content-Type: application/json");
                serde_json::to_writer(rsp.body_mut().writer(), &User { id: &id })?;
            }
            Route::Echo => {
                let mut body = Vec::new();
                req.body().take(MAX_BODY as u64).read_to_end(&mut body)?;
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(doc) => {
                        rsp.header("Content-Type: application/json");
                        serde_json::to_writer(rsp.body_mut().writer(), &doc)?;
                    }
                    Err(_) => {
                        rsp.status_code(400, "Bad Request")
                            .header("Content-Type: text/plain")
                            .body("invalid JSON");
                    }
                }
            }
            Route::NotFound => {
                rsp.status_code(404, "Not Found").header("Content-Type: text/plain").body("Not Found");
            }
        }
        Ok(())
    }
}

fn main() {
    let args = args::parse();
    may::config().set_workers(args.workers);
    let server = HttpServer(Peer).start(args.addr()).unwrap_or_else(|e| panic!("bind {}: {e}", args.addr()));
    let _ = server.join();
}
