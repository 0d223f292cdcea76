//! The SCIM 2.0 server (RFC 7643/7644) under `/scim/v2`, one org per bearer token.

pub mod anchors;
pub mod auth;
pub mod bulk;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod groups;
pub mod patch;
#[cfg(test)]
mod property_tests;
pub mod query;
pub mod rate_limit;
pub mod resource;
pub mod schema;
pub mod store;
pub mod users;

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::Value;

use error::{ScimError, ScimResult, SCIM_JSON};

use crate::startup::AppState;

/// Largest page a client gets, whatever `count` it asks for.
pub const MAX_PAGE: i64 = 1000;
const DEFAULT_PAGE: i64 = 100;

/// Endpoint names match case-insensitively, with or without a trailing slash (clients
/// differ: `/users`, `/Users/`).
fn endpoint(name: &str) -> String {
    format!("/{{endpoint:(?i){name}/?}}")
}

fn item(name: &str) -> String {
    format!("/{{endpoint:(?i){name}}}/{{id}}")
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/scim/v2")
            .wrap(from_fn(auth::scim_context))
            .service(
                web::resource(endpoint("users"))
                    .route(web::get().to(users::list))
                    .route(web::post().to(users::create))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/{endpoint:(?i)users}/.search")
                    .route(web::post().to(users::search))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource(item("users"))
                    .route(web::get().to(users::get))
                    .route(web::put().to(users::replace))
                    .route(web::patch().to(users::patch))
                    .route(web::delete().to(users::delete))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource(endpoint("groups"))
                    .route(web::get().to(groups::list))
                    .route(web::post().to(groups::create))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/{endpoint:(?i)groups}/.search")
                    .route(web::post().to(groups::search))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource(item("groups"))
                    .route(web::get().to(groups::get))
                    .route(web::put().to(groups::replace))
                    .route(web::patch().to(groups::patch))
                    .route(web::delete().to(groups::delete))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource(endpoint("serviceproviderconfig"))
                    .route(web::get().to(discovery::service_provider_config))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource(endpoint("resourcetypes"))
                    .route(web::get().to(discovery::resource_types))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource(item("resourcetypes"))
                    .route(web::get().to(discovery::resource_type))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource(endpoint("schemas"))
                    .route(web::get().to(discovery::schemas))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource(item("schemas"))
                    .route(web::get().to(discovery::schema))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource(endpoint("bulk"))
                    .route(web::post().to(bulk::bulk))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/.search")
                    .route(web::post().to(users::search_root))
                    .default_service(web::to(method_not_allowed)),
            )
            .default_service(web::to(not_found)),
    );
}

async fn method_not_allowed() -> Result<HttpResponse, ScimError> {
    Err(ScimError::method_not_allowed())
}

async fn not_found() -> Result<HttpResponse, ScimError> {
    Err(ScimError::not_found("endpoint"))
}

/// The SCIM base URL handed to clients (`meta.location`), from the public URL.
pub fn base_url(state: &AppState) -> String {
    state.settings.url_for("/scim/v2")
}

/// A SCIM JSON response.
pub fn respond(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(SCIM_JSON)
        .body(body.to_string())
}

/// A request's `If-Match` / `If-None-Match` (RFC 7644 §3.14; our ETags are weak: `W/"n"`).
#[derive(Clone, Default)]
pub struct Preconditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
}

fn names_version(list: &str, etag: &str) -> bool {
    let bare = |t: &str| {
        t.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    list.split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

impl Preconditions {
    /// A bulk operation's `version` is its `If-Match`.
    pub fn if_match(version: Option<String>) -> Preconditions {
        Preconditions {
            if_match: version,
            if_none_match: None,
        }
    }

    pub fn of(req: &HttpRequest) -> Preconditions {
        let get = |h: &str| {
            req.headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Preconditions {
            if_match: get("if-match"),
            if_none_match: get("if-none-match"),
        }
    }

    /// PUT, PATCH, DELETE: 412 unless an `If-Match` (when sent) names the current version.
    pub fn check_write(&self, version: i64) -> ScimResult<()> {
        match &self.if_match {
            Some(list) if !names_version(list, &resource::etag(version)) => {
                Err(ScimError::precondition_failed(format!(
                    "If-Match does not name the current version {}",
                    resource::etag(version)
                )))
            }
            _ => Ok(()),
        }
    }

    /// GET: the client's copy is current (`If-None-Match` names it): answer 304.
    pub fn not_modified(&self, body: &Value) -> Option<HttpResponse> {
        let etag = body.pointer("/meta/version").and_then(Value::as_str)?;
        let list = self.if_none_match.as_deref()?;
        names_version(list, etag).then(|| {
            HttpResponse::NotModified()
                .insert_header(("etag", etag.to_string()))
                .finish()
        })
    }
}

/// A resource response with its `ETag` (and `Location` when created).
pub fn respond_resource(status: StatusCode, body: &Value) -> HttpResponse {
    respond_resource_text(status, body, body.to_string())
}

/// A serialised body as the response body: a large one (a group with 100,000 members is
/// ~18 MB) goes out in 64 KiB slices of the same buffer, so the server never holds a second
/// copy of it in its write buffer.
pub fn json_body(res: &mut actix_web::HttpResponseBuilder, text: String) -> HttpResponse {
    const SLICE: usize = 64 * 1024;
    if text.len() <= 4 * SLICE {
        return res.body(text);
    }
    let all = actix_web::web::Bytes::from(text);
    let len = all.len();
    let slices = (0..len)
        .step_by(SLICE)
        .map(move |at| Ok::<_, std::convert::Infallible>(all.slice(at..(at + SLICE).min(len))));
    res.body(actix_web::body::SizedStream::new(
        len as u64,
        futures_util::stream::iter(slices),
    ))
}

/// [`respond_resource`] with the body already serialised (`value` gives the headers).
pub fn respond_resource_text(status: StatusCode, body: &Value, text: String) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.content_type(SCIM_JSON);
    if let Some(v) = body.pointer("/meta/version").and_then(Value::as_str) {
        res.insert_header(("etag", v.to_string()));
    }
    if status == StatusCode::CREATED {
        if let Some(loc) = body.pointer("/meta/location").and_then(Value::as_str) {
            res.insert_header(("location", loc.to_string()));
        }
    }
    json_body(&mut res, text)
}

/// The `{id}` of `/Users/{id}`, `/Groups/{id}`, `/Schemas/{id}`…
pub struct ResourceId(pub String);

impl actix_web::FromRequest for ResourceId {
    type Error = ScimError;
    type Future = std::future::Ready<Result<ResourceId, ScimError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(
            req.match_info()
                .get("id")
                .map(|id| ResourceId(id.to_string()))
                .ok_or_else(|| ScimError::not_found("resource")),
        )
    }
}

/// The request body for the audit event (secrets are redacted when it is recorded).
#[derive(Clone)]
pub struct AuditBody(pub Value);

/// Reads a JSON body under the configured limit. Accepts `application/scim+json`,
/// `application/json`, or no content type at all (Entra's connection test).
pub async fn read_json(
    state: &AppState,
    req: &HttpRequest,
    mut payload: web::Payload,
) -> ScimResult<Value> {
    let limit = state.settings.scim_max_body_bytes;
    if let Some(len) = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(ScimError::too_large(limit));
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| ScimError::invalid_syntax("could not read the request body"))?;
        if body.len() + chunk.len() > limit {
            return Err(ScimError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))?;
    req.extensions_mut().insert(AuditBody(value.clone()));
    Ok(value)
}

/// List parameters, from the query string or a SearchRequest body.
#[derive(Debug, Default, Clone)]
pub struct ListParams {
    pub filter: Option<String>,
    pub start_index: i64,
    pub count: i64,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub attributes: Option<String>,
    pub excluded: Option<String>,
}

impl ListParams {
    pub fn from_query(q: &HashMap<String, String>) -> ScimResult<ListParams> {
        let get = |name: &str| {
            q.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let int =
            |name: &str| -> ScimResult<Option<i64>> {
                match get(name) {
                    None => Ok(None),
                    Some(v) if v.trim().is_empty() => Ok(None),
                    Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| {
                        ScimError::invalid_value(format!("`{name}` must be an integer"))
                    }),
                }
            };
        Ok(ListParams {
            filter: get("filter").filter(|f| !f.trim().is_empty()),
            start_index: int("startIndex")?.unwrap_or(1).max(1),
            count: int("count")?.unwrap_or(DEFAULT_PAGE).clamp(0, MAX_PAGE),
            sort_by: get("sortBy"),
            descending: get("sortOrder").is_some_and(|o| o.eq_ignore_ascii_case("descending")),
            attributes: get("attributes"),
            excluded: get("excludedAttributes"),
        })
    }

    pub fn from_search(body: &Value) -> ScimResult<ListParams> {
        let mut q = HashMap::new();
        if let Value::Object(map) = body {
            for (k, v) in map {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Array(items) => items
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                    _ => continue,
                };
                q.insert(k.clone(), text);
            }
        }
        ListParams::from_query(&q)
    }

    pub fn parsed_filter(&self) -> ScimResult<Option<filter::Filter>> {
        self.filter
            .as_deref()
            .map(|f| filter::parse(f).map_err(ScimError::invalid_filter))
            .transpose()
    }

    pub fn projection(&self) -> resource::Projection {
        resource::Projection::new(self.attributes.as_deref(), self.excluded.as_deref())
    }
}

/// Runs `f` in one write transaction together with the request's `scim.request` audit event
/// (answered with `status` when `f` succeeds): the change and its record commit together, in
/// one round trip. When `f` fails, nothing is written and the middleware records the refusal.
pub async fn write_audited<T, F>(
    state: &AppState,
    req: &HttpRequest,
    client: &auth::ScimClient,
    status: StatusCode,
    f: F,
) -> ScimResult<T>
where
    F: FnOnce(&mut crate::db::DbConn) -> ScimResult<T> + Send + 'static,
    T: Send + 'static,
{
    let info = req.extensions().get::<auth::RequestInfo>().cloned();
    let Some(info) = info else {
        return state.db.write(f).await;
    };
    let body = req.extensions().get::<AuditBody>().map(|b| b.0.clone());
    let event = auth::request_event(
        client,
        &info,
        status.as_u16(),
        crate::audit::Outcome::Success,
        body,
    );
    let event = crate::audit::prepare(event);
    let now = crate::clock::now();
    let value = state
        .db
        .write(move |conn| {
            let value = f(conn)?;
            crate::audit::record_prepared(conn, &event, now)?;
            Ok::<T, ScimError>(value)
        })
        .await?;
    req.extensions_mut().insert(auth::Audited);
    Ok(value)
}

/// A page of resources: (exact total, each resource as JSON text).
pub type PageFn = fn(
    &mut crate::db::DbConn,
    &crate::db::ids::OrgId,
    &str,
    Option<&filter::Filter>,
    &ListParams,
    i64,
    i64,
) -> ScimResult<(i64, Vec<String>)>;

/// `GET /Users`, `GET /Groups` and their `/.search`.
pub async fn run_list(
    state: &AppState,
    org: crate::db::ids::OrgId,
    params: ListParams,
    page: PageFn,
) -> ScimResult<HttpResponse> {
    let filter = params.parsed_filter()?;
    let base = base_url(state);
    let short = filter
        .as_ref()
        .and_then(filter::Filter::unique_user_name)
        .is_some();
    let work = move |conn: &mut crate::db::DbConn| -> ScimResult<String> {
        let (total, resources) = page(
            conn,
            &org,
            &base,
            filter.as_ref(),
            &params,
            params.start_index - 1,
            params.count,
        )?;
        let text = list_text(total, params.start_index, &resources);
        groups::fill_members(conn, &base, text)
    };
    // The lookup IdPs make before every create and update (`userName eq`) is one index probe.
    let body = match short {
        true => state.db.run_short(work).await?,
        false => state.db.run(work).await?,
    };
    Ok(json_body(HttpResponse::Ok().content_type(SCIM_JSON), body))
}

/// [`list_response`] as text, byte for byte, from resources already written as JSON text.
pub fn list_text(total: i64, start_index: i64, resources: &[String]) -> String {
    let len: usize = resources.iter().map(|r| r.len() + 1).sum();
    let mut out = String::with_capacity(len + 160);
    out.push_str(r#"{"schemas":["#);
    out.push_str(&Value::String(schema::LIST_SCHEMA.into()).to_string());
    out.push_str(&format!(
        r#"],"totalResults":{total},"startIndex":{start_index},"itemsPerPage":{},"Resources":["#,
        resources.len()
    ));
    for (i, r) in resources.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r);
    }
    out.push_str("]}");
    out
}

pub fn list_response(total: i64, start_index: i64, resources: Vec<Value>) -> Value {
    // Built by hand: `json!` would copy every resource through the serializer.
    let mut out = serde_json::Map::new();
    out.insert("schemas".into(), serde_json::json!([schema::LIST_SCHEMA]));
    out.insert("totalResults".into(), total.into());
    out.insert("startIndex".into(), start_index.into());
    out.insert("itemsPerPage".into(), resources.len().into());
    out.insert("Resources".into(), Value::Array(resources));
    Value::Object(out)
}
