//! The `decode` target: query-string and path-parameter decoding, driven through a
//! real [`Context`] (the decoders are private to it) and checked against a reference.
//!
//! The input is used three ways: as a raw query string (every key the reference finds,
//! up to [`MAX_KEYS`], must get the reference's first value); cut at `/` into raw path
//! parameters (the reference decodes each, and all must be UTF-8 for the request to
//! pass); and percent-encoded, as a query value and as a parameter, which must decode
//! back to the input when it is UTF-8 and be refused when it is not.

use std::cell::RefCell;
use std::rc::Rc;

use crate::Context;
use crate::context::RouteMeta;
use crate::http::Limits;
use crate::http::request::Span;
use crate::shard_handle::ShardHandle;

/// At most this many keys are looked up per input (each lookup scans the query).
pub const MAX_KEYS: usize = 32;
/// At most this many path parameters are cut from one input.
const MAX_PARAMS: usize = 8;
const NAMES: [&str; MAX_PARAMS] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"];

thread_local! {
    static CTX: RefCell<Context> =
        RefCell::new(Context::new(ShardHandle::new(0, Limits::default(), 0, 0)));
}

/// Runs one input; `Err` says which property broke.
pub fn run(data: &[u8]) -> Result<(), String> {
    CTX.with_borrow_mut(|ctx| {
        let r = check_query(ctx, data)
            .and_then(|()| check_params(ctx, data))
            .and_then(|()| check_round_trips(ctx, data));
        ctx.reset_request();
        ctx.head.query = None;
        r
    })
}

/// Puts `query` in the context as the request's query string.
fn set_query(ctx: &mut Context, query: &[u8]) {
    ctx.reset_request();
    ctx.buf.clear();
    ctx.buf.extend_from_slice(query);
    ctx.head.query = Some(Span::new(0, query.len()));
}

/// Puts `values` in the context as the matched route's raw parameters and decodes them;
/// whether decoding accepted them.
fn set_params(ctx: &mut Context, values: &[&[u8]]) -> bool {
    ctx.reset_request();
    ctx.buf.clear();
    for v in values {
        let start = ctx.buf.len();
        ctx.buf.extend_from_slice(v);
        ctx.raw_params.push((start as u32, ctx.buf.len() as u32));
    }
    let names: Vec<Box<str>> = NAMES[..values.len()].iter().map(|&n| n.into()).collect();
    ctx.route = Some(Rc::new(RouteMeta { pattern: "/fuzz".into(), param_names: names.into() }));
    ctx.decode_params()
}

fn check_query(ctx: &mut Context, data: &[u8]) -> Result<(), String> {
    set_query(ctx, data);
    let mut keys: Vec<String> = Vec::new();
    for pair in data.split(|&b| b == b'&') {
        let key = pair.split(|&b| b == b'=').next().unwrap_or(pair);
        if let Some(k) = reference_query_part(key) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        if keys.len() == MAX_KEYS {
            break;
        }
    }
    keys.push("\u{0}absent".into());
    for key in &keys {
        let got = ctx.query(key);
        let want = reference_query(data, key);
        if got.as_deref() != want.as_deref() {
            return Err(format!("query {:?}: key {key:?} gave {got:?}, want {want:?}", lossy(data)));
        }
    }
    Ok(())
}

fn check_params(ctx: &mut Context, data: &[u8]) -> Result<(), String> {
    let values: Vec<&[u8]> = data.split(|&b| b == b'/').take(MAX_PARAMS).collect();
    let want: Vec<Option<String>> = values.iter().map(|v| utf8(reference_percent_decode(v))).collect();
    let accepted = set_params(ctx, &values);
    if accepted != want.iter().all(Option::is_some) {
        return Err(format!("parameters {values:?}: accepted {accepted}, reference {want:?}"));
    }
    if accepted {
        for (name, w) in NAMES.iter().zip(&want) {
            if Some(ctx.param(name)) != w.as_deref() {
                return Err(format!("parameter {name} of {values:?} is {:?}, want {w:?}", ctx.param(name)));
            }
        }
    }
    Ok(())
}

fn check_round_trips(ctx: &mut Context, data: &[u8]) -> Result<(), String> {
    let want = std::str::from_utf8(data).ok();
    for plus in [false, true] {
        let mut query = b"k=".to_vec();
        query.extend(percent_encode(data, plus));
        set_query(ctx, &query);
        let got = ctx.query("k");
        if got.as_deref() != want {
            return Err(format!("query value {:?} decoded to {got:?}", lossy(&query)));
        }
    }
    let encoded = percent_encode(data, false);
    let accepted = set_params(ctx, &[&encoded]);
    if accepted != want.is_some() || (accepted && Some(ctx.param("p0")) != want) {
        return Err(format!(
            "parameter {:?}: accepted {accepted}, got {:?}",
            lossy(&encoded),
            ctx.param("p0")
        ));
    }
    Ok(())
}

/// RFC 3986 percent-encoding of every byte but the unreserved ones; with `plus`, a
/// space becomes `+` (form encoding).
pub fn percent_encode(data: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() * 3);
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else if plus && b == b' ' {
            out.push(b'+');
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// `%XX` with two hex digits is that byte; any other `%` is itself.
pub fn reference_percent_decode(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            if let (Some(h), Some(l)) =
                (raw.get(i + 1).and_then(|&b| hex(b)), raw.get(i + 2).and_then(|&b| hex(b)))
            {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// One key or value of a query: `+` is a space, then percent-decoding; `None` when the
/// result is not UTF-8.
fn reference_query_part(raw: &[u8]) -> Option<String> {
    let spaced: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    utf8(reference_percent_decode(&spaced))
}

/// The first value of `key` in `query` (pairs split at `&`, key and value at the first
/// `=`); `None` when the key is absent or its value is not UTF-8.
fn reference_query(query: &[u8], key: &str) -> Option<String> {
    for pair in query.split(|&b| b == b'&') {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        if reference_query_part(k).as_deref() == Some(key) {
            return reference_query_part(v);
        }
    }
    None
}

fn utf8(v: Vec<u8>) -> Option<String> {
    String::from_utf8(v).ok()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_agrees_with_the_reference() {
        // (input): one line per decoding rule.
        let cases: &[&[u8]] = &[
            b"a=1&b=2&a=3",             // first value wins
            b"q=a+b%20c&%71=x",         // plus and percent; an encoded key
            b"k=%zz&j=%4&i=%",          // malformed escapes stay as they are
            b"x=%ff&y=%C3%A9",          // a value that is not UTF-8
            b"caf%C3%A9/%2F/plain/%E9", // parameters: an encoded slash, invalid UTF-8
            b"",
            b"&&==&",
        ];
        for c in cases {
            run(c).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn round_trip_encoding_is_reversible() {
        let data = b"a b+c/%\xff\xfe";
        assert_eq!(reference_percent_decode(&percent_encode(data, false)), data);
    }
}
