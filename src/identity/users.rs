//! Users, always scoped to one org. `userName` is unique per org, case-insensitively (the
//! folded column); `externalId` is not unique.

use diesel::prelude::*;
use serde::Serialize;

use super::{conflict_on_unique, IdentityError, Result};
use crate::db::ids::{OrgId, UserId};
use crate::db::schema::{memberships, sessions, user_groups, users};
use crate::db::DbConn;
use crate::domain::{fold, UserSource};

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName, Serialize)]
#[diesel(table_name = users)]
pub struct User {
    #[diesel(deserialize_as = String)]
    pub id: UserId,
    #[diesel(deserialize_as = String)]
    pub org_id: OrgId,
    pub user_name: String,
    pub user_name_folded: String,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub email_folded: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    pub app_role: Option<String>,
    pub is_org_admin: bool,
    pub is_break_glass: bool,
    pub source: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip)]
    pub scim_json: Option<String>,
    #[serde(skip)]
    pub idp_groups: Option<String>,
}

/// What a caller supplies to create a user; folding and timestamps are done here.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub org_id: OrgId,
    pub user_name: String,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    pub app_role: Option<String>,
    pub is_org_admin: bool,
    pub is_break_glass: bool,
    pub source: UserSource,
    pub password_hash: Option<String>,
    /// The SCIM document as the IdP sent it (SCIM-created users only).
    pub scim_json: Option<String>,
}

impl NewUser {
    pub fn new(org_id: &OrgId, user_name: &str, source: UserSource) -> NewUser {
        NewUser {
            org_id: org_id.clone(),
            user_name: user_name.trim().to_string(),
            external_id: None,
            email: None,
            given_name: None,
            family_name: None,
            display_name: None,
            active: true,
            app_role: None,
            is_org_admin: false,
            is_break_glass: false,
            source,
            password_hash: None,
            scim_json: None,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
// None is NULL (no column here has another default), so the statement text never varies
// and its prepared statement is found by type, without rebuilding the SQL to look it up.
#[diesel(treat_none_as_default_value = false)]
struct UserRow<'a> {
    id: &'a str,
    org_id: &'a str,
    user_name: &'a str,
    user_name_folded: String,
    external_id: Option<&'a str>,
    email: Option<&'a str>,
    email_folded: Option<String>,
    given_name: Option<&'a str>,
    family_name: Option<&'a str>,
    display_name: Option<&'a str>,
    active: bool,
    app_role: Option<&'a str>,
    is_org_admin: bool,
    is_break_glass: bool,
    source: &'a str,
    password_hash: Option<&'a str>,
    scim_json: Option<&'a str>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

pub fn create(conn: &mut DbConn, new: &NewUser, now: i64) -> Result<User> {
    if new.user_name.is_empty() {
        return Err(IdentityError::Invalid("userName must not be empty".into()));
    }
    let id = UserId::new();
    let row = UserRow {
        id: id.as_str(),
        org_id: new.org_id.as_str(),
        user_name: &new.user_name,
        user_name_folded: fold(&new.user_name),
        external_id: new.external_id.as_deref(),
        email: new.email.as_deref(),
        email_folded: new.email.as_deref().map(fold),
        given_name: new.given_name.as_deref(),
        family_name: new.family_name.as_deref(),
        display_name: new.display_name.as_deref(),
        active: new.active,
        app_role: new.app_role.as_deref(),
        is_org_admin: new.is_org_admin,
        is_break_glass: new.is_break_glass,
        source: new.source.as_str(),
        password_hash: new.password_hash.as_deref(),
        scim_json: new.scim_json.as_deref(),
        version: 1,
        created_at: now,
        updated_at: now,
    };
    crate::on_backend!(&mut *conn, |c| diesel::insert_into(users::table)
        .values(&row)
        .execute(c))
    .map_err(|e| {
        conflict_on_unique(e, || {
            format!(
                "a user with userName `{}` already exists in this org",
                new.user_name
            )
        })
    })?;
    // The row as stored (no read back: every column is known here; `idp_groups` starts empty).
    Ok(User {
        id: id.clone(),
        org_id: new.org_id.clone(),
        user_name: new.user_name.clone(),
        user_name_folded: row.user_name_folded,
        external_id: new.external_id.clone(),
        email: new.email.clone(),
        email_folded: row.email_folded,
        given_name: new.given_name.clone(),
        family_name: new.family_name.clone(),
        display_name: new.display_name.clone(),
        active: new.active,
        app_role: new.app_role.clone(),
        is_org_admin: new.is_org_admin,
        is_break_glass: new.is_break_glass,
        source: new.source.as_str().to_string(),
        password_hash: new.password_hash.clone(),
        version: 1,
        created_at: now,
        updated_at: now,
        scim_json: new.scim_json.clone(),
        idp_groups: None,
    })
}

/// Org-scoped: a user id of another org is "not found".
pub fn get(conn: &mut DbConn, org: &OrgId, id: &UserId) -> Result<User> {
    users::table
        .filter(users::org_id.eq(org.as_str()))
        .filter(users::id.eq(id.as_str()))
        .select(User::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| IdentityError::NotFound(format!("no user {id}")))
}

pub fn find_by_user_name(conn: &mut DbConn, org: &OrgId, user_name: &str) -> Result<Option<User>> {
    Ok(users::table
        .filter(users::org_id.eq(org.as_str()))
        .filter(users::user_name_folded.eq(fold(user_name)))
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

/// Whether the user's e-mail may be presented as verified: only when its domain is a verified
/// domain of the user's own org (SCIM and IdPs can put any address in `emails`), and no other
/// account of the org holds that address as its e-mail or userName (SCIM could copy a
/// colleague's, an admin's, into someone else's `emails`).
pub fn email_verified(conn: &mut DbConn, user: &User) -> Result<bool> {
    let Some(email) = user.email.as_deref() else {
        return Ok(false);
    };
    let Ok(email) = crate::domain::Email::parse(email) else {
        return Ok(false);
    };
    if !super::domains::is_verified_for(conn, &user.org_id, email.domain())? {
        return Ok(false);
    }
    let folded = email.folded();
    let others: i64 = users::table
        .filter(users::org_id.eq(user.org_id.as_str()))
        .filter(users::id.ne(user.id.as_str()))
        .filter(
            users::email_folded
                .eq(&folded)
                .or(users::user_name_folded.eq(&folded)),
        )
        .count()
        .get_result(conn)?;
    Ok(others == 0)
}

/// Changes who manages the account (an admin handing a local account over to SCIM).
pub fn set_source(conn: &mut DbConn, user: &User, source: UserSource, now: i64) -> Result<User> {
    diesel::update(users::table.find(user.id.as_str()))
        .set((
            users::source.eq(source.as_str()),
            users::updated_at.eq(now.max(user.updated_at)),
        ))
        .execute(conn)?;
    get(conn, &user.org_id, &user.id)
}

pub fn list(conn: &mut DbConn, org: &OrgId) -> Result<Vec<User>> {
    Ok(users::table
        .filter(users::org_id.eq(org.as_str()))
        .order((users::created_at.asc(), users::id.asc()))
        .select(User::as_select())
        .load(conn)?)
}

/// Accounts that may sign in with a password under this e-mail (a few at most: the same
/// address can exist in several orgs).
pub fn password_candidates(conn: &mut DbConn, email_folded: &str) -> Result<Vec<User>> {
    Ok(users::table
        .filter(
            users::email_folded
                .eq(email_folded)
                .or(users::user_name_folded.eq(email_folded)),
        )
        .filter(users::password_hash.is_not_null())
        .order(users::created_at.asc())
        .limit(5)
        .select(User::as_select())
        .load(conn)?)
}

/// The user's SCIM groups: (displayName, externalId).
pub fn groups(conn: &mut DbConn, user: &UserId) -> Result<Vec<(String, Option<String>)>> {
    Ok(memberships::table
        .inner_join(user_groups::table)
        .filter(memberships::user_id.eq(user.as_str()))
        .order(user_groups::display_name.asc())
        .select((user_groups::display_name, user_groups::external_id))
        .load(conn)?)
}

/// Ends every session of the user; every replica sees it on its next request.
pub fn revoke_sessions(conn: &mut DbConn, user: &UserId, now: i64) -> Result<usize> {
    Ok(diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user.as_str()))
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(Some(now)))
    .execute(conn)?)
}
