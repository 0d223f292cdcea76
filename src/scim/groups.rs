//! `/Groups`: create, read, list/search, replace, patch, delete. Members live in the
//! memberships table; a PATCH touches only the members it names, and `members` is loaded
//! only when the client wants it (`excludedAttributes=members` never loads it).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::auth::ScimClient;
use super::error::{ScimError, ScimResult};
use super::patch::{self, MemberChange};
use super::query::{self, Sql};
use super::resource::{render_group, GroupRow, Projection};
use super::schema::{self, Resource};
use super::{base_url, filter, read_json, respond_resource, store, ListParams, ResourceId};
use crate::clock;
use crate::db::ids::OrgId;
use crate::db::DbConn;
use crate::startup::AppState;

fn fields(body: &Value) -> ScimResult<store::GroupFields> {
    let doc =
        schema::normalize_resource(Resource::Group, body).map_err(ScimError::invalid_value)?;
    store::group_fields(doc)
}

/// How members are rendered: as JSON values (small documents: create/replace/patch answers),
/// or as a placeholder that [`fill_members`] replaces with text written straight from the
/// database (reads, where a group may have 100,000 members: as values they took ~200 MB).
#[derive(Clone, Copy, PartialEq)]
enum Members {
    Values,
    Deferred,
}

fn render_all(
    conn: &mut DbConn,
    base: &str,
    groups: &[GroupRow],
    projection: &Projection,
    how: Members,
) -> ScimResult<Vec<Value>> {
    if how == Members::Deferred && projection.wants_whole("members") {
        return Ok(groups
            .iter()
            .map(|g| {
                let mut v = render_group(base, g, None);
                if let Value::Object(map) = &mut v {
                    map.insert(
                        "members".into(),
                        Value::String(format!("{}{}", marker().prefix, g.id)),
                    );
                }
                projection.apply(v)
            })
            .collect());
    }
    let members = if projection.wants("members") {
        let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        Some(store::members_of(conn, &ids)?)
    } else {
        None
    };
    Ok(groups
        .iter()
        .map(|g| {
            let mine: Option<Vec<(String, String)>> = members.as_ref().map(|m| {
                m.iter()
                    .filter(|(gid, _, _)| gid == &g.id)
                    .map(|(_, uid, name)| (uid.clone(), name.clone()))
                    .collect()
            });
            projection.apply(render_group(base, g, mine.as_deref()))
        })
        .collect())
}

fn render_one(
    conn: &mut DbConn,
    base: &str,
    g: &GroupRow,
    projection: &Projection,
) -> ScimResult<Value> {
    Ok(render_all(
        conn,
        base,
        std::slice::from_ref(g),
        projection,
        Members::Values,
    )?
    .pop()
    .unwrap_or(Value::Null))
}

/// The placeholder's text before the group id: unguessable (a random number per process),
/// so no client-supplied string can be mistaken for it. With it, as serde_json writes it
/// (U+0001 as `\u0001`, after the opening quote): what [`fill_members`] looks for.
struct Marker {
    prefix: String,
    needle: String,
}

fn marker() -> &'static Marker {
    static MARKER: std::sync::OnceLock<Marker> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        let nonce = format!("{:032x}", rand::random::<u128>());
        Marker {
            prefix: format!("\u{1}gatehouse-members:{nonce}:"),
            needle: format!("\"\\u0001gatehouse-members:{nonce}:"),
        }
    })
}

/// `text` (serialised JSON) with every members placeholder replaced by that group's member
/// array, streamed from the database row by row.
pub fn fill_members(conn: &mut DbConn, base: &str, text: String) -> ScimResult<String> {
    let needle = marker().needle.as_str();
    if !text.contains(needle) {
        return Ok(text);
    }
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(needle) {
        out.extend_from_slice(&rest.as_bytes()[..at]);
        let after = &rest[at + needle.len()..];
        let end = after
            .find('"')
            .ok_or_else(|| ScimError::internal("unterminated members placeholder"))?;
        store::write_members(conn, base, &after[..end], &mut out)?;
        rest = &after[end + 1..];
    }
    out.extend_from_slice(rest.as_bytes());
    String::from_utf8(out).map_err(|_| ScimError::internal("members text is not UTF-8"))
}

/// A page of groups as SCIM JSON, with the exact total.
pub fn page(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    filter: Option<&filter::Filter>,
    params: &ListParams,
    offset: i64,
    limit: i64,
) -> ScimResult<(i64, Vec<String>)> {
    let mut cond = Sql::default();
    cond.push("g.org_id = ")
        .bind(query::Bind::Text(org.to_string()));
    if let Some(f) = filter {
        cond.push(" AND (")
            .append(query::group_filter(org.as_str(), f)?)
            .push(")");
    }
    let order = query::group_order(params.sort_by.as_deref(), params.descending);
    let (total, groups) = query::page::<GroupRow>(
        conn,
        "g.*",
        "user_groups g",
        cond,
        &order,
        offset,
        limit,
        None,
    )?;
    Ok((
        total,
        render_all(conn, base, &groups, &params.projection(), Members::Deferred)?
            .iter()
            .map(Value::to_string)
            .collect(),
    ))
}

/// `GET /Groups`
pub async fn list(
    state: web::Data<AppState>,
    client: ScimClient,
    q: web::Query<HashMap<String, String>>,
) -> ScimResult<HttpResponse> {
    super::run_list(&state, client.org, ListParams::from_query(&q)?, page).await
}

/// `POST /Groups/.search`
pub async fn search(
    state: web::Data<AppState>,
    client: ScimClient,
    req: HttpRequest,
    payload: web::Payload,
) -> ScimResult<HttpResponse> {
    let body = read_json(&state, &req, payload).await?;
    super::run_list(&state, client.org, ListParams::from_search(&body)?, page).await
}

/// Creates a group with the members in its body (in the caller's write transaction).
pub fn create_in(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    body: &Value,
    now: i64,
) -> ScimResult<Value> {
    let fields = fields(body)?;
    let members = store::members_in(body)?;
    let g = store::create_group(conn, org, fields, now)?;
    store::add_members(conn, org, &g.id, &members, now)?;
    render_one(conn, base, &g, &Projection::default())
}

/// Replaces a group's attributes and member list (PUT).
pub fn replace_in(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    id: &str,
    body: &Value,
    pre: &super::Preconditions,
    now: i64,
) -> ScimResult<Value> {
    let fields = fields(body)?;
    let members = store::members_in(body)?;
    let g = store::get_group(conn, org, id)?;
    pre.check_write(g.version)?;
    store::update_group(conn, org, &g, fields)?;
    store::remove_all_members(conn, &g.id)?;
    store::add_members(conn, org, &g.id, &members, now)?;
    let g = store::touch_group(conn, &g, now)?;
    render_one(conn, base, &g, &Projection::default())
}

/// Applies a PatchOp document to a group, touching only the members it names. Returns the
/// group rendered with `projection` when one is given, and its new version.
#[allow(clippy::too_many_arguments)]
pub fn patch_in(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    id: &str,
    body: &Value,
    pre: &super::Preconditions,
    projection: Option<&Projection>,
    now: i64,
) -> ScimResult<(Option<Value>, i64)> {
    let ops = patch::parse_operations(body)?;
    let g = store::get_group(conn, org, id)?;
    pre.check_write(g.version)?;
    let mut doc = g
        .scim_json
        .as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Map<String, Value>>(t).ok())
        .unwrap_or_default();
    doc.insert("displayName".into(), Value::String(g.display_name.clone()));
    if let Some(e) = &g.external_id {
        doc.insert("externalId".into(), Value::String(e.clone()));
    }
    let changes = patch::apply(Resource::Group, &mut doc, &ops)?;
    let fields = fields(&Value::Object(doc))?;
    store::update_group(conn, org, &g, fields)?;
    for change in changes {
        match change {
            MemberChange::Add(ids) => {
                store::add_members(conn, org, &g.id, &ids, now)?;
            }
            MemberChange::Remove(ids) => {
                store::remove_members(conn, &g.id, &ids)?;
            }
            MemberChange::RemoveAll => {
                store::remove_all_members(conn, &g.id)?;
            }
        }
    }
    let g = store::touch_group(conn, &g, now)?;
    match projection {
        Some(p) => Ok((Some(render_one(conn, base, &g, p)?), g.version)),
        None => Ok((None, g.version)),
    }
}

/// Deletes a group.
pub fn delete_in(
    conn: &mut DbConn,
    org: &OrgId,
    id: &str,
    pre: &super::Preconditions,
) -> ScimResult<()> {
    let g = store::get_group(conn, org, id)?;
    pre.check_write(g.version)?;
    store::delete_group(conn, org, &g)
}

/// `POST /Groups` (members in the body are honoured).
pub async fn create(
    state: web::Data<AppState>,
    client: ScimClient,
    req: HttpRequest,
    payload: web::Payload,
) -> ScimResult<HttpResponse> {
    let body = read_json(&state, &req, payload).await?;
    let base = base_url(&state);
    let now = clock::now();
    let value = super::write_audited(
        &state,
        &req,
        &client.clone(),
        StatusCode::CREATED,
        move |conn| create_in(conn, &client.org, &base, &body, now),
    )
    .await?;
    Ok(respond_resource(StatusCode::CREATED, &value))
}

/// `GET /Groups/{id}`
pub async fn get(
    state: web::Data<AppState>,
    client: ScimClient,
    ResourceId(id): ResourceId,
    q: web::Query<HashMap<String, String>>,
    req: HttpRequest,
) -> ScimResult<HttpResponse> {
    let pre = super::Preconditions::of(&req);
    let projection = ListParams::from_query(&q)?.projection();
    let base = base_url(&state);
    let check = pre.clone();
    let (value, text) = state
        .db
        .run(move |conn| {
            let g = store::get_group(conn, &client.org, &id)?;
            let value = render_all(
                conn,
                &base,
                std::slice::from_ref(&g),
                &projection,
                Members::Deferred,
            )?
            .pop()
            .unwrap_or(Value::Null);
            if check.not_modified(&value).is_some() {
                return Ok((value, None));
            }
            let text = fill_members(conn, &base, value.to_string())?;
            Ok::<_, ScimError>((value, Some(text)))
        })
        .await?;
    match text {
        None => Ok(pre
            .not_modified(&value)
            .unwrap_or_else(|| respond_resource(StatusCode::OK, &value))),
        Some(text) => Ok(super::respond_resource_text(StatusCode::OK, &value, text)),
    }
}

/// `PUT /Groups/{id}`: replaces attributes and the member list.
pub async fn replace(
    state: web::Data<AppState>,
    client: ScimClient,
    ResourceId(id): ResourceId,
    req: HttpRequest,
    payload: web::Payload,
) -> ScimResult<HttpResponse> {
    let body = read_json(&state, &req, payload).await?;
    let base = base_url(&state);
    let now = clock::now();
    let pre = super::Preconditions::of(&req);
    let value = super::write_audited(&state, &req, &client.clone(), StatusCode::OK, move |conn| {
        replace_in(conn, &client.org, &base, &id, &body, &pre, now)
    })
    .await?;
    Ok(respond_resource(StatusCode::OK, &value))
}

/// `PATCH /Groups/{id}`: 204, or 200 with the group when `attributes` asks for it.
pub async fn patch(
    state: web::Data<AppState>,
    client: ScimClient,
    ResourceId(id): ResourceId,
    q: web::Query<HashMap<String, String>>,
    req: HttpRequest,
    payload: web::Payload,
) -> ScimResult<HttpResponse> {
    let params = ListParams::from_query(&q)?;
    let body = read_json(&state, &req, payload).await?;
    let base = base_url(&state);
    let now = clock::now();
    let projection = params.attributes.is_some().then(|| params.projection());
    let status = if projection.is_some() {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    let pre = super::Preconditions::of(&req);
    let value = super::write_audited(&state, &req, &client.clone(), status, move |conn| {
        patch_in(
            conn,
            &client.org,
            &base,
            &id,
            &body,
            &pre,
            projection.as_ref(),
            now,
        )
    })
    .await?;
    Ok(match value {
        (Some(v), _) => respond_resource(StatusCode::OK, &v),
        // No body: the new version still travels, so the next If-Match can name it.
        (None, version) => HttpResponse::NoContent()
            .insert_header(("etag", super::resource::etag(version)))
            .finish(),
    })
}

/// `DELETE /Groups/{id}`
pub async fn delete(
    state: web::Data<AppState>,
    client: ScimClient,
    ResourceId(id): ResourceId,
    req: HttpRequest,
) -> ScimResult<HttpResponse> {
    let pre = super::Preconditions::of(&req);
    super::write_audited(
        &state,
        &req,
        &client.clone(),
        StatusCode::NO_CONTENT,
        move |conn| delete_in(conn, &client.org, &id, &pre),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
