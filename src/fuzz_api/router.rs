//! The `router` target: registration and lookup, checked against a naive matcher.
//!
//! An input is lines (the first [`MAX_LINES`]). A line starting with an upper-case letter registers the rest of
//! the line as a pattern; any other line looks the rest of the line up as a path. The
//! letter (either case) picks the method: `G`et, `H`ead, `P`ost, `U`put, `D`elete,
//! p`A`tch, `O`ptions, `C`onnect, `T`race; any other byte picks one by its value. A
//! pattern with a space in it is `GROUP-PREFIX PATH`, registered through a group.
//!
//! ```text
//! G/users/:id
//! G/users/new
//! g/users/42
//! ```
//!
//! The oracle: registration returns `Ok` or `Err`, never panics. A pattern matches a
//! path in exactly one way (a parameter takes the whole segment, a catch-all the rest),
//! so a naive matcher over every registered pattern says which routes match. Then:
//! `Found` only for a route whose pattern matches, with exactly its parameter spans
//! (so every parameter is a piece of the path), and never a less specific route than
//! another that matches (static, then a parameter with a pattern, then a plain
//! parameter, then a catch-all, at the first byte where two routes differ); a miss only
//! when no route of the method matches; a redirect only when the path with its trailing
//! slash toggled matches; 405 exactly for the other methods that match.

use std::cell::RefCell;
use std::collections::HashMap;

use regex::bytes::Regex;

use crate::http::Method;
use crate::router::tree::{Segment, parse_pattern};
use crate::router::{Dispatch, Router};
use crate::{Context, RouteError};

/// Lines past this many are ignored, so that one input stays cheap to run.
pub const MAX_LINES: usize = 128;
/// The oracle's compiled parameter patterns are kept up to this many.
const REGEX_CACHE: usize = 4096;

thread_local! {
    static COMPILED: RefCell<HashMap<String, Regex>> = RefCell::new(HashMap::new());
}

/// A registered route as the naive matcher sees it.
struct Known {
    id: u32,
    method: Method,
    pattern: String,
    regexes: Vec<Regex>,
}

/// Runs one input; `Err` says which property broke.
pub fn run(data: &[u8]) -> Result<(), String> {
    let mut router = Router::new();
    let mut known: Vec<Known> = Vec::new();
    let mut params = Vec::new();
    let mut scratch = Vec::new();
    let mut finished = false;
    for line in data.split(|&b| b == b'\n').take(MAX_LINES) {
        let Some((&first, rest)) = line.split_first() else { continue };
        let method = method_of(first);
        if first.is_ascii_uppercase() {
            if finished {
                continue; // the router is built before it serves
            }
            let text = String::from_utf8_lossy(rest);
            let registered = match text.split_once(' ') {
                Some((prefix, path)) => register(router.group(prefix).handle(method, path, noop).map(|_| ())),
                None => register(router.handle(method, &text, noop).map(|_| ())),
            }?;
            if registered {
                let id = router.len() as u32 - 1;
                let pattern = router.route(id).meta.pattern.to_string();
                let regexes = compile(&pattern)?;
                known.push(Known { id, method, pattern, regexes });
            }
        } else {
            if !finished {
                router.finish();
                finished = true;
            }
            params.clear();
            let d = router.dispatch(method, rest, &mut params, &mut scratch);
            check_lookup(&known, method, rest, d, &params)
                .map_err(|e| format!("{method} {:?} -> {d:?}: {e}", String::from_utf8_lossy(rest)))?;
        }
    }
    Ok(())
}

fn noop(_: &mut Context) {}

/// `Ok(true)` when registered; an error value is fine, a malformed one is not.
fn register(r: Result<(), RouteError>) -> Result<bool, String> {
    match r {
        Ok(()) => Ok(true),
        Err(RouteError::Conflict { route, existing }) if route.is_empty() || existing.is_empty() => {
            Err("a conflict that does not name both routes".into())
        }
        Err(_) => Ok(false),
    }
}

fn method_of(b: u8) -> Method {
    match b.to_ascii_uppercase() {
        b'G' => Method::Get,
        b'H' => Method::Head,
        b'P' => Method::Post,
        b'U' => Method::Put,
        b'D' => Method::Delete,
        b'A' => Method::Patch,
        b'O' => Method::Options,
        b'C' => Method::Connect,
        b'T' => Method::Trace,
        other => Method::ALL[usize::from(other) % Method::ALL.len()],
    }
}

fn compile(pattern: &str) -> Result<Vec<Regex>, String> {
    let segs =
        parse_pattern(pattern).map_err(|e| format!("registered pattern {pattern:?} does not parse: {e}"))?;
    segs.iter()
        .filter_map(|s| match s {
            Segment::Param { pattern: Some(p), .. } => Some(p),
            _ => None,
        })
        .map(|p| compile_one(p))
        .collect()
}

fn compile_one(p: &str) -> Result<Regex, String> {
    COMPILED.with_borrow_mut(|cache| {
        if let Some(re) = cache.get(p) {
            return Ok(re.clone());
        }
        let re = Regex::new(&format!("^(?:{p})$"))
            .map_err(|e| format!("registered regex does not compile: {e}"))?;
        if cache.len() >= REGEX_CACHE {
            cache.clear();
        }
        cache.insert(p.to_owned(), re.clone());
        Ok(re)
    })
}

/// What a pattern's piece is at one byte of the path, for comparing specificity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'p> {
    /// A static byte, or the end of a pattern at the end of the path.
    Static,
    /// A parameter with this regex.
    Patterned(&'p str),
    /// A plain parameter.
    Param,
    /// A catch-all.
    CatchAll,
}

impl Kind<'_> {
    fn rank(self) -> u8 {
        match self {
            Kind::Static => 0,
            Kind::Patterned(_) => 1,
            Kind::Param => 2,
            Kind::CatchAll => 3,
        }
    }
}

/// How `pattern` matches `path`: its parameter spans and the kind of piece at each
/// decision point `(offset, kind, end)`; `None` when it does not match.
#[allow(clippy::type_complexity)]
fn naive_match<'p>(
    pattern: &'p str,
    regexes: &[Regex],
    path: &[u8],
) -> Option<(Vec<(u32, u32)>, Vec<(usize, Kind<'p>, usize)>)> {
    let segs = parse_pattern(pattern).ok()?;
    let mut spans = Vec::new();
    let mut marks = Vec::new();
    let mut res = regexes.iter();
    let mut at = 0;
    for seg in &segs {
        match seg {
            Segment::Static(text) => {
                if !path[at..].starts_with(text) {
                    return None;
                }
                marks.push((at, Kind::Static, at + text.len()));
                at += text.len();
            }
            Segment::Param { pattern, .. } => {
                let end = at + path[at..].iter().position(|&b| b == b'/').unwrap_or(path.len() - at);
                if end == at {
                    return None;
                }
                let kind = match pattern {
                    Some(p) => {
                        if !res.next()?.is_match(&path[at..end]) {
                            return None;
                        }
                        Kind::Patterned(p)
                    }
                    None => Kind::Param,
                };
                spans.push((at as u32, end as u32));
                marks.push((at, kind, end));
                at = end;
            }
            Segment::CatchAll { .. } => {
                spans.push((at as u32, path.len() as u32));
                marks.push((at, Kind::CatchAll, path.len()));
                at = path.len();
            }
        }
    }
    (at == path.len()).then_some((spans, marks))
}

/// The kind of piece `marks` has at byte `at`.
fn kind_at<'p>(marks: &[(usize, Kind<'p>, usize)], at: usize) -> Kind<'p> {
    marks
        .iter()
        .find(|(start, kind, end)| *start == at || (*kind == Kind::Static && *start <= at && at < *end))
        .map_or(Kind::Static, |m| m.1)
}

/// Whether `found` is at least as specific as `other` where they first differ.
fn not_less_specific(
    found: &[(usize, Kind<'_>, usize)],
    other: &[(usize, Kind<'_>, usize)],
    len: usize,
) -> bool {
    let mut at = 0;
    while at <= len {
        let (a, b) = (kind_at(found, at), kind_at(other, at));
        match (a, b) {
            (Kind::Patterned(x), Kind::Patterned(y)) if x != y => return true, // edge order: untested
            _ if a.rank() != b.rank() => return a.rank() < b.rank(),
            (Kind::CatchAll, _) => return true,
            (Kind::Static, _) => at += 1,
            _ => {
                // The same parameter edge: both take the segment.
                at = found.iter().find(|m| m.0 == at).map_or(at + 1, |m| m.2.max(at + 1));
            }
        }
    }
    true
}

fn matching<'k>(known: &'k [Known], method: Method, path: &[u8]) -> Vec<(&'k Known, Vec<(u32, u32)>)> {
    known
        .iter()
        .filter(|k| k.method == method)
        .filter_map(|k| naive_match(&k.pattern, &k.regexes, path).map(|(spans, _)| (k, spans)))
        .collect()
}

/// The routes a lookup with `method` may land on (HEAD falls back to GET).
fn candidates<'k>(known: &'k [Known], method: Method, path: &[u8]) -> Vec<(&'k Known, Vec<(u32, u32)>)> {
    let found = matching(known, method, path);
    if found.is_empty() && method == Method::Head { matching(known, Method::Get, path) } else { found }
}

fn check_lookup(
    known: &[Known],
    method: Method,
    path: &[u8],
    d: Dispatch,
    params: &[(u32, u32)],
) -> Result<(), String> {
    let here = candidates(known, method, path);
    match d {
        Dispatch::Found(id) => {
            let Some((k, spans)) = here.iter().find(|(k, _)| k.id == id) else {
                return Err(format!(
                    "found route {id}, whose pattern does not match; matching: {}",
                    names(&here)
                ));
            };
            if params != spans.as_slice() {
                return Err(format!("parameters {params:?}, the pattern {} gives {spans:?}", k.pattern));
            }
            for &(s, e) in params {
                if s > e || e as usize > path.len() {
                    return Err(format!("parameter span {s}..{e} outside the path"));
                }
            }
            let (_, mine) = naive_match(&k.pattern, &k.regexes, path).ok_or("no longer matches")?;
            for (other, _) in &here {
                let (_, theirs) =
                    naive_match(&other.pattern, &other.regexes, path).ok_or("no longer matches")?;
                if !not_less_specific(&mine, &theirs, path.len()) {
                    return Err(format!("{} won over the more specific {}", k.pattern, other.pattern));
                }
            }
            Ok(())
        }
        _ if !here.is_empty() => Err(format!("missed; matching: {}", names(&here))),
        _ if !params.is_empty() => Err(format!("a miss left parameters {params:?}")),
        Dispatch::Redirect(status) => {
            let toggled = toggle_slash(path).ok_or("a redirect for a path that cannot be toggled")?;
            if method == Method::Connect || candidates(known, method, &toggled).is_empty() {
                return Err("a redirect to a path that does not match either".into());
            }
            let want = if matches!(method, Method::Get | Method::Head) { 301 } else { 308 };
            if status != want { Err(format!("redirect status {status}, want {want}")) } else { Ok(()) }
        }
        Dispatch::NotAllowed(_) | Dispatch::NotFound if redirect_expected(known, method, path) => {
            Err(format!("{d:?} where the toggled path matches"))
        }
        Dispatch::NotAllowed(allowed) => {
            let want = allowed_set(known, method, path);
            if allowed != want { Err(format!("Allow set {allowed:#b}, want {want:#b}")) } else { Ok(()) }
        }
        Dispatch::NotFound => {
            let want = allowed_set(known, method, path);
            if want != 0 { Err(format!("not found, yet methods {want:#b} match")) } else { Ok(()) }
        }
    }
}

fn redirect_expected(known: &[Known], method: Method, path: &[u8]) -> bool {
    method != Method::Connect && toggle_slash(path).is_some_and(|t| !candidates(known, method, &t).is_empty())
}

fn toggle_slash(path: &[u8]) -> Option<Vec<u8>> {
    if path.len() <= 1 {
        return None;
    }
    Some(match path.strip_suffix(b"/") {
        Some(trimmed) => trimmed.to_vec(),
        None => [path, b"/"].concat(),
    })
}

fn allowed_set(known: &[Known], method: Method, path: &[u8]) -> u16 {
    let mut set = 0u16;
    for m in Method::ALL {
        if m != method && !matching(known, m, path).is_empty() {
            set |= 1 << m as u16;
            if m == Method::Get {
                set |= 1 << Method::Head as u16;
            }
        }
    }
    set
}

fn names(v: &[(&Known, Vec<(u32, u32)>)]) -> String {
    v.iter().map(|(k, _)| format!("{} {}", k.method, k.pattern)).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_agree_with_the_naive_matcher() {
        let input = b"G/users/new\nG/users/:id\nG/users/:id/edit\nG/n/:n<[0-9]+>\nG/n/:m\nG/static/*path\n\
G/users/:name\nP/api /x\ng/users/new\ng/users/42\ng/users/42/edit\ng/users/\ng/n/12\ng/n/ab\n\
h/static/\ng/static/a/b\np/users/1\np/api/x\ng/api/x\ng\xff/x";
        run(input).expect("agree");
    }

    #[test]
    fn naive_matcher_takes_whole_segments() {
        let (spans, _) = naive_match("/a/:x/*rest", &[], b"/a/bc/d/e").expect("match");
        assert_eq!(spans, vec![(3, 5), (6, 9)]);
        assert!(naive_match("/a/:x", &[], b"/a/").is_none());
    }
}
