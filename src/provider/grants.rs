//! What the OpenID Provider keeps between its endpoints: authorization requests waiting for a
//! sign-in, grants (one app's sign-in through one gatehouse session), authorization codes and
//! rotating refresh tokens. Codes, refresh tokens and request ids exist in clear only in the
//! answer that carries them; the tables hold SHA-256 hashes.
//!
//! A grant lives exactly as long as its gatehouse session and its user: every code exchange,
//! refresh, userinfo and introspection reads the session and the user again, so a sign-out, an
//! admin's revoke, a SCIM deactivation or a disabled connection stops the app's tokens at once.

use diesel::prelude::*;
use serde_json::{json, Map, Value};

use crate::crypto::{random_token, sha256_hex};
use crate::db::ids::{OrgId, UserId};
use crate::db::schema::{oidc_auth_requests, oidc_codes, oidc_grants, oidc_refresh_tokens};
use crate::db::DbConn;
use crate::identity::orgs::Organization;
use crate::identity::users::User;
use crate::identity::Result;
use crate::login::session::{self, Principal, SignedIn};
use crate::provider::apps::App;

/// An authorization code works once, for this long.
pub const CODE_LIFETIME_SECS: i64 = 60;
/// A sign-in request waits this long for the browser to sign in.
pub const REQUEST_LIFETIME_SECS: i64 = 15 * 60;
/// ID and access tokens' lifetime.
pub const TOKEN_LIFETIME_SECS: i64 = 600;
/// At most this many groups go into `groups` (the first by name; `groups_truncated` says so).
pub const GROUPS_CLAIM_MAX: usize = 100;

/// The OpenID Connect `sid` of a gatehouse session: derived from the stored hash, so it
/// names the session to apps without being usable as its cookie.
pub fn sid_for(session_hash: &str) -> String {
    let digest = openssl::sha::sha256(format!("sid:{session_hash}").as_bytes());
    crate::gateway::identity::b64(&digest[..16])
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oidc_auth_requests)]
pub struct AuthRequest {
    pub id_hash: String,
    pub app_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub fresh_after: Option<i64>,
    pub stale_session_hash: Option<String>,
    pub browser_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
}

/// Stores a request that waits for a sign-in; returns its id (for the continue URL).
pub fn save_request(conn: &mut DbConn, mut request: AuthRequest) -> Result<String> {
    let id = random_token(32);
    request.id_hash = sha256_hex(&id);
    diesel::insert_into(oidc_auth_requests::table)
        .values(&request)
        .execute(conn)?;
    Ok(id)
}

/// The waiting request with this id, if it is still usable.
pub fn find_request(conn: &mut DbConn, id: &str, now: i64) -> Result<Option<AuthRequest>> {
    Ok(oidc_auth_requests::table
        .find(sha256_hex(id))
        .select(AuthRequest::as_select())
        .first(conn)
        .optional()?
        .filter(|r| r.consumed_at.is_none() && now < r.expires_at))
}

/// Marks the request used; false when another tab or replica used it first.
pub fn consume_request(conn: &mut DbConn, id_hash: &str, now: i64) -> Result<bool> {
    Ok(diesel::update(
        oidc_auth_requests::table
            .find(id_hash)
            .filter(oidc_auth_requests::consumed_at.is_null()),
    )
    .set(oidc_auth_requests::consumed_at.eq(Some(now)))
    .execute(conn)?
        == 1)
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oidc_grants)]
pub struct Grant {
    pub id: String,
    pub app_id: String,
    pub org_id: String,
    pub user_id: String,
    pub session_hash: String,
    pub sid: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub auth_method: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub ended_at: Option<i64>,
}

/// A new grant for this session's sign-in to `app`, and its authorization code.
pub fn issue_code(
    conn: &mut DbConn,
    app: &App,
    signed: &SignedIn,
    request: &AuthRequest,
    now: i64,
) -> Result<(Grant, String)> {
    let Principal::User { user, org } = &signed.principal else {
        return Err(crate::identity::IdentityError::Invalid(
            "only a user's session signs in to apps".into(),
        ));
    };
    let grant = Grant {
        id: uuid::Uuid::now_v7().to_string(),
        app_id: app.id.clone(),
        org_id: org.id.to_string(),
        user_id: user.id.to_string(),
        session_hash: signed.id_hash.clone(),
        sid: sid_for(&signed.id_hash),
        scope: request.scope.clone(),
        nonce: request.nonce.clone(),
        auth_time: signed.created_at,
        auth_method: signed.auth_method.clone(),
        created_at: now,
        revoked_at: None,
        revoked_reason: None,
        ended_at: None,
    };
    diesel::insert_into(oidc_grants::table)
        .values(&grant)
        .execute(conn)?;
    let code = random_token(32);
    diesel::insert_into(oidc_codes::table)
        .values((
            oidc_codes::code_hash.eq(sha256_hex(&code)),
            oidc_codes::grant_id.eq(&grant.id),
            oidc_codes::redirect_uri.eq(&request.redirect_uri),
            oidc_codes::code_challenge.eq(&request.code_challenge),
            oidc_codes::expires_at.eq(now + CODE_LIFETIME_SECS),
        ))
        .execute(conn)?;
    Ok((grant, code))
}

/// Why the token endpoint refuses: the RFC 6749 §5.2 error code, what the client is told, and
/// the grant concerned (for the audit).
#[derive(Debug)]
pub struct Refusal {
    pub error: &'static str,
    pub description: String,
    pub grant: Option<Grant>,
}

fn refuse(error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal {
        error,
        description: description.into(),
        grant: None,
    }
}

fn invalid_grant(description: impl Into<String>, grant: &Grant) -> Refusal {
    Refusal {
        error: "invalid_grant",
        description: description.into(),
        grant: Some(grant.clone()),
    }
}

/// A code or refresh token presented again: one of its two holders is not the app, so the whole
/// grant goes, and the client is told `told`.
fn reused(conn: &mut DbConn, grant: &Grant, reason: &str, told: &str, now: i64) -> Result<Refusal> {
    revoke(conn, &grant.id, reason, now)?;
    Ok(invalid_grant(told, grant))
}

/// Revokes a grant (and so its refresh tokens and access tokens).
pub fn revoke(conn: &mut DbConn, grant_id: &str, reason: &str, now: i64) -> Result<bool> {
    Ok(diesel::update(
        oidc_grants::table
            .find(grant_id)
            .filter(oidc_grants::revoked_at.is_null()),
    )
    .set((
        oidc_grants::revoked_at.eq(Some(now)),
        oidc_grants::revoked_reason.eq(Some(reason)),
    ))
    .execute(conn)?
        == 1)
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<Grant>> {
    Ok(oidc_grants::table
        .find(id)
        .select(Grant::as_select())
        .first(conn)
        .optional()?)
}

/// The user a grant may still act for: grant not revoked, app enabled and open to the user's
/// org, session live, user active. `touch` counts the call as the user's activity.
pub fn live(
    conn: &mut DbConn,
    grant: &Grant,
    app: &App,
    now: i64,
    touch: bool,
) -> Result<std::result::Result<(User, Organization), &'static str>> {
    if grant.revoked_at.is_some() {
        return Ok(Err("the grant was revoked"));
    }
    if !app.enabled {
        return Ok(Err("the app is disabled"));
    }
    let Some(signed) = session::load_by_hash(conn, &grant.session_hash, now, touch)? else {
        return Ok(Err(
            "the user's gatehouse session has ended (signed out, revoked, expired, or the user was deactivated)",
        ));
    };
    let Principal::User { user, org } = signed.principal else {
        return Ok(Err("the session is not a user's"));
    };
    if user.id.as_str() != grant.user_id {
        return Ok(Err("the session is not the grant's user's"));
    }
    if !app.allows_org(&org.id) {
        return Ok(Err("the app is not open to the user's org"));
    }
    Ok(Ok((*user, *org)))
}

/// What a successful exchange or refresh yields: the grant, its user, and the new refresh
/// token (in clear, for the answer only).
pub struct Issued {
    pub grant: Grant,
    pub user: User,
    pub org: Organization,
    pub refresh_token: String,
    /// The code exchange's ID token carries the request's nonce; a refresh's does not.
    pub first: bool,
}

fn new_refresh_token(conn: &mut DbConn, grant: &Grant, now: i64) -> Result<String> {
    let token = random_token(32);
    // It dies with the session at the latest; the session's own end is checked at every use.
    let expires = session_expiry(conn, &grant.session_hash)?.unwrap_or(now);
    diesel::insert_into(oidc_refresh_tokens::table)
        .values((
            oidc_refresh_tokens::token_hash.eq(sha256_hex(&token)),
            oidc_refresh_tokens::grant_id.eq(&grant.id),
            oidc_refresh_tokens::created_at.eq(now),
            oidc_refresh_tokens::expires_at.eq(expires),
        ))
        .execute(conn)?;
    Ok(token)
}

fn session_expiry(conn: &mut DbConn, hash: &str) -> Result<Option<i64>> {
    use crate::db::schema::sessions;
    Ok(sessions::table
        .find(hash)
        .select(sessions::expires_at)
        .first(conn)
        .optional()?)
}

/// `grant_type=authorization_code`: single use, bound to the client, the redirect URI and
/// the PKCE verifier. A second use revokes what the first one issued.
pub fn redeem_code(
    conn: &mut DbConn,
    app: &App,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
    now: i64,
) -> Result<std::result::Result<Issued, Refusal>> {
    /// (redirect URI, code challenge, expiry, used at, grant)
    type CodeRow = (String, Option<String>, i64, Option<i64>, Grant);
    let found: Option<CodeRow> = oidc_codes::table
        .inner_join(oidc_grants::table)
        .filter(oidc_codes::code_hash.eq(sha256_hex(code)))
        .select((
            oidc_codes::redirect_uri,
            oidc_codes::code_challenge,
            oidc_codes::expires_at,
            oidc_codes::used_at,
            Grant::as_select(),
        ))
        .first(conn)
        .optional()?;
    let Some((bound_uri, challenge, expires_at, used_at, grant)) = found else {
        return Ok(Err(refuse("invalid_grant", "unknown authorization code")));
    };
    if grant.app_id != app.id {
        return Ok(Err(invalid_grant(
            "the code was issued to another client",
            &grant,
        )));
    }
    if used_at.is_some() {
        return Ok(Err(reused(
            conn,
            &grant,
            "authorization code used twice",
            "the code was already used; the tokens it gave are revoked",
            now,
        )?));
    }
    if now >= expires_at {
        return Ok(Err(invalid_grant("the code has expired", &grant)));
    }
    if redirect_uri != Some(bound_uri.as_str()) || !app.accepts_redirect(&bound_uri) {
        return Ok(Err(invalid_grant(
            "redirect_uri is not the one of the authorization request",
            &grant,
        )));
    }
    match (challenge.as_deref(), verifier) {
        (Some(c), Some(v)) if pkce_matches(c, v) => {}
        (Some(_), Some(_)) => {
            return Ok(Err(invalid_grant(
                "code_verifier does not match the code_challenge",
                &grant,
            )))
        }
        (Some(_), None) => {
            return Ok(Err(invalid_grant("code_verifier is missing", &grant)));
        }
        (None, Some(_)) => {
            return Ok(Err(invalid_grant(
                "code_verifier given, but the authorization request had no code_challenge",
                &grant,
            )))
        }
        (None, None) => {}
    }
    // Claim the code: one of two concurrent exchanges (on any replica) wins.
    let claimed = diesel::update(
        oidc_codes::table
            .find(sha256_hex(code))
            .filter(oidc_codes::used_at.is_null()),
    )
    .set(oidc_codes::used_at.eq(Some(now)))
    .execute(conn)?;
    if claimed != 1 {
        return Ok(Err(reused(
            conn,
            &grant,
            "authorization code used twice",
            "the code was already used",
            now,
        )?));
    }
    let (user, org) = match live(conn, &grant, app, now, false)? {
        Ok(v) => v,
        Err(why) => return Ok(Err(invalid_grant(why, &grant))),
    };
    let refresh_token = new_refresh_token(conn, &grant, now)?;
    Ok(Ok(Issued {
        grant,
        user,
        org,
        refresh_token,
        first: true,
    }))
}

/// PKCE S256: BASE64URL(SHA256(verifier)) = challenge, with a verifier of RFC 7636's shape.
pub fn pkce_matches(challenge: &str, verifier: &str) -> bool {
    if !valid_pkce_value(verifier) {
        return false;
    }
    let digest = openssl::sha::sha256(verifier.as_bytes());
    let computed = crate::gateway::identity::b64(&digest);
    crate::login::csrf::tokens_equal(&computed, challenge)
}

/// 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1, §4.2).
pub fn valid_pkce_value(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `grant_type=refresh_token`: rotated at every use; a used token presented again revokes the
/// whole grant (its family), since one of the two holders is not the app.
/// `scope`, when given, may narrow the grant's scope but not widen it; a refusal leaves the
/// token as it was (RFC 6749 §5.2: the client may retry with it).
pub fn refresh(
    conn: &mut DbConn,
    app: &App,
    token: &str,
    scope: Option<&str>,
    now: i64,
) -> Result<std::result::Result<Issued, Refusal>> {
    let hash = sha256_hex(token);
    let Some((expires_at, used_at, grant)) = refresh_row(conn, &hash)? else {
        return Ok(Err(refuse("invalid_grant", "unknown refresh token")));
    };
    if grant.app_id != app.id {
        return Ok(Err(invalid_grant(
            "the refresh token was issued to another client",
            &grant,
        )));
    }
    if used_at.is_some() {
        return Ok(Err(reused(
            conn,
            &grant,
            "a used refresh token was presented again",
            "the refresh token was already used; every token of this sign-in is revoked",
            now,
        )?));
    }
    if now >= expires_at {
        return Ok(Err(invalid_grant("the refresh token has expired", &grant)));
    }
    if scope.is_some_and(|s| !within(s, &grant.scope)) {
        return Ok(Err(Refusal {
            error: "invalid_scope",
            description: "a refresh cannot widen the granted scope".into(),
            grant: Some(grant),
        }));
    }
    let (user, org) = match live(conn, &grant, app, now, true)? {
        Ok(v) => v,
        Err(why) => return Ok(Err(invalid_grant(why, &grant))),
    };
    let claimed = diesel::update(
        oidc_refresh_tokens::table
            .find(&hash)
            .filter(oidc_refresh_tokens::used_at.is_null()),
    )
    .set(oidc_refresh_tokens::used_at.eq(Some(now)))
    .execute(conn)?;
    if claimed != 1 {
        return Ok(Err(reused(
            conn,
            &grant,
            "a used refresh token was presented again",
            "the refresh token was already used",
            now,
        )?));
    }
    let refresh_token = new_refresh_token(conn, &grant, now)?;
    Ok(Ok(Issued {
        grant,
        user,
        org,
        refresh_token,
        first: false,
    }))
}

/// Whether every scope in `asked` is in `granted`.
fn within(asked: &str, granted: &str) -> bool {
    let granted: Vec<&str> = granted.split(' ').collect();
    asked
        .split(' ')
        .filter(|s| !s.is_empty())
        .all(|s| granted.contains(&s))
}

/// The grant a refresh token belongs to (for revocation and introspection), with whether the
/// token itself is still usable.
pub fn by_refresh_token(conn: &mut DbConn, token: &str, now: i64) -> Result<Option<(Grant, bool)>> {
    Ok(refresh_row(conn, &sha256_hex(token))?
        .map(|(exp, used, g)| (g, used.is_none() && now < exp)))
}

/// A refresh token by its hash: (expiry, used at, grant).
fn refresh_row(conn: &mut DbConn, hash: &str) -> Result<Option<(i64, Option<i64>, Grant)>> {
    Ok(oidc_refresh_tokens::table
        .inner_join(oidc_grants::table)
        .filter(oidc_refresh_tokens::token_hash.eq(hash))
        .select((
            oidc_refresh_tokens::expires_at,
            oidc_refresh_tokens::used_at,
            Grant::as_select(),
        ))
        .first(conn)
        .optional()?)
}

/// The claims gatehouse says about a user (ID token and userinfo alike).
///
/// `email` (with `email_verified: true`) only for the `email` scope and only when the address
/// is inside the org's verified domains: an app that matches accounts by e-mail (most do, and
/// many ignore `email_verified`) must never be handed another org's address. Names and
/// `preferred_username` only for `profile`, the latter left out when it looks like an
/// unverified e-mail address. `org`, `org_id`, `role` and `groups` always.
pub fn user_claims(
    conn: &mut DbConn,
    user: &User,
    org: &Organization,
    scope: &str,
) -> Result<Map<String, Value>> {
    let scopes: Vec<&str> = scope.split(' ').collect();
    let (mut groups, role, email_verified) = crate::sso::resolve::app_view(conn, user, org)?;
    let name = user.display_name.clone().or_else(|| {
        match (user.given_name.as_deref(), user.family_name.as_deref()) {
            (Some(g), Some(f)) => Some(format!("{g} {f}")),
            (Some(n), None) | (None, Some(n)) => Some(n.to_string()),
            (None, None) => None,
        }
    });
    groups.sort();
    let truncated = groups.len() > GROUPS_CLAIM_MAX;
    groups.truncate(GROUPS_CLAIM_MAX);
    let mut m = Map::new();
    m.insert("sub".into(), json!(user.id.to_string()));
    let verified_email = user.email.as_deref().filter(|_| email_verified);
    if scopes.contains(&"email") {
        if let Some(email) = verified_email {
            m.insert("email".into(), json!(email));
            m.insert("email_verified".into(), json!(true));
        }
    }
    if scopes.contains(&"profile") {
        if let Some(n) = name {
            m.insert("name".into(), json!(n));
        }
        if let Some(g) = &user.given_name {
            m.insert("given_name".into(), json!(g));
        }
        if let Some(f) = &user.family_name {
            m.insert("family_name".into(), json!(f));
        }
        if username_shown(user, verified_email) {
            m.insert("preferred_username".into(), json!(user.user_name));
        }
    }
    m.insert("org".into(), json!(org.slug));
    m.insert("org_id".into(), json!(org.id.to_string()));
    m.insert("role".into(), json!(role));
    m.insert("groups".into(), json!(groups));
    if truncated {
        m.insert("groups_truncated".into(), json!(true));
    }
    Ok(m)
}

/// Whether the user name may be shown as the user's: not when it looks like an e-mail address
/// other than the verified one (it could name another org's account).
fn username_shown(user: &User, verified_email: Option<&str>) -> bool {
    !user.user_name.contains('@')
        || verified_email.is_some_and(|e| e.eq_ignore_ascii_case(&user.user_name))
}

/// The user name as introspection says it (`username`), under the same rule as
/// `preferred_username`.
pub fn safe_username(conn: &mut DbConn, user: &User) -> Result<Option<String>> {
    let verified = crate::identity::users::email_verified(conn, user)?;
    let email = user.email.as_deref().filter(|_| verified);
    Ok(username_shown(user, email).then(|| user.user_name.clone()))
}

/// RFC 8176 `amr` values for a gatehouse sign-in method.
pub fn amr(auth_method: &str) -> Vec<&'static str> {
    match auth_method {
        "password" => vec!["pwd"],
        "breakglass" => vec!["pwd", "otp", "mfa"],
        // Federated: the customer's IdP authenticated the user.
        _ => vec!["ext"],
    }
}

/// A grant with its user's name and org slug (`None` once deleted), and whether its session
/// is still live right now (the sweep marks `ended_at` within a second or so).
pub type RecentSignIn = (Grant, Option<String>, Option<String>, bool);

/// Grants of `app`, newest first (its recent sign-ins).
pub fn recent(conn: &mut DbConn, app_id: &str, limit: i64, now: i64) -> Result<Vec<RecentSignIn>> {
    use crate::db::schema::{organizations as o, users as u};
    let rows: Vec<(Grant, Option<String>, Option<String>)> = oidc_grants::table
        .left_join(u::table.on(u::id.eq(oidc_grants::user_id)))
        .left_join(o::table.on(o::id.eq(oidc_grants::org_id)))
        .filter(oidc_grants::app_id.eq(app_id))
        .order(oidc_grants::created_at.desc())
        .limit(limit)
        .select((
            Grant::as_select(),
            u::user_name.nullable(),
            o::slug.nullable(),
        ))
        .load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for (g, user, org) in rows {
        let live = g.ended_at.is_none()
            && session::load_by_hash(conn, &g.session_hash, now, false)?.is_some();
        out.push((g, user, org, live));
    }
    Ok(out)
}

/// The org and user of a grant, typed.
pub fn owner(grant: &Grant) -> (OrgId, UserId) {
    (
        OrgId::from(grant.org_id.clone()),
        UserId::from(grant.user_id.clone()),
    )
}

/// Deletes up to `batch` rows of each kind nothing can use any more (`old`: an hour ago, so
/// "expired" and "already used" answers stay exact for late callers): waiting requests and
/// codes past their expiry; grants an hour after their session ended (with their codes and
/// refresh tokens; a revoked grant is kept until then, so the app still gets its
/// back-channel logout and a reused refresh token is still recognised), and grants whose code
/// expired unredeemed (the app never had a token); back-channel deliveries done or given up.
/// Returns how many rows went, and whether some kind filled its batch (call again).
pub fn purge(conn: &mut DbConn, old: i64, batch: i64) -> diesel::QueryResult<(usize, bool)> {
    use crate::db::schema::oidc_logouts;
    let mut full = false;
    let mut note = |n: usize| {
        full |= n as i64 >= batch;
        n
    };
    let ids: Vec<String> = oidc_auth_requests::table
        .filter(oidc_auth_requests::expires_at.lt(old))
        .select(oidc_auth_requests::id_hash)
        .limit(batch)
        .load(conn)?;
    note(ids.len());
    let mut n =
        diesel::delete(oidc_auth_requests::table.filter(oidc_auth_requests::id_hash.eq_any(&ids)))
            .execute(conn)?;
    let ids: Vec<String> = oidc_codes::table
        .filter(oidc_codes::expires_at.lt(old))
        .select(oidc_codes::code_hash)
        .limit(batch)
        .load(conn)?;
    note(ids.len());
    n += diesel::delete(oidc_codes::table.filter(oidc_codes::code_hash.eq_any(&ids)))
        .execute(conn)?;
    let never_redeemed = diesel::dsl::not(diesel::dsl::exists(
        oidc_refresh_tokens::table.filter(oidc_refresh_tokens::grant_id.eq(oidc_grants::id)),
    ));
    let ids: Vec<String> = oidc_grants::table
        .filter(
            oidc_grants::ended_at.lt(old).or(oidc_grants::created_at
                .lt(old - CODE_LIFETIME_SECS)
                .and(never_redeemed)),
        )
        .select(oidc_grants::id)
        .limit(batch)
        .load(conn)?;
    note(ids.len());
    n += diesel::delete(
        oidc_refresh_tokens::table.filter(oidc_refresh_tokens::grant_id.eq_any(&ids)),
    )
    .execute(conn)?;
    n += diesel::delete(oidc_codes::table.filter(oidc_codes::grant_id.eq_any(&ids)))
        .execute(conn)?;
    n += diesel::delete(oidc_grants::table.filter(oidc_grants::id.eq_any(&ids))).execute(conn)?;
    let ids: Vec<String> = oidc_logouts::table
        .filter(
            oidc_logouts::sent_at
                .lt(old)
                .or(oidc_logouts::gave_up_at.lt(old)),
        )
        .select(oidc_logouts::id)
        .limit(batch)
        .load(conn)?;
    note(ids.len());
    n += diesel::delete(oidc_logouts::table.filter(oidc_logouts::id.eq_any(&ids))).execute(conn)?;
    Ok((n, full))
}

/// Whether `sid` names a sign-in through this session (a grant keeps its `sid` when the same
/// user signs in again and the grant moves to the new session).
pub fn sid_of_session(conn: &mut DbConn, session_hash: &str, sid: &str) -> Result<bool> {
    if sid_for(session_hash) == sid {
        return Ok(true);
    }
    let n: i64 = oidc_grants::table
        .filter(oidc_grants::session_hash.eq(session_hash))
        .filter(oidc_grants::sid.eq(sid))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// What an app's waiting request asks of the customer's IdP when it wanted a new sign-in
/// (`prompt=login`, `max_age`).
#[derive(Debug, Clone, Copy)]
pub struct Fresh {
    /// The IdP's authentication must be this recent (Unix seconds).
    pub not_before: i64,
    /// The `max_age` to pass on (0: authenticate again now).
    pub max_age: i64,
}

/// [`fresh_sign_in_for`] off the async workers; no database trip unless `return_to` is an
/// app's continue URL.
pub async fn fresh_for(
    db: &crate::db::Db,
    return_to: Option<String>,
    now: i64,
) -> std::result::Result<Option<Fresh>, crate::http::errors::AppError> {
    if !return_to
        .as_deref()
        .is_some_and(|r| r.starts_with("/sso/oauth2/continue/"))
    {
        return Ok(None);
    }
    db.run(move |conn| {
        fresh_sign_in_for(conn, return_to.as_deref(), now)
            .map_err(crate::http::errors::AppError::from)
    })
    .await
}

/// The [`Fresh`] demand of the waiting request a sign-in returns to, if any.
pub fn fresh_sign_in_for(
    conn: &mut DbConn,
    return_to: Option<&str>,
    now: i64,
) -> Result<Option<Fresh>> {
    let Some(id) = return_to.and_then(|r| r.strip_prefix("/sso/oauth2/continue/")) else {
        return Ok(None);
    };
    Ok(find_request(conn, id, now)?.and_then(|r| {
        r.fresh_after.map(|after| Fresh {
            not_before: after,
            max_age: (r.created_at - after).max(0),
        })
    }))
}
