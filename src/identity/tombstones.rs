//! Tombstones: a user deleted by SCIM leaves one, so a later JIT sign-in with the same
//! identity is refused instead of silently recreating the account.

use diesel::prelude::*;

use super::Result;
use crate::db::schema::tombstones;
use crate::db::DbConn;
use crate::domain::fold;
use crate::identity::users::User;

#[derive(Insertable)]
#[diesel(table_name = tombstones)]
struct NewTombstone<'a> {
    id: String,
    org_id: &'a str,
    user_name_folded: &'a str,
    email_folded: Option<&'a str>,
    external_id: Option<&'a str>,
    deleted_user_id: &'a str,
    created_at: i64,
}

pub fn record(conn: &mut DbConn, user: &User, now: i64) -> Result<()> {
    diesel::insert_into(tombstones::table)
        .values(&NewTombstone {
            id: uuid::Uuid::new_v4().to_string(),
            org_id: user.org_id.as_str(),
            user_name_folded: &user.user_name_folded,
            email_folded: user.email_folded.as_deref(),
            external_id: user.external_id.as_deref(),
            deleted_user_id: user.id.as_str(),
            created_at: now,
        })
        .execute(conn)?;
    Ok(())
}

/// True when a deleted identity with this userName or e-mail exists in the org.
pub fn blocks(conn: &mut DbConn, org: &crate::db::ids::OrgId, identity: &str) -> Result<bool> {
    let key = fold(identity);
    let n: i64 = tombstones::table
        .filter(tombstones::org_id.eq(org.as_str()))
        .filter(
            tombstones::user_name_folded
                .eq(&key)
                .or(tombstones::email_folded.eq(&key)),
        )
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// An operator lifts the block (e.g. the person really is back).
pub fn clear(conn: &mut DbConn, org: &crate::db::ids::OrgId, identity: &str) -> Result<usize> {
    let key = fold(identity);
    Ok(diesel::delete(
        tombstones::table
            .filter(tombstones::org_id.eq(org.as_str()))
            .filter(
                tombstones::user_name_folded
                    .eq(&key)
                    .or(tombstones::email_folded.eq(&key)),
            ),
    )
    .execute(conn)?)
}
