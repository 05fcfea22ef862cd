//! The reverse-proxy helper, `c.proxy_to(&upstream)`: the serving request forwarded to
//! an [`Upstream`] and its answer relayed back through the `Context`.
//!
//! Forwarded: the method, the path and query as sent (after the upstream's base path),
//! the body, and every header except the hop-by-hop ones (RFC 9110 §7.6.1:
//! `Connection` and the fields it names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`) and `Host` (the upstream's authority is sent, as
//! nginx's `proxy_pass` does). `X-Forwarded-For` gets the client's address appended,
//! `X-Forwarded-Host` and `X-Forwarded-Proto` say what the client asked for; the
//! request's trace context and id go along (`ringo::client` adds them).
//!
//! Relayed: the status and the end-to-end headers. A body with a `Content-Length` up
//! to [`BUFFER_UP_TO`] is read whole and answered with its length; a longer or
//! chunked or close-delimited one is streamed piece by piece. A failure before the
//! answer's head becomes 502 (504 for timeouts, 503 with `Retry-After` while the
//! breaker is open); a failure in the middle of a streamed body closes the client's
//! connection without the end mark, so the client sees a truncated body as truncated.

use super::{ClientError, Upstream};
use crate::context::Context;

/// Bodies with a `Content-Length` up to this are relayed whole, with their length.
const BUFFER_UP_TO: u64 = 1 << 20;

/// Fields that belong to one connection, not to the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` must not be relayed: hop-by-hop, named by `Connection`, or in `also`.
fn skipped(name: &str, connection: &[u8], also: &[&str]) -> bool {
    HOP_BY_HOP.iter().chain(also).any(|h| name.eq_ignore_ascii_case(h))
        || connection
            .split(|&b| b == b',')
            .any(|t| crate::http::request::trim_ows(t).eq_ignore_ascii_case(name.as_bytes()))
}

impl Context {
    /// Forwards this request to `upstream` and relays its answer; see `client/proxy.rs`.
    /// On a failure the client is answered (502, 503 or 504) and the error returned.
    pub async fn proxy_to(&mut self, upstream: &Upstream) -> Result<(), ClientError> {
        let response = {
            let connection = self.header_bytes("connection").unwrap_or(b"");
            let mut target = String::with_capacity(self.path().len() + self.query_string().len() + 1);
            target.push_str(self.path());
            if !self.query_string().is_empty() {
                target.push('?');
                target.push_str(self.query_string());
            }
            let mut request = upstream.request(self.method(), &target);
            const REWRITTEN: [&str; 5] =
                ["host", "content-length", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"];
            for (name, value) in self.headers() {
                if skipped(name, connection, &REWRITTEN) {
                    continue;
                }
                if let Ok(value) = std::str::from_utf8(value) {
                    request = request.header(name, value);
                }
            }
            let client = self.client_addr().map(|a| a.ip().to_string());
            let forwarded_for = match (self.get_header("x-forwarded-for"), client.as_deref()) {
                (Some(prior), Some(ip)) => format!("{prior}, {ip}"),
                (None, Some(ip)) => ip.to_owned(),
                (Some(prior), None) => prior.to_owned(),
                (None, None) => String::new(),
            };
            if !forwarded_for.is_empty() {
                request = request.header("X-Forwarded-For", &forwarded_for);
            }
            if let Some(host) = self.get_header("host") {
                request = request.header("X-Forwarded-Host", host);
            }
            request = request.header("X-Forwarded-Proto", "http");
            request.body(self.body()).send().await
        };
        let mut response = match response {
            Ok(response) => response,
            Err(e) => {
                if let ClientError::BreakerOpen { retry_after, .. } = &e {
                    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                    self.header("Retry-After", itoa::Buffer::new().format(secs.max(1)));
                }
                tracing::warn!(upstream = upstream.authority(), error = %e, "proxy: upstream call failed");
                self.string(e.status(), &format!("{} {}\n", e.status(), gateway_reason(e.status())));
                return Err(e);
            }
        };
        let status = response.status();
        let content_type = response.header("content-type").unwrap_or("application/octet-stream").to_owned();
        {
            let connection = response.headers().find(|(n, _)| n.eq_ignore_ascii_case("connection"));
            let connection = connection.map_or(&b""[..], |(_, v)| v);
            for (name, value) in response.headers() {
                if skipped(name, connection, &["content-length", "content-type", "date"]) {
                    continue;
                }
                if let Ok(value) = std::str::from_utf8(value) {
                    // An upstream header we cannot send (bad bytes) is dropped, logged.
                    let _ = self.try_header(name, value);
                }
            }
        }
        if response.content_length().is_some_and(|n| n <= BUFFER_UP_TO) {
            return match response.bytes().await {
                Ok(body) => {
                    self.bytes(status, &content_type, &body);
                    Ok(())
                }
                Err(e) => {
                    self.resp.get_mut().headers.clear();
                    self.string(502, "502 bad gateway\n");
                    Err(e)
                }
            };
        }
        let stream_error = |c: &mut Context, e: ClientError| {
            // The head is out: only a close without the end mark tells the client.
            c.resp.get_mut().truncated = true;
            c.resp.get_mut().close = true;
            tracing::warn!(upstream = upstream.authority(), error = %e, "proxy: upstream body failed mid-stream");
            e
        };
        if let Err(e) = self.start_stream(status, &content_type).await {
            return Err(stream_error(
                self,
                ClientError::Io { upstream: upstream.authority().to_owned(), source: e },
            ));
        }
        loop {
            match response.chunk().await {
                Ok(Some(piece)) => {
                    if let Err(e) = self.write_stream(piece).await {
                        let upstream = upstream.authority().to_owned();
                        return Err(stream_error(self, ClientError::Io { upstream, source: e }));
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(stream_error(self, e)),
            }
        }
    }
}

fn gateway_reason(status: u16) -> &'static str {
    match status {
        503 => "service unavailable",
        504 => "gateway timeout",
        _ => "bad gateway",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_are_skipped() {
        let connection = b"keep-alive, X-Secret";
        for name in [
            "Connection",
            "Keep-Alive",
            "TE",
            "Transfer-Encoding",
            "Upgrade",
            "x-secret",
            "Proxy-Authorization",
        ] {
            assert!(skipped(name, connection, &[]), "{name}");
        }
        for name in ["Accept", "Cookie", "X-Request-Id", "traceparent"] {
            assert!(!skipped(name, connection, &[]), "{name}");
        }
        assert!(skipped("Host", b"", &["host"]));
    }
}
