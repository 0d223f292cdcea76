//! Protecting the app: forward-auth (`GET /sso/verify` for nginx `auth_request`, Traefik
//! `forwardAuth`, Caddy `forward_auth`), the identity headers and JWT the app receives, and
//! the JWKS that verifies it. A session's identity is read from the database at most once a
//! second ([`IDENTITY_CACHE`]): a revocation takes effect within a second.

pub mod identity;
pub mod proxy;

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde_json::json;

use crate::http::errors::AppError;
use crate::identity::keys::{self, Purpose};
use crate::identity::{roles, IdentityError};
use crate::login::session::{Principal, SignedIn};
use crate::startup::AppState;
use identity::Identity;

/// The `aud` of the identity JWT.
pub const JWT_AUDIENCE: &str = "gatehouse-app";

/// How long a session's identity (and its JWT) is reused without reading the database again:
/// the bound on how late a revocation, deactivation or role change takes effect.
pub const IDENTITY_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

type IdentityCache =
    std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Identity, String)>>;

fn identity_cache() -> &'static IdentityCache {
    static CACHE: std::sync::OnceLock<IdentityCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// What a request is: a signed-in user (with a fresh or ≤ 1 s old identity and JWT), another
/// kind of session (an instance admin: not a user of the app), or nobody.
pub enum Caller {
    User(Identity, String),
    NotAUser,
    Anonymous,
}

pub async fn caller(state: &AppState, req: &HttpRequest) -> Result<Caller, AppError> {
    let Some(key) = crate::login::session::cookie_hash(req, &state.settings) else {
        return Ok(Caller::Anonymous);
    };
    if let Ok(map) = identity_cache().lock() {
        if let Some((at, identity, token)) = map.get(&key) {
            if at.elapsed() < IDENTITY_CACHE {
                return Ok(Caller::User(identity.clone(), token.clone()));
            }
        }
    }
    let Ok(signed) = SignedIn::extract(req).await else {
        return Ok(Caller::Anonymous);
    };
    match identity_for(state, &signed).await? {
        Some((identity, token)) => {
            if let Ok(mut map) = identity_cache().lock() {
                if map.len() > 50_000 {
                    map.retain(|_, (at, _, _)| at.elapsed() < IDENTITY_CACHE);
                }
                map.insert(
                    key,
                    (std::time::Instant::now(), identity.clone(), token.clone()),
                );
            }
            Ok(Caller::User(identity, token))
        }
        None => Ok(Caller::NotAUser),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sso/.well-known/jwks.json", web::get().to(jwks))
        .route("/sso/verify", web::get().to(verify));
}

/// `GET /sso/.well-known/jwks.json`: the identity JWT's public keys (current and previous).
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let now = crate::clock::now();
    let published = state
        .db
        .run(move |conn| keys::published(conn, Purpose::Jwt, now).map_err(AppError::from))
        .await?;
    let keys = published
        .iter()
        .map(identity::jwk)
        .collect::<anyhow::Result<Vec<_>>>()
        .map_err(AppError::Internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(json!({ "keys": keys })))
}

/// The app role of a signed-in user right now (no JWT: a relayed WebSocket asks every second).
pub async fn app_role(state: &AppState, signed: &SignedIn) -> Result<Option<String>, AppError> {
    let Principal::User { user, org } = &signed.principal else {
        return Ok(None);
    };
    let (user, org) = (user.clone(), org.clone());
    state
        .db
        .run(move |conn| -> Result<_, IdentityError> {
            let (_, group_keys) =
                crate::sso::resolve::effective_groups(conn, &user, &org.group_source)?;
            roles::resolve_app_role(
                conn,
                &org.id,
                user.app_role.as_deref(),
                &group_keys,
                org.default_role.as_deref(),
            )
        })
        .await
        .map_err(AppError::from)
}

/// The identity of a signed-in user, and a JWT for it.
pub async fn identity_for(
    state: &AppState,
    signed: &SignedIn,
) -> Result<Option<(Identity, String)>, AppError> {
    let Principal::User { user, org } = &signed.principal else {
        return Ok(None);
    };
    let (user, org) = (user.clone(), org.clone());
    let (identity, key) = state
        .db
        .run(move |conn| -> Result<_, IdentityError> {
            let (groups, role, email_verified) = crate::sso::resolve::app_view(conn, &user, &org)?;
            let key = keys::current(conn, Purpose::Jwt)?;
            Ok((
                Identity {
                    user_id: user.id.to_string(),
                    user_name: user.user_name.clone(),
                    email_verified,
                    email: user.email.clone(),
                    org: org.slug.clone(),
                    role,
                    groups,
                },
                key,
            ))
        })
        .await
        .map_err(AppError::from)?;
    let key = key.ok_or_else(|| AppError::Internal(anyhow::anyhow!("no JWT signing key")))?;
    let issuer = state
        .settings
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_string();
    let token = identity::jwt(
        &identity,
        &key,
        &state.key,
        &issuer,
        JWT_AUDIENCE,
        crate::clock::now(),
    )
    .map_err(AppError::Internal)?;
    Ok(Some((identity, token)))
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Where the user was going, as the proxy reports it: nginx `X-Original-URI` (a path), or
/// Traefik/Caddy `X-Forwarded-Proto/Host/Uri` (the scheme and host only from a proxy listed in
/// `trusted_proxies`; the path is a local path either way). A path on another host becomes an absolute URL
/// (the sign-in page accepts it only for `allowed_return_hosts`).
fn original_url(req: &HttpRequest, state: &AppState) -> Option<String> {
    let path = header_str(req, "x-original-uri").or(header_str(req, "x-forwarded-uri"))?;
    if !path.starts_with('/') {
        return None;
    }
    let ours = state
        .settings
        .public_url
        .host_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let proxies = &state.settings.trusted_proxies;
    let forwarded = |name| crate::http::client::forwarded_header(req, name, proxies);
    match forwarded("x-forwarded-host").map(|h| h.to_ascii_lowercase()) {
        Some(host) if host.split(':').next() != Some(ours.as_str()) => {
            let proto = match forwarded("x-forwarded-proto") {
                Some("http") => "http",
                _ => "https",
            };
            Some(format!("{proto}://{host}{path}"))
        }
        _ => Some(path.to_string()),
    }
}

/// `GET /sso/verify`: 200 with the identity headers for a signed-in user; otherwise 401 (API
/// clients, and nginx, whose `auth_request` turns it into its own redirect), or a redirect to
/// sign-in for browsers behind Traefik/Caddy, which pass it on.
pub async fn verify(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    match caller(&state, &req).await? {
        Caller::User(identity, token) => {
            let mut res = HttpResponse::Ok();
            res.insert_header((header::CACHE_CONTROL, "no-store"));
            for (name, value) in identity::headers(&identity, &token) {
                res.insert_header((name, value));
            }
            return Ok(res.finish());
        }
        // An instance admin's session is not a user of the app.
        Caller::NotAUser => {
            return Ok(HttpResponse::Forbidden()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish())
        }
        Caller::Anonymous => {}
    }
    let wants_html = header_str(&req, "accept").is_some_and(|a| a.contains("text/html"));
    let from_nginx = header_str(&req, "x-original-uri").is_some();
    let login = match original_url(&req, &state) {
        Some(r) => format!(
            "{}?return_to={}",
            state.settings.url_for("/sso/login"),
            url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
        ),
        None => state.settings.url_for("/sso/login"),
    };
    if wants_html && !from_nginx {
        return Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, login))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish());
    }
    Ok(HttpResponse::Unauthorized()
        .insert_header(("x-gatehouse-login", login))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}
