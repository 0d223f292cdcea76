//! App roles (with a rank) and group→role mappings. The app role of a user (design.md sign-in
//! rule 5): explicit SCIM `roles` value; else the highest-ranked role among the mappings of
//! the user's groups; else the org's default role. Org-admin rights are never derived here.

use diesel::prelude::*;
use serde::Serialize;

use super::{conflict_on_unique, IdentityError, Result};
use crate::db::ids::{MappingId, OrgId, RoleId};
use crate::db::schema::{role_mappings, roles};
use crate::db::DbConn;
use crate::domain::fold;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = roles)]
pub struct Role {
    #[diesel(deserialize_as = String)]
    pub id: RoleId,
    #[diesel(deserialize_as = String)]
    pub org_id: OrgId,
    pub name: String,
    pub name_folded: String,
    pub rank: i32,
    pub created_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = roles)]
struct NewRole<'a> {
    id: &'a str,
    org_id: &'a str,
    name: &'a str,
    name_folded: String,
    rank: i32,
    created_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = role_mappings)]
struct NewMapping<'a> {
    id: &'a str,
    org_id: &'a str,
    group_key: &'a str,
    group_key_folded: String,
    role_id: &'a str,
    created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MappingView {
    pub group: String,
    pub role: String,
    pub rank: i32,
}

pub fn add(conn: &mut DbConn, org: &OrgId, name: &str, rank: i32, now: i64) -> Result<Role> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.contains(',') {
        return Err(IdentityError::Invalid(
            "a role name is 1-100 characters without commas".into(),
        ));
    }
    let id = RoleId::new();
    diesel::insert_into(roles::table)
        .values(&NewRole {
            id: id.as_str(),
            org_id: org.as_str(),
            name,
            name_folded: fold(name),
            rank,
            created_at: now,
        })
        .execute(conn)
        .map_err(|e| conflict_on_unique(e, || format!("the role `{name}` already exists")))?;
    find(conn, org, name)?.ok_or_else(|| IdentityError::NotFound(name.into()))
}

pub fn find(conn: &mut DbConn, org: &OrgId, name: &str) -> Result<Option<Role>> {
    Ok(roles::table
        .filter(roles::org_id.eq(org.as_str()))
        .filter(roles::name_folded.eq(fold(name)))
        .select(Role::as_select())
        .first(conn)
        .optional()?)
}

pub fn list(conn: &mut DbConn, org: &OrgId) -> Result<Vec<Role>> {
    Ok(roles::table
        .filter(roles::org_id.eq(org.as_str()))
        .order((roles::rank.desc(), roles::name.asc()))
        .select(Role::as_select())
        .load(conn)?)
}

/// Maps a group (displayName or IdP value) to a role; remapping a group replaces its role.
pub fn map(
    conn: &mut DbConn,
    org: &OrgId,
    group: &str,
    role: &str,
    now: i64,
) -> Result<MappingView> {
    let group = group.trim();
    if group.is_empty() {
        return Err(IdentityError::Invalid(
            "the group name must not be empty".into(),
        ));
    }
    let role = find(conn, org, role)?.ok_or_else(|| {
        IdentityError::NotFound(format!("no role `{role}` (add it first with `role add`)"))
    })?;
    diesel::delete(
        role_mappings::table
            .filter(role_mappings::org_id.eq(org.as_str()))
            .filter(role_mappings::group_key_folded.eq(fold(group))),
    )
    .execute(conn)?;
    diesel::insert_into(role_mappings::table)
        .values(&NewMapping {
            id: MappingId::new().as_str(),
            org_id: org.as_str(),
            group_key: group,
            group_key_folded: fold(group),
            role_id: role.id.as_str(),
            created_at: now,
        })
        .execute(conn)?;
    Ok(MappingView {
        group: group.to_string(),
        role: role.name,
        rank: role.rank,
    })
}

/// Changes a role's rank; returns the role before the change.
pub fn set_rank(conn: &mut DbConn, org: &OrgId, name: &str, rank: i32) -> Result<Role> {
    let role = find(conn, org, name)?
        .ok_or_else(|| IdentityError::NotFound(format!("no role `{name}`")))?;
    diesel::update(roles::table.find(role.id.as_str()))
        .set(roles::rank.eq(rank))
        .execute(conn)?;
    Ok(role)
}

/// Removes a role and the group mappings to it; returns the role and how many mappings went.
/// The org's default role cannot go (choose another default first).
pub fn remove(
    conn: &mut DbConn,
    org: &OrgId,
    default_role: Option<&str>,
    name: &str,
) -> Result<(Role, usize)> {
    let role = find(conn, org, name)?
        .ok_or_else(|| IdentityError::NotFound(format!("no role `{name}`")))?;
    if default_role.is_some_and(|d| fold(d) == role.name_folded) {
        return Err(IdentityError::Conflict(format!(
            "`{}` is the organization's default role: choose another default first",
            role.name
        )));
    }
    let mappings = diesel::delete(
        role_mappings::table
            .filter(role_mappings::org_id.eq(org.as_str()))
            .filter(role_mappings::role_id.eq(role.id.as_str())),
    )
    .execute(conn)?;
    diesel::delete(roles::table.find(role.id.as_str())).execute(conn)?;
    Ok((role, mappings))
}

/// Removes a group's mapping; returns what it mapped to.
pub fn unmap(conn: &mut DbConn, org: &OrgId, group: &str) -> Result<MappingView> {
    let found = mappings(conn, org)?
        .into_iter()
        .find(|m| fold(&m.group) == fold(group.trim()))
        .ok_or_else(|| IdentityError::NotFound(format!("group `{group}` is not mapped")))?;
    diesel::delete(
        role_mappings::table
            .filter(role_mappings::org_id.eq(org.as_str()))
            .filter(role_mappings::group_key_folded.eq(fold(group.trim()))),
    )
    .execute(conn)?;
    Ok(found)
}

pub fn mappings(conn: &mut DbConn, org: &OrgId) -> Result<Vec<MappingView>> {
    let rows: Vec<(String, String, i32)> = role_mappings::table
        .inner_join(roles::table)
        .filter(role_mappings::org_id.eq(org.as_str()))
        .order((roles::rank.desc(), role_mappings::group_key.asc()))
        .select((role_mappings::group_key, roles::name, roles::rank))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(group, role, rank)| MappingView { group, role, rank })
        .collect())
}

/// Rule 5. `groups` are the user's group keys (displayNames and IdP values).
pub fn resolve_app_role(
    conn: &mut DbConn,
    org: &OrgId,
    explicit: Option<&str>,
    groups: &[String],
    default_role: Option<&str>,
) -> Result<Option<String>> {
    if let Some(role) = explicit.filter(|r| !r.is_empty()) {
        return Ok(Some(role.to_string()));
    }
    if !groups.is_empty() {
        let keys: Vec<String> = groups.iter().map(|g| fold(g)).collect();
        let best: Option<String> = role_mappings::table
            .inner_join(roles::table)
            .filter(role_mappings::org_id.eq(org.as_str()))
            .filter(role_mappings::group_key_folded.eq_any(keys))
            .order((roles::rank.desc(), roles::name.asc()))
            .select(roles::name)
            .first(conn)
            .optional()?;
        if best.is_some() {
            return Ok(best);
        }
    }
    Ok(default_role.map(str::to_string))
}
