//! The README's user app: JSON routes, a group with middleware, an async handler.
//!
//! Run: `cargo run --release --example hello`, then `curl localhost:8080/api/users/7`.

use ringo::middleware::{from_fn, logger};
use ringo::{Context, Next, Router, Server};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

fn app() -> Result<Router, ringo::RouteError> {
    let mut r = Router::new();
    r.middleware(logger());
    r.get("/ping", |c: &mut Context| c.json(200, &serde_json::json!({"message": "pong"})))?;
    let mut api = r.group("/api");
    api.middleware(from_fn(async |c: &mut Context, next: Next<'_>| {
        if c.get_header("x-token") == Some("secret") { next.run(c).await } else { c.abort_with_status(401) }
    }));
    api.get("/users/:id<\\d+>", |c: &mut Context| {
        let id = c.param("id").parse().unwrap_or(0);
        c.json(200, &User { id, name: format!("user {id}") });
    })?;
    api.post("/users", |c: &mut Context| {
        if let Ok(user) = c.bind_json::<User>() {
            c.json(201, &user);
        }
    })?;
    api.get("/slow", async |c: &mut Context| {
        ringo::time::sleep(std::time::Duration::from_millis(50)).await;
        c.string(200, "done");
    })?;
    Ok(r)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    Server::new(app).listen("0.0.0.0:8080".parse()?).run()?;
    Ok(())
}
