//! The radix tree behind each method's routes.
//!
//! Static text is stored compressed (a node per shared prefix, children told apart by
//! their first byte); `:param` and `*catchall` are edges of their own. Lookup tries, at
//! every node, static children first, then parameters (those with a pattern before the
//! one without), then the catch-all, and backtracks when a branch dead-ends, so
//! `/users/new` beats `/users/:id` while `/users/new/edit` can still reach
//! `/users/:id/edit`. Routes without parameters are also kept in an exact-match table
//! tried before the walk (an exact static match is what the walk finds).
//!
//! ```text
//! /users/new          root ─ "/users/" ─┬─ "new"            → GET /users/new
//! /users/:id               │            └─ :id ─ ""         → GET /users/:id
//! /users/:id/edit          │                    └─ "/edit"  → GET /users/:id/edit
//! /static/*path            └─ "/static/" ─ *path             → GET /static/*path
//! ```

use std::hash::BuildHasher;

use hashbrown::HashTable;
use regex::bytes::Regex;

use crate::http::words::same_bytes;

/// One piece of a route pattern.
#[derive(Debug)]
pub(crate) enum Segment<'p> {
    /// Literal text, matched byte for byte.
    Static(&'p [u8]),
    /// `:name` or `:name<regex>`: one whole path segment (up to the next `/`), non-empty.
    Param { name: &'p str, pattern: Option<&'p str> },
    /// `*name`: the rest of the path, possibly empty. Always last.
    CatchAll { name: &'p str },
}

/// Splits a pattern into segments, or says why it is malformed.
pub(crate) fn parse_pattern(pattern: &str) -> Result<Vec<Segment<'_>>, &'static str> {
    let bytes = pattern.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("a pattern must start with '/'");
    }
    let mut segs = Vec::new();
    let mut i = 0;
    let mut static_start = 0;
    while i < bytes.len() {
        match bytes[i] {
            b':' | b'*' => {
                if i > 0 && bytes[i - 1] != b'/' {
                    return Err("a parameter must start a path segment");
                }
                if static_start < i {
                    segs.push(Segment::Static(&bytes[static_start..i]));
                }
                let catch_all = bytes[i] == b'*';
                let name_start = i + 1;
                let mut j = name_start;
                while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
                    j += 1;
                }
                if j == name_start {
                    return Err("a parameter needs a name");
                }
                let name = &pattern[name_start..j];
                if catch_all {
                    if j != bytes.len() {
                        return Err("a catch-all must end the pattern");
                    }
                    segs.push(Segment::CatchAll { name });
                    return Ok(segs);
                }
                let mut regex = None;
                if bytes.get(j) == Some(&b'<') {
                    let close = pattern[j..].find('>').ok_or("a parameter pattern needs a closing '>'")?;
                    regex = Some(&pattern[j + 1..j + close]);
                    if close == 1 {
                        return Err("a parameter pattern must not be empty");
                    }
                    j += close + 1;
                }
                if j < bytes.len() && bytes[j] != b'/' {
                    return Err("a parameter must end its path segment");
                }
                segs.push(Segment::Param { name, pattern: regex });
                i = j;
                static_start = j;
            }
            _ => i += 1,
        }
    }
    if static_start < bytes.len() {
        segs.push(Segment::Static(&bytes[static_start..]));
    }
    Ok(segs)
}

/// What a route leaves in the tree.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub(crate) id: u32,
    /// `METHOD /pattern`, for conflict messages.
    pub(crate) route: Box<str>,
}

#[derive(Debug)]
struct ParamEdge {
    name: Box<str>,
    pattern: Option<(Box<str>, Regex)>,
    /// The first route inserted through this edge, for conflict messages.
    first_route: Box<str>,
    node: Node,
}

#[derive(Debug, Default)]
struct Node {
    prefix: Vec<u8>,
    children: Vec<Node>,
    params: Vec<ParamEdge>,
    catch_all: Option<Leaf>,
    value: Option<Leaf>,
}

/// A conflict found while inserting: the existing route's name.
#[derive(Debug)]
pub(crate) struct Conflict(pub(crate) Box<str>);

/// One method's routes.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    root: Node,
    len: usize,
    /// The routes without parameters, by their whole path, while there are at most
    /// [`SCAN_STATICS`] of them (then empty: they are in `statics`). An exact static
    /// match is what the walk would find too (it tries static children first at every
    /// node, and a static route's chain ends at its value), so lookups try these first:
    /// the walk was 250 instructions for `/plaintext` in the default app (12 % of a
    /// saturated shard's). A few are compared in turn (a length check each, then one
    /// word-at-a-time comparison), which costs less than hashing the path (the hash and
    /// probe were 5 % of a saturated shard's time under `perf`, for three routes).
    static_list: Vec<(Box<[u8]>, Leaf)>,
    /// The routes without parameters once there are more than [`SCAN_STATICS`]: one
    /// hash and compare.
    statics: HashTable<(Box<[u8]>, Leaf)>,
    /// The hasher of `statics` (keys are compared with `words::same_bytes`, not
    /// libc's `memcmp`: at path lengths the call cost more than the comparison).
    hasher: foldhash::fast::RandomState,
    /// Bit `n` set when a static route's path is `n` bytes long (bit 63: 63 or more):
    /// most paths that match no static route skip the hash (a parameter route's lookup
    /// otherwise paid about 55 instructions for it).
    static_lengths: u64,
}

/// Most parameterless routes a lookup compares in turn before it hashes instead.
const SCAN_STATICS: usize = 8;

/// The [`Tree::static_lengths`] bit of a path `len` bytes long.
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl Tree {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts a parsed pattern. `regexes` holds the compiled parameter patterns in order.
    pub(crate) fn insert(
        &mut self,
        segments: &[Segment<'_>],
        regexes: &mut std::vec::IntoIter<Regex>,
        leaf: Leaf,
    ) -> Result<(), Conflict> {
        let static_path: Option<Vec<u8>> = segments
            .iter()
            .map(|seg| match seg {
                Segment::Static(text) => Some(*text),
                _ => None,
            })
            .collect::<Option<Vec<&[u8]>>>()
            .map(|texts| texts.concat());
        insert(&mut self.root, segments, regexes, leaf.clone())?;
        if let Some(path) = static_path {
            self.static_lengths |= length_bit(path.len());
            self.static_list.push((path.into_boxed_slice(), leaf));
            if self.static_list.len() > SCAN_STATICS || !self.statics.is_empty() {
                let hasher = &self.hasher;
                for (path, leaf) in self.static_list.drain(..) {
                    let hash = hasher.hash_one(&path[..]);
                    self.statics.insert_unique(hash, (path, leaf), |(p, _)| hasher.hash_one(&p[..]));
                }
            }
        }
        self.len += 1;
        Ok(())
    }

    /// Finds the route for `path`, pushing each parameter's byte range (relative to
    /// `path`) onto `params`. On a miss `params` is left as it was.
    pub(crate) fn find(&self, path: &[u8], params: &mut Vec<(u32, u32)>) -> Option<&Leaf> {
        if self.static_lengths & length_bit(path.len()) != 0
            && let Some((_, leaf)) = if self.statics.is_empty() {
                self.static_list.iter().find(|(p, _)| same_bytes(p, path))
            } else {
                self.statics.find(self.hasher.hash_one(path), |(p, _)| same_bytes(p, path))
            }
        {
            debug_assert_eq!(
                find(&self.root, path, 0, &mut Vec::new()).map(|walked| walked.id),
                Some(leaf.id),
                "a static route's exact path walks to the same route"
            );
            return Some(leaf);
        }
        let base = params.len();
        let found = find(&self.root, path, 0, params);
        if found.is_none() {
            params.truncate(base);
        }
        found
    }

    /// Re-checks the structural invariants; used by tests after building big trees.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        check(&self.root);
    }
}

fn insert(
    node: &mut Node,
    segments: &[Segment<'_>],
    regexes: &mut std::vec::IntoIter<Regex>,
    leaf: Leaf,
) -> Result<(), Conflict> {
    let Some((first, rest)) = segments.split_first() else {
        if let Some(existing) = &node.value {
            return Err(Conflict(existing.route.clone()));
        }
        node.value = Some(leaf);
        return Ok(());
    };
    match first {
        Segment::Static(text) => insert_static(node, text, rest, regexes, leaf),
        Segment::Param { name, pattern } => {
            let regex = pattern.map(|_| regexes.next());
            let same = node
                .params
                .iter()
                .position(|e| *e.name == **name && e.pattern.as_ref().map(|p| &*p.0) == *pattern);
            let idx = match same {
                Some(i) => i,
                None => {
                    // Two edges that would accept the same segments are ambiguous: two
                    // unrestricted ones, or two with the same pattern.
                    if let Some(e) =
                        node.params.iter().find(|e| e.pattern.as_ref().map(|p| &*p.0) == *pattern)
                    {
                        return Err(Conflict(e.first_route.clone()));
                    }
                    let edge = ParamEdge {
                        name: (*name).into(),
                        pattern: match (pattern, regex) {
                            (Some(p), Some(Some(r))) => Some(((*p).into(), r)),
                            _ => None,
                        },
                        first_route: leaf.route.clone(),
                        node: Node::default(),
                    };
                    // Patterned edges are tried before the unrestricted one.
                    let at = if edge.pattern.is_some() {
                        node.params.iter().position(|e| e.pattern.is_none()).unwrap_or(node.params.len())
                    } else {
                        node.params.len()
                    };
                    node.params.insert(at, edge);
                    at
                }
            };
            insert(&mut node.params[idx].node, rest, regexes, leaf)
        }
        Segment::CatchAll { .. } => {
            if let Some(existing) = &node.catch_all {
                return Err(Conflict(existing.route.clone()));
            }
            node.catch_all = Some(leaf);
            Ok(())
        }
    }
}

fn insert_static(
    node: &mut Node,
    text: &[u8],
    rest: &[Segment<'_>],
    regexes: &mut std::vec::IntoIter<Regex>,
    leaf: Leaf,
) -> Result<(), Conflict> {
    debug_assert!(!text.is_empty());
    let Some(ci) = node.children.iter().position(|c| c.prefix[0] == text[0]) else {
        node.children.push(Node { prefix: text.to_vec(), ..Node::default() });
        let last = node.children.len() - 1;
        return insert(&mut node.children[last], rest, regexes, leaf);
    };
    let child = &mut node.children[ci];
    let common = child.prefix.iter().zip(text).take_while(|(a, b)| a == b).count();
    if common < child.prefix.len() {
        // Split: the child keeps the shared part; its old content moves one level down.
        let tail = Node {
            prefix: child.prefix[common..].to_vec(),
            children: std::mem::take(&mut child.children),
            params: std::mem::take(&mut child.params),
            catch_all: child.catch_all.take(),
            value: child.value.take(),
        };
        child.prefix.truncate(common);
        child.children.push(tail);
    }
    if common == text.len() {
        insert(child, rest, regexes, leaf)
    } else {
        insert_static(child, &text[common..], rest, regexes, leaf)
    }
}

fn find<'t>(node: &'t Node, path: &[u8], offset: usize, params: &mut Vec<(u32, u32)>) -> Option<&'t Leaf> {
    if path.is_empty() {
        if let Some(v) = &node.value {
            return Some(v);
        }
    } else {
        if let Some(child) = node.children.iter().find(|c| c.prefix[0] == path[0]) {
            if path.starts_with(&child.prefix) {
                let n = child.prefix.len();
                if let Some(v) = find(child, &path[n..], offset + n, params) {
                    return Some(v);
                }
            }
        }
        if !node.params.is_empty() {
            let seg = path.iter().position(|&b| b == b'/').unwrap_or(path.len());
            if seg > 0 {
                for edge in &node.params {
                    if let Some((_, re)) = &edge.pattern {
                        if !re.is_match(&path[..seg]) {
                            continue;
                        }
                    }
                    params.push((offset as u32, (offset + seg) as u32));
                    if let Some(v) = find(&edge.node, &path[seg..], offset + seg, params) {
                        return Some(v);
                    }
                    params.pop();
                }
            }
        }
    }
    if let Some(leaf) = &node.catch_all {
        params.push((offset as u32, (offset + path.len()) as u32));
        return Some(leaf);
    }
    None
}

#[cfg(test)]
fn check(node: &Node) {
    let mut firsts: Vec<u8> = node.children.iter().map(|c| c.prefix[0]).collect();
    let n = firsts.len();
    firsts.dedup();
    firsts.sort_unstable();
    firsts.dedup();
    assert_eq!(firsts.len(), n, "static children must differ in their first byte");
    for c in &node.children {
        assert!(!c.prefix.is_empty(), "a static child has a prefix");
        assert!(
            c.value.is_some() || c.catch_all.is_some() || !c.children.is_empty() || !c.params.is_empty(),
            "no dead-end nodes"
        );
        check(c);
    }
    let unrestricted = node.params.iter().filter(|e| e.pattern.is_none()).count();
    assert!(unrestricted <= 1, "at most one unrestricted parameter edge per node");
    if let Some(last) = node.params.last() {
        if unrestricted == 1 {
            assert!(last.pattern.is_none(), "the unrestricted edge is tried last");
        }
    }
    for e in &node.params {
        check(&e.node);
    }
}
