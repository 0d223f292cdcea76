//! The SCIM boundary: the bearer token resolves exactly one org (SHA-256 lookup) or the
//! request gets a 401 SCIM error; every request, answered or refused, becomes an audit event
//! (method, path, status, latency, body with secrets removed, token id, never the token).

use std::future::{ready, Ready};
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, FromRequest, HttpMessage, HttpRequest, ResponseError};
use serde_json::json;

use super::error::{ScimError, SCIM_JSON};
use super::AuditBody;
use crate::audit::{self, Event, Outcome};
use crate::db::ids::{OrgId, ScimTokenId};
use crate::identity::{scim_tokens, IdentityError};
use crate::startup::AppState;

/// The authenticated SCIM client: its org and token. Handlers take it as an argument, so an
/// unauthenticated request can never reach them.
#[derive(Debug, Clone)]
pub struct ScimClient {
    pub org: OrgId,
    pub token_id: ScimTokenId,
}

impl FromRequest for ScimClient {
    type Error = ScimError;
    type Future = Ready<Result<ScimClient, ScimError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<ScimClient>()
                .cloned()
                .ok_or_else(ScimError::unauthorized),
        )
    }
}

fn bearer(req: &ServiceRequest) -> Option<String> {
    crate::http::client::authorization(req.headers(), "bearer")
        .filter(|token| token.len() <= 512)
        .map(str::to_string)
}

/// The live token a bearer secret belongs to: from the one-second cache, else the database
/// (and its use recorded at most once a minute).
async fn live_token(
    state: &AppState,
    token: String,
    now: i64,
) -> Result<Option<scim_tokens::ScimToken>, ScimError> {
    if let Some(t) = scim_tokens::cached(&token) {
        return Ok(Some(t));
    }
    let found = state
        .db
        .run(move |conn| {
            let found = scim_tokens::authenticate(conn, &token)?;
            if let Some(t) = &found {
                scim_tokens::remember(&token, t);
            }
            Ok::<_, IdentityError>(found)
        })
        .await?;
    if let Some(t) = found
        .as_ref()
        .filter(|t| scim_tokens::due_for_touch(t, now))
    {
        // Through the writer like every other write (a write of its own on a pooled
        // connection would queue behind a busy writer for the lock and fail the request after
        // busy_timeout). Losing it only leaves the admin's "last used" a little older.
        let id = t.id.to_string();
        let touched = state
            .db
            .write(move |conn| scim_tokens::touch(conn, &id, now))
            .await;
        if let Err(e) = touched {
            tracing::warn!(error = %e, "could not record the SCIM token's use");
        }
    }
    Ok(found)
}

pub async fn scim_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.into_response(ScimError::internal("no app state").error_response()));
    };
    let method = req.method().to_string();
    let path = match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{}", req.path(), q),
    };
    let now = crate::clock::now();
    let client = match bearer(&req) {
        Some(token) => live_token(&state, token, now).await,
        None => Ok(None),
    };
    let client = match client {
        Ok(Some(t)) => ScimClient {
            org: t.org_id,
            token_id: t.id,
        },
        Ok(None) => {
            // Counted always; audited once per source address per minute (with how many
            // were refused since), so anonymous requests cannot grow the audit log at will.
            if let Some(m) = req.app_data::<web::Data<crate::http::metrics::Metrics>>() {
                m.scim_unauthenticated.inc();
            }
            let source =
                crate::http::client::client_key(req.request(), &state.settings.trusted_proxies);
            if let Some(refused) = state.scim_refusals.note(&source) {
                let event = Event::new(None, "scim:unauthenticated", "scim.request")
                    .outcome(Outcome::Failure)
                    .payload(json!({"method": method, "path": truncate(&path), "status": 401, "reason": "missing or unknown bearer token", "source": source, "refused_since_last_event": refused}));
                let _ = state
                    .db
                    .write(move |conn| {
                        audit::record(conn, &event, now).map_err(IdentityError::from)
                    })
                    .await;
            }
            return Ok(req.into_response(ScimError::unauthorized().error_response()));
        }
        Err(e) => return Ok(req.into_response(e.error_response())),
    };
    if let Err(retry_after) =
        super::rate_limit::check(client.token_id.as_str(), state.settings.scim_rate_limit)
    {
        let mut err = ScimError::new(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            None,
            format!(
                "more than {} requests per second for this token; retry in {retry_after} s",
                state.settings.scim_rate_limit
            ),
        );
        err.retry_after = Some(retry_after);
        return Ok(req.into_response(err.error_response()));
    }
    req.extensions_mut().insert(client.clone());
    req.extensions_mut().insert(RequestInfo {
        started,
        method: method.clone(),
        path: path.clone(),
    });
    let mut res = next.call(req).await?.map_into_boxed_body();

    // Every SCIM answer is application/scim+json, whatever produced it.
    if res.response().body().size() != actix_web::body::BodySize::None {
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    }
    if res.request().extensions().get::<Audited>().is_some() {
        // Recorded in the handler's own transaction, with the change.
        return Ok(res);
    }
    let status = res.status().as_u16();
    let body = res
        .request()
        .extensions()
        .get::<AuditBody>()
        .map(|b| b.0.clone());
    let outcome = if status < 400 {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let event = request_event(
        &client,
        &RequestInfo {
            started,
            method,
            path,
        },
        status,
        outcome,
        body,
    );
    // Redaction and hashing here; the writer only chains and inserts (its one change, so no
    // savepoint: see `Db::write_single`).
    let event = audit::prepare(event);
    let recorded = state
        .db
        .write_single(move |conn| {
            audit::record_prepared(conn, &event, now).map_err(IdentityError::from)
        })
        .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "could not record the SCIM audit event");
    }
    Ok(res)
}

/// What the middleware knows of a request, for an audit event recorded by the handler.
#[derive(Clone)]
pub struct RequestInfo {
    pub started: Instant,
    pub method: String,
    pub path: String,
}

/// Marks a request whose `scim.request` event the handler recorded in its own transaction.
#[derive(Clone, Copy)]
pub struct Audited;

/// The `scim.request` audit event.
pub fn request_event(
    client: &ScimClient,
    info: &RequestInfo,
    status: u16,
    outcome: Outcome,
    body: Option<serde_json::Value>,
) -> Event {
    Event::new(
        Some(&client.org),
        format!("scim-token:{}", client.token_id),
        "scim.request",
    )
    .outcome(outcome)
    .payload(json!({
        "method": info.method,
        "path": truncate(&info.path),
        "status": status,
        "latency_ms": info.started.elapsed().as_millis() as u64,
        "token_id": client.token_id,
        "body": body,
    }))
}

fn truncate(path: &str) -> String {
    path.chars().take(2048).collect()
}

/// Unauthenticated SCIM requests per source (an IPv4 address or an IPv6 /64): one audit
/// event per source per [`Refusals::INTERVAL`], carrying the number refused since the
/// previous one (per replica). At most [`Refusals::MAX_SOURCES`] sources a minute are audited;
/// beyond that requests are only counted.
#[derive(Default)]
pub struct Refusals {
    seen: std::sync::Mutex<std::collections::HashMap<String, (Instant, u64)>>,
}

impl Refusals {
    pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
    pub const MAX_SOURCES: usize = 1_000;

    /// Notes one refusal; `Some(n)` when this one is to be audited (`n` refusals from this
    /// source since its last event, this one included).
    pub fn note(&self, source: &str) -> Option<u64> {
        let Ok(mut seen) = self.seen.lock() else {
            return Some(1);
        };
        if seen.len() >= Self::MAX_SOURCES {
            seen.retain(|_, (at, _)| at.elapsed() < Self::INTERVAL);
            if seen.len() >= Self::MAX_SOURCES {
                // More sources in a minute than the table holds: counted, not audited (the
                // table and the audit log stay bounded).
                return None;
            }
        }
        match seen.get_mut(source) {
            Some((at, n)) if at.elapsed() < Self::INTERVAL => {
                *n += 1;
                None
            }
            Some((at, n)) => {
                let refused = *n + 1;
                *at = Instant::now();
                *n = 0;
                Some(refused)
            }
            None => {
                seen.insert(source.to_string(), (Instant::now(), 0));
                Some(1)
            }
        }
    }
}
