//! `GET /sso/me` (the signed-in identity, HTML or JSON), and `GET`/`POST /sso/logout`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::csrf::tokens_equal;
use super::session::{self, Principal, SignedIn};
use crate::audit::{self, Event};
use crate::clock;
use crate::db::write_tx;
use crate::http::errors::{wants_html, AppError, PageError};
use crate::http::pages::render;
use crate::identity::{roles, IdentityError};
use crate::startup::AppState;

/// What `/sso/me` answers (and, later, what the protected app receives).
#[derive(Debug, Serialize)]
pub struct Identity {
    pub user_name: String,
    pub email: Option<String>,
    /// True only when the e-mail's domain is a verified domain of the user's org.
    pub email_verified: bool,
    pub org: Option<String>,
    pub role: Option<String>,
    pub groups: Vec<String>,
}

#[derive(Template)]
#[template(path = "login/me.html")]
struct MePage<'a> {
    who: &'a Identity,
}

#[derive(Template)]
#[template(path = "login/logout.html")]
struct LogoutPage<'a> {
    csrf: &'a str,
    user_name: &'a str,
}

#[derive(Template)]
#[template(path = "login/signed_out.html")]
struct SignedOutPage;

/// The "you are signed out" page.
pub fn signed_out_page() -> HttpResponse {
    render(StatusCode::OK, &SignedOutPage)
}

async fn identity_of(state: &AppState, signed_in: &SignedIn) -> Result<Identity, AppError> {
    match &signed_in.principal {
        Principal::Admin(a) => Ok(Identity {
            user_name: a.email.clone(),
            email: Some(a.email.clone()),
            email_verified: false,
            org: None,
            role: Some("instance-admin".into()),
            groups: Vec::new(),
        }),
        Principal::Setup { link, org } => Ok(Identity {
            user_name: format!("setup link {}", link.id),
            email: None,
            email_verified: false,
            org: Some(org.slug.clone()),
            role: None,
            groups: Vec::new(),
        }),
        Principal::User { user, org } => {
            let (user, org) = (user.clone(), org.clone());
            state
                .db
                .run(move |conn| -> Result<Identity, IdentityError> {
                    let (groups, keys) =
                        crate::sso::resolve::effective_groups(conn, &user, &org.group_source)?;
                    let role = roles::resolve_app_role(
                        conn,
                        &org.id,
                        user.app_role.as_deref(),
                        &keys,
                        org.default_role.as_deref(),
                    )?;
                    let email_verified = crate::identity::users::email_verified(conn, &user)?;
                    Ok(Identity {
                        user_name: user.user_name.clone(),
                        email: user.email.clone(),
                        email_verified,
                        org: Some(org.slug.clone()),
                        role,
                        groups,
                    })
                })
                .await
                .map_err(AppError::from)
        }
    }
}

/// `GET /sso/me`
pub async fn me(
    state: web::Data<AppState>,
    req: HttpRequest,
    signed_in: Option<SignedIn>,
) -> Result<HttpResponse, AppError> {
    let html = wants_html(&req)
        && !req
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.starts_with("application/json"));
    let Some(signed_in) = signed_in else {
        if html {
            return Ok(actix_web::ResponseError::error_response(&PageError(
                AppError::Unauthorized("You are not signed in.".into()),
            )));
        }
        return Err(AppError::Unauthorized("not signed in".into()));
    };
    let who = identity_of(&state, &signed_in).await?;
    if html {
        Ok(render(StatusCode::OK, &MePage { who: &who }))
    } else {
        Ok(HttpResponse::Ok()
            .insert_header(("cache-control", "no-store"))
            .json(&who))
    }
}

/// `GET /sso/logout`: a confirmation page (a link or an image must not sign anyone out).
pub async fn logout_page(signed_in: Option<SignedIn>) -> HttpResponse {
    match signed_in {
        Some(s) => {
            let user_name = match &s.principal {
                Principal::Admin(a) => a.email.clone(),
                Principal::User { user, .. } => user.user_name.clone(),
                Principal::Setup { org, .. } => format!("the setup link of {}", org.name),
            };
            render(
                StatusCode::OK,
                &LogoutPage {
                    csrf: &s.csrf_token,
                    user_name: &user_name,
                },
            )
        }
        None => render(StatusCode::OK, &SignedOutPage),
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /sso/logout` (CSRF-protected by the session's token).
pub async fn logout(
    state: web::Data<AppState>,
    signed_in: Option<SignedIn>,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, PageError> {
    if let Some(s) = signed_in {
        if !tokens_equal(&s.csrf_token, &form.csrf) {
            return Err(AppError::BadRequest(
                "This sign-out form expired. Reload the page and try again.".into(),
            )
            .into());
        }
        let (org, actor) = match &s.principal {
            Principal::Admin(a) => (None, format!("admin:{}", a.id)),
            Principal::User { user, .. } => {
                (Some(user.org_id.clone()), format!("user:{}", user.id))
            }
            Principal::Setup { link, org } => {
                (Some(org.id.clone()), format!("setup-link:{}", link.id))
            }
        };
        let event =
            Event::new(org.as_ref(), actor, "logout").payload(json!({"method": s.auth_method}));
        let now = clock::now();
        let id_hash = s.id_hash.clone();
        state
            .db
            .run(move |conn| {
                write_tx(conn, |conn| -> Result<(), IdentityError> {
                    session::revoke(conn, &id_hash, now)?;
                    audit::record(conn, &event, now)?;
                    Ok(())
                })
                .map_err(AppError::from)
            })
            .await?;
    }
    let mut res = render(StatusCode::OK, &SignedOutPage);
    let _ = res.add_removal_cookie(&session::session_removal(&state.settings));
    Ok(res)
}
