//! Router tests in the style of httprouter's and matchit's: tables run through small
//! helpers, one comment per case saying what it guards.

use super::*;
use crate::http::Method::{Connect, Delete, Get, Head, Options, Patch, Post, Put};

/// A route's pattern and its parameters as `(name, raw value)`.
type Found = (String, Vec<(String, String)>);

/// `(request path, pattern it must reach or None, parameters it must yield)`.
type Case = (&'static str, Option<&'static str>, &'static [(&'static str, &'static str)]);

/// `(routes registered first, route that must be refused, existing route it names)`.
type ConflictCase = (&'static [(Method, &'static str)], (Method, &'static str), &'static str);

/// `(method, path, what dispatch must decide)`.
type DispatchCase = (Method, &'static str, Dispatch);

/// Registers every route with a no-op handler (ids follow the order) and checks the
/// trees.
fn router(routes: &[(Method, &str)]) -> Router {
    let mut r = Router::new();
    for &(method, path) in routes {
        if let Err(e) = r.handle(method, path, |_: &mut Context| {}) {
            panic!("{method} {path}: {e}");
        }
    }
    r.check_invariants();
    r
}

/// Dispatches and checks that a miss leaves no parameter spans behind.
fn decide(r: &Router, method: Method, path: &str) -> Dispatch {
    let mut params = Vec::new();
    let mut scratch = Vec::new();
    let decision = r.dispatch(method, path.as_bytes(), &mut params, &mut scratch);
    if !matches!(decision, Dispatch::Found(_)) {
        assert!(params.is_empty(), "{method} {path}: spans left after a miss: {params:?}");
    }
    decision
}

/// The route `path` reaches, with its parameters (raw, as the router sees them), or None
/// for a 404, 405 or redirect.
fn lookup(r: &Router, method: Method, path: &str) -> Option<Found> {
    let mut params = Vec::new();
    let mut scratch = Vec::new();
    let decision = r.dispatch(method, path.as_bytes(), &mut params, &mut scratch);
    let Dispatch::Found(id) = decision else {
        assert!(params.is_empty(), "{method} {path}: spans left after a miss: {params:?}");
        return None;
    };
    let meta = &r.route(id).meta;
    assert_eq!(meta.param_names.len(), params.len(), "{method} {path}: a span per parameter");
    let values = meta
        .param_names
        .iter()
        .zip(&params)
        .map(|(name, &(start, end))| {
            let value = &path.as_bytes()[start as usize..end as usize];
            (name.to_string(), String::from_utf8_lossy(value).into_owned())
        })
        .collect();
    Some((meta.pattern.to_string(), values))
}

/// Owned copies of `(name, value)` pairs.
fn owned(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params.iter().map(|&(name, value)| (name.to_owned(), value.to_owned())).collect()
}

/// Runs a matching table against `r`.
fn check(r: &Router, method: Method, cases: &[Case]) {
    for &(path, pattern, params) in cases {
        let want = pattern.map(|p| (p.to_owned(), owned(params)));
        assert_eq!(lookup(r, method, path), want, "{method} {path}");
    }
}

/// A request path that `pattern` matches: `:name` becomes `v1`, `v2`, ... (digits for a
/// `\d+` parameter) and `*name` becomes `a/b`; with the parameters it must yield.
fn concrete(pattern: &str) -> (String, Vec<(String, String)>) {
    let mut params = Vec::new();
    let mut segments = Vec::new();
    for segment in pattern.split('/') {
        let value = if let Some(param) = segment.strip_prefix(':') {
            let (name, regex) = match param.split_once('<') {
                Some((name, regex)) => (name, regex.strip_suffix('>')),
                None => (param, None),
            };
            let n = params.len() + 1;
            let value = if regex == Some(r"\d+") { n.to_string() } else { format!("v{n}") };
            params.push((name.to_owned(), value.clone()));
            value
        } else if let Some(name) = segment.strip_prefix('*') {
            params.push((name.to_owned(), "a/b".to_owned()));
            "a/b".to_owned()
        } else {
            segment.to_owned()
        };
        segments.push(value);
    }
    (segments.join("/"), params)
}

/// The `Dispatch::NotAllowed` bits for a method set.
fn bits(methods: &[Method]) -> u16 {
    methods.iter().fold(0, |acc, m| acc | (1 << m.index()))
}

/// The `Allow` value [`write_allow`] renders for a method set.
fn allow(bits: u16) -> String {
    let mut out = Vec::new();
    write_allow(&mut out, bits);
    String::from_utf8(out).expect("method names are ASCII")
}

#[test]
fn matching_and_priority() {
    const ROUTES: &[(Method, &str)] = &[
        (Get, "/"),
        (Get, "/users"),
        (Get, "/users/new"),
        (Get, "/users/:id"),
        (Get, "/users/:id/edit"),
        (Get, "/users/:id/posts/:post"),
        (Get, "/s/x"),
        (Get, "/s/:p"),
        (Get, "/s/:p/deep"),
        (Get, "/s/*rest"),
        (Get, "/static/*path"),
        (Get, r"/files/:id<\d+>"),
        (Get, r"/files/:id<\d+>/meta"),
        (Get, "/files/:name"),
        (Get, "/files/:name/raw"),
        (Get, "/order/:name"),
        (Get, r"/order/:id<\d+>"),
        (Get, r"/nums/:n<\d+>"),
        (Get, "/alt/:v<a|bc>"),
        (Get, "/enc/:v<[a-z]+>"),
        (Get, "/any/:v<.+>"),
        (Get, "/opt/:v<a*>"),
        (Get, "/x/a/b/c"),
        (Get, "/x/:p/b/d"),
        (Get, "/con"),
        (Get, "/contact"),
        (Get, "/a/b/c/d/e/f/g/h"),
        (Get, "/deep/:a/:b/:c/:d/:e"),
    ];
    const CASES: &[Case] = &[
        // the root
        ("/", Some("/"), &[]),
        // a plain static route
        ("/users", Some("/users"), &[]),
        // static text beats a parameter at the same position
        ("/users/new", Some("/users/new"), &[]),
        // the parameter takes what no static child matches
        ("/users/42", Some("/users/:id"), &[("id", "42")]),
        // a static child that is only a prefix of the segment does not match
        ("/users/newbie", Some("/users/:id"), &[("id", "newbie")]),
        // backtracking: `/users/new` has no `/edit`, so the parameter branch is tried
        ("/users/new/edit", Some("/users/:id/edit"), &[("id", "new")]),
        ("/users/42/edit", Some("/users/:id/edit"), &[("id", "42")]),
        // two parameters, in order
        ("/users/7/posts/hello", Some("/users/:id/posts/:post"), &[("id", "7"), ("post", "hello")]),
        // a parameter never matches an empty segment, at the end or in the middle
        ("/users/", None, &[]),
        ("/users//edit", None, &[]),
        // a parameter stops at `/`
        ("/users/42/other", None, &[]),
        // values are raw: decoding is the Context's job, and `%2F` stays inside
        ("/users/a%2Fb", Some("/users/:id"), &[("id", "a%2Fb")]),
        ("/users/caf%C3%A9", Some("/users/:id"), &[("id", "caf%C3%A9")]),
        // static, then parameter, then catch-all at one position
        ("/s/x", Some("/s/x"), &[]),
        ("/s/y", Some("/s/:p"), &[("p", "y")]),
        ("/s/y/z", Some("/s/*rest"), &[("rest", "y/z")]),
        // backtracking from a static child into the parameter one level down
        ("/s/x/deep", Some("/s/:p/deep"), &[("p", "x")]),
        // backtracking past static and parameter into the catch-all
        ("/s/x/other", Some("/s/*rest"), &[("rest", "x/other")]),
        // the catch-all takes an empty rest, which the parameter cannot
        ("/s/", Some("/s/*rest"), &[("rest", "")]),
        ("/static/", Some("/static/*path"), &[("path", "")]),
        ("/static/css/site.css", Some("/static/*path"), &[("path", "css/site.css")]),
        // the catch-all keeps the rest verbatim: empty segments, encodings, trailing slash
        ("/static/a//b/%2e%2e/", Some("/static/*path"), &[("path", "a//b/%2e%2e/")]),
        // a parameter with a regex is tried before the plain one
        ("/files/123", Some(r"/files/:id<\d+>"), &[("id", "123")]),
        // the regex must match the whole segment
        ("/files/12a", Some("/files/:name"), &[("name", "12a")]),
        ("/files/abc", Some("/files/:name"), &[("name", "abc")]),
        // a regex branch that dead-ends backtracks into the plain parameter
        ("/files/12/raw", Some("/files/:name/raw"), &[("name", "12")]),
        ("/files/12/meta", Some(r"/files/:id<\d+>/meta"), &[("id", "12")]),
        // the plain parameter does not reach the regex branch's continuation
        ("/files/ab/meta", None, &[]),
        // a regex parameter registered after the plain one is still tried first
        ("/order/7", Some(r"/order/:id<\d+>"), &[("id", "7")]),
        ("/order/seven", Some("/order/:name"), &[("name", "seven")]),
        // a regex with no plain fallback: match or 404
        ("/nums/12", Some(r"/nums/:n<\d+>"), &[("n", "12")]),
        ("/nums/x", None, &[]),
        ("/nums/1x2", None, &[]),
        // the anchors wrap the whole alternation: `a|bc` does not accept `abc`
        ("/alt/a", Some("/alt/:v<a|bc>"), &[("v", "a")]),
        ("/alt/bc", Some("/alt/:v<a|bc>"), &[("v", "bc")]),
        ("/alt/abc", None, &[]),
        // the regex sees the raw segment: `%61` is not `[a-z]+`
        ("/enc/abc", Some("/enc/:v<[a-z]+>"), &[("v", "abc")]),
        ("/enc/%61", None, &[]),
        // a regex cannot make a parameter span `/`, not even `.+`
        ("/any/a", Some("/any/:v<.+>"), &[("v", "a")]),
        ("/any/a/b", None, &[]),
        // a regex accepting the empty string still needs a non-empty segment
        ("/opt/aa", Some("/opt/:v<a*>"), &[("v", "aa")]),
        ("/opt/", None, &[]),
        // backtracking out of a static branch that matched across segments
        ("/x/a/b/c", Some("/x/a/b/c"), &[]),
        ("/x/a/b/d", Some("/x/:p/b/d"), &[("p", "a")]),
        // compressed static text: a prefix or an extension of a route is no match
        ("/con", Some("/con"), &[]),
        ("/contact", Some("/contact"), &[]),
        ("/co", None, &[]),
        ("/cont", None, &[]),
        ("/contacts", None, &[]),
        // deep static nesting, and one segment short of it
        ("/a/b/c/d/e/f/g/h", Some("/a/b/c/d/e/f/g/h"), &[]),
        ("/a/b/c/d/e/f/g", None, &[]),
        // deep parameter nesting, values in order
        (
            "/deep/1/2/3/4/5",
            Some("/deep/:a/:b/:c/:d/:e"),
            &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")],
        ),
        // one segment short or long of a parameter chain
        ("/deep/1/2/3/4", None, &[]),
        ("/deep/1/2/3/4/5/6", None, &[]),
        // matching is case-sensitive
        ("/USERS", None, &[]),
        // nothing there
        ("/nope", None, &[]),
    ];
    check(&router(ROUTES), Get, CASES);
}

#[test]
fn root_catch_all() {
    const CASES: &[Case] = &[
        // the root route beats a catch-all at the root
        ("/", Some("/"), &[]),
        ("/x", Some("/*all"), &[("all", "x")]),
        ("/x/y/", Some("/*all"), &[("all", "x/y/")]),
    ];
    // alone, a root catch-all takes the root too, with an empty value
    const ALONE: &[Case] = &[("/", Some("/*all"), &[("all", "")])];
    check(&router(&[(Get, "/"), (Get, "/*all")]), Get, CASES);
    check(&router(&[(Get, "/*all")]), Get, ALONE);
}

#[test]
fn conflicting_routes_are_refused() {
    const CASES: &[ConflictCase] = &[
        // the same parameter pattern twice
        (&[(Get, "/u/:id")], (Get, "/u/:id"), "GET /u/:id"),
        // the same static pattern twice
        (&[(Get, "/about")], (Get, "/about"), "GET /about"),
        // two plain parameters with different names at one position
        (&[(Get, "/u/:id")], (Get, "/u/:name"), "GET /u/:id"),
        // ... also when only the new route goes further
        (&[(Get, "/u/:id")], (Get, "/u/:name/x"), "GET /u/:id"),
        // ... or only the existing one; the message names the first route through the edge
        (&[(Get, "/u/:id/x")], (Get, "/u/:name"), "GET /u/:id/x"),
        (&[(Get, "/u/:id/a"), (Get, "/u/:id/b")], (Get, "/u/:name/c"), "GET /u/:id/a"),
        // ... deeper, after parameters that agree
        (&[(Get, "/r/:owner/:repo/x")], (Get, "/r/:owner/:name/y"), "GET /r/:owner/:repo/x"),
        // ... with a trailing slash
        (&[(Get, "/u/:id/")], (Get, "/u/:name/"), "GET /u/:id/"),
        // ... even next to a regex parameter that uses the same name
        (&[(Get, r"/u/:id<\d+>"), (Get, "/u/:id")], (Get, "/u/:x"), "GET /u/:id"),
        // two catch-alls at one position
        (&[(Get, "/s/*a")], (Get, "/s/*b"), "GET /s/*a"),
        (&[(Get, "/s/*a")], (Get, "/s/*a"), "GET /s/*a"),
        (&[(Get, "/*a")], (Get, "/*b"), "GET /*a"),
        // two parameters with the same regex but different names
        (&[(Get, r"/n/:id<\d+>")], (Get, r"/n/:num<\d+>"), r"GET /n/:id<\d+>"),
        (&[(Get, r"/n/:id<\d+>/a")], (Get, r"/n/:num<\d+>/b"), r"GET /n/:id<\d+>/a"),
        // the same regex parameter route twice
        (&[(Get, r"/n/:id<\d+>")], (Get, r"/n/:id<\d+>"), r"GET /n/:id<\d+>"),
        // conflicts are found within every method's tree and name that method
        (&[(Post, "/u/:id")], (Post, "/u/:name"), "POST /u/:id"),
        (&[(Head, "/h")], (Head, "/h"), "HEAD /h"),
    ];
    for &(existing, (method, pattern), named) in CASES {
        let mut r = router(existing);
        let route = format!("{method} {pattern}");
        let err = r.handle(method, pattern, |_: &mut Context| {}).unwrap_err();
        assert_eq!(err.to_string(), format!("route `{route}` conflicts with existing route `{named}`"));
        assert_eq!(err, RouteError::Conflict { route: route.clone(), existing: named.to_owned() });
        // a refused route leaves the router as it was
        r.check_invariants();
        assert_eq!(r.len(), existing.len(), "after refusing {route}");
        for (id, &(m, p)) in existing.iter().enumerate() {
            let (path, _) = concrete(p);
            let found = Dispatch::Found(id as u32);
            assert_eq!(decide(&r, m, &path), found, "{m} {path} after refusing {route}");
        }
    }
}

#[test]
fn conflict_message_names_both_routes() {
    let mut r = router(&[(Get, "/u/:id")]);
    let err = r.get("/u/:name", |_: &mut Context| {}).unwrap_err();
    assert_eq!(err.to_string(), "route `GET /u/:name` conflicts with existing route `GET /u/:id`");
}

#[test]
fn non_conflicting_routes_are_accepted() {
    const SETS: &[&[(Method, &str)]] = &[
        // static text next to a parameter, in either order
        &[(Get, "/u/new"), (Get, "/u/:id")],
        &[(Get, "/u/:id"), (Get, "/u/new")],
        // a regex parameter next to a plain one with another name, in either order
        &[(Get, r"/u/:id<\d+>"), (Get, "/u/:name")],
        &[(Get, "/u/:name"), (Get, r"/u/:id<\d+>")],
        // the same name with and without a regex
        &[(Get, r"/u/:id<\d+>"), (Get, "/u/:id")],
        // two different regexes at one position
        &[(Get, r"/u/:a<\d+>"), (Get, r"/u/:b<v\d+>")],
        // a catch-all next to static text, in either order
        &[(Get, "/s/*p"), (Get, "/s/x")],
        &[(Get, "/s/x"), (Get, "/s/*p")],
        // a catch-all next to a parameter
        &[(Get, "/s/*p"), (Get, "/s/:x")],
        // a catch-all and its parent path without the slash
        &[(Get, "/s/*p"), (Get, "/s")],
        // a catch-all and a root route
        &[(Get, "/"), (Get, "/*all")],
        // the same pattern on different methods
        &[(Get, "/u/:id"), (Head, "/u/:id"), (Post, "/u/:id"), (Delete, "/u/:id")],
        // parameter names only have to agree within one method's tree
        &[(Get, "/u/:id"), (Post, "/u/:name")],
        // a trailing slash makes a different route
        &[(Get, "/a"), (Get, "/a/")],
        // one parameter name shared by routes going different ways
        &[(Get, "/u/:id"), (Get, "/u/:id/a"), (Get, "/u/:id/b"), (Get, "/u/:id/*rest")],
        &[(Get, "/r/:owner/:repo"), (Get, "/r/:owner/:repo/x"), (Get, "/r/:owner")],
    ];
    for &set in SETS {
        let r = router(set);
        assert_eq!(r.len(), set.len());
        for (id, &(method, pattern)) in set.iter().enumerate() {
            let (path, params) = concrete(pattern);
            let found = Dispatch::Found(id as u32);
            assert_eq!(decide(&r, method, &path), found, "{method} {path} in {set:?}");
            assert_eq!(lookup(&r, method, &path), Some((pattern.to_owned(), params)));
        }
    }
}

#[test]
fn malformed_patterns_are_refused() {
    const CASES: &[(&str, &str)] = &[
        // patterns are absolute
        ("users", "a pattern must start with '/'"),
        ("*all", "a pattern must start with '/'"),
        // the empty pattern is not the root
        ("", "a pattern must start with '/'"),
        // a parameter needs a name
        ("/users/:", "a parameter needs a name"),
        ("/:/x", "a parameter needs a name"),
        (r"/:<\d+>", "a parameter needs a name"),
        ("/files/*", "a parameter needs a name"),
        // a catch-all must be last
        ("/files/*path/x", "a catch-all must end the pattern"),
        ("/files/*path/", "a catch-all must end the pattern"),
        // a parameter must fill its segment to the end
        ("/a/:b.json", "a parameter must end its path segment"),
        (r"/a/:id<\d+>.json", "a parameter must end its path segment"),
        ("/a/:b:c", "a parameter must end its path segment"),
        // ... and from the start
        ("/a:b", "a parameter must start a path segment"),
        ("/a/b*c", "a parameter must start a path segment"),
        // an unclosed regex
        (r"/a/:id<\d+", "a parameter pattern needs a closing '>'"),
        // an empty regex
        ("/a/:id<>", "a parameter pattern must not be empty"),
        // a name used twice, whatever the kinds
        ("/a/:id/b/:id", "a parameter name is used twice"),
        ("/a/:id/*id", "a parameter name is used twice"),
        (r"/a/:id<\d+>/:id", "a parameter name is used twice"),
    ];
    for &(pattern, reason) in CASES {
        let mut r = Router::new();
        let err = r.get(pattern, |_: &mut Context| {}).unwrap_err();
        let route = format!("GET {pattern}");
        assert_eq!(err, RouteError::InvalidPattern { route, reason }, "{pattern}");
        assert!(r.is_empty(), "{pattern}");
    }
}

#[test]
fn invalid_regexes_are_refused() {
    const CASES: &[&str] = &[
        // an unclosed group
        r"/a/:id<(>",
        // an unclosed class
        "/a/:id<[a-z>",
        // a bad regex after a good parameter
        r"/a/:x/:id<\d+(>",
        // look-around, which the regex crate does not support
        "/a/:id<(?=a)a>",
    ];
    for &pattern in CASES {
        let mut r = Router::new();
        let err = r.get(pattern, |_: &mut Context| {}).unwrap_err();
        let route = format!("GET {pattern}");
        assert!(
            matches!(&err, RouteError::InvalidRegex { route: named, .. } if *named == route),
            "{pattern}: {err:?}"
        );
        let prefix = format!("invalid pattern for a parameter in route `{route}`: ");
        assert!(err.to_string().starts_with(&prefix), "{err}");
        assert!(r.is_empty(), "{pattern}");
    }
}

#[test]
fn method_not_allowed_and_head() {
    const CASES: &[(Method, &str, &[Method], &str)] = &[
        // GET implies HEAD in `Allow`
        (Delete, "/items", &[Get, Head, Post], "GET, HEAD, POST"),
        // parameters in the other methods' trees count
        (Post, "/items/1", &[Get, Head, Put, Delete], "GET, HEAD, PUT, DELETE"),
        (Patch, "/items/x", &[Get, Head, Put, Delete], "GET, HEAD, PUT, DELETE"),
        // HEAD does not imply GET
        (Get, "/ping", &[Head], "HEAD"),
        (Get, "/cors", &[Options], "OPTIONS"),
        // a HEAD request with neither a HEAD nor a GET route is a 405 as well
        (Head, "/cors", &[Options], "OPTIONS"),
    ];
    let r = router(&[
        (Get, "/items"),
        (Post, "/items"),
        (Get, "/items/:id"),
        (Put, "/items/:id"),
        (Delete, "/items/:id"),
        (Head, "/items/:id"),
        (Options, "/cors"),
        (Head, "/ping"),
        (Get, "/tags/:tag"),
    ]);
    // HEAD falls back to the GET route
    assert_eq!(decide(&r, Head, "/items"), Dispatch::Found(0));
    // an explicit HEAD route wins over the fallback
    assert_eq!(decide(&r, Head, "/items/1"), Dispatch::Found(5));
    // the fallback yields the GET route's parameters
    let tag = Some(("/tags/:tag".to_owned(), owned(&[("tag", "rust")])));
    assert_eq!(lookup(&r, Head, "/tags/rust"), tag);
    for &(method, path, allowed, text) in CASES {
        let decision = decide(&r, method, path);
        assert_eq!(decision, Dispatch::NotAllowed(bits(allowed)), "{method} {path}");
        assert_eq!(allow(bits(allowed)), text, "{method} {path}");
    }
    // no method has the path: 404, not 405
    assert_eq!(decide(&r, Patch, "/nothing"), Dispatch::NotFound);
    assert_eq!(decide(&r, Get, "/items/1/2"), Dispatch::NotFound);
}

#[test]
fn allow_rendering() {
    // every method, in `Method::ALL` order
    let every = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE";
    assert_eq!(allow(bits(&Method::ALL)), every);
    assert_eq!(allow(bits(&[Options])), "OPTIONS");
    // the order is fixed, not the order the bits were set in
    assert_eq!(allow(bits(&[Patch, Get])), "GET, PATCH");
    assert_eq!(allow(0), "");
}

#[test]
fn trailing_slash_redirects() {
    const ROUTES: &[(Method, &str)] = &[
        (Get, "/dir/"),
        (Get, "/file"),
        (Post, "/submit"),
        (Put, "/form/"),
        (Get, "/static/*path"),
        (Get, "/users/:id"),
        (Get, "/both"),
        (Get, "/both/"),
        (Get, "/x/"),
        (Post, "/x"),
        (Connect, "/tunnel"),
    ];
    const ON: &[DispatchCase] = &[
        // GET: 301, adding the slash
        (Get, "/dir", Dispatch::Redirect(301)),
        // ... or removing it
        (Get, "/file/", Dispatch::Redirect(301)),
        // HEAD redirects with 301 too, through the GET route
        (Head, "/file/", Dispatch::Redirect(301)),
        // other methods get 308, which keeps the method and the body
        (Post, "/submit/", Dispatch::Redirect(308)),
        (Put, "/form", Dispatch::Redirect(308)),
        // a catch-all with an empty rest counts as a match for the toggled path
        (Get, "/static", Dispatch::Redirect(301)),
        // so do parameters
        (Get, "/users/42/", Dispatch::Redirect(301)),
        // both forms registered: each is found, no redirect
        (Get, "/both", Dispatch::Found(6)),
        (Get, "/both/", Dispatch::Found(7)),
        // the redirect comes before a 405 for the other method's exact match
        (Get, "/x", Dispatch::Redirect(301)),
        // only to a route of the request's own method
        (Post, "/dir", Dispatch::NotFound),
        // CONNECT is never redirected
        (Connect, "/tunnel", Dispatch::Found(10)),
        (Connect, "/tunnel/", Dispatch::NotFound),
        // the root is never toggled
        (Get, "/", Dispatch::NotFound),
    ];
    const OFF: &[DispatchCase] = &[
        // no redirects when turned off
        (Get, "/dir", Dispatch::NotFound),
        (Get, "/file/", Dispatch::NotFound),
        (Post, "/submit/", Dispatch::NotFound),
        (Get, "/static", Dispatch::NotFound),
        // the 405 the redirect used to shadow
        (Get, "/x", Dispatch::NotAllowed(1 << Post.index())),
        // exact matches are unaffected
        (Get, "/both/", Dispatch::Found(7)),
        (Get, "/dir/", Dispatch::Found(0)),
    ];
    let mut r = router(ROUTES);
    for &(method, path, want) in ON {
        assert_eq!(decide(&r, method, path), want, "{method} {path}");
    }
    r.redirect_trailing_slash(false);
    for &(method, path, want) in OFF {
        assert_eq!(decide(&r, method, path), want, "{method} {path} (redirects off)");
    }
}

#[test]
fn groups_compose_prefixes() {
    const CASES: &[(Method, &str, &str)] = &[
        (Get, "/", "/"),
        (Get, "/api", "/api"),
        (Options, "/api", "/api"),
        (Get, "/api/users/5", "/api/users/:id"),
        (Post, "/api/v1", "/api/v1"),
        (Get, "/api/v1/items/3", "/api/v1/items/:id"),
        (Delete, "/api/v1/admin/users/9", "/api/v1/admin/users/:id"),
        (Put, "/api/after", "/api/after"),
        (Get, "/v2/x", "/v2/x"),
        (Get, "/health", "/health"),
    ];
    let h = |_: &mut Context| {};
    let mut r = Router::new();
    r.get("/", h).unwrap();
    {
        let mut api = r.group("/api");
        // `/` in a group is the prefix itself, not the prefix with a slash
        api.get("/", h).unwrap();
        api.get("/users/:id", h).unwrap();
        // `handle` prefixes too
        api.handle(Options, "/", h).unwrap();
        {
            // a trailing slash on a prefix is dropped
            let mut v1 = api.group("/v1/");
            v1.post("/", h).unwrap();
            v1.get("/items/:id", h).unwrap();
            // groups nest
            v1.group("/admin").delete("/users/:id", h).unwrap();
        }
        // the parent group goes on after a nested one
        api.put("/after", h).unwrap();
    }
    r.group("/v2/").get("/x", h).unwrap();
    // a root group adds nothing
    r.group("/").get("/health", h).unwrap();
    r.check_invariants();
    assert_eq!(r.len(), CASES.len());
    for &(method, path, pattern) in CASES {
        let found = lookup(&r, method, path).map(|(p, _)| p);
        assert_eq!(found.as_deref(), Some(pattern), "{method} {path}");
    }
    // the group root is `/api`, so `/api/` redirects to it
    assert_eq!(decide(&r, Get, "/api/"), Dispatch::Redirect(301));
    // no doubled slash from a prefix with a trailing one
    assert_eq!(decide(&r, Get, "/v2//x"), Dispatch::NotFound);

    // errors name the full pattern, prefix included
    let err = r.group("/api").get("/users/:uid", h).unwrap_err();
    let conflict = RouteError::Conflict {
        route: "GET /api/users/:uid".to_owned(),
        existing: "GET /api/users/:id".to_owned(),
    };
    assert_eq!(err, conflict);
    let err = r.group("/api").group("/v1").get("/:", h).unwrap_err();
    let invalid =
        RouteError::InvalidPattern { route: "GET /api/v1/:".to_owned(), reason: "a parameter needs a name" };
    assert_eq!(err, invalid);
    r.check_invariants();
    assert_eq!(r.len(), CASES.len());
}

/// The GitHub REST API v3 routes of the httprouter / matchit benchmarks
/// (julienschmidt/go-http-routing-benchmark, `githubAPI`), in their order.
/// The GitHub API v3 routes of the httprouter/matchit benchmarks, shared with the
/// criterion benches (`benches/data/github-routes.txt`, one `METHOD /pattern` per line).
fn github_routes() -> Vec<(Method, &'static str)> {
    include_str!("../../benches/data/github-routes.txt")
        .lines()
        .filter_map(|line| {
            let (m, p) = line.split_once(' ')?;
            Some((Method::from_bytes(m.as_bytes())?, p))
        })
        .collect()
}

/// The routes the benchmark leaves commented out (most because httprouter of the time
/// could not hold a static segment or a catch-all next to a parameter); ours takes them.
const GITHUB_SKIPPED: &[(Method, &str)] = &[
    (Put, "/authorizations/clients/:client_id"),
    (Patch, "/authorizations/:id"),
    (Patch, "/notifications/threads/:id"),
    (Get, "/gists/public"),
    (Get, "/gists/starred"),
    (Patch, "/gists/:id"),
    (Get, "/repos/:owner/:repo/git/refs/*ref"),
    (Patch, "/repos/:owner/:repo/git/refs/*ref"),
    (Delete, "/repos/:owner/:repo/git/refs/*ref"),
    (Patch, "/repos/:owner/:repo/issues/:number"),
    (Get, "/repos/:owner/:repo/issues/comments"),
    (Get, "/repos/:owner/:repo/issues/comments/:id"),
    (Patch, "/repos/:owner/:repo/issues/comments/:id"),
    (Delete, "/repos/:owner/:repo/issues/comments/:id"),
    (Get, "/repos/:owner/:repo/issues/events"),
    (Get, "/repos/:owner/:repo/issues/events/:id"),
    (Patch, "/repos/:owner/:repo/labels/:name"),
    (Patch, "/repos/:owner/:repo/milestones/:number"),
    (Patch, "/orgs/:org"),
    (Patch, "/teams/:id"),
    (Patch, "/repos/:owner/:repo/pulls/:number"),
    (Get, "/repos/:owner/:repo/pulls/comments"),
    (Get, "/repos/:owner/:repo/pulls/comments/:number"),
    (Patch, "/repos/:owner/:repo/pulls/comments/:number"),
    (Delete, "/repos/:owner/:repo/pulls/comments/:number"),
    (Patch, "/repos/:owner/:repo"),
    (Patch, "/repos/:owner/:repo/comments/:id"),
    (Get, "/repos/:owner/:repo/contents/*path"),
    (Put, "/repos/:owner/:repo/contents/*path"),
    (Delete, "/repos/:owner/:repo/contents/*path"),
    (Get, "/repos/:owner/:repo/:archive_format/:ref"),
    (Patch, "/repos/:owner/:repo/keys/:id"),
    (Patch, "/repos/:owner/:repo/hooks/:id"),
    (Patch, "/repos/:owner/:repo/releases/:id"),
    (Patch, "/user"),
    (Patch, "/user/keys/:id"),
];

/// Every route is found through a concrete path, with exactly its own pattern and the
/// substituted values; GET routes answer HEAD too.
fn check_all_found(r: &Router, routes: &[(Method, &str)]) {
    assert_eq!(r.len(), routes.len());
    for (id, &(method, pattern)) in routes.iter().enumerate() {
        let (path, params) = concrete(pattern);
        let found = Dispatch::Found(id as u32);
        assert_eq!(decide(r, method, &path), found, "{method} {path}");
        let want = Some((pattern.to_owned(), params));
        assert_eq!(lookup(r, method, &path), want, "{method} {path}");
        if method == Get {
            assert_eq!(lookup(r, Head, &path), want, "HEAD {path}");
        }
    }
}

#[test]
fn github_api() {
    const CASES: &[DispatchCase] = &[
        // too few segments for any route
        (Get, "/repos/v1", Dispatch::NotFound),
        // too many
        (Get, "/user/keys/v1/extra", Dispatch::NotFound),
        // trailing-slash redirects in a big tree
        (Get, "/user/keys/", Dispatch::Redirect(301)),
        (Post, "/authorizations/", Dispatch::Redirect(308)),
    ];
    const STATIC_NEXT_TO_PARAM: &[Case] = &[
        // static routes are not shadowed by `/users/:user` sharing their prefix
        ("/user/repos", Some("/user/repos"), &[]),
        ("/users", Some("/users"), &[]),
        ("/users/repos", Some("/users/:user"), &[("user", "repos")]),
    ];
    let r = router(&github_routes());
    check_all_found(&r, &github_routes());
    for &(method, path, want) in CASES {
        assert_eq!(decide(&r, method, path), want, "{method} {path}");
    }
    check(&r, Get, STATIC_NEXT_TO_PARAM);
    // `Allow` gathers the methods of several trees
    let authorizations = decide(&r, Patch, "/authorizations");
    assert_eq!(authorizations, Dispatch::NotAllowed(bits(&[Get, Head, Post])));
    assert_eq!(allow(bits(&[Get, Head, Post])), "GET, HEAD, POST");
    let keys = decide(&r, Put, "/user/keys/v1");
    assert_eq!(keys, Dispatch::NotAllowed(bits(&[Get, Head, Delete])));
    assert_eq!(allow(bits(&[Get, Head, Delete])), "GET, HEAD, DELETE");
}

#[test]
fn github_api_with_skipped_routes() {
    const CASES: &[Case] = &[
        // a static segment beats the parameter beside it
        ("/gists/public", Some("/gists/public"), &[]),
        ("/gists/v1", Some("/gists/:id"), &[("id", "v1")]),
        // backtracking from a static leaf (`tags`) into the sibling parameter
        (
            "/repos/o/r/tags/v1",
            Some("/repos/:owner/:repo/:archive_format/:ref"),
            &[("owner", "o"), ("repo", "r"), ("archive_format", "tags"), ("ref", "v1")],
        ),
        // `issues/events` is static; `issues/:number/events` still reached
        (
            "/repos/o/r/issues/events",
            Some("/repos/:owner/:repo/issues/events"),
            &[("owner", "o"), ("repo", "r")],
        ),
        (
            "/repos/o/r/issues/7/events",
            Some("/repos/:owner/:repo/issues/:number/events"),
            &[("owner", "o"), ("repo", "r"), ("number", "7")],
        ),
        // a catch-all next to a static route of the same name without the slash
        (
            "/repos/o/r/git/refs/heads/main",
            Some("/repos/:owner/:repo/git/refs/*ref"),
            &[("owner", "o"), ("repo", "r"), ("ref", "heads/main")],
        ),
        ("/repos/o/r/git/refs", Some("/repos/:owner/:repo/git/refs"), &[("owner", "o"), ("repo", "r")]),
        // ... and an empty rest goes to the catch-all, not to a redirect
        (
            "/repos/o/r/git/refs/",
            Some("/repos/:owner/:repo/git/refs/*ref"),
            &[("owner", "o"), ("repo", "r"), ("ref", "")],
        ),
    ];
    let all: Vec<(Method, &str)> = github_routes().iter().chain(GITHUB_SKIPPED).copied().collect();
    let r = router(&all);
    check_all_found(&r, &all);
    check(&r, Get, CASES);
}
