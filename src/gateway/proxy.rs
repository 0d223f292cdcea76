//! Proxy mode (`GATEHOUSE_UPSTREAM`): every path outside gatehouse's own goes to the app, with
//! bodies streamed both ways. The path is normalised once (percent-decoding, `.`/`..`, `//`)
//! and that one form decides the policy and is forwarded. The client's identity headers and
//! gatehouse's cookies never reach the app; gatehouse's identity headers do. The upstream
//! client is its own (trusted, no redirects), separate from the guarded outbound client.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::identity;
use crate::http::errors::{self, AppError, PageError};
use crate::startup::AppState;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// gatehouse's own paths: never proxied.
const OWN: &[&str] = &["/sso", "/scim/v2", "/healthz", "/readyz", "/metrics"];

/// How long the app may take to answer a request's head (a request with a body: to take the
/// whole body and answer; uploads get longer).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Largest WebSocket frame the app may send through the relay.
const MAX_APP_FRAME: usize = 16 * 1024 * 1024;

/// The TLS settings for an `https://` upstream: the public roots plus `upstream_ca`, if set.
/// Built once at start-up (a bad CA file stops the start with the reason).
pub fn upstream_tls(
    settings: &crate::config::Settings,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use anyhow::Context;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.upstream_ca {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read GATEHOUSE_UPSTREAM_CA {}", path.display()))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("{} holds no PEM certificate", path.display());
        }
        for cert in certs {
            roots.add(cert).with_context(|| {
                format!("{}: a certificate cannot be used as a CA", path.display())
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The upstream client of one worker thread (its connections stay on that thread): trusted
/// (no address guard), no redirects followed, no headers of its own added.
pub fn upstream_client(tls: Arc<rustls::ClientConfig>) -> awc::Client {
    awc::Client::builder()
        .disable_redirects()
        .no_default_headers()
        .timeout(ANSWER_TIMEOUT)
        .connector(
            awc::Connector::new()
                .rustls_0_23(tls)
                .timeout(Duration::from_secs(5))
                .conn_keep_alive(Duration::from_secs(30))
                .limit(0),
        )
        .finish()
}

/// The one form of a path: percent-decoded once, `.` and empty segments dropped, `..` applied.
/// `None` for what no app should see (invalid UTF-8, NUL, a backslash).
pub fn normalize(raw: &str) -> Option<String> {
    let decoded: Vec<u8> = percent_decode(raw.as_bytes());
    let text = String::from_utf8(decoded).ok()?;
    if text.contains('\0') || text.contains('\\') {
        return None;
    }
    let mut segments: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = format!("/{}", segments.join("/"));
    if text.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    Some(out)
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

/// The normalised path encoded for the wire: only unreserved characters, sub-delimiters, `:`,
/// `@` and `/` stay as they are (so the app decodes exactly the path the policy saw).
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"))
}

fn is_gatehouse_cookie(name: &str) -> bool {
    let n = name.trim();
    n.starts_with("gatehouse_")
        || n.starts_with("__Host-gatehouse_")
        || n.starts_with("__Secure-gatehouse_")
}

/// The app's view of the client's Cookie header: gatehouse's cookies removed.
fn app_cookies(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .filter(|c| !is_gatehouse_cookie(c.split('=').next().unwrap_or("")))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

fn page(status: StatusCode, req: &HttpRequest, err: AppError) -> HttpResponse {
    let res = if errors::wants_html(req) {
        actix_web::ResponseError::error_response(&PageError(err))
    } else {
        actix_web::ResponseError::error_response(&err)
    };
    let mut res = res;
    *res.status_mut() = status;
    res
}

/// The default service: proxy mode when `upstream` is set, else 404.
pub async fn handle(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let Some(upstream) = state.settings.upstream.clone() else {
        return errors::not_found(req).await;
    };
    let Some(path) = normalize(req.path()) else {
        return page(
            StatusCode::BAD_REQUEST,
            &req,
            AppError::BadRequest("malformed path".into()),
        );
    };
    if OWN.iter().any(|p| under(&path, p)) {
        return errors::not_found(req).await;
    }
    let query = req.query_string();
    let target = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    };

    // Who is asking (read from the database on every request: revocation is immediate).
    let identity = match super::caller(&state, &req).await {
        Ok(super::Caller::User(i, token)) => Some((i, token)),
        Ok(_) => None,
        Err(e) => return page(StatusCode::INTERNAL_SERVER_ERROR, &req, e),
    };
    let public = state.settings.public_paths.iter().any(|p| under(&path, p));
    if identity.is_none() && !public {
        if errors::wants_html(&req) {
            return HttpResponse::Found()
                .insert_header((
                    header::LOCATION,
                    format!(
                        "/sso/login?return_to={}",
                        url::form_urlencoded::byte_serialize(target.as_bytes()).collect::<String>()
                    ),
                ))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
        }
        return page(
            StatusCode::UNAUTHORIZED,
            &req,
            AppError::Unauthorized("sign in first".into()),
        );
    }
    for (prefix, role) in &state.settings.role_paths {
        if under(&path, prefix) {
            let has = identity
                .as_ref()
                .and_then(|(i, _)| i.role.as_deref())
                .is_some_and(|r| r.eq_ignore_ascii_case(role));
            if !has {
                return page(
                    StatusCode::FORBIDDEN,
                    &req,
                    AppError::Forbidden(format!(
                        "This page needs the {role} role. Ask your administrator."
                    )),
                );
            }
        }
    }

    // The request to the app.
    let Some(client) = req.app_data::<awc::Client>().cloned() else {
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &req,
            AppError::Internal(anyhow::anyhow!("no upstream client")),
        );
    };
    let mut url = upstream;
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}{}", encode_path(&path)));
    url.set_query((!query.is_empty()).then_some(query));
    let mut out = header::HeaderMap::new();
    let listed_in_connection: Vec<String> = req
        .headers()
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for (name, value) in req.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || listed_in_connection.iter().any(|c| c == n)
            || identity::IDENTITY_HEADERS.contains(&n)
            || matches!(
                n,
                "host"
                    | "content-length"
                    | "x-forwarded-for"
                    | "x-forwarded-proto"
                    | "x-forwarded-host"
            )
        {
            continue;
        }
        if n == "cookie" {
            if let Some(v) = value
                .to_str()
                .ok()
                .and_then(app_cookies)
                .and_then(|v| header::HeaderValue::from_str(&v).ok())
            {
                out.append(name.clone(), v);
            }
        } else {
            out.append(name.clone(), value.clone());
        }
    }
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = header::HeaderValue::from_str(value) {
            out.insert(header::HeaderName::from_static(name), v);
        }
    };
    if let Some(peer) = req.peer_addr() {
        set("x-forwarded-for", &peer.ip().to_string());
    }
    set("x-forwarded-proto", state.settings.public_url.scheme());
    if let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        set("x-forwarded-host", host);
    }
    if let Some((i, token)) = &identity {
        for (name, value) in identity::headers(i, token) {
            set(name, &value);
        }
    }

    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return websocket(&req, payload, &client, url, out).await;
    }

    let mut request = client.request(req.method().clone(), url.as_str());
    *request.headers_mut() = out;
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    // Streamed, never buffered: chunks go to the app as they arrive (with the client's
    // Content-Length when it sent one, chunked otherwise).
    let sent = match (length, chunked) {
        (Some(n), false) if n > 0 => {
            request
                .timeout(UPLOAD_TIMEOUT)
                .send_body(SizedStream::new(n, payload))
                .await
        }
        (_, true) => request.timeout(UPLOAD_TIMEOUT).send_stream(payload).await,
        _ => request.send().await,
    };
    let res = match sent {
        Ok(r) => r,
        Err(awc::error::SendRequestError::Timeout) => {
            tracing::warn!("upstream timed out");
            return page(
                StatusCode::GATEWAY_TIMEOUT,
                &req,
                AppError::BadRequest(
                    "The application did not answer in time. Try again in a moment.".into(),
                ),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream unreachable");
            return page(
                StatusCode::BAD_GATEWAY,
                &req,
                AppError::BadRequest(
                    "The application is not reachable right now. Try again in a moment.".into(),
                ),
            );
        }
    };
    let status = res.status();
    let mut back = HttpResponse::build(status);
    for (name, value) in res.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n == "content-length" {
            continue;
        }
        if n == "set-cookie"
            && value
                .to_str()
                .ok()
                .is_some_and(|v| is_gatehouse_cookie(v.split('=').next().unwrap_or("")))
        {
            continue;
        }
        back.append_header((name.clone(), value.clone()));
    }
    let length = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bodiless = req.method() == actix_web::http::Method::HEAD
        || status.is_informational()
        || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    match length {
        Some(n) if !bodiless => back.body(SizedStream::new(n, res)),
        _ => back.streaming(res),
    }
}

/// A WebSocket: actix cannot hand over the raw upgraded socket, so frames are relayed between
/// the client's connection (actix-ws) and one opened to the app (awc, `ws://` or `wss://`),
/// with the same identity headers and policy as any request.
async fn websocket(
    req: &HttpRequest,
    payload: web::Payload,
    client: &awc::Client,
    mut url: url::Url,
    headers: header::HeaderMap,
) -> HttpResponse {
    use actix_web::http::header::HeaderName;
    use awc::ws::{Frame, Message};
    use futures_util::SinkExt;

    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    if url.set_scheme(scheme).is_err() {
        return page(
            StatusCode::BAD_GATEWAY,
            req,
            AppError::BadRequest("bad upstream URL".into()),
        );
    }
    let mut handshake = client.ws(url.as_str()).max_frame_size(MAX_APP_FRAME);
    for (name, value) in &headers {
        let n = name.as_str();
        // The handshake's own headers are awc's to set.
        if n.starts_with("sec-websocket-") && n != "sec-websocket-protocol" {
            continue;
        }
        handshake = handshake.header(HeaderName::clone(name), value.clone());
    }
    let upstream = match tokio::time::timeout(Duration::from_secs(10), handshake.connect()).await {
        Ok(Ok((_, framed))) => framed,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "upstream WebSocket refused");
            return page(
                StatusCode::BAD_GATEWAY,
                req,
                AppError::BadRequest("The application refused the WebSocket connection.".into()),
            );
        }
        Err(_) => {
            return page(
                StatusCode::GATEWAY_TIMEOUT,
                req,
                AppError::BadRequest("The application did not answer in time.".into()),
            )
        }
    };
    let (response, session, mut from_client) = match actix_ws::handle(req, payload) {
        Ok(parts) => parts,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                req,
                AppError::BadRequest(e.to_string()),
            )
        }
    };
    let (mut to_app, mut from_app) = upstream.split();
    let mut to_client = session.clone();
    actix_web::rt::spawn(async move {
        let client_to_app = async {
            while let Some(Ok(msg)) = from_client.next().await {
                let closing = matches!(msg, Message::Close(_));
                if matches!(msg, Message::Nop) {
                    continue;
                }
                if to_app.send(msg).await.is_err() || closing {
                    return;
                }
            }
            let _ = to_app.send(Message::Close(None)).await;
        };
        let app_to_client = async {
            while let Some(Ok(frame)) = from_app.next().await {
                let sent = match frame {
                    Frame::Text(t) => match String::from_utf8(t.to_vec()) {
                        Ok(text) => to_client.text(text).await,
                        Err(_) => break,
                    },
                    Frame::Binary(b) => to_client.binary(b).await,
                    Frame::Continuation(item) => to_client.continuation(item).await,
                    Frame::Ping(b) => to_client.ping(&b).await,
                    Frame::Pong(b) => to_client.pong(&b).await,
                    Frame::Close(_) => break,
                };
                if sent.is_err() {
                    break;
                }
            }
        };
        futures_util::future::select(Box::pin(client_to_app), Box::pin(app_to_client)).await;
        let _ = session.close(None).await;
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_normal_form_for_policy_and_forwarding() {
        for (raw, want) in [
            ("/admin", "/admin"),
            ("//admin", "/admin"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public%2F..%2Fadmin", "/admin"),
            ("/a/./b//c/", "/a/b/c/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/x%20y", "/x y"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Some(want), "{raw}");
        }
        assert_eq!(normalize("/a%00b"), None);
        assert_eq!(normalize("/a%5c..%5cadmin"), None);
        assert_eq!(normalize("/%ff"), None);
        assert_eq!(encode_path("/x y/%/ü"), "/x%20y/%25/%C3%BC");
        assert!(under("/admin/x", "/admin") && under("/admin", "/admin/"));
        assert!(!under("/administrator", "/admin"));
    }

    #[test]
    fn gatehouse_cookies_stay_here() {
        assert_eq!(
            app_cookies("a=1; gatehouse_session=s; __Host-gatehouse_csrf=c; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(app_cookies("gatehouse_session=s"), None);
    }
}
