//! `/sso/breakglass`: an org's break-glass accounts sign in with password + TOTP (each code
//! once), whatever the org's SSO enforcement and whether its IdP answers. No other account can
//! use this page. Back-off per (account, client address), never a lockout; every use is
//! audited as a warning and POSTed to the alert webhook when one is configured.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::session::{self, Subject};
use super::{backoff, csrf, totp};
use crate::audit::{self, Event, Outcome};
use crate::db::ids::OrgId;
use crate::db::write_tx;
use crate::domain::Email;
use crate::http::errors::{AppError, PageError};
use crate::http::pages::render;
use crate::identity::{breakglass, orgs, IdentityError};
use crate::startup::AppState;

const REFUSED: &str = "Those details do not match a break-glass account.";

#[derive(Template)]
#[template(path = "login/breakglass.html")]
struct BreakglassPage<'a> {
    csrf: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    reference: String,
}

fn page_with(
    state: &AppState,
    req: &HttpRequest,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let (token, cookie) = csrf::ensure(req, &state.settings);
    let mut res = render(
        status,
        &BreakglassPage {
            csrf: &token,
            email,
            error,
            reference: super::password_login::reference(),
        },
    );
    if let Some(c) = cookie {
        let _ = res.add_cookie(&c);
    }
    res.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    res
}

/// `GET /sso/breakglass`
pub async fn page(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    page_with(&state, &req, "", None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct BreakglassForm {
    email: String,
    password: SecretString,
    code: String,
    csrf: String,
}

/// `POST /sso/breakglass`
pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<BreakglassForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    csrf::require_sign_in_form(&req, &state.settings, &form.csrf)?;
    let email = Email::parse(&form.email).ok();
    let shown = email.as_ref().map(|e| e.to_string()).unwrap_or_default();
    let folded = email.as_ref().map(|e| e.folded()).unwrap_or_default();
    let backoff_key = backoff::key("breakglass", &folded, &req);
    if let Some(wait) = state.backoff.wait(&backoff_key) {
        return Err(AppError::TooManyRequests { retry_after: wait }.into());
    }
    let lookup = folded.clone();
    let candidates = state
        .db
        .run(move |conn| {
            if lookup.is_empty() {
                return Ok(Vec::new());
            }
            breakglass::candidates(conn, &lookup).map_err(AppError::from)
        })
        .await?;
    let hashes = candidates
        .iter()
        .filter_map(|(u, _)| u.password_hash.clone())
        .collect();
    let matched = state.passwords.verify_any(hashes, form.password).await?;
    let now = crate::clock::now();
    let ip = crate::http::client::client_ip_text(&req, &state.settings.trusted_proxies);
    let refuse = |org: Option<OrgId>, reason: &'static str| {
        let event = Event::new(
            org.as_ref(),
            format!("anonymous:{shown}"),
            "login.breakglass",
        )
        .outcome(Outcome::Failure)
        .payload(json!({"email": shown, "reason": reason, "ip": ip}));
        (event, reason)
    };

    let Some((user, sealed)) = matched.and_then(|i| candidates.get(i).cloned()) else {
        let (event, _) = refuse(
            candidates.first().map(|(u, _)| u.org_id.clone()),
            if candidates.is_empty() {
                "not a break-glass account"
            } else {
                "wrong password"
            },
        );
        state.backoff.record(&backoff_key, false);
        state
            .db
            .run(move |conn| audit::record(conn, &event, now).map_err(AppError::from))
            .await?;
        return Ok(page_with(
            &state,
            &req,
            &shown,
            Some(REFUSED),
            StatusCode::UNAUTHORIZED,
        ));
    };

    let key = state.key.clone();
    let previous = session::cookie_hash(&req, &state.settings);
    let (user_id, org_id) = (user.id.clone(), user.org_id.clone());
    let code = form.code;
    let (failed_wrong, _) = refuse(Some(org_id.clone()), "wrong TOTP code");
    let (failed_reused, _) = refuse(Some(org_id.clone()), "TOTP code already used");
    let success = Event::new(Some(&org_id), format!("user:{user_id}"), "login.breakglass")
        .outcome(Outcome::Warning)
        .payload(json!({"user_name": user.user_name, "ip": ip}));
    let result = state
        .db
        .run(move |conn| {
            write_tx(
                conn,
                |conn| -> Result<Option<(String, String)>, IdentityError> {
                    let seed = key
                        .open(&sealed, &breakglass::totp_context(&user_id))
                        .map_err(anyhow::Error::from)?;
                    let step = totp::matching_step(&seed, &code, now.max(0) as u64);
                    let accepted = match step {
                        Some(step) => breakglass::consume_totp_step(conn, &user_id, step)?,
                        None => false,
                    };
                    if !accepted {
                        let event = if step.is_some() {
                            failed_reused
                        } else {
                            failed_wrong
                        };
                        audit::record(conn, &event, now)?;
                        return Ok(None);
                    }
                    let org = orgs::get(conn, &org_id)?;
                    let id = session::create(
                        conn,
                        Subject::User(&user, &org),
                        "breakglass",
                        None,
                        previous.as_deref(),
                        now,
                    )?;
                    audit::record(conn, &success, now)?;
                    Ok(Some((id, org.slug)))
                },
            )
            .map_err(AppError::from)
        })
        .await?;
    state.backoff.record(&backoff_key, result.is_some());
    let Some((cookie_value, org_slug)) = result else {
        return Ok(page_with(
            &state,
            &req,
            &shown,
            Some(REFUSED),
            StatusCode::UNAUTHORIZED,
        ));
    };
    alert(&state, &org_slug, &shown, &ip, now);
    // Straight to the org's admin pages: relaxing enforcement or fixing the connection is
    // what emergency access is for.
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", format!("/sso/admin/orgs/{org_slug}")))
        .cookie(session::session_cookie(&state.settings, cookie_value))
        .finish())
}

/// POSTs the break-glass use to the alert webhook (guarded client, in the background); a
/// failed delivery is audited.
fn alert(state: &web::Data<AppState>, org: &str, email: &str, ip: &str, now: i64) {
    let Some(url) = state.settings.alert_webhook.clone() else {
        return;
    };
    let body = json!({
        "event": "breakglass.sign_in",
        "org": org,
        "account": email,
        "ip": ip,
        "at": crate::clock::rfc3339(now),
        "text": format!("Break-glass account {email} of org {org} signed in from {ip}"),
    });
    let state = state.clone();
    actix_web::rt::spawn(async move {
        let allow_private = state.settings.outbound_allow_private;
        let target = url.to_string();
        let sent = web::block(move || {
            crate::outbound::send(
                crate::outbound::Request {
                    method: reqwest::Method::POST,
                    url: &target,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: Some(body.to_string().into_bytes()),
                },
                allow_private,
            )
        })
        .await;
        let problem = match sent {
            Ok(Ok(res)) if (200..300).contains(&res.status) => None,
            Ok(Ok(res)) => Some(format!("HTTP status {}", res.status)),
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem {
            tracing::warn!(%problem, "break-glass alert webhook failed");
            let event = Event::new(None, "gatehouse", "alert.webhook")
                .outcome(Outcome::Failure)
                .payload(json!({"host": url.host_str(), "problem": problem}));
            let _ = state
                .db
                .run(move |conn| audit::record(conn, &event, now).map_err(AppError::from))
                .await;
        }
    });
}
