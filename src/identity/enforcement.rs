//! Changing an org's SSO enforcement. Tightening it revokes the password sessions that no
//! longer qualify (break-glass accounts are exempt: they exist for exactly that case).

use diesel::prelude::*;

use super::{domains, orgs, Result};
use crate::db::ids::OrgId;
use crate::db::schema::{sessions, users};
use crate::db::DbConn;
use crate::domain::{Email, Enforcement};

/// Whether a password sign-in is allowed for this user under the org's current settings.
pub fn password_allowed(
    mode: Enforcement,
    enforced_domains: &[String],
    is_break_glass: bool,
    email: Option<&str>,
) -> bool {
    if is_break_glass {
        return true;
    }
    match mode {
        Enforcement::Off => true,
        Enforcement::All => false,
        Enforcement::Domains => {
            let domain = email
                .and_then(|e| Email::parse(e).ok())
                .map(|e| e.domain().as_str().to_string());
            !domain.is_some_and(|d| enforced_domains.contains(&d))
        }
    }
}

/// Sets the mode and returns how many sessions were revoked.
pub fn set(conn: &mut DbConn, org: &OrgId, mode: Enforcement, now: i64) -> Result<usize> {
    orgs::update(
        conn,
        org,
        orgs::OrgChanges {
            enforcement: Some(mode.as_str().to_string()),
            ..Default::default()
        },
        now,
    )?;
    revoke_disqualified(conn, org, now)
}

/// Revokes live password sessions in the org that the current settings no longer allow.
pub fn revoke_disqualified(conn: &mut DbConn, org: &OrgId, now: i64) -> Result<usize> {
    let org_row = orgs::get(conn, org)?;
    let mode = org_row.enforcement();
    let enforced: Vec<String> = domains::list(conn, org)?
        .into_iter()
        .filter(|d| d.enforce)
        .map(|d| d.domain)
        .collect();
    let live: Vec<(String, Option<String>, bool)> = sessions::table
        .inner_join(users::table.on(sessions::user_id.eq(users::id.nullable())))
        .filter(sessions::org_id.eq(org.as_str()))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::auth_method.eq("password"))
        .select((sessions::id_hash, users::email, users::is_break_glass))
        .load(conn)?;
    let doomed: Vec<String> = live
        .into_iter()
        .filter(|(_, email, bg)| !password_allowed(mode, &enforced, *bg, email.as_deref()))
        .map(|(hash, _, _)| hash)
        .collect();
    let mut n = 0;
    for chunk in doomed.chunks(500) {
        n += diesel::update(sessions::table.filter(sessions::id_hash.eq_any(chunk)))
            .set(sessions::revoked_at.eq(Some(now)))
            .execute(conn)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforcement_decisions() {
        let enforced = vec!["corp.example".to_string()];
        let p = |m, bg, e| password_allowed(m, &enforced, bg, Some(e));
        assert!(p(Enforcement::Off, false, "a@corp.example"));
        assert!(!p(Enforcement::Domains, false, "a@Corp.Example"));
        assert!(p(Enforcement::Domains, false, "contractor@other.example"));
        assert!(!p(Enforcement::All, false, "contractor@other.example"));
        assert!(p(Enforcement::All, true, "a@corp.example"));
    }
}
