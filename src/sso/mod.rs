//! What every SSO protocol shares: connections (one IdP configuration of an org), account
//! resolution after a verified assertion or ID token (design.md sign-in rules 3–5), and the
//! handoff from a verified sign-in to a session.

pub mod connections;
pub mod handoff;
pub mod purge;
pub mod resolve;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sso/complete", web::get().to(handoff::complete))
        .route("/sso/complete", web::post().to(handoff::confirm));
}
