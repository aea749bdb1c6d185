//! Which addresses the service may open a Redis connection to.
//!
//! Every connection goes through [`super::Conn::open`], which resolves the
//! host, checks every resolved address here and connects to a checked
//! address (no second lookup). So an address a user adopts and one a peer
//! reports (replicas in `INFO replication`, a replica's master, cluster
//! nodes) meet the same rules before any password is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};

/// An IP network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `fe80::/10`, or a plain address (`/32`, `/128`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim_matches(['[', ']']).parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self {
            addr: addr.to_canonical(),
            prefix,
        })
    }

    /// A comma-separated list; `Err` names the first bad entry.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| Self::parse(e).ok_or_else(|| e.to_owned()))
            .collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Networks refused whatever the configuration: link-local (which holds
/// the cloud metadata services), the metadata addresses outside it, and
/// "this network" / the unspecified address.
pub fn default_denied() -> Vec<Cidr> {
    [
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)),
            prefix: 16,
        },
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
            prefix: 10,
        },
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
            prefix: 32,
        },
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
            prefix: 128,
        },
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
            prefix: 32,
        },
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)),
            prefix: 8,
        },
        Cidr {
            addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            prefix: 128,
        },
    ]
    .to_vec()
}

/// The allow/deny lists and the service's own listening addresses.
/// Cheap to clone; clones share the listening addresses.
#[derive(Clone, Debug)]
pub struct TargetPolicy {
    /// When set, the only networks allowed.
    allow: Option<Arc<Vec<Cidr>>>,
    /// Refused even when allowed: the defaults plus `--deny-targets`.
    deny: Arc<Vec<Cidr>>,
    /// The API and replication listeners, registered as they open.
    own: Arc<RwLock<Vec<SocketAddr>>>,
}

impl Default for TargetPolicy {
    fn default() -> Self {
        Self::new(None, Vec::new())
    }
}

/// Why a target was refused (shown to users as a fixed phrase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Denied,
    NotAllowed,
    OwnPort,
}

impl TargetPolicy {
    /// `allow`: the only networks allowed, if given; `deny`: refused in
    /// addition to [`default_denied`].
    pub fn new(allow: Option<Vec<Cidr>>, deny: Vec<Cidr>) -> Self {
        let mut all = default_denied();
        all.extend(deny);
        Self {
            allow: allow.map(Arc::new),
            deny: Arc::new(all),
            own: Arc::default(),
        }
    }

    /// Registers a listener of this service, refused as a target.
    pub fn add_own(&self, addr: SocketAddr) {
        if let Ok(mut own) = self.own.write() {
            if !own.contains(&addr) {
                own.push(addr);
            }
        }
    }

    /// Whether the service may connect to `addr`.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Refusal> {
        let ip = addr.ip().to_canonical();
        if self.deny.iter().any(|c| c.contains(ip)) {
            return Err(Refusal::Denied);
        }
        if let Some(allow) = &self.allow {
            if !allow.iter().any(|c| c.contains(ip)) {
                return Err(Refusal::NotAllowed);
            }
        }
        let own: Vec<SocketAddr> = self.own.read().map(|o| o.clone()).unwrap_or_default();
        for o in own.iter().filter(|o| o.port() == addr.port()) {
            let oip = o.ip().to_canonical();
            if ip == oip || ip.is_loopback() || ip.is_unspecified() {
                return Err(Refusal::OwnPort);
            }
            if oip.is_unspecified() && is_local_address(ip) {
                return Err(Refusal::OwnPort);
            }
        }
        Ok(())
    }
}

/// Whether `ip` is one of this machine's addresses: only those can be
/// bound to.
fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_match_their_networks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert_eq!(
            Cidr::parse("192.0.2.7").unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fe80::/10")
            .unwrap()
            .contains("fe80::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("host").is_none());
        assert_eq!(Cidr::parse_list("10.0.0.0/8, x").unwrap_err(), "x");
    }

    #[test]
    fn defaults_deny_metadata_and_link_local_and_allow_wins_nothing_over_deny() {
        let p = TargetPolicy::default();
        for a in [
            "169.254.169.254:80",
            "[fd00:ec2::254]:80",
            "100.100.100.200:80",
            "[fe80::1]:6379",
            "0.0.0.0:6379",
            "[::]:6379",
            "[::ffff:169.254.169.254]:80",
        ] {
            assert_eq!(p.check(sa(a)), Err(Refusal::Denied), "{a}");
        }
        assert!(p.check(sa("127.0.0.1:6379")).is_ok());
        let p = TargetPolicy::new(
            Some(vec![Cidr::parse("10.0.0.0/8").unwrap()]),
            vec![Cidr::parse("10.9.0.0/16").unwrap()],
        );
        assert!(p.check(sa("10.1.1.1:6379")).is_ok());
        assert_eq!(p.check(sa("10.9.1.1:6379")), Err(Refusal::Denied));
        assert_eq!(p.check(sa("127.0.0.1:6379")), Err(Refusal::NotAllowed));
    }

    #[test]
    fn own_ports_are_refused_on_local_addresses_only() {
        let p = TargetPolicy::default();
        let q = p.clone();
        q.add_own(sa("0.0.0.0:7000"));
        assert_eq!(p.check(sa("127.0.0.1:7000")), Err(Refusal::OwnPort));
        assert_eq!(p.check(sa("127.0.0.2:7000")), Err(Refusal::OwnPort));
        assert!(p.check(sa("127.0.0.1:7001")).is_ok());
        assert!(p.check(sa("192.0.2.1:7000")).is_ok());
    }
}
