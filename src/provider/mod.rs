//! gatehouse as an OpenID Provider to the apps behind it (issue 19). The issuer is
//! `<public_url>/sso`; discovery at `/sso/.well-known/openid-configuration` lists the
//! endpoints under `/sso/oauth2/` and only what they really do. The apps (OIDC clients) are
//! registered by operators; ID tokens are signed with database keys published at
//! `/sso/oauth2/jwks` (current and, during a rotation's overlap, previous).

pub mod apps;
pub mod authorize;
pub mod grants;
pub mod jwt;
pub mod logout;
pub mod token;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::config::Settings;
use crate::http::errors::AppError;
use crate::startup::AppState;

/// Where apps find the keys that sign their ID tokens.
pub const JWKS_PATH: &str = "/sso/oauth2/jwks";
pub const DISCOVERY_PATH: &str = "/sso/.well-known/openid-configuration";

/// The issuer apps are told (`iss` of every token): `<public_url>/sso`.
pub fn issuer(settings: &Settings) -> String {
    settings.url_for("/sso")
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(JWKS_PATH, web::get().to(jwks))
        .route(DISCOVERY_PATH, web::get().to(discovery))
        .route(
            "/sso/oauth2/authorize",
            web::get().to(authorize::authorize_get),
        )
        .route(
            "/sso/oauth2/authorize",
            web::post().to(authorize::authorize_post),
        )
        .route(
            "/sso/oauth2/continue/{id}",
            web::get().to(authorize::resume),
        )
        .route(
            "/sso/oauth2/continue/{id}",
            web::post().to(authorize::confirm),
        )
        .route("/sso/oauth2/token", web::post().to(token::token))
        .route(
            "/sso/oauth2/token",
            web::method(actix_web::http::Method::OPTIONS).to(token::preflight),
        )
        .route(
            "/sso/oauth2/userinfo",
            web::method(actix_web::http::Method::OPTIONS).to(token::preflight),
        )
        .route(
            "/sso/oauth2/revoke",
            web::method(actix_web::http::Method::OPTIONS).to(token::preflight),
        )
        .route("/sso/oauth2/userinfo", web::get().to(token::userinfo))
        .route("/sso/oauth2/userinfo", web::post().to(token::userinfo))
        .route("/sso/oauth2/revoke", web::post().to(token::revoke))
        .route("/sso/oauth2/introspect", web::post().to(token::introspect))
        .route("/sso/oauth2/logout", web::get().to(logout::end_session_get))
        .route(
            "/sso/oauth2/logout",
            web::post().to(logout::end_session_post),
        );
}

/// The claims ID tokens and userinfo may carry.
pub const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "sid",
    "amr",
    "azp",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "org",
    "org_id",
    "role",
    "groups",
];

/// `GET /sso/.well-known/openid-configuration`
pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    let s = &state.settings;
    let iss = issuer(s);
    let at = |p: &str| s.url_for(p);
    token::cors(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(json!({
            "issuer": iss,
            "authorization_endpoint": at("/sso/oauth2/authorize"),
            "token_endpoint": at("/sso/oauth2/token"),
            "userinfo_endpoint": at("/sso/oauth2/userinfo"),
            "jwks_uri": at(JWKS_PATH),
            "revocation_endpoint": at("/sso/oauth2/revoke"),
            "introspection_endpoint": at("/sso/oauth2/introspect"),
            "end_session_endpoint": at("/sso/oauth2/logout"),
            "scopes_supported": authorize::SCOPES,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": apps::ID_TOKEN_ALGS,
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "prompt_values_supported": ["none", "login", "consent", "select_account"],
            "claims_supported": CLAIMS,
            "claims_parameter_supported": false,
            "request_parameter_supported": false,
            "request_uri_parameter_supported": false,
            "authorization_response_iss_parameter_supported": true,
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "frontchannel_logout_supported": false,
        })))
}

/// `GET /sso/oauth2/jwks`: the OpenID Provider's public keys (RS256 and ES256; current and
/// previous during a rotation's overlap).
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let now = crate::clock::now();
    let published = state
        .db
        .run(move |conn| jwt::published(conn, now, true).map_err(AppError::from))
        .await?;
    let keys = published
        .iter()
        .map(crate::gateway::identity::jwk)
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(AppError::Internal)?;
    Ok(token::cors(
        HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
            .json(json!({ "keys": keys })),
    ))
}
