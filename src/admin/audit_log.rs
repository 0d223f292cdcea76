//! The audit log of an org: filters (kind of event, outcome, actor, connection, time), an
//! event's page with its decoded payload (pretty-printed, escaped by the template) and the
//! cause in words, and exports as JSON lines and CSV (formula-safe).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use super::{access, time, AdminResult, Nav};
use crate::audit::StoredEvent;
use crate::db::schema::audit_events;
use crate::db::DbConn;
use crate::http::errors::AppError;
use crate::http::pages::render;
use crate::startup::AppState;

const PAGE: i64 = 50;
const EXPORT_MAX: i64 = 100_000;

#[derive(Deserialize, Default, Clone)]
pub struct Filter {
    #[serde(default)]
    action: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    connection: String,
    /// RFC 3339 or a date (`2026-11-22`).
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    /// The reference an error page showed the user (the request id).
    #[serde(default)]
    reference: String,
    /// Show events older than this sequence number (paging).
    before: Option<i64>,
}

fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    time::OffsetDateTime::parse(&full, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn query(conn: &mut DbConn, chain: &str, f: &Filter, limit: i64) -> QueryResult<Vec<StoredEvent>> {
    let mut q = audit_events::table
        .filter(audit_events::chain.eq(chain.to_string()))
        .into_boxed();
    if !f.action.trim().is_empty() {
        q = q.filter(audit_events::action.like(format!("{}%", f.action.trim())));
    }
    if !f.outcome.trim().is_empty() {
        q = q.filter(audit_events::outcome.eq(f.outcome.trim().to_string()));
    }
    if !f.actor.trim().is_empty() {
        // By reference (`user:…`, `scim-token:…`) or by a user's name.
        let who = f.actor.trim();
        let named: Vec<String> = crate::db::schema::users::table
            .filter(crate::db::schema::users::org_id.eq(chain))
            .filter(crate::db::schema::users::user_name.like(format!("%{who}%")))
            .select(crate::db::schema::users::id)
            .limit(200)
            .load::<String>(conn)?
            .into_iter()
            .map(|id| format!("user:{id}"))
            .collect();
        q = q.filter(
            audit_events::actor
                .like(format!("%{who}%"))
                .or(audit_events::actor.eq_any(named)),
        );
    }
    if !f.connection.trim().is_empty() {
        q = q.filter(
            audit_events::payload.like(format!("%\"connection\":\"{}\"%", f.connection.trim())),
        );
    }
    if !f.reference.trim().is_empty() {
        q = q.filter(audit_events::request_id.eq(f.reference.trim().to_ascii_lowercase()));
    }
    if let Some(t) = parse_time(&f.since) {
        q = q.filter(audit_events::occurred_at.ge(t));
    }
    if let Some(t) = parse_time(&f.until) {
        q = q.filter(audit_events::occurred_at.lt(t));
    }
    if let Some(b) = f.before {
        q = q.filter(audit_events::seq.lt(b));
    }
    q.order(audit_events::seq.desc())
        .limit(limit)
        .select(StoredEvent::as_select())
        .load(conn)
}

/// The cause of a refusal, in words, when the payload has one.
fn cause(payload: Option<&str>) -> String {
    payload
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .and_then(|v| {
            v.get("cause")
                .or(v.get("reason"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

struct Row {
    id: String,
    seq: i64,
    at: String,
    action: String,
    outcome: String,
    actor: super::actors::Named,
    target: Option<super::actors::Named>,
    cause: String,
}

#[derive(Template)]
#[template(path = "admin/audit.html")]
struct ListPage {
    nav: Nav,
    f: Filter,
    rows: Vec<Row>,
    next: Option<String>,
    export_query: String,
}

/// What an event acted on (see `actors::target`).
fn event_target(e: &StoredEvent) -> Option<super::actors::Target> {
    let payload: Value = e
        .payload
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(Value::Null);
    super::actors::target(&e.action, &payload)
}

fn filter_query(f: &Filter) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("action", &f.action)
        .append_pair("outcome", &f.outcome)
        .append_pair("actor", &f.actor)
        .append_pair("connection", &f.connection)
        .append_pair("since", &f.since)
        .append_pair("until", &f.until)
        .append_pair("reference", &f.reference)
        .finish()
}

/// One page of a chain's events as rows (actors and targets by name, see `actors`), and the
/// query of the next page if there may be one. `org`: whose objects are named (`None`: the
/// instance chain, where only instance admins are).
async fn named_rows(
    state: &AppState,
    chain: String,
    org: Option<(crate::db::ids::OrgId, String)>,
    f: &Filter,
) -> Result<(Vec<Row>, Option<String>), AppError> {
    let f2 = f.clone();
    let (events, names) = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let events = query(conn, &chain, &f2, PAGE)?;
            let targets: Vec<_> = events.iter().map(event_target).collect();
            let refs = events
                .iter()
                .map(|e| e.actor.as_str())
                .chain(super::actors::refs(&targets));
            let (org_id, slug) =
                org.unwrap_or_else(|| (crate::db::ids::OrgId::from(String::new()), String::new()));
            let names = super::actors::names(conn, &org_id, &slug, refs)?;
            Ok((events.into_iter().zip(targets).collect::<Vec<_>>(), names))
        })
        .await?;
    let next = (events.len() as i64 == PAGE)
        .then(|| {
            events
                .last()
                .map(|(e, _)| format!("{}&before={}", filter_query(f), e.seq))
        })
        .flatten();
    let rows = events
        .into_iter()
        .map(|(e, target)| Row {
            cause: cause(e.payload.as_deref()),
            actor: super::actors::show(&names, &e.actor),
            target: target.map(|t| super::actors::show_target(&names, &t)),
            id: e.id,
            seq: e.seq,
            at: time(e.occurred_at),
            action: e.action,
            outcome: e.outcome,
        })
        .collect();
    Ok((rows, next))
}

/// `GET /sso/admin/orgs/{org}/audit`
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<Filter>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    let f = q.into_inner();
    let org = Some((admin.org.id.clone(), admin.org.slug.clone()));
    let (rows, next) = named_rows(&state, admin.org.id.to_string(), org, &f).await?;
    Ok(render(
        StatusCode::OK,
        &ListPage {
            nav: admin.nav(),
            export_query: filter_query(&f),
            f,
            rows,
            next,
        },
    ))
}

#[derive(Template)]
#[template(path = "admin/audit_event.html")]
struct EventPage {
    nav: Nav,
    e: StoredEvent,
    actor: super::actors::Named,
    target: Option<super::actors::Named>,
    at: String,
    cause: String,
    payload: String,
}

/// `GET /sso/admin/orgs/{org}/audit/{id}`
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> AdminResult {
    let (org, id) = path.into_inner();
    let admin = access(&state, &req, &org).await?;
    let chain = admin.org.id.to_string();
    let (org_id, slug) = (admin.org.id.clone(), admin.org.slug.clone());
    let (e, actor, target) = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let Some(e) = audit_events::table
                .find(&id)
                .filter(audit_events::chain.eq(&chain))
                .select(StoredEvent::as_select())
                .first(conn)
                .optional()?
            else {
                return Ok(None);
            };
            let target = event_target(&e);
            let names = super::actors::names(
                conn,
                &org_id,
                &slug,
                std::iter::once(e.actor.as_str())
                    .chain(super::actors::refs(std::slice::from_ref(&target))),
            )?;
            let actor = super::actors::show(&names, &e.actor);
            let target = target.map(|t| super::actors::show_target(&names, &t));
            Ok(Some((e, actor, target)))
        })
        .await?
        .ok_or(AppError::NotFound)?;
    let payload = match e.payload.as_deref() {
        Some(p) => serde_json::from_str::<Value>(p)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| p.to_string()),
        None => "(payload purged after the retention period; the event and its hash remain)".into(),
    };
    Ok(render(
        StatusCode::OK,
        &EventPage {
            nav: admin.nav(),
            at: time(e.occurred_at),
            cause: cause(e.payload.as_deref()),
            payload,
            actor,
            target,
            e,
        },
    ))
}

/// A CSV cell that a spreadsheet will not run as a formula.
fn csv_cell(s: &str) -> String {
    let safe = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", safe.replace('"', "\"\""))
}

/// `GET /sso/admin/orgs/{org}/audit/export.{jsonl|csv}` (same filters as the list)
pub async fn export(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    q: web::Query<Filter>,
) -> AdminResult {
    let (org, format) = path.into_inner();
    let admin = access(&state, &req, &org).await?;
    if format != "jsonl" && format != "csv" {
        return Err(AppError::NotFound.into());
    }
    let (chain, f) = (admin.org.id.to_string(), q.into_inner());
    let events = state
        .db
        .run(move |conn| query(conn, &chain, &f, EXPORT_MAX).map_err(AppError::from))
        .await?;
    let mut body = String::new();
    if format == "jsonl" {
        for e in &events {
            body.push_str(&serde_json::to_string(e).map_err(|e| AppError::Internal(e.into()))?);
            body.push('\n');
        }
    } else {
        body.push_str("id,seq,occurred_at,action,outcome,actor,request_id,cause,payload,hash\n");
        for e in &events {
            let cells = [
                e.id.clone(),
                e.seq.to_string(),
                time(e.occurred_at),
                e.action.clone(),
                e.outcome.clone(),
                e.actor.clone(),
                e.request_id.clone().unwrap_or_default(),
                cause(e.payload.as_deref()),
                e.payload.clone().unwrap_or_default(),
                e.hash.clone(),
            ];
            body.push_str(
                &cells
                    .iter()
                    .map(|c| csv_cell(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            body.push('\n');
        }
    }
    let (ctype, ext) = if format == "jsonl" {
        ("application/x-ndjson", "jsonl")
    } else {
        ("text/csv; charset=utf-8", "csv")
    };
    Ok(HttpResponse::Ok()
        .content_type(ctype)
        .insert_header((
            "content-disposition",
            format!("attachment; filename=\"audit-{}.{ext}\"", admin.org.slug),
        ))
        .insert_header(("cache-control", "no-store"))
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::csv_cell;

    #[test]
    fn csv_cells_never_start_a_formula() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_cell("plain"), "\"plain\"");
    }
}

#[derive(Template)]
#[template(path = "admin/instance_audit.html")]
struct InstancePage {
    who: String,
    csrf: String,
    f: Filter,
    rows: Vec<Row>,
    next: Option<String>,
}

/// `GET /sso/admin/audit`: the instance's own events (instance admins signing in, orgs
/// created, settings), for instance admins only.
pub async fn instance(
    state: web::Data<AppState>,
    req: HttpRequest,
    q: web::Query<Filter>,
) -> AdminResult {
    let signed = super::signed_in(&req).await?;
    let crate::login::session::Principal::Admin(a) = &signed.principal else {
        return Err(AppError::NotFound.into());
    };
    let f = q.into_inner();
    let (rows, next) =
        named_rows(&state, crate::audit::INSTANCE_CHAIN.to_string(), None, &f).await?;
    Ok(render(
        StatusCode::OK,
        &InstancePage {
            who: a.email.clone(),
            csrf: signed.csrf_token.clone(),
            f,
            rows,
            next,
        },
    ))
}
