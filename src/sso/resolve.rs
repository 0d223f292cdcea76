//! Account resolution after a verified assertion or ID token, written once for every protocol
//! (design.md sign-in rules 3–5), all inside the connection's org:
//! (a) same connection + same subject → that user;
//! (b) else a user whose userName or e-mail equals the asserted e-mail — only when the e-mail's
//!     domain is a verified domain of the org, exactly one user matches, that user has no other
//!     subject on this connection, and the subject is not transient;
//! (c) else just-in-time creation when the org allows it and no tombstone blocks the identity.
//! Break-glass accounts are never linked, org admins never by e-mail (an admin links them
//! explicitly with [`link_explicitly`]); deactivated users are refused.

use diesel::prelude::*;
use serde_json::json;

use crate::db::ids::OrgId;
use crate::db::schema::{user_identities, users as users_table};
use crate::db::DbConn;
use crate::domain::{Email, UserSource};
use crate::identity::orgs::Organization;
use crate::identity::users::{self, NewUser, User};
use crate::identity::{domains, tombstones, IdentityError};

/// What the IdP asserted, already verified and mapped.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Asserted {
    pub subject: String,
    pub transient: bool,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
}

/// Why a verified identity still cannot sign in, in words for the user and the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoEmail,
    EmailOutsideVerifiedDomains(String),
    Deactivated(String),
    BreakGlass(String),
    OrgAdmin(String),
    Ambiguous(String),
    LinkedToAnotherSubject(String),
    TransientCannotLink(String),
    Tombstoned(String),
    JitDisabled(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoEmail => write!(
                f,
                "the IdP sent no e-mail address and this identity is not linked to an account"
            ),
            Refusal::EmailOutsideVerifiedDomains(d) => write!(
                f,
                "e-mail domain {d} is not a verified domain of this organization"
            ),
            Refusal::Deactivated(u) => write!(f, "account {u} is deactivated"),
            Refusal::BreakGlass(u) => write!(
                f,
                "account {u} is a break-glass account and is never linked to an IdP identity"
            ),
            Refusal::OrgAdmin(u) => write!(
                f,
                "account {u} is an org admin and is never linked by e-mail; an admin links it \
                 explicitly (`gatehouse user link`)"
            ),
            Refusal::Ambiguous(e) => write!(f, "more than one account matches {e}"),
            Refusal::LinkedToAnotherSubject(u) => write!(
                f,
                "account {u} is already linked to another identity of this connection"
            ),
            Refusal::TransientCannotLink(u) => write!(
                f,
                "a transient NameID cannot be linked to the existing account {u}"
            ),
            Refusal::Tombstoned(u) => write!(
                f,
                "account {u} was deleted by SCIM provisioning; an admin must restore it"
            ),
            Refusal::JitDisabled(e) => write!(
                f,
                "no account for {e} and just-in-time creation is off for this organization"
            ),
        }
    }
}

pub enum Outcome {
    Existing(User),
    Linked(User),
    Created(User),
}

impl Outcome {
    pub fn user(&self) -> &User {
        match self {
            Outcome::Existing(u) | Outcome::Linked(u) | Outcome::Created(u) => u,
        }
    }
    pub fn how(&self) -> &'static str {
        match self {
            Outcome::Existing(_) => "existing link",
            Outcome::Linked(_) => "linked by verified e-mail",
            Outcome::Created(_) => "created just in time",
        }
    }
}

/// An admin's explicit link of an account to a subject of a connection of its org (how an org
/// admin comes to sign in with SSO). Refuses break-glass accounts and a subject already linked.
pub fn link_explicitly(
    conn: &mut DbConn,
    connection_id: &str,
    subject: &str,
    user: &User,
    now: i64,
) -> Result<(), IdentityError> {
    if user.is_break_glass {
        return Err(IdentityError::Invalid(format!(
            "{} is a break-glass account and is never linked to an IdP identity",
            user.user_name
        )));
    }
    let holder: Option<String> = user_identities::table
        .filter(user_identities::connection_id.eq(connection_id))
        .filter(user_identities::subject.eq(subject))
        .select(user_identities::user_id)
        .first(conn)
        .optional()?;
    match holder {
        // Already this account's (e.g. a link made by e-mail before explicit links existed):
        // it becomes explicit below.
        Some(id) if id == user.id.as_str() => {}
        Some(_) => {
            return Err(IdentityError::Conflict(
                "that subject is linked to another account on this connection".into(),
            ))
        }
        None => {
            // The account's previous subject on this connection, if any, is replaced.
            diesel::delete(
                user_identities::table
                    .filter(user_identities::connection_id.eq(connection_id))
                    .filter(user_identities::user_id.eq(user.id.as_str())),
            )
            .execute(conn)?;
            link(conn, connection_id, subject, user, now)?;
        }
    }
    diesel::update(
        user_identities::table
            .filter(user_identities::connection_id.eq(connection_id))
            .filter(user_identities::subject.eq(subject)),
    )
    .set(user_identities::explicit.eq(true))
    .execute(conn)?;
    Ok(())
}

fn link(
    conn: &mut DbConn,
    connection_id: &str,
    subject: &str,
    user: &User,
    now: i64,
) -> Result<(), IdentityError> {
    diesel::insert_into(user_identities::table)
        .values((
            user_identities::connection_id.eq(connection_id),
            user_identities::subject.eq(subject),
            user_identities::user_id.eq(user.id.as_str()),
            user_identities::created_at.eq(now),
            user_identities::last_login_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Stores the groups of this sign-in on the user (replacing the previous ones).
fn store_groups(conn: &mut DbConn, user: &User, groups: &[String]) -> Result<User, IdentityError> {
    diesel::update(users_table::table.find(user.id.as_str()))
        .set(users_table::idp_groups.eq(Some(json!(groups).to_string())))
        .execute(conn)?;
    users::get(conn, &user.org_id, &user.id)
}

/// Resolves (and may create) the account. Call inside a write transaction.
pub fn resolve(
    conn: &mut DbConn,
    org: &Organization,
    connection_id: &str,
    a: &Asserted,
    now: i64,
) -> Result<Result<Outcome, Refusal>, IdentityError> {
    // (a) An existing link.
    let linked: Option<(String, bool)> = user_identities::table
        .filter(user_identities::connection_id.eq(connection_id))
        .filter(user_identities::subject.eq(&a.subject))
        .select((user_identities::user_id, user_identities::explicit))
        .first(conn)
        .optional()?;
    if let Some((user_id, explicit)) = linked {
        let user = users::get(conn, &org.id, &user_id.into())?;
        if user.is_break_glass {
            return Ok(Err(Refusal::BreakGlass(user.user_name)));
        }
        // An org admin signs in with SSO only through a link an admin made.
        if user.is_org_admin && !explicit {
            return Ok(Err(Refusal::OrgAdmin(user.user_name)));
        }
        if !user.active {
            return Ok(Err(Refusal::Deactivated(user.user_name)));
        }
        diesel::update(
            user_identities::table
                .filter(user_identities::connection_id.eq(connection_id))
                .filter(user_identities::subject.eq(&a.subject)),
        )
        .set(user_identities::last_login_at.eq(now))
        .execute(conn)?;
        return Ok(Ok(Outcome::Existing(store_groups(conn, &user, &a.groups)?)));
    }

    // (b) and (c) need an e-mail inside the org's verified domains.
    let Some(email_text) = a.email.as_deref() else {
        return Ok(Err(Refusal::NoEmail));
    };
    let email = match Email::parse(email_text) {
        Ok(e) => e,
        Err(_) => return Ok(Err(Refusal::NoEmail)),
    };
    if !domains::is_verified_for(conn, &org.id, email.domain())? {
        return Ok(Err(Refusal::EmailOutsideVerifiedDomains(
            email.domain().to_string(),
        )));
    }
    let folded = email.folded();
    let matches: Vec<User> = users_table::table
        .filter(users_table::org_id.eq(org.id.as_str()))
        .filter(
            users_table::user_name_folded
                .eq(&folded)
                .or(users_table::email_folded.eq(&folded)),
        )
        .select(User::as_select())
        .limit(2)
        .load(conn)?;
    match matches.as_slice() {
        [user] => {
            if user.is_break_glass {
                return Ok(Err(Refusal::BreakGlass(user.user_name.clone())));
            }
            // Org-admin rights never come from IdP data: an e-mail claim (which SCIM or the
            // IdP can set to anything in the org's domains) does not open an admin's account.
            if user.is_org_admin {
                return Ok(Err(Refusal::OrgAdmin(user.user_name.clone())));
            }
            if a.transient {
                return Ok(Err(Refusal::TransientCannotLink(user.user_name.clone())));
            }
            let other: i64 = user_identities::table
                .filter(user_identities::connection_id.eq(connection_id))
                .filter(user_identities::user_id.eq(user.id.as_str()))
                .count()
                .get_result(conn)?;
            if other > 0 {
                return Ok(Err(Refusal::LinkedToAnotherSubject(user.user_name.clone())));
            }
            if !user.active {
                return Ok(Err(Refusal::Deactivated(user.user_name.clone())));
            }
            link(conn, connection_id, &a.subject, user, now)?;
            Ok(Ok(Outcome::Linked(store_groups(conn, user, &a.groups)?)))
        }
        [_, _, ..] => Ok(Err(Refusal::Ambiguous(email.to_string()))),
        [] => {
            if tombstones::blocks(conn, &org.id, &folded)? {
                return Ok(Err(Refusal::Tombstoned(email.to_string())));
            }
            if !org.jit_enabled {
                return Ok(Err(Refusal::JitDisabled(email.to_string())));
            }
            let mut new = NewUser::new(&org.id, &email.to_string(), UserSource::Jit);
            new.email = Some(email.to_string());
            new.given_name = a.given_name.clone();
            new.family_name = a.family_name.clone();
            new.display_name = a.display_name.clone();
            let user = users::create(conn, &new, now)?;
            if !a.transient {
                link(conn, connection_id, &a.subject, &user, now)?;
            }
            Ok(Ok(Outcome::Created(store_groups(conn, &user, &a.groups)?)))
        }
    }
}

/// How an org chooses the groups that count for app roles (`organizations.group_source`).
pub const GROUP_SOURCES: &[(&str, &str)] = &[
    ("auto", "SCIM groups once any group is provisioned by SCIM; until then, the groups the IdP sends at sign-in"),
    ("idp", "the groups the IdP sends at sign-in only (SCIM groups are ignored for roles)"),
    ("scim", "SCIM groups only (groups sent at sign-in are ignored)"),
    ("both", "both: SCIM groups and the groups the IdP sends at sign-in"),
];

/// Under the org's rule (`source`), whether (SCIM groups, sign-in groups) count; for `auto`,
/// `scim_groups_exist` says whether SCIM has provisioned any group in the org.
pub fn group_sources_used(source: &str, scim_groups_exist: bool) -> (bool, bool) {
    match source {
        "idp" => (false, true),
        "scim" => (true, false),
        "both" => (true, true),
        _ => (scim_groups_exist, !scim_groups_exist),
    }
}

/// The groups that count for a user under the org's rule (`source`, see [`GROUP_SOURCES`]):
/// SCIM memberships, the groups of the latest sign-in, or both. Returned as (names for
/// display, keys for role mapping).
/// What an app is told of a user: effective groups (names), app role, and whether the e-mail
/// is verified (inside the org's verified domains).
pub fn app_view(
    conn: &mut DbConn,
    user: &User,
    org: &crate::identity::orgs::Organization,
) -> Result<(Vec<String>, Option<String>, bool), IdentityError> {
    let (groups, group_keys) = effective_groups(conn, user, &org.group_source)?;
    let role = crate::identity::roles::resolve_app_role(
        conn,
        &org.id,
        user.app_role.as_deref(),
        &group_keys,
        org.default_role.as_deref(),
    )?;
    let email_verified = crate::identity::users::email_verified(conn, user)?;
    Ok((groups, role, email_verified))
}

pub fn effective_groups(
    conn: &mut DbConn,
    user: &User,
    source: &str,
) -> Result<(Vec<String>, Vec<String>), IdentityError> {
    use crate::db::schema::user_groups;
    let scim_groups_exist = source == "auto" && {
        let n: i64 = user_groups::table
            .filter(user_groups::org_id.eq(user.org_id.as_str()))
            .count()
            .get_result(conn)?;
        n > 0
    };
    let (use_scim, use_idp) = group_sources_used(source, scim_groups_exist);
    let (mut names, mut keys) = (Vec::new(), Vec::new());
    if use_scim {
        let groups = users::groups(conn, &user.id)?;
        keys.extend(
            groups
                .iter()
                .flat_map(|(name, ext)| std::iter::once(name.clone()).chain(ext.clone())),
        );
        names.extend(groups.into_iter().map(|(n, _)| n));
    }
    if use_idp {
        let groups: Vec<String> = user
            .idp_groups
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        for g in groups {
            if !names.contains(&g) {
                names.push(g.clone());
            }
            keys.push(g);
        }
    }
    Ok((names, keys))
}

/// What a real sign-in with `a` through this connection would do now, without doing it (the
/// sign-in rules run in a savepoint that is rolled back): the account it would reach and how,
/// the groups that would count and the app role, or why it would be refused.
pub fn preview(
    conn: &mut DbConn,
    org: &OrgId,
    connection_id: &str,
    a: &Asserted,
    now: i64,
) -> Result<serde_json::Value, IdentityError> {
    let org = crate::identity::orgs::get(conn, org)?;
    let mut seen = None;
    let result = conn.transaction::<(), IdentityError, _>(|c| {
        let v = match resolve(c, &org, connection_id, a, now)? {
            Ok(outcome) => {
                let user = outcome.user();
                let (groups, keys) = effective_groups(c, user, &org.group_source)?;
                let role = crate::identity::roles::resolve_app_role(
                    c,
                    &org.id,
                    user.app_role.as_deref(),
                    &keys,
                    org.default_role.as_deref(),
                )?;
                json!({
                    "result": "would sign in",
                    "how": outcome.how(),
                    "user_name": user.user_name,
                    "groups": groups,
                    "group_source": org.group_source,
                    "role": role,
                })
            }
            Err(refusal) => json!({"result": "would be refused", "cause": refusal.to_string()}),
        };
        seen = Some(v);
        Err(diesel::result::Error::RollbackTransaction.into())
    });
    match (seen, result) {
        (Some(v), _) => Ok(v),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => Ok(serde_json::Value::Null),
    }
}
