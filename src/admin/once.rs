//! Secrets shown once (a new SCIM token, break-glass credentials) with POST/redirect/GET: the
//! POST that creates the secret stores what to show, sealed with the instance key and bound
//! to the admin's session, in the same transaction as the change, and redirects to
//! `GET …/once/{id}`; that GET shows it and deletes it. A reload, the back button or another
//! browser finds nothing and is told so: a reload can never mint another secret.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::org::SecretOnce;
use super::{access, AdminResult};
use crate::crypto::SecretKey;
use crate::db::schema::admin_once_results;
use crate::db::DbConn;
use crate::http::errors::AppError;
use crate::http::pages::render;
use crate::identity::IdentityError;
use crate::startup::AppState;

/// How long the one GET may come after the POST.
const TTL_SECS: i64 = 600;

/// What the page shows.
#[derive(Serialize, Deserialize)]
pub struct Shown {
    pub title: String,
    pub lines: Vec<(String, String)>,
    pub warning: String,
    pub back: String,
}

fn context(id: &str) -> String {
    format!("admin-once:{id}")
}

/// A form whose result is shown once: the page it leads to (under `base`), for this session;
/// a second submit of it (`form_id` posted to `action`, see `submit`) leads there again.
#[derive(Clone)]
pub struct OnceForm {
    key: SecretKey,
    base: String,
    session: String,
    form_id: String,
    action: String,
}

impl OnceForm {
    /// For the form `form_id` posted to this request's path, by the session `session_hash`;
    /// its page lives under `base` (`/sso/admin/orgs/<org>` or `/sso/admin`).
    pub fn new(
        state: &AppState,
        req: &HttpRequest,
        base: String,
        session_hash: &str,
        form_id: &str,
    ) -> OnceForm {
        OnceForm {
            key: state.key.clone(),
            base,
            session: session_hash.to_string(),
            form_id: form_id.to_string(),
            action: req.path().to_string(),
        }
    }

    /// Where an earlier submit of this form led, if it was submitted.
    pub fn earlier(&self, conn: &mut DbConn) -> Result<Option<String>, IdentityError> {
        super::submit::earlier(conn, &self.form_id, &self.action, &self.session)
    }

    /// Stores `shown` (inside the caller's transaction) and returns the path of the page that
    /// shows it once.
    pub fn store(
        &self,
        conn: &mut DbConn,
        shown: &Shown,
        now: i64,
    ) -> Result<String, IdentityError> {
        let id = crate::crypto::random_token(24);
        let text = serde_json::to_vec(shown).map_err(anyhow::Error::from)?;
        diesel::insert_into(admin_once_results::table)
            .values((
                admin_once_results::id.eq(&id),
                admin_once_results::session_hash.eq(&self.session),
                admin_once_results::sealed.eq(self.key.seal(&text, &context(&id))),
                admin_once_results::expires_at.eq(now + TTL_SECS),
            ))
            .execute(conn)?;
        let page = format!("{}/once/{id}", self.base);
        super::submit::remember(conn, &self.form_id, &self.action, &self.session, &page, now)?;
        Ok(page)
    }
}

/// Takes (reads and deletes) the result if it is this session's and still fresh.
pub(super) fn take(
    conn: &mut DbConn,
    key: &SecretKey,
    id: &str,
    session_hash: &str,
    now: i64,
) -> Result<Option<Shown>, IdentityError> {
    let row: Option<(String, i64)> = admin_once_results::table
        .find(id)
        .filter(admin_once_results::session_hash.eq(session_hash))
        .select((admin_once_results::sealed, admin_once_results::expires_at))
        .first(conn)
        .optional()?;
    let Some((sealed, expires_at)) = row else {
        return Ok(None);
    };
    let n = diesel::delete(admin_once_results::table.find(id)).execute(conn)?;
    if n != 1 || expires_at <= now {
        return Ok(None);
    }
    let bytes = key
        .open(&sealed, &context(id))
        .map_err(|e| anyhow::anyhow!("sealed one-time result: {e}"))?;
    Ok(Some(
        serde_json::from_slice(&bytes).map_err(anyhow::Error::from)?,
    ))
}

/// Deletes results nobody came to see (called by the purge).
pub fn purge(conn: &mut DbConn, now: i64) -> QueryResult<usize> {
    diesel::delete(admin_once_results::table.filter(admin_once_results::expires_at.lt(now)))
        .execute(conn)
}

/// `GET /sso/admin/orgs/{org}/once/{id}`: the secret, once.
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> AdminResult {
    let (org, id) = path.into_inner();
    let admin = access(&state, &req, &org).await?;
    let (key, session, now) = (
        state.key.clone(),
        admin.signed.id_hash.clone(),
        crate::clock::now(),
    );
    let shown = state
        .db
        .write(move |conn| take(conn, &key, &id, &session, now))
        .await
        .map_err(AppError::from)?;
    let nav = admin.nav();
    let shown = shown.unwrap_or_else(|| Shown {
        title: "Already shown".into(),
        lines: Vec::new(),
        warning: "This secret was shown once and is not available any more (a reload or the back button cannot show it again, and nothing new was created). If you did not store it, create a new one: the one created before stays valid until you revoke or reset it.".into(),
        back: format!("/sso/admin/orgs/{}", admin.org.slug),
    });
    let res = render(
        StatusCode::OK,
        &SecretOnce {
            nav,
            qr: shown
                .lines
                .iter()
                .find(|(_, v)| v.starts_with("otpauth://"))
                .and_then(|(_, v)| crate::login::totp::qr_svg(v)),
            title: shown.title,
            lines: shown.lines,
            warning: shown.warning,
            back: shown.back,
        },
    );
    Ok(no_store(res))
}

/// A page with a secret on it: never cached.
pub fn no_store(mut res: actix_web::HttpResponse) -> actix_web::HttpResponse {
    res.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    res
}
