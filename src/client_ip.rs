//! The client's address behind proxies: trusted proxy CIDRs and the parsing of
//! `X-Forwarded-For` and `Forwarded` (RFC 7239) header values.
//!
//! The rule (Gin's `SetTrustedProxies` / `ClientIP`): forwarding headers are believed
//! only when the direct peer is a trusted proxy. Then the header's hops are walked from
//! the right (the entry the nearest proxy appended) towards the left, trusted hops are
//! skipped, and the first untrusted address is the client. When every hop is trusted,
//! the leftmost is the client. An entry that is not an address (`unknown`, an
//! obfuscated `_name`, garbage) right of the answer makes the whole header
//! unbelievable, and the peer address is used. With no trusted proxy configured the
//! peer address is always the answer.
//!
//! Grammar (RFC 7239 §4, with RFC 9110 lists):
//!
//! ```text
//! Forwarded         = 1#forwarded-element
//! forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
//! forwarded-pair    = token "=" value
//! value             = token / quoted-string
//! node              = nodename [ ":" node-port ]      ; for=
//! nodename          = IPv4address / "[" IPv6address "]" / "unknown" / obfnode
//! X-Forwarded-For   = 1#node                            ; de facto, bare IPv6 allowed
//! ```
//!
//! Header bytes are parsed in place, scanning forward once: no allocation per request.
//! CIDRs are parsed once, at configuration time. This module owns no request state and
//! never touches the connection: `Context::client_ip` hands it the peer and the header
//! values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a trusted proxy entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trusted proxy `{entry}`: {reason}")]
pub struct TrustedProxyError {
    /// The entry as given.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// One network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cidr {
    V4 { net: u32, prefix: u8 },
    V6 { net: u128, prefix: u8 },
}

impl Cidr {
    /// `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128). Host bits past the
    /// prefix are cleared, as Go's `net.ParseCIDR` does.
    fn parse(entry: &str) -> Result<Cidr, &'static str> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err("empty entry");
        }
        let (addr, prefix) = match entry.split_once('/') {
            Some((a, p)) => {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err("the prefix length is not a number");
                }
                (a, Some(p.parse::<u8>().map_err(|_| "the prefix length is too large")?))
            }
            None => (entry, None),
        };
        match IpAddr::from_str(addr).map_err(|_| "not an IPv4 or IPv6 address")? {
            IpAddr::V4(a) => {
                let prefix = prefix.unwrap_or(32);
                if prefix > 32 {
                    return Err("an IPv4 prefix length is at most 32");
                }
                Ok(Cidr::V4 { net: u32::from(a) & mask32(prefix), prefix })
            }
            IpAddr::V6(a) => {
                let prefix = prefix.unwrap_or(128);
                if prefix > 128 {
                    return Err("an IPv6 prefix length is at most 128");
                }
                Ok(Cidr::V6 { net: u128::from(a) & mask128(prefix), prefix })
            }
        }
    }

    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { net, prefix }, IpAddr::V4(a)) => u32::from(a) & mask32(prefix) == net,
            (Cidr::V6 { net, prefix }, IpAddr::V6(a)) => u128::from(a) & mask128(prefix) == net,
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// The networks whose peers may tell the client's address in forwarding headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<Cidr>,
}

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `fd00::/8`) or bare addresses (`192.0.2.7`, `::1`).
    /// The error names the first bad entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, TrustedProxyError> {
        let nets = entries
            .iter()
            .map(|e| {
                Cidr::parse(e.as_ref())
                    .map_err(|reason| TrustedProxyError { entry: e.as_ref().to_owned(), reason })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets })
    }

    /// Whether no proxy is trusted (forwarding headers are then always ignored).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` lies in a trusted network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client's address given the direct peer and the request's `X-Forwarded-For`
    /// and `Forwarded` header lines (in arrival order). `X-Forwarded-For` is used when
    /// present, `Forwarded` otherwise; see the module docs for the walk.
    pub(crate) fn resolve<'a, X, F>(&self, peer: IpAddr, xff: X, forwarded: F) -> IpAddr
    where
        X: Iterator<Item = &'a [u8]>,
        F: Iterator<Item = &'a [u8]>,
    {
        if self.is_empty() || !self.contains(peer) {
            return peer;
        }
        let mut xff = xff.peekable();
        let found = if xff.peek().is_some() {
            self.walk(xff.flat_map(|line| split_list(line).map(parse_node)))
        } else {
            self.walk(forwarded.flat_map(|line| forwarded_elements(line).map(forwarded_for)))
        };
        found.unwrap_or(peer)
    }

    /// The rightmost untrusted address, or the leftmost when all are trusted; `None`
    /// when an entry right of the answer is not an address, or there is none.
    fn walk(&self, hops: impl Iterator<Item = Option<IpAddr>>) -> Option<IpAddr> {
        let mut untrusted = None;
        let mut leftmost = None;
        let mut broken = false;
        for hop in hops {
            match hop {
                None => broken = true,
                Some(ip) if !self.contains(ip) => {
                    untrusted = Some(ip);
                    broken = false;
                }
                Some(ip) => {
                    leftmost = leftmost.or(Some(ip));
                }
            }
        }
        if broken { None } else { untrusted.or(leftmost) }
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The non-empty members of a comma-separated list, trimmed.
fn split_list(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b',').map(trim).filter(|m| !m.is_empty())
}

/// A node (`192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`, `[2001:db8::1]:80`,
/// `2001:db8::1`) as an address; `None` for anything else (`unknown`, `_hidden`).
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(node).ok()?;
    if let Some(rest) = node.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return Ipv6Addr::from_str(v6).ok().map(IpAddr::V6);
    }
    match node.split_once(':') {
        // One colon: IPv4 with a port.
        Some((v4, port)) if !port.contains(':') => {
            if !is_port(port) {
                return None;
            }
            Ipv4Addr::from_str(v4).ok().map(IpAddr::V4)
        }
        _ => IpAddr::from_str(node).ok(),
    }
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The elements of a `Forwarded` line: split at commas outside quoted strings.
fn forwarded_elements(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = line;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            let end = split_point(rest, b',');
            let element = trim(&rest[..end]);
            rest = rest.get(end + 1..).unwrap_or(&[]);
            if !element.is_empty() {
                return Some(element);
            }
        }
    })
}

/// The index of the first `sep` outside a quoted string (or the length).
fn split_point(s: &[u8], sep: u8) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if !quoted && b == sep {
            return i;
        }
    }
    s.len()
}

/// The `for=` node of one `Forwarded` element as an address; `None` when it has none
/// or it is not an address.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let mut rest = element;
    while !rest.is_empty() {
        let end = split_point(rest, b';');
        let pair = trim(&rest[..end]);
        rest = rest.get(end + 1..).unwrap_or(&[]);
        let Some(eq) = pair.iter().position(|&b| b == b'=') else { continue };
        if !trim(&pair[..eq]).eq_ignore_ascii_case(b"for") {
            continue;
        }
        let value = trim(&pair[eq + 1..]);
        let value = match value {
            [b'"', inner @ .., b'"'] => inner,
            v => v,
        };
        return parse_node(value);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(entries).expect("test CIDRs")
    }

    /// One table row: does `cidr` contain `addr`?
    fn check_contains(cidr: &str, addr: &str, want: bool) {
        assert_eq!(trusted(&[cidr]).contains(ip(addr)), want, "{cidr} ∋ {addr}");
    }

    #[test]
    fn cidr_matching() {
        for (cidr, addr, want) in [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.168.1.0/24", "192.168.1.77", true),
            ("192.168.1.0/24", "192.168.2.1", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            // host bits past the prefix are cleared, like Go's ParseCIDR
            ("10.1.2.3/8", "10.200.0.1", true),
            ("::1/128", "::1", true),
            ("::1", "::2", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "fe80::1", true),
            // an IPv4-mapped IPv6 peer matches IPv4 networks
            ("10.0.0.0/8", "::ffff:10.0.0.1", true),
            // families never cross otherwise
            ("0.0.0.0/0", "::1", false),
            ("::/0", "127.0.0.1", false),
        ] {
            check_contains(cidr, addr, want);
        }
    }

    #[test]
    fn bad_entries_are_named() {
        for (entry, reason) in [
            ("", "empty entry"),
            ("10.0.0.0/33", "an IPv4 prefix length is at most 32"),
            ("::/129", "an IPv6 prefix length is at most 128"),
            ("10.0.0.0/", "the prefix length is not a number"),
            ("10.0.0.0/+8", "the prefix length is not a number"),
            ("10.0.0.0/999", "the prefix length is too large"),
            ("10.0.0/8", "not an IPv4 or IPv6 address"),
            ("localhost", "not an IPv4 or IPv6 address"),
        ] {
            let err = TrustedProxies::parse(&["10.0.0.0/8", entry]).expect_err(entry);
            assert_eq!(err, TrustedProxyError { entry: entry.to_owned(), reason }, "{entry}");
        }
    }

    /// One row: the client for this peer and these header lines.
    fn check_resolve(peer: &str, xff: &[&str], fwd: &[&str], want: &str) {
        let t = trusted(&["10.0.0.0/8", "::1/128"]);
        let got = t.resolve(ip(peer), xff.iter().map(|l| l.as_bytes()), fwd.iter().map(|l| l.as_bytes()));
        assert_eq!(got, ip(want), "peer {peer} xff {xff:?} forwarded {fwd:?}");
    }

    #[test]
    fn forwarding_headers_are_walked_from_the_right() {
        for (peer, xff, fwd, want) in [
            // an untrusted peer's headers are never believed
            ("203.0.113.1", &["198.51.100.7"][..], &[][..], "203.0.113.1"),
            ("203.0.113.1", &[], &["for=198.51.100.7"], "203.0.113.1"),
            // a trusted peer with no header: the peer
            ("10.0.0.1", &[], &[], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.7"], &[], "198.51.100.7"),
            // a spoofed left part is skipped: the rightmost untrusted hop wins
            ("10.0.0.1", &["1.1.1.1, 198.51.100.7, 10.0.0.2"], &[], "198.51.100.7"),
            // lines are one list in arrival order
            ("10.0.0.1", &["1.1.1.1", "198.51.100.7 , 10.0.0.9"], &[], "198.51.100.7"),
            // all trusted: the leftmost
            ("10.0.0.1", &["10.0.0.3, 10.0.0.2"], &[], "10.0.0.3"),
            // garbage right of the answer: not believed
            ("10.0.0.1", &["198.51.100.7, nonsense"], &[], "10.0.0.1"),
            // garbage left of the answer does not matter
            ("10.0.0.1", &["nonsense, 198.51.100.7"], &[], "198.51.100.7"),
            // ports and brackets tolerated in X-Forwarded-For
            ("10.0.0.1", &["198.51.100.7:5000"], &[], "198.51.100.7"),
            ("10.0.0.1", &["[2001:db8::1]:4711"], &[], "2001:db8::1"),
            ("::1", &["2001:db8::5"], &[], "2001:db8::5"),
            ("10.0.0.1", &["198.51.100.7:x"], &[], "10.0.0.1"),
            // Forwarded, quoted IPv6 with a port
            ("10.0.0.1", &[], &[r#"for="[2001:db8::1]:4711""#], "2001:db8::1"),
            ("10.0.0.1", &[], &["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
            ("10.0.0.1", &[], &["For=192.0.2.43, for=198.51.100.17;by=10.0.0.1"], "198.51.100.17"),
            ("10.0.0.1", &[], &["for=192.0.2.43, for=10.0.0.5"], "192.0.2.43"),
            // a comma inside a quoted value does not split elements
            ("10.0.0.1", &[], &[r#"for=192.0.2.43;ext="a,b""#], "192.0.2.43"),
            // unknown / obfuscated right of the answer: not believed
            ("10.0.0.1", &[], &["for=192.0.2.43, for=unknown"], "10.0.0.1"),
            ("10.0.0.1", &[], &["for=192.0.2.43, for=_hidden"], "10.0.0.1"),
            ("10.0.0.1", &[], &["proto=https"], "10.0.0.1"),
            // X-Forwarded-For wins over Forwarded when both are there
            ("10.0.0.1", &["198.51.100.7"], &["for=192.0.2.1"], "198.51.100.7"),
            // an IPv4-mapped peer is trusted like its IPv4 address
            ("::ffff:10.0.0.1", &["198.51.100.7"], &[], "198.51.100.7"),
        ] {
            check_resolve(peer, xff, fwd, want);
        }
    }

    #[test]
    fn nodes() {
        for (node, want) in [
            ("192.0.2.1", Some("192.0.2.1")),
            ("192.0.2.1:80", Some("192.0.2.1")),
            ("[::1]", Some("::1")),
            ("[::1]:8080", Some("::1")),
            ("::1", Some("::1")),
            ("[::1]x", None),
            ("[::1", None),
            ("192.0.2.1:", None),
            ("192.0.2.1:123456", None),
            ("unknown", None),
            ("", None),
        ] {
            assert_eq!(parse_node(node.as_bytes()), want.map(ip), "{node}");
        }
    }
}
