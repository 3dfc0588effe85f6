//! The SSRF guard: HTTP tools are driven by a model, which is driven by whatever text reached
//! it, so by default they must not reach the host's own network (loopback, private ranges,
//! cloud metadata endpoints).
//!
//! The check runs after DNS resolution, inside the HTTP client's resolver: reqwest connects to
//! exactly the addresses [`GuardedResolver`] returned, so a name cannot pass the check with a
//! public address and then connect to a private one (DNS rebinding). IP-literal URLs never
//! reach a resolver, so callers check them with [`Guard::check_host`] before every request,
//! every redirect hop included.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Cloud metadata host names, refused by name whatever they resolve to (their addresses are
/// link-local or private anyway, but a resolver could be configured otherwise).
const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
];

/// A destination the guard refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} resolves to a private or loopback address (set allow_private = true on the tool to allow it)"
)]
pub struct Refused {
    /// The host as the URL named it (a name or an address).
    pub host: String,
}

/// Whether `ip` is one that tools may not reach without `allow_private`: anything not
/// globally routable (loopback, private, CGNAT, link-local with the metadata address,
/// unspecified, multicast, broadcast, reserved and documentation ranges), IPv6 forms that embed
/// such an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4), Teredo, and unique-local
/// and link-local IPv6.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => v4_forbidden(ip),
        IpAddr::V6(ip) => v6_forbidden(ip),
    }
}

fn v4_forbidden(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", 0.0.0.0 included
        || ip.is_loopback() // 127/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16, the metadata address 169.254.169.254 included
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10, carrier-grade NAT (and Alibaba's metadata)
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24, IETF protocol assignments (Oracle's metadata)
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b & 0xfe) == 18) // 198.18/15, benchmarking
        || ip.is_multicast() // 224/4
        || a >= 240 // 240/4 reserved, 255.255.255.255 broadcast included
}

fn v6_forbidden(ip: Ipv6Addr) -> bool {
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return true;
    }
    if let Some(v4) = embedded_v4(ip) {
        return v4_forbidden(v4);
    }
    let s = ip.segments();
    (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local (AWS's IPv6 metadata fd00:ec2::254)
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001) // 64:ff9b:1::/48 local NAT64
        || (s[0] == 0x2001 && s[1] == 0x0000) // Teredo: tunnels to an address we cannot vet
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // 100::/64 discard
}

/// The IPv4 address an IPv6 address stands for, where connecting to it reaches that IPv4 host.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some(last); // ::ffff:a.b.c.d, IPv4-mapped
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return Some(last); // ::ffff:0:a.b.c.d, IPv4-translated
    }
    if s[..6] == [0; 6] {
        return Some(last); // ::a.b.c.d, IPv4-compatible (deprecated)
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return Some(last); // 64:ff9b::a.b.c.d, well-known NAT64
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])); // 2002:a.b.c.d::/48, 6to4
    }
    None
}

/// The policy: forbidden addresses (see [`is_forbidden`]) minus explicit exceptions.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    exceptions: Arc<[IpAddr]>,
}

impl Guard {
    /// The default policy: every forbidden address refused.
    pub fn new() -> Guard {
        Guard::default()
    }

    /// A policy that also lets these addresses through (an internal service an operator
    /// trusts; tests that run servers on loopback).
    pub fn allowing(exceptions: impl IntoIterator<Item = IpAddr>) -> Guard {
        Guard {
            exceptions: exceptions.into_iter().collect(),
        }
    }

    /// Whether a connection to `ip` is allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_forbidden(ip) || self.exceptions.contains(&ip)
    }

    /// Checks a URL's host before a request: IP literals (which no resolver sees) against the
    /// address policy, names against the metadata and `localhost` names. Names that pass are
    /// checked again, by address, in [`GuardedResolver`].
    ///
    /// `host` is as `Url::host_str` gives it: IPv6 literals in brackets.
    pub fn check_host(&self, host: &str) -> Result<(), Refused> {
        let refused = || Refused {
            host: host.to_owned(),
        };
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return if self.permits(ip) {
                Ok(())
            } else {
                Err(refused())
            };
        }
        // By name, before any lookup: a metadata name must not pass because some resolver
        // maps it elsewhere, and `localhost` is loopback by definition (RFC 6761) whatever
        // /etc/hosts says.
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        if METADATA_HOSTS.contains(&name.as_str()) {
            return Err(refused());
        }
        let local = name == "localhost" || name.ends_with(".localhost");
        if local && !self.loopback_excepted() {
            return Err(refused());
        }
        Ok(())
    }

    fn loopback_excepted(&self) -> bool {
        self.exceptions.iter().any(IpAddr::is_loopback)
    }
}

/// A reqwest resolver that resolves with the system resolver (through tokio) and refuses a
/// name if any of its addresses is forbidden, so the client only ever connects to checked
/// addresses.
#[derive(Debug, Clone, Default)]
pub struct GuardedResolver {
    guard: Guard,
}

impl GuardedResolver {
    pub fn new(guard: Guard) -> GuardedResolver {
        GuardedResolver { guard }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.guard.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            guard.check_host(&host)?;
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} has no addresses"),
                )
                .into());
            }
            // Any forbidden address refuses the name: dropping only the bad ones would let a
            // name that mixes public and private addresses probe the inside when the public
            // ones fail.
            if addrs.iter().any(|addr| !guard.permits(addr.ip())) {
                return Err(Box::new(Refused { host }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(ip: &str) -> bool {
        is_forbidden(ip.parse().unwrap())
    }

    #[test]
    fn private_and_special_ipv4_are_forbidden() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "100.100.100.200",
            "192.0.0.192",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
    }

    #[test]
    fn public_ipv4_is_allowed() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.255.255",
            "93.184.216.34",
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn ipv6_forms_are_checked() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(forbidden(ip), "{ip} should be forbidden");
        }
        for ip in [
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::1",
        ] {
            assert!(!forbidden(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn hosts_are_checked_by_literal_and_by_name() {
        let guard = Guard::new();
        for host in [
            "127.0.0.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "10.1.2.3",
            "169.254.169.254",
            "localhost",
            "LocalHost.",
            "api.localhost",
            "metadata.google.internal",
            "Metadata.Google.Internal.",
            "metadata",
        ] {
            assert_eq!(
                guard.check_host(host),
                Err(Refused {
                    host: host.to_owned()
                }),
                "{host}"
            );
        }
        assert_eq!(guard.check_host("example.com"), Ok(()));
        assert_eq!(guard.check_host("8.8.8.8"), Ok(()));
        assert_eq!(guard.check_host("[2606:4700:4700::1111]"), Ok(()));
    }

    #[test]
    fn exceptions_let_only_their_addresses_through() {
        let guard = Guard::allowing(["127.0.0.1".parse().unwrap()]);
        assert_eq!(guard.check_host("127.0.0.1"), Ok(()));
        assert!(guard.check_host("127.0.0.2").is_err());
        assert!(guard.check_host("[::1]").is_err());
        assert!(guard.check_host("metadata.google.internal").is_err());
    }

    async fn resolve(guard: Guard, name: &str) -> Result<Vec<SocketAddr>, String> {
        match GuardedResolver::new(guard)
            .resolve(name.parse().unwrap())
            .await
        {
            Ok(addrs) => Ok(addrs.collect()),
            Err(error) => match error.downcast_ref::<Refused>() {
                Some(refused) => Err(refused.host.clone()),
                None => panic!("resolving {name} failed otherwise: {error}"),
            },
        }
    }

    #[tokio::test]
    async fn resolver_refuses_names_of_loopback() {
        // By name.
        assert_eq!(
            resolve(Guard::new(), "localhost").await,
            Err("localhost".to_owned())
        );
        // By address: 127.0.0.2 being excepted lets the name through to the lookup, whose
        // 127.0.0.1 is still refused.
        let guard = Guard::allowing(["127.0.0.2".parse().unwrap()]);
        assert_eq!(
            resolve(guard, "localhost").await,
            Err("localhost".to_owned())
        );
        // Every address excepted: the lookup's addresses come back.
        let guard = Guard::allowing(["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]);
        let addrs = resolve(guard, "localhost").await.unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
