//! Users (searchable, paginated: status, source, role, groups, last sign-in), a user's page
//! (groups, live sessions with revoke, recent audit events), and groups with member counts.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::{access, check_post, time, AdminResult, Nav};
use crate::audit::StoredEvent;
use crate::db::ids::UserId;
use crate::db::schema::{audit_events, memberships, sessions, user_groups, users};
use crate::http::errors::AppError;
use crate::http::pages::render;
use crate::identity::users::{self as users_mod, User};
use crate::identity::{roles, IdentityError};
use crate::startup::AppState;

const PAGE: i64 = 50;

struct UserRow {
    id: String,
    user_name: String,
    /// As the IdP sent it (display name, else given and family name).
    name: String,
    active: bool,
    source: String,
    role: String,
    groups: String,
    last_sign_in: String,
    break_glass: bool,
    org_admin: bool,
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct ListPage {
    nav: Nav,
    q: String,
    rows: Vec<UserRow>,
    total: i64,
    page: i64,
    pages: i64,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<i64>,
}

fn last_sign_in(conn: &mut crate::db::DbConn, user: &str) -> QueryResult<Option<i64>> {
    sessions::table
        .filter(sessions::user_id.eq(user))
        .select(diesel::dsl::max(sessions::created_at))
        .first(conn)
}

fn row(
    conn: &mut crate::db::DbConn,
    u: User,
    default_role: Option<&str>,
    group_source: &str,
) -> Result<UserRow, IdentityError> {
    let (groups, keys) = crate::sso::resolve::effective_groups(conn, &u, group_source)?;
    let role =
        roles::resolve_app_role(conn, &u.org_id, u.app_role.as_deref(), &keys, default_role)?;
    Ok(UserRow {
        last_sign_in: last_sign_in(conn, u.id.as_str())?
            .map(time)
            .unwrap_or_else(|| "never".into()),
        id: u.id.to_string(),
        name: details(&u)
            .into_iter()
            .find(|(k, _)| *k == "Name")
            .map(|(_, v)| v)
            .unwrap_or_default(),
        user_name: u.user_name,
        active: u.active,
        source: u.source,
        role: role.unwrap_or_else(|| "-".into()),
        groups: groups.join(", "),
        break_glass: u.is_break_glass,
        org_admin: u.is_org_admin,
    })
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>);

/// What the IdP told us about a user beyond the account (SCIM's core and enterprise
/// attributes): shown on the user's page.
fn details(u: &User) -> Vec<(&'static str, String)> {
    let scim: serde_json::Value = u
        .scim_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let ent = &scim["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"];
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let name = u.display_name.clone().or_else(|| {
        let parts: Vec<&str> = [u.given_name.as_deref(), u.family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    [
        ("Name", name),
        ("External ID", u.external_id.clone()),
        ("Title", text(&scim["title"])),
        ("Department", text(&ent["department"])),
        ("Organization", text(&ent["organization"])),
        ("Employee number", text(&ent["employeeNumber"])),
        (
            "Manager",
            text(&ent["manager"]["displayName"]).or_else(|| text(&ent["manager"]["value"])),
        ),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
    .collect()
}

/// `GET /sso/admin/orgs/{org}/users?q=&page=`
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    let search = q.q.trim().to_lowercase();
    let page = q.page.unwrap_or(1).max(1);
    let org = admin.org.clone();
    let s2 = search.clone();
    let (rows, total) = state
        .db
        .run(move |conn| -> Result<_, IdentityError> {
            let filtered = || {
                let mut query = users::table
                    .filter(users::org_id.eq(org.id.to_string()))
                    .into_boxed();
                if !s2.is_empty() {
                    let pattern = format!("%{}%", s2.replace(['%', '_'], ""));
                    // Names as SCIM sent them, in any case.
                    query = query.filter(
                        users::user_name_folded
                            .like(pattern.clone())
                            .or(users::email_folded.like(pattern.clone()))
                            .or(lower(users::display_name).like(pattern.clone()))
                            .or(lower(users::given_name).like(pattern.clone()))
                            .or(lower(users::family_name).like(pattern.clone()))
                            .or(lower(users::external_id).like(pattern)),
                    );
                }
                query
            };
            let total: i64 = filtered().count().get_result(conn)?;
            let found: Vec<User> = filtered()
                .order(users::user_name_folded.asc())
                .limit(PAGE)
                .offset((page - 1) * PAGE)
                .select(User::as_select())
                .load(conn)?;
            let rows = found
                .into_iter()
                .map(|u| row(conn, u, org.default_role.as_deref(), &org.group_source))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((rows, total))
        })
        .await
        .map_err(AppError::from)?;
    let pages = ((total + PAGE - 1) / PAGE).max(1);
    let link = |p: i64| {
        format!(
            "/sso/admin/orgs/{}/users?q={}&page={p}",
            admin.org.slug,
            url::form_urlencoded::byte_serialize(search.as_bytes()).collect::<String>()
        )
    };
    Ok(render(
        StatusCode::OK,
        &ListPage {
            nav: admin.nav(),
            q: search.clone(),
            rows,
            total,
            page,
            pages,
            prev: (page > 1).then(|| link(page - 1)),
            next: (page < pages).then(|| link(page + 1)),
        },
    ))
}

struct SessionRow {
    method: String,
    created: String,
    last_seen: String,
}

struct EventRow {
    id: String,
    at: String,
    action: String,
    outcome: String,
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage {
    nav: Nav,
    u: UserRow,
    email: String,
    details: Vec<(&'static str, String)>,
    created: String,
    sessions: Vec<SessionRow>,
    events: Vec<EventRow>,
}

/// `GET /sso/admin/orgs/{org}/users/{id}`
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> AdminResult {
    let (org, id) = path.into_inner();
    let admin = access(&state, &req, &org).await?;
    let o = admin.org.clone();
    let now = crate::clock::now();
    let (u, email, created, live, events, details) = state
        .db
        .run(move |conn| -> Result<_, IdentityError> {
            let u = users_mod::get(conn, &o.id, &UserId::from(id.clone()))?;
            let (email, created) = (u.email.clone().unwrap_or_default(), u.created_at);
            let details = details(&u);
            let live: Vec<(String, i64, i64)> = sessions::table
                .filter(sessions::user_id.eq(u.id.as_str()))
                .filter(sessions::revoked_at.is_null())
                .filter(sessions::expires_at.gt(now))
                .order(sessions::created_at.desc())
                .select((
                    sessions::auth_method,
                    sessions::created_at,
                    sessions::last_seen_at,
                ))
                .load(conn)?;
            let events: Vec<StoredEvent> = audit_events::table
                .filter(audit_events::chain.eq(o.id.to_string()))
                .filter(audit_events::actor.eq(format!("user:{}", u.id)))
                .order(audit_events::seq.desc())
                .limit(20)
                .select(StoredEvent::as_select())
                .load(conn)?;
            let r = row(conn, u, o.default_role.as_deref(), &o.group_source)?;
            Ok((r, email, created, live, events, details))
        })
        .await
        .map_err(|e| match e {
            IdentityError::NotFound(_) => AppError::NotFound,
            other => AppError::from(other),
        })?;
    Ok(render(
        StatusCode::OK,
        &UserPage {
            nav: admin.nav(),
            u,
            email,
            details,
            created: time(created),
            sessions: live
                .into_iter()
                .map(|(m, c, l)| SessionRow {
                    method: m,
                    created: time(c),
                    last_seen: time(l),
                })
                .collect(),
            events: events
                .into_iter()
                .map(|e| EventRow {
                    id: e.id,
                    at: time(e.occurred_at),
                    action: e.action,
                    outcome: e.outcome,
                })
                .collect(),
        },
    ))
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf: String,
}

/// `POST /sso/admin/orgs/{org}/users/{id}/sessions/revoke`
pub async fn revoke_sessions(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<RevokeForm>,
) -> AdminResult {
    let (org, id) = path.into_inner();
    let admin = access(&state, &req, &org).await?;
    check_post(&req, &admin, &form.csrf)?;
    let now = crate::clock::now();
    let back = format!("/sso/admin/orgs/{}/users/{id}", admin.org.slug);
    let flash = admin.flasher.clone();
    let revoked = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let u = users_mod::get(conn, &admin.org.id, &UserId::from(id.clone()))?;
            let n = users_mod::revoke_sessions(conn, &u.id, now)?;
            admin.record(
                conn,
                "admin.user.revoke_sessions",
                json!({"user_name": u.user_name, "sessions_revoked": n}),
                now,
            )?;
            Ok(n)
        })
        .await
        .map_err(|e| match e {
            IdentityError::NotFound(_) => AppError::NotFound,
            other => AppError::from(other),
        })?;
    Ok(flash.notice(&back, &format!("{revoked} sessions revoked")))
}

#[derive(Template)]
#[template(path = "admin/groups.html")]
struct GroupsPage {
    nav: Nav,
    groups: Vec<(String, Option<String>, i64)>,
}

/// `GET /sso/admin/orgs/{org}/groups`: SCIM groups with member counts.
pub async fn groups(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    let org_id = admin.org.id.to_string();
    let groups = state
        .db
        .run(move |conn| {
            user_groups::table
                .left_join(memberships::table.on(memberships::group_id.eq(user_groups::id)))
                .filter(user_groups::org_id.eq(&org_id))
                .group_by((
                    user_groups::id,
                    user_groups::display_name,
                    user_groups::external_id,
                ))
                .order(user_groups::display_name.asc())
                .select((
                    user_groups::display_name,
                    user_groups::external_id,
                    diesel::dsl::count(memberships::user_id.nullable()),
                ))
                .load::<(String, Option<String>, i64)>(conn)
                .map_err(AppError::from)
        })
        .await?;
    Ok(render(
        StatusCode::OK,
        &GroupsPage {
            nav: admin.nav(),
            groups,
        },
    ))
}
