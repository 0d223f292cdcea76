//! The OpenID Provider's back-channel endpoints: `token` (authorization code and refresh
//! token grants), `userinfo`, `revoke` (RFC 7009) and `introspect` (RFC 7662). Clients
//! authenticate with `client_secret_basic`, `client_secret_post`, or — public clients, PKCE
//! being their proof — `none`. Errors follow RFC 6749 §5.2; every answer is `no-store`.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::audit::{self, Event, Outcome};
use crate::db::DbConn;
use crate::http::errors::AppError;
use crate::identity::IdentityError;
use crate::provider::apps::{self, App};
use crate::provider::grants::{self, Issued, TOKEN_LIFETIME_SECS};
use crate::provider::{issuer, jwt};
use crate::startup::AppState;

/// Browser apps (SPAs) call the token, userinfo and revocation endpoints from their own
/// origin: any origin may read the answers, never with credentials (these endpoints take no
/// cookie; the client's secret or PKCE verifier, or the bearer token, is the proof).
pub fn cors(mut res: HttpResponse) -> HttpResponse {
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        header::HeaderValue::from_static("www-authenticate"),
    );
    res
}

/// `OPTIONS` on those endpoints: the CORS preflight.
pub async fn preflight() -> HttpResponse {
    cors(
        HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type, dpop",
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .finish(),
    )
}

/// `POST /sso/oauth2/token`
pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    token_inner(state, req, form).await.map(cors)
}

/// `GET`/`POST /sso/oauth2/userinfo`
pub async fn userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    userinfo_inner(state, req).await.map(cors)
}

/// `POST /sso/oauth2/revoke`
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    revoke_inner(state, req, form).await.map(cors)
}

/// An OAuth error answer (RFC 6749 §5.2).
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    if status == StatusCode::UNAUTHORIZED {
        res.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"gatehouse\""));
    }
    res.json(json!({"error": error, "error_description": description}))
}

fn no_store_json(body: Value) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

/// A form's parameters; a parameter given twice is refused (RFC 6749 §3.1, §3.2).
pub fn single_params(pairs: Vec<(String, String)>) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for (k, v) in pairs {
        // No text column takes a NUL (PostgreSQL refuses it), and no parameter needs one.
        if k.contains('\0') || v.contains('\0') {
            return Err(format!(
                "`{}` contains a NUL character",
                k.replace('\0', "")
            ));
        }
        if map.insert(k.clone(), v).is_some() {
            return Err(format!("`{k}` is given more than once"));
        }
    }
    Ok(map)
}

/// Client credentials as presented: from `Authorization: Basic` or from the form.
struct Presented {
    client_id: Option<String>,
    secret: Option<String>,
    method: &'static str,
}

fn presented(req: &HttpRequest, form: &HashMap<String, String>) -> Result<Presented, String> {
    let basic = crate::http::client::authorization(req.headers(), "basic");
    let form_secret = form.get("client_secret").filter(|s| !s.is_empty());
    if let Some(b64) = basic {
        if form_secret.is_some() {
            return Err("use one client authentication method, not two".into());
        }
        let decoded = STANDARD
            .decode(b64)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or("the Basic credentials are not valid base64")?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or("the Basic credentials have no `:`")?;
        // RFC 6749 §2.3.1: both are form-urlencoded before going into the header.
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| "the Basic credentials are not valid UTF-8".to_string())
        };
        let id = dec(id)?;
        if form.get("client_id").is_some_and(|f| *f != id) {
            return Err("client_id differs from the Basic credentials".into());
        }
        return Ok(Presented {
            client_id: Some(id),
            secret: Some(dec(secret)?),
            method: "client_secret_basic",
        });
    }
    Ok(Presented {
        client_id: form.get("client_id").cloned(),
        secret: form_secret.cloned(),
        method: if form_secret.is_some() {
            "client_secret_post"
        } else {
            "none"
        },
    })
}

/// The app that authenticated, or why not (`invalid_client`).
fn authenticate(
    conn: &mut DbConn,
    p: &Presented,
    now: i64,
) -> Result<Result<App, &'static str>, IdentityError> {
    let Some(client_id) = p.client_id.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(Err("client authentication is missing"));
    };
    let Some(app) = apps::by_client_id(conn, client_id)? else {
        return Ok(Err("unknown client"));
    };
    if !app.enabled {
        return Ok(Err("the client is disabled"));
    }
    match (&p.secret, app.public) {
        (Some(_), true) => Ok(Err("a public client has no secret")),
        (None, true) => Ok(Ok(app)),
        (None, false) => Ok(Err("client authentication is missing")),
        (Some(s), false) if app.secret_matches(s, now) => Ok(Ok(app)),
        (Some(_), false) => Ok(Err("wrong client secret")),
    }
}

fn app_actor(app: &App) -> String {
    format!("app:{}", app.id)
}

/// The tokens of an exchange or refresh before signing: what the database says, read inside
/// the write; the signing (two RSA signatures: most of the cost) happens after the commit, off
/// the writer, so it runs on every core instead of behind the group commit.
pub struct Unsigned {
    key: crate::identity::keys::SigningKey,
    access_claims: Value,
    id_claims: serde_json::Map<String, Value>,
    refresh_token: String,
    scope: String,
}

fn unsigned(
    conn: &mut DbConn,
    state: &AppState,
    app: &App,
    issued: &Issued,
    now: i64,
) -> Result<Unsigned, AppError> {
    let key = jwt::signing_key(conn, &app.id_token_alg, now)?
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no {} key", app.id_token_alg)))?;
    let iss = issuer(&state.settings);
    let g = &issued.grant;
    let access_claims = json!({
        "iss": iss,
        "sub": g.user_id,
        "aud": app.client_id,
        "client_id": app.client_id,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECS,
        "jti": uuid::Uuid::new_v4().to_string(),
        "scope": g.scope,
        "auth_time": g.auth_time,
        "sid": g.sid,
        "grant_id": g.id,
        "org": issued.org.slug,
    });
    let mut claims = grants::user_claims(conn, &issued.user, &issued.org, &g.scope)?;
    claims.insert("iss".into(), json!(iss));
    claims.insert("aud".into(), json!(app.client_id));
    claims.insert("azp".into(), json!(app.client_id));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + TOKEN_LIFETIME_SECS));
    claims.insert("auth_time".into(), json!(g.auth_time));
    claims.insert("sid".into(), json!(g.sid));
    claims.insert("amr".into(), json!(grants::amr(&g.auth_method)));
    if issued.first {
        if let Some(n) = &g.nonce {
            claims.insert("nonce".into(), json!(n));
        }
    }
    Ok(Unsigned {
        key,
        access_claims,
        id_claims: claims,
        refresh_token: issued.refresh_token.clone(),
        scope: g.scope.clone(),
    })
}

/// Signs the access token (RFC 9068) and the ID token (with the access token's `at_hash`).
fn sign(u: Unsigned, secret: &crate::crypto::SecretKey) -> anyhow::Result<Value> {
    let access_token = jwt::sign(&u.access_claims, "at+jwt", &u.key, secret)?;
    let mut claims = u.id_claims;
    claims.insert("at_hash".into(), json!(jwt::at_hash(&access_token)));
    let id_token = jwt::sign(&Value::Object(claims), "JWT", &u.key, secret)?;
    Ok(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
        "id_token": id_token,
        "refresh_token": u.refresh_token,
        "scope": u.scope,
    }))
}

enum TokenOutcome {
    Tokens(Box<Unsigned>),
    Refused(&'static str, String),
    BadClient(&'static str),
}

/// The token endpoint itself.
async fn token_inner(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let form = match single_params(form.into_inner()) {
        Ok(f) => f,
        Err(e) => return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e)),
    };
    let p = match presented(&req, &form) {
        Ok(p) => p,
        Err(e) => return Ok(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e)),
    };
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    if !matches!(grant_type.as_str(), "authorization_code" | "refresh_token") {
        let (status, error) = if grant_type.is_empty() {
            (StatusCode::BAD_REQUEST, "invalid_request")
        } else {
            (StatusCode::BAD_REQUEST, "unsupported_grant_type")
        };
        return Ok(oauth_error(
            status,
            error,
            "grant_type must be authorization_code or refresh_token",
        ));
    }
    let now = crate::clock::now();
    let st = state.clone();
    let source = crate::http::client::client_key(&req, &state.settings.trusted_proxies);
    let outcome = state
        .db
        .write(move |conn| -> Result<TokenOutcome, AppError> {
            let app = match authenticate(conn, &p, now)? {
                Ok(app) => app,
                Err(why) => {
                    // Anyone can send these: one event per source a minute, with a count.
                    if let Some(refused) = st.oauth_refusals.note(&source) {
                        let event = Event::new(None, "anonymous", "oauth.token")
                            .outcome(Outcome::Failure)
                            .payload(json!({
                                "client_id": p.client_id, "grant_type": grant_type,
                                "auth_method": p.method, "cause": why, "source": source,
                                "refused_since_last_event": refused,
                            }));
                        audit::record(conn, &event, now)?;
                    }
                    return Ok(TokenOutcome::BadClient(why));
                }
            };
            let result = if grant_type == "authorization_code" {
                let Some(code) = form.get("code") else {
                    return Ok(TokenOutcome::Refused(
                        "invalid_request",
                        "code is missing".into(),
                    ));
                };
                grants::redeem_code(
                    conn,
                    &app,
                    code,
                    form.get("redirect_uri").map(String::as_str),
                    form.get("code_verifier").map(String::as_str),
                    now,
                )?
            } else {
                let Some(token) = form.get("refresh_token") else {
                    return Ok(TokenOutcome::Refused(
                        "invalid_request",
                        "refresh_token is missing".into(),
                    ));
                };
                grants::refresh(
                    conn,
                    &app,
                    token,
                    form.get("scope").map(String::as_str),
                    now,
                )?
            };
            let action = if grant_type == "authorization_code" {
                "oauth.token"
            } else {
                "oauth.refresh"
            };
            match result {
                Ok(issued) => {
                    let body = Box::new(unsigned(conn, &st, &app, &issued, now)?);
                    let event =
                        Event::new(Some(&issued.org.id), app_actor(&app), action).payload(json!({
                            "app": app.slug, "user": format!("user:{}", issued.user.id),
                            "grant": issued.grant.id, "auth_method": p.method,
                        }));
                    audit::record(conn, &event, now)?;
                    Ok(TokenOutcome::Tokens(body))
                }
                Err(r) => {
                    let org = r.grant.as_ref().map(|g| grants::owner(g).0);
                    let event = Event::new(org.as_ref(), app_actor(&app), action)
                        .outcome(Outcome::Failure)
                        .payload(json!({
                            "app": app.slug,
                            "user": r.grant.as_ref().map(|g| format!("user:{}", g.user_id)),
                            "grant": r.grant.as_ref().map(|g| g.id.clone()),
                            "cause": r.description,
                        }));
                    audit::record(conn, &event, now)?;
                    Ok(TokenOutcome::Refused(r.error, r.description))
                }
            }
        })
        .await?;
    Ok(match outcome {
        TokenOutcome::Tokens(unsigned) => {
            let st = state.clone();
            let body = tokio::task::spawn_blocking(move || sign(*unsigned, &st.key))
                .await
                .map_err(|e| AppError::Internal(anyhow::anyhow!("signing task: {e}")))?
                .map_err(AppError::Internal)?;
            no_store_json(body)
        }
        TokenOutcome::Refused(error, description) => {
            oauth_error(StatusCode::BAD_REQUEST, error, &description)
        }
        TokenOutcome::BadClient(why) => {
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why)
        }
    })
}

/// An access token's grant, while the token, the grant, its session and its user are all
/// still good: (claims, grant, app, user, org).
type Bearer = (
    Value,
    grants::Grant,
    App,
    crate::identity::users::User,
    crate::identity::orgs::Organization,
);

fn bearer(
    conn: &mut DbConn,
    state: &AppState,
    token: &str,
    now: i64,
) -> Result<Result<Bearer, String>, IdentityError> {
    let claims = match jwt::verify(conn, token, "at+jwt", &issuer(&state.settings), now, false) {
        Ok(c) => c,
        Err(jwt::Invalid::Keys(e)) => return Err(IdentityError::Other(anyhow::anyhow!(e))),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let Some(grant) = grants::get(conn, claims["grant_id"].as_str().unwrap_or_default())? else {
        return Ok(Err("the token's sign-in is gone".into()));
    };
    let Some(app) = apps::all_by_id(conn, &grant.app_id)? else {
        return Ok(Err("the app is gone".into()));
    };
    if claims["client_id"].as_str() != Some(app.client_id.as_str())
        || claims["sub"].as_str() != Some(grant.user_id.as_str())
    {
        return Ok(Err("the token does not match its sign-in".into()));
    }
    match grants::live(conn, &grant, &app, now, false)? {
        Ok((user, org)) => Ok(Ok((claims, grant, app, user, org))),
        Err(why) => Ok(Err(why.to_string())),
    }
}

fn invalid_token(description: &str) -> HttpResponse {
    HttpResponse::Unauthorized()
        .insert_header((
            header::WWW_AUTHENTICATE,
            format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                description.replace(['"', '\\'], "'")
            ),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"error": "invalid_token", "error_description": description}))
}

/// The userinfo endpoint itself, with `Authorization: Bearer <access token>`.
async fn userinfo_inner(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, AppError> {
    let Some(token) =
        crate::http::client::authorization(req.headers(), "bearer").map(str::to_string)
    else {
        return Ok(HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"gatehouse\""))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"error": "invalid_request", "error_description": "an access token is required"})));
    };
    let now = crate::clock::now();
    let st = state.clone();
    let answer = state
        .db
        .run(move |conn| -> Result<Result<Value, String>, AppError> {
            match bearer(conn, &st, &token, now)? {
                Ok((_, grant, _, user, org)) => Ok(Ok(Value::Object(grants::user_claims(
                    conn,
                    &user,
                    &org,
                    &grant.scope,
                )?))),
                Err(why) => Ok(Err(why)),
            }
        })
        .await?;
    Ok(match answer {
        Ok(claims) => no_store_json(claims),
        Err(why) => invalid_token(&why),
    })
}

/// A revocation or introspection request: the client's credentials and the `token`.
fn token_request(
    req: &HttpRequest,
    pairs: Vec<(String, String)>,
) -> Result<(Presented, String), Box<HttpResponse>> {
    let bad = |e: &str| Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", e));
    let form = single_params(pairs).map_err(|e| bad(&e))?;
    let p = presented(req, &form).map_err(|e| bad(&e))?;
    let token = form
        .get("token")
        .cloned()
        .ok_or_else(|| bad("token is missing"))?;
    Ok((p, token))
}

/// Revocation itself (RFC 7009): a refresh or access token of the calling client
/// revokes its whole sign-in. Unknown tokens get 200 as well, as the RFC asks.
async fn revoke_inner(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (p, token) = match token_request(&req, form.into_inner()) {
        Ok(v) => v,
        Err(res) => return Ok(*res),
    };
    let now = crate::clock::now();
    let st = state.clone();
    let refused = state
        .db
        .write(move |conn| -> Result<Option<&'static str>, AppError> {
            let app = match authenticate(conn, &p, now)? {
                Ok(app) => app,
                Err(why) => return Ok(Some(why)),
            };
            let grant = match grants::by_refresh_token(conn, &token, now)? {
                Some((g, _)) => Some(g),
                None => match jwt::verify(conn, &token, "at+jwt", &issuer(&st.settings), now, true)
                {
                    Ok(claims) => {
                        grants::get(conn, claims["grant_id"].as_str().unwrap_or_default())?
                    }
                    Err(_) => None,
                },
            };
            if let Some(g) = grant.filter(|g| g.app_id == app.id) {
                if grants::revoke(conn, &g.id, "revoked by the app", now)? {
                    let (org, user) = grants::owner(&g);
                    let event = Event::new(Some(&org), app_actor(&app), "oauth.revoke").payload(
                        json!({"app": app.slug, "user": format!("user:{user}"), "grant": g.id}),
                    );
                    audit::record(conn, &event, now)?;
                }
            }
            Ok(None)
        })
        .await?;
    Ok(match refused {
        Some(why) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why),
        None => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
    })
}

/// `POST /sso/oauth2/introspect` (RFC 7662), for confidential clients, about their own
/// tokens: anything else is `{"active": false}`.
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let (p, token) = match token_request(&req, form.into_inner()) {
        Ok(v) => v,
        Err(res) => return Ok(*res),
    };
    let now = crate::clock::now();
    let st = state.clone();
    let answer = state
        .db
        .run(move |conn| -> Result<Result<Value, &'static str>, AppError> {
            let app = match authenticate(conn, &p, now)? {
                Ok(app) if app.public => return Ok(Err("public clients cannot introspect")),
                Ok(app) => app,
                Err(why) => return Ok(Err(why)),
            };
            let inactive = json!({"active": false});
            if let Some((g, usable)) = grants::by_refresh_token(conn, &token, now)? {
                if !usable || g.app_id != app.id {
                    return Ok(Ok(inactive));
                }
                return Ok(Ok(match grants::live(conn, &g, &app, now, false)? {
                    Ok((user, org)) => json!({
                        "active": true, "token_type": "refresh_token", "client_id": app.client_id,
                        "sub": user.id.to_string(), "username": grants::safe_username(conn, &user)?, "scope": g.scope,
                        "iss": issuer(&st.settings), "sid": g.sid, "org": org.slug,
                    }),
                    Err(_) => inactive,
                }));
            }
            Ok(Ok(match bearer(conn, &st, &token, now)? {
                Ok((claims, _, a, user, _)) if a.id == app.id => {
                    let mut c = claims;
                    c["active"] = json!(true);
                    c["token_type"] = json!("Bearer");
                    c["username"] = json!(grants::safe_username(conn, &user)?);
                    c
                }
                _ => inactive,
            }))
        })
        .await?;
    Ok(match answer {
        Ok(body) => no_store_json(body),
        Err(why) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why),
    })
}
