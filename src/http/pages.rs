//! Server-rendered pages shared by every module: the layout's stylesheet and the error page.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use super::context::current_request_id;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    status: u16,
    request_id: String,
}

pub const HTML: &str = "text/html; charset=utf-8";

/// Renders a template into a response, or a plain 500 if rendering itself fails.
pub fn render<T: Template>(status: StatusCode, page: &T) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status).content_type(HTML).body(body),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("internal error")
        }
    }
}

pub fn render_error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let page = ErrorPage {
        title,
        message,
        status: status.as_u16(),
        request_id: current_request_id().unwrap_or_else(|| "-".into()),
    };
    render(status, &page)
}

/// `GET /sso/static/gatehouse.css`: the only stylesheet (CSP forbids inline styles).
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("cache-control", "public, max-age=3600"))
        .body(include_str!("../../templates/static/gatehouse.css"))
}
