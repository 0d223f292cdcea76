//! The password sign-in: local accounts, and instance admins (password, then TOTP). Unknown
//! e-mails and wrong passwords get the same page and status, after the same argon2 work.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::session::{self, Subject};
use super::{csrf, return_to, totp};
use crate::audit::{self, Event, Outcome};
use crate::clock;
use crate::db::ids::AdminId;
use crate::db::write_tx;
use crate::domain::Email;
use crate::http::errors::{AppError, PageError};
use crate::http::pages::render;
use crate::identity::{admins, orgs, users, IdentityError};
use crate::startup::AppState;

const TOTP_PENDING_CONTEXT: &str = "login:totp-pending";
const TOTP_PENDING_SECS: i64 = 300;
const WRONG_CREDENTIALS: &str = "That e-mail and password do not match an account.";

#[derive(Template)]
#[template(path = "login/password.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    email: &'a str,
    return_to: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "login/totp.html")]
struct TotpPage<'a> {
    csrf: &'a str,
    pending: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct PageQuery {
    return_to: Option<String>,
}

/// `GET /sso/login`
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<PageQuery>,
) -> HttpResponse {
    let return_to = return_to::safe_local_path(q.return_to.as_deref()).unwrap_or_default();
    login_page(&state, &req, "", &return_to, None, StatusCode::OK)
}

fn login_page(
    state: &AppState,
    req: &HttpRequest,
    email: &str,
    return_to: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let (token, cookie) = csrf::ensure(req, &state.settings);
    let mut res = render(
        status,
        &LoginPage {
            csrf: &token,
            email,
            return_to,
            error,
        },
    );
    if let Some(c) = cookie {
        let _ = res.add_cookie(&c);
    }
    no_store(res)
}

fn no_store(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    res
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    #[serde(default)]
    password: Option<SecretString>,
    csrf: String,
    return_to: Option<String>,
}

/// The admin who passed the password step, sealed into the TOTP form.
#[derive(Serialize, Deserialize)]
struct PendingTotp {
    admin: AdminId,
    exp: i64,
    return_to: Option<String>,
}

/// `POST /sso/login`
pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    if !csrf::verify(&req, &state.settings, &form.csrf) {
        return Err(AppError::BadRequest(
            "This sign-in form expired. Go back, reload the page and try again.".into(),
        )
        .into());
    }
    let return_to = return_to::safe_local_path(form.return_to.as_deref());
    let email = Email::parse(&form.email).ok();
    let folded = email.as_ref().map(|e| e.folded());
    let password = form
        .password
        .filter(|p| !secrecy::ExposeSecret::expose_secret(p).is_empty());
    // No password: home realm discovery by the e-mail's domain only (never by whether the
    // account exists). A verified domain with an SSO connection goes to that IdP.
    let Some(password) = password else {
        let domain = email
            .as_ref()
            .map(|e| e.domain().to_string())
            .unwrap_or_default();
        let found = state
            .db
            .run(move |conn| {
                crate::sso::connections::for_verified_domain(conn, &domain).map_err(AppError::from)
            })
            .await?;
        if let Some(c) = found.first() {
            let mut location = format!("/sso/{}/{}/login", c.kind, c.id);
            if let Some(r) = &return_to {
                location.push_str("?return_to=");
                location.push_str(
                    &url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>(),
                );
            }
            return Ok(HttpResponse::SeeOther()
                .insert_header(("location", location))
                .finish());
        }
        let shown = email.as_ref().map(|e| e.to_string()).unwrap_or_default();
        return Ok(login_page(
            &state,
            &req,
            &shown,
            return_to.as_deref().unwrap_or(""),
            Some("Enter your password to sign in."),
            StatusCode::OK,
        ));
    };
    let lookup_key = folded.clone().unwrap_or_default();
    let (admin, candidates, refused) = state
        .db
        .run(move |conn| -> Result<_, IdentityError> {
            if lookup_key.is_empty() {
                return Ok((None, Vec::new(), Vec::new()));
            }
            let admin = admins::find_by_email(conn, &lookup_key)?;
            if admin.is_some() {
                return Ok((admin, Vec::new(), Vec::new()));
            }
            // SSO enforcement and break-glass accounts are decided before any password is
            // checked: such accounts never sign in here (the work is the same either way).
            let mut allowed = Vec::new();
            let mut refused = Vec::new();
            for u in users::password_candidates(conn, &lookup_key)? {
                let org = orgs::get(conn, &u.org_id)?;
                let enforced: Vec<String> = crate::identity::domains::list(conn, &u.org_id)?
                    .into_iter()
                    .filter(|d| d.enforce)
                    .map(|d| d.domain)
                    .collect();
                let ok = !u.is_break_glass
                    && crate::identity::enforcement::password_allowed(
                        org.enforcement(),
                        &enforced,
                        false,
                        u.email.as_deref(),
                    );
                if ok {
                    allowed.push(u);
                } else {
                    refused.push(u);
                }
            }
            Ok((None, allowed, refused))
        })
        .await
        .map_err(AppError::from)?;
    let hashes: Vec<String> = match &admin {
        Some(a) => vec![a.password_hash.clone()],
        None => candidates
            .iter()
            .filter_map(|u| u.password_hash.clone())
            .collect(),
    };
    let matched = state.passwords.verify_any(hashes, password).await?;
    let now = clock::now();

    if let (Some(admin), Some(_)) = (&admin, matched) {
        let pending = PendingTotp {
            admin: admin.id.clone(),
            exp: now + TOTP_PENDING_SECS,
            return_to: return_to.clone(),
        };
        let sealed = state.key.seal(
            serde_json::to_string(&pending)
                .map_err(anyhow::Error::from)?
                .as_bytes(),
            TOTP_PENDING_CONTEXT,
        );
        let (token, cookie) = csrf::ensure(&req, &state.settings);
        let mut res = render(
            StatusCode::OK,
            &TotpPage {
                csrf: &token,
                pending: &sealed,
                error: None,
            },
        );
        if let Some(c) = cookie {
            let _ = res.add_cookie(&c);
        }
        return Ok(no_store(res));
    }

    let user = matched.and_then(|i| candidates.get(i).cloned());
    let shown_email = email.as_ref().map(|e| e.to_string()).unwrap_or_default();
    let Some(user) = user.clone().filter(|u| u.active) else {
        // Audit under the org of the account when there is one (its admins can act), else
        // under the instance. The typed e-mail is kept, never the password.
        let org = candidates
            .first()
            .or(refused.first())
            .map(|u| u.org_id.clone());
        let reason = match (&user, candidates.is_empty() && admin.is_none()) {
            (Some(_), _) => "account deactivated",
            (None, true) if !refused.is_empty() => {
                "password sign-in refused: the organization requires SSO for this account (or it is a break-glass account)"
            }
            (None, true) => "no account with a password for this e-mail",
            (None, false) => "wrong password",
        };
        let event = Event::new(
            org.as_ref(),
            format!("anonymous:{shown_email}"),
            "login.password",
        )
        .outcome(Outcome::Failure)
        .payload(json!({"email": shown_email, "reason": reason}));
        state
            .db
            .run(move |conn| audit::record(conn, &event, now).map_err(AppError::from))
            .await?;
        return Ok(login_page(
            &state,
            &req,
            &shown_email,
            return_to.as_deref().unwrap_or(""),
            Some(WRONG_CREDENTIALS),
            StatusCode::UNAUTHORIZED,
        ));
    };

    let previous = session::cookie_hash(&req, &state.settings);
    let event = Event::new(
        Some(&user.org_id),
        format!("user:{}", user.id),
        "login.password",
    )
    .payload(json!({"user_name": user.user_name}));
    let cookie_value = state
        .db
        .run(move |conn| {
            write_tx(conn, |conn| -> Result<String, IdentityError> {
                let org = orgs::get(conn, &user.org_id)?;
                let id = session::create(
                    conn,
                    Subject::User(&user, &org),
                    "password",
                    previous.as_deref(),
                    now,
                )?;
                audit::record(conn, &event, now)?;
                Ok(id)
            })
            .map_err(AppError::from)
        })
        .await?;
    Ok(signed_in_redirect(&state, cookie_value, return_to))
}

fn signed_in_redirect(
    state: &AppState,
    cookie_value: String,
    return_to: Option<String>,
) -> HttpResponse {
    let name = session::cookie_name(&state.settings);
    let cookie = session::build_cookie(&state.settings, name, cookie_value);
    HttpResponse::SeeOther()
        .insert_header(("location", return_to.unwrap_or_else(|| "/sso/me".into())))
        .cookie(cookie)
        .finish()
}

/// Back-off on wrong TOTP codes per (admin, client address): after 5 failures each further
/// attempt waits 2^(n-5) s (at most 15 min) since the last one. It slows guessing to a crawl
/// without a lockout someone else could trigger from another address.
static TOTP_FAILURES: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
> = std::sync::OnceLock::new();
const TOTP_FREE_ATTEMPTS: u32 = 5;

fn totp_wait(key: &str) -> Option<u64> {
    let map = TOTP_FAILURES.get_or_init(Default::default).lock().ok()?;
    let (n, at) = map.get(key)?;
    if *n < TOTP_FREE_ATTEMPTS {
        return None;
    }
    let wait = 2u64.saturating_pow(n - TOTP_FREE_ATTEMPTS).min(900);
    let elapsed = at.elapsed().as_secs();
    (elapsed < wait).then(|| wait - elapsed)
}

fn totp_result(key: &str, ok: bool) {
    if let Ok(mut map) = TOTP_FAILURES.get_or_init(Default::default).lock() {
        if ok {
            map.remove(key);
        } else {
            let e = map
                .entry(key.to_string())
                .or_insert((0, std::time::Instant::now()));
            e.0 += 1;
            e.1 = std::time::Instant::now();
        }
    }
}

#[derive(Deserialize)]
pub struct TotpForm {
    pending: String,
    code: String,
    csrf: String,
}

/// `POST /sso/login/totp`: the instance admin's second step.
pub async fn submit_totp(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<TotpForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    if !csrf::verify(&req, &state.settings, &form.csrf) {
        return Err(AppError::BadRequest(
            "This sign-in form expired. Go back, reload the page and try again.".into(),
        )
        .into());
    }
    let now = clock::now();
    let expired = || {
        PageError(AppError::BadRequest(
            "This sign-in step expired. Start again from the sign-in page.".into(),
        ))
    };
    let pending: PendingTotp = state
        .key
        .open(&form.pending, TOTP_PENDING_CONTEXT)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(expired)?;
    if pending.exp < now {
        return Err(expired());
    }
    let peer = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let backoff_key = format!("{}|{peer}", pending.admin);
    if let Some(wait) = totp_wait(&backoff_key) {
        return Err(AppError::TooManyRequests { retry_after: wait }.into());
    }
    let key = state.key.clone();
    let code = form.code;
    let admin_id = pending.admin.clone();
    let previous = session::cookie_hash(&req, &state.settings);
    let mut success = Event::new(None, format!("admin:{admin_id}"), "login.admin");
    let mut failure = success.clone().outcome(Outcome::Failure);
    let result = state
        .db
        .run(move |conn| {
            write_tx(conn, |conn| -> Result<Option<String>, IdentityError> {
                let admin = admins::get(conn, &admin_id)?
                    .ok_or_else(|| IdentityError::NotFound("admin".into()))?;
                let seed = key
                    .open(&admin.totp_secret_enc, &admins::totp_context(&admin.id))
                    .map_err(anyhow::Error::from)?;
                let step = totp::matching_step(&seed, &code, now.max(0) as u64);
                let accepted = match step {
                    Some(step) => admins::consume_totp_step(conn, &admin.id, step)?,
                    None => false,
                };
                if !accepted {
                    let reason = if step.is_some() {
                        "TOTP code already used"
                    } else {
                        "wrong TOTP code"
                    };
                    failure.payload = json!({"email": admin.email, "reason": reason});
                    audit::record(conn, &failure, now)?;
                    return Ok(None);
                }
                let id = session::create(
                    conn,
                    Subject::Admin(&admin),
                    "password+totp",
                    previous.as_deref(),
                    now,
                )?;
                success.payload = json!({"email": admin.email});
                audit::record(conn, &success, now)?;
                Ok(Some(id))
            })
            .map_err(AppError::from)
        })
        .await?;
    totp_result(&backoff_key, result.is_some());
    match result {
        Some(cookie_value) => Ok(signed_in_redirect(&state, cookie_value, pending.return_to)),
        None => {
            let (token, cookie) = csrf::ensure(&req, &state.settings);
            let mut res = render(
                StatusCode::UNAUTHORIZED,
                &TotpPage {
                    csrf: &token,
                    pending: &form.pending,
                    error: Some("That code is not valid. Wait for the next code and try again."),
                },
            );
            if let Some(c) = cookie {
                let _ = res.add_cookie(&c);
            }
            Ok(no_store(res))
        }
    }
}
