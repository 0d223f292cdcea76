//! E-mail addresses and DNS domain names, normalised the way sign-in rules compare them.

use std::fmt;

/// A DNS domain name, lower-case, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(input: &str) -> Result<DomainName, String> {
        let d = input.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if d.len() > 253 || !d.contains('.') || !d.split('.').all(valid_label) {
            return Err(format!(
                "`{input}` is not a valid domain name (e.g. example.com)"
            ));
        }
        Ok(DomainName(d))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address: local part kept as given, domain lower-cased. Comparisons use
/// [`Email::folded`] (the whole address lower-cased), as the sign-in rules require.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    local: String,
    domain: DomainName,
}

impl Email {
    pub fn parse(input: &str) -> Result<Email, String> {
        let s = input.trim();
        let invalid = || format!("`{s}` is not a valid e-mail address");
        let (local, domain) = s.rsplit_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || local.len() > 64
            || s.len() > 254
            || local.chars().any(|c| {
                c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | '@')
            })
        {
            return Err(invalid());
        }
        let domain = DomainName::parse(domain).map_err(|_| invalid())?;
        Ok(Email {
            local: local.to_string(),
            domain,
        })
    }

    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    pub fn folded(&self) -> String {
        super::fold(&self.to_string())
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_the_domain_and_fold_for_comparison() {
        let e = Email::parse(" Alice.Smith@Example.COM ").unwrap();
        assert_eq!(e.to_string(), "Alice.Smith@example.com");
        assert_eq!(e.folded(), "alice.smith@example.com");
        assert_eq!(e.domain().as_str(), "example.com");
        for bad in [
            "",
            "a",
            "@x.com",
            "a@",
            "a@localhost",
            "a b@x.com",
            "a@x..com",
            "<a>@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains_are_lower_case_without_trailing_dot() {
        assert_eq!(
            DomainName::parse("Corp.Example.com.").unwrap().as_str(),
            "corp.example.com"
        );
        assert!(DomainName::parse("-x.com").is_err());
        assert!(DomainName::parse("x_y.com").is_err());
    }
}
