//! Trace context: W3C `traceparent`/`tracestate` (and B3, single and multi header)
//! accepted, validated and carried on, with a new span id for this hop.
//!
//! ```text
//! traceparent = version "-" trace-id "-" parent-id "-" trace-flags
//! version     = 2HEXDIGLC            ; not "ff"; "00" is exactly 55 characters long
//! trace-id    = 32HEXDIGLC           ; not all zeros
//! parent-id   = 16HEXDIGLC           ; not all zeros
//! trace-flags = 2HEXDIGLC            ; bit 0: sampled
//! b3          = trace-id "-" span-id [ "-" sampled [ "-" parent-span-id ] ] / sampled
//! ```
//!
//! A header that breaks these rules is never trusted: the request starts a new trace
//! (and an invalid `tracestate` is dropped). Handlers read the result with
//! `c.get::<TraceContext>()` and put [`TraceContext::traceparent`] on outgoing calls;
//! the access log writes its trace id. Ids come from a per-shard generator: no shared
//! state, no allocation (the context is a `Copy` value in the request's arena).

use std::cell::Cell;

use super::{Middleware, Next};
use crate::context::Context;
use crate::span_ring::SpanIds;

/// Longest `tracestate` carried on (W3C: 512 characters).
const TRACESTATE_MAX: usize = 512;

/// The trace this request belongs to, and this hop's span in it.
#[derive(Clone, Copy)]
pub struct TraceContext {
    trace_id: [u8; 16],
    /// `trace_id` in hex, rendered once: the log context and the access log both need it.
    trace_hex: [u8; 32],
    /// The caller's span (`None` when this request started the trace).
    parent_id: Option<[u8; 8]>,
    span_id: [u8; 8],
    sampled: bool,
    /// Whether the request carried a valid `tracestate` (with a valid `traceparent`).
    /// The value stays in the request's head, read again when asked for: copying up to
    /// 512 bytes into every request's context cost more than the rest of this middleware.
    has_tracestate: bool,
}

impl std::fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &hex_str(&self.trace_id_hex()))
            .field("span_id", &hex_str(&self.span_id_hex()))
            .field("sampled", &self.sampled)
            .finish_non_exhaustive()
    }
}

fn hex_str(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

impl TraceContext {
    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> [u8; 32] {
        self.trace_hex
    }

    /// This hop's span id, 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> [u8; 16] {
        hex_of(&self.span_id)
    }

    /// The caller's span id, when the request came with a valid trace header.
    pub fn parent_id_hex(&self) -> Option<[u8; 16]> {
        self.parent_id.as_ref().map(hex_of)
    }

    /// Whether the trace is sampled (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The `traceparent` value for an outgoing call made while serving this request:
    /// this trace, with this hop's span as the parent.
    pub fn traceparent(&self) -> [u8; 55] {
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        out[3..35].copy_from_slice(&self.trace_id_hex());
        out[35] = b'-';
        out[36..52].copy_from_slice(&self.span_id_hex());
        out[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        out
    }

    /// The `tracestate` to pass on, read from the request `c` this context belongs to
    /// (empty when none came, or it or the `traceparent` was invalid).
    pub fn tracestate<'c>(&self, c: &'c Context) -> &'c str {
        if self.has_tracestate { c.get_header("tracestate").unwrap_or("") } else { "" }
    }
}

/// Every byte's two lowercase hex digits: a byte costs one load (ids are written as hex
/// on every request of the default stack).
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        pairs[b] = [HEX[b >> 4], HEX[b & 15]];
        b += 1;
    }
    pairs
};

fn hex_of<const N: usize, const M: usize>(bytes: &[u8; N]) -> [u8; M] {
    let mut out = [0u8; M];
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
    out
}

/// Decodes exactly `2 * N` hex digits; lowercase only when `lower_only`.
fn parse_hex<const N: usize>(text: &[u8], lower_only: bool) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' if !lower_only => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// What an incoming header said: trace id, parent span, sampled.
type Incoming = ([u8; 16], [u8; 8], bool);

/// A W3C `traceparent` value, if valid.
fn parse_traceparent(v: &[u8]) -> Option<Incoming> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version: [u8; 1] = parse_hex(&v[..2], true)?;
    // Version ff is invalid; 00 is exactly 55 long; a later version may append fields
    // after a dash.
    if version[0] == 0xff || (version[0] == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace_id: [u8; 16] = parse_hex(&v[3..35], true)?;
    let parent: [u8; 8] = parse_hex(&v[36..52], true)?;
    let flags: [u8; 1] = parse_hex(&v[53..55], true)?;
    if trace_id == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace_id, parent, flags[0] & 1 == 1))
}

/// A B3 trace id: 16 or 32 hex digits (a 64-bit id is left-padded), not all zeros.
fn parse_b3_trace_id(v: &[u8]) -> Option<[u8; 16]> {
    let id = match v.len() {
        32 => parse_hex::<16>(v, false)?,
        16 => {
            let low: [u8; 8] = parse_hex(v, false)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            id
        }
        _ => return None,
    };
    (id != [0; 16]).then_some(id)
}

fn parse_b3_span_id(v: &[u8]) -> Option<[u8; 8]> {
    parse_hex::<8>(v, false).filter(|id| *id != [0; 8])
}

/// B3 single header: `{trace}-{span}[-{sampled}[-{parent}]]`.
fn parse_b3_single(v: &[u8]) -> Option<Incoming> {
    let mut parts = v.split(|&b| b == b'-');
    let trace_id = parse_b3_trace_id(parts.next()?)?;
    let span = parse_b3_span_id(parts.next()?)?;
    let sampled = match parts.next() {
        None | Some(b"1") | Some(b"d") => true,
        Some(b"0") => false,
        Some(_) => return None,
    };
    if let Some(parent) = parts.next() {
        parse_b3_span_id(parent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some((trace_id, span, sampled))
}

/// B3 multi headers: `X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`, `X-B3-Flags`.
fn parse_b3_multi(c: &Context) -> Option<Incoming> {
    let trace_id = parse_b3_trace_id(c.header_bytes("x-b3-traceid")?)?;
    let span = parse_b3_span_id(c.header_bytes("x-b3-spanid")?)?;
    let debug = c.header_bytes("x-b3-flags") == Some(b"1");
    let sampled = debug
        || match c.header_bytes("x-b3-sampled") {
            None | Some(b"1") | Some(b"true") => true,
            Some(b"0") | Some(b"false") => false,
            Some(_) => return None,
        };
    Some((trace_id, span, sampled))
}

/// Whether `v` is a plausible `tracestate`: at most 512 characters and 32 members, each
/// `key=value` of printable ASCII (RFC: W3C Trace Context §3.3).
fn valid_tracestate(v: &[u8]) -> bool {
    if v.is_empty() || v.len() > TRACESTATE_MAX || !v.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return false;
    }
    let mut members = 0;
    for member in v.split(|&b| b == b',') {
        let member = crate::http::request::trim_ows(member);
        if member.is_empty() {
            continue;
        }
        members += 1;
        let Some(eq) = member.iter().position(|&b| b == b'=') else { return false };
        if eq == 0 || eq + 1 == member.len() {
            return false;
        }
    }
    members <= 32
}

/// Accepts or starts the request's trace; see the module docs. Every trace this server
/// starts is sampled; see [`TraceContextMiddleware::sample_ratio`].
pub fn trace_context() -> TraceContextMiddleware {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
    TraceContextMiddleware { state: Cell::new(seed | 1), sample_below: None }
}

/// See [`trace_context`].
#[derive(Debug)]
pub struct TraceContextMiddleware {
    /// This shard's id generator (SplitMix64 state).
    state: Cell<u64>,
    /// A trace this server starts is sampled when the low 64 bits of its id are below
    /// this; `None`: always.
    sample_below: Option<u64>,
}

impl TraceContextMiddleware {
    /// Samples the traces this server starts with probability `ratio` (0 to 1), decided
    /// from the trace id, so every service using the same rule agrees. A trace that
    /// arrives with a valid header keeps the caller's decision (parent-based sampling).
    /// Sampled requests carry flag `01` downstream and, when span export is configured
    /// ([`TraceExport`](crate::TraceExport)), are recorded as spans.
    pub fn sample_ratio(mut self, ratio: f64) -> TraceContextMiddleware {
        self.sample_below = if ratio >= 1.0 || ratio.is_nan() {
            None
        } else {
            // 2^64 · ratio, saturating: 0 samples nothing.
            Some((ratio.max(0.0) * 18_446_744_073_709_551_616.0) as u64)
        };
        self
    }

    fn samples(&self, trace_id: &[u8; 16]) -> bool {
        let mut low = [0u8; 8];
        low.copy_from_slice(&trace_id[8..]);
        self.sample_below.is_none_or(|below| u64::from_be_bytes(low) < below)
    }

    fn next_u64(&self) -> u64 {
        let s = self.state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn new_span_id(&self) -> [u8; 8] {
        loop {
            let id = self.next_u64().to_be_bytes();
            if id != [0; 8] {
                return id;
            }
        }
    }

    fn new_trace_id(&self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        id[8..].copy_from_slice(&self.new_span_id());
        id
    }

    fn context_for(&self, c: &Context) -> TraceContext {
        let w3c = c.header_bytes("traceparent").and_then(parse_traceparent);
        let incoming =
            w3c.or_else(|| c.header_bytes("b3").and_then(parse_b3_single)).or_else(|| parse_b3_multi(c));
        let mut ctx = TraceContext {
            trace_id: [0; 16],
            trace_hex: [0; 32],
            parent_id: None,
            span_id: self.new_span_id(),
            sampled: true,
            has_tracestate: false,
        };
        match incoming {
            Some((trace_id, parent, sampled)) => {
                ctx.trace_id = trace_id;
                ctx.parent_id = Some(parent);
                ctx.sampled = sampled;
                ctx.has_tracestate =
                    w3c.is_some() && c.header_bytes("tracestate").is_some_and(valid_tracestate);
            }
            None => {
                ctx.trace_id = self.new_trace_id();
                ctx.sampled = self.samples(&ctx.trace_id);
            }
        }
        ctx.trace_hex = hex_of(&ctx.trace_id);
        ctx
    }
}

impl Middleware for TraceContextMiddleware {
    async fn handle<'a>(&'a self, c: &'a mut Context, next: Next<'a>) {
        let ctx = self.context_for(c);
        crate::logging::update(|l| l.set_trace(ctx.trace_hex, ctx.span_id_hex(), ctx.sampled));
        if ctx.sampled && c.shard.spans.enabled() {
            c.span = Some(SpanIds { trace_id: ctx.trace_id, span_id: ctx.span_id, parent_id: ctx.parent_id });
        }
        c.set(ctx);
        next.run(c).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_rules() {
        let (trace, parent, sampled) = parse_traceparent(VALID).expect("valid");
        assert_eq!(hex_of::<16, 32>(&trace), *b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex_of::<8, 16>(&parent), *b"00f067aa0ba902b7");
        assert!(sampled);
        let bad: [&[u8]; 9] = [
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  // short trace id
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // 00 is exactly 55
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // separator
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", // flags not hex
            b"",
        ];
        for v in bad {
            assert!(parse_traceparent(v).is_none(), "{:?}", String::from_utf8_lossy(v));
        }
        // A later version may carry more fields after a dash.
        assert!(
            parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra").is_some()
        );
    }

    #[test]
    fn b3_rules() {
        let (trace, span, sampled) =
            parse_b3_single(b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")
                .expect("valid");
        assert_eq!(hex_of::<16, 32>(&trace), *b"80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(hex_of::<8, 16>(&span), *b"e457b5a2e4d86bd1");
        assert!(sampled);
        // A 64-bit trace id is left-padded; sampling 0 is not sampled.
        let (trace, _, sampled) = parse_b3_single(b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-0").expect("valid");
        assert_eq!(&hex_of::<16, 32>(&trace)[..16], b"0000000000000000");
        assert!(!sampled);
        for bad in [
            &b"0"[..],
            b"zz-e457b5a2e4d86bd1",
            b"64fe8b2a57d3eff7-0000000000000000",
            b"64fe8b2a57d3eff7-e457b5a2e4d86bd1-x",
        ] {
            assert!(parse_b3_single(bad).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn tracestate_rules() {
        assert!(valid_tracestate(b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert!(!valid_tracestate(b"novalue"));
        assert!(!valid_tracestate(b"a=1,\x01=2"));
        assert!(!valid_tracestate(&[b'a'; 600]));
    }

    #[test]
    fn sampling_ratio_decides_from_the_trace_id() {
        let all = trace_context();
        let none = trace_context().sample_ratio(0.0);
        let half = trace_context().sample_ratio(0.5);
        let mut low = [0u8; 16];
        low[8] = 0x10;
        let mut high = [0u8; 16];
        high[8] = 0xf0;
        assert!(all.samples(&low) && all.samples(&high));
        assert!(!none.samples(&low) && !none.samples(&high));
        assert!(half.samples(&low) && !half.samples(&high));
        // Over many fresh ids, the share sampled is close to the ratio.
        let tenth = trace_context().sample_ratio(0.1);
        let sampled = (0..10_000).filter(|_| tenth.samples(&tenth.new_trace_id())).count();
        assert!((800..1200).contains(&sampled), "{sampled} of 10000 at 0.1");
    }

    #[test]
    fn outgoing_traceparent_names_this_hop_as_parent() {
        let m = trace_context();
        let ctx = TraceContext {
            trace_id: [7; 16],
            trace_hex: hex_of(&[7; 16]),
            parent_id: Some([1; 8]),
            span_id: m.new_span_id(),
            sampled: false,
            has_tracestate: false,
        };
        let out = ctx.traceparent();
        let (trace, parent, sampled) = parse_traceparent(&out).expect("what we send is valid");
        assert_eq!((trace, parent, sampled), ([7; 16], ctx.span_id, false));
    }
}
