//! The authorization endpoint (`/sso/oauth2/authorize`, GET and POST): authorization code
//! flow only. An unknown client or an unregistered `redirect_uri` gets an error page, never a
//! redirect; every other error goes back to the registered redirect URI per RFC 6749
//! §4.1.2.1, with `state` and `iss` (RFC 9207). A live gatehouse session is reused (single
//! sign-on across apps) unless `prompt=login` or `max_age` asks for a newer sign-in;
//! otherwise the request waits in the database while the browser signs in the usual way
//! (every sign-in rule applies) and comes back to `/sso/oauth2/continue/{id}`.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde_json::json;

use crate::audit::{self, Event, Outcome};
use crate::db::DbConn;
use crate::domain::Email;
use crate::http::errors::{AppError, PageError};
use crate::http::pages::render_error_page;
use crate::identity::{orgs, IdentityError};
use crate::login::session::{Principal, SignedIn};
use crate::provider::apps::{self, App};
use crate::provider::grants::{self, AuthRequest, REQUEST_LIFETIME_SECS};
use crate::provider::issuer;
use crate::sso::connections;
use crate::startup::AppState;

/// Scopes gatehouse knows; others asked for are left out of the grant.
pub const SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];
/// Longest `state` and `nonce` kept.
const MAX_STATE: usize = 2048;

/// What an authorization answers (built off the async workers, so not yet a response).
pub enum Answer {
    Page(&'static str, String),
    Redirect(String),
    /// "Continue to <app> as <user>?" (a native app on a loopback address).
    Confirm {
        app: String,
        user: String,
        csrf: String,
        action: String,
    },
}

#[derive(askama::Template)]
#[template(path = "provider/continue.html")]
struct ConfirmPage<'a> {
    app: &'a str,
    user: &'a str,
    csrf: &'a str,
    action: &'a str,
}

impl Answer {
    fn response(self) -> HttpResponse {
        match self {
            Answer::Page(title, message) => crate::admin::once::no_store(render_error_page(
                StatusCode::BAD_REQUEST,
                title,
                &message,
            )),
            Answer::Redirect(location) => HttpResponse::SeeOther()
                .insert_header(("location", location))
                .insert_header(("cache-control", "no-store"))
                .finish(),
            Answer::Confirm {
                app,
                user,
                csrf,
                action,
            } => crate::admin::once::no_store(crate::http::pages::render(
                StatusCode::OK,
                &ConfirmPage {
                    app: &app,
                    user: &user,
                    csrf: &csrf,
                    action: &action,
                },
            )),
        }
    }
}

fn error_page(message: &str) -> Answer {
    Answer::Page("This sign-in cannot start", message.to_string())
}

/// The redirect back to the app: `pairs`, then `state` and `iss` (RFC 9207).
fn back_to_app(
    state: &AppState,
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    app_state: Option<&str>,
) -> Answer {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page("The app's redirect URI is not valid.");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        if let Some(s) = app_state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", &issuer(&state.settings));
    }
    Answer::Redirect(url.to_string())
}

/// The redirect back to the app with an error (RFC 6749 §4.1.2.1).
fn error_redirect(
    state: &AppState,
    redirect_uri: &str,
    app_state: Option<&str>,
    error: &str,
    description: &str,
) -> Answer {
    back_to_app(
        state,
        redirect_uri,
        &[("error", error), ("error_description", description)],
        app_state,
    )
}

fn see_other(location: &str) -> Answer {
    Answer::Redirect(location.to_string())
}

/// `GET /sso/oauth2/authorize`
pub async fn authorize_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    authorize(state, req, query.into_inner()).await
}

/// `POST /sso/oauth2/authorize` (form-encoded, OIDC Core §3.1.2.1)
pub async fn authorize_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    authorize(state, req, form.into_inner()).await
}

/// What a valid request asks for, before any session is looked at.
struct Asked {
    app: App,
    request: AuthRequest,
    prompt_none: bool,
    login_hint: Option<String>,
    domain_hint: Option<String>,
    organization: Option<String>,
}

/// Checks the request; `Err` is the answer (an error page or an error redirect).
fn check(
    state: &AppState,
    conn: &mut DbConn,
    params: HashMap<String, String>,
    now: i64,
) -> Result<Result<Asked, Answer>, IdentityError> {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let Some(client_id) = get("client_id") else {
        return Ok(Err(error_page(
            "The app did not say which app it is (client_id is missing).",
        )));
    };
    let Some(app) = apps::by_client_id(conn, client_id)?.filter(|a| a.enabled) else {
        return Ok(Err(error_page(
            "The app that sent you here is not registered with gatehouse, or it is disabled. Tell the app's administrators.",
        )));
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return Ok(Err(error_page(
            "The app did not say where to send you back (redirect_uri is missing).",
        )));
    };
    if !app.accepts_redirect(redirect_uri) {
        return Ok(Err(error_page(
            "The app asked to send you back to an address it has not registered. Tell the app's administrators.",
        )));
    }
    let app_state = get("state").map(str::to_string);
    let fail = |error: &str, description: &str| {
        Ok(Err(error_redirect(
            state,
            redirect_uri,
            app_state.as_deref(),
            error,
            description,
        )))
    };
    if params.contains_key("request") {
        return fail("request_not_supported", "request objects are not supported");
    }
    if params.contains_key("request_uri") {
        return fail("request_uri_not_supported", "request_uri is not supported");
    }
    match get("response_type") {
        Some("code") => {}
        None => return fail("invalid_request", "response_type is missing"),
        Some(_) => {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            )
        }
    }
    if !matches!(get("response_mode"), None | Some("query")) {
        return fail("invalid_request", "only response_mode=query is supported");
    }
    let asked: Vec<&str> = get("scope").unwrap_or_default().split(' ').collect();
    if !asked.contains(&"openid") {
        return fail("invalid_scope", "the scope must include openid");
    }
    let scope = SCOPES
        .iter()
        .filter(|s| asked.contains(s))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let challenge = get("code_challenge");
    match (challenge, get("code_challenge_method")) {
        (Some(c), Some("S256")) if grants::valid_pkce_value(c) => {}
        (Some(_), Some("S256")) => {
            return fail(
                "invalid_request",
                "code_challenge is not a valid S256 challenge",
            )
        }
        (Some(_), _) => {
            return fail(
                "invalid_request",
                "only code_challenge_method=S256 is supported",
            )
        }
        (None, Some(_)) => return fail("invalid_request", "code_challenge is missing"),
        (None, None) if app.public => {
            return fail(
                "invalid_request",
                "this app must use PKCE (code_challenge with S256)",
            )
        }
        (None, None) => {}
    }
    let prompts: Vec<&str> = get("prompt")
        .unwrap_or_default()
        .split(' ')
        .filter(|p| !p.is_empty())
        .collect();
    if prompts
        .iter()
        .any(|p| !matches!(*p, "none" | "login" | "consent" | "select_account"))
    {
        return fail("invalid_request", "unknown prompt value");
    }
    let prompt_none = prompts.contains(&"none");
    if prompt_none && prompts.len() > 1 {
        return fail("invalid_request", "prompt=none cannot be combined");
    }
    let mut fresh_after = None;
    let mut new_sign_in = prompts.contains(&"login") || prompts.contains(&"select_account");
    if let Some(m) = get("max_age") {
        let Ok(max_age) = m.parse::<u32>() else {
            return fail("invalid_request", "max_age must be a number of seconds");
        };
        fresh_after = Some(now - i64::from(max_age));
        new_sign_in |= max_age == 0;
    }
    if new_sign_in {
        fresh_after = Some(now);
    }
    let nonce = get("nonce").map(str::to_string);
    if nonce.as_ref().is_some_and(|n| n.len() > MAX_STATE)
        || app_state.as_ref().is_some_and(|s| s.len() > MAX_STATE)
    {
        return fail("invalid_request", "state or nonce is too long");
    }
    let request = AuthRequest {
        id_hash: String::new(),
        app_id: app.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        scope,
        state: app_state.clone(),
        nonce,
        code_challenge: challenge.map(str::to_string),
        fresh_after,
        // Filled in by the caller, who knows the browser's session.
        stale_session_hash: new_sign_in.then(String::new),
        // Filled in by the caller too.
        browser_hash: String::new(),
        created_at: now,
        expires_at: now + REQUEST_LIFETIME_SECS,
        consumed_at: None,
    };
    Ok(Ok(Asked {
        app,
        request,
        prompt_none,
        login_hint: get("login_hint").map(str::to_string),
        domain_hint: get("domain_hint").map(str::to_string),
        organization: get("organization").map(str::to_string),
    }))
}

/// A user's session that is new enough for the request: signed in after `fresh_after`, and
/// for prompt=login not the session the browser already had when the app asked.
fn usable(signed: Option<&SignedIn>, request: &AuthRequest) -> bool {
    signed.is_some_and(|s| {
        matches!(s.principal, Principal::User { .. })
            && request.fresh_after.is_none_or(|f| s.created_at >= f)
            && request
                .stale_session_hash
                .as_ref()
                .is_none_or(|stale| !stale.is_empty() && *stale != s.id_hash)
    })
}

/// Issues the code for a usable session (or refuses a user of an org the app is closed to).
fn finish(
    state: &AppState,
    conn: &mut DbConn,
    app: &App,
    signed: &SignedIn,
    request: &AuthRequest,
    now: i64,
) -> Result<Answer, IdentityError> {
    let Principal::User { user, org } = &signed.principal else {
        return Ok(error_page("Sign in as a user to continue."));
    };
    if !app.allows_org(&org.id) {
        let event = Event::new(
            Some(&org.id),
            format!("user:{}", user.id),
            "oauth.authorize",
        )
        .outcome(Outcome::Failure)
        .payload(json!({"app": app.slug, "cause": "the app is not open to the user's org"}));
        audit::record(conn, &event, now)?;
        return Ok(error_redirect(
            state,
            &request.redirect_uri,
            request.state.as_deref(),
            "access_denied",
            "this app is not available to your organization",
        ));
    }
    let (grant, code) = grants::issue_code(conn, app, signed, request, now)?;
    let event = Event::new(
        Some(&org.id),
        format!("user:{}", user.id),
        "oauth.authorize",
    )
    .payload(json!({
        "app": app.slug, "grant": grant.id, "scope": grant.scope,
        "auth_method": grant.auth_method, "session_reused": signed.created_at < request.created_at,
    }));
    audit::record(conn, &event, now)?;
    Ok(back_to_app(
        state,
        &request.redirect_uri,
        &[("code", &code)],
        request.state.as_deref(),
    ))
}

/// The cookie that ties a waiting request to the browser that started it.
fn browser_cookie_name(settings: &crate::config::Settings) -> &'static str {
    if settings.is_https() {
        "__Host-gatehouse_op_browser"
    } else {
        "gatehouse_op_browser"
    }
}

async fn authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    pairs: Vec<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let cookie = browser_cookie_name(&state.settings);
    let existing = req
        .cookie(cookie)
        .map(|c| c.value().to_string())
        .filter(|v| v.len() >= 43);
    let browser = existing
        .clone()
        .unwrap_or_else(|| crate::crypto::random_token(32));
    let browser_hash = crate::crypto::sha256_hex(&browser);
    let params = match crate::provider::token::single_params(pairs) {
        Ok(p) => p,
        Err(e) => {
            return Ok(
                error_page(&format!("The app's sign-in request is not valid: {e}.")).response(),
            )
        }
    };
    let signed = SignedIn::extract(&req).await.ok();
    let now = crate::clock::now();
    let st = state.clone();
    let answer = state
        .db
        .write(move |conn| -> Result<Answer, AppError> {
            let mut asked = match check(&st, conn, params, now)? {
                Ok(a) => a,
                Err(res) => return Ok(res),
            };
            if let Some(stale) = asked.request.stale_session_hash.as_mut() {
                // prompt=login: whatever session the browser has now must not answer.
                *stale = signed
                    .as_ref()
                    .map(|s| s.id_hash.clone())
                    .unwrap_or_else(|| "-".into());
            } else if usable(signed.as_ref(), &asked.request) {
                let native = asked.app.loopback_redirect(&asked.request.redirect_uri);
                match &signed {
                    Some(s) if !native => {
                        return Ok(finish(&st, conn, &asked.app, s, &asked.request, now)?);
                    }
                    // A native app: the user confirms on the continue page.
                    _ if asked.prompt_none => {
                        return Ok(error_redirect(
                            &st,
                            &asked.request.redirect_uri,
                            asked.request.state.as_deref(),
                            "interaction_required",
                            "the user must confirm the sign-in to this app",
                        ));
                    }
                    _ => {
                        asked.request.browser_hash = browser_hash;
                        let id = grants::save_request(conn, asked.request)?;
                        return Ok(see_other(&format!("/sso/oauth2/continue/{id}")));
                    }
                }
            }
            if asked.prompt_none {
                return Ok(error_redirect(
                    &st,
                    &asked.request.redirect_uri,
                    asked.request.state.as_deref(),
                    "login_required",
                    "the user is not signed in",
                ));
            }
            asked.request.browser_hash = browser_hash;
            let id = grants::save_request(conn, asked.request)?;
            let back = format!("/sso/oauth2/continue/{id}");
            Ok(see_other(&sign_in_url(
                conn,
                &asked.login_hint,
                &asked.domain_hint,
                &asked.organization,
                &back,
            )?))
        })
        .await?;
    let mut res = answer.response();
    if existing.is_none() {
        let mut c = crate::login::session::build_cookie(&state.settings, cookie, browser);
        // It carries no authority: sent on cross-site POSTs too (an app's form-posted
        // request must not replace it and strand the browser's other waiting sign-ins).
        if state.settings.is_https() {
            c.set_same_site(actix_web::cookie::SameSite::None);
        }
        let _ = res.add_cookie(&c);
    }
    Ok(res)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Where the browser signs in: straight to the IdP when the hint names a domain or org with
/// exactly one live connection (home-realm discovery), else the e-mail-first page.
fn sign_in_url(
    conn: &mut DbConn,
    login_hint: &Option<String>,
    domain_hint: &Option<String>,
    organization: &Option<String>,
    back: &str,
) -> Result<String, IdentityError> {
    let email = login_hint.as_deref().and_then(|h| Email::parse(h).ok());
    let domain = email
        .as_ref()
        .map(|e| e.domain().as_str().to_string())
        .or_else(|| domain_hint.as_ref().map(|d| d.trim().to_ascii_lowercase()));
    let mut live = Vec::new();
    if let Some(d) = &domain {
        live = connections::for_verified_domain(conn, d)?;
    } else if let Some(slug) = organization {
        if let Ok(org) = orgs::find(conn, slug) {
            live = connections::list(conn, &org.id)?
                .into_iter()
                .filter(|c| c.live())
                .collect();
        }
    }
    if let [only] = live.as_slice() {
        return Ok(format!(
            "/sso/{}/{}/login?return_to={}",
            only.kind,
            only.id,
            enc(back)
        ));
    }
    let mut url = format!("/sso/login?return_to={}", enc(back));
    if let Some(e) = &email {
        url.push_str("&email=");
        url.push_str(&enc(&e.to_string()));
    }
    Ok(url)
}

/// `GET /sso/oauth2/continue/{id}`: back from the sign-in; issues the code.
pub async fn resume(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    resume_with(state, req, path.into_inner(), None).await
}

#[derive(serde::Deserialize)]
pub struct ConfirmForm {
    csrf: String,
}

/// `POST /sso/oauth2/continue/{id}`: the user confirmed a native app's sign-in.
pub async fn confirm(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<ConfirmForm>,
) -> Result<HttpResponse, PageError> {
    resume_with(state, req, path.into_inner(), Some(form.into_inner().csrf)).await
}

async fn resume_with(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: String,
    confirmed: Option<String>,
) -> Result<HttpResponse, PageError> {
    let signed = SignedIn::extract(&req).await.ok();
    let browser_hash = req
        .cookie(browser_cookie_name(&state.settings))
        .map(|c| crate::crypto::sha256_hex(c.value()));
    let now = crate::clock::now();
    let st = state.clone();
    let answer = state
        .db
        .write(move |conn| -> Result<Answer, AppError> {
            let Some(request) = grants::find_request(conn, &id, now)? else {
                return Ok(Answer::Page(
                    "This sign-in has ended",
                    "It was already used or it expired. Go back to the app and sign in again."
                        .into(),
                ));
            };
            if browser_hash.as_deref() != Some(request.browser_hash.as_str()) {
                return Ok(error_page(
                    "This sign-in was started in another browser. Go back to the app and sign in again from here.",
                ));
            }
            let Some(app) = apps::all_by_id(conn, &request.app_id)?.filter(|a| a.enabled) else {
                return Ok(error_page(
                    "The app is no longer registered with gatehouse, or it is disabled.",
                ));
            };
            if !app.accepts_redirect(&request.redirect_uri) {
                return Ok(error_page(
                    "The app no longer accepts sign-ins at the address it asked for. Go back to the app and sign in again.",
                ));
            }
            if !usable(signed.as_ref(), &request) {
                let back = format!("/sso/oauth2/continue/{id}");
                return Ok(see_other(&format!("/sso/login?return_to={}", enc(&back))));
            }
            let Some(signed) = signed else {
                return Ok(error_page("Sign in to continue."));
            };
            if app.loopback_redirect(&request.redirect_uri) {
                match &confirmed {
                    None => {
                        let user = match &signed.principal {
                            Principal::User { user, .. } => user.user_name.clone(),
                            _ => String::new(),
                        };
                        return Ok(Answer::Confirm {
                            app: app.name.clone(),
                            user,
                            csrf: signed.csrf_token.clone(),
                            action: format!("/sso/oauth2/continue/{id}"),
                        });
                    }
                    Some(csrf) if !crate::login::csrf::tokens_equal(&signed.csrf_token, csrf) => {
                        return Ok(error_page(
                            "This confirmation expired. Go back to the app and sign in again.",
                        ));
                    }
                    Some(_) => {}
                }
            }
            if !grants::consume_request(conn, &request.id_hash, now)? {
                return Ok(error_page(
                    "This sign-in was already used. Go back to the app.",
                ));
            }
            Ok(finish(&st, conn, &app, &signed, &request, now)?)
        })
        .await?;
    Ok(answer.response())
}
