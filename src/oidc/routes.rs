//! `GET /sso/oidc/{connection}/login` (also the IdP's `initiate_login_uri`) and
//! `GET /sso/oidc/{connection}/callback` (the redirect URI).
//!
//! A sign-in in flight is a row found by the SHA-256 of its `state`, bound to this browser by a
//! random value in a cookie (its hash in the row), holding the sealed nonce and PKCE verifier,
//! and accepted once. The callback is a top-level GET, so that `SameSite=Lax` cookie comes back.

use actix_web::{web, HttpRequest, HttpResponse};
use diesel::prelude::*;
use openidconnect::PkceCodeChallenge;
use serde::Deserialize;
use serde_json::{json, Value};

use super::config::OidcConfig;
use super::provider::{self, Claims, Failure};
use crate::audit::{self, Event, Outcome};
use crate::config::Settings;
use crate::crypto::{random_token, sha256_hex};
use crate::db::schema::oidc_requests;
use crate::db::{write_tx, DbConn};
use crate::http::errors::{AppError, PageError};
use crate::identity::{domains, orgs, IdentityError};
use crate::login::return_to;
use crate::login::session;
use crate::sso::connections::{self, Connection};
use crate::sso::handoff;
use crate::sso::resolve::Asserted;
use crate::startup::AppState;

/// How far the IdP's clock may be behind ours when its `auth_time` is checked.
const FRESH_SKEW_SECS: i64 = 60;
const REQUEST_TTL_SECS: i64 = 600;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/sso/oidc")
            .route("/{connection}/login", web::get().to(login))
            .route("/{connection}/callback", web::get().to(callback)),
    );
}

pub fn redirect_uri(settings: &Settings, connection: &str) -> String {
    settings.url_for(&format!("/sso/oidc/{connection}/callback"))
}

pub fn login_url(settings: &Settings, connection: &str) -> String {
    settings.url_for(&format!("/sso/oidc/{connection}/login"))
}

fn browser_cookie_name(settings: &Settings) -> &'static str {
    if settings.is_https() {
        "__Host-gatehouse_oidc"
    } else {
        "gatehouse_oidc"
    }
}

fn secret_context(connection: &str) -> String {
    format!("oidc-client-secret:{connection}")
}

/// Seals a client secret for a connection row.
pub fn seal_secret(state_key: &crate::crypto::SecretKey, connection: &str, secret: &str) -> String {
    state_key.seal(secret.as_bytes(), &secret_context(connection))
}

/// Stores a new OIDC connection with its sealed client secret, audited (inside the caller's
/// write transaction; the issuer was discovered by the caller).
#[allow(clippy::too_many_arguments)]
pub fn store_connection(
    conn: &mut DbConn,
    key: &crate::crypto::SecretKey,
    org: &crate::db::ids::OrgId,
    actor: &str,
    name: &str,
    cfg: &OidcConfig,
    secret: &str,
    draft: bool,
    now: i64,
) -> Result<Connection, IdentityError> {
    let created = connections::create(
        conn,
        org,
        "oidc",
        name,
        &serde_json::to_value(cfg).map_err(anyhow::Error::from)?,
        draft,
        now,
    )?;
    connections::set_secret(conn, &created.id, &seal_secret(key, &created.id, secret))?;
    audit::record(
        conn,
        &Event::new(Some(org), actor.to_string(), "connection.add").payload(json!({
            "id": created.id, "kind": "oidc", "issuer": cfg.issuer, "client_id": cfg.client_id,
            "client_secret": "(set)", "preset": cfg.preset, "tenant_allow": cfg.tenant_allow, "draft": draft,
        })),
        now,
    )?;
    connections::get(conn, &created.id)?.ok_or_else(|| IdentityError::NotFound("connection".into()))
}

fn oidc_config(c: &Connection) -> Result<OidcConfig, AppError> {
    if c.kind != "oidc" {
        return Err(AppError::NotFound);
    }
    serde_json::from_str(&c.config)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored OIDC config unreadable: {e}")))
}

async fn load(state: &AppState, id: &str) -> Result<(Connection, OidcConfig), AppError> {
    let id = id.to_string();
    let c = state
        .db
        .run(move |conn| connections::get(conn, &id)?.ok_or(AppError::NotFound))
        .await?;
    let cfg = oidc_config(&c)?;
    Ok((c, cfg))
}

/// The discovery cache key: a changed connection is discovered again.
fn cache_key(c: &Connection) -> String {
    format!("{}:{}", c.id, c.updated_at)
}

fn disabled() -> PageError {
    AppError::Forbidden("This sign-in connection is disabled. Ask your administrator.".into())
        .into()
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    /// `test=1`: the admin UI's "Test sign-in" (validated in full, nobody signed in).
    test: Option<String>,
}

/// `GET /sso/oidc/{connection}/login`: the authorization request (code + PKCE S256).
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<LoginQuery>,
    current: Option<crate::login::session::SignedIn>,
) -> Result<HttpResponse, PageError> {
    let (c, cfg) = load(&state, &path).await?;
    if !c.enabled {
        return Err(disabled());
    }
    if c.draft && q.test.is_none() {
        return Err(handoff::not_active().into());
    }
    if !cfg.configured() {
        return Err(handoff::not_set_up().into());
    }
    let test_session = handoff::test_session(q.test.is_some(), current.as_ref(), &c)?;
    let now = crate::clock::now();
    let allow_private = state.settings.outbound_allow_private;
    let (key, cfg2) = (cache_key(&c), cfg.clone());
    let discovered = web::block(move || provider::discover(&key, &cfg2, allow_private, now))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("discovery task: {e}")))?;
    let discovered = match discovered {
        Ok(d) => d,
        Err(Failure(cause)) => {
            return Err(refuse(&state, &c, cause, None, now).await);
        }
    };

    let state_token = random_token(32);
    let nonce = random_token(32);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    // One browser value, reused by parallel sign-ins in several tabs.
    let cookie_name = browser_cookie_name(&state.settings);
    let browser = req
        .cookie(cookie_name)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() >= 32)
        .unwrap_or_else(|| random_token(32));
    let redirect = redirect_uri(&state.settings, &c.id);
    let mut url = url::Url::parse(&discovered.metadata.authorization_endpoint).map_err(|_| {
        AppError::Internal(anyhow::anyhow!(
            "the IdP's authorization endpoint is not a URL"
        ))
    })?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &cfg.client_id)
        .append_pair("redirect_uri", &redirect)
        .append_pair("scope", &cfg.scopes.join(" "))
        .append_pair("state", &state_token)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", challenge.as_str())
        .append_pair("code_challenge_method", "S256");
    // An app asked for a new sign-in (prompt=login, max_age): so does the IdP.
    let fresh = crate::provider::grants::fresh_for(&state.db, q.return_to.clone(), now).await?;
    if let Some(f) = fresh {
        let max_age = f.max_age;
        let mut q = url.query_pairs_mut();
        if max_age == 0 {
            q.append_pair("prompt", "login");
        }
        q.append_pair("max_age", &max_age.to_string());
    }
    let row = (
        oidc_requests::state_hash.eq(sha256_hex(&state_token)),
        oidc_requests::connection_id.eq(c.id.clone()),
        oidc_requests::browser_hash.eq(sha256_hex(&browser)),
        oidc_requests::nonce_enc.eq(state.key.seal(nonce.as_bytes(), "oidc-nonce")),
        oidc_requests::verifier_enc.eq(state.key.seal(verifier.secret().as_bytes(), "oidc-pkce")),
        oidc_requests::return_to.eq(return_to::safe(
            q.return_to.as_deref(),
            &state.settings.allowed_return_hosts,
        )),
        oidc_requests::created_at.eq(now),
        oidc_requests::expires_at.eq(now + REQUEST_TTL_SECS),
        oidc_requests::purpose.eq(q.test.as_ref().map(|_| "test")),
        oidc_requests::test_session.eq(test_session),
    );
    state
        .db
        .run(move |conn| {
            diesel::delete(oidc_requests::table.filter(oidc_requests::expires_at.lt(now - 3600)))
                .execute(conn)?;
            diesel::insert_into(oidc_requests::table)
                .values(row)
                .execute(conn)
                .map_err(AppError::from)
        })
        .await?;
    let mut cookie = session::build_cookie(&state.settings, cookie_name, browser).into_owned();
    cookie.set_max_age(actix_web::cookie::time::Duration::seconds(REQUEST_TTL_SECS));
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", url.to_string()))
        .insert_header(("cache-control", "no-store"))
        .cookie(cookie)
        .finish())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Audits a refused sign-in and gives the user a page with a reference id, nothing more.
async fn refuse(
    state: &AppState,
    c: &Connection,
    cause: String,
    claims: Option<Claims>,
    now: i64,
) -> PageError {
    let event = Event::new(Some(&c.org_id), format!("oidc:{}", c.id), "login.oidc")
        .outcome(Outcome::Failure)
        .payload(json!({"connection": c.id, "cause": cause, "claims": claims}));
    if let Err(e) = state
        .db
        .run(move |conn| audit::record(conn, &event, now).map_err(AppError::from))
        .await
    {
        return e.into();
    }
    AppError::BadRequest(
        "Your sign-in could not be completed. Your administrator can look up the reason with the reference below.".into(),
    )
    .into()
}

/// Whose sign-in a callback finishes: a Test sign-in's failures go back to its page.
struct Attempt {
    test: Option<Option<String>>,
    back: Option<String>,
}

/// A refused callback: a Test sign-in's failure is recorded on the connection and the admin
/// goes back to its page; anyone else gets the error page (and the audit event).
async fn fail(
    state: &AppState,
    c: &Connection,
    attempt: &Attempt,
    cause: String,
    claims: Option<Claims>,
    now: i64,
) -> Result<HttpResponse, PageError> {
    if attempt.test.is_none() {
        return Err(refuse(state, c, cause, claims, now).await);
    }
    Ok(handoff::test_failed_back(
        state,
        c,
        "oidc",
        cause,
        json!({"claims": claims}),
        attempt.back.clone(),
        now,
    )
    .await?)
}

type RequestRow = (
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

struct Pending {
    nonce: String,
    verifier: String,
    return_to: Option<String>,
    /// A test sign-in, with the admin session that started it.
    test: Option<Option<String>>,
}

/// Finds the sign-in this callback answers, checks it belongs to this browser and consumes it.
async fn take_request(
    state: &AppState,
    c: &Connection,
    state_token: &str,
    browser: Option<String>,
    now: i64,
) -> Result<Result<Pending, String>, AppError> {
    let (hash, conn_id) = (sha256_hex(state_token), c.id.clone());
    let row: Option<RequestRow> = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let row = oidc_requests::table
                .find(&hash)
                .filter(oidc_requests::connection_id.eq(&conn_id))
                .select((
                    oidc_requests::browser_hash,
                    oidc_requests::nonce_enc,
                    oidc_requests::verifier_enc,
                    oidc_requests::return_to,
                    oidc_requests::expires_at,
                    oidc_requests::consumed_at,
                    oidc_requests::purpose,
                    oidc_requests::test_session,
                ))
                .first(conn)
                .optional()?;
            if matches!(&row, Some((_, _, _, _, _, None, _, _))) {
                diesel::update(oidc_requests::table.find(&hash))
                    .set(oidc_requests::consumed_at.eq(Some(now)))
                    .execute(conn)?;
            }
            Ok(row)
        })
        .await
        .map_err(AppError::from)?;
    let Some((
        browser_hash,
        nonce_enc,
        verifier_enc,
        return_to,
        expires,
        consumed,
        purpose,
        test_session,
    )) = row
    else {
        return Ok(Err(
            "state does not name a sign-in started here for this connection".into(),
        ));
    };
    if consumed.is_some() {
        return Ok(Err(
            "state names a sign-in that was already completed (replay)".into(),
        ));
    }
    if expires <= now {
        return Ok(Err("state names a sign-in that expired".into()));
    }
    let same_browser = browser.is_some_and(|b| {
        subtle::ConstantTimeEq::ct_eq(sha256_hex(&b).as_bytes(), browser_hash.as_bytes()).into()
    });
    if !same_browser {
        return Ok(Err(
            "the sign-in was started in another browser (state is not bound to this browser)"
                .into(),
        ));
    }
    let open = |sealed: &str, ctx: &str| -> Result<String, AppError> {
        let bytes = state
            .key
            .open(sealed, ctx)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("sealed OIDC request: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|_| AppError::Internal(anyhow::anyhow!("sealed OIDC request")))
    };
    Ok(Ok(Pending {
        nonce: open(&nonce_enc, "oidc-nonce")?,
        verifier: open(&verifier_enc, "oidc-pkce")?,
        return_to,
        test: (purpose.as_deref() == Some("test")).then_some(test_session),
    }))
}

fn string_claim(claims: &Claims, key: &str) -> Option<String> {
    claims
        .get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `true`, or the string "true" some IdPs send.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn groups_of(claims: &Claims, claim: &str) -> Vec<String> {
    match claims.get(claim) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// What the ID token (and userinfo, for what the token lacks) asserts.
fn asserted(claims: &Claims, cfg: &OidcConfig) -> Asserted {
    let display = string_claim(claims, "name");
    Asserted {
        subject: string_claim(claims, "sub").unwrap_or_default(),
        transient: false,
        // Entra puts the address in `email` when the tenant has one, else in
        // `preferred_username` (its UPN).
        email: string_claim(claims, "email").or_else(|| {
            if cfg.preset.as_deref() == Some("entra") {
                string_claim(claims, "preferred_username")
                    .filter(|u| crate::domain::Email::parse(u).is_ok())
            } else {
                None
            }
        }),
        given_name: string_claim(claims, "given_name"),
        family_name: string_claim(claims, "family_name"),
        display_name: display,
        groups: groups_of(claims, &cfg.groups_claim),
    }
}

/// A refusal's cause, with the claims decoded so far for the audit.
type Refused = (String, Option<Claims>);

/// `GET /sso/oidc/{connection}/callback`
pub async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<CallbackQuery>,
) -> Result<HttpResponse, PageError> {
    let (c, cfg) = load(&state, &path).await?;
    let now = crate::clock::now();
    let q = q.into_inner();
    if !c.enabled {
        return Err(refuse(&state, &c, "the connection is disabled".into(), None, now).await);
    }
    if !cfg.configured() {
        return Err(refuse(
            &state,
            &c,
            "the connection is not set up yet (the IdP's settings were never entered)".into(),
            None,
            now,
        )
        .await);
    }
    let Some(state_token) = q.state.filter(|s| !s.is_empty()) else {
        return Err(refuse(&state, &c, "the callback has no state".into(), None, now).await);
    };
    let browser = req
        .cookie(browser_cookie_name(&state.settings))
        .map(|c| c.value().to_string());
    let pending = match take_request(&state, &c, &state_token, browser, now).await? {
        Ok(p) => p,
        Err(cause) => return Err(refuse(&state, &c, cause, None, now).await),
    };
    // From here a failure of a Test sign-in goes back to the connection's page.
    let attempt = Attempt {
        test: pending.test.clone(),
        back: pending.return_to.clone(),
    };
    if c.draft && attempt.test.is_none() {
        return Err(refuse(&state, &c, "the connection is a draft: an admin must activate it before anyone can sign in with it".into(), None, now).await);
    }
    if let Some(error) = q.error {
        let desc = q.error_description.unwrap_or_default();
        let cause = format!("the IdP answered with error {error}: {desc}");
        return fail(
            &state,
            &c,
            &attempt,
            cause.trim_end_matches(": ").to_string(),
            None,
            now,
        )
        .await;
    }
    let Some(code) = q.code.filter(|s| !s.is_empty()) else {
        return fail(
            &state,
            &c,
            &attempt,
            "the callback has no authorization code".into(),
            None,
            now,
        )
        .await;
    };

    let secret = match c.secret_enc.as_deref() {
        Some(sealed) => state
            .key
            .open_string(sealed, &secret_context(&c.id))
            .map_err(|e| AppError::Internal(anyhow::anyhow!("client secret: {e}")))?,
        None => {
            return fail(
                &state,
                &c,
                &attempt,
                "the connection has no client secret".into(),
                None,
                now,
            )
            .await
        }
    };
    let allow_private = state.settings.outbound_allow_private;
    let redirect = redirect_uri(&state.settings, &c.id);
    let (key, cfg2) = (cache_key(&c), cfg.clone());
    // The back channel: exchange, verify, userinfo — blocking work off the workers.
    let outcome = web::block(move || -> Result<Claims, Refused> {
        use secrecy::ExposeSecret;
        let rp = provider::Rp {
            key: &key,
            cfg: &cfg2,
            secret: secret.expose_secret(),
            redirect_uri: &redirect,
            allow_private,
            now,
        };
        let d =
            provider::discover(&key, &cfg2, allow_private, now).map_err(|Failure(f)| (f, None))?;
        let tokens = provider::exchange(&rp, &d, &code, &pending.verifier)
            .map_err(|Failure(f)| (f, None))?;
        let unverified = provider::unverified_claims(&tokens);
        let verified = provider::verify(&rp, d.clone(), tokens, &pending.nonce)
            .map_err(|Failure(f)| (f, unverified))?;
        let mut claims = verified.claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some(at) = verified.access_token.as_deref() {
            let info = provider::userinfo(&d, at, &subject, allow_private)
                .map_err(|Failure(f)| (f, Some(claims.clone())))?;
            // The ID token wins; userinfo fills what it lacks.
            for (k, v) in info.into_iter().flatten() {
                claims.entry(k).or_insert(v);
            }
        }
        Ok(claims)
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("OIDC task: {e}")))?;
    let claims = match outcome {
        Ok(c) => c,
        Err((cause, claims)) => return fail(&state, &c, &attempt, cause, claims, now).await,
    };
    let asserted = asserted(&claims, &cfg);
    if asserted.subject.is_empty() {
        return fail(
            &state,
            &c,
            &attempt,
            "the ID token has no sub claim".into(),
            Some(claims),
            now,
        )
        .await;
    }
    if asserted.email.is_some()
        && cfg.requires_email_verified()
        && !truthy(claims.get("email_verified"))
    {
        return fail(
            &state,
            &c,
            &attempt,
            "email not verified by the IdP (email_verified is not true)".into(),
            Some(claims),
            now,
        )
        .await;
    }

    // An app asked for a new sign-in (prompt=login, max_age, passed on to the IdP): the ID
    // token's auth_time must show the IdP authenticated the user again.
    let fresh =
        crate::provider::grants::fresh_for(&state.db, pending.return_to.clone(), now).await?;
    if let Some(f) = fresh {
        let refusal = match claims.get("auth_time").and_then(Value::as_i64) {
            Some(t) if t + FRESH_SKEW_SECS >= f.not_before => None,
            Some(t) => Some(format!(
                "the app asked for a new sign-in, but the IdP's auth_time ({}) is older than that request: the IdP answered from its session",
                crate::clock::rfc3339(t)
            )),
            None => Some("the app asked for a new sign-in, but the ID token has no auth_time".into()),
        };
        if let Some(cause) = refusal {
            return fail(&state, &c, &attempt, cause, Some(claims), now).await;
        }
    }

    let (conn_id, org_id) = (c.id.clone(), c.org_id.clone());
    // The settings the response was checked against (a test counts only for them).
    let validated_config = c.config.clone();
    let hd = string_claim(&claims, "hd");
    let needs_hd = cfg.requires_hosted_domain();
    let return_to = pending.return_to;
    let test = pending.test;
    let is_test = test.is_some();
    let test_return = return_to.clone();
    let audit_claims = claims.clone();
    let result = state
        .db
        .run(move |conn| -> Result<Result<String, String>, AppError> {
            write_tx(conn, |conn: &mut DbConn| -> Result<Result<String, String>, IdentityError> {
                let org = orgs::get(conn, &org_id)?;
                if needs_hd {
                    let verified: Vec<String> = domains::list(conn, &org.id)?
                        .into_iter()
                        .filter(|d| d.verified)
                        .map(|d| d.domain)
                        .collect();
                    match &hd {
                        None => return Ok(Err("the Google account is not a Workspace account (no hd claim)".into())),
                        Some(h) if !verified.iter().any(|d| d.eq_ignore_ascii_case(h)) => {
                            return Ok(Err(format!("Google Workspace domain (hd) {h} is not a verified domain of this organization")))
                        }
                        _ => {}
                    }
                }
                if let Some(test_session) = &test {
                    return Ok(handoff::test_sign_in(conn, &org.id, &conn_id, &validated_config, "oidc", &asserted, json!({"claims": audit_claims}), test_session.as_deref(), now)?.map(|()| String::new()));
                }
                handoff::verified_sign_in(
                    conn,
                    &org,
                    &conn_id,
                    "oidc",
                    "oidc",
                    &asserted,
                    json!({"claims": audit_claims}),
                    return_to.as_deref(),
                    now,
                )
            })
            .map_err(AppError::from)
        })
        .await?;
    match result {
        Ok(_) if is_test => Ok(HttpResponse::SeeOther()
            .insert_header((
                "location",
                test_return.unwrap_or_else(|| "/sso/admin".into()),
            ))
            .insert_header(("cache-control", "no-store"))
            .finish()),
        Ok(token) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", handoff::COMPLETE_URL))
            .insert_header(("cache-control", "no-store"))
            .cookie(handoff::cookie(&state.settings, token))
            .finish()),
        Err(cause) => fail(&state, &c, &attempt, cause, Some(claims), now).await,
    }
}
