//! The guarded outbound client for every fetch made on an admin's or IdP's say-so (SAML
//! metadata URLs, OIDC discovery/JWKS/token/userinfo, alert webhooks): http(s) only, time-outs, a size cap, no redirects,
//! and no private, loopback or link-local targets unless `outbound_allow_private` is set. The
//! address that was checked is the one connected to (no DNS rebinding in between).

use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use url::Url;

pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("{0}")]
    Refused(String),
    #[error("fetching {url} failed: {reason}")]
    Failed { url: String, reason: String },
}

/// Not routable on the public internet (or this host itself).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64 // 100.64/10 CGNAT
                || v4.octets()[0] == 0
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            // IPv4 embedded in NAT64 (64:ff9b::/96), 6to4 (2002::/16) or IPv4-compatible (::/96).
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            let nat64 = seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0];
            let compat = seg[0..6] == [0, 0, 0, 0, 0, 0];
            if (nat64 || compat) && is_private(embedded(seg[6], seg[7])) {
                return true;
            }
            if seg[0] == 0x2002 && is_private(embedded(seg[1], seg[2])) {
                return true;
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// Checks the URL and resolves it to one permitted address.
pub fn check(url: &str, allow_private: bool) -> Result<(Url, SocketAddr), OutboundError> {
    let parsed =
        Url::parse(url).map_err(|_| OutboundError::Refused(format!("`{url}` is not a URL")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(OutboundError::Refused(format!(
            "`{url}`: only https URLs are fetched"
        )));
    }
    // Metadata, discovery documents and keys fetched over plain http could be swapped by
    // anyone on the path (their own signing certificate, refreshed every few hours).
    if parsed.scheme() == "http" && !allow_private {
        return Err(OutboundError::Refused(format!(
            "`{url}` is plain http://: IdP metadata, discovery and keys are fetched over https only \
             (GATEHOUSE_OUTBOUND_ALLOW_PRIVATE=true allows http, for tests)"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| OutboundError::Refused(format!("`{url}` has no host")))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| OutboundError::Failed {
            url: url.into(),
            reason: format!("cannot resolve {host}: {e}"),
        })?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| allow_private || !is_private(a.ip()))
        .copied()
        .ok_or_else(|| {
            OutboundError::Refused(format!(
                "`{host}` resolves only to private or loopback addresses; set GATEHOUSE_OUTBOUND_ALLOW_PRIVATE=true to allow that"
            ))
        })?;
    Ok((parsed, addr))
}

/// An error with its causes ("error sending request" alone says nothing).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A request made through the guards.
pub struct Request<'a> {
    pub method: reqwest::Method,
    pub url: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// What came back: status, headers and at most [`MAX_BODY_BYTES`] of body.
pub struct Response {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Sends a request with the guards, whatever the status (blocking: call from a blocking
/// context).
pub fn send(req: Request<'_>, allow_private: bool) -> Result<Response, OutboundError> {
    let url = req.url;
    let (parsed, addr) = check(url, allow_private)?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let failed = |reason: String| OutboundError::Failed {
        url: url.into(),
        reason,
    };
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the host itself and undo the address check.
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .resolve(&host, addr)
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let mut builder = client.request(req.method, parsed);
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if let Some(body) = req.body {
        builder = builder.body(body);
    }
    let res = builder.send().map_err(|e| failed(chain(&e)))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let mut body = Vec::new();
    res.take(MAX_BODY_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| failed(e.to_string()))?;
    if body.len() as u64 > MAX_BODY_BYTES {
        return Err(failed(format!(
            "response larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// GET with the guards; anything but a 2xx is an error (blocking: call from a blocking
/// context).
pub fn get_text(url: &str, allow_private: bool) -> Result<String, OutboundError> {
    let res = send(
        Request {
            method: reqwest::Method::GET,
            url,
            headers: Vec::new(),
            body: None,
        },
        allow_private,
    )?;
    if !(200..300).contains(&res.status) {
        return Err(OutboundError::Failed {
            url: url.into(),
            reason: format!("HTTP status {}", res.status),
        });
    }
    String::from_utf8(res.body).map_err(|_| OutboundError::Failed {
        url: url.into(),
        reason: "the response is not UTF-8 text".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_targets_are_refused_unless_allowed() {
        for url in [
            "https://127.0.0.1/x",
            "https://10.1.2.3/",
            "https://[::1]/",
            "https://169.254.169.254/latest",
            "https://localhost/",
            // Plain http is refused before any lookup (the host here does not resolve).
            "http://idp.example.invalid/metadata",
        ] {
            assert!(
                matches!(check(url, false), Err(OutboundError::Refused(_))),
                "{url}"
            );
        }
        assert!(check("http://127.0.0.1:9/x", true).is_ok());
        assert!(matches!(
            check("file:///etc/passwd", true),
            Err(OutboundError::Refused(_))
        ));
    }
}
