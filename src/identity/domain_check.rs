//! Which domains an org may claim, and verification by DNS.
//!
//! An org cannot claim a public suffix (`com`, `co.uk`, `github.io`: the Public Suffix List,
//! compiled in by the `psl` crate) or a free e-mail provider's domain (anyone can get an
//! address at `gmail.com`; the list is `assets/free-email-domains.txt`, see README). A claimed
//! domain becomes verified when the org publishes a TXT record
//! `_gatehouse-challenge.<domain>` = `gatehouse-verification=<token>`: "Verify" looks it up at
//! once, and every unverified domain with a token is looked up again every hour. The resolver
//! is the system's (`/etc/resolv.conf`) unless `GATEHOUSE_DNS_RESOLVER` names one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use crate::domain::DomainName;

/// The name the TXT record is published at.
pub fn challenge_name(domain: &str) -> String {
    format!("_gatehouse-challenge.{domain}")
}

/// The TXT record's value for `token`.
pub fn expected_value(token: &str) -> String {
    format!("gatehouse-verification={token}")
}

/// A new verification token (128 random bits).
pub fn new_token() -> String {
    crate::crypto::random_token(16)
}

fn free_mail() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("../../assets/free-email-domains.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// Why an org cannot claim this domain, in words for the admin; `None` when it may.
pub fn refusal(domain: &DomainName) -> Option<String> {
    let d = domain.as_str();
    if psl::suffix_str(d).is_some_and(|s| s == d) {
        return Some(format!(
            "{d} is a public suffix (anyone can register names under it): add your organization's own domain, e.g. example.{d}"
        ));
    }
    let registrable = psl::domain_str(d).unwrap_or(d);
    if free_mail().contains(d) || free_mail().contains(registrable) {
        return Some(format!(
            "{d} is a free e-mail provider's domain (anyone can get an address there), so no organization can claim it: add the domain your organization owns"
        ));
    }
    None
}

/// Looks up the challenge record: `Ok(())` when a TXT record at the challenge name holds
/// exactly the expected value; otherwise why not, in words for the admin.
pub async fn check(resolver: Option<SocketAddr>, domain: &str, token: &str) -> Result<(), String> {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::proto::rr::RData;
    use hickory_resolver::Resolver;

    let name = format!("{}.", challenge_name(domain));
    let expected = expected_value(token);
    let provider = TokioRuntimeProvider::default();
    let builder = match resolver {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            Resolver::builder_with_config(ResolverConfig::from_name_servers(vec![ns]), provider)
        }
        None => Resolver::builder(provider)
            .map_err(|e| format!("the system's DNS settings could not be read ({e})"))?,
    };
    let mut builder = builder;
    let opts = builder.options_mut();
    opts.timeout = Duration::from_secs(3);
    opts.attempts = 2;
    // Each check asks again: a record just published must be seen.
    opts.cache_size = 0;
    let resolver = builder
        .build()
        .map_err(|e| format!("the DNS resolver could not start ({e})"))?;
    let lookup = match resolver.txt_lookup(name.as_str()).await {
        Ok(l) => l,
        Err(e) if e.is_nx_domain() => {
            return Err(format!(
                "{} does not exist in DNS yet: publish the TXT record (DNS changes can take a few minutes to appear)",
                challenge_name(domain)
            ))
        }
        Err(e) if e.is_no_records_found() => {
            return Err(format!(
                "{} has no TXT record yet: publish the TXT record (DNS changes can take a few minutes to appear)",
                challenge_name(domain)
            ))
        }
        Err(e) => {
            tracing::debug!(error = %e, domain, "DNS lookup failed");
            return Err(format!(
                "the DNS lookup of {} failed (no answer from the DNS servers): try again in a few minutes",
                challenge_name(domain)
            ));
        }
    };
    // Only records of the name asked (or of the names it is an alias of, in this answer).
    let mut names = vec![name.to_ascii_lowercase()];
    for record in lookup.answers() {
        if let RData::CNAME(target) = &record.data {
            if names.contains(&record.name.to_string().to_ascii_lowercase()) {
                names.push(target.0.to_string().to_ascii_lowercase());
            }
        }
    }
    let mut found = Vec::new();
    for record in lookup.answers() {
        if !names.contains(&record.name.to_string().to_ascii_lowercase()) {
            continue;
        }
        if let RData::TXT(txt) = &record.data {
            let value: String = txt
                .txt_data
                .iter()
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect();
            if value.trim() == expected {
                return Ok(());
            }
            found.push(value);
        }
    }
    if found.is_empty() {
        return Err(format!(
            "{} has no TXT record yet: publish the TXT record",
            challenge_name(domain)
        ));
    }
    let shown: Vec<String> = found
        .iter()
        .take(3)
        .map(|v| format!("\"{}\"", v.chars().take(80).collect::<String>()))
        .collect();
    Err(format!(
        "the TXT record at {} does not match: found {}, expected \"{expected}\"",
        challenge_name(domain),
        shown.join(", ")
    ))
}

/// How often unverified domains are looked up again.
pub const RECHECK_SECS: u64 = 3600;

/// Looks up every unverified domain that has a token (up to a few hundred per pass): a match
/// verifies it (audited, actor `dns-check`); a miss records what was found.
pub async fn recheck(
    db: &crate::db::Db,
    resolver: Option<SocketAddr>,
) -> Result<usize, crate::identity::IdentityError> {
    let waiting = db
        .run(|conn| super::domains::awaiting_dns(conn, 500))
        .await?;
    let mut verified = 0;
    for d in waiting {
        let token = d.dns_token.clone().unwrap_or_default();
        let problem = check(resolver, &d.domain, &token).await.err();
        let now = crate::clock::now();
        let ok = problem.is_none();
        db.write(move |conn| -> Result<(), crate::identity::IdentityError> {
            super::domains::record_check(conn, &d.id, problem.as_deref(), now)?;
            if problem.is_none() {
                super::domains::mark_verified(conn, &d.id, "dns")?;
                crate::audit::record(
                    conn,
                    &crate::audit::Event::new(Some(&d.org_id), "dns-check", "admin.domain.verify")
                        .payload(serde_json::json!({"domain": d.domain, "method": "dns"})),
                    now,
                )?;
            }
            Ok(())
        })
        .await?;
        verified += usize::from(ok);
    }
    Ok(verified)
}

/// At start and every hour, for as long as the process runs.
pub fn spawn(db: crate::db::Db, resolver: Option<SocketAddr>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(RECHECK_SECS));
        loop {
            tick.tick().await;
            match recheck(&db, resolver).await {
                Ok(n) if n > 0 => tracing::info!(verified = n, "domains verified by DNS"),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "DNS re-check of domains failed; retrying in an hour")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_suffixes_and_free_mail_are_refused() {
        let d = |s: &str| DomainName::parse(s).unwrap();
        assert!(refusal(&d("gmail.com")).is_some());
        assert!(refusal(&d("GMail.com")).is_some());
        assert!(refusal(&d("outlook.com")).is_some());
        assert!(refusal(&d("co.uk")).is_some());
        assert!(refusal(&d("github.io")).is_some());
        assert!(refusal(&d("acme.com")).is_none());
        assert!(refusal(&d("mail.acme.co.uk")).is_none());
        assert!(refusal(&d("acme.test")).is_none());
    }
}
