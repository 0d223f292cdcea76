//! Who is asking: the client's address and the scheme/host it used. Behind a reverse proxy
//! every peer is the proxy, so the forwarded headers are read, but only from a peer listed
//! in `trusted_proxies`; from anyone else they are ignored (a client could write anything in
//! them). Back-off, rate limits, audit events and logs all take the address from here.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

fn trusted(ip: &IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(*ip),
        v4 => *v4,
    };
    proxies.iter().any(|p| p.contains(&ip))
}

/// The client's address: the TCP peer, or — when the peer is a trusted proxy — the rightmost
/// address of `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the
/// address it saw, so everything left of that hop may be the client's own invention).
pub fn client_ip_from(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    proxies: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted(&peer, proxies) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = forwarded_for
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .collect();
    for hop in hops.iter().rev() {
        if !trusted(hop, proxies) {
            return Some(*hop);
        }
    }
    // Every hop is a trusted proxy: the leftmost is the closest thing to a client we have.
    Some(hops.first().copied().unwrap_or(peer))
}

fn peer_is_trusted(req: &HttpRequest, proxies: &[IpNet]) -> bool {
    req.peer_addr().is_some_and(|p| trusted(&p.ip(), proxies))
}

/// The client's address for `req` under the instance's `trusted_proxies`.
pub fn client_ip(req: &HttpRequest, proxies: &[IpNet]) -> Option<IpAddr> {
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    client_ip_from(req.peer_addr().map(|a| a.ip()), &forwarded, proxies)
}

/// [`client_ip`] as text ("" when unknown), for keys, audit payloads and logs.
pub fn client_ip_text(req: &HttpRequest, proxies: &[IpNet]) -> String {
    client_ip(req, proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

/// A forwarded header (`X-Forwarded-Proto`, `-Host`, …) when a trusted proxy sent it; `None`
/// from anyone else.
pub fn forwarded_header<'a>(
    req: &'a HttpRequest,
    name: &str,
    proxies: &[IpNet],
) -> Option<&'a str> {
    if !peer_is_trusted(req, proxies) {
        return None;
    }
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // An untrusted peer: its header is ignored.
        assert_eq!(
            client_ip_from(Some(ip("203.0.113.5")), &["1.2.3.4"], &proxies),
            Some(ip("203.0.113.5"))
        );
        // A trusted proxy: the rightmost untrusted hop (the client prepended a fake one).
        assert_eq!(
            client_ip_from(
                Some(ip("10.0.0.2")),
                &["6.6.6.6, 198.51.100.7, 10.0.0.9"],
                &proxies
            ),
            Some(ip("198.51.100.7"))
        );
        // Several header lines are one list.
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.2")), &["6.6.6.6", "198.51.100.8"], &proxies),
            Some(ip("198.51.100.8"))
        );
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.2")), &[], &proxies),
            Some(ip("10.0.0.2"))
        );
        // IPv4-mapped peers match IPv4 ranges.
        assert_eq!(
            client_ip_from(Some(ip("::ffff:10.0.0.2")), &["198.51.100.9"], &proxies),
            Some(ip("198.51.100.9"))
        );
        // Garbage hops are skipped.
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.2")), &["198.51.100.1, garbage"], &proxies),
            Some(ip("198.51.100.1"))
        );
    }
}
