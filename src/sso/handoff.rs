//! From a verified IdP sign-in to a session. The ACS is a cross-site POST: it carries no
//! `SameSite=Lax` cookie, so it cannot see who is signed in in this browser. It stores a
//! single-use handoff, gives this browser its token in a short-lived cookie (never in the URL,
//! so a link cannot sign someone into another account), and redirects to `GET /sso/complete`
//! (a top-level GET, which does carry the session cookie). There an unsolicited sign-in never
//! silently replaces another user's live session: the browser is asked "continue as X?".

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::json;

use crate::audit::{self, Event};
use crate::crypto::{random_token, sha256_hex};
use crate::db::ids::{OrgId, UserId};
use crate::db::schema::sso_handoffs;
use crate::db::{write_tx, DbConn};
use crate::http::errors::{AppError, PageError};
use crate::http::pages::render;
use crate::identity::{orgs, users, IdentityError};
use crate::login::csrf;
use crate::login::session::{self, Principal, SignedIn, Subject};
use crate::startup::AppState;

const HANDOFF_SECS: i64 = 120;

pub const COMPLETE_URL: &str = "/sso/complete";

pub fn cookie_name(settings: &crate::config::Settings) -> &'static str {
    if settings.is_https() {
        "__Host-gatehouse_handoff"
    } else {
        "gatehouse_handoff"
    }
}

/// The cookie that carries a handoff token to `/sso/complete` (two minutes).
pub fn cookie(
    settings: &crate::config::Settings,
    token: String,
) -> actix_web::cookie::Cookie<'static> {
    let mut c = session::build_cookie(settings, cookie_name(settings), token).into_owned();
    c.set_max_age(actix_web::cookie::time::Duration::seconds(HANDOFF_SECS));
    c
}

/// After a verified assertion or ID token, inside the caller's write transaction: resolves the
/// account (design.md rules 3–5), records the connection's success, audits the sign-in as
/// `login.{protocol}` with `evidence` (the decoded payload), and stores a handoff. Returns its
/// token, or the refusal in words.
#[allow(clippy::too_many_arguments)]
pub fn verified_sign_in(
    conn: &mut DbConn,
    org: &crate::identity::orgs::Organization,
    connection_id: &str,
    protocol: &str,
    method: &str,
    asserted: &crate::sso::resolve::Asserted,
    evidence: serde_json::Value,
    return_to: Option<&str>,
    now: i64,
) -> Result<Result<String, String>, IdentityError> {
    let outcome = match crate::sso::resolve::resolve(conn, org, connection_id, asserted, now)? {
        Ok(o) => o,
        Err(refusal) => return Ok(Err(refusal.to_string())),
    };
    let user = outcome.user();
    crate::sso::connections::mark_success(conn, connection_id, now)?;
    let mut payload = json!({
        "connection": connection_id,
        "account": outcome.how(),
        "asserted": asserted,
    });
    if let (Some(p), serde_json::Value::Object(extra)) = (payload.as_object_mut(), evidence) {
        p.extend(extra);
    }
    audit::record(
        conn,
        &Event::new(
            Some(&org.id),
            format!("user:{}", user.id),
            format!("login.{protocol}"),
        )
        .payload(payload),
        now,
    )?;
    let token = create(
        conn,
        &org.id,
        &user.id,
        connection_id,
        method,
        return_to,
        now,
    )?;
    Ok(Ok(token))
}

/// A "Test sign-in" from the admin UI, validated in full: records on the connection that it
/// works, what the IdP sent, and the groups and role such a user would get, and signs nobody
/// in. It is not a sign-in: it leaves "Last sign-in" alone and is audited as
/// `connection.test`. Only a test started by a signed-in admin of the org, whose session is
/// still live, counts as a success (the lock-out guard trusts it); anything else is recorded
/// as a failed test with the cause.
#[allow(clippy::too_many_arguments)]
pub fn test_sign_in(
    conn: &mut DbConn,
    org: &OrgId,
    connection_id: &str,
    validated_config: &str,
    protocol: &str,
    asserted: &crate::sso::resolve::Asserted,
    evidence: serde_json::Value,
    test_session: Option<&str>,
    now: i64,
) -> Result<Result<(), String>, IdentityError> {
    // New IdP settings saved while this test was under way (an IdP can hold a sign-in for a
    // while): its pass would vouch for settings it never used.
    let current = crate::sso::connections::get_in_org(conn, org, connection_id)?;
    if current.is_none_or(|c| c.config != validated_config) {
        let cause = "the connection's settings changed while this test was under way: run Test sign-in again";
        test_failed(conn, org, connection_id, protocol, cause, evidence, now)?;
        return Ok(Ok(()));
    }
    let bound = match test_session {
        Some(hash) => session::hash_administers(conn, hash, org, now)?,
        None => false,
    };
    if !bound {
        let cause = "a test sign-in counts only when started by a signed-in admin of this \
                     organization (whose session is still live)";
        test_failed(conn, org, connection_id, protocol, cause, evidence, now)?;
        return Ok(Ok(()));
    }
    let outcome = crate::sso::resolve::preview(conn, org, connection_id, asserted, now)?;
    let detail = merged(json!({"asserted": asserted, "outcome": outcome}), evidence);
    // Valid, but a real sign-in would still be refused: not a pass (the lock-out guard and
    // activation trust a pass).
    if outcome["result"] != "would sign in" {
        let cause = format!(
            "the IdP's response was valid, but a real sign-in would be refused: {}",
            outcome["cause"].as_str().unwrap_or("see below")
        );
        test_failed(conn, org, connection_id, protocol, &cause, detail, now)?;
        return Ok(Ok(()));
    }
    crate::sso::connections::record_test(conn, connection_id, None, &detail, now)?;
    let payload = merged(
        json!({"connection": connection_id, "protocol": protocol}),
        detail,
    );
    audit::record(
        conn,
        &Event::new(
            Some(org),
            format!("{protocol}:{connection_id}"),
            "connection.test".to_string(),
        )
        .payload(payload),
        now,
    )?;
    Ok(Ok(()))
}

/// A Test sign-in that failed: the cause in words and what was received go to the
/// connection's page and the audit log (`connection.test`, failure).
#[allow(clippy::too_many_arguments)]
pub fn test_failed(
    conn: &mut DbConn,
    org: &OrgId,
    connection_id: &str,
    protocol: &str,
    cause: &str,
    evidence: serde_json::Value,
    now: i64,
) -> Result<(), IdentityError> {
    crate::sso::connections::record_test(conn, connection_id, Some(cause), &evidence, now)?;
    let payload = merged(
        json!({"connection": connection_id, "protocol": protocol, "cause": cause}),
        evidence,
    );
    audit::record(
        conn,
        &Event::new(
            Some(org),
            format!("{protocol}:{connection_id}"),
            "connection.test".to_string(),
        )
        .outcome(crate::audit::Outcome::Failure)
        .payload(payload),
        now,
    )?;
    Ok(())
}

/// `base` with the members of `extra` (both JSON objects) added.
fn merged(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(p), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) {
        p.extend(extra);
    }
    base
}

/// A failed Test sign-in, recorded (see [`test_failed`]); the admin goes back to the page the
/// test started from (the connection's page).
pub async fn test_failed_back(
    state: &crate::startup::AppState,
    c: &crate::sso::connections::Connection,
    protocol: &'static str,
    cause: String,
    evidence: serde_json::Value,
    back: Option<String>,
    now: i64,
) -> Result<actix_web::HttpResponse, AppError> {
    let (org, conn_id) = (c.org_id.clone(), c.id.clone());
    state
        .db
        .write(move |conn| {
            test_failed(conn, &org, &conn_id, protocol, &cause, evidence, now)
                .map_err(AppError::from)
        })
        .await?;
    Ok(actix_web::HttpResponse::SeeOther()
        .insert_header(("location", back.unwrap_or_else(|| "/sso/admin".into())))
        .insert_header(("cache-control", "no-store"))
        .finish())
}

/// A sign-in through a draft connection that is not a Test sign-in.
pub fn not_active() -> AppError {
    AppError::Forbidden(
        "This sign-in connection is not active yet: your administrator is still setting it up."
            .into(),
    )
}

/// A sign-in through a connection whose IdP settings were never entered.
pub fn not_set_up() -> AppError {
    AppError::Forbidden(
        "This sign-in connection is not set up yet: your administrator is still setting it up."
            .into(),
    )
}

/// At the start of a sign-in: for a test (`?test=1`), the id hash of the signed-in admin
/// session of the connection's org that asks for it; a test from anyone else is refused.
pub fn test_session(
    test: bool,
    current: Option<&SignedIn>,
    c: &crate::sso::connections::Connection,
) -> Result<Option<String>, PageError> {
    if !test {
        return Ok(None);
    }
    // A setup link tests the connections it sets up (drafts), not live ones: a failed test
    // would take a live connection's proof away, and its results show what users' IdP sent.
    let sso_allowed = |s: &SignedIn| match &s.principal {
        session::Principal::Setup { link, .. } => link.allows("sso") && c.draft,
        _ => true,
    };
    match current {
        Some(s) if session::administers(s, &c.org_id) && sso_allowed(s) => {
            Ok(Some(s.id_hash.clone()))
        }
        _ => Err(AppError::Forbidden(
            "Test sign-in is for this organization's admins: sign in to the admin pages and start the test from the connection's page.".into(),
        )
        .into()),
    }
}

/// Stores a handoff (inside the ACS transaction) and returns its token.
pub fn create(
    conn: &mut DbConn,
    org: &OrgId,
    user: &UserId,
    connection_id: &str,
    method: &str,
    return_to: Option<&str>,
    now: i64,
) -> Result<String, IdentityError> {
    let token = random_token(32);
    diesel::insert_into(sso_handoffs::table)
        .values((
            sso_handoffs::id_hash.eq(sha256_hex(&token)),
            sso_handoffs::org_id.eq(org.as_str()),
            sso_handoffs::user_id.eq(user.as_str()),
            sso_handoffs::connection_id.eq(connection_id),
            sso_handoffs::method.eq(method),
            sso_handoffs::return_to.eq(return_to),
            sso_handoffs::expires_at.eq(now + HANDOFF_SECS),
        ))
        .execute(conn)?;
    Ok(token)
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = sso_handoffs)]
struct Handoff {
    id_hash: String,
    org_id: String,
    user_id: String,
    connection_id: String,
    method: String,
    return_to: Option<String>,
    expires_at: i64,
    consumed_at: Option<i64>,
}

fn load(conn: &mut DbConn, token: &str, now: i64) -> Result<Option<Handoff>, IdentityError> {
    let h: Option<Handoff> = sso_handoffs::table
        .find(sha256_hex(token))
        .select(Handoff::as_select())
        .first(conn)
        .optional()?;
    Ok(h.filter(|h| h.consumed_at.is_none() && h.expires_at > now))
}

#[derive(Template)]
#[template(path = "login/continue.html")]
struct ContinuePage<'a> {
    current: &'a str,
    next: &'a str,
    csrf: &'a str,
}

#[derive(Deserialize)]
pub struct CompleteForm {
    csrf: String,
}

fn token_of(req: &HttpRequest, state: &AppState) -> Option<String> {
    req.cookie(cookie_name(&state.settings))
        .map(|c| c.value().to_string())
}

fn expired() -> PageError {
    PageError(AppError::BadRequest(
        "This sign-in link expired or was already used. Start the sign-in again.".into(),
    ))
}

/// `GET /sso/complete` (the handoff token comes in this browser's cookie)
pub async fn complete(
    state: web::Data<AppState>,
    req: HttpRequest,
    current: Option<SignedIn>,
) -> Result<HttpResponse, PageError> {
    let now = crate::clock::now();
    let token = token_of(&req, &state).ok_or_else(expired)?;
    let t = token.clone();
    let handoff = state
        .db
        .run(move |conn| load(conn, &t, now).map_err(AppError::from))
        .await?
        .ok_or_else(expired)?;
    // Another user is signed in here: ask before replacing their session.
    let other = match &current {
        Some(SignedIn {
            principal: Principal::User { user, .. },
            ..
        }) if user.id.as_str() != handoff.user_id => Some(user.user_name.clone()),
        Some(SignedIn {
            principal: Principal::Admin(a),
            ..
        }) => Some(a.email.clone()),
        _ => None,
    };
    if let Some(current_name) = other {
        let (org_id, user_id) = (
            OrgId::from(handoff.org_id.clone()),
            UserId::from(handoff.user_id.clone()),
        );
        let next = state
            .db
            .run(move |conn| users::get(conn, &org_id, &user_id).map_err(AppError::from))
            .await?;
        let (csrf_token, cookie) = csrf::ensure(&req, &state.settings);
        let mut res = render(
            StatusCode::OK,
            &ContinuePage {
                current: &current_name,
                next: &next.user_name,
                csrf: &csrf_token,
            },
        );
        if let Some(c) = cookie {
            let _ = res.add_cookie(&c);
        }
        return Ok(res);
    }
    finish(&state, &req, token, now).await
}

/// `POST /sso/complete`: "continue as X" confirmed.
pub async fn confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<CompleteForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    if !csrf::verify(&req, &state.settings, &form.csrf) {
        return Err(
            AppError::BadRequest("This form expired. Start the sign-in again.".into()).into(),
        );
    }
    let token = token_of(&req, &state).ok_or_else(expired)?;
    finish(&state, &req, token, crate::clock::now()).await
}

/// Consumes the handoff and starts the session (a new session id, the old one revoked).
async fn finish(
    state: &AppState,
    req: &HttpRequest,
    token: String,
    now: i64,
) -> Result<HttpResponse, PageError> {
    let previous = session::cookie_hash(req, &state.settings);
    let result = state
        .db
        .run(move |conn| {
            write_tx(
                conn,
                |conn| -> Result<Option<(String, Option<String>)>, IdentityError> {
                    let Some(h) = load(conn, &token, now)? else {
                        return Ok(None);
                    };
                    let n = diesel::update(
                        sso_handoffs::table
                            .find(&h.id_hash)
                            .filter(sso_handoffs::consumed_at.is_null()),
                    )
                    .set(sso_handoffs::consumed_at.eq(Some(now)))
                    .execute(conn)?;
                    if n != 1 {
                        return Ok(None);
                    }
                    // A connection disabled since the IdP answered signs nobody in.
                    let usable = crate::sso::connections::get(conn, &h.connection_id)?
                        .is_some_and(|c| c.live());
                    if !usable {
                        return Ok(None);
                    }
                    let org_id = OrgId::from(h.org_id.clone());
                    let user = users::get(conn, &org_id, &UserId::from(h.user_id.clone()))?;
                    if !user.active {
                        return Ok(None);
                    }
                    let org = orgs::get(conn, &org_id)?;
                    let id = session::create(
                        conn,
                        Subject::User(&user, &org),
                        &h.method,
                        Some(&h.connection_id),
                        previous.as_deref(),
                        now,
                    )?;
                    audit::record(
                        conn,
                        &Event::new(Some(&org_id), format!("user:{}", user.id), "session.start")
                            .payload(json!({"method": h.method})),
                        now,
                    )?;
                    Ok(Some((id, h.return_to)))
                },
            )
            .map_err(AppError::from)
        })
        .await?;
    let (cookie_value, return_to) = result.ok_or_else(expired)?;
    let mut res = HttpResponse::SeeOther()
        .insert_header(("location", return_to.unwrap_or_else(|| "/sso/me".into())))
        .insert_header(("cache-control", "no-store"))
        .cookie(session::session_cookie(&state.settings, cookie_value))
        .finish();
    let _ = res.add_removal_cookie(&session::removal_cookie(
        &state.settings,
        cookie_name(&state.settings),
    ));
    Ok(res)
}
