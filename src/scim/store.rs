//! SCIM writes: users and groups with their indexed columns, searchable attribute rows and
//! memberships. Every function is org-scoped and runs inside the caller's write transaction.
//! Membership changes touch only the members named (cost follows the change, not the group).

use diesel::prelude::*;
use serde_json::{Map, Value};

use super::error::{ScimError, ScimResult};
use super::patch::NewMember;
use super::resource::{self, GroupRow, UserColumns};
use crate::db::ids::{GroupId, OrgId};
use crate::db::schema::{memberships, scim_user_counts, user_attrs, user_groups, users};
use crate::db::DbConn;
use crate::domain::{fold, UserSource};
use crate::identity::users::User;
use crate::identity::{roles, tombstones, users as user_model};

/// Users SCIM may see: the org's, never a break-glass account.
fn visible_users(
    org: &OrgId,
) -> users::BoxedQuery<'static, <DbConn as diesel::Connection>::Backend> {
    users::table
        .filter(users::org_id.eq(org.as_str().to_string()))
        .filter(users::is_break_glass.eq(false))
        .into_boxed()
}

/// The number of users SCIM sees in the org (exact: kept by triggers, see `db::migrate`).
pub fn visible_user_count(conn: &mut DbConn, org: &OrgId) -> ScimResult<i64> {
    Ok(user_counts(conn, org)?.0)
}

/// The org's SCIM-visible user count and its page-anchor generation (see [`super::anchors`]).
pub fn user_counts(conn: &mut DbConn, org: &OrgId) -> ScimResult<(i64, i64)> {
    Ok(scim_user_counts::table
        .find(org.as_str())
        .select((scim_user_counts::n, scim_user_counts::generation))
        .first::<(i64, i64)>(conn)
        .optional()?
        .unwrap_or((0, 0)))
}

pub fn get_user(conn: &mut DbConn, org: &OrgId, id: &str) -> ScimResult<User> {
    visible_users(org)
        .filter(users::id.eq(id.to_string()))
        .select(User::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| ScimError::not_found("User"))
}

/// Whether SCIM may change this account. SCIM owns the accounts it or a just-in-time sign-in
/// created; it never changes an org admin (org-admin rights must not be reachable through
/// provisioning: renaming an admin to an IdP user's e-mail would hand that user the admin's
/// account at their next sign-in) nor a local account an admin created, unless an admin hands
/// the account over (`gatehouse user set ORG USER --scim-managed`).
pub fn scim_owns(user: &User) -> bool {
    owns(user.is_org_admin, user.is_break_glass, &user.source)
}

/// [`scim_owns`] on the columns that decide it.
fn owns(is_org_admin: bool, is_break_glass: bool, source: &str) -> bool {
    !is_org_admin && !is_break_glass && source != UserSource::Local.as_str()
}

/// A user SCIM may change (PUT, PATCH, DELETE): others answer 403 with the reason.
pub fn get_owned_user(conn: &mut DbConn, org: &OrgId, id: &str) -> ScimResult<User> {
    let user = get_user(conn, org, id)?;
    if !scim_owns(&user) {
        let why = if user.is_org_admin {
            "an org admin"
        } else {
            "a local account"
        };
        return Err(ScimError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            None,
            format!(
                "user `{}` is {why} managed in gatehouse, not by provisioning; an admin can hand it over to SCIM",
                user.user_name
            ),
        ));
    }
    Ok(user)
}

/// The SCIM-visible user with this userName (case-insensitive), if any: one probe of the
/// unique `(org, folded userName)` index with a statement prepared once per connection (the
/// lookup an IdP makes before every create and update).
pub fn user_by_name(conn: &mut DbConn, org: &OrgId, user_name: &str) -> ScimResult<Option<User>> {
    let folded = fold(user_name);
    Ok(crate::on_backend!(&mut *conn, |c| users::table
        .filter(users::org_id.eq(org.as_str()))
        .filter(users::is_break_glass.eq(false))
        .filter(users::user_name_folded.eq(&folded))
        .select(User::as_select())
        .first(c)
        .optional())?)
}

fn user_name_taken(
    conn: &mut DbConn,
    org: &OrgId,
    user_name: &str,
    except: Option<&str>,
) -> ScimResult<bool> {
    let mut q = users::table
        .filter(users::org_id.eq(org.as_str()))
        .filter(users::user_name_folded.eq(fold(user_name)))
        .into_boxed();
    if let Some(id) = except {
        q = q.filter(users::id.ne(id.to_string()));
    }
    Ok(q.count().get_result::<i64>(conn)? > 0)
}

/// The app role named by SCIM `roles`, when it is one of the org's roles.
fn role_from_doc(
    conn: &mut DbConn,
    org: &OrgId,
    doc: &Map<String, Value>,
) -> ScimResult<Option<String>> {
    match resource::requested_role(doc) {
        Some(name) => Ok(roles::find(conn, org, &name)?.map(|r| r.name)),
        None => Ok(None),
    }
}

#[derive(diesel::Insertable)]
#[diesel(table_name = user_attrs)]
struct AttrInsert<'a> {
    org_id: &'a str,
    user_id: &'a str,
    root: &'a str,
    path: &'a str,
    ekey: &'a str,
    value: &'a str,
    value_folded: &'a str,
}

fn write_attrs(
    conn: &mut DbConn,
    org: &OrgId,
    user_id: &str,
    doc: &Map<String, Value>,
    replacing: bool,
) -> ScimResult<()> {
    if replacing {
        diesel::delete(user_attrs::table.filter(user_attrs::user_id.eq(user_id))).execute(conn)?;
    }
    // One single-row INSERT per value: its statement is prepared once per connection and
    // reused (a multi-row INSERT's text differs with the row count and is parsed every time;
    // diesel's batch insert is not available through the two-backend connection).
    for row in resource::attr_rows(user_id, doc) {
        let values = AttrInsert {
            org_id: org.as_str(),
            user_id,
            root: &row.root,
            path: &row.path,
            ekey: &row.ekey,
            value_folded: &fold(&row.value),
            value: &row.value,
        };
        crate::on_backend!(&mut *conn, |c| diesel::insert_into(user_attrs::table)
            .values(&values)
            .execute(c))?;
    }
    Ok(())
}

/// The stored form of a document (serialized in place, not copied into a `Value` first).
fn doc_text(doc: &Map<String, Value>) -> ScimResult<String> {
    serde_json::to_string(doc).map_err(|e| ScimError::internal(format!("document: {e}")))
}

fn columns(doc: &Map<String, Value>) -> ScimResult<UserColumns> {
    resource::user_columns(doc).map_err(ScimError::invalid_value)
}

pub fn create_user(
    conn: &mut DbConn,
    org: &OrgId,
    doc: Map<String, Value>,
    now: i64,
) -> ScimResult<User> {
    let cols = columns(&doc)?;
    // No separate uniqueness query: the unique index on (org, folded userName) refuses a
    // duplicate, and that refusal becomes the same 409.
    let mut new = user_model::NewUser::new(org, &cols.user_name, UserSource::Scim);
    new.external_id = cols.external_id;
    new.email = cols.email;
    new.given_name = cols.given_name;
    new.family_name = cols.family_name;
    new.display_name = cols.display_name;
    new.active = cols.active;
    new.app_role = role_from_doc(conn, org, &doc)?;
    new.scim_json = Some(doc_text(&doc)?);
    let user = user_model::create(conn, &new, now).map_err(|e| match e {
        crate::identity::IdentityError::Conflict(_) => {
            ScimError::uniqueness(format!("userName `{}` is already taken", cols.user_name))
        }
        other => other.into(),
    })?;
    write_attrs(conn, org, user.id.as_str(), &doc, false)?;
    Ok(user)
}

/// Replaces a user's document (PUT, or the result of a PATCH). Deactivation revokes the
/// user's sessions in the same transaction.
pub fn replace_user(
    conn: &mut DbConn,
    org: &OrgId,
    user: &User,
    doc: Map<String, Value>,
    now: i64,
) -> ScimResult<User> {
    let cols = columns(&doc)?;
    if user_name_taken(conn, org, &cols.user_name, Some(user.id.as_str()))? {
        return Err(ScimError::uniqueness(format!(
            "userName `{}` is already taken",
            cols.user_name
        )));
    }
    let app_role = role_from_doc(conn, org, &doc)?;
    diesel::update(users::table.find(user.id.as_str()))
        .set((
            users::user_name.eq(&cols.user_name),
            users::user_name_folded.eq(fold(&cols.user_name)),
            users::external_id.eq(&cols.external_id),
            users::email_folded.eq(cols.email.as_deref().map(fold)),
            users::email.eq(&cols.email),
            users::given_name.eq(&cols.given_name),
            users::family_name.eq(&cols.family_name),
            users::display_name.eq(&cols.display_name),
            users::active.eq(cols.active),
            users::app_role.eq(app_role),
            users::scim_json.eq(Some(doc_text(&doc)?)),
            users::version.eq(user.version + 1),
            users::updated_at.eq(now.max(user.updated_at)),
        ))
        .execute(conn)?;
    write_attrs(conn, org, user.id.as_str(), &doc, true)?;
    if user.active && !cols.active {
        user_model::revoke_sessions(conn, &user.id, now)?;
    }
    get_user(conn, org, user.id.as_str())
}

/// Deletes a user: sessions, memberships and attribute rows go with it (cascade), the audit
/// history stays, and a tombstone stops JIT from re-creating the identity.
pub fn delete_user(conn: &mut DbConn, org: &OrgId, user: &User, now: i64) -> ScimResult<()> {
    tombstones::record(conn, user, now)?;
    user_model::revoke_sessions(conn, &user.id, now)?;
    diesel::delete(
        users::table
            .filter(users::org_id.eq(org.as_str()))
            .filter(users::id.eq(user.id.as_str())),
    )
    .execute(conn)?;
    Ok(())
}

/// (group id, displayName) of the given users' groups, for rendering `groups`.
pub fn groups_of(
    conn: &mut DbConn,
    user_ids: &[String],
) -> ScimResult<Vec<(String, String, String)>> {
    // Memberships joined to their groups, by group name, for the users `$which` selects.
    macro_rules! groups_where {
        ($which:expr) => {
            memberships::table
                .inner_join(user_groups::table)
                .filter($which)
                .order(user_groups::display_name_folded.asc())
                .select((
                    memberships::user_id,
                    user_groups::id,
                    user_groups::display_name,
                ))
        };
    }
    if let [one] = user_ids {
        // One user (a lookup, a single GET): a statement that stays prepared, unlike the
        // variable-length `IN` list below.
        return Ok(crate::on_backend!(&mut *conn, |c| groups_where!(
            memberships::user_id.eq(one)
        )
        .load(c))?);
    }
    let mut out = Vec::new();
    for chunk in user_ids.chunks(500) {
        let rows: Vec<(String, String, String)> =
            groups_where!(memberships::user_id.eq_any(chunk)).load(conn)?;
        out.extend(rows);
    }
    Ok(out)
}

pub fn get_group(conn: &mut DbConn, org: &OrgId, id: &str) -> ScimResult<GroupRow> {
    user_groups::table
        .filter(user_groups::org_id.eq(org.as_str()))
        .filter(user_groups::id.eq(id))
        .select(GroupRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| ScimError::not_found("Group"))
}

fn group_name_taken(
    conn: &mut DbConn,
    org: &OrgId,
    name: &str,
    except: Option<&str>,
) -> ScimResult<bool> {
    let mut q = user_groups::table
        .filter(user_groups::org_id.eq(org.as_str()))
        .filter(user_groups::display_name_folded.eq(fold(name)))
        .into_boxed();
    if let Some(id) = except {
        q = q.filter(user_groups::id.ne(id.to_string()));
    }
    Ok(q.count().get_result::<i64>(conn)? > 0)
}

/// The group's attributes other than members, split from a normalised document.
pub struct GroupFields {
    pub display_name: String,
    pub external_id: Option<String>,
    pub doc: Map<String, Value>,
}

pub fn group_fields(mut doc: Map<String, Value>) -> ScimResult<GroupFields> {
    doc.remove("members");
    let display_name = doc
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::invalid_value("displayName is required"))?
        .to_string();
    let external_id = doc
        .get("externalId")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(GroupFields {
        display_name,
        external_id,
        doc,
    })
}

pub fn create_group(
    conn: &mut DbConn,
    org: &OrgId,
    fields: GroupFields,
    now: i64,
) -> ScimResult<GroupRow> {
    if group_name_taken(conn, org, &fields.display_name, None)? {
        return Err(ScimError::uniqueness(format!(
            "a group named `{}` already exists",
            fields.display_name
        )));
    }
    let id = GroupId::new();
    diesel::insert_into(user_groups::table)
        .values((
            user_groups::id.eq(id.as_str()),
            user_groups::org_id.eq(org.as_str()),
            user_groups::display_name.eq(&fields.display_name),
            user_groups::display_name_folded.eq(fold(&fields.display_name)),
            user_groups::external_id.eq(&fields.external_id),
            user_groups::version.eq(1i64),
            user_groups::created_at.eq(now),
            user_groups::updated_at.eq(now),
            user_groups::scim_json.eq(Some(Value::Object(fields.doc).to_string())),
        ))
        .execute(conn)?;
    get_group(conn, org, id.as_str())
}

pub fn update_group(
    conn: &mut DbConn,
    org: &OrgId,
    g: &GroupRow,
    fields: GroupFields,
) -> ScimResult<()> {
    if group_name_taken(conn, org, &fields.display_name, Some(&g.id))? {
        return Err(ScimError::uniqueness(format!(
            "a group named `{}` already exists",
            fields.display_name
        )));
    }
    diesel::update(user_groups::table.find(&g.id))
        .set((
            user_groups::display_name.eq(&fields.display_name),
            user_groups::display_name_folded.eq(fold(&fields.display_name)),
            user_groups::external_id.eq(&fields.external_id),
            user_groups::scim_json.eq(Some(Value::Object(fields.doc).to_string())),
        ))
        .execute(conn)?;
    Ok(())
}

/// Bumps a group's version and lastModified after any change.
pub fn touch_group(conn: &mut DbConn, g: &GroupRow, now: i64) -> ScimResult<GroupRow> {
    diesel::update(user_groups::table.find(&g.id))
        .set((
            user_groups::version.eq(user_groups::version + 1),
            user_groups::updated_at.eq(now.max(g.updated_at)),
        ))
        .execute(conn)?;
    Ok(user_groups::table
        .find(&g.id)
        .select(GroupRow::as_select())
        .first(conn)?)
}

pub fn delete_group(conn: &mut DbConn, org: &OrgId, g: &GroupRow) -> ScimResult<()> {
    diesel::delete(
        user_groups::table
            .filter(user_groups::org_id.eq(org.as_str()))
            .filter(user_groups::id.eq(&g.id)),
    )
    .execute(conn)?;
    Ok(())
}

/// Adds members (ignoring ones already there). Every id must be a SCIM-visible user of this
/// org: anything else is refused as a whole, naming the first bad id.
pub fn add_members(
    conn: &mut DbConn,
    org: &OrgId,
    group: &str,
    members: &[NewMember],
    now: i64,
) -> ScimResult<usize> {
    let mut wanted: Vec<&NewMember> = members.iter().collect();
    wanted.sort_by(|a, b| a.id.cmp(&b.id));
    wanted.dedup_by(|a, b| a.id == b.id);
    let mut added = 0;
    for batch in wanted.chunks(500) {
        let chunk: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        // (id, userName, who manages it) of the chunk's SCIM-visible users.
        let known: Vec<(String, String, bool, String)> = users::table
            .filter(users::org_id.eq(org.as_str()))
            .filter(users::is_break_glass.eq(false))
            .filter(users::id.eq_any(&chunk))
            .select((
                users::id,
                users::user_name,
                users::is_org_admin,
                users::source,
            ))
            .load(conn)?;
        if let Some(bad) = chunk
            .iter()
            .find(|id| !known.iter().any(|(k, ..)| k == *id))
        {
            return Err(ScimError::invalid_value(format!(
                "member `{bad}` is not a user of this organization"
            )));
        }
        let present: Vec<String> = memberships::table
            .filter(memberships::group_id.eq(group))
            .filter(memberships::user_id.eq_any(&chunk))
            .select(memberships::user_id)
            .load(conn)?;
        // Groups carry app roles: SCIM puts only the accounts it owns into them (members
        // already there stay, so a full-list PUT that repeats them still works).
        if let Some((_, name, ..)) = known.iter().find(|(id, _, org_admin, source)| {
            !present.contains(id) && !owns(*org_admin, false, source)
        }) {
            return Err(ScimError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                None,
                format!(
                    "member `{name}` is an org admin or a local account managed in gatehouse, not by provisioning; an admin can hand a local account over to SCIM"
                ),
            ));
        }
        for m in batch.iter().filter(|m| !present.contains(&m.id)) {
            diesel::insert_into(memberships::table)
                .values((
                    memberships::group_id.eq(group),
                    memberships::user_id.eq(&m.id),
                    memberships::org_id.eq(org.as_str()),
                    memberships::created_at.eq(now),
                    memberships::display.eq(&m.display),
                ))
                .execute(conn)?;
            added += 1;
        }
    }
    Ok(added)
}

pub fn remove_members(conn: &mut DbConn, group: &str, ids: &[String]) -> ScimResult<usize> {
    let mut n = 0;
    for chunk in ids.chunks(500) {
        n += diesel::delete(
            memberships::table
                .filter(memberships::group_id.eq(group))
                .filter(memberships::user_id.eq_any(chunk)),
        )
        .execute(conn)?;
    }
    Ok(n)
}

pub fn remove_all_members(conn: &mut DbConn, group: &str) -> ScimResult<usize> {
    Ok(diesel::delete(memberships::table.filter(memberships::group_id.eq(group))).execute(conn)?)
}

/// (user id, userName) of the members of the given groups, keyed by group id.
pub fn members_of(
    conn: &mut DbConn,
    group_ids: &[String],
) -> ScimResult<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for chunk in group_ids.chunks(500) {
        let rows: Vec<(String, String, String, Option<String>)> = memberships::table
            .inner_join(users::table)
            .filter(memberships::group_id.eq_any(chunk))
            .order((memberships::created_at.asc(), memberships::user_id.asc()))
            .select((
                memberships::group_id,
                users::id,
                users::user_name,
                memberships::display,
            ))
            .load(conn)?;
        out.extend(
            rows.into_iter()
                .map(|(g, u, name, display)| (g, u, display.unwrap_or(name))),
        );
    }
    Ok(out)
}

/// One group's members as a JSON array appended to `out`, written row by row as the database
/// returns them (never all rows, or a value per member, in memory at once).
pub fn write_members(
    conn: &mut DbConn,
    base: &str,
    group_id: &str,
    out: &mut Vec<u8>,
) -> ScimResult<()> {
    #[derive(serde::Serialize)]
    struct Member<'a> {
        value: &'a str,
        display: &'a str,
        #[serde(rename = "$ref")]
        reference: &'a str,
        r#type: &'static str,
    }
    // Room for all of them at once (growing by doubling would copy, and keep, ever larger
    // buffers).
    let count: i64 = memberships::table
        .filter(memberships::group_id.eq(group_id))
        .count()
        .get_result(conn)?;
    out.reserve(usize::try_from(count).unwrap_or(0) * (base.len() + 160));
    let rows = memberships::table
        .inner_join(users::table)
        .filter(memberships::group_id.eq(group_id))
        .order((memberships::created_at.asc(), memberships::user_id.asc()))
        .select((users::id, users::user_name, memberships::display))
        .load_iter::<(String, String, Option<String>), diesel::connection::DefaultLoadingMode>(
            conn,
        )?;
    out.push(b'[');
    let mut reference = String::new();
    for (i, row) in rows.enumerate() {
        let (id, name, display) = row?;
        if i > 0 {
            out.push(b',');
        }
        reference.clear();
        reference.push_str(base);
        reference.push_str("/Users/");
        reference.push_str(&id);
        let member = Member {
            value: &id,
            display: display.as_deref().unwrap_or(&name),
            reference: &reference,
            r#type: "User",
        };
        serde_json::to_writer(&mut *out, &member).map_err(ScimError::internal)?;
    }
    out.push(b']');
    Ok(())
}

/// The members inside a POST/PUT `members` array.
pub fn members_in(body: &Value) -> ScimResult<Vec<NewMember>> {
    let members = body
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("members")))
        .map(|(_, v)| v);
    match members {
        None | Some(Value::Null) | Some(Value::Array(_)) => super::patch::new_members(members),
        Some(_) => Err(ScimError::invalid_value("`members` must be an array")),
    }
}
