//! Instance admins (operators): outside every org, password + TOTP. The TOTP seed is sealed
//! with the instance key; each code is accepted once (the last used step is stored and only
//! a later step is accepted, atomically, so two replicas cannot both accept it).

use diesel::prelude::*;
use serde::Serialize;

use super::{conflict_on_unique, Result};
use crate::crypto::SecretKey;
use crate::db::ids::AdminId;
use crate::db::schema::instance_admins;
use crate::db::DbConn;
use crate::domain::Email;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = instance_admins)]
pub struct InstanceAdmin {
    #[diesel(deserialize_as = String)]
    pub id: AdminId,
    pub email: String,
    pub email_folded: String,
    #[serde(skip)]
    pub password_hash: String,
    #[serde(skip)]
    pub totp_secret_enc: String,
    pub totp_last_step: Option<i64>,
    pub created_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = instance_admins)]
struct NewAdmin<'a> {
    id: &'a str,
    email: &'a str,
    email_folded: &'a str,
    password_hash: &'a str,
    totp_secret_enc: &'a str,
    created_at: i64,
}

pub fn totp_context(id: &AdminId) -> String {
    format!("instance_admins:{id}:totp")
}

/// Creates an admin with an already computed argon2id hash and a raw TOTP seed.
pub fn add(
    conn: &mut DbConn,
    key: &SecretKey,
    email: &Email,
    password_hash: &str,
    totp_seed: &[u8],
    now: i64,
) -> Result<InstanceAdmin> {
    let id = AdminId::new();
    let sealed = key.seal(totp_seed, &totp_context(&id));
    let folded = email.folded();
    diesel::insert_into(instance_admins::table)
        .values(&NewAdmin {
            id: id.as_str(),
            email: &email.to_string(),
            email_folded: &folded,
            password_hash,
            totp_secret_enc: &sealed,
            created_at: now,
        })
        .execute(conn)
        .map_err(|e| {
            conflict_on_unique(e, || format!("an instance admin {email} already exists"))
        })?;
    Ok(instance_admins::table
        .find(id.as_str())
        .select(InstanceAdmin::as_select())
        .first(conn)?)
}

pub fn find_by_email(conn: &mut DbConn, email_folded: &str) -> Result<Option<InstanceAdmin>> {
    Ok(instance_admins::table
        .filter(instance_admins::email_folded.eq(email_folded))
        .select(InstanceAdmin::as_select())
        .first(conn)
        .optional()?)
}

pub fn get(conn: &mut DbConn, id: &AdminId) -> Result<Option<InstanceAdmin>> {
    Ok(instance_admins::table
        .find(id.as_str())
        .select(InstanceAdmin::as_select())
        .first(conn)
        .optional()?)
}

/// Whether any instance admin exists (a fresh install has none: see the first-run page).
pub fn any(conn: &mut DbConn) -> Result<bool> {
    let first: Option<String> = instance_admins::table
        .select(instance_admins::id)
        .first(conn)
        .optional()?;
    Ok(first.is_some())
}

pub fn list(conn: &mut DbConn) -> Result<Vec<InstanceAdmin>> {
    Ok(instance_admins::table
        .order(instance_admins::email_folded.asc())
        .select(InstanceAdmin::as_select())
        .load(conn)?)
}

/// Marks TOTP `step` used; false when it (or a later one) was already used.
pub fn consume_totp_step(conn: &mut DbConn, id: &AdminId, step: i64) -> Result<bool> {
    let n = diesel::update(
        instance_admins::table
            .filter(instance_admins::id.eq(id.as_str()))
            .filter(
                instance_admins::totp_last_step
                    .is_null()
                    .or(instance_admins::totp_last_step.lt(step)),
            ),
    )
    .set(instance_admins::totp_last_step.eq(Some(step)))
    .execute(conn)?;
    Ok(n == 1)
}
