//! Organizations (tenants).

use diesel::prelude::*;
use serde::Serialize;

use super::{conflict_on_unique, IdentityError, Result};
use crate::db::ids::OrgId;
use crate::db::schema::organizations;
use crate::db::DbConn;
use crate::domain::{Enforcement, Slug};

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = organizations)]
pub struct Organization {
    #[diesel(deserialize_as = String)]
    pub id: OrgId,
    pub slug: String,
    pub name: String,
    pub enforcement: String,
    pub jit_enabled: bool,
    pub default_role: Option<String>,
    pub session_idle_minutes: i32,
    pub session_max_minutes: i32,
    pub created_at: i64,
    pub updated_at: i64,
    /// Which groups count for app roles (`auto`, `idp`, `scim`, `both`; see
    /// `sso::resolve::effective_groups`).
    pub group_source: String,
}

impl Organization {
    pub fn enforcement(&self) -> Enforcement {
        self.enforcement.parse().unwrap_or(Enforcement::All)
    }
}

#[derive(Insertable)]
#[diesel(table_name = organizations)]
struct NewOrganization<'a> {
    id: &'a str,
    slug: &'a str,
    name: &'a str,
    created_at: i64,
    updated_at: i64,
}

/// Changes to an org; `None` leaves a field alone, `Some(None)` clears a nullable one.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = organizations)]
pub struct OrgChanges {
    pub name: Option<String>,
    pub enforcement: Option<String>,
    pub jit_enabled: Option<bool>,
    pub default_role: Option<Option<String>>,
    pub session_idle_minutes: Option<i32>,
    pub session_max_minutes: Option<i32>,
    pub group_source: Option<String>,
    pub updated_at: Option<i64>,
}

pub fn create(conn: &mut DbConn, slug: &Slug, name: &str, now: i64) -> Result<Organization> {
    let id = OrgId::new();
    diesel::insert_into(organizations::table)
        .values(&NewOrganization {
            id: id.as_str(),
            slug: slug.as_str(),
            name,
            created_at: now,
            updated_at: now,
        })
        .execute(conn)
        .map_err(|e| {
            conflict_on_unique(e, || format!("an org with slug `{slug}` already exists"))
        })?;
    get(conn, &id)
}

pub fn get(conn: &mut DbConn, id: &OrgId) -> Result<Organization> {
    organizations::table
        .find(id.as_str())
        .select(Organization::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| IdentityError::NotFound(format!("no org with id {id}")))
}

/// By slug or id, as operators type it.
pub fn find(conn: &mut DbConn, key: &str) -> Result<Organization> {
    let key = key.trim();
    organizations::table
        .filter(
            organizations::slug
                .eq(key.to_ascii_lowercase())
                .or(organizations::id.eq(key)),
        )
        .select(Organization::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| IdentityError::NotFound(format!("no org `{key}`")))
}

pub fn list(conn: &mut DbConn) -> Result<Vec<Organization>> {
    Ok(organizations::table
        .order(organizations::slug.asc())
        .select(Organization::as_select())
        .load(conn)?)
}

pub fn update(
    conn: &mut DbConn,
    id: &OrgId,
    mut changes: OrgChanges,
    now: i64,
) -> Result<Organization> {
    if let Some(idle) = changes.session_idle_minutes {
        if idle < 1 {
            return Err(IdentityError::Invalid(
                "session idle lifetime must be at least 1 minute".into(),
            ));
        }
    }
    if let Some(max) = changes.session_max_minutes {
        if max < 1 {
            return Err(IdentityError::Invalid(
                "session maximum lifetime must be at least 1 minute".into(),
            ));
        }
    }
    if let Some(source) = &changes.group_source {
        if !crate::sso::resolve::GROUP_SOURCES
            .iter()
            .any(|(k, _)| k == source)
        {
            return Err(IdentityError::Invalid(format!(
                "unknown group source `{source}` (auto, idp, scim or both)"
            )));
        }
    }
    changes.updated_at = Some(now);
    diesel::update(organizations::table.find(id.as_str()))
        .set(&changes)
        .execute(conn)?;
    get(conn, id)
}
