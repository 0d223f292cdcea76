//! Org slugs, case folding, and the small enums stored as text.

use std::fmt;
use std::str::FromStr;

/// Case folding done in Rust so SQLite and PostgreSQL agree on uniqueness.
pub fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

/// An organization's slug: `[a-z0-9-]`, 2–63 characters, used in URLs and the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slug(String);

impl Slug {
    pub fn parse(input: &str) -> Result<Slug, String> {
        let s = input.trim().to_ascii_lowercase();
        if s.len() < 2
            || s.len() > 63
            || s.starts_with('-')
            || !s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "`{input}` is not a valid org slug (2-63 characters: a-z, 0-9, -)"
            ));
        }
        Ok(Slug(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SSO enforcement per org (design.md, sign-in rule 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Enforcement {
    Off,
    Domains,
    All,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Off => "off",
            Enforcement::Domains => "domains",
            Enforcement::All => "all",
        }
    }
}

impl FromStr for Enforcement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Enforcement::Off),
            "domains" => Ok(Enforcement::Domains),
            "all" => Ok(Enforcement::All),
            other => Err(format!(
                "enforcement must be off, domains or all (got `{other}`)"
            )),
        }
    }
}

/// Where a user came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSource {
    Scim,
    Jit,
    Local,
}

impl UserSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UserSource::Scim => "scim",
            UserSource::Jit => "jit",
            UserSource::Local => "local",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_enforcement_parse() {
        assert_eq!(Slug::parse("Acme-1").unwrap().as_str(), "acme-1");
        assert!(Slug::parse("a").is_err());
        assert!(Slug::parse("a/b").is_err());
        assert_eq!("all".parse::<Enforcement>().unwrap(), Enforcement::All);
        assert!("ALL".parse::<Enforcement>().is_err());
    }
}
