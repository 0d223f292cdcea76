//! `/Users`: create, read, list/search, replace, patch, delete. Passwords an IdP sends are
//! dropped before anything is stored (and redacted from the audit body).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::auth::ScimClient;
use super::error::{ScimError, ScimResult};
use super::query;
use super::resource::{render_user, Projection};
use super::schema::{self, Resource};
use super::{base_url, filter, patch, read_json, respond_resource, store, ListParams, ResourceId};
use crate::clock;
use crate::db::ids::OrgId;
use crate::db::DbConn;
use crate::identity::users::User;
use crate::startup::AppState;

fn normalize(body: &Value) -> ScimResult<Map<String, Value>> {
    schema::normalize_resource(Resource::User, body).map_err(ScimError::invalid_value)
}

/// A user's groups: (group id, displayName).
type UserGroups = Vec<(String, String)>;

/// Each user's groups, loaded in one query when the projection wants them.
fn groups_by_user(
    conn: &mut DbConn,
    users: &[User],
    projection: &Projection,
) -> ScimResult<Vec<Option<UserGroups>>> {
    if !projection.wants("groups") {
        return Ok(vec![None; users.len()]);
    }
    let ids: Vec<String> = users.iter().map(|u| u.id.to_string()).collect();
    let groups = store::groups_of(conn, &ids)?;
    Ok(users
        .iter()
        .map(|u| {
            Some(
                groups
                    .iter()
                    .filter(|(uid, _, _)| uid == u.id.as_str())
                    .map(|(_, gid, name)| (gid.clone(), name.clone()))
                    .collect(),
            )
        })
        .collect())
}

/// Renders users with their groups (loaded only when wanted, in one query).
fn render_all(
    conn: &mut DbConn,
    base: &str,
    users: &[User],
    projection: &Projection,
) -> ScimResult<Vec<Value>> {
    let groups = groups_by_user(conn, users, projection)?;
    Ok(users
        .iter()
        .zip(groups)
        .map(|(u, mine)| projection.apply(render_user(base, u, mine.as_deref())))
        .collect())
}

/// A page of users as JSON text, one per user: without `attributes`/`excludedAttributes`
/// written straight as text (see [`super::resource::render_user_text`]).
fn render_page(
    conn: &mut DbConn,
    base: &str,
    users: &[User],
    projection: &Projection,
) -> ScimResult<Vec<String>> {
    let groups = groups_by_user(conn, users, projection)?;
    Ok(users
        .iter()
        .zip(groups)
        .map(|(u, mine)| {
            let text = match projection.is_default() {
                true => super::resource::render_user_text(base, u, mine.as_deref()),
                false => None,
            };
            text.unwrap_or_else(|| {
                projection
                    .apply(render_user(base, u, mine.as_deref()))
                    .to_string()
            })
        })
        .collect())
}

/// A user just created, as answered: in no group yet.
fn render_new(base: &str, user: &User) -> Value {
    render_user(base, user, Some(&[]))
}

fn render_one(
    conn: &mut DbConn,
    base: &str,
    user: &User,
    projection: &Projection,
) -> ScimResult<Value> {
    Ok(
        render_all(conn, base, std::slice::from_ref(user), projection)?
            .pop()
            .unwrap_or(Value::Null),
    )
}

/// A page of users as SCIM JSON, with the exact total.
pub fn page(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    filter: Option<&filter::Filter>,
    params: &ListParams,
    offset: i64,
    limit: i64,
) -> ScimResult<(i64, Vec<String>)> {
    if let Some(name) = filter.and_then(filter::Filter::unique_user_name) {
        // At most one match: no COUNT, no dynamic SQL; startIndex/count apply to that one.
        let found = store::user_by_name(conn, org, name)?;
        let total = i64::from(found.is_some());
        let users: Vec<User> = found
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(0))
            .collect();
        return Ok((
            total,
            render_page(conn, base, &users, &params.projection())?,
        ));
    }
    let mut cond = query::visible_users(org);
    if let Some(f) = filter {
        cond.push(" AND (")
            .append(query::user_filter(org.as_str(), f)?)
            .push(")");
    }
    let order = query::user_order(params.sort_by.as_deref(), params.descending);
    // Unfiltered: the exact count kept by triggers, instead of counting every index entry;
    // in the default order a deep page seeks to the nearest anchor instead of walking there.
    let (known_total, offset) = match filter {
        None => {
            let (total, generation) = store::user_counts(conn, org)?;
            let default_order = params.sort_by.is_none() && !params.descending;
            match default_order && offset < total {
                true => match super::anchors::seek(conn, org, generation, offset)? {
                    Some((from, rest)) => {
                        cond.append(from);
                        (Some(total), rest)
                    }
                    None => (Some(total), offset),
                },
                false => (Some(total), offset),
            }
        }
        Some(_) => (None, offset),
    };
    let (total, users) = query::page::<User>(
        conn,
        "u.*",
        "users u",
        cond,
        &order,
        offset,
        limit,
        known_total,
    )?;
    Ok((
        total,
        render_page(conn, base, &users, &params.projection())?,
    ))
}

/// `GET /Users`
pub async fn list(
    state: web::Data<AppState>,
    client: ScimClient,
    q: web::Query<HashMap<String, String>>,
) -> ScimResult<HttpResponse> {
    super::run_list(&state, client.org, ListParams::from_query(&q)?, page).await
}

/// `POST /Users/.search`
pub async fn search(
    state: web::Data<AppState>,
    client: ScimClient,
    req: HttpRequest,
    payload: web::Payload,
) -> ScimResult<HttpResponse> {
    let body = read_json(&state, &req, payload).await?;
    super::run_list(&state, client.org, ListParams::from_search(&body)?, page).await
}

/// `POST /.search` at the root: users, then groups, paged as one list. A filter that does not
/// apply to a resource type (e.g. `userName` for groups) matches none of that type.
pub async fn search_root(
    state: web::Data<AppState>,
    client: ScimClient,
    req: HttpRequest,
    payload: web::Payload,
) -> ScimResult<HttpResponse> {
    let body = read_json(&state, &req, payload).await?;
    let params = ListParams::from_search(&body)?;
    let filter = params.parsed_filter()?;
    let base = base_url(&state);
    let org = client.org;
    let body = state
        .db
        .run(move |conn| -> ScimResult<String> {
            let offset = params.start_index - 1;
            let (users_total, mut resources) = match page(
                conn,
                &org,
                &base,
                filter.as_ref(),
                &params,
                offset,
                params.count,
            ) {
                Ok(found) => found,
                Err(e) if e.scim_type == Some("invalidFilter") => (0, Vec::new()),
                Err(e) => return Err(e),
            };
            let left = params.count - resources.len() as i64;
            let group_offset = (offset - users_total).max(0);
            let (groups_total, groups) = match super::groups::page(
                conn,
                &org,
                &base,
                filter.as_ref(),
                &params,
                group_offset,
                left,
            ) {
                Ok(found) => found,
                Err(e) if e.scim_type == Some("invalidFilter") => (0, Vec::new()),
                Err(e) => return Err(e),
            };
            resources.extend(groups);
            let text = super::list_text(users_total + groups_total, params.start_index, &resources);
            super::groups::fill_members(conn, &base, text)
        })
        .await?;
    Ok(super::json_body(
        HttpResponse::Ok().content_type(super::SCIM_JSON),
        body,
    ))
}

/// Creates a user from a SCIM document (in the caller's write transaction).
pub fn create_in(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    body: &Value,
    now: i64,
) -> ScimResult<Value> {
    let doc = normalize(body)?;
    let user = store::create_user(conn, org, doc, now)?;
    Ok(render_new(base, &user))
}

/// Replaces a user's document (PUT).
pub fn replace_in(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    id: &str,
    body: &Value,
    pre: &super::Preconditions,
    now: i64,
) -> ScimResult<Value> {
    let doc = normalize(body)?;
    let user = store::get_owned_user(conn, org, id)?;
    pre.check_write(user.version)?;
    let user = store::replace_user(conn, org, &user, doc, now)?;
    render_one(conn, base, &user, &Projection::default())
}

/// Applies a PatchOp document to a user.
pub fn patch_in(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    id: &str,
    body: &Value,
    pre: &super::Preconditions,
    now: i64,
) -> ScimResult<Value> {
    let ops = patch::parse_operations(body)?;
    let user = store::get_owned_user(conn, org, id)?;
    pre.check_write(user.version)?;
    let mut doc = super::resource::user_doc(&user);
    if doc.contains_key("active") || !user.active {
        doc.insert("active".into(), Value::Bool(user.active));
    }
    patch::apply(Resource::User, &mut doc, &ops)?;
    let doc = normalize(&Value::Object(doc))?;
    let user = store::replace_user(conn, org, &user, doc, now)?;
    render_one(conn, base, &user, &Projection::default())
}

/// Deletes a user.
pub fn delete_in(
    conn: &mut DbConn,
    org: &OrgId,
    id: &str,
    pre: &super::Preconditions,
    now: i64,
) -> ScimResult<()> {
    let user = store::get_owned_user(conn, org, id)?;
    pre.check_write(user.version)?;
    store::delete_user(conn, org, &user, now)
}

/// `POST /Users`
pub async fn create(
    state: web::Data<AppState>,
    client: ScimClient,
    req: HttpRequest,
    payload: web::Payload,
) -> ScimResult<HttpResponse> {
    let body = read_json(&state, &req, payload).await?;
    // Validation before the write and rendering after it: the database writer, which every
    // write in the process waits for, only runs the statements.
    let doc = normalize(&body)?;
    let base = base_url(&state);
    let now = clock::now();
    let org = client.org.clone();
    let user = super::write_audited(
        &state,
        &req,
        &client.clone(),
        StatusCode::CREATED,
        move |conn| store::create_user(conn, &org, doc, now),
    )
    .await?;
    Ok(respond_resource(
        StatusCode::CREATED,
        &render_new(&base, &user),
    ))
}

/// `GET /Users/{id}`
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
    let value = state
        .db
        .run(move |conn| {
            let user = store::get_user(conn, &client.org, &id)?;
            render_one(conn, &base, &user, &projection)
        })
        .await?;
    if let Some(res) = pre.not_modified(&value) {
        return Ok(res);
    }
    Ok(respond_resource(StatusCode::OK, &value))
}

/// `PUT /Users/{id}`: replaces the document (unknown attributes ignored).
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

/// `PATCH /Users/{id}`
pub async fn patch(
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
        patch_in(conn, &client.org, &base, &id, &body, &pre, now)
    })
    .await?;
    Ok(respond_resource(StatusCode::OK, &value))
}

/// `DELETE /Users/{id}`
pub async fn delete(
    state: web::Data<AppState>,
    client: ScimClient,
    ResourceId(id): ResourceId,
    req: HttpRequest,
) -> ScimResult<HttpResponse> {
    let now = clock::now();
    let pre = super::Preconditions::of(&req);
    super::write_audited(
        &state,
        &req,
        &client.clone(),
        StatusCode::NO_CONTENT,
        move |conn| delete_in(conn, &client.org, &id, &pre, now),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
