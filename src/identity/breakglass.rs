//! Break-glass accounts: at most two per org, a local account with a password and a TOTP
//! seed that signs in at `/sso/breakglass` even when SSO is required for everyone and the IdP
//! is down. Never provisioned by SCIM (SCIM does not see them) and never linked to an IdP
//! identity.

use diesel::prelude::*;

use super::users::{self, NewUser, User};
use super::{IdentityError, Result};
use crate::crypto::SecretKey;
use crate::db::ids::{OrgId, UserId};
use crate::db::schema::{user_identities, users as users_table};
use crate::db::DbConn;
use crate::domain::{Email, UserSource};

pub const MAX_PER_ORG: i64 = 2;

pub fn totp_context(id: &UserId) -> String {
    format!("users:{id}:breakglass-totp")
}

/// Creates the account or turns an existing one into a break-glass account, with a new
/// password hash and TOTP seed (the old ones stop working, and so do its sessions).
pub fn set(
    conn: &mut DbConn,
    key: &SecretKey,
    org: &OrgId,
    email: &Email,
    password_hash: &str,
    totp_seed: &[u8],
    now: i64,
) -> Result<User> {
    let existing = users_table::table
        .filter(users_table::org_id.eq(org.as_str()))
        .filter(
            users_table::email_folded
                .eq(email.folded())
                .or(users_table::user_name_folded.eq(email.folded())),
        )
        .select(User::as_select())
        .first(conn)
        .optional()?;
    let others: i64 = users_table::table
        .filter(users_table::org_id.eq(org.as_str()))
        .filter(users_table::is_break_glass.eq(true))
        .filter(users_table::email_folded.ne(email.folded()))
        .count()
        .get_result(conn)?;
    if others >= MAX_PER_ORG {
        return Err(IdentityError::Conflict(format!(
            "the org already has {MAX_PER_ORG} break-glass accounts; remove one first (`gatehouse breakglass remove`)"
        )));
    }
    let user = match existing {
        Some(u) => u,
        None => {
            let mut new = NewUser::new(org, &email.to_string(), UserSource::Local);
            new.email = Some(email.to_string());
            new.is_break_glass = true;
            users::create(conn, &new, now)?
        }
    };
    diesel::update(users_table::table.find(user.id.as_str()))
        .set((
            users_table::is_break_glass.eq(true),
            users_table::active.eq(true),
            users_table::password_hash.eq(Some(password_hash)),
            users_table::totp_secret_enc.eq(Some(key.seal(totp_seed, &totp_context(&user.id)))),
            users_table::totp_last_step.eq(None::<i64>),
            users_table::updated_at.eq(now),
        ))
        .execute(conn)?;
    // Never linked to an IdP identity.
    diesel::delete(user_identities::table.filter(user_identities::user_id.eq(user.id.as_str())))
        .execute(conn)?;
    users::revoke_sessions(conn, &user.id, now)?;
    users::get(conn, org, &user.id)
}

/// Turns a break-glass account back into a plain account without password or TOTP.
pub fn remove(conn: &mut DbConn, org: &OrgId, email: &Email, now: i64) -> Result<User> {
    let user = list(conn, org)?
        .into_iter()
        .find(|u| u.email_folded.as_deref() == Some(&email.folded()))
        .ok_or_else(|| IdentityError::NotFound(format!("no break-glass account {email}")))?;
    diesel::update(users_table::table.find(user.id.as_str()))
        .set((
            users_table::is_break_glass.eq(false),
            users_table::password_hash.eq(None::<String>),
            users_table::totp_secret_enc.eq(None::<String>),
            users_table::totp_last_step.eq(None::<i64>),
            users_table::updated_at.eq(now),
        ))
        .execute(conn)?;
    users::revoke_sessions(conn, &user.id, now)?;
    users::get(conn, org, &user.id)
}

pub fn list(conn: &mut DbConn, org: &OrgId) -> Result<Vec<User>> {
    Ok(users_table::table
        .filter(users_table::org_id.eq(org.as_str()))
        .filter(users_table::is_break_glass.eq(true))
        .order(users_table::created_at.asc())
        .select(User::as_select())
        .load(conn)?)
}

/// Active break-glass accounts with this e-mail, in any org: (account, sealed TOTP seed).
pub fn candidates(conn: &mut DbConn, email_folded: &str) -> Result<Vec<(User, String)>> {
    let rows: Vec<(User, Option<String>)> = users_table::table
        .filter(users_table::is_break_glass.eq(true))
        .filter(users_table::active.eq(true))
        .filter(users_table::email_folded.eq(email_folded))
        .order(users_table::created_at.asc())
        .limit(5)
        .select((User::as_select(), users_table::totp_secret_enc))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(u, seed)| seed.map(|s| (u, s)))
        .collect())
}

/// Marks TOTP `step` used; false when it (or a later one) was already used.
pub fn consume_totp_step(conn: &mut DbConn, id: &UserId, step: i64) -> Result<bool> {
    let n = diesel::update(
        users_table::table
            .filter(users_table::id.eq(id.as_str()))
            .filter(
                users_table::totp_last_step
                    .is_null()
                    .or(users_table::totp_last_step.lt(step)),
            ),
    )
    .set(users_table::totp_last_step.eq(Some(step)))
    .execute(conn)?;
    Ok(n == 1)
}
