//! Signing in and out: the password sign-in (local accounts and instance admins with TOTP),
//! sessions, `/sso/me`, `/sso/logout`, and the guards they share (login CSRF, return_to).

pub mod backoff;
pub mod breakglass;
pub mod csrf;
pub mod me;
pub mod password;
pub mod password_login;
pub mod return_to;
pub mod session;
pub mod totp;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sso/login", web::get().to(password_login::page))
        .route("/sso/login", web::post().to(password_login::submit))
        .route(
            "/sso/login/totp",
            web::post().to(password_login::submit_totp),
        )
        .route("/sso/breakglass", web::get().to(breakglass::page))
        .route("/sso/breakglass", web::post().to(breakglass::submit))
        .route("/sso/me", web::get().to(me::me))
        .route("/sso/logout", web::get().to(me::logout_page))
        .route("/sso/logout", web::post().to(me::logout));
}
