//! `return_to` is a local path: anything that a browser could resolve to another origin
//! (`//host`, `/\host`, `https:`, control characters) is dropped — unless it is an absolute
//! http(s) URL whose host the operator listed in `allowed_return_hosts` (forward-auth setups
//! that protect apps on other hosts).

pub fn safe_local_path(candidate: Option<&str>) -> Option<String> {
    let p = candidate?.trim();
    if !p.starts_with('/')
        || p.starts_with("//")
        || p.contains('\\')
        || p.chars().any(|c| c.is_control())
        || p.len() > 2048
    {
        return None;
    }
    // Percent-encoded slashes or backslashes at the start can be decoded into `//` later.
    let lower = p.to_ascii_lowercase();
    if lower.starts_with("/%2f") || lower.starts_with("/%5c") {
        return None;
    }
    Some(p.to_string())
}

/// A local path, or an absolute http(s) URL on one of `allowed_hosts` (`host` or
/// `host:port`, lower case).
pub fn safe(candidate: Option<&str>, allowed_hosts: &[String]) -> Option<String> {
    let p = candidate?.trim();
    if p.starts_with('/') {
        return safe_local_path(Some(p));
    }
    if allowed_hosts.is_empty() || p.len() > 2048 || p.chars().any(|c| c.is_control()) {
        return None;
    }
    let url = url::Url::parse(p).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    allowed_host(&url, allowed_hosts).then(|| url.to_string())
}

/// Whether `url`'s host (or `host:port`) is one of `allowed_hosts` (lower case): where a
/// sign-in may return to, and which other origins may open a proxied WebSocket.
pub fn allowed_host(url: &url::Url, allowed_hosts: &[String]) -> bool {
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let with_port = url.port().map(|port| format!("{host}:{port}"));
    allowed_hosts
        .iter()
        .any(|h| *h == host || Some(h) == with_port.as_ref())
}

#[cfg(test)]
mod tests {
    use super::{safe, safe_local_path};

    #[test]
    fn other_hosts_only_when_listed() {
        let allowed = vec![
            "app.example.com".to_string(),
            "wiki.example.com:8443".to_string(),
        ];
        assert_eq!(
            safe(Some("https://app.example.com/x?y=1"), &allowed).as_deref(),
            Some("https://app.example.com/x?y=1")
        );
        assert!(safe(Some("https://wiki.example.com:8443/"), &allowed).is_some());
        for bad in [
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "https://user@app.example.com/",
            "javascript://app.example.com/%0aalert(1)",
            "https://wiki.example.com/",
            "//app.example.com/",
        ] {
            assert_eq!(safe(Some(bad), &allowed), None, "{bad}");
        }
        assert_eq!(safe(Some("https://app.example.com/"), &[]), None);
        assert_eq!(safe(Some("/local"), &[]).as_deref(), Some("/local"));
    }

    #[test]
    fn only_local_paths_survive() {
        assert_eq!(
            safe_local_path(Some("/app?x=1")).as_deref(),
            Some("/app?x=1")
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/%2F%2Fevil.example",
            "/a\nb",
            "evil",
            "",
        ] {
            assert_eq!(safe_local_path(Some(bad)), None, "{bad}");
        }
    }
}
