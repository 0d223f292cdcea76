//! Setup links: an instance admin gives a customer's IT admin, who has no account, a link to
//! set up one org: SSO connections (`sso`), SCIM provisioning (`scim`), domains (`domains`).
//! The token (256 random bits) is shown once and stored as its SHA-256; a link expires, can be
//! revoked (which ends the sessions it opened), and everything done through it is audited
//! under `setup-link:<id>`.

use diesel::prelude::*;

use super::{IdentityError, Result};
use crate::crypto::sha256_hex;
use crate::db::ids::OrgId;
use crate::db::schema::{sessions, setup_links};
use crate::db::DbConn;

/// What a link may be for.
pub const INTENTS: &[&str] = &["sso", "scim", "domains"];
/// The longest a link may live.
pub const MAX_DAYS: i64 = 30;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = setup_links)]
pub struct SetupLink {
    pub id: String,
    pub org_id: String,
    #[diesel(column_name = token_hash)]
    #[allow(dead_code)]
    token_hash: String,
    pub intents: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl SetupLink {
    pub fn allows(&self, intent: &str) -> bool {
        self.intents.split(',').any(|i| i == intent)
    }

    pub fn live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// The intents of `--intent sso,scim` (or checkboxes): known ones only, at least one.
pub fn parse_intents<'a>(given: impl IntoIterator<Item = &'a str>) -> Result<String> {
    let mut out: Vec<&str> = Vec::new();
    for part in given.into_iter().flat_map(|g| g.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some(known) = INTENTS.iter().find(|i| **i == part) else {
            return Err(IdentityError::Invalid(format!(
                "unknown intent `{part}` (sso, scim or domains)"
            )));
        };
        if !out.contains(known) {
            out.push(known);
        }
    }
    if out.is_empty() {
        return Err(IdentityError::Invalid(
            "a setup link needs at least one intent: sso, scim or domains".into(),
        ));
    }
    Ok(out.join(","))
}

/// Creates a link; returns it and its token (the only time the token exists in clear).
pub fn create(
    conn: &mut DbConn,
    org: &OrgId,
    intents: &str,
    days: i64,
    created_by: &str,
    now: i64,
) -> Result<(SetupLink, String)> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(IdentityError::Invalid(format!(
            "a setup link lives from 1 to {MAX_DAYS} days"
        )));
    }
    let token = crate::crypto::random_token(32);
    let id = uuid::Uuid::now_v7().simple().to_string();
    diesel::insert_into(setup_links::table)
        .values((
            setup_links::id.eq(&id),
            setup_links::org_id.eq(org.as_str()),
            setup_links::token_hash.eq(sha256_hex(&token)),
            setup_links::intents.eq(intents),
            setup_links::created_by.eq(created_by),
            setup_links::created_at.eq(now),
            setup_links::expires_at.eq(now + days * 86_400),
        ))
        .execute(conn)?;
    let link = get(conn, &id)?.ok_or_else(|| IdentityError::NotFound("setup link".into()))?;
    Ok((link, token))
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<SetupLink>> {
    Ok(setup_links::table
        .find(id)
        .select(SetupLink::as_select())
        .first(conn)
        .optional()?)
}

/// The live link with this token, if any.
pub fn by_token(conn: &mut DbConn, token: &str, now: i64) -> Result<Option<SetupLink>> {
    Ok(setup_links::table
        .filter(setup_links::token_hash.eq(sha256_hex(token)))
        .select(SetupLink::as_select())
        .first(conn)
        .optional()?
        .filter(|l| l.live(now)))
}

pub fn list(conn: &mut DbConn, org: &OrgId) -> Result<Vec<SetupLink>> {
    Ok(setup_links::table
        .filter(setup_links::org_id.eq(org.as_str()))
        .order(setup_links::created_at.desc())
        .select(SetupLink::as_select())
        .load(conn)?)
}

pub fn mark_used(conn: &mut DbConn, id: &str, now: i64) -> Result<()> {
    diesel::update(setup_links::table.find(id))
        .set(setup_links::last_used_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}

/// Revokes a link of this org and ends the sessions it opened; returns how many.
pub fn revoke(conn: &mut DbConn, org: &OrgId, id: &str, now: i64) -> Result<usize> {
    let n = diesel::update(
        setup_links::table
            .find(id)
            .filter(setup_links::org_id.eq(org.as_str()))
            .filter(setup_links::revoked_at.is_null()),
    )
    .set(setup_links::revoked_at.eq(Some(now)))
    .execute(conn)?;
    if n == 0 {
        return Err(IdentityError::NotFound(format!(
            "no live setup link {id} in this organization"
        )));
    }
    Ok(diesel::update(
        sessions::table
            .filter(sessions::setup_link_id.eq(id))
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(Some(now)))
    .execute(conn)?)
}
