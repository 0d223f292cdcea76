//! The audit log: one function records an event in the caller's transaction (so it commits
//! with the change), with secrets redacted before anything is stored or logged. Events are
//! hash-chained per org ("instance" for instance-level events): editing or deleting a row
//! breaks the chain at that row. Payloads can be purged after the retention period without
//! breaking the chain, because the chain covers each payload's hash.

pub mod redact;

use diesel::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::ids::{AuditId, OrgId};
use crate::db::schema::audit_events;
use crate::db::{lock_named, write_tx, DbConn};

/// Stored payloads are capped (a hostile request must not fill the disk).
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;
pub const INSTANCE_CHAIN: &str = "instance";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Warning,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Warning => "warning",
        }
    }
}

/// An event to record. Build it where the request id is known (the async handler), then
/// record it inside the database closure.
#[derive(Debug, Clone)]
pub struct Event {
    pub org: Option<OrgId>,
    pub actor: String,
    pub action: String,
    pub outcome: Outcome,
    pub payload: serde_json::Value,
    pub request_id: Option<String>,
}

impl Event {
    pub fn new(org: Option<&OrgId>, actor: impl Into<String>, action: impl Into<String>) -> Event {
        Event {
            org: org.cloned(),
            actor: actor.into(),
            action: action.into(),
            outcome: Outcome::Success,
            payload: serde_json::Value::Null,
            request_id: crate::http::context::current_request_id(),
        }
    }

    pub fn outcome(mut self, outcome: Outcome) -> Event {
        self.outcome = outcome;
        self
    }

    pub fn payload(mut self, payload: serde_json::Value) -> Event {
        self.payload = payload;
        self
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = audit_events)]
pub struct StoredEvent {
    pub id: String,
    pub chain: String,
    pub org_id: Option<String>,
    pub seq: i64,
    pub occurred_at: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub request_id: Option<String>,
    pub payload: Option<String>,
    pub payload_hash: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Insertable)]
#[diesel(table_name = audit_events)]
// None is NULL (no column here has another default), so the statement text never varies
// and its prepared statement is found by type, without rebuilding the SQL to look it up.
#[diesel(treat_none_as_default_value = false)]
struct NewEvent<'a> {
    id: String,
    chain: &'a str,
    org_id: Option<&'a str>,
    seq: i64,
    occurred_at: i64,
    actor: &'a str,
    action: &'a str,
    outcome: &'a str,
    request_id: Option<&'a str>,
    payload: Option<&'a str>,
    payload_hash: String,
    prev_hash: String,
    hash: String,
}

impl NewEvent<'_> {
    fn compute_hash(&self) -> String {
        chain_hash(
            &self.prev_hash,
            self.chain,
            self.seq,
            self.occurred_at,
            self.actor,
            self.action,
            self.outcome,
            self.request_id,
            &self.payload_hash,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn chain_hash(
    prev: &str,
    chain: &str,
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    outcome: &str,
    request_id: Option<&str>,
    payload_hash: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        chain,
        &seq.to_string(),
        &at.to_string(),
        actor,
        action,
        outcome,
        request_id.unwrap_or(""),
        payload_hash,
    ] {
        // Length-prefixed so field boundaries cannot be shifted.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

fn chain_of(org: Option<&OrgId>) -> &str {
    org.map(|o| o.as_str()).unwrap_or(INSTANCE_CHAIN)
}

/// Records `event` at `now` (Unix seconds), atomically (a savepoint inside the caller's
/// transaction, if any).
pub fn record(conn: &mut DbConn, event: &Event, now: i64) -> QueryResult<AuditId> {
    let prepared = prepare(event.clone());
    write_tx(conn, |conn| record_prepared(conn, &prepared, now))
}

/// An event with its payload redacted, capped and hashed: the part of recording that needs
/// no database, done before a write is queued so the database writer only chains and inserts.
pub struct Prepared {
    event: Event,
    payload_text: Option<String>,
    payload_hash: String,
}

pub fn prepare(mut event: Event) -> Prepared {
    let redacted = redact::redact(&std::mem::take(&mut event.payload));
    let payload_text = match &redacted {
        serde_json::Value::Null => None,
        value => Some(cap(value.to_string())),
    };
    let payload_hash = payload_hash(payload_text.as_deref());
    Prepared {
        event,
        payload_text,
        payload_hash,
    }
}

/// Records a prepared event at `now`. Must run inside the caller's transaction (the chain's
/// last link is read and extended in it).
pub fn record_prepared(conn: &mut DbConn, p: &Prepared, now: i64) -> QueryResult<AuditId> {
    let event = &p.event;
    match event.outcome {
        Outcome::Success => {
            tracing::info!(action = %event.action, actor = %event.actor, org = ?event.org, "audit")
        }
        _ => {
            let payload = p.payload_text.as_deref().unwrap_or_default();
            tracing::warn!(action = %event.action, actor = %event.actor, org = ?event.org, outcome = event.outcome.as_str(), payload = %payload, "audit")
        }
    }
    let chain = chain_of(event.org.as_ref());
    lock_named(conn, &format!("audit:{chain}"))?;
    let last: Option<(i64, String)> = crate::on_backend!(&mut *conn, |c| audit_events::table
        .filter(audit_events::chain.eq(chain))
        .order(audit_events::seq.desc())
        .select((audit_events::seq, audit_events::hash))
        .first(c)
        .optional())?;
    let (prev_seq, prev_hash) = last.unwrap_or((0, GENESIS.to_string()));
    let id = AuditId::new();
    let mut row = NewEvent {
        id: id.to_string(),
        chain,
        org_id: event.org.as_ref().map(|o| o.as_str()),
        seq: prev_seq + 1,
        occurred_at: now,
        actor: &event.actor,
        action: &event.action,
        outcome: event.outcome.as_str(),
        request_id: event.request_id.as_deref(),
        payload: p.payload_text.as_deref(),
        payload_hash: p.payload_hash.clone(),
        prev_hash,
        hash: String::new(),
    };
    row.hash = row.compute_hash();
    crate::on_backend!(&mut *conn, |c| diesel::insert_into(audit_events::table)
        .values(&row)
        .execute(c))?;
    Ok(id)
}

fn payload_hash(payload: Option<&str>) -> String {
    hex::encode(Sha256::digest(payload.unwrap_or("").as_bytes()))
}

fn cap(mut text: String) -> String {
    if text.len() > MAX_PAYLOAD_BYTES {
        let mut end = MAX_PAYLOAD_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text = serde_json::json!({ "truncated": text }).to_string();
    }
    text
}

/// Events of an org (or the instance), newest first.
pub fn list(conn: &mut DbConn, org: Option<&OrgId>, limit: i64) -> QueryResult<Vec<StoredEvent>> {
    audit_events::table
        .filter(audit_events::chain.eq(chain_of(org)))
        .order(audit_events::seq.desc())
        .limit(limit)
        .select(StoredEvent::as_select())
        .load(conn)
}

/// Why a chain does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("audit chain broken at event #{seq}: {reason}")]
    Broken { seq: i64, reason: &'static str },
}

/// Walks a chain from the start; returns the number of events when intact.
pub fn verify(conn: &mut DbConn, org: Option<&OrgId>) -> Result<usize, anyhow::Error> {
    let chain = chain_of(org);
    let events: Vec<StoredEvent> = audit_events::table
        .filter(audit_events::chain.eq(chain))
        .order(audit_events::seq.asc())
        .select(StoredEvent::as_select())
        .load(conn)?;
    let mut prev = GENESIS.to_string();
    for (i, e) in events.iter().enumerate() {
        let broken = |reason| ChainError::Broken { seq: e.seq, reason };
        if e.seq != i as i64 + 1 {
            return Err(broken("an event is missing before this one").into());
        }
        if e.prev_hash != prev {
            return Err(broken("it does not follow the previous event").into());
        }
        if let Some(p) = &e.payload {
            if payload_hash(Some(p)) != e.payload_hash {
                return Err(broken("its payload was modified").into());
            }
        }
        let expected = chain_hash(
            &e.prev_hash,
            &e.chain,
            e.seq,
            e.occurred_at,
            &e.actor,
            &e.action,
            &e.outcome,
            e.request_id.as_deref(),
            &e.payload_hash,
        );
        if expected != e.hash {
            return Err(broken("its fields were modified").into());
        }
        prev = e.hash.clone();
    }
    Ok(events.len())
}

/// Events whose payloads a purge drops in one write (a short write: the database writer and
/// every other write wait for it).
pub const PURGE_BATCH: i64 = 1000;

/// The orgs with audit events (`None`: instance events), for a payload purge pass.
pub fn chains_with_events(conn: &mut DbConn) -> QueryResult<Vec<Option<String>>> {
    audit_events::table
        .select(audit_events::org_id)
        .distinct()
        .load(conn)
}

/// When the oldest event of one org (`None`: instance events) at or after `from` occurred.
pub fn oldest_event_since(
    conn: &mut DbConn,
    org: Option<&str>,
    from: i64,
) -> QueryResult<Option<i64>> {
    let q = audit_events::table
        .filter(audit_events::occurred_at.ge(from))
        .select(diesel::dsl::min(audit_events::occurred_at))
        .into_boxed();
    match org {
        Some(org) => q.filter(audit_events::org_id.eq(org)).first(conn),
        None => q.filter(audit_events::org_id.is_null()).first(conn),
    }
}

/// Up to [`PURGE_BATCH`] events of one org that still have a payload and occurred in
/// `[from, before)`, oldest first: (id, occurred_at). A read on the (org_id, occurred_at) index.
pub fn purge_candidates(
    conn: &mut DbConn,
    org: Option<&str>,
    from: i64,
    before: i64,
) -> QueryResult<Vec<(String, i64)>> {
    let mut q = audit_events::table
        .filter(audit_events::occurred_at.ge(from))
        .filter(audit_events::occurred_at.lt(before))
        .filter(audit_events::payload.is_not_null())
        .order(audit_events::occurred_at)
        .select((audit_events::id, audit_events::occurred_at))
        .limit(PURGE_BATCH)
        .into_boxed();
    q = match org {
        Some(org) => q.filter(audit_events::org_id.eq(org)),
        None => q.filter(audit_events::org_id.is_null()),
    };
    q.load(conn)
}

/// Drops the payloads of these events; the chain stays verifiable (it covers the payloads'
/// hashes, which stay).
pub fn purge_payloads(conn: &mut DbConn, ids: &[String]) -> QueryResult<usize> {
    diesel::update(audit_events::table.filter(audit_events::id.eq_any(ids)))
        .set(audit_events::payload.eq(None::<String>))
        .execute(conn)
}
