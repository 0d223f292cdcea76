//! Per-request context: a request id (header `X-Request-Id` on every response and a field of
//! every log line), the request's tracing span, metrics, and security headers.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use tracing::Instrument;

use super::metrics::Metrics;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, for error pages and audit events.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Wraps the whole app (`App::wrap(from_fn(request_context))`).
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // Always our own id: a client-chosen one could be used to confuse log correlation.
    let request_id = new_request_id();
    let started = Instant::now();
    let method = req.method().clone();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let state = req.app_data::<web::Data<crate::startup::AppState>>();
    let https = state.is_some_and(|s| s.settings.is_https());
    // The client as `http::client` determines it (forwarded only from trusted proxies).
    let client = state
        .map(|s| super::client::client_ip_text(req.request(), &s.settings.trusted_proxies))
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %loggable_path(req.path()),
        client = %client,
    );
    let result = REQUEST_ID
        .scope(request_id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let mut res = result?;
    let status = res.status();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    if let Some(metrics) = metrics {
        metrics.observe(&route, method.as_str(), status.as_u16(), started.elapsed());
    }
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            route = %route,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "served"
        );
    });
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    add_security_headers(headers);
    if https {
        // Under an https public URL, browsers must never come back over plain http (one year).
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    Ok(res)
}

/// Applied to every response; harmless on JSON and essential on HTML.
fn add_security_headers(headers: &mut actix_web::http::header::HeaderMap) {
    let fixed: [(HeaderName, &'static str); 5] = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in fixed {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}

/// The request path as logs may keep it: a setup link's path is its credential (anyone who
/// reads it can open the link), so its token is left out.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    // Matched as the router sees it (percent-escapes decoded): `/sso/%73etup/…` is the same.
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    match decoded.strip_prefix("/sso/setup/") {
        Some(rest) if !rest.is_empty() => "/sso/setup/(token)".into(),
        _ => path.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn setup_link_tokens_are_left_out_of_logged_paths() {
        assert_eq!(loggable_path("/sso/setup/abc"), "/sso/setup/(token)");
        assert_eq!(loggable_path("/sso/%73etup/abc"), "/sso/setup/(token)");
        assert_eq!(
            loggable_path("/sso/admin/orgs/acme"),
            "/sso/admin/orgs/acme"
        );
    }
}
