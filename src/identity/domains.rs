//! An org's e-mail domains. A domain belongs to one org at most (unique), is verified only by
//! an operator (or later DNS), and can be enforced (its users must use SSO).

use diesel::prelude::*;
use serde::Serialize;

use super::{conflict_on_unique, IdentityError, Result};
use crate::db::ids::{DomainId, OrgId};
use crate::db::schema::domains;
use crate::db::DbConn;
use crate::domain::DomainName;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = domains)]
pub struct Domain {
    #[diesel(deserialize_as = String)]
    pub id: DomainId,
    #[diesel(deserialize_as = String)]
    pub org_id: OrgId,
    pub domain: String,
    pub verified: bool,
    pub enforce: bool,
    pub created_at: i64,
    /// The token of the TXT record that verifies it (see `domain_check`).
    pub dns_token: Option<String>,
    /// The last DNS check, and what it found (`None`: never checked).
    pub checked_at: Option<i64>,
    pub check_result: Option<String>,
    /// How it was verified: `dns`, or `admin:<id>` / `cli` for an operator's word.
    pub verified_by: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = domains)]
struct NewDomain<'a> {
    id: &'a str,
    org_id: &'a str,
    domain: &'a str,
    verified: bool,
    enforce: bool,
    created_at: i64,
    dns_token: Option<&'a str>,
    verified_by: Option<&'a str>,
}

pub fn add(
    conn: &mut DbConn,
    org: &OrgId,
    domain: &DomainName,
    verified: bool,
    enforce: bool,
    now: i64,
) -> Result<Domain> {
    if let Some(why) = super::domain_check::refusal(domain) {
        return Err(IdentityError::Invalid(why));
    }
    let id = DomainId::new();
    let token = super::domain_check::new_token();
    diesel::insert_into(domains::table)
        .values(&NewDomain {
            id: id.as_str(),
            org_id: org.as_str(),
            domain: domain.as_str(),
            verified,
            enforce,
            created_at: now,
            dns_token: Some(&token),
            verified_by: verified.then_some("operator"),
        })
        .execute(conn)
        .map_err(|e| {
            conflict_on_unique(e, || format!("the domain {domain} is already registered"))
        })?;
    Ok(domains::table
        .find(id.as_str())
        .select(Domain::as_select())
        .first(conn)?)
}

pub fn list(conn: &mut DbConn, org: &OrgId) -> Result<Vec<Domain>> {
    Ok(domains::table
        .filter(domains::org_id.eq(org.as_str()))
        .order(domains::domain.asc())
        .select(Domain::as_select())
        .load(conn)?)
}

/// The domain's record, whichever org holds it.
pub fn find(conn: &mut DbConn, domain: &DomainName) -> Result<Option<Domain>> {
    Ok(domains::table
        .filter(domains::domain.eq(domain.as_str()))
        .select(Domain::as_select())
        .first(conn)
        .optional()?)
}

/// True when `domain` is one of `org`'s verified domains: the only case in which an e-mail
/// claim may identify an account in that org.
pub fn is_verified_for(conn: &mut DbConn, org: &OrgId, domain: &DomainName) -> Result<bool> {
    Ok(find(conn, domain)?
        .map(|d| d.verified && &d.org_id == org)
        .unwrap_or(false))
}

/// Removes a domain from an org; returns whether it was there.
pub fn remove(conn: &mut DbConn, org: &OrgId, domain: &DomainName) -> Result<bool> {
    Ok(diesel::delete(
        domains::table
            .filter(domains::org_id.eq(org.as_str()))
            .filter(domains::domain.eq(domain.as_str())),
    )
    .execute(conn)?
        > 0)
}

/// Marks a domain verified, recording how (`dns`, or an operator: `admin:<id>`, `cli`).
pub fn mark_verified(conn: &mut DbConn, id: &DomainId, by: &str) -> Result<()> {
    diesel::update(domains::table.find(id.as_str()))
        .set((
            domains::verified.eq(true),
            domains::verified_by.eq(Some(by)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Gives a domain (added before verification by DNS existed) its TXT token.
pub fn new_token(conn: &mut DbConn, id: &DomainId) -> Result<()> {
    diesel::update(domains::table.find(id.as_str()))
        .set(domains::dns_token.eq(Some(super::domain_check::new_token())))
        .execute(conn)?;
    Ok(())
}

/// Records the outcome of a DNS check (`None`: the record matched).
pub fn record_check(
    conn: &mut DbConn,
    id: &DomainId,
    problem: Option<&str>,
    now: i64,
) -> Result<()> {
    diesel::update(domains::table.find(id.as_str()))
        .set((
            domains::checked_at.eq(Some(now)),
            domains::check_result.eq(Some(problem.unwrap_or("the TXT record matched"))),
        ))
        .execute(conn)?;
    Ok(())
}

/// Unverified domains waiting for their TXT record (the periodic re-check), oldest first.
pub fn awaiting_dns(conn: &mut DbConn, limit: i64) -> Result<Vec<Domain>> {
    Ok(domains::table
        .filter(domains::verified.eq(false))
        .filter(domains::dns_token.is_not_null())
        // Never checked first (NULL sorts differently on SQLite and PostgreSQL).
        .order((
            domains::checked_at.is_not_null().asc(),
            domains::checked_at.asc(),
        ))
        .limit(limit)
        .select(Domain::as_select())
        .load(conn)?)
}

pub fn set_flags(
    conn: &mut DbConn,
    org: &OrgId,
    domain: &DomainName,
    verified: Option<bool>,
    enforce: Option<bool>,
) -> Result<Domain> {
    let target = domains::table
        .filter(domains::org_id.eq(org.as_str()))
        .filter(domains::domain.eq(domain.as_str()));
    if let Some(v) = verified {
        diesel::update(target)
            .set(domains::verified.eq(v))
            .execute(conn)?;
    }
    if let Some(e) = enforce {
        diesel::update(target)
            .set(domains::enforce.eq(e))
            .execute(conn)?;
    }
    target
        .select(Domain::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| IdentityError::NotFound(format!("the org has no domain {domain}")))
}
