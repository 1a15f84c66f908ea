//! The client address the tower layer hands the verifier (for keys with an
//! IP allow-list).
//!
//! The **peer** is the address of the TCP connection: axum's
//! `ConnectInfo<SocketAddr>` in the request extensions (serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`), or a plain
//! [`SocketAddr`] extension for other tower servers. Without one the client
//! address is unknown and keys with an allow-list are refused.
//!
//! Only when the peer is inside the configured [`TrustedProxies`] ranges is
//! a forwarding header read: `Forwarded` (RFC 7239, its `for=` parameter)
//! or `X-Forwarded-For`, whichever is configured, all field lines in order.
//! The client is then the **rightmost address that is not a trusted
//! proxy** (each trusted proxy appends the address it received the request
//! from; everything left of the first untrusted hop may be made up by the
//! client). If the walk meets an entry that is not an address (`unknown`,
//! an obfuscated `_id`, a malformed value), the client is unknown: such an
//! entry was written by a proxy we trust, so nothing to its left can be
//! believed either. A header from a peer outside the ranges is ignored.
//!
//! ```
//! use api_keys::http::{ForwardedHeader, TrustedProxies};
//! use http::HeaderMap;
//!
//! let proxies = TrustedProxies::new(["10.0.0.0/8".parse()?], ForwardedHeader::XForwardedFor);
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.1.2.3".parse()?);
//! // Through a trusted proxy: the rightmost untrusted hop.
//! assert_eq!(proxies.client_ip("10.0.0.1".parse()?, &headers), Some("203.0.113.9".parse()?));
//! // From anywhere else the header is ignored.
//! assert_eq!(proxies.client_ip("192.0.2.7".parse()?, &headers), Some("192.0.2.7".parse()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName};
use ipnet::IpNet;

/// Which forwarding header trusted proxies set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `Forwarded: for=…` (RFC 7239).
    Forwarded,
    /// `X-Forwarded-For: client, proxy1, …`.
    XForwardedFor,
}

impl ForwardedHeader {
    /// The header's name.
    #[must_use]
    pub fn name(self) -> HeaderName {
        match self {
            Self::Forwarded => http::header::FORWARDED,
            Self::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
        }
    }
}

/// The reverse proxies whose forwarding header is believed, and which
/// header they set.
///
/// Only when the peer is inside the ranges is the header read (all field
/// lines in order); the client is then the rightmost address that is not a
/// trusted proxy. An entry that is not an address (`unknown`, an
/// obfuscated `_id`, malformed) met on that walk makes the client unknown
/// (keys with an allow-list are refused). A header from a peer outside the
/// ranges is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    ranges: Arc<[IpNet]>,
    header: ForwardedHeader,
}

/// One entry of a forwarding header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Ip(IpAddr),
    /// `unknown`, an obfuscated identifier, no `for=`, or malformed.
    Unknown,
}

impl TrustedProxies {
    /// Proxies in `ranges` (IPv4 and IPv6 CIDR ranges) that set `header`.
    pub fn new(ranges: impl IntoIterator<Item = IpNet>, header: ForwardedHeader) -> Self {
        Self { ranges: ranges.into_iter().map(|n| n.trunc()).collect(), header }
    }

    /// The header these proxies set.
    #[must_use]
    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// Whether `ip` is one of the proxies.
    #[must_use]
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ranges.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request from `peer` with `headers`, by the
    /// rightmost-untrusted rule; `None` when it cannot be known.
    #[must_use]
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let hops = self.hops(headers)?;
        let mut client = peer;
        for hop in hops.iter().rev() {
            match *hop {
                Hop::Unknown => return None,
                Hop::Ip(ip) if !self.trusts(ip) => return Some(ip),
                Hop::Ip(ip) => client = ip,
            }
        }
        Some(client)
    }

    /// Every hop of every field line of the configured header, in order;
    /// `None` when a line is not visible ASCII.
    fn hops(&self, headers: &HeaderMap) -> Option<Vec<Hop>> {
        let mut hops = Vec::new();
        for line in headers.get_all(self.header.name()) {
            let text = line.to_str().ok()?;
            match self.header {
                ForwardedHeader::Forwarded => forwarded_hops(text, &mut hops),
                ForwardedHeader::XForwardedFor => {
                    hops.extend(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(xff_hop));
                }
            }
        }
        Some(hops)
    }
}

/// The peer address from the request extensions: axum's
/// `ConnectInfo<SocketAddr>`, else a plain [`SocketAddr`].
#[must_use]
pub fn peer_addr(extensions: &Extensions) -> Option<IpAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(addr.ip());
    }
    extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The client address the layer passes to the verifier.
pub(crate) fn client_ip(
    trusted: Option<&TrustedProxies>,
    extensions: &Extensions,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let peer = peer_addr(extensions)?;
    match trusted {
        Some(t) => t.client_ip(peer, headers),
        None => Some(peer.to_canonical()),
    }
}

/// An `X-Forwarded-For` entry: an address, `[v6]:port` or `v4:port`.
fn xff_hop(entry: &str) -> Hop {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Hop::Ip(ip.to_canonical());
    }
    entry.parse::<SocketAddr>().map_or(Hop::Unknown, |s| Hop::Ip(s.ip().to_canonical()))
}

/// Appends the `for=` of each element of one `Forwarded` line (an element
/// without `for=`, or a malformed one, is an unknown hop).
fn forwarded_hops(line: &str, hops: &mut Vec<Hop>) {
    for element in split_outside_quotes(line, ',') {
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        let mut node = Hop::Unknown;
        for pair in split_outside_quotes(element, ';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                node = Hop::Unknown;
                break;
            };
            if name.trim().eq_ignore_ascii_case("for") {
                node = unquote(value.trim()).map_or(Hop::Unknown, |v| forwarded_node(&v));
            }
        }
        hops.push(node);
    }
}

/// Splits at `sep` outside quoted strings (a `\` inside quotes escapes).
fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// A token or a quoted string's content; `None` if malformed.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return (!value.is_empty() && !value.contains(['"', '\\'])).then(|| value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// An RFC 7239 node: `IPv4[:port]`, `"[IPv6]"[:port]`, `unknown` or an
/// obfuscated `_identifier` (the last two are unknown hops).
fn forwarded_node(node: &str) -> Hop {
    // `port` is empty or `:<port>`.
    let (host, port) = if let Some(rest) = node.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Hop::Unknown;
        };
        (v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6), after)
    } else {
        let at = node.find(':').unwrap_or(node.len());
        (node[..at].parse::<Ipv4Addr>().ok().map(IpAddr::V4), &node[at..])
    };
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(valid_port);
    match host {
        Some(ip) if port_ok => Hop::Ip(ip.to_canonical()),
        _ => Hop::Unknown,
    }
}

/// RFC 7239 §6: a port number or an obfuscated port (`_` + [A-Za-z0-9._-]).
fn valid_port(port: &str) -> bool {
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    let obfuscated = port.len() > 1
        && port.starts_with('_')
        && port.bytes().skip(1).all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    digits || obfuscated
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &str, lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(l).unwrap());
        }
        h
    }

    fn fwd() -> TrustedProxies {
        TrustedProxies::new(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()], ForwardedHeader::Forwarded)
    }

    fn xff() -> TrustedProxies {
        TrustedProxies::new(["10.0.0.0/8".parse().unwrap()], ForwardedHeader::XForwardedFor)
    }

    #[test]
    fn forwarded_nodes_quoting_ipv6_brackets_and_ports() {
        assert_eq!(forwarded_node("192.0.2.60"), Hop::Ip(ip("192.0.2.60")));
        assert_eq!(forwarded_node("192.0.2.60:4711"), Hop::Ip(ip("192.0.2.60")));
        assert_eq!(forwarded_node("[2001:db8:cafe::17]"), Hop::Ip(ip("2001:db8:cafe::17")));
        assert_eq!(forwarded_node("[2001:db8:cafe::17]:4711"), Hop::Ip(ip("2001:db8:cafe::17")));
        assert_eq!(forwarded_node("[2001:db8::1]:_hidden"), Hop::Ip(ip("2001:db8::1")));
        assert_eq!(forwarded_node("[::ffff:192.0.2.1]"), Hop::Ip(ip("192.0.2.1")), "mapped v4 is v4");
        for bad in ["unknown", "_hidden", "_SEVKISEK", "2001:db8::1", "[2001:db8::1", "1.2.3.4:", "1.2.3.4:99999"] {
            assert_eq!(forwarded_node(bad), Hop::Unknown, "{bad}");
        }
        assert_eq!(forwarded_node("[1.2.3.4]"), Hop::Unknown, "v4 in brackets");
        assert_eq!(forwarded_node("1.2.3.4:_p"), Hop::Ip(ip("1.2.3.4")));
    }

    #[test]
    fn forwarded_elements_and_parameters() {
        let mut hops = Vec::new();
        forwarded_hops(r#"for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https, by=10.0.0.1"#, &mut hops);
        assert_eq!(hops, [Hop::Ip(ip("192.0.2.43")), Hop::Ip(ip("2001:db8:cafe::17")), Hop::Unknown]);
        let mut hops = Vec::new();
        forwarded_hops(r#"For="198.51.100.17";by="a,b;c", FOR=unknown"#, &mut hops);
        assert_eq!(
            hops,
            [Hop::Ip(ip("198.51.100.17")), Hop::Unknown],
            "names are case-insensitive, quotes hide , and ;"
        );
        let mut hops = Vec::new();
        forwarded_hops(r#"for="192.0.2.1\"x", garbage, for=1.2.3.4"#, &mut hops);
        assert_eq!(hops, [Hop::Unknown, Hop::Unknown, Hop::Ip(ip("1.2.3.4"))]);
        assert_eq!(unquote(r#""a\"b""#).as_deref(), Some("a\"b"));
        assert_eq!(unquote(r#""open"#), None);
        assert_eq!(unquote(""), None);
    }

    #[test]
    fn rightmost_untrusted_across_several_field_lines() {
        let h = headers("forwarded", &["for=198.51.100.1", r#"for=203.0.113.5, for="[fd00::2]""#]);
        assert_eq!(fwd().client_ip(ip("10.0.0.1"), &h), Some(ip("203.0.113.5")));
        let h = headers("x-forwarded-for", &["198.51.100.1, 203.0.113.5", "10.9.9.9"]);
        assert_eq!(xff().client_ip(ip("10.0.0.1"), &h), Some(ip("203.0.113.5")));
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        let h = headers("x-forwarded-for", &["10.0.0.5"]);
        assert_eq!(xff().client_ip(ip("192.0.2.9"), &h), Some(ip("192.0.2.9")));
        let h = headers("forwarded", &["for=10.0.0.5"]);
        assert_eq!(fwd().client_ip(ip("192.0.2.9"), &h), Some(ip("192.0.2.9")));
    }

    #[test]
    fn the_other_header_is_ignored_even_from_a_trusted_peer() {
        let h = headers("forwarded", &["for=203.0.113.5"]);
        assert_eq!(xff().client_ip(ip("10.0.0.1"), &h), Some(ip("10.0.0.1")));
    }

    #[test]
    fn unknown_or_obfuscated_hops_make_the_client_unknown() {
        let h = headers("forwarded", &["for=203.0.113.5, for=_hidden"]);
        assert_eq!(fwd().client_ip(ip("10.0.0.1"), &h), None);
        let h = headers("x-forwarded-for", &["203.0.113.5, not-an-ip"]);
        assert_eq!(xff().client_ip(ip("10.0.0.1"), &h), None);
        // An unknown hop left of the first untrusted one does not matter.
        let h = headers("forwarded", &["for=unknown, for=203.0.113.5"]);
        assert_eq!(fwd().client_ip(ip("10.0.0.1"), &h), Some(ip("203.0.113.5")));
    }

    #[test]
    fn all_trusted_hops_give_the_leftmost_and_no_header_gives_the_peer() {
        let h = headers("x-forwarded-for", &["10.1.1.1, 10.2.2.2"]);
        assert_eq!(xff().client_ip(ip("10.0.0.1"), &h), Some(ip("10.1.1.1")));
        assert_eq!(xff().client_ip(ip("10.0.0.1"), &HeaderMap::new()), Some(ip("10.0.0.1")));
    }

    #[test]
    fn xff_entries_with_ports_and_brackets() {
        assert_eq!(xff_hop("203.0.113.5:8080"), Hop::Ip(ip("203.0.113.5")));
        assert_eq!(xff_hop("[2001:db8::1]:443"), Hop::Ip(ip("2001:db8::1")));
        assert_eq!(xff_hop("2001:db8::1"), Hop::Ip(ip("2001:db8::1")));
        assert_eq!(xff_hop("unknown"), Hop::Unknown);
    }

    #[test]
    fn the_peer_comes_from_connect_info_or_a_socket_addr() {
        let mut ext = Extensions::new();
        assert_eq!(peer_addr(&ext), None);
        ext.insert("192.0.2.1:9".parse::<SocketAddr>().unwrap());
        assert_eq!(peer_addr(&ext), Some(ip("192.0.2.1")));
        #[cfg(feature = "axum")]
        {
            ext.insert(axum::extract::ConnectInfo("198.51.100.2:9".parse::<SocketAddr>().unwrap()));
            assert_eq!(peer_addr(&ext), Some(ip("198.51.100.2")), "ConnectInfo first");
        }
        assert_eq!(client_ip(None, &Extensions::new(), &HeaderMap::new()), None);
    }
}
