//! The access log: one structured line per request, formatted on the shard into the
//! shard's own buffer and written off the request path by one writer thread.
//!
//! ```text
//!  shard 0: logger ─ format line ─▶ buffer ─(full, or every 100 ms)─▶ channel ─┐
//!  shard 1: logger ─ format line ─▶ buffer ─────────────────────────▶ channel ─┤
//!                                                          writer thread ◀─────┘ write(2), recycle
//! ```
//!
//! Formats ([`AccessLogFormat`]):
//!
//! - `json`: `{"time":"2026-11-30T19:02:03.123Z","shard":0,"method":"GET",
//!   "route":"/users/:id","path":"/users/42","status":200,"bytes":12,"duration_us":35,
//!   "request_id":"…","trace_id":"…","client":"127.0.0.1:5555"}`
//! - `combined`: Apache/nginx combined, then ringo's fields:
//!   `127.0.0.1 - - [30/Nov/2026:19:02:03 +0000] "GET /users/42 HTTP/1.1" 200 12 "-"
//!   "curl/8.5" rt=0.000035 shard=0 route=/users/:id rid=… tid=…`
//!
//! Everything the client controls (path, query, referer, user agent, request id) is
//! escaped: JSON strings by serde_json, the combined format's quoted fields as `\xHH`
//! for `"`, `\` and control bytes (as nginx does), so a line can never be split or
//! forged by a request.
//!
//! Owns line formats and the writer ([`sink`]); the middleware that feeds it is
//! `middleware::logger`.

pub(crate) mod sink;

use std::cell::Cell;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use sink::{AccessLogSink, LogOutput};

/// How each access-log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Apache/nginx "combined", followed by `rt=` `shard=` `route=` `rid=`.
    Combined,
}

/// The current second's timestamps, rendered once a second (as nginx caches its time),
/// so a line costs a copy and three digits instead of a calendar computation.
#[derive(Debug, Default)]
pub(crate) struct TimeCache {
    /// `secs + 1` of the rendered second (0: nothing rendered yet).
    stamp: Cell<u64>,
    rfc: Cell<[u8; 24]>,
    clf: Cell<[u8; 26]>,
}

impl TimeCache {
    /// Renders the second of `since` (the time since the Unix epoch) if it is not the
    /// cached one; its milliseconds.
    fn refresh(&self, since: Duration) -> u32 {
        if self.stamp.get() != since.as_secs() + 1 {
            let second = UNIX_EPOCH + Duration::from_secs(since.as_secs());
            self.rfc.set(rfc3339_millis(second));
            self.clf.set(clf_time(second));
            self.stamp.set(since.as_secs() + 1);
        }
        since.subsec_millis()
    }

    /// `2026-11-30T19:02:03.123Z`.
    pub(crate) fn rfc3339(&self, time: Duration) -> [u8; 24] {
        let ms = self.refresh(time);
        let mut out = self.rfc.get();
        out[20] = b'0' + (ms / 100) as u8;
        out[21] = b'0' + (ms / 10 % 10) as u8;
        out[22] = b'0' + (ms % 10) as u8;
        out
    }

    /// `30/Nov/2026:19:02:03 +0000`.
    pub(crate) fn clf(&self, time: Duration) -> [u8; 26] {
        self.refresh(time);
        self.clf.get()
    }
}

/// What one line says about one request.
pub(crate) struct Entry<'a> {
    /// When the request's head was complete (as Apache's `%t`: the request's arrival),
    /// since the Unix epoch.
    pub(crate) time: Duration,
    /// The shard's rendered-time cache.
    pub(crate) clock: &'a TimeCache,
    pub(crate) shard: usize,
    pub(crate) method: &'a str,
    pub(crate) route: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: &'a str,
    pub(crate) minor_version: u8,
    pub(crate) status: u16,
    pub(crate) bytes: usize,
    pub(crate) duration_us: u64,
    pub(crate) request_id: Option<&'a str>,
    /// 32 lowercase hex digits, when the request carries a trace context.
    pub(crate) trace_id: Option<[u8; 32]>,
    pub(crate) client: Option<std::net::SocketAddr>,
    pub(crate) referer: Option<&'a [u8]>,
    pub(crate) user_agent: Option<&'a [u8]>,
}

/// Appends `entry` as one line (ending in `\n`) to `out`.
pub(crate) fn write_line(out: &mut Vec<u8>, format: AccessLogFormat, entry: &Entry<'_>) {
    match format {
        AccessLogFormat::Json => write_json(out, entry),
        AccessLogFormat::Combined => write_combined(out, entry),
    }
    out.push(b'\n');
}

fn write_json(out: &mut Vec<u8>, e: &Entry<'_>) {
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(&e.clock.rfc3339(e.time));
    out.extend_from_slice(b"\",\"shard\":");
    out.extend_from_slice(num.format(e.shard).as_bytes());
    out.extend_from_slice(b",\"method\":\"");
    out.extend_from_slice(e.method.as_bytes()); // a method is a token: nothing to escape
    out.extend_from_slice(b"\",\"route\":");
    json_string(out, e.route);
    out.extend_from_slice(b",\"path\":");
    json_string(out, e.path);
    if !e.query.is_empty() {
        out.extend_from_slice(b",\"query\":");
        json_string(out, e.query);
    }
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(num.format(e.status).as_bytes());
    out.extend_from_slice(b",\"bytes\":");
    out.extend_from_slice(num.format(e.bytes).as_bytes());
    out.extend_from_slice(b",\"duration_us\":");
    out.extend_from_slice(num.format(e.duration_us).as_bytes());
    if let Some(id) = e.request_id {
        out.extend_from_slice(b",\"request_id\":");
        json_string(out, id);
    }
    if let Some(trace) = &e.trace_id {
        out.extend_from_slice(b",\"trace_id\":\"");
        out.extend_from_slice(trace);
        out.push(b'"');
    }
    if let Some(client) = e.client {
        out.extend_from_slice(b",\"client\":\"");
        write_addr(out, client, true);
        out.push(b'"');
    }
    out.push(b'}');
}

/// Each octet's decimal digits (up to three, zero padded after) and their count.
const OCTETS: [[u8; 4]; 256] = {
    let mut table = [[0u8; 4]; 256];
    let mut n = 0;
    while n < 256 {
        let digits = [b'0' + (n / 100) as u8, b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8];
        table[n] = match n {
            0..=9 => [digits[2], 0, 0, 1],
            10..=99 => [digits[1], digits[2], 0, 2],
            _ => [digits[0], digits[1], digits[2], 3],
        };
        n += 1;
    }
    table
};

/// An address without `fmt` for IPv4 (every line has one); IPv6 through `fmt`.
///
/// An IPv4 address is rendered from a table of octets into a stack array and appended
/// in one copy: five `itoa` calls and nine appends were 290 instructions, 6 % of a
/// default-stack request.
fn write_addr(out: &mut Vec<u8>, addr: std::net::SocketAddr, with_port: bool) {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            // "255.255.255.255:65535", with room for a table entry's padding.
            let mut text = [0u8; 24];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                let digits = &OCTETS[usize::from(octet)];
                text[len..len + 4].copy_from_slice(digits);
                len += usize::from(digits[3]);
            }
            if with_port {
                text[len] = b':';
                len += 1;
                let mut num = itoa::Buffer::new();
                let port = num.format(addr.port()).as_bytes();
                text[len..len + port.len()].copy_from_slice(port);
                len += port.len();
            }
            out.extend_from_slice(&text[..len]);
        }
        std::net::IpAddr::V6(_) if with_port => {
            let _ = write!(out, "{addr}");
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// A JSON string literal (serde_json's escaping; no allocation). A string with nothing
/// to escape, nearly every one, is copied between quotes: serde_json's byte-by-byte
/// escape loop was 6 % of a default-stack request's instructions. Inlined into the
/// line writer (three calls a line): 23 instructions a request less.
#[inline(always)]
fn json_string(out: &mut Vec<u8>, s: &str) {
    if !crate::http::words::needs_json_escape(s.as_bytes()) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

fn write_combined(out: &mut Vec<u8>, e: &Entry<'_>) {
    match e.client {
        Some(c) => write_addr(out, c, false),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(&e.clock.clf(e.time));
    out.extend_from_slice(b"] \"");
    out.extend_from_slice(e.method.as_bytes());
    out.push(b' ');
    escaped(out, e.path.as_bytes());
    if !e.query.is_empty() {
        out.push(b'?');
        escaped(out, e.query.as_bytes());
    }
    out.extend_from_slice(if e.minor_version == 0 { b" HTTP/1.0\" " } else { b" HTTP/1.1\" " });
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(e.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(num.format(e.bytes).as_bytes());
    out.extend_from_slice(b" \"");
    escaped(out, e.referer.unwrap_or(b"-"));
    out.extend_from_slice(b"\" \"");
    escaped(out, e.user_agent.unwrap_or(b"-"));
    out.extend_from_slice(b"\" rt=");
    let _ = write!(out, "{}.{:06}", e.duration_us / 1_000_000, e.duration_us % 1_000_000);
    out.extend_from_slice(b" shard=");
    out.extend_from_slice(num.format(e.shard).as_bytes());
    out.extend_from_slice(b" route=");
    out.extend_from_slice(if e.route.is_empty() { b"-" } else { e.route.as_bytes() });
    out.extend_from_slice(b" rid=");
    match e.request_id {
        Some(id) => escaped(out, id.as_bytes()),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" tid=");
    match &e.trace_id {
        Some(trace) => out.extend_from_slice(trace),
        None => out.push(b'-'),
    }
}

/// Client-controlled bytes in the combined format: `"`, `\`, controls, space-free
/// tokens kept, and bytes over 0x7e as `\xHH` (nginx's escaping).
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Broken-down UTC time: (year, month, day, hour, minute, second, millisecond).
fn utc(time: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400) as u32;
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60, since.subsec_millis())
}

/// `2026-11-30T19:02:03.123Z`.
fn rfc3339_millis(time: SystemTime) -> [u8; 24] {
    let (y, mo, d, h, mi, s, ms) = utc(time);
    let mut buf = [0u8; 24];
    let _ = write!(&mut buf[..], "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
    buf
}

/// `30/Nov/2026:19:02:03 +0000`.
fn clf_time(time: SystemTime) -> [u8; 26] {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, mo, d, h, mi, s, _) = utc(time);
    let mut buf = [0u8; 26];
    let month = MONTHS[(mo as usize).clamp(1, 12) - 1];
    let _ = write!(&mut buf[..], "{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000");
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn times_render_in_utc() {
        assert_eq!(&rfc3339_millis(at(0, 0)), b"1970-01-01T00:00:00.000Z");
        // 2026-11-30 19:02:03.123 UTC
        assert_eq!(&rfc3339_millis(at(1_796_065_323, 123)), b"2026-11-30T19:02:03.123Z");
        // A leap day.
        assert_eq!(&rfc3339_millis(at(951_782_400, 5)), b"2000-02-29T00:00:00.005Z");
        assert_eq!(&clf_time(at(1_796_065_323, 0)), b"30/Nov/2026:19:02:03 +0000");
    }

    #[test]
    fn addresses_render_like_their_display() {
        for text in [
            "127.0.0.1:5555",
            "10.0.0.255:80",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "1.22.133.9:10000",
            "100.10.1.0:9",
            "[2001:db8::1]:4711",
        ] {
            check(text);
        }
        // Every octet in every position.
        for n in 0..=255u8 {
            check(&format!("{n}.{n}.{n}.{n}:{}", u16::from(n) * 257));
        }
        fn check(text: &str) {
            let addr: std::net::SocketAddr = text.parse().expect("addr");
            let mut out = Vec::new();
            write_addr(&mut out, addr, true);
            assert_eq!(out, text.as_bytes());
            out.clear();
            write_addr(&mut out, addr, false);
            assert_eq!(out, addr.ip().to_string().as_bytes());
        }
    }

    #[test]
    fn the_time_cache_renders_like_the_calendar_across_seconds() {
        let cache = TimeCache::default();
        for (secs, ms) in [
            (1_796_065_323, 0),
            (1_796_065_323, 999),
            (1_796_065_324, 5),
            (951_782_399, 42),
            (951_782_400, 7),
        ] {
            let since = at(secs, ms).duration_since(UNIX_EPOCH).expect("after the epoch");
            assert_eq!(cache.rfc3339(since), rfc3339_millis(at(secs, ms)), "{secs}.{ms}");
            assert_eq!(cache.clf(since), clf_time(at(secs, ms)), "{secs}.{ms}");
        }
    }

    fn entry<'a>(path: &'a str, ua: Option<&'a [u8]>) -> Entry<'a> {
        Entry {
            time: Duration::from_millis(1_796_065_323_123),
            // Leaked: a test's entries live as long as the test.
            clock: Box::leak(Box::new(TimeCache::default())),
            shard: 1,
            method: "GET",
            route: "/users/:id",
            path,
            query: "",
            minor_version: 1,
            status: 200,
            bytes: 12,
            duration_us: 35,
            request_id: Some("abc-1"),
            trace_id: None,
            client: Some("127.0.0.1:5555".parse().expect("addr")),
            referer: None,
            user_agent: ua,
        }
    }

    #[test]
    fn json_strings_are_what_serde_json_writes() {
        for s in
            ["", "/plaintext", "/users/:id", "a\"b", "back\\slash", "tab\there", "\u{1}", "café/ü", "\u{7f}x"]
        {
            for pad in ["", "0123456789abcdef"] {
                let s = format!("{pad}{s}{pad}");
                let mut out = Vec::new();
                json_string(&mut out, &s);
                assert_eq!(String::from_utf8(out).ok(), serde_json::to_string(&s).ok(), "{s:?}");
            }
        }
    }

    #[test]
    fn json_lines_parse_and_escape_what_the_client_sent() {
        let mut out = Vec::new();
        write_line(&mut out, AccessLogFormat::Json, &entry("/users/a\"b\\c", None));
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("one JSON object");
        assert_eq!(v["path"], "/users/a\"b\\c");
        assert_eq!(v["route"], "/users/:id");
        assert_eq!(v["status"], 200);
        assert_eq!(v["request_id"], "abc-1");
        assert_eq!(v["client"], "127.0.0.1:5555");
        assert_eq!(v["time"], "2026-11-30T19:02:03.123Z");
    }

    #[test]
    fn combined_lines_cannot_be_split_or_forged() {
        let mut out = Vec::new();
        let ua: &[u8] = b"evil\"\r\n127.0.0.1 - - forged";
        write_line(&mut out, AccessLogFormat::Combined, &entry("/users/42", Some(ua)));
        let line = String::from_utf8(out).expect("ascii");
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.starts_with("127.0.0.1 - - [30/Nov/2026:19:02:03 +0000] \"GET /users/42 HTTP/1.1\" 200 12 \"-\" \"evil\\x22\\x0D\\x0A127.0.0.1 - - forged\""), "{line}");
        assert!(line.ends_with("rt=0.000035 shard=1 route=/users/:id rid=abc-1 tid=-\n"), "{line}");
    }
}
