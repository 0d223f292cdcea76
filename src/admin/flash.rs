//! The banner after a change ("Added example.com", "Refused: …"): written by the server only.
//! The POST that made the change redirects (POST/redirect/GET) with the message in a cookie
//! sealed with the instance key and bound to the admin's session; the next admin page shows it
//! once and clears the cookie. Nothing in a URL is ever shown as a banner, so a link cannot
//! put words ("paste the new token at …") into gatehouse's pages.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::startup::AppState;

const COOKIE: &str = "gatehouse_flash";
const PATH: &str = "/sso/admin";
/// The redirect is followed at once; an unread banner is stale after this.
const MAX_AGE_SECS: i64 = 120;

/// One banner: a notice (green) or an error (red, `role=alert`).
#[derive(Clone, Serialize, Deserialize)]
pub struct Flash {
    pub error: bool,
    pub text: String,
    /// When it was written (an old cookie is ignored).
    at: i64,
}

impl Flash {
    /// An error shown on the page being rendered now (a refused form shown again).
    pub fn error_now(text: String) -> Flash {
        Flash {
            error: true,
            text,
            at: crate::clock::now(),
        }
    }
}

fn context(session_hash: &str) -> String {
    format!("admin-flash:{session_hash}")
}

/// The banner waiting for this session, if any.
pub fn read(req: &HttpRequest, state: &AppState, session_hash: &str) -> Option<Flash> {
    let c = req.cookie(COOKIE)?;
    let bytes = state.key.open(c.value(), &context(session_hash)).ok()?;
    let f: Flash = serde_json::from_slice(&bytes).ok()?;
    (crate::clock::now() - f.at <= MAX_AGE_SECS).then_some(f)
}

/// Writes banners for one admin session.
#[derive(Clone)]
pub struct Flasher {
    key: crate::crypto::SecretKey,
    session_hash: String,
    secure: bool,
}

impl Flasher {
    pub fn new(state: &AppState, session_hash: &str) -> Flasher {
        Flasher {
            key: state.key.clone(),
            session_hash: session_hash.to_string(),
            secure: state.settings.is_https(),
        }
    }

    /// To `path` with a green notice.
    pub fn notice(&self, path: &str, text: &str) -> HttpResponse {
        self.redirect(path, false, text)
    }

    /// To `path` with a red error.
    pub fn error(&self, path: &str, text: &str) -> HttpResponse {
        self.redirect(path, true, text)
    }

    fn redirect(&self, path: &str, error: bool, text: &str) -> HttpResponse {
        let f = Flash {
            error,
            text: text.to_string(),
            at: crate::clock::now(),
        };
        let body = serde_json::to_vec(&f).unwrap_or_default();
        let sealed = self.key.seal(&body, &context(&self.session_hash));
        let cookie = Cookie::build(COOKIE, sealed)
            .path(PATH)
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .max_age(actix_web::cookie::time::Duration::seconds(MAX_AGE_SECS))
            .finish();
        HttpResponse::SeeOther()
            .insert_header(("location", path.to_string()))
            .cookie(cookie)
            .finish()
    }
}

/// Middleware step: a page that was shown (anything but a redirect) with a banner cookie
/// present clears it, so a reload does not show the banner again.
pub fn clear_when_shown<B>(had: bool, mut res: ServiceResponse<B>) -> ServiceResponse<B> {
    if had && !res.status().is_redirection() {
        let mut c = Cookie::build(COOKIE, "").path(PATH).finish();
        c.make_removal();
        if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&c.to_string()) {
            res.headers_mut()
                .append(actix_web::http::header::SET_COOKIE, v);
        }
    }
    res
}

/// Whether the request carries a banner cookie.
pub fn present(req: &ServiceRequest) -> bool {
    req.cookie(COOKIE).is_some()
}
