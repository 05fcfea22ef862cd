//! actix-web 4 peer: `HttpServer::workers(N)` single-threaded worker runtimes behind actix's
//! accept thread. Routes and bodies as ringo's default app.

#[path = "../../common/args.rs"]
mod args;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Serialize;

#[derive(Serialize)]
struct Message<'a> {
    message: &'a str,
}

#[derive(Serialize)]
struct User<'a> {
    id: &'a str,
}

async fn plaintext() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("Hello, World!")
}

async fn json() -> HttpResponse {
    let body = serde_json::to_vec(&Message { message: "Hello, World!" }).unwrap();
    HttpResponse::Ok().content_type("application/json").body(body)
}

async fn user(id: web::Path<String>) -> HttpResponse {
    let body = serde_json::to_vec(&User { id: &id }).unwrap();
    HttpResponse::Ok().content_type("application/json").body(body)
}

async fn echo(body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(doc) => {
            HttpResponse::Ok().content_type("application/json").body(serde_json::to_vec(&doc).unwrap())
        }
        Err(_) => HttpResponse::BadRequest().content_type("text/plain").body("invalid JSON"),
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = args::parse();
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .route("/plaintext", web::get().to(plaintext))
            .route("/json", web::get().to(json))
            .route("/users/{id}", web::get().to(user))
            .route("/echo", web::post().to(echo))
    })
    .workers(args.workers)
    .backlog(4096)
    .bind(args.addr())?
    .run()
    .await
}
