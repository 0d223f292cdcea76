//! `return_to` is only ever a local path: anything that a browser could resolve to another
//! origin (`//host`, `/\host`, `https:`, control characters) is dropped.

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

#[cfg(test)]
mod tests {
    use super::safe_local_path;

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
