//! Forms that create something (a connection, a SCIM token, break-glass credentials) are done
//! once: each rendering of the page carries a fresh random form id, and the POST records it
//! with where it led, in the same transaction as the change. A second submit of the same form
//! (a double click, the back button and submit again, a reload of the POST) goes where the
//! first went instead of creating a second connection or minting another secret.

use diesel::prelude::*;
use sha2::{Digest, Sha256};

use crate::db::schema::admin_form_submissions;
use crate::db::DbConn;
use crate::identity::Result;

/// How long a form id is remembered (a page left open longer is submitted as new).
pub const KEEP_SECS: i64 = 86_400;

/// A fresh form id for a page.
pub fn new_form_id() -> String {
    crate::crypto::random_token(18)
}

/// The stored key: the form id with the form's action path, so two forms of one page differ.
fn key(form_id: &str, action: &str) -> String {
    hex::encode(Sha256::digest(format!("{form_id}\n{action}").as_bytes()))
}

/// Where the earlier submit of this form (by this session) led, if it was submitted.
pub fn earlier(
    conn: &mut DbConn,
    form_id: &str,
    action: &str,
    session_hash: &str,
) -> Result<Option<String>> {
    if form_id.is_empty() {
        return Ok(None);
    }
    Ok(admin_form_submissions::table
        .find(key(form_id, action))
        .filter(admin_form_submissions::session_hash.eq(session_hash))
        .select(admin_form_submissions::result)
        .first(conn)
        .optional()?)
}

/// Remembers that this form led to `result` (inside the change's transaction). A concurrent
/// second submit loses on the primary key and is told the form was already sent.
pub fn remember(
    conn: &mut DbConn,
    form_id: &str,
    action: &str,
    session_hash: &str,
    result: &str,
    now: i64,
) -> Result<()> {
    if form_id.is_empty() {
        return Ok(());
    }
    diesel::insert_into(admin_form_submissions::table)
        .values((
            admin_form_submissions::form_id.eq(key(form_id, action)),
            admin_form_submissions::session_hash.eq(session_hash),
            admin_form_submissions::result.eq(result),
            admin_form_submissions::created_at.eq(now),
        ))
        .execute(conn)
        .map_err(|e| {
            crate::identity::conflict_on_unique(e, || {
                "this form was already sent (submitted twice): nothing was done a second time"
                    .to_string()
            })
        })?;
    Ok(())
}

/// Forgets form ids older than `KEEP_SECS` (the periodic purge).
pub fn purge(conn: &mut DbConn, now: i64) -> QueryResult<usize> {
    diesel::delete(
        admin_form_submissions::table
            .filter(admin_form_submissions::created_at.lt(now - KEEP_SECS)),
    )
    .execute(conn)
}
