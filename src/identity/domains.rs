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
}

pub fn add(
    conn: &mut DbConn,
    org: &OrgId,
    domain: &DomainName,
    verified: bool,
    enforce: bool,
    now: i64,
) -> Result<Domain> {
    let id = DomainId::new();
    diesel::insert_into(domains::table)
        .values(&NewDomain {
            id: id.as_str(),
            org_id: org.as_str(),
            domain: domain.as_str(),
            verified,
            enforce,
            created_at: now,
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
