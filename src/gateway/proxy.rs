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

/// Request headers a client could use to lie to the app about where it connected, what it
/// asked for or who it is: removed (gatehouse sets the `X-Forwarded-For/-Proto/-Host` it
/// vouches for). `Expect` is gatehouse's to answer (it sends the client its 100 Continue).
const CLIENT_CANNOT_SET: &[&str] = &[
    "host",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-real-ip",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
];

/// gatehouse's own paths: never proxied.
const OWN: &[&str] = &["/sso", "/scim/v2", "/healthz", "/readyz", "/metrics"];

/// The longest the app may stay silent: before it answers, and between two reads of its body.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest WebSocket frame relayed, either way.
const MAX_APP_FRAME: usize = 16 * 1024 * 1024;

/// The TLS settings for an `https://` upstream: the public roots plus `upstream_ca`, if set.
/// Built once at start-up, only in proxy mode (a bad CA file stops the start with the reason).
pub fn upstream_tls(
    settings: &crate::config::Settings,
) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    use anyhow::Context;
    if settings.upstream.is_none() {
        return Ok(None);
    }
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
    Ok(Some(Arc::new(config)))
}

/// The upstream clients of one worker thread (their connections stay on that thread's
/// runtime): trusted (no address guard), no redirects followed. HTTP goes through hyper
/// (reqwest), which handles what an app may answer (1xx such as Early Hints, bodies that end
/// with the connection, `Expect`); WebSockets through awc, which relays `ws://` and `wss://`.
pub struct Upstream {
    http: reqwest::Client,
    ws: awc::Client,
}

pub fn upstream_client(tls: Arc<rustls::ClientConfig>) -> Upstream {
    let http = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(ANSWER_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let ws = awc::Client::builder()
        .disable_redirects()
        .no_default_headers()
        .timeout(ANSWER_TIMEOUT)
        .connector(
            awc::Connector::new()
                .rustls_0_23(tls)
                .timeout(Duration::from_secs(5)),
        )
        .finish();
    Upstream { http, ws }
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
        // `;` is encoded too: some servers (Tomcat, Spring) read `/admin;x/panel` as
        // `/admin/panel`, which the policy saw as another path.
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@/".contains(&b);
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
        // A fresh install without an app behind it: `/` says how to get in.
        if req.path() == "/" {
            if let Ok(Some(page)) = crate::admin::org::first_run(&state).await {
                return page;
            }
        }
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
    // Role rules match whatever the case (an app may serve `/ADMIN` as `/admin`); public
    // prefixes match exactly.
    let folded = path.to_lowercase();
    let mut required_roles = Vec::new();
    for (prefix, role) in &state.settings.role_paths {
        if under(&folded, &prefix.to_lowercase()) {
            required_roles.push(role.clone());
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
    let Some(client) = req.app_data::<Upstream>() else {
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
    // Built in the HTTP client's types (the frequent case); a WebSocket converts them.
    let mut out = reqwest::header::HeaderMap::new();
    let listed_in_connection: Vec<String> = req
        .headers()
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    for (name, value) in req.headers() {
        let n = name.as_str();
        // `X_Forwarded_User` reaches many apps (CGI, WSGI, Rack, PHP) as X-Forwarded-User.
        let dashed: std::borrow::Cow<str> = match n.contains('_') {
            true => n.replace('_', "-").into(),
            false => n.into(),
        };
        if HOP_BY_HOP.contains(&n)
            || listed_in_connection.iter().any(|c| c == n)
            || identity::IDENTITY_HEADERS.contains(&dashed.as_ref())
            || CLIENT_CANNOT_SET.contains(&dashed.as_ref())
            || (n == "content-length" && chunked)
        {
            continue;
        }
        let value = match n {
            "cookie" => match value.to_str().ok().and_then(app_cookies) {
                Some(v) => reqwest::header::HeaderValue::from_str(&v),
                None => continue,
            },
            _ => reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        };
        if let (Ok(n), Ok(v)) = (reqwest::header::HeaderName::from_bytes(n.as_bytes()), value) {
            out.append(n, v);
        }
    }
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = reqwest::header::HeaderValue::from_str(value) {
            out.insert(reqwest::header::HeaderName::from_static(name), v);
        }
    };
    // The client as gatehouse determined it (trusted proxies only), and the public URL's
    // scheme and host: never the client's own `Host`, which would reach the app as the host
    // of its links (a poisoned password-reset link, say).
    if let Some(ip) = crate::http::client::client_ip(&req, &state.settings.trusted_proxies) {
        set("x-forwarded-for", &ip.to_string());
    }
    set("x-forwarded-proto", state.settings.public_url.scheme());
    set("x-forwarded-host", &public_host(&state.settings.public_url));
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
        if let Err(why) = websocket_origin_allowed(&req, &state.settings) {
            return page(StatusCode::FORBIDDEN, &req, AppError::Forbidden(why));
        }
        // A signed-in socket lives only as long as its session.
        let watch = identity
            .as_ref()
            .and_then(|_| crate::login::session::cookie_hash(&req, &state.settings))
            .map(|hash| Watch {
                state: state.clone(),
                session: hash,
                roles: required_roles,
            });
        return websocket(&req, payload, &client.ws, url, out, watch).await;
    }

    // Streamed, never buffered: chunks go to the app as they arrive (with the client's
    // Content-Length when it sent one, chunked otherwise). actix payloads are not Send, so a
    // task on this worker feeds them through a channel.
    let has_body = chunked
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut builder = client.http.request(method, url).headers(out);
    if has_body {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(8);
        let mut payload = payload;
        actix_web::rt::spawn(async move {
            while let Some(chunk) = payload.next().await {
                let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        builder = builder.body(reqwest::Body::wrap_stream(stream));
    }
    let res = match builder.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            tracing::warn!(error = %e, "upstream timed out");
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
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
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
        back.append_header((n, value.as_bytes()));
    }
    // The app's length is kept when it framed the body by length (HEAD included: no body goes
    // out, the length still tells the client the size).
    let length = match res
        .headers()
        .contains_key(reqwest::header::TRANSFER_ENCODING)
    {
        true => None,
        false => res
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok()),
    };
    let bodiless = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    match length {
        Some(n) if !bodiless => back.body(SizedStream::new(n, res.bytes_stream())),
        _ => back.streaming(res.bytes_stream()),
    }
}

/// A WebSocket: actix cannot hand over the raw upgraded socket, so frames are relayed between
/// the client's connection (actix-ws) and one opened to the app (awc, `ws://` or `wss://`),
/// with the same identity headers and policy as any request.
/// How often a relayed WebSocket re-checks its session (as often as the identity cache).
const WEBSOCKET_SESSION_CHECK: Duration = super::IDENTITY_CACHE;

/// What a signed-in WebSocket keeps checking while it is open: its session, and the app roles
/// its path's role rules require.
struct Watch {
    state: web::Data<AppState>,
    session: String,
    roles: Vec<String>,
}

impl Watch {
    /// Whether the socket may stay open: the session is live (read without counting as
    /// activity) and the user still has every role the path requires.
    async fn still_allowed(&self) -> Result<bool, AppError> {
        let (h, now) = (self.session.clone(), crate::clock::now());
        let signed = self
            .state
            .db
            .run(move |c| crate::login::session::peek(c, &h, now).map_err(AppError::from))
            .await?;
        let Some(signed) = signed else {
            return Ok(false);
        };
        if self.roles.is_empty() {
            return Ok(true);
        }
        let role = super::app_role(&self.state, &signed).await?;
        Ok(self.roles.iter().all(|r| {
            role.as_deref()
                .is_some_and(|have| have.eq_ignore_ascii_case(r))
        }))
    }
}

/// Cross-site WebSocket hijacking: a browser sends the page's `Origin` with the handshake,
/// and the session cookie with it. Only our public origin or an `allowed_return_hosts` host
/// may open one; `Sec-Fetch-Site: cross-site` is refused. (No `Origin` at all is not a
/// browser, so no ambient cookie is at stake.)
fn websocket_origin_allowed(
    req: &HttpRequest,
    settings: &crate::config::Settings,
) -> Result<(), String> {
    if req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"))
    {
        return Err("cross-site WebSocket connections are refused".into());
    }
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let refused = || "this WebSocket's Origin is not this site".to_string();
    let origin = origin.to_str().map_err(|_| refused())?;
    let parsed = url::Url::parse(origin).map_err(|_| refused())?;
    let ours = settings.public_url.origin();
    if parsed.origin() == ours {
        return Ok(());
    }
    if matches!(parsed.scheme(), "https" | "http")
        && crate::login::return_to::allowed_host(&parsed, &settings.allowed_return_hosts)
    {
        return Ok(());
    }
    Err(refused())
}

async fn websocket(
    req: &HttpRequest,
    payload: web::Payload,
    client: &awc::Client,
    mut url: url::Url,
    headers: reqwest::header::HeaderMap,
    watch: Option<Watch>,
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
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            handshake = handshake.header(n, v);
        }
    }
    let (upstream, protocol) =
        match tokio::time::timeout(Duration::from_secs(10), handshake.connect()).await {
            Ok(Ok((answer, framed))) => (
                framed,
                answer
                    .headers()
                    .get(header::SEC_WEBSOCKET_PROTOCOL)
                    .cloned(),
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream WebSocket refused");
                return page(
                    StatusCode::BAD_GATEWAY,
                    req,
                    AppError::BadRequest(
                        "The application refused the WebSocket connection.".into(),
                    ),
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
    let (mut response, session, from_client) = match actix_ws::handle(req, payload) {
        Ok(parts) => parts,
        Err(e) => {
            return page(
                StatusCode::BAD_REQUEST,
                req,
                AppError::BadRequest(e.to_string()),
            )
        }
    };
    // The subprotocol the app chose (a browser drops a connection that asked for one and
    // is not told which), and the same frame size limit both ways.
    if let Some(p) = protocol {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    let mut from_client = from_client.max_frame_size(MAX_APP_FRAME);
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
        // The session ended (signed out, revoked, deactivated, expired) or the user lost a
        // role the path requires: close with 1008.
        let session_ended = async {
            let Some(watch) = watch else {
                return futures_util::future::pending::<()>().await;
            };
            let mut tick = tokio::time::interval(WEBSOCKET_SESSION_CHECK);
            loop {
                tick.tick().await;
                match watch.still_allowed().await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not re-check a WebSocket's session; closing it");
                        return;
                    }
                }
            }
        };
        let ended = tokio::select! {
            _ = client_to_app => false,
            _ = app_to_client => false,
            _ = session_ended => true,
        };
        let reason = ended.then(|| actix_ws::CloseReason {
            code: actix_ws::CloseCode::Policy,
            description: Some("the session ended".into()),
        });
        let _ = session.close(reason).await;
    });
    response
}

/// `host[:port]` of the public URL (the port only when it is not the scheme's default).
fn public_host(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
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
        assert_eq!(encode_path("/admin;x/panel"), "/admin%3Bx/panel");
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
