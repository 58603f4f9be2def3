//! Where the server's outbound OIDC fetches (an issuer's discovery document and the key set
//! its `jwks_uri` names) may connect: to public addresses only, unless the operator lets a
//! network through with `--oidc-allow-net`.
//!
//! An issuer URL is chosen by whoever may call CreateOpenIDConnectProvider in an account,
//! which on a shared server is a tenant, not the operator, and the fetch is set off by an
//! unsigned call. Unchecked, it had the server send GET requests to any address it can
//! reach: its own loopback services, the private network, a cloud metadata endpoint
//! (SECURITY.md's former "known gap"). The check is made on the address actually
//! connected to, not on the URL's text: a [`GuardedResolver`] drops every address a name
//! resolves to that may not be reached (so a name resolving to 127.0.0.1, or re-resolving
//! to it between a check and the connect, never gets a socket), and [`GuardedConnector`]
//! checks the IP literals hyper-util's `HttpConnector` connects to without resolving.
//! After the connect the peer address is checked once more, as a last line should the two
//! ever disagree. Redirects are not followed (hyper's client does not).

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioIo;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// IPv4 networks that are not public, with why (IANA's special-purpose registry).
const V4_NON_PUBLIC: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "unspecified (this network)"),
    (v4(10, 0, 0, 0, 8), "private (RFC 1918)"),
    (v4(100, 64, 0, 0, 10), "shared address space (CGNAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local (cloud metadata)"),
    (v4(172, 16, 0, 0, 12), "private (RFC 1918)"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (v4(192, 0, 2, 0, 24), "documentation"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    (v4(192, 168, 0, 0, 16), "private (RFC 1918)"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation"),
    (v4(203, 0, 113, 0, 24), "documentation"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(255, 255, 255, 255, 32), "broadcast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// IPv6 networks that are not public, among those not decided by an embedded IPv4 address.
const V6_NON_PUBLIC: &[(Ipv6Net, &str)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 96), "IPv4-compatible (deprecated)"),
    (v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96), "IPv4-translated"),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), "local-use NAT64"),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    // Teredo, benchmarking, ORCHID and the rest of the IETF's protocol assignments.
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), "IETF protocol assignments"),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "private (unique local)"),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site-local (deprecated)"),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]), len)
}

/// The IPv4 address an IPv6 address stands for, where it embeds one that decides where a
/// packet ends up: IPv4-mapped (`::ffff:a.b.c.d`, which the kernel connects to over IPv4),
/// NAT64 (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low(s[6], s[7]));
    }
    (s[0] == 0x2002).then(|| low(s[1], s[2]))
}

/// Why `ip` is not a public address; `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            V4_NON_PUBLIC.iter().find(|(net, _)| net.contains(&v4)).map(|(_, why)| *why)
        }
        IpAddr::V6(v6) => {
            if let Some(inner) = embedded_v4(v6) {
                return non_public(IpAddr::V4(inner));
            }
            if let Some((_, why)) = V6_NON_PUBLIC.iter().find(|(net, _)| net.contains(&v6)) {
                return Some(why);
            }
            // Only 2000::/3 is global unicast; the rest of the space is reserved.
            (v6.segments()[0] & 0xe000 != 0x2000).then_some("reserved")
        }
    }
}

/// Which addresses outbound OIDC fetches may connect to: every public address, and those
/// in the networks the operator allowed.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Arc<[IpNet]>,
}

impl Policy {
    pub fn new(allowed: &[IpNet]) -> Policy {
        Policy { allowed: allowed.iter().map(IpNet::trunc).collect() }
    }

    /// Why a connection to `ip` is refused; `None` when it may be made. An allowed network
    /// also covers the IPv6 forms that embed its IPv4 addresses.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let why = non_public(ip)?;
        let inner = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let allowed = |a: &IpAddr| self.allowed.iter().any(|net| net.contains(a));
        (!(allowed(&ip) || inner.as_ref().is_some_and(allowed))).then_some(why)
    }

    /// The error a refused address fails the connection with, logged here with its reason:
    /// the caller answers it as any unreachable provider (no oracle of which check failed).
    fn refuse(host: &str, ip: IpAddr, why: &str) -> io::Error {
        tracing::warn!(
            host,
            address = %ip,
            reason = why,
            "refused to fetch from an OIDC provider: not a public address (--oidc-allow-net lets a network through)"
        );
        io::Error::new(io::ErrorKind::PermissionDenied, format!("{ip} is {why}: refused"))
    }
}

/// A name resolver (`getaddrinfo`, off the async workers) that keeps only the addresses
/// the policy lets through; a name left with none fails to resolve.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Policy,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str();
            let mut kept = Vec::new();
            let mut refused = None;
            for addr in tokio::net::lookup_host((host, 0)).await? {
                match policy.refusal(addr.ip()) {
                    None => kept.push(addr),
                    Some(why) => refused = refused.or(Some((addr.ip(), why))),
                }
            }
            match (kept.is_empty(), refused) {
                (true, Some((ip, why))) => Err(Policy::refuse(host, ip, why)),
                (true, None) => Err(io::Error::new(io::ErrorKind::NotFound, "no address")),
                (false, _) => Ok(kept.into_iter()),
            }
        })
    }
}

/// hyper-util's `HttpConnector` over a [`GuardedResolver`], which also refuses the IP
/// literals the connector connects to without resolving them.
#[derive(Debug, Clone)]
pub struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    policy: Policy,
}

impl GuardedConnector {
    pub fn new(policy: Policy) -> GuardedConnector {
        let mut inner =
            HttpConnector::new_with_resolver(GuardedResolver { policy: policy.clone() });
        // The scheme is for the TLS layer wrapped around this one to decide.
        inner.enforce_http(false);
        GuardedConnector { inner, policy }
    }
}

/// The IP address a URI's host is written as, as `HttpConnector` reads it (brackets of an
/// IPv6 literal dropped, then a dotted quad or an IPv6 address, nothing looser).
fn literal(uri: &axum::http::Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.parse::<Ipv4Addr>()
        .map(IpAddr::V4)
        .or_else(|_| host.parse::<Ipv6Addr>().map(IpAddr::V6))
        .ok()
}

impl tower_service::Service<axum::http::Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: axum::http::Uri) -> Self::Future {
        let host = uri.host().unwrap_or_default().to_string();
        // A `jwks_uri` comes from the issuer's document: any other scheme would still get a
        // connection (HttpConnector takes any once the TLS layer passes it on), so only the
        // two a key set is served over are taken.
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            tracing::warn!(
                host,
                "refused to fetch from an OIDC provider: not an http or https URL"
            );
            let refused = io::Error::new(io::ErrorKind::PermissionDenied, "not http or https");
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        if let Some(ip) = literal(&uri)
            && let Some(why) = self.policy.refusal(ip)
        {
            return Box::pin(std::future::ready(Err(Policy::refuse(&host, ip, why).into())));
        }
        let policy = self.policy.clone();
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let stream = connecting.await?;
            let peer = stream.inner().peer_addr()?;
            match policy.refusal(peer.ip()) {
                None => Ok(stream),
                Some(why) => Err(Policy::refuse(&host, peer.ip(), why).into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_pass_by_default() {
        let policy = Policy::default();
        for refused in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "2001::1",
            "2001:2::1",
            "100::1",
            "64:ff9b:1::1",
            // IPv4-mapped, -compatible and -translated forms, NAT64 and 6to4 of refused ones.
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:0:127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2002:c0a8:101::1",
            // Outside global unicast (2000::/3).
            "4000::1",
        ] {
            assert!(policy.refusal(ip(refused)).is_some(), "{refused} passed");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.1.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(policy.refusal(ip(public)), None, "{public} refused");
        }
    }

    #[test]
    fn refusals_name_the_range() {
        assert_eq!(non_public(ip("127.0.0.1")), Some("loopback"));
        assert_eq!(non_public(ip("169.254.169.254")), Some("link-local (cloud metadata)"));
        assert_eq!(non_public(ip("::ffff:10.0.0.1")), Some("private (RFC 1918)"));
        assert_eq!(non_public(ip("fe80::1")), Some("link-local"));
    }

    #[test]
    fn allowed_networks_pass_in_every_form() {
        let nets: Vec<IpNet> =
            ["127.0.0.0/8", "10.1.0.0/16", "fd00::/8"].iter().map(|n| n.parse().unwrap()).collect();
        let policy = Policy::new(&nets);
        for allowed in ["127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "10.1.2.3", "fd00::5"] {
            assert_eq!(policy.refusal(ip(allowed)), None, "{allowed} refused");
        }
        for refused in ["10.2.0.1", "169.254.169.254", "::1", "fe80::1", "fc00::1"] {
            assert!(policy.refusal(ip(refused)).is_some(), "{refused} passed");
        }
        // Host bits in a flag's network are dropped, as the network means.
        let policy = Policy::new(&["192.168.1.77/24".parse().unwrap()]);
        assert_eq!(policy.refusal(ip("192.168.1.3")), None);
    }

    #[test]
    fn literals_are_read_as_the_connector_reads_them() {
        let uri = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        assert_eq!(literal(&uri("http://127.0.0.1:8080/x")), Some(ip("127.0.0.1")));
        assert_eq!(literal(&uri("http://[::ffff:127.0.0.1]/")), Some(ip("::ffff:127.0.0.1")));
        // Looser spellings are not literals here: they go through the resolver, which
        // filters whatever address getaddrinfo makes of them.
        assert_eq!(literal(&uri("http://2130706433/")), None);
        assert_eq!(literal(&uri("http://0x7f.1/")), None);
        assert_eq!(literal(&uri("http://localhost/")), None);
    }

    /// Every spelling of a loopback address is refused before any connection is made: the
    /// listener never sees one.
    #[tokio::test]
    async fn refused_addresses_get_no_connection() {
        use tower_service::Service;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut connector = GuardedConnector::new(Policy::default());
        for host in ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost", "2130706433", "0x7f.1"] {
            let uri: axum::http::Uri = format!("http://{host}:{port}/").parse().unwrap();
            std::future::poll_fn(|cx| connector.poll_ready(cx)).await.unwrap();
            assert!(connector.call(uri).await.is_err(), "{host} connected");
        }
        // Nor does another scheme get a connection, even to an allowed network.
        let mut open = GuardedConnector::new(Policy::new(&["127.0.0.0/8".parse().unwrap()]));
        let uri: axum::http::Uri = format!("gopher://127.0.0.1:{port}/").parse().unwrap();
        std::future::poll_fn(|cx| open.poll_ready(cx)).await.unwrap();
        assert!(open.call(uri).await.is_err(), "gopher connected");
        // With the network allowed, the same connector connects, and that connection is
        // the first the listener accepts (a refused one would have been queued before it).
        let mut connector = GuardedConnector::new(Policy::new(&["127.0.0.0/8".parse().unwrap()]));
        let uri: axum::http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await.unwrap();
        let stream = connector.call(uri).await.unwrap();
        let (_, from) = listener.accept().await.unwrap();
        assert_eq!(from, stream.inner().local_addr().unwrap());
    }
}
