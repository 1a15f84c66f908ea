//! Which reverse proxies `keyctl serve` believes about the client address
//! (for keys with an IP allow-list): `--trusted-proxy CIDR` (repeatable)
//! or `API_KEYS_TRUSTED_PROXIES` (comma-separated), and the header they
//! set, `--proxy-header forwarded|x-forwarded-for` or
//! `API_KEYS_PROXY_HEADER` (default `x-forwarded-for`). Without trusted
//! proxies the client address is the connection's peer and forwarding
//! headers are ignored.

use std::net::IpAddr;

use api_keys::http::{ForwardedHeader, TrustedProxies};
use ipnet::IpNet;

use crate::failure::{BAD_INPUT, Failure};

/// The variable listing trusted proxy ranges, comma-separated.
pub(crate) const TRUSTED_PROXIES_VAR: &str = "API_KEYS_TRUSTED_PROXIES";
/// The variable naming the header trusted proxies set.
pub(crate) const PROXY_HEADER_VAR: &str = "API_KEYS_PROXY_HEADER";

/// Trusted proxy ranges and their header.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxies {
    pub(crate) ranges: Vec<IpNet>,
    pub(crate) header: Option<ForwardedHeader>,
}

impl Proxies {
    /// From the flags, else the environment.
    ///
    /// # Errors
    /// A [`BAD_INPUT`] failure naming the first bad range or header.
    pub(crate) fn resolve(flags: Vec<String>, header: Option<String>) -> Result<Self, Failure> {
        let (texts, from) = if flags.is_empty() {
            let env = crate::env::var(TRUSTED_PROXIES_VAR).unwrap_or_default();
            (env.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(), TRUSTED_PROXIES_VAR)
        } else {
            (flags, "--trusted-proxy")
        };
        let ranges = texts.iter().map(|t| range(t, from)).collect::<Result<Vec<_>, _>>()?;
        let header = match header
            .map(|h| (h, "--proxy-header"))
            .or_else(|| crate::env::var(PROXY_HEADER_VAR).map(|h| (h, PROXY_HEADER_VAR)))
        {
            None => None,
            Some((text, from)) => Some(parse_header(&text, from)?),
        };
        if header.is_some() && ranges.is_empty() {
            return Err(Failure::new(BAD_INPUT, "--proxy-header needs at least one --trusted-proxy range"));
        }
        Ok(Self { ranges, header: header.or((!texts.is_empty()).then_some(ForwardedHeader::XForwardedFor)) })
    }

    /// The library's view of them; `None` when no proxy is trusted.
    pub(crate) fn trusted(&self) -> Option<TrustedProxies> {
        self.header.map(|header| TrustedProxies::new(self.ranges.iter().copied(), header))
    }
}

/// A CIDR range or a single address.
fn range(text: &str, from: &str) -> Result<IpNet, Failure> {
    let text = text.trim();
    text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from)).map_err(|_| {
        let shown: String = text.chars().take(64).collect();
        Failure::new(BAD_INPUT, format!("{from}: `{shown}` is not a CIDR range or address (e.g. 10.0.0.0/8)"))
    })
}

fn parse_header(text: &str, from: &str) -> Result<ForwardedHeader, Failure> {
    match text.trim().to_ascii_lowercase().as_str() {
        "forwarded" => Ok(ForwardedHeader::Forwarded),
        "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
        _ => Err(Failure::new(BAD_INPUT, format!("{from}: expected `forwarded` or `x-forwarded-for`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_addresses_and_the_header() {
        let p = Proxies::resolve(vec!["10.0.0.0/8".into(), "192.0.2.1".into(), "fd00::/8".into()], None).unwrap();
        assert_eq!(p.ranges.len(), 3);
        assert_eq!(p.ranges[1].to_string(), "192.0.2.1/32");
        assert_eq!(p.header, Some(ForwardedHeader::XForwardedFor), "the default header");
        let p = Proxies::resolve(vec!["10.0.0.0/8".into()], Some("Forwarded".into())).unwrap();
        assert_eq!(p.header, Some(ForwardedHeader::Forwarded));
    }

    #[test]
    fn bad_ranges_and_headers_are_refused() {
        assert!(Proxies::resolve(vec!["10.0.0.0/33".into()], None).is_err());
        assert!(Proxies::resolve(vec!["proxy.example".into()], None).is_err());
        assert!(Proxies::resolve(vec!["10.0.0.0/8".into()], Some("x-real-ip".into())).is_err());
        assert!(Proxies::resolve(vec![], Some("forwarded".into())).is_err(), "a header without ranges");
    }
}
