//! Wire rules over real sockets, on both io backends: chunked framing (RFC 9112 section
//! 7.1), bare CR or LF in the head, request-line spacing, `Host` values, percent-encoding
//! in the path and absolute-form targets.
//!
//! Every refused case is written together with a valid second request, in one write. The
//! refusal must be its status with `Connection: close`, and the second request must never
//! be answered: that is the "no smuggled request is answered" property.

mod common;

use std::net::SocketAddr;

use common::{BACKENDS, Raw, start_default, start_with};
use ringo::{Context, IoBackend, Limits, Router};

/// The request written right after each refused one; it must get no answer.
const SMUGGLED: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";

/// Sends each case followed by [`SMUGGLED`] on a fresh connection; checks the status, the
/// close, and that nothing else comes back.
fn assert_refused(addr: SocketAddr, backend: IoBackend, cases: &[(&[u8], u16)]) {
    for (raw, status) in cases {
        let shown = String::from_utf8_lossy(raw);
        let mut c = Raw::connect(addr);
        c.send(&[raw, SMUGGLED].concat());
        let r = c.response();
        assert_eq!(r.status, *status, "{backend:?} {shown:?}");
        assert_eq!(r.header("connection"), Some("close"), "{backend:?} {shown:?}");
        assert!(c.closed(), "{backend:?}: the request after {shown:?} was answered");
    }
}

/// Sends each case on a fresh connection and checks the status and body it gets.
fn assert_answered(addr: SocketAddr, backend: IoBackend, cases: &[(&[u8], u16, &str)]) {
    for (raw, status, body) in cases {
        let shown = String::from_utf8_lossy(raw);
        let mut c = Raw::connect(addr);
        c.send(raw);
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (*status, *body), "{backend:?} {shown:?}");
    }
}

/// A chunked POST to /echo with `body` after the head.
fn chunked(body: &str) -> Vec<u8> {
    format!("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{body}").into_bytes()
}

#[test]
fn chunked_framing_outside_the_grammar_is_refused() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (chunked("0x5\r\n{\"a\"}\r\n0\r\n\r\n"), 400), // "0" then junk read as a last chunk
        (chunked("5 junk\r\n{\"a\"}\r\n0\r\n\r\n"), 400), // junk after BWS without ";"
        (chunked("5;\r\n{\"a\"}\r\n0\r\n\r\n"), 400),  // ";" without a name
        (chunked("5;=x\r\n{\"a\"}\r\n0\r\n\r\n"), 400), // "=" without a name
        (chunked("5;a=\"q\r\n{\"a\"}\r\n0\r\n\r\n"), 400), // unterminated quoted string
        (chunked("5\n{\"a\"}\r\n0\r\n\r\n"), 400),     // bare LF after the size
        (chunked("5\r{\"a\"}\r\n0\r\n\r\n"), 400),     // bare CR after the size
        (chunked("10000000000000000\r\n"), 400),       // size overflows 64 bits
        (chunked("0\r\nX-T 1\r\n\r\n"), 400),          // trailer without a colon
        (chunked("0\r\nX-T : 1\r\n\r\n"), 400),        // trailer with SP before the colon
        (chunked("0\r\n X: 1\r\n\r\n"), 400),          // folded trailer line
        (chunked("0\r\n\n"), 400),                     // bare LF ending the body
        (chunked(&format!("5;a={}\r\n", "b".repeat(5000))), 400), // size line over 4 KiB
    ];
    let cases: Vec<(&[u8], u16)> = cases.iter().map(|(r, s)| (&r[..], *s)).collect();
    for backend in BACKENDS {
        let server = start_default(1, backend);
        assert_refused(server.local_addr(), backend, &cases);
        server.shutdown();
    }
}

#[test]
fn valid_chunked_bodies_with_extensions_and_trailers_still_echo() {
    for backend in BACKENDS {
        let server = start_default(1, backend);
        let mut c = Raw::connect(server.local_addr());
        // BWS around ";" and "=", a quoted value with a quoted-pair, a name alone,
        // a last chunk of several zeros with an extension, two trailers (one empty).
        let body = "4 ; ext = 1\r\n{\"a\"\r\n3;q=\"x\\\"y\";flag\r\n:[1\r\n2\r\n]}\r\n\
                    000;end=\"\"\r\nX-Trailer:  yes \r\nY:\r\n\r\n";
        c.send(&[&chunked(body)[..], SMUGGLED].concat());
        assert_eq!(c.response().text(), r#"{"a":[1]}"#, "{backend:?}");
        // The request after the body is framed where the body ended.
        assert_eq!(c.response().text(), "Hello, World!", "{backend:?}");
        server.shutdown();
    }
}

#[test]
fn bare_cr_or_lf_in_the_head_is_refused() {
    let cases: &[(&[u8], u16)] = &[
        (b"GET /plaintext HTTP/1.1\nHost: t\r\n\r\n", 400), // bare LF after the request line
        (b"GET /plaintext HTTP/1.1\r\nHost: t\n\r\n", 400), // bare LF after a field
        (b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\n", 400), // bare LF as the empty line
        (b"GET /plaintext HTTP/1.1\nHost: t\n\n", 400),     // LF-only head
        (b"\nGET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n", 400), // bare LF before the request line
        (b"GET /plaintext HTTP/1.1\rHost: t\r\n\r\n", 400), // bare CR after the request line
        (b"GET /plaintext HTTP/1.1\r\nHost: t\rX: 1\r\n\r\n", 400), // bare CR between fields
        (b"GET /plaintext HTTP/1.1\r\nX: a\rb\r\nHost: t\r\n\r\n", 400), // CR inside a value
    ];
    for backend in BACKENDS {
        let server = start_default(1, backend);
        assert_refused(server.local_addr(), backend, cases);
        server.shutdown();
    }
}

#[test]
fn request_line_spacing_is_400_not_505() {
    let cases: &[(&[u8], u16)] = &[
        (b"GET /plaintext  HTTP/1.1\r\nHost: t\r\n\r\n", 400), // two SP before the version (was 505)
        (b"GET  /plaintext HTTP/1.1\r\nHost: t\r\n\r\n", 400), // two SP before the target
        (b"GET /plaintext HTTP/1.1 \r\nHost: t\r\n\r\n", 400), // SP before CRLF
        (b"GET /plain text HTTP/1.1\r\nHost: t\r\n\r\n", 400), // SP inside the target
        (b"GET /plaintext HTTP/2.0\r\nHost: t\r\n\r\n", 505),  // well formed, other version
    ];
    for backend in BACKENDS {
        let server = start_default(1, backend);
        assert_refused(server.local_addr(), backend, cases);
        server.shutdown();
    }
}

#[test]
fn host_values_must_be_uri_host_and_port() {
    let refused: &[(&[u8], u16)] = &[
        (b"GET /plaintext HTTP/1.1\r\nHost: t t\r\n\r\n", 400), // SP inside
        (b"GET /plaintext HTTP/1.1\r\nHost: t/x\r\n\r\n", 400), // a path
        (b"GET /plaintext HTTP/1.1\r\nHost: u@t\r\n\r\n", 400), // userinfo
        (b"GET /plaintext HTTP/1.1\r\nHost: t:http\r\n\r\n", 400), // non-numeric port
        (b"GET /plaintext HTTP/1.1\r\nHost: t:65536\r\n\r\n", 400), // port over 65535
        (b"GET /plaintext HTTP/1.1\r\nHost: [::1\r\n\r\n", 400), // unclosed IP-literal
        (b"GET /plaintext HTTP/1.1\r\nHost: t%zz\r\n\r\n", 400), // bad pct-encoding
    ];
    let answered: &[(&[u8], u16, &str)] = &[
        (b"GET /plaintext HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 200, "Hello, World!"),
        (b"GET /plaintext HTTP/1.1\r\nHost: t:\r\n\r\n", 200, "Hello, World!"), // empty port
        (b"GET /plaintext HTTP/1.1\r\nHost:\r\n\r\n", 200, "Hello, World!"),    // empty Host
    ];
    for backend in BACKENDS {
        let server = start_default(1, backend);
        assert_refused(server.local_addr(), backend, refused);
        assert_answered(server.local_addr(), backend, answered);
        server.shutdown();
    }
}

#[test]
fn malformed_percent_encoding_in_the_path_is_refused() {
    let refused: &[(&[u8], u16)] = &[
        (b"GET /users/a%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400), // not hex
        (b"GET /users/a%4 HTTP/1.1\r\nHost: t\r\n\r\n", 400),  // one digit
        (b"GET /users/a% HTTP/1.1\r\nHost: t\r\n\r\n", 400),   // "%" last
        (b"GET /users/%?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", 400), // "%" before the query
    ];
    let answered: &[(&[u8], u16, &str)] = &[
        (b"GET /users/a%41 HTTP/1.1\r\nHost: t\r\n\r\n", 200, r#"{"id":"aA"}"#),
        (b"GET /users/7?x=%zz HTTP/1.1\r\nHost: t\r\n\r\n", 200, r#"{"id":"7"}"#), // query as sent
    ];
    for backend in BACKENDS {
        let server = start_default(1, backend);
        assert_refused(server.local_addr(), backend, refused);
        assert_answered(server.local_addr(), backend, answered);
        server.shutdown();
    }
}

/// Answers `path?query host` for `/` and `/p`, so a test sees what the handler sees.
fn echo_target() -> Result<Router, ringo::RouteError> {
    fn show(c: &mut Context) {
        let host = c.get_header("host").unwrap_or("-").to_string();
        c.string(200, &format!("{}?{} {host}", c.path(), c.query_string()));
    }
    let mut r = Router::new();
    r.get("/", show)?;
    r.get("/p", show)?;
    Ok(r)
}

#[test]
fn absolute_form_targets_route_by_path_and_their_authority_is_the_host() {
    let answered: &[(&[u8], u16, &str)] = &[
        (b"GET http://example.com HTTP/1.1\r\nHost: other\r\n\r\n", 200, "/? example.com"), // empty path
        (b"GET http://h:8080?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", 200, "/?x=1 h:8080"),        // query, no path
        (b"GET HTTP://[::1]/p?y HTTP/1.1\r\nHost: h\r\n\r\n", 200, "/p?y [::1]"),           // IP-literal
        (b"GET /p?z HTTP/1.1\r\nHost: h:1\r\n\r\n", 200, "/p?z h:1"), // origin-form as before
    ];
    let refused: &[(&[u8], u16)] = &[
        (b"GET http://user@h/p HTTP/1.1\r\nHost: h\r\n\r\n", 400), // userinfo
        (b"GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n", 400),       // empty host
        (b"GET http://h:x/p HTTP/1.1\r\nHost: h\r\n\r\n", 400),    // non-numeric port
        (b"GET http://h/p%z HTTP/1.1\r\nHost: h\r\n\r\n", 400),    // bad pct-encoding in the path
    ];
    for backend in BACKENDS {
        let server = start_with(echo_target, 1, backend, Limits::default());
        assert_answered(server.local_addr(), backend, answered);
        assert_refused(server.local_addr(), backend, refused);
        server.shutdown();
        // The default app routes an absolute-form target by its path.
        let server = start_default(1, backend);
        let ok: &[(&[u8], u16, &str)] =
            &[(b"GET http://example.com/users/7?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", 200, r#"{"id":"7"}"#)];
        assert_answered(server.local_addr(), backend, ok);
        server.shutdown();
    }
}
