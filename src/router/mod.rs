//! Routing: per-method radix trees, groups, parameters, 404/405 and trailing-slash
//! redirects.
//!
//! # Rules
//!
//! * Patterns start with `/`. `:name` matches one non-empty path segment;
//!   `:name<regex>` only a segment the regex matches in full (checked against the raw,
//!   still percent-encoded segment; the regex must not contain `>`); `*name` matches the
//!   rest of the path, possibly empty, and must end the pattern.
//! * Priority at every position: static text, then parameters with a pattern, then the
//!   plain parameter, then the catch-all; lookup backtracks, so the most specific route
//!   that matches the whole path wins.
//! * Conflicts are refused at registration, naming both routes: the same pattern twice,
//!   two plain parameters with different names at the same position (`/u/:id` and
//!   `/u/:name/x`), two parameters with the same pattern, two catch-alls.
//! * Parameters are percent-decoded before handlers see them (`%2F` stays inside the
//!   parameter: routing runs on the raw path).
//! * A path that only matches with its trailing slash added or removed is redirected
//!   (301 for GET and HEAD, 308 otherwise), as Gin's `RedirectTrailingSlash`.
//! * A path that matches under other methods only gets 405 with `Allow`; `HEAD` falls
//!   back to the `GET` route.
//!
//! ```
//! use ringo::{Context, Router};
//! let mut r = Router::new();
//! r.get("/users/new", |c: &mut Context| c.string(200, "form")).unwrap();
//! r.get("/users/:id", |c: &mut Context| { let id = c.param("id").to_owned(); c.string(200, &id) }).unwrap();
//! r.get("/files/*path", |c: &mut Context| c.status(204)).unwrap();
//! let err = r.get("/users/:name", |c: &mut Context| c.status(204)).unwrap_err();
//! assert_eq!(err.to_string(), "route `GET /users/:name` conflicts with existing route `GET /users/:id`");
//! ```

mod error;
pub(crate) mod tree;

pub use error::RouteError;

use std::rc::Rc;

use regex::bytes::Regex;

use crate::client_ip::{TrustedProxies, TrustedProxyError};
use crate::context::{Context, RouteMeta};
use crate::handler::{Endpoint, Handler};
use crate::http::Method;
use crate::middleware::{ErasedMiddleware, Middleware, erase};
use tree::{Leaf, Segment, Tree, parse_pattern};

/// One registered route.
pub(crate) struct Route {
    pub(crate) meta: Rc<RouteMeta>,
    pub(crate) method: Option<Method>,
    /// Group middleware captured at registration.
    group_middleware: Vec<Rc<dyn ErasedMiddleware>>,
    /// Global then group middleware; filled by [`Router::finish`].
    pub(crate) chain: Vec<Rc<dyn ErasedMiddleware>>,
    pub(crate) endpoint: Endpoint,
}

impl Route {
    /// The handler of a route with no middleware and a synchronous handler: the engine
    /// calls it in place, with no future at all.
    pub(crate) fn plain_sync(&self) -> Option<&dyn Fn(&mut Context)> {
        match &self.endpoint {
            Endpoint::Sync(f) if self.chain.is_empty() => Some(&**f),
            _ => None,
        }
    }
}

/// The routing decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dispatch {
    /// This route matched; parameters were pushed.
    Found(u32),
    /// The path with its trailing slash toggled matches: redirect with this status.
    Redirect(u16),
    /// Other methods match: 405 with `Allow` listing this set (bit per `Method::index`).
    NotAllowed(u16),
    /// Nothing matches.
    NotFound,
}

/// The routes of one shard. Built by the app factory on every shard.
pub struct Router {
    trees: [Tree; 9],
    routes: Vec<Route>,
    global: Vec<Rc<dyn ErasedMiddleware>>,
    redirect_trailing_slash: bool,
    /// Peers whose forwarding headers `Context::client_ip` believes; `None`: none.
    pub(crate) trusted_proxies: Option<Rc<TrustedProxies>>,
    pub(crate) not_found: Route,
    pub(crate) not_allowed: Route,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("routes", &self.routes.len()).finish_non_exhaustive()
    }
}

impl Default for Router {
    fn default() -> Self {
        Router::new()
    }
}

fn builtin(pattern: &str, f: fn(&mut Context)) -> Route {
    Route {
        meta: Rc::new(RouteMeta { pattern: pattern.into(), param_names: Box::new([]) }),
        method: None,
        group_middleware: Vec::new(),
        chain: Vec::new(),
        endpoint: Endpoint::Sync(Rc::new(f)),
    }
}

macro_rules! method_fns {
    ($($(#[$doc:meta])* $name:ident => $method:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name<M>(&mut self, path: &str, handler: impl Handler<M>) -> Result<&mut Self, RouteError> {
                self.handle($method, path, handler)
            }
        )*
    };
}

impl Router {
    /// An empty router: 404 for everything, trailing-slash redirects on.
    pub fn new() -> Router {
        Router {
            trees: Default::default(),
            routes: Vec::new(),
            global: Vec::new(),
            redirect_trailing_slash: true,
            trusted_proxies: None,
            not_found: builtin("", |c| c.string(404, "404 page not found")),
            not_allowed: builtin("", |c| c.string(405, "405 method not allowed")),
        }
    }

    method_fns! {
        /// Registers a GET route (also answering HEAD unless a HEAD route exists).
        get => Method::Get;
        /// Registers a POST route.
        post => Method::Post;
        /// Registers a PUT route.
        put => Method::Put;
        /// Registers a DELETE route.
        delete => Method::Delete;
        /// Registers a PATCH route.
        patch => Method::Patch;
        /// Registers a HEAD route.
        head => Method::Head;
        /// Registers an OPTIONS route.
        options => Method::Options;
    }

    /// Registers a route for `method`.
    pub fn handle<M>(
        &mut self,
        method: Method,
        path: &str,
        handler: impl Handler<M>,
    ) -> Result<&mut Self, RouteError> {
        self.add(method, path, Vec::new(), handler.into_endpoint())?;
        Ok(self)
    }

    /// Registers `handler` for every method (Gin's `Any`), e.g. for a proxy route.
    pub fn any<M>(&mut self, path: &str, handler: impl Handler<M>) -> Result<&mut Self, RouteError> {
        let endpoint = handler.into_endpoint();
        for method in Method::ALL {
            self.add(method, path, Vec::new(), endpoint.clone())?;
        }
        Ok(self)
    }

    /// Adds middleware around every route (whenever registered) and the 404/405 answers.
    pub fn middleware(&mut self, m: impl Middleware) -> &mut Self {
        self.global.push(erase(m));
        self
    }

    /// A group of routes under `prefix`, with middleware of its own.
    pub fn group(&mut self, prefix: &str) -> Group<'_> {
        Group { router: self, prefix: prefix.trim_end_matches('/').to_owned(), middleware: Vec::new() }
    }

    /// Whether a path that matches only with its trailing slash toggled is redirected
    /// (default on).
    pub fn redirect_trailing_slash(&mut self, on: bool) -> &mut Self {
        self.redirect_trailing_slash = on;
        self
    }

    /// Trusts `X-Forwarded-For` and `Forwarded` from peers in these networks (CIDRs
    /// like `10.0.0.0/8` or `::1/128`, or bare addresses), as Gin's
    /// `SetTrustedProxies`: [`Context::client_ip`] then walks those headers from the
    /// right, skipping trusted hops. Replaces any earlier list; an empty list trusts
    /// no one (the default). The error names the first bad entry, and converts into
    /// [`RouteError`], so `?` works in the app factory:
    ///
    /// ```
    /// let mut r = ringo::Router::new();
    /// r.trusted_proxies(&["10.0.0.0/8", "::1/128"]).unwrap();
    /// assert!(r.trusted_proxies(&["10.0.0.0/33"]).is_err());
    /// ```
    pub fn trusted_proxies<S: AsRef<str>>(&mut self, cidrs: &[S]) -> Result<&mut Self, TrustedProxyError> {
        let parsed = TrustedProxies::parse(cidrs)?;
        self.trusted_proxies = (!parsed.is_empty()).then(|| Rc::new(parsed));
        Ok(self)
    }

    /// Replaces the 404 handler (global middleware still wrap it).
    pub fn no_route<M>(&mut self, handler: impl Handler<M>) -> &mut Self {
        self.not_found.endpoint = handler.into_endpoint();
        self
    }

    /// The number of registered routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether no route is registered.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    fn add(
        &mut self,
        method: Method,
        pattern: &str,
        group_middleware: Vec<Rc<dyn ErasedMiddleware>>,
        endpoint: Endpoint,
    ) -> Result<(), RouteError> {
        let route_name = format!("{method} {pattern}");
        let segments = parse_pattern(pattern)
            .map_err(|reason| RouteError::InvalidPattern { route: route_name.clone(), reason })?;
        let mut names: Vec<Box<str>> = Vec::new();
        let mut regexes = Vec::new();
        for seg in &segments {
            let name = match seg {
                Segment::Param { name, pattern } => {
                    if let Some(p) = pattern {
                        let re = Regex::new(&format!("^(?:{p})$")).map_err(|e| RouteError::InvalidRegex {
                            route: route_name.clone(),
                            message: e.to_string(),
                        })?;
                        regexes.push(re);
                    }
                    name
                }
                Segment::CatchAll { name } => name,
                Segment::Static(_) => continue,
            };
            if names.iter().any(|n| &**n == *name) {
                return Err(RouteError::InvalidPattern {
                    route: route_name,
                    reason: "a parameter name is used twice",
                });
            }
            names.push((*name).into());
        }
        let id = self.routes.len() as u32;
        let leaf = Leaf { id, route: route_name.clone().into() };
        self.trees[method.index()]
            .insert(&segments, &mut regexes.into_iter(), leaf)
            .map_err(|c| RouteError::Conflict { route: route_name, existing: c.0.into() })?;
        self.routes.push(Route {
            meta: Rc::new(RouteMeta { pattern: pattern.into(), param_names: names.into() }),
            method: Some(method),
            group_middleware,
            chain: Vec::new(),
            endpoint,
        });
        Ok(())
    }

    /// Builds every route's full chain (global, then group middleware). Called once by
    /// the shard after the app factory returns.
    pub(crate) fn finish(&mut self) {
        for route in &mut self.routes {
            route.chain = self.global.iter().chain(&route.group_middleware).cloned().collect();
        }
        self.not_found.chain = self.global.clone();
        self.not_allowed.chain = self.global.clone();
    }

    /// Metric slots: each route as `(method, pattern)`, then the redirect, 404 and 405
    /// answers (see [`Router::slot_of`]).
    pub(crate) fn slot_names(&self) -> Vec<(String, String)> {
        let mut names: Vec<(String, String)> = self
            .routes
            .iter()
            .map(|r| (r.method.map_or("*", Method::as_str).to_owned(), r.meta.pattern.to_string()))
            .collect();
        for special in ["<redirect>", "<not found>", "<method not allowed>"] {
            names.push(("*".to_owned(), special.to_owned()));
        }
        names
    }

    /// The metric slot of a routing decision.
    pub(crate) fn slot_of(&self, d: Dispatch) -> usize {
        let n = self.routes.len();
        match d {
            Dispatch::Found(id) => id as usize,
            Dispatch::Redirect(_) => n,
            Dispatch::NotFound => n + 1,
            Dispatch::NotAllowed(_) => n + 2,
        }
    }

    pub(crate) fn route(&self, id: u32) -> &Route {
        &self.routes[id as usize]
    }

    /// Routes `path` for `method`. Parameter spans (relative to `path`) go to `params`;
    /// `scratch` is used to try the path with its trailing slash toggled.
    pub(crate) fn dispatch(
        &self,
        method: Method,
        path: &[u8],
        params: &mut Vec<(u32, u32)>,
        scratch: &mut Vec<u8>,
    ) -> Dispatch {
        if let Some(leaf) = self.find(method, path, params) {
            return Dispatch::Found(leaf.id);
        }
        if self.redirect_trailing_slash && method != Method::Connect && path.len() > 1 {
            scratch.clear();
            match path.strip_suffix(b"/") {
                Some(trimmed) => scratch.extend_from_slice(trimmed),
                None => {
                    scratch.extend_from_slice(path);
                    scratch.push(b'/');
                }
            }
            let mut throwaway = std::mem::take(params);
            let found = self.find(method, scratch, &mut throwaway).is_some();
            throwaway.clear();
            *params = throwaway;
            if found {
                let status = if matches!(method, Method::Get | Method::Head) { 301 } else { 308 };
                return Dispatch::Redirect(status);
            }
        }
        let mut allowed = 0u16;
        for m in Method::ALL {
            if m != method && !self.trees[m.index()].is_empty() {
                let base = params.len();
                if self.trees[m.index()].find(path, params).is_some() {
                    allowed |= 1 << m.index();
                    if m == Method::Get {
                        allowed |= 1 << Method::Head.index();
                    }
                }
                params.truncate(base);
            }
        }
        if allowed != 0 { Dispatch::NotAllowed(allowed) } else { Dispatch::NotFound }
    }

    fn find(&self, method: Method, path: &[u8], params: &mut Vec<(u32, u32)>) -> Option<&Leaf> {
        let found = self.trees[method.index()].find(path, params);
        if found.is_none() && method == Method::Head {
            return self.trees[Method::Get.index()].find(path, params);
        }
        found
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for t in &self.trees {
            t.check_invariants();
        }
    }
}

/// Writes an `Allow` value for a method set from [`Dispatch::NotAllowed`].
pub(crate) fn write_allow(out: &mut Vec<u8>, allowed: u16) {
    let mut first = true;
    for m in Method::ALL {
        if allowed & (1 << m.index()) != 0 {
            if !first {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(m.as_str().as_bytes());
            first = false;
        }
    }
}

/// Routes under a common prefix with middleware of their own (Gin's `RouterGroup`).
pub struct Group<'r> {
    router: &'r mut Router,
    prefix: String,
    middleware: Vec<Rc<dyn ErasedMiddleware>>,
}

impl std::fmt::Debug for Group<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl Group<'_> {
    method_fns! {
        /// Registers a GET route under the group's prefix.
        get => Method::Get;
        /// Registers a POST route under the group's prefix.
        post => Method::Post;
        /// Registers a PUT route under the group's prefix.
        put => Method::Put;
        /// Registers a DELETE route under the group's prefix.
        delete => Method::Delete;
        /// Registers a PATCH route under the group's prefix.
        patch => Method::Patch;
        /// Registers a HEAD route under the group's prefix.
        head => Method::Head;
        /// Registers an OPTIONS route under the group's prefix.
        options => Method::Options;
    }

    /// Registers a route for `method` under the group's prefix.
    pub fn handle<M>(
        &mut self,
        method: Method,
        path: &str,
        handler: impl Handler<M>,
    ) -> Result<&mut Self, RouteError> {
        let full = self.full_pattern(path);
        self.router.add(method, &full, self.middleware.clone(), handler.into_endpoint())?;
        Ok(self)
    }

    /// `path` under the group's prefix (`/` alone is the prefix itself).
    fn full_pattern(&self, path: &str) -> String {
        if path == "/" && !self.prefix.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}{}", self.prefix, path)
        }
    }

    /// Registers `handler` for every method under the group's prefix (Gin's `Any`).
    pub fn any<M>(&mut self, path: &str, handler: impl Handler<M>) -> Result<&mut Self, RouteError> {
        let full = self.full_pattern(path);
        let endpoint = handler.into_endpoint();
        for method in Method::ALL {
            self.router.add(method, &full, self.middleware.clone(), endpoint.clone())?;
        }
        Ok(self)
    }

    /// Adds middleware to the routes registered on this group from now on.
    pub fn middleware(&mut self, m: impl Middleware) -> &mut Self {
        self.middleware.push(erase(m));
        self
    }

    /// A nested group; it inherits this group's middleware.
    pub fn group(&mut self, prefix: &str) -> Group<'_> {
        Group {
            prefix: format!("{}{}", self.prefix, prefix.trim_end_matches('/')),
            middleware: self.middleware.clone(),
            router: self.router,
        }
    }
}

#[cfg(test)]
mod tests;
