//! IP allow-lists: CIDR ranges of IPv4 and IPv6 ([`ipnet`]).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::ControlError;

/// The client addresses a key may be used from: CIDR ranges (a bare address
/// is its own /32 or /128). IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`,
/// what a dual-stack socket reports for IPv4 peers) match IPv4 ranges.
///
/// Parsed from a comma-separated list (`10.0.0.0/8,2001:db8::/32`) or a
/// JSON array of such strings; kept normalised (host bits cleared, sorted,
/// duplicates and ranges inside others removed).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IpAllowList(Arc<[IpNet]>);

impl IpAllowList {
    /// Most ranges one key may list.
    pub const MAX_ENTRIES: usize = super::error::IP_ALLOW_LIST_MAX_ENTRIES;

    /// An allow-list of `ranges`.
    ///
    /// # Errors
    /// [`ControlError::IpRange`] when empty or longer than
    /// [`IpAllowList::MAX_ENTRIES`].
    pub fn new(ranges: impl IntoIterator<Item = IpNet>) -> Result<Self, ControlError> {
        let ranges: Vec<IpNet> = ranges.into_iter().map(|n| n.trunc()).collect();
        if ranges.is_empty() || ranges.len() > Self::MAX_ENTRIES {
            return Err(ControlError::IpRange(String::new()));
        }
        Ok(Self(IpNet::aggregate(&ranges).into()))
    }

    /// Whether `ip` lies in one of the ranges.
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The ranges.
    #[must_use]
    pub fn ranges(&self) -> &[IpNet] {
        &self.0
    }
}

/// One entry: a CIDR range or a bare address.
fn parse_entry(text: &str) -> Result<IpNet, ControlError> {
    let text = text.trim();
    let bad = || ControlError::IpRange(text.chars().take(64).collect());
    if text.contains('/') {
        return text.parse::<IpNet>().map_err(|_| bad());
    }
    text.parse::<IpAddr>().map(IpNet::from).map_err(|_| bad())
}

impl FromStr for IpAllowList {
    type Err = ControlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let entries = s.split(',').filter(|e| !e.trim().is_empty());
        Self::new(entries.map(parse_entry).collect::<Result<Vec<_>, _>>()?)
    }
}

impl fmt::Display for IpAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for IpAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpAllowList({self})")
    }
}

impl Serialize for IpAllowList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ToString::to_string))
    }
}

impl<'de> Deserialize<'de> for IpAllowList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = <Vec<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        if entries.len() > Self::MAX_ENTRIES {
            return Err(serde::de::Error::custom(ControlError::IpRange(String::new())));
        }
        let nets = entries.iter().map(|e| parse_entry(e)).collect::<Result<Vec<_>, _>>();
        nets.and_then(Self::new).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_v6_and_mapped_addresses() {
        let list: IpAllowList = "10.0.0.0/8, 192.168.1.7 ,2001:db8::/32".parse().unwrap();
        assert!(list.allows(ip("10.1.2.3")));
        assert!(list.allows(ip("192.168.1.7")));
        assert!(!list.allows(ip("192.168.1.8")));
        assert!(list.allows(ip("2001:db8::1")));
        assert!(!list.allows(ip("2001:db9::1")));
        assert!(list.allows(ip("::ffff:10.9.9.9")), "IPv4-mapped IPv6 matches IPv4 ranges");
        assert!(!list.allows(ip("11.0.0.1")));
    }

    #[test]
    fn normalised_display_round_trips() {
        let list: IpAllowList = "10.1.2.3/8,10.0.0.0/16,::1".parse().unwrap();
        assert_eq!(list.to_string(), "10.0.0.0/8,::1/128");
        assert_eq!(list.to_string().parse::<IpAllowList>().unwrap(), list);
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, r#"["10.0.0.0/8","::1/128"]"#);
        assert_eq!(serde_json::from_str::<IpAllowList>(&json).unwrap(), list);
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["", "10.0.0.0/33", "10.0.0", "example.com", "10.0.0.0/8,,x", "::/129"] {
            assert!(bad.parse::<IpAllowList>().is_err(), "{bad:?}");
        }
        let many = (0..65).map(|i| format!("10.0.{i}.0/24")).collect::<Vec<_>>().join(",");
        assert!(many.parse::<IpAllowList>().is_err());
        assert!(serde_json::from_str::<IpAllowList>(r#"["10.0.0.0/8","nope"]"#).is_err());
        assert!(serde_json::from_str::<IpAllowList>("[]").is_err());
    }
}
