//! SCIM bearer tokens: shown once, stored as SHA-256, several live at once, revocable. A token
//! resolves exactly one org.

use diesel::prelude::*;
use serde::Serialize;

use super::{IdentityError, Result};
use crate::crypto::{random_token, sha256_hex};
use crate::db::ids::{OrgId, ScimTokenId};
use crate::db::schema::scim_tokens;
use crate::db::DbConn;

const TOKEN_PREFIX: &str = "ghs_";
/// How many characters of the token are kept in clear to tell tokens apart in lists.
const SHOWN_PREFIX_LEN: usize = 10;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = scim_tokens)]
pub struct ScimToken {
    #[diesel(deserialize_as = String)]
    pub id: ScimTokenId,
    #[diesel(deserialize_as = String)]
    pub org_id: OrgId,
    pub prefix: String,
    #[serde(skip)]
    pub token_hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Insertable)]
#[diesel(table_name = scim_tokens)]
struct NewToken<'a> {
    id: &'a str,
    org_id: &'a str,
    prefix: &'a str,
    token_hash: String,
    created_at: i64,
}

/// A freshly issued token: the only moment its clear text exists.
pub struct IssuedToken {
    pub id: ScimTokenId,
    pub token: String,
    pub revoked_others: usize,
}

pub fn issue(conn: &mut DbConn, org: &OrgId, revoke_others: bool, now: i64) -> Result<IssuedToken> {
    let revoked_others = if revoke_others {
        forget_cached();
        diesel::update(
            scim_tokens::table
                .filter(scim_tokens::org_id.eq(org.as_str()))
                .filter(scim_tokens::revoked_at.is_null()),
        )
        .set(scim_tokens::revoked_at.eq(Some(now)))
        .execute(conn)?
    } else {
        0
    };
    let token = format!("{TOKEN_PREFIX}{}", random_token(32));
    let id = ScimTokenId::new();
    diesel::insert_into(scim_tokens::table)
        .values(&NewToken {
            id: id.as_str(),
            org_id: org.as_str(),
            prefix: &token[..SHOWN_PREFIX_LEN],
            token_hash: sha256_hex(&token),
            created_at: now,
        })
        .execute(conn)?;
    Ok(IssuedToken {
        id,
        token,
        revoked_others,
    })
}

pub fn list(conn: &mut DbConn, org: &OrgId) -> Result<Vec<ScimToken>> {
    Ok(scim_tokens::table
        .filter(scim_tokens::org_id.eq(org.as_str()))
        .order(scim_tokens::created_at.desc())
        .select(ScimToken::as_select())
        .load(conn)?)
}

pub fn revoke(conn: &mut DbConn, org: &OrgId, id: &str, now: i64) -> Result<()> {
    forget_cached();
    let n = diesel::update(
        scim_tokens::table
            .filter(scim_tokens::org_id.eq(org.as_str()))
            .filter(scim_tokens::id.eq(id))
            .filter(scim_tokens::revoked_at.is_null()),
    )
    .set(scim_tokens::revoked_at.eq(Some(now)))
    .execute(conn)?;
    if n == 0 {
        return Err(IdentityError::NotFound(format!(
            "no live SCIM token {id} in this org"
        )));
    }
    Ok(())
}

/// The live token a bearer secret belongs to, if any (a read: recording its use is
/// [`touch`], which callers send through the database writer when [`due_for_touch`] says so).
pub fn authenticate(conn: &mut DbConn, token: &str) -> Result<Option<ScimToken>> {
    Ok(scim_tokens::table
        .filter(scim_tokens::token_hash.eq(sha256_hex(token)))
        .filter(scim_tokens::revoked_at.is_null())
        .select(ScimToken::as_select())
        .first(conn)
        .optional()?)
}

/// `last_used_at` is written at most once a minute.
pub fn due_for_touch(t: &ScimToken, now: i64) -> bool {
    t.last_used_at.map(|at| now - at >= 60).unwrap_or(true)
}

/// Records that the token was used at `now`.
pub fn touch(conn: &mut DbConn, id: &str, now: i64) -> Result<()> {
    diesel::update(scim_tokens::table.find(id))
        .set(scim_tokens::last_used_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}

/// Live tokens seen in the last second, by hash: a SCIM burst authenticates without a
/// database round trip per request. A revocation in this process empties it at once; one made
/// by another process (the CLI, another replica) takes effect within [`CACHE_TTL`].
pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

type Cached = (ScimToken, std::time::Instant);
static CACHE: std::sync::OnceLock<parking_lot::Mutex<std::collections::HashMap<String, Cached>>> =
    std::sync::OnceLock::new();

fn cache() -> &'static parking_lot::Mutex<std::collections::HashMap<String, Cached>> {
    CACHE.get_or_init(Default::default)
}

/// Empties the cache (after any revocation).
pub fn forget_cached() {
    cache().lock().clear();
}

/// The cached live token for `token`, if it was confirmed within the last second.
pub fn cached(token: &str) -> Option<ScimToken> {
    let hash = sha256_hex(token);
    let mut map = cache().lock();
    match map.get(&hash) {
        Some((t, at)) if at.elapsed() < CACHE_TTL => Some(t.clone()),
        Some(_) => {
            map.remove(&hash);
            None
        }
        None => None,
    }
}

/// Remembers a token the database just confirmed live. Bounded: a flood of distinct tokens
/// cannot grow it (only live ones get in, and it is emptied when full).
pub fn remember(token: &str, found: &ScimToken) {
    let mut map = cache().lock();
    if map.len() >= 1024 {
        map.clear();
    }
    map.insert(
        sha256_hex(token),
        (found.clone(), std::time::Instant::now()),
    );
}
