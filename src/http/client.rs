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

/// One `X-Forwarded-For` entry as an address: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or
/// `[2001:db8::1]:5678` (proxies differ).
fn hop_ip(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(sa.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

/// The client's address: the TCP peer, or — when the peer is a trusted proxy — the rightmost
/// address of `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the
/// address it saw, so everything left of that hop may be the client's own invention). The
/// walk stops at an entry it cannot read (the last trusted hop is the answer then), and when
/// every entry is trusted the leftmost trusted one is as far as the chain can be believed.
pub fn client_ip_from(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    proxies: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted(&peer, proxies) {
        return Some(peer);
    }
    let mut closest = peer;
    for hop in forwarded_for.iter().rev().flat_map(|v| v.rsplit(',')) {
        match hop_ip(hop) {
            Some(ip) if trusted(&ip, proxies) => closest = ip,
            Some(ip) => return Some(ip),
            None => return Some(closest),
        }
    }
    Some(closest)
}

fn peer_is_trusted(req: &HttpRequest, proxies: &[IpNet]) -> bool {
    req.peer_addr().is_some_and(|p| trusted(&p.ip(), proxies))
}

/// The client's address for `req` under the instance's `trusted_proxies`.
pub fn client_ip(req: &HttpRequest, proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted(&peer, proxies) {
        // The frequent case: no header to read.
        return Some(peer);
    }
    // Bytes a client may have put in the header do not make the line unreadable: the walk
    // reaches them only after the hops the proxies appended.
    let lines: Vec<String> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let forwarded: Vec<&str> = lines.iter().map(String::as_str).collect();
    client_ip_from(Some(peer), &forwarded, proxies)
}

/// [`client_ip`] as text ("" when unknown), for keys, audit payloads and logs.
pub fn client_ip_text(req: &HttpRequest, proxies: &[IpNet]) -> String {
    client_ip(req, proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

/// The key that counts failures and refusals per client: the IPv4 address, or the /64 of an
/// IPv6 one (a single host usually holds a whole /64, so per-address keys would let it
/// rotate through them).
pub fn client_key(req: &HttpRequest, proxies: &[IpNet]) -> String {
    match client_ip(req, proxies) {
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        Some(ip) => ip.to_string(),
        None => String::new(),
    }
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

/// The credentials of an `Authorization: <scheme> <credentials>` header, scheme matched without
/// regard to case (`Bearer` for SCIM tokens and access tokens, `Basic` for client secrets);
/// `None` when absent, of another scheme, or empty.
pub fn authorization<'h>(
    headers: &'h actix_web::http::header::HeaderMap,
    scheme: &str,
) -> Option<&'h str> {
    let value = headers
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (given, credentials) = value.trim().split_once(' ')?;
    let credentials = credentials.trim();
    (given.eq_ignore_ascii_case(scheme) && !credentials.is_empty()).then_some(credentials)
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
        // An entry that cannot be read stops the walk: the client cannot hide the proxy's
        // own entry behind one and pick the address left of it.
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.2")), &["198.51.100.1, garbage"], &proxies),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(
            client_ip_from(
                Some(ip("10.0.0.2")),
                &["6.6.6.6, garbage, 10.0.0.7"],
                &proxies
            ),
            Some(ip("10.0.0.7"))
        );
        // Ports and brackets (Azure Application Gateway and others append `ip:port`).
        assert_eq!(
            client_ip_from(
                Some(ip("10.0.0.2")),
                &["6.6.6.6, 203.0.113.5:50123"],
                &proxies
            ),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.2")), &["[2001:db8::5]:443"], &proxies),
            Some(ip("2001:db8::5"))
        );
        // Every hop trusted: the leftmost trusted one, never a client-written entry.
        assert_eq!(
            client_ip_from(Some(ip("10.0.0.2")), &["10.0.0.5, 10.0.0.6"], &proxies),
            Some(ip("10.0.0.5"))
        );
    }
}
