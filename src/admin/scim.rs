//! SCIM settings: the base URL, tokens (prefix, created, last used), issue (shown once, with a
//! warning; optionally revoking the others) and revoke.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::{access, sensitive, time, AdminResult, Nav};
use crate::http::errors::AppError;
use crate::http::pages::render;
use crate::identity::{scim_tokens, IdentityError};
use crate::startup::AppState;

struct TokenRow {
    id: String,
    prefix: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/scim.html")]
struct ScimPage {
    nav: Nav,
    base_url: String,
    tokens: Vec<TokenRow>,
}

/// `GET /sso/admin/orgs/{org}/scim`
pub async fn page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    let org_id = admin.org.id.clone();
    let tokens = state
        .db
        .run(move |conn| scim_tokens::list(conn, &org_id).map_err(AppError::from))
        .await?;
    Ok(render(
        StatusCode::OK,
        &ScimPage {
            nav: admin.nav(),
            base_url: state.settings.url_for("/scim/v2"),
            tokens: tokens
                .into_iter()
                .map(|t| TokenRow {
                    id: t.id.to_string(),
                    prefix: t.prefix,
                    created: time(t.created_at),
                    last_used: t.last_used_at.map(time).unwrap_or_else(|| "never".into()),
                    revoked: t.revoked_at.map(time),
                })
                .collect(),
        },
    ))
}

#[derive(Deserialize)]
pub struct IssueForm {
    csrf: String,
    #[serde(default)]
    form_id: String,
    confirm_password: Option<String>,
    #[serde(default)]
    revoke_others: Option<String>,
}

/// `POST /sso/admin/orgs/{org}/scim/tokens`: the new token, shown once.
pub async fn issue(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<IssueForm>,
) -> AdminResult {
    let admin = sensitive(
        &state,
        &req,
        &path,
        &form.csrf,
        form.confirm_password.as_deref(),
    )
    .await?;
    let revoke_others = form.revoke_others.is_some();
    let back = format!("/sso/admin/orgs/{}/scim", admin.org.slug);
    // A setup link adds a token; cutting off the tokens the IdP already provisions with is the
    // organization's admin's decision.
    if revoke_others && admin.via_setup_link() {
        return Ok(admin.flasher.error(&back, SETUP_LINK_REVOKE));
    }
    let now = crate::clock::now();
    let base_url = state.settings.url_for("/scim/v2");
    let once = admin.once_form(&state, &req, &form.form_id);
    // The token is shown by the GET this redirects to (a reload cannot mint another), and a
    // second submit of the same form goes there too instead of minting a second token.
    let page = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            if let Some(earlier) = once.earlier(conn)? {
                return Ok(earlier);
            }
            let t = scim_tokens::issue(conn, &admin.org.id, revoke_others, now)?;
            admin.record(
                conn,
                "admin.scim_token.issue",
                json!({"id": t.id, "token": "(shown once)", "revoked_others": t.revoked_others}),
                now,
            )?;
            let mut warning = "Shown once: paste it into your IdP's SCIM settings now. gatehouse keeps only a hash of it.".to_string();
            if t.revoked_others > 0 {
                warning.push_str(&format!(
                    " {} older token(s) were revoked: the IdP must use this one.",
                    t.revoked_others
                ));
            }
            let shown = super::once::Shown {
                title: "New SCIM token".into(),
                lines: vec![
                    ("SCIM base URL".into(), base_url),
                    ("Bearer token".into(), t.token),
                ],
                warning,
                back,
            };
            once.store(conn, &shown, now)
        })
        .await
        .map_err(AppError::from)?;
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", page))
        .finish())
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf: String,
    confirm_password: Option<String>,
}

/// `POST /sso/admin/orgs/{org}/scim/tokens/{id}/revoke`
/// Why a setup link's session may not revoke SCIM tokens.
const SETUP_LINK_REVOKE: &str = "Through a setup link SCIM tokens can be added, not revoked: the IdP may be provisioning with them. Ask the organization's admin to revoke a token.";

pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<RevokeForm>,
) -> AdminResult {
    let (org, id) = path.into_inner();
    let admin = sensitive(
        &state,
        &req,
        &org,
        &form.csrf,
        form.confirm_password.as_deref(),
    )
    .await?;
    let now = crate::clock::now();
    let back = format!("/sso/admin/orgs/{}/scim", admin.org.slug);
    if admin.via_setup_link() {
        return Ok(admin.flasher.error(&back, SETUP_LINK_REVOKE));
    }
    let flash = admin.flasher.clone();
    state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            scim_tokens::revoke(conn, &admin.org.id, &id, now)?;
            admin.record(conn, "admin.scim_token.revoke", json!({"id": id}), now)?;
            Ok(())
        })
        .await
        .map_err(AppError::from)?;
    Ok(flash.notice(&back, "Token revoked"))
}
