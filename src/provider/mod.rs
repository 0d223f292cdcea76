//! gatehouse as an OpenID Provider to the apps behind it (issue 19): the apps (OIDC clients)
//! registered with it, and the keys its ID tokens are signed with (`/sso/oauth/jwks`: current
//! and, during a rotation's overlap, previous keys). The endpoints build on these.

pub mod apps;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::http::errors::AppError;
use crate::identity::keys::{self, Purpose};
use crate::startup::AppState;

/// Where apps find the keys that sign their ID tokens.
pub const JWKS_PATH: &str = "/sso/oauth/jwks";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(JWKS_PATH, web::get().to(jwks));
}

/// `GET /sso/oauth/jwks`: the OpenID Provider's public keys (RS256 and ES256; current and
/// previous during a rotation's overlap).
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let now = crate::clock::now();
    let published = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let mut all = keys::published(conn, Purpose::OidcRs256, now)?;
            all.extend(keys::published(conn, Purpose::OidcEs256, now)?);
            Ok(all)
        })
        .await?;
    let keys = published
        .iter()
        .map(crate::gateway::identity::jwk)
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(AppError::Internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(json!({ "keys": keys })))
}
