//! SSO connections: an org's IdP configuration for one protocol. A connection resolves
//! exactly one org.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::ids::OrgId;
use crate::db::schema::{connection_tests, connections};
use crate::db::DbConn;
use crate::identity::{IdentityError, Result};

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = connections)]
pub struct Connection {
    pub id: String,
    #[diesel(deserialize_as = String)]
    pub org_id: OrgId,
    pub kind: String,
    pub name: String,
    pub enabled: bool,
    pub config: String,
    #[serde(skip)]
    pub secret_enc: Option<String>,
    pub last_success_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Offered to nobody until activated; only its admins' Test sign-in uses it.
    pub draft: bool,
    /// The last successful Test sign-in.
    pub tested_at: Option<i64>,
}

impl Connection {
    /// Whether end users may sign in through it (enabled and not a draft).
    pub fn live(&self) -> bool {
        self.enabled && !self.draft
    }

    /// Whether it is known to work: a real sign-in or a successful Test sign-in.
    pub fn proven(&self) -> bool {
        self.last_success_at.is_some() || self.tested_at.is_some()
    }
}

pub fn create(
    conn: &mut DbConn,
    org: &OrgId,
    kind: &str,
    name: &str,
    config: &serde_json::Value,
    draft: bool,
    now: i64,
) -> Result<Connection> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    diesel::insert_into(connections::table)
        .values((
            connections::id.eq(&id),
            connections::org_id.eq(org.as_str()),
            connections::kind.eq(kind),
            connections::name.eq(name),
            connections::enabled.eq(true),
            connections::draft.eq(draft),
            connections::config.eq(config.to_string()),
            connections::created_at.eq(now),
            connections::updated_at.eq(now),
        ))
        .execute(conn)?;
    get(conn, &id)?.ok_or_else(|| IdentityError::NotFound("connection".into()))
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<Connection>> {
    Ok(connections::table
        .find(id)
        .select(Connection::as_select())
        .first(conn)
        .optional()?)
}

/// A connection of this org (`None` for another org's: never revealed across orgs).
pub fn get_in_org(conn: &mut DbConn, org: &OrgId, id: &str) -> Result<Option<Connection>> {
    Ok(get(conn, id)?.filter(|c| &c.org_id == org))
}

pub fn list(conn: &mut DbConn, org: &OrgId) -> Result<Vec<Connection>> {
    Ok(connections::table
        .filter(connections::org_id.eq(org.as_str()))
        .order(connections::created_at.asc())
        .select(Connection::as_select())
        .load(conn)?)
}

/// Live connections (enabled, not drafts) of the org that owns `domain` as a verified domain.
pub fn for_verified_domain(conn: &mut DbConn, domain: &str) -> Result<Vec<Connection>> {
    use crate::db::schema::domains;
    Ok(connections::table
        .inner_join(domains::table.on(domains::org_id.eq(connections::org_id)))
        .filter(domains::domain.eq(domain))
        .filter(domains::verified.eq(true))
        .filter(connections::enabled.eq(true))
        .filter(connections::draft.eq(false))
        .order(connections::created_at.asc())
        .select(Connection::as_select())
        .load(conn)?)
}

/// Enables or disables a connection. Disabling ends every live session its sign-ins created
/// (on every replica, at their next request); returns how many were ended.
pub fn set_enabled(conn: &mut DbConn, id: &str, enabled: bool, now: i64) -> Result<usize> {
    diesel::update(connections::table.find(id))
        .set((
            connections::enabled.eq(enabled),
            connections::updated_at.eq(now),
        ))
        .execute(conn)?;
    if enabled {
        return Ok(0);
    }
    revoke_sessions(conn, id, now)
}

/// Ends every live session created by a sign-in through this connection, and voids its
/// sign-ins still on their way to becoming sessions (handoffs not yet used).
pub fn revoke_sessions(conn: &mut DbConn, id: &str, now: i64) -> Result<usize> {
    use crate::db::schema::{sessions, sso_handoffs};
    diesel::update(
        sso_handoffs::table
            .filter(sso_handoffs::connection_id.eq(id))
            .filter(sso_handoffs::consumed_at.is_null()),
    )
    .set(sso_handoffs::consumed_at.eq(Some(now)))
    .execute(conn)?;
    Ok(diesel::update(
        sessions::table
            .filter(sessions::connection_id.eq(id))
            .filter(sessions::revoked_at.is_null()),
    )
    .set(sessions::revoked_at.eq(Some(now)))
    .execute(conn)?)
}

/// Stores a connection's sealed secret (the OIDC client secret).
pub fn set_secret(conn: &mut DbConn, id: &str, sealed: &str) -> Result<()> {
    diesel::update(connections::table.find(id))
        .set(connections::secret_enc.eq(Some(sealed)))
        .execute(conn)?;
    Ok(())
}

/// A draft goes live: offered to the org's users from now on.
pub fn activate(conn: &mut DbConn, id: &str, now: i64) -> Result<()> {
    diesel::update(connections::table.find(id))
        .set((
            connections::draft.eq(false),
            connections::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// How many Test sign-in results are kept per connection.
const TESTS_KEPT: i64 = 5;

/// The outcome of a Test sign-in, shown on the connection's page.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = connection_tests)]
pub struct TestResult {
    pub id: String,
    pub connection_id: String,
    pub ok: bool,
    /// Why it failed, in words.
    pub cause: Option<String>,
    /// JSON: what the IdP sent (attributes or claims, the decoded response), and the
    /// identity and role the user would get.
    pub detail: String,
    pub created_at: i64,
}

/// Records a Test sign-in's outcome (a success also sets `tested_at`); keeps the last few.
pub fn record_test(
    conn: &mut DbConn,
    id: &str,
    cause: Option<&str>,
    detail: &serde_json::Value,
    now: i64,
) -> Result<()> {
    let ok = cause.is_none();
    diesel::insert_into(connection_tests::table)
        .values((
            connection_tests::id.eq(uuid::Uuid::now_v7().simple().to_string()),
            connection_tests::connection_id.eq(id),
            connection_tests::ok.eq(ok),
            connection_tests::cause.eq(cause),
            connection_tests::detail.eq(detail.to_string()),
            connection_tests::created_at.eq(now),
        ))
        .execute(conn)?;
    // A failed test takes back an earlier pass: the connection is proven again only by a
    // pass of what it is now.
    diesel::update(connections::table.find(id))
        .set(connections::tested_at.eq(ok.then_some(now)))
        .execute(conn)?;
    let keep: Vec<String> = connection_tests::table
        .filter(connection_tests::connection_id.eq(id))
        .order(connection_tests::id.desc())
        .limit(TESTS_KEPT)
        .select(connection_tests::id)
        .load(conn)?;
    diesel::delete(
        connection_tests::table
            .filter(connection_tests::connection_id.eq(id))
            .filter(connection_tests::id.ne_all(keep)),
    )
    .execute(conn)?;
    Ok(())
}

/// The latest Test sign-in of a connection.
pub fn latest_test(conn: &mut DbConn, id: &str) -> Result<Option<TestResult>> {
    Ok(connection_tests::table
        .filter(connection_tests::connection_id.eq(id))
        .order(connection_tests::id.desc())
        .select(TestResult::as_select())
        .first(conn)
        .optional()?)
}

pub fn mark_success(conn: &mut DbConn, id: &str, now: i64) -> Result<()> {
    diesel::update(connections::table.find(id))
        .set(connections::last_success_at.eq(Some(now)))
        .execute(conn)?;
    Ok(())
}

pub fn update_config(
    conn: &mut DbConn,
    id: &str,
    config: &serde_json::Value,
    now: i64,
) -> Result<()> {
    diesel::update(connections::table.find(id))
        .set((
            connections::config.eq(config.to_string()),
            connections::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// New IdP settings: an earlier Test sign-in proved the old ones, not these.
pub fn forget_test(conn: &mut DbConn, id: &str) -> Result<()> {
    diesel::update(connections::table.find(id))
        .set(connections::tested_at.eq(None::<i64>))
        .execute(conn)?;
    Ok(())
}

/// SAML connections imported from a metadata URL (they are refreshed periodically).
pub fn with_metadata_url(conn: &mut DbConn) -> Result<Vec<Connection>> {
    Ok(connections::table
        .filter(connections::kind.eq("saml"))
        .filter(connections::config.like("%\"metadata_url\":\"%"))
        .select(Connection::as_select())
        .load(conn)?)
}
