//! Deep pages of `GET /Users` without walking the index from the start. An org's "anchors"
//! are the (created_at, id) keys at positions 0, 1,000, 2,000, … of the default order, found
//! the first time a page needs them (each step walks 1,000 index entries, no more than the
//! OFFSET it replaces) and remembered in memory with the org's `generation`
//! (`scim_user_counts`). The count triggers move the generation whenever a user is removed or
//! inserted anywhere but at the end, which is when remembered positions could move; a page
//! whose generation differs starts again. A page at offset `n` then seeks to the anchor at or
//! before `n` and skips fewer than 1,000 entries.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use parking_lot::Mutex;

use super::query::{self, Bind, Sql};
use crate::db::ids::OrgId;
use crate::db::DbConn;

/// Positions between anchors.
pub const STEP: i64 = 1000;

#[derive(QueryableByName, Clone)]
struct Key {
    #[diesel(sql_type = BigInt)]
    created_at: i64,
    #[diesel(sql_type = Text)]
    id: String,
}

#[derive(Default)]
struct Anchors {
    generation: i64,
    keys: Vec<Key>,
}

type Cache = Mutex<HashMap<String, Arc<Mutex<Anchors>>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The key `skip` entries after `from` (or the first key), in the default order.
fn step(
    conn: &mut DbConn,
    org: &OrgId,
    from: Option<&Key>,
    skip: i64,
) -> Result<Option<Key>, diesel::result::Error> {
    let mut q = Sql::default();
    q.push("SELECT u.created_at, u.id FROM users u WHERE ")
        .append(query::visible_users(org));
    if let Some(k) = from {
        q.push(" AND (u.created_at, u.id) >= (")
            .bind(Bind::Int(k.created_at))
            .push(", ")
            .bind(Bind::Text(k.id.clone()))
            .push(")");
    }
    q.push(" ORDER BY u.created_at, u.id LIMIT 1 OFFSET ")
        .bind(Bind::Int(skip));
    Ok(query::load::<Key>(conn, q)?.pop())
}

/// For a page at `offset` (default order, ascending) of an org whose users have
/// `generation`: a condition that starts at the nearest anchor at or before `offset`, and the
/// offset left from there. `None` when no anchor helps (a shallow page, or past the end).
pub fn seek(
    conn: &mut DbConn,
    org: &OrgId,
    generation: i64,
    offset: i64,
) -> Result<Option<(Sql, i64)>, diesel::result::Error> {
    if offset < STEP {
        return Ok(None);
    }
    let entry = cache().lock().entry(org.to_string()).or_default().clone();
    // One reader of an org finds its anchors; others wait for them rather than walk too.
    let mut anchors = entry.lock();
    if anchors.generation != generation {
        *anchors = Anchors {
            generation,
            keys: Vec::new(),
        };
    }
    let want = usize::try_from(offset / STEP).unwrap_or(usize::MAX);
    while anchors.keys.len() <= want {
        let next = match anchors.keys.last() {
            None => step(conn, org, None, 0)?,
            Some(last) => step(conn, org, Some(last), STEP)?,
        };
        match next {
            Some(k) => anchors.keys.push(k),
            None => break,
        }
    }
    let Some(index) = anchors.keys.len().checked_sub(1).map(|last| last.min(want)) else {
        return Ok(None);
    };
    let key = anchors.keys[index].clone();
    let mut cond = Sql::default();
    cond.push(" AND (u.created_at, u.id) >= (")
        .bind(Bind::Int(key.created_at))
        .push(", ")
        .bind(Bind::Text(key.id))
        .push(")");
    Ok(Some((cond, offset - index as i64 * STEP)))
}
