//! One error type per boundary. [`AppError`] answers JSON; [`PageError`] wraps the same cases
//! and answers an HTML page that shows the request id. 5xx bodies are opaque: the cause chain
//! goes to the log only.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use super::context::current_request_id;
use super::pages::render_error_page;
use crate::db::DbError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    TooLarge,
    #[error("too many requests, retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Unavailable(msg) => AppError::Unavailable(msg),
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::TooLarge => "payload_too_large",
            AppError::TooManyRequests { .. } => "too_many_requests",
            AppError::Unavailable(_) => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }

    /// What the client may read. Server-side failures never expose their cause.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "internal error; quote the request id to your operator".into(),
            AppError::Unavailable(_) => "temporarily unavailable; try again shortly".into(),
            other => other.to_string(),
        }
    }

    /// Logs server-side failures with their full cause chain, once.
    pub fn log(&self) {
        match self {
            AppError::Internal(e) => tracing::error!(error = format!("{e:#}"), "request failed"),
            AppError::Unavailable(e) => tracing::warn!(error = %e, "dependency unavailable"),
            _ => {}
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            AppError::TooManyRequests { retry_after } => Some(*retry_after),
            AppError::Unavailable(_) => Some(5),
            _ => None,
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        let mut res = HttpResponse::build(self.status());
        if let Some(secs) = self.retry_after() {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        res.json(json!({
            "error": self.code(),
            "message": self.public_message(),
            "request_id": current_request_id(),
        }))
    }
}

/// The same failures, answered as an HTML page for browsers.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PageError(#[from] pub AppError);

impl From<DbError> for PageError {
    fn from(e: DbError) -> Self {
        PageError(e.into())
    }
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        PageError(AppError::Internal(e))
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.0.log();
        let title = match &self.0 {
            AppError::NotFound => "Page not found",
            AppError::Unauthorized(_) => "Sign-in required",
            AppError::Forbidden(_) => "Not allowed",
            AppError::TooManyRequests { .. } => "Too many attempts",
            AppError::Internal(_) | AppError::Unavailable(_) => "Something went wrong",
            _ => "Request refused",
        };
        let mut res = render_error_page(self.0.status(), title, &self.0.public_message());
        if let Some(secs) = self.0.retry_after() {
            if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}

/// True when the client prefers HTML (a browser navigation).
pub fn wants_html(req: &actix_web::HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|accept| accept.contains("text/html"))
        .unwrap_or(false)
}

/// The default service: 404 as a page for browsers, JSON otherwise, never internals.
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    // `/sso/admin/` and friends: gatehouse's pages have no trailing slash; a GET with one is
    // sent to the page (308 keeps the method; the query string goes along).
    let path = req.path();
    if matches!(
        *req.method(),
        actix_web::http::Method::GET | actix_web::http::Method::HEAD
    ) && path.starts_with("/sso/")
        && path.len() > "/sso/".len()
        && path.ends_with('/')
    {
        let trimmed = path.trim_end_matches('/');
        if !trimmed.is_empty() && !trimmed.contains("//") {
            let to = match req.query_string() {
                "" => trimmed.to_string(),
                q => format!("{trimmed}?{q}"),
            };
            return HttpResponse::PermanentRedirect()
                .insert_header((actix_web::http::header::LOCATION, to))
                .finish();
        }
    }
    if wants_html(&req) {
        PageError(AppError::NotFound).error_response()
    } else {
        AppError::NotFound.error_response()
    }
}
