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

/// Serialises the changes the lock-out guard decides on, per org (see [`lockout`]).
pub fn lock_org(conn: &mut DbConn, org: &OrgId) -> Result<()> {
    crate::db::lock_named(conn, &format!("lockout:{org}"))?;
    Ok(())
}

/// A change that can lock an org out while SSO is required.
pub enum Change<'a> {
    /// Disabling (or deleting) this connection.
    DisableConnection(&'a str),
    /// Removing this break-glass account (a user id).
    RemoveBreakGlass(&'a str),
    /// Removing this domain (SSO sign-ins by e-mail need a verified domain).
    RemoveDomain(&'a str),
}

/// The lock-out guard, the same for every change: while the org requires SSO for everyone,
/// at least one live connection that has proven it works (a sign-in or a successful Test
/// sign-in) and one break-glass account must remain; while it requires SSO for some domains,
/// at least one live connection must remain for their users, and a break-glass account.
/// Returns why the change is refused, in words for the admin, or `None` when it is safe.
pub fn lockout(
    conn: &mut DbConn,
    org: &orgs::Organization,
    change: Change<'_>,
) -> Result<Option<String>> {
    // Two guarded changes at once (on PostgreSQL each reads before the other writes) must
    // not both pass: they queue on one lock per org until the end of the transaction.
    lock_org(conn, &org.id)?;
    let mode = org.enforcement();
    let some_enforced = domains::list(conn, &org.id)?.iter().any(|d| d.enforce);
    let required = match mode {
        Enforcement::All => true,
        Enforcement::Domains => some_enforced,
        Enforcement::Off => false,
    };
    if !required {
        return Ok(None);
    }
    let who = if mode == Enforcement::All {
        "everyone"
    } else {
        "the users of its enforced domains"
    };
    match change {
        Change::DisableConnection(id) => {
            let left = crate::sso::connections::list(conn, &org.id)?
                .into_iter()
                .filter(|c| c.id != id && c.live())
                .any(|c| mode != Enforcement::All || c.proven());
            Ok((!left).then(|| {
                format!(
                    "Refused to keep the organization from being locked out: it requires SSO for {who}, and this is its last working connection. Add and test another connection first, or set \"Require SSO\" to off."
                )
            }))
        }
        Change::RemoveDomain(domain) => {
            let left = domains::list(conn, &org.id)?
                .into_iter()
                .any(|d| d.domain != domain && d.verified);
            let was_verified = domains::list(conn, &org.id)?
                .iter()
                .any(|d| d.domain == domain && d.verified);
            Ok((was_verified && !left).then(|| {
                format!(
                    "Refused to keep the organization from being locked out: it requires SSO for {who}, and this is its last verified domain (without one, nobody new can sign in with SSO). Add and verify another domain first, or set \"Require SSO\" to off."
                )
            }))
        }
        Change::RemoveBreakGlass(user) => {
            let left = super::breakglass::list(conn, &org.id)?
                .into_iter()
                .any(|u| u.id.as_str() != user);
            Ok((!left).then(|| {
                format!(
                    "Refused to keep the organization from being locked out: it requires SSO for {who}, and this is its last break-glass account (the way in when the IdP fails). Add another break-glass account first, or set \"Require SSO\" to off."
                )
            }))
        }
    }
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
