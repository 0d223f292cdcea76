//! Server-side sessions. The cookie holds only a random 256-bit id; the table holds its
//! SHA-256. A new id at every sign-in (no fixation); idle and absolute expiry per org;
//! `last_seen_at` written at most once a minute; revocation and deactivation take effect on
//! the next request on every replica, because every request reads the row and the user.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{web, FromRequest, HttpRequest};
use diesel::prelude::*;

use crate::config::Settings;
use crate::crypto::{random_token, sha256_hex};
use crate::db::ids::{AdminId, OrgId, UserId};
use crate::db::schema::sessions;
use crate::db::DbConn;
use crate::http::errors::AppError;
use crate::identity::admins::{self, InstanceAdmin};
use crate::identity::orgs::{self, Organization};
use crate::identity::users::{self, User};
use crate::identity::IdentityError;
use crate::startup::AppState;

/// Instance admins' sessions: 30 minutes idle, 12 hours at most.
const ADMIN_IDLE_SECS: i64 = 30 * 60;
const ADMIN_MAX_SECS: i64 = 12 * 3600;
const TOUCH_EVERY_SECS: i64 = 60;

pub fn cookie_name(settings: &Settings) -> &'static str {
    match (settings.is_https(), settings.cookie_domain.is_some()) {
        // `__Host-` forbids a Domain attribute; `__Secure-` still demands Secure.
        (true, true) => "__Secure-gatehouse_session",
        (true, false) => "__Host-gatehouse_session",
        (false, _) => "gatehouse_session",
    }
}

/// The session cookie, for `cookie_domain` too when set (apps on sibling hosts behind
/// forward-auth then see it).
pub fn session_cookie(settings: &Settings, value: String) -> Cookie<'static> {
    let mut c = build_cookie(settings, cookie_name(settings), value).into_owned();
    if let Some(d) = &settings.cookie_domain {
        c.set_domain(d.clone());
    }
    c
}

/// Removes the session cookie (with the same attributes it was set with).
pub fn session_removal(settings: &Settings) -> Cookie<'static> {
    let mut c = session_cookie(settings, String::new());
    c.make_removal();
    c
}

/// `__Host-` cookies need Secure, Path=/ and no Domain: decided by the public URL only.
pub fn build_cookie<'c>(settings: &Settings, name: &'c str, value: String) -> Cookie<'c> {
    Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.is_https())
        .finish()
}

pub fn removal_cookie<'c>(settings: &Settings, name: &'c str) -> Cookie<'c> {
    let mut c = build_cookie(settings, name, String::new());
    c.make_removal();
    c
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = sessions)]
struct SessionRow {
    id_hash: String,
    org_id: Option<String>,
    user_id: Option<String>,
    admin_id: Option<String>,
    auth_method: String,
    csrf_token: String,
    created_at: i64,
    last_seen_at: i64,
    idle_timeout_secs: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    setup_link_id: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = sessions)]
struct NewSession<'a> {
    id_hash: String,
    org_id: Option<&'a str>,
    user_id: Option<&'a str>,
    admin_id: Option<&'a str>,
    auth_method: &'a str,
    csrf_token: String,
    created_at: i64,
    last_seen_at: i64,
    idle_timeout_secs: i64,
    expires_at: i64,
    connection_id: Option<&'a str>,
    setup_link_id: Option<&'a str>,
}

/// Who a session is for.
#[derive(Debug, Clone)]
pub enum Subject<'a> {
    User(&'a User, &'a Organization),
    Admin(&'a InstanceAdmin),
    /// A customer's IT admin through a setup link (scoped to its org and intents).
    Setup(
        &'a crate::identity::setup_links::SetupLink,
        &'a Organization,
    ),
}

/// Creates a session and returns the cookie value (the only place the clear id exists).
/// `replaces` is the id hash of the browser's previous session, revoked here; `connection` is
/// the SSO connection whose sign-in this is (disabling or deleting it ends the session).
pub fn create(
    conn: &mut DbConn,
    subject: Subject<'_>,
    auth_method: &str,
    connection: Option<&str>,
    replaces: Option<&str>,
    now: i64,
) -> Result<String, IdentityError> {
    let old_was_live = match replaces {
        Some(old) => load_row(conn, old, now, false)?.is_some(),
        None => false,
    };
    if let Some(old) = replaces {
        diesel::update(sessions::table.find(old))
            .set(sessions::revoked_at.eq(Some(now)))
            .execute(conn)?;
    }
    let id = random_token(32);
    let mut setup_link_id = None;
    let (org_id, user_id, admin_id, idle, max) = match subject {
        Subject::User(u, org) => (
            Some(org.id.as_str()),
            Some(u.id.as_str()),
            None,
            i64::from(org.session_idle_minutes) * 60,
            i64::from(org.session_max_minutes) * 60,
        ),
        Subject::Admin(a) => (
            None,
            None,
            Some(a.id.as_str()),
            ADMIN_IDLE_SECS,
            ADMIN_MAX_SECS,
        ),
        // As an instance admin's, and never past the link's own end.
        Subject::Setup(link, org) => {
            setup_link_id = Some(link.id.as_str());
            (
                Some(org.id.as_str()),
                None,
                None,
                ADMIN_IDLE_SECS,
                ADMIN_MAX_SECS.min(link.expires_at - now).max(0),
            )
        }
    };
    let id_hash = sha256_hex(&id);
    // The same user signing in again in this browser (an app's prompt=login, a new tab): the
    // apps signed in through the old session stay signed in, now through this one.
    // Only from a session still live (one just revoked or deactivated passes nothing on).
    if let (Some(old), Some(user)) = (replaces.filter(|_| old_was_live), user_id) {
        use crate::db::schema::oidc_grants;
        diesel::update(
            oidc_grants::table
                .filter(oidc_grants::session_hash.eq(old))
                .filter(oidc_grants::user_id.eq(user))
                .filter(oidc_grants::ended_at.is_null()),
        )
        .set(oidc_grants::session_hash.eq(&id_hash))
        .execute(conn)?;
    }
    diesel::insert_into(sessions::table)
        .values(&NewSession {
            id_hash,
            org_id,
            user_id,
            admin_id,
            auth_method,
            csrf_token: random_token(32),
            created_at: now,
            last_seen_at: now,
            idle_timeout_secs: idle,
            expires_at: now + max,
            connection_id: connection,
            setup_link_id,
        })
        .execute(conn)?;
    Ok(id)
}

/// The signed-in principal of a live session.
#[derive(Debug, Clone)]
pub enum Principal {
    User {
        user: Box<User>,
        org: Box<Organization>,
    },
    Admin(Box<InstanceAdmin>),
    /// Through a setup link: an org's setup, for the link's intents only.
    Setup {
        link: Box<crate::identity::setup_links::SetupLink>,
        org: Box<Organization>,
    },
}

#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id_hash: String,
    pub csrf_token: String,
    pub auth_method: String,
    /// When this session's sign-in happened.
    pub created_at: i64,
    pub principal: Principal,
}

/// Loads and checks a session by its cookie value; `None` when absent, revoked, expired,
/// idle too long, or its user is deactivated or gone.
pub fn load(
    conn: &mut DbConn,
    cookie_value: &str,
    now: i64,
) -> Result<Option<SignedIn>, IdentityError> {
    load_hash(conn, &sha256_hex(cookie_value), now)
}

/// Whether this signed-in principal administers `org`: an instance admin, an org admin of
/// that org, or that org's break-glass account signed in as one (its reason to exist is to
/// relax enforcement or fix a connection while the IdP is down; its changes are audited as
/// warnings).
pub fn administers(signed: &SignedIn, org: &OrgId) -> bool {
    match &signed.principal {
        Principal::Admin(_) => true,
        Principal::User { user, .. } => {
            &user.org_id == org && (user.is_org_admin || is_break_glass_session(signed))
        }
        // Its intents are checked page by page (`admin::setup_scope`).
        Principal::Setup { org: o, .. } => &o.id == org,
    }
}

/// A session started at `/sso/breakglass` by a (still) break-glass account.
pub fn is_break_glass_session(signed: &SignedIn) -> bool {
    matches!(&signed.principal, Principal::User { user, .. } if user.is_break_glass)
        && signed.auth_method == "breakglass"
}

/// Whether the session with this id hash is live and administers `org` (a test sign-in is
/// bound to the admin session that started it).
pub fn hash_administers(
    conn: &mut DbConn,
    id_hash: &str,
    org: &OrgId,
    now: i64,
) -> Result<bool, IdentityError> {
    Ok(load_hash(conn, id_hash, now)?.is_some_and(|s| administers(&s, org)))
}

/// The session with this id hash while it is still live (not revoked, expired or idle, its
/// user active), without counting as activity: a relayed WebSocket checks it every second, and
/// an open socket must not keep an idle session alive.
pub fn peek(conn: &mut DbConn, id_hash: &str, now: i64) -> Result<Option<SignedIn>, IdentityError> {
    load_row(conn, id_hash, now, false)
}

/// The live session with this id hash; `touch` counts it as activity (an app refreshing its
/// tokens for the user is activity; a userinfo call or a sweep is not).
pub fn load_by_hash(
    conn: &mut DbConn,
    id_hash: &str,
    now: i64,
    touch: bool,
) -> Result<Option<SignedIn>, IdentityError> {
    load_row(conn, id_hash, now, touch)
}

/// [`load`] by the stored id hash.
fn load_hash(conn: &mut DbConn, hash: &str, now: i64) -> Result<Option<SignedIn>, IdentityError> {
    load_row(conn, hash, now, true)
}

fn load_row(
    conn: &mut DbConn,
    hash: &str,
    now: i64,
    touch: bool,
) -> Result<Option<SignedIn>, IdentityError> {
    let Some(row) = sessions::table
        .find(hash)
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    if row.revoked_at.is_some()
        || now >= row.expires_at
        || now - row.last_seen_at > row.idle_timeout_secs
    {
        return Ok(None);
    }
    let principal = match (&row.user_id, &row.admin_id, &row.org_id) {
        (Some(user_id), None, Some(org_id)) => {
            let org_id = OrgId::from(org_id.clone());
            let user = match users::get(conn, &org_id, &UserId::from(user_id.clone())) {
                Ok(u) => u,
                Err(IdentityError::NotFound(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            if !user.active {
                return Ok(None);
            }
            let org = orgs::get(conn, &org_id)?;
            Principal::User {
                user: Box::new(user),
                org: Box::new(org),
            }
        }
        (None, Some(admin_id), None) => {
            match admins::get(conn, &AdminId::from(admin_id.clone()))? {
                Some(a) => Principal::Admin(Box::new(a)),
                None => return Ok(None),
            }
        }
        // A setup link's session lives only as long as the link.
        (None, None, Some(org_id)) => {
            let Some(link) = row
                .setup_link_id
                .as_deref()
                .map(|id| crate::identity::setup_links::get(conn, id))
                .transpose()?
                .flatten()
                .filter(|l| l.live(now) && l.org_id == *org_id)
            else {
                return Ok(None);
            };
            let org = orgs::get(conn, &OrgId::from(org_id.clone()))?;
            Principal::Setup {
                link: Box::new(link),
                org: Box::new(org),
            }
        }
        _ => return Ok(None),
    };
    if touch && now - row.last_seen_at >= TOUCH_EVERY_SECS {
        diesel::update(sessions::table.find(&row.id_hash))
            .set(sessions::last_seen_at.eq(now))
            .execute(conn)?;
    }
    Ok(Some(SignedIn {
        id_hash: row.id_hash,
        csrf_token: row.csrf_token,
        auth_method: row.auth_method,
        created_at: row.created_at,
        principal,
    }))
}

pub fn revoke(conn: &mut DbConn, id_hash: &str, now: i64) -> Result<(), IdentityError> {
    diesel::update(sessions::table.find(id_hash))
        .set(sessions::revoked_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}

/// The id hash of the browser's current session cookie, live or not.
pub fn cookie_hash(req: &HttpRequest, settings: &Settings) -> Option<String> {
    req.cookie(cookie_name(settings))
        .map(|c| sha256_hex(c.value()))
}

/// Extractor: the live session, or 401. Use `Option<SignedIn>` where anonymous is fine.
impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<SignedIn, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let cookie = state
            .as_ref()
            .and_then(|s| req.cookie(cookie_name(&s.settings)))
            .map(|c| c.value().to_string());
        Box::pin(async move {
            let state = state.ok_or_else(|| AppError::Internal(anyhow::anyhow!("no app state")))?;
            let cookie = cookie.ok_or_else(|| AppError::Unauthorized("not signed in".into()))?;
            let now = crate::clock::now();
            let found = state
                .db
                .run(move |conn| load(conn, &cookie, now).map_err(AppError::from))
                .await?;
            found.ok_or_else(|| AppError::Unauthorized("not signed in".into()))
        })
    }
}
