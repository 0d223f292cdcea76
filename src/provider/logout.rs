//! Logout for apps. RP-initiated logout (`/sso/oauth2/logout`, the `end_session_endpoint`):
//! `id_token_hint` names the app and the session, `post_logout_redirect_uri` must be one the
//! app registered, `state` goes back with it; without a hint for the browser's own session the
//! user confirms first (a link must not sign anyone out).
//!
//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): the sweep finds every grant
//! whose gatehouse session has ended — whatever ended it: sign-out, an admin's revoke, SCIM
//! deactivation or deletion, a disabled connection, tightened enforcement, expiry — from the
//! session and user rows themselves, so no cause can be missed. Each (app, session) with a
//! `backchannel_logout_uri` then gets one signed `logout_token`, POSTed through the guarded
//! outbound client, retried with back-off, each attempt audited. Claims are single-winner
//! updates, so several replicas can sweep and deliver at once.

use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use askama::Template;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Event, Outcome};
use crate::db::schema::{oidc_apps, oidc_grants, oidc_logouts, sessions, users};
use crate::db::DbConn;
use crate::http::errors::{AppError, PageError};
use crate::http::pages::{render, render_error_page};
use crate::identity::IdentityError;
use crate::login::session::{self, Principal, SignedIn};
use crate::provider::apps::{self, App};
use crate::provider::{issuer, jwt};
use crate::startup::AppState;

/// How often the sweep looks for ended sessions and due deliveries.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Grants looked at per sweep.
const SWEEP_BATCH: i64 = 500;
/// Waits between attempts; after the last one the delivery is given up (about 28 hours).
const BACKOFF_SECS: &[i64] = &[5, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 43_200];
/// A delivery claimed by a replica is retried by another after this long (well past
/// [`DELIVERY_TIMEOUT`]).
const LEASE_SECS: i64 = 120;
/// One delivery's whole time (resolving, connecting, the app's answer).
const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Deliveries in flight at once, per replica and per app: a slow app delays only its own.
const MAX_IN_FLIGHT: usize = 64;
const MAX_IN_FLIGHT_PER_APP: usize = 4;

/// Deliveries in flight on this replica, per app id.
fn in_flight() -> &'static std::sync::Mutex<std::collections::HashMap<String, usize>> {
    static MAP: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, usize>>> =
        std::sync::OnceLock::new();
    MAP.get_or_init(Default::default)
}

/// Holds an app's in-flight slot until dropped.
struct Slot(String);

impl Slot {
    fn take(app: &str) -> Option<Slot> {
        let mut map = in_flight().lock().ok()?;
        let total: usize = map.values().sum();
        let mine = map.entry(app.to_string()).or_default();
        if total >= MAX_IN_FLIGHT || *mine >= MAX_IN_FLIGHT_PER_APP {
            return None;
        }
        *mine += 1;
        Some(Slot(app.to_string()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut map) = in_flight().lock() {
            if let Some(n) = map.get_mut(&self.0) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    map.remove(&self.0);
                }
            }
        }
    }
}
/// The logout token's lifetime (the RP checks `iat`; `exp` bounds replays).
const LOGOUT_TOKEN_SECS: i64 = 120;
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Marks grants whose session ended and queues their apps' back-channel logouts. Returns
/// how many grants ended.
pub fn sweep(conn: &mut DbConn, now: i64) -> Result<usize, IdentityError> {
    // One sweep at a time across replicas: two of them checking and queueing the same
    // session's logout would both insert it.
    crate::db::write_tx(conn, |conn| {
        crate::db::lock_named(conn, "oidc_logout_sweep")?;
        sweep_locked(conn, now)
    })
}

fn sweep_locked(conn: &mut DbConn, now: i64) -> Result<usize, IdentityError> {
    type Row = (
        String,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<bool>,
        Option<String>,
    );
    let ended: Vec<Row> = oidc_grants::table
        .inner_join(oidc_apps::table)
        .left_join(sessions::table.on(sessions::id_hash.eq(oidc_grants::session_hash)))
        .left_join(users::table.on(users::id.eq(oidc_grants::user_id)))
        .filter(oidc_grants::ended_at.is_null())
        .filter(
            sessions::id_hash
                .nullable()
                .is_null()
                .or(sessions::revoked_at.is_not_null())
                .or(sessions::expires_at.le(now))
                .or((sessions::last_seen_at + sessions::idle_timeout_secs).lt(now))
                .or(users::id.nullable().is_null())
                .or(users::active.eq(false)),
        )
        .select((
            oidc_grants::id,
            oidc_grants::app_id,
            oidc_grants::session_hash,
            oidc_grants::sid,
            oidc_grants::org_id,
            oidc_grants::user_id,
            oidc_apps::backchannel_logout_uri,
            sessions::revoked_at.nullable(),
            users::active.nullable(),
            users::id.nullable(),
        ))
        .limit(SWEEP_BATCH)
        .load(conn)?;
    let mut n = 0;
    for (grant, app, session_hash, sid, org, user, uri, revoked, active, user_row) in ended {
        let claimed = diesel::update(
            oidc_grants::table
                .find(&grant)
                .filter(oidc_grants::ended_at.is_null()),
        )
        .set(oidc_grants::ended_at.eq(Some(now)))
        .execute(conn)?;
        if claimed != 1 {
            continue;
        }
        n += 1;
        if uri.is_none() {
            continue;
        }
        let cause = match (user_row, active, revoked) {
            (None, _, _) => "the user was deleted",
            (_, Some(false), _) => "the user was deactivated",
            (_, _, Some(_)) => {
                "the session was ended (sign-out, an admin's revoke, a disabled connection or tightened enforcement)"
            }
            _ => "the session expired",
        };
        // One logout per app, session and sid, however many times the app signed in through
        // it (a grant moved from the user's previous session keeps its own sid).
        let queued: i64 = oidc_logouts::table
            .filter(oidc_logouts::app_id.eq(&app))
            .filter(oidc_logouts::session_hash.eq(&session_hash))
            .filter(oidc_logouts::sid.eq(&sid))
            .count()
            .get_result(conn)?;
        if queued > 0 {
            continue;
        }
        diesel::insert_into(oidc_logouts::table)
            .values((
                oidc_logouts::id.eq(uuid::Uuid::now_v7().to_string()),
                oidc_logouts::app_id.eq(&app),
                oidc_logouts::session_hash.eq(&session_hash),
                oidc_logouts::sid.eq(&sid),
                oidc_logouts::org_id.eq(&org),
                oidc_logouts::user_id.eq(&user),
                oidc_logouts::cause.eq(cause),
                oidc_logouts::created_at.eq(now),
                oidc_logouts::attempts.eq(0),
                oidc_logouts::next_attempt_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(n)
}

/// A delivery this replica claimed.
struct Claimed {
    id: String,
    app: App,
    sid: String,
    org_id: String,
    user_id: String,
    cause: String,
    attempts: i32,
}

/// Claims due deliveries this replica has room for (a lease: another replica retries after
/// [`LEASE_SECS`] if this one dies), each with its app's in-flight slot.
fn claim(conn: &mut DbConn, now: i64) -> Result<Vec<(Claimed, Slot)>, IdentityError> {
    type Row = (String, String, String, String, String, String, i32, i64);
    // Apps with no free slot are left out in the query itself: one app's backlog cannot fill
    // the page and starve the others.
    let busy: Vec<String> = in_flight()
        .lock()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| **n >= MAX_IN_FLIGHT_PER_APP)
                .map(|(app, _)| app.clone())
                .collect()
        })
        .unwrap_or_default();
    let due: Vec<Row> = oidc_logouts::table
        .filter(oidc_logouts::sent_at.is_null())
        .filter(oidc_logouts::gave_up_at.is_null())
        .filter(oidc_logouts::next_attempt_at.le(now))
        .filter(oidc_logouts::app_id.ne_all(&busy))
        .order(oidc_logouts::next_attempt_at.asc())
        .limit(200)
        .select((
            oidc_logouts::id,
            oidc_logouts::app_id,
            oidc_logouts::sid,
            oidc_logouts::org_id,
            oidc_logouts::user_id,
            oidc_logouts::cause,
            oidc_logouts::attempts,
            oidc_logouts::next_attempt_at,
        ))
        .load(conn)?;
    let mut out = Vec::new();
    for (id, app_id, sid, org_id, user_id, cause, attempts, at) in due {
        let Some(slot) = Slot::take(&app_id) else {
            continue;
        };
        let won = diesel::update(
            oidc_logouts::table
                .find(&id)
                .filter(oidc_logouts::next_attempt_at.eq(at)),
        )
        .set(oidc_logouts::next_attempt_at.eq(now + LEASE_SECS))
        .execute(conn)?;
        if won != 1 {
            continue;
        }
        if let Some(app) = apps::all_by_id(conn, &app_id)? {
            out.push((
                Claimed {
                    id,
                    app,
                    sid,
                    org_id,
                    user_id,
                    cause,
                    attempts,
                },
                slot,
            ));
        }
    }
    Ok(out)
}

/// The logout token for one delivery.
fn logout_token(
    conn: &mut DbConn,
    state: &AppState,
    d: &Claimed,
    now: i64,
) -> Result<String, AppError> {
    let key = jwt::signing_key(conn, &d.app.id_token_alg, now)?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no {} key", d.app.id_token_alg)))?;
    let claims = json!({
        "iss": issuer(&state.settings),
        "aud": d.app.client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_SECS,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sub": d.user_id,
        "sid": d.sid,
        "events": { BACKCHANNEL_EVENT: {} },
    });
    jwt::sign(&claims, "logout+jwt", &key, &state.key).map_err(AppError::Internal)
}

/// One pass: sweep, then deliver what is due. Returns (grants ended, deliveries tried).
pub async fn run_once(state: &web::Data<AppState>) -> Result<(usize, usize), AppError> {
    let now = crate::clock::now();
    let ended = state
        .db
        .write(move |conn| sweep(conn, now).map_err(AppError::from))
        .await?;
    let claimed = state
        .db
        .write(move |conn| claim(conn, now).map_err(AppError::from))
        .await?;
    let tried = claimed.len();
    // Each on its own: a slow app holds only its own slots, never the sweep.
    for (d, slot) in claimed {
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = deliver(&state, d).await {
                tracing::warn!(error = %e, "a back-channel logout delivery could not be recorded; it is retried after its lease");
            }
        });
    }
    Ok((ended, tried))
}

async fn deliver(state: &web::Data<AppState>, d: Claimed) -> Result<(), AppError> {
    let now = crate::clock::now();
    let Some(uri) = d.app.backchannel_logout_uri.clone() else {
        // The app's URI was removed after the logout was queued: nothing to send it to.
        let id = d.id.clone();
        return state
            .db
            .write(move |conn| -> Result<(), AppError> {
                diesel::update(oidc_logouts::table.find(&id))
                    .set((
                        oidc_logouts::gave_up_at.eq(Some(now)),
                        oidc_logouts::last_error
                            .eq(Some("the app no longer has a back-channel logout URI")),
                    ))
                    .execute(conn)?;
                Ok(())
            })
            .await;
    };
    let st = state.clone();
    let (token, d) = state
        .db
        .run(
            move |conn| -> Result<(Result<String, String>, Claimed), AppError> {
                let token = logout_token(conn, &st, &d, now).map_err(|e| e.to_string());
                Ok((token, d))
            },
        )
        .await?;
    let outcome = match token {
        Ok(token) => post(&uri, &token, state.settings.outbound_allow_private).await,
        // Counted and audited as an attempt, then retried with the back-off.
        Err(e) => {
            tracing::error!(error = %e, "no logout token could be made");
            Err("gatehouse could not make the logout token (see its log)".into())
        }
    };
    let attempt = d.attempts + 1;
    let done_at = crate::clock::now();
    state
        .db
        .write(move |conn| -> Result<(), AppError> {
            let org = crate::db::ids::OrgId::from(d.org_id.clone());
            let mut payload = json!({
                "app": d.app.slug, "user": format!("user:{}", d.user_id), "sid": d.sid,
                "uri": uri, "attempt": attempt, "cause": d.cause,
            });
            let event = match &outcome {
                Ok(status) => {
                    diesel::update(oidc_logouts::table.find(&d.id))
                        .set((
                            oidc_logouts::sent_at.eq(Some(done_at)),
                            oidc_logouts::attempts.eq(attempt),
                            oidc_logouts::last_error.eq(None::<String>),
                        ))
                        .execute(conn)?;
                    payload["status"] = json!(status);
                    Event::new(Some(&org), "gatehouse", "oauth.backchannel_logout").payload(payload)
                }
                Err(e) => {
                    let wait = BACKOFF_SECS.get(d.attempts as usize).copied();
                    diesel::update(oidc_logouts::table.find(&d.id))
                        .set((
                            oidc_logouts::attempts.eq(attempt),
                            oidc_logouts::last_error.eq(Some(e.clone())),
                            oidc_logouts::next_attempt_at.eq(done_at + wait.unwrap_or(0)),
                            oidc_logouts::gave_up_at.eq(wait.is_none().then_some(done_at)),
                        ))
                        .execute(conn)?;
                    payload["error"] = json!(e);
                    payload["next_attempt_in_secs"] = json!(wait);
                    Event::new(Some(&org), "gatehouse", "oauth.backchannel_logout")
                        .outcome(Outcome::Failure)
                        .payload(payload)
                }
            };
            audit::record(conn, &event, done_at)?;
            Ok(())
        })
        .await
}

/// POSTs a logout token through the guarded outbound client within [`DELIVERY_TIMEOUT`]:
/// the app's status, or why not.
async fn post(uri: &str, token: &str, allow_private: bool) -> Result<u16, String> {
    let body = format!(
        "logout_token={}",
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let target = uri.to_string();
    let sent = tokio::time::timeout(
        DELIVERY_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            crate::outbound::send(
                crate::outbound::Request {
                    method: reqwest::Method::POST,
                    url: &target,
                    headers: vec![(
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    )],
                    body: Some(body.into_bytes()),
                },
                allow_private,
            )
        }),
    )
    .await;
    match sent {
        Err(_) => Err(format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(format!("the delivery task failed: {e}")),
        Ok(Ok(Ok(res))) if (200..300).contains(&res.status) => Ok(res.status),
        Ok(Ok(Ok(res))) => Err(format!("the app answered HTTP {}", res.status)),
        Ok(Ok(Err(e))) => Err(e.to_string()),
    }
}

/// Every [`SWEEP_EVERY`], for as long as the process runs.
pub fn spawn(state: web::Data<AppState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&state).await {
                tracing::warn!(error = %e, "back-channel logout sweep failed; retrying");
            }
        }
    });
}

// ---- RP-initiated logout ------------------------------------------------------------------

#[derive(Template)]
#[template(path = "provider/logout.html")]
struct ConfirmPage<'a> {
    csrf: &'a str,
    user_name: &'a str,
    app_name: Option<&'a str>,
    next: &'a str,
}

/// Where to go after signing out, sealed into the confirmation form.
#[derive(Serialize, Deserialize, Default)]
struct After {
    uri: Option<String>,
    state: Option<String>,
    app: Option<String>,
}

const SEAL_CONTEXT: &str = "oidc-logout-continue";

fn after_logout(a: &After) -> HttpResponse {
    match &a.uri {
        Some(uri) => {
            let mut url = match url::Url::parse(uri) {
                Ok(u) => u,
                Err(_) => return crate::login::me::signed_out_page(),
            };
            if let Some(s) = &a.state {
                url.query_pairs_mut().append_pair("state", s);
            }
            HttpResponse::SeeOther()
                .insert_header(("location", url.to_string()))
                .insert_header(("cache-control", "no-store"))
                .finish()
        }
        None => crate::login::me::signed_out_page(),
    }
}

fn logout_error(message: &str) -> HttpResponse {
    crate::admin::once::no_store(render_error_page(
        StatusCode::BAD_REQUEST,
        "This sign-out cannot go on",
        message,
    ))
}

/// Ends the session (audited) and removes the cookie.
async fn end_session(
    state: &AppState,
    signed: &SignedIn,
    app: Option<String>,
    how: &'static str,
) -> Result<(), AppError> {
    let (org, actor) = match &signed.principal {
        Principal::Admin(a) => (None, format!("admin:{}", a.id)),
        Principal::User { user, .. } => (Some(user.org_id.clone()), format!("user:{}", user.id)),
        Principal::Setup { link, org } => (Some(org.id.clone()), format!("setup-link:{}", link.id)),
    };
    let event = Event::new(org.as_ref(), actor, "oauth.logout")
        .payload(json!({"app": app, "method": signed.auth_method, "how": how}));
    let now = crate::clock::now();
    let id_hash = signed.id_hash.clone();
    state
        .db
        .write(move |conn| -> Result<(), AppError> {
            session::revoke(conn, &id_hash, now)?;
            audit::record(conn, &event, now)?;
            Ok(())
        })
        .await
}

/// `GET /sso/oauth2/logout` (and `POST` with the same parameters).
pub async fn end_session_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    end_session_request(state, req, query.into_inner()).await
}

/// `POST /sso/oauth2/logout`: an RP's form-encoded logout request, or the confirmation.
pub async fn end_session_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let pairs = form.into_inner();
    if pairs.iter().any(|(k, _)| k == "csrf") {
        return confirm(state, req, pairs).await;
    }
    end_session_request(state, req, pairs).await
}

/// The app a logout request names and the `sid` of its hint.
type Hinted = (Option<App>, Option<String>);

async fn end_session_request(
    state: web::Data<AppState>,
    req: HttpRequest,
    pairs: Vec<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let params = match crate::provider::token::single_params(pairs) {
        Ok(p) => p,
        Err(e) => {
            return Ok(logout_error(&format!(
                "The app's sign-out request is not valid: {e}."
            )))
        }
    };
    let get = |k: &str| params.get(k).cloned().filter(|v| !v.is_empty());
    let (hint, client_id, redirect, app_state) = (
        get("id_token_hint"),
        get("client_id"),
        get("post_logout_redirect_uri"),
        get("state"),
    );
    let now = crate::clock::now();
    let iss = issuer(&state.settings);
    let looked_up = state
        .db
        .run(
            move |conn| -> Result<Result<Hinted, &'static str>, AppError> {
                let mut hint_sid = None;
                let mut aud = None;
                if let Some(h) = &hint {
                    // An expired ID token is still a good hint (OIDC RP-Initiated Logout §2).
                    let Ok(claims) = jwt::verify(conn, h, "JWT", &iss, now, true) else {
                        return Ok(Err("The app sent a sign-out hint gatehouse did not issue."));
                    };
                    aud = claims["aud"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| claims["aud"][0].as_str().map(str::to_string));
                    hint_sid = claims["sid"].as_str().map(str::to_string);
                }
                if let (Some(a), Some(c)) = (&aud, &client_id) {
                    if a != c {
                        return Ok(Err("The sign-out hint was issued to another app."));
                    }
                }
                let app = match aud.or(client_id) {
                    Some(c) => match apps::by_client_id(conn, &c)?.filter(|a| a.enabled) {
                        Some(app) => Some(app),
                        None => return Ok(Err(
                            "The app asking to sign you out is not registered, or it is disabled.",
                        )),
                    },
                    None => None,
                };
                Ok(Ok((app, hint_sid)))
            },
        )
        .await?;
    let (app, hint_sid) = match looked_up {
        Ok(v) => v,
        Err(message) => return Ok(logout_error(message)),
    };
    if let Some(uri) = &redirect {
        let registered = app
            .as_ref()
            .is_some_and(|a| a.post_logout_redirect_uris().iter().any(|u| u == uri));
        if !registered {
            return Ok(logout_error(
                "The app asked to send you to an address it has not registered for after sign-out. You were not signed out.",
            ));
        }
    }
    let after = After {
        uri: redirect,
        state: app_state,
        app: app.as_ref().map(|a| a.slug.clone()),
    };
    let signed = SignedIn::extract(&req).await.ok();
    let Some(signed) = signed else {
        return Ok(after_logout(&after));
    };
    let hinted = match hint_sid {
        Some(sid) => {
            let hash = signed.id_hash.clone();
            state
                .db
                .run(move |conn| {
                    crate::provider::grants::sid_of_session(conn, &hash, &sid)
                        .map_err(AppError::from)
                })
                .await?
        }
        None => false,
    };
    if hinted {
        end_session(&state, &signed, after.app.clone(), "id_token_hint").await?;
        let mut res = after_logout(&after);
        let _ = res.add_removal_cookie(&session::session_removal(&state.settings));
        return Ok(res);
    }
    let user_name = match &signed.principal {
        Principal::Admin(a) => a.email.clone(),
        Principal::User { user, .. } => user.user_name.clone(),
        Principal::Setup { org, .. } => format!("the setup link of {}", org.name),
    };
    let sealed = state.key.seal(
        &serde_json::to_vec(&after).map_err(|e| AppError::Internal(e.into()))?,
        SEAL_CONTEXT,
    );
    Ok(crate::admin::once::no_store(render(
        StatusCode::OK,
        &ConfirmPage {
            csrf: &signed.csrf_token,
            user_name: &user_name,
            app_name: app.as_ref().map(|a| a.name.as_str()),
            next: &sealed,
        },
    )))
}

/// The confirmation form's POST: ends the session, then goes where the app asked.
async fn confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    pairs: Vec<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let params = crate::provider::token::single_params(pairs)
        .map_err(|e| PageError(AppError::BadRequest(e)))?;
    let after: After = params
        .get("next")
        .and_then(|n| state.key.open(n, SEAL_CONTEXT).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let Some(signed) = SignedIn::extract(&req).await.ok() else {
        return Ok(after_logout(&after));
    };
    let csrf = params.get("csrf").map(String::as_str).unwrap_or_default();
    if !crate::login::csrf::tokens_equal(&signed.csrf_token, csrf) {
        return Ok(logout_error(
            "This sign-out form expired. Go back to the app and sign out again.",
        ));
    }
    end_session(&state, &signed, after.app.clone(), "confirmed").await?;
    let mut res = after_logout(&after);
    let _ = res.add_removal_cookie(&session::session_removal(&state.settings));
    Ok(res)
}
