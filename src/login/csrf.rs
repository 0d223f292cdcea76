//! Login CSRF: before a session exists, a random value in a cookie must match the form's
//! hidden field (double submit). Signed-in forms use the session's own CSRF token.

use actix_web::cookie::Cookie;
use actix_web::HttpRequest;
use subtle::ConstantTimeEq;

use super::session::build_cookie;
use crate::config::Settings;
use crate::crypto::random_token;

pub fn cookie_name(settings: &Settings) -> &'static str {
    if settings.is_https() {
        "__Host-gatehouse_login_csrf"
    } else {
        "gatehouse_login_csrf"
    }
}

/// The browser's login CSRF value, or a new one with the cookie that sets it.
pub fn ensure(req: &HttpRequest, settings: &Settings) -> (String, Option<Cookie<'static>>) {
    match req.cookie(cookie_name(settings)) {
        Some(c) if c.value().len() >= 32 => (c.value().to_string(), None),
        _ => {
            let value = random_token(32);
            let cookie = build_cookie(settings, cookie_name(settings), value.clone()).into_owned();
            (value, Some(cookie))
        }
    }
}

/// A sign-in form's CSRF check, with the page to show when it fails.
pub fn require_sign_in_form(
    req: &HttpRequest,
    settings: &Settings,
    submitted: &str,
) -> Result<(), crate::http::errors::PageError> {
    if verify(req, settings, submitted) {
        return Ok(());
    }
    Err(crate::http::errors::AppError::BadRequest(
        "This sign-in form expired. Go back, reload the page and try again.".into(),
    )
    .into())
}

/// The form's value matches the cookie's.
pub fn verify(req: &HttpRequest, settings: &Settings, submitted: &str) -> bool {
    req.cookie(cookie_name(settings))
        .map(|c| tokens_equal(c.value(), submitted))
        .unwrap_or(false)
}

pub fn tokens_equal(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
