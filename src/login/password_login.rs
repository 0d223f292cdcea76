//! The password sign-in: local accounts, and instance admins (password, then TOTP). Unknown
//! e-mails and wrong passwords get the same page and status, after the same argon2 work.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::session::{self, Subject};
use super::{backoff, csrf, return_to, totp};
use crate::audit::{self, Event, Outcome};
use crate::clock;
use crate::db::ids::AdminId;
use crate::db::ids::OrgId;
use crate::db::write_tx;
use crate::domain::Email;
use crate::domain::Enforcement;
use crate::http::errors::{AppError, PageError};
use crate::http::pages::render;
use crate::identity::{admins, domains, orgs, users, IdentityError};
use crate::sso::connections::{self, Connection};
use crate::startup::AppState;

const TOTP_PENDING_CONTEXT: &str = "login:totp-pending";
const TOTP_PENDING_SECS: i64 = 300;
const WRONG_CREDENTIALS: &str = "That e-mail and password do not match an account.";

#[derive(Template)]
#[template(path = "login/email.html")]
struct EmailPage<'a> {
    csrf: &'a str,
    email: &'a str,
    return_to: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "login/password.html")]
struct PasswordPage<'a> {
    csrf: &'a str,
    email: &'a str,
    return_to: &'a str,
    error: Option<&'a str>,
    reference: String,
}

/// A sign-in button of an SSO connection.
pub struct SsoChoice {
    pub name: String,
    pub url: String,
}

#[derive(Template)]
#[template(path = "login/choose.html")]
struct ChoosePage<'a> {
    email: &'a str,
    choices: &'a [SsoChoice],
    password_url: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "login/sso_required.html")]
struct SsoRequiredPage<'a> {
    org: &'a str,
    choices: &'a [SsoChoice],
    break_glass: bool,
    reference: String,
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
    email: Option<String>,
    /// `password`: the password step for `email` (the "use a password instead" link).
    step: Option<String>,
}

/// `GET /sso/login`: one e-mail field (or the password step, from "use a password instead").
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<PageQuery>,
) -> HttpResponse {
    let return_to = return_to::safe(q.return_to.as_deref(), &state.settings.allowed_return_hosts)
        .unwrap_or_default();
    let email = q
        .email
        .as_deref()
        .and_then(|e| Email::parse(e).ok())
        .map(|e| e.to_string());
    match (q.step.as_deref(), email) {
        (Some("password"), Some(email)) => {
            password_page(&state, &req, &email, &return_to, None, StatusCode::OK)
        }
        // An app's `login_hint` (through `/sso/oauth2/authorize`) fills the field in.
        (_, email) => email_page(
            &state,
            &req,
            email.as_deref().unwrap_or(""),
            &return_to,
            None,
            StatusCode::OK,
        ),
    }
}

fn with_csrf<F>(state: &AppState, req: &HttpRequest, status: StatusCode, page: F) -> HttpResponse
where
    F: FnOnce(&str) -> HttpResponse,
{
    let (token, cookie) = csrf::ensure(req, &state.settings);
    let mut res = page(&token);
    *res.status_mut() = status;
    if let Some(c) = cookie {
        let _ = res.add_cookie(&c);
    }
    no_store(res)
}

fn email_page(
    state: &AppState,
    req: &HttpRequest,
    email: &str,
    return_to: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    with_csrf(state, req, status, |csrf| {
        render(
            status,
            &EmailPage {
                csrf,
                email,
                return_to,
                error,
            },
        )
    })
}

fn password_page(
    state: &AppState,
    req: &HttpRequest,
    email: &str,
    return_to: &str,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    with_csrf(state, req, status, |csrf| {
        render(
            status,
            &PasswordPage {
                csrf,
                email,
                return_to,
                error,
                reference: reference(),
            },
        )
    })
}

/// This request's id, shown on refusal pages (the audit event carries the same id).
pub fn reference() -> String {
    crate::http::context::current_request_id().unwrap_or_else(|| "-".into())
}

fn no_store(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    res
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The sign-in buttons of these connections, carrying `return_to`.
pub fn choices(connections: &[Connection], return_to: Option<&str>) -> Vec<SsoChoice> {
    connections
        .iter()
        .map(|c| {
            let mut url = format!("/sso/{}/{}/login", c.kind, c.id);
            if let Some(r) = return_to {
                url.push_str("?return_to=");
                url.push_str(&encode(r));
            }
            SsoChoice {
                name: c.name.clone(),
                url,
            }
        })
        .collect()
}

/// What the e-mail's domain alone decides (never whether an account exists): the SSO
/// connections of the org that verified it, and whether that org requires SSO for it.
struct DomainRoute {
    org_name: String,
    connections: Vec<Connection>,
    enforced: bool,
}

async fn domain_route(state: &AppState, email: Option<&Email>) -> Result<DomainRoute, AppError> {
    let domain = email.map(|e| e.domain().clone());
    state
        .db
        .run(move |conn| -> Result<DomainRoute, IdentityError> {
            let none = DomainRoute {
                org_name: String::new(),
                connections: Vec::new(),
                enforced: false,
            };
            let Some(domain) = domain else {
                return Ok(none);
            };
            let Some(d) = domains::find(conn, &domain)?.filter(|d| d.verified) else {
                return Ok(none);
            };
            let org = orgs::get(conn, &d.org_id)?;
            let enforced = match org.enforcement() {
                Enforcement::Off => false,
                Enforcement::Domains => d.enforce,
                Enforcement::All => true,
            };
            Ok(DomainRoute {
                org_name: org.name,
                connections: connections::for_verified_domain(conn, domain.as_str())?,
                enforced,
            })
        })
        .await
        .map_err(AppError::from)
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

/// Audits a refused password sign-in under the org of the account or domain (its admins can
/// act), else under the instance. The typed e-mail is kept, never the password.
async fn audit_refusal(
    state: &AppState,
    org: Option<OrgId>,
    email: &str,
    reason: &str,
    now: i64,
) -> Result<(), AppError> {
    let event = Event::new(org.as_ref(), format!("anonymous:{email}"), "login.password")
        .outcome(Outcome::Failure)
        .payload(json!({"email": email, "reason": reason}));
    state
        .db
        .run(move |conn| audit::record(conn, &event, now).map_err(AppError::from))
        .await?;
    Ok(())
}

fn sso_required(org: &str, choices: &[SsoChoice], break_glass: bool) -> HttpResponse {
    no_store(render(
        StatusCode::FORBIDDEN,
        &SsoRequiredPage {
            org,
            choices,
            break_glass,
            reference: reference(),
        },
    ))
}

/// `POST /sso/login`
pub async fn submit(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    csrf::require_sign_in_form(&req, &state.settings, &form.csrf)?;
    let return_to = return_to::safe(
        form.return_to.as_deref(),
        &state.settings.allowed_return_hosts,
    );
    let email = Email::parse(&form.email).ok();
    let folded = email.as_ref().map(|e| e.folded());
    let shown_email = email.as_ref().map(|e| e.to_string()).unwrap_or_default();
    let password = form
        .password
        .filter(|p| !secrecy::ExposeSecret::expose_secret(p).is_empty());
    let route = domain_route(&state, email.as_ref()).await?;
    let back = return_to.as_deref().unwrap_or("");

    // No password: routing by the e-mail's domain only (design.md rule 1).
    let Some(password) = password else {
        if email.is_none() {
            return Ok(email_page(
                &state,
                &req,
                &form.email,
                back,
                Some("Enter your work e-mail address."),
                StatusCode::OK,
            ));
        }
        let choices = choices(&route.connections, return_to.as_deref());
        if choices.len() == 1 && route.enforced {
            return Ok(HttpResponse::SeeOther()
                .insert_header(("location", choices[0].url.clone()))
                .finish());
        }
        if !choices.is_empty() {
            let password_url = (!route.enforced).then(|| {
                format!(
                    "/sso/login?step=password&email={}&return_to={}",
                    encode(&shown_email),
                    encode(back)
                )
            });
            return Ok(no_store(render(
                StatusCode::OK,
                &ChoosePage {
                    email: &shown_email,
                    choices: &choices,
                    password_url: password_url.as_deref(),
                },
            )));
        }
        return Ok(password_page(
            &state,
            &req,
            &shown_email,
            back,
            None,
            StatusCode::OK,
        ));
    };

    let lookup_key = folded.clone().unwrap_or_default();
    let backoff_key = backoff::key("password", &lookup_key, &req);
    if let Some(wait) = state.backoff.wait(&backoff_key) {
        return Err(AppError::TooManyRequests { retry_after: wait }.into());
    }
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
            // checked; their passwords are still checked (same work), and only a correct one
            // learns why it cannot be used here.
            let mut allowed = Vec::new();
            let mut refused = Vec::new();
            for u in users::password_candidates(conn, &lookup_key)? {
                let org = orgs::get(conn, &u.org_id)?;
                let enforced: Vec<String> = domains::list(conn, &u.org_id)?
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
                    let choices = connections::list(conn, &u.org_id)?
                        .into_iter()
                        .filter(|c| c.live())
                        .collect::<Vec<_>>();
                    refused.push((u, org.name, choices));
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
            .chain(refused.iter().map(|(u, _, _)| u))
            .filter_map(|u| u.password_hash.clone())
            .collect(),
    };
    let matched = state.passwords.verify_any(hashes, password).await?;
    let now = clock::now();

    if let (Some(admin), Some(_)) = (&admin, matched) {
        state.backoff.record(&backoff_key, true);
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
        return Ok(with_csrf(&state, &req, StatusCode::OK, |csrf| {
            render(
                StatusCode::OK,
                &TotpPage {
                    csrf,
                    pending: &sealed,
                    error: None,
                },
            )
        }));
    }

    // The domain requires SSO: no password sign-in, whoever asks (decided by domain only).
    if route.enforced {
        let org = candidates
            .first()
            .map(|u| u.org_id.clone())
            .or(refused.first().map(|(u, _, _)| u.org_id.clone()));
        audit_refusal(
            &state,
            org,
            &shown_email,
            "password sign-in refused: the organization requires SSO for this e-mail domain",
            now,
        )
        .await?;
        let choices = choices(&route.connections, return_to.as_deref());
        return Ok(sso_required(&route.org_name, &choices, false));
    }

    // A correct password for an account that may not use it here: say why (and where to go).
    let allowed_count = candidates.len();
    if let Some((u, org_name, conns)) = matched
        .and_then(|i| i.checked_sub(allowed_count))
        .and_then(|i| refused.get(i))
    {
        state.backoff.record(&backoff_key, true);
        let reason = if u.is_break_glass {
            "password sign-in refused: break-glass accounts sign in at /sso/breakglass"
        } else {
            "password sign-in refused: the organization requires SSO for this account"
        };
        audit_refusal(&state, Some(u.org_id.clone()), &shown_email, reason, now).await?;
        let choices = choices(conns, return_to.as_deref());
        return Ok(sso_required(org_name, &choices, u.is_break_glass));
    }

    let user = matched.and_then(|i| candidates.get(i).cloned());
    let Some(user) = user.clone().filter(|u| u.active) else {
        state.backoff.record(&backoff_key, false);
        let org = candidates
            .first()
            .or(refused.first().map(|(u, _, _)| u))
            .map(|u| u.org_id.clone());
        let reason = match (&user, candidates.is_empty() && admin.is_none()) {
            (Some(_), _) => "account deactivated",
            (None, true) if !refused.is_empty() => {
                "wrong password for an account that must use SSO (or a break-glass account)"
            }
            (None, true) => "no account with a password for this e-mail",
            (None, false) => "wrong password",
        };
        audit_refusal(&state, org, &shown_email, reason, now).await?;
        return Ok(password_page(
            &state,
            &req,
            &shown_email,
            back,
            Some(WRONG_CREDENTIALS),
            StatusCode::UNAUTHORIZED,
        ));
    };
    state.backoff.record(&backoff_key, true);

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
                    None,
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
    let cookie = session::session_cookie(&state.settings, cookie_value);
    HttpResponse::SeeOther()
        .insert_header(("location", return_to.unwrap_or_else(|| "/sso/me".into())))
        .cookie(cookie)
        .finish()
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
    csrf::require_sign_in_form(&req, &state.settings, &form.csrf)?;
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
    let backoff_key = backoff::key("totp", pending.admin.as_str(), &req);
    if let Some(wait) = state.backoff.wait(&backoff_key) {
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
                    None,
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
    state.backoff.record(&backoff_key, result.is_some());
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
