//! `POST /Bulk` (RFC 7644 §3.7): many Users/Groups operations in one request.
//!
//! - The request runs in one write transaction (one commit for up to 1,000 operations); each
//!   operation runs in its own savepoint together with its audit event, so an operation either
//!   happened and is audited, or did neither, and one refused operation does not undo the
//!   others (the RFC's semantics). A database failure fails the whole request with nothing
//!   written, so no client is told about operations that did not commit.
//! - `bulkId:<id>` anywhere in an operation's `data` or `path` names the resource another
//!   operation of the same request creates. Operations run in dependency order (a reference
//!   to a later operation is resolved by running that one first); a reference to an operation
//!   that failed, is missing, or is part of a cycle fails with a detail that says which.
//! - `failOnErrors: n` stops after the n-th failed operation; the operations not run are not
//!   in the response.
//! - `maxOperations` and `maxPayloadSize` are advertised in `/ServiceProviderConfig` and
//!   enforced with 413 before anything runs.

use std::collections::{HashMap, HashSet};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::auth::ScimClient;
use super::error::{ScimError, ScimResult};
use super::{base_url, read_json, respond, Preconditions};
use crate::audit::{self, Event, Outcome};
use crate::clock;
use crate::db::ids::OrgId;
use crate::db::DbConn;
use crate::startup::AppState;

pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
/// The most operations one request may carry.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Users,
    Groups,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Users => "Users",
            Kind::Groups => "Groups",
        }
    }
}

#[derive(Debug, Clone)]
struct Operation {
    method: Method,
    bulk_id: Option<String>,
    path: String,
    data: Value,
    version: Option<String>,
    /// bulkIds this operation refers to (in `path` or `data`).
    refs: Vec<String>,
}

/// What one operation produced, for the response and for later references.
struct Outcome1 {
    status: StatusCode,
    location: Option<String>,
    version: Option<String>,
    created_id: Option<String>,
    error: Option<ScimError>,
}

fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            if let Some(id) = s.strip_prefix("bulkId:") {
                out.push(id.to_string());
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn path_refs(path: &str, out: &mut Vec<String>) {
    for segment in path.split('/') {
        if let Some(id) = segment.strip_prefix("bulkId:") {
            out.push(id.to_string());
        }
    }
}

/// Parses and checks the whole request before anything runs: a malformed request runs
/// nothing.
fn parse(body: &Value) -> ScimResult<(Vec<Operation>, Option<usize>)> {
    let map = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a BulkRequest must be a JSON object"))?;
    let schemas_ok = field(map, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(BULK_REQUEST)));
    if !schemas_ok {
        return Err(ScimError::invalid_syntax(format!(
            "`schemas` must contain `{BULK_REQUEST}`"
        )));
    }
    let fail_on_errors = match field(map, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n as usize),
            _ => {
                return Err(ScimError::invalid_value(
                    "`failOnErrors` must be an integer of at least 1",
                ))
            }
        },
    };
    let ops = field(map, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("`Operations` must be an array"))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
            format!(
                "{} operations: a bulk request may carry at most {MAX_OPERATIONS} (maxOperations)",
                ops.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let n = i + 1;
        let op = op
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax(format!("operation {n} is not an object")))?;
        let method = match field(op, "method")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase)
        {
            Some(m) if m == "POST" => Method::Post,
            Some(m) if m == "PUT" => Method::Put,
            Some(m) if m == "PATCH" => Method::Patch,
            Some(m) if m == "DELETE" => Method::Delete,
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "operation {n}: `method` must be POST, PUT, PATCH or DELETE"
                )))
            }
        };
        let bulk_id = match field(op, "bulkId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() && !s.contains('/') => Some(s.clone()),
            Some(_) => {
                return Err(ScimError::invalid_value(format!(
                    "operation {n}: `bulkId` must be a non-empty string without `/`"
                )))
            }
        };
        if method == Method::Post && bulk_id.is_none() {
            return Err(ScimError::invalid_value(format!(
                "operation {n}: a POST needs a `bulkId`"
            )));
        }
        if let Some(id) = &bulk_id {
            if !seen.insert(id.clone()) {
                return Err(ScimError::invalid_value(format!(
                    "operation {n}: bulkId `{id}` is used twice"
                )));
            }
        }
        let path = field(op, "path")
            .and_then(Value::as_str)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| {
                ScimError::invalid_value(format!(
                    "operation {n}: `path` must be a resource path such as `/Users`"
                ))
            })?
            .to_string();
        let data = field(op, "data").cloned().unwrap_or(Value::Null);
        if method != Method::Delete && !data.is_object() {
            return Err(ScimError::invalid_value(format!(
                "operation {n}: {} needs a `data` object",
                method.as_str()
            )));
        }
        let version = field(op, "version")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut refs = Vec::new();
        path_refs(&path, &mut refs);
        collect_refs(&data, &mut refs);
        refs.sort();
        refs.dedup();
        out.push(Operation {
            method,
            bulk_id,
            path,
            data,
            version,
            refs,
        });
    }
    Ok((out, fail_on_errors))
}

/// The order to run operations in: request order, except that an operation referring to a
/// bulkId runs after the operation that creates it. Operations in a cycle keep their place
/// (their references then fail with a clear detail).
fn run_order(ops: &[Operation]) -> Vec<usize> {
    let by_bulk: HashMap<&str, usize> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| op.bulk_id.as_deref().map(|b| (b, i)))
        .collect();
    // 0 = not visited, 1 = on the stack, 2 = placed.
    let mut mark = vec![0u8; ops.len()];
    let mut order = Vec::with_capacity(ops.len());
    for start in 0..ops.len() {
        // Iterative depth-first walk (a hostile chain of 1,000 references must not overflow).
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some((i, next)) = stack.pop() {
            if next == 0 {
                if mark[i] != 0 {
                    continue;
                }
                mark[i] = 1;
            }
            let dep = ops[i]
                .refs
                .get(next)
                .and_then(|r| by_bulk.get(r.as_str()).copied());
            if next < ops[i].refs.len() {
                stack.push((i, next + 1));
                if let Some(d) = dep {
                    if mark[d] == 0 {
                        stack.push((d, 0));
                    }
                }
            } else {
                mark[i] = 2;
                order.push(i);
            }
        }
    }
    order
}

fn replace_refs(value: &mut Value, ids: &HashMap<String, String>) -> Result<(), String> {
    match value {
        Value::String(s) => {
            if let Some(b) = s.strip_prefix("bulkId:") {
                match ids.get(b) {
                    Some(id) => *s = id.clone(),
                    None => return Err(b.to_string()),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                replace_refs(v, ids)?;
            }
        }
        Value::Object(map) => {
            for v in map.values_mut() {
                replace_refs(v, ids)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `/Users`, `/Users/{id}`, `/Groups`, `/Groups/{id}` (endpoint names case-insensitive).
fn target(path: &str) -> ScimResult<(Kind, Option<String>)> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let kind = match parts.next() {
        Some(e) if e.eq_ignore_ascii_case("users") => Kind::Users,
        Some(e) if e.eq_ignore_ascii_case("groups") => Kind::Groups,
        _ => {
            return Err(ScimError::invalid_path(format!(
                "`{path}`: bulk operations apply to /Users and /Groups"
            )))
        }
    };
    let id = parts
        .next()
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty());
    if id.is_some_and(|s| s.contains('/')) {
        return Err(ScimError::invalid_path(format!(
            "`{path}` is not a resource path"
        )));
    }
    Ok((kind, id.map(str::to_string)))
}

/// Runs one operation (references already resolved) in the caller's transaction.
fn execute(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    op: &Operation,
    path: &str,
    data: &Value,
    now: i64,
) -> ScimResult<(StatusCode, Option<Value>)> {
    let (kind, id) = target(path)?;
    let pre = Preconditions::if_match(op.version.clone());
    let need_id = || {
        id.clone().ok_or_else(|| {
            ScimError::invalid_path(format!(
                "{} needs `/{}/{{id}}`",
                op.method.as_str(),
                kind.endpoint()
            ))
        })
    };
    match (op.method, kind) {
        (Method::Post, _) if id.is_some() => Err(ScimError::invalid_path(format!(
            "POST goes to `/{}`, not to a resource",
            kind.endpoint()
        ))),
        (Method::Post, Kind::Users) => Ok((
            StatusCode::CREATED,
            Some(super::users::create_in(conn, org, base, data, now)?),
        )),
        (Method::Post, Kind::Groups) => Ok((
            StatusCode::CREATED,
            Some(super::groups::create_in(conn, org, base, data, now)?),
        )),
        (Method::Put, Kind::Users) => Ok((
            StatusCode::OK,
            Some(super::users::replace_in(
                conn,
                org,
                base,
                &need_id()?,
                data,
                &pre,
                now,
            )?),
        )),
        (Method::Put, Kind::Groups) => Ok((
            StatusCode::OK,
            Some(super::groups::replace_in(
                conn,
                org,
                base,
                &need_id()?,
                data,
                &pre,
                now,
            )?),
        )),
        (Method::Patch, Kind::Users) => Ok((
            StatusCode::OK,
            Some(super::users::patch_in(
                conn,
                org,
                base,
                &need_id()?,
                data,
                &pre,
                now,
            )?),
        )),
        (Method::Patch, Kind::Groups) => {
            let id = need_id()?;
            let (_, version) =
                super::groups::patch_in(conn, org, base, &id, data, &pre, None, now)?;
            // No body for a group PATCH (a member list can be huge); the version still travels.
            Ok((
                StatusCode::OK,
                Some(json!({"id": id, "meta": {
                    "version": super::resource::etag(version),
                    "location": format!("{base}/Groups/{id}"),
                }})),
            ))
        }
        (Method::Delete, Kind::Users) => {
            super::users::delete_in(conn, org, &need_id()?, &pre, now)?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        (Method::Delete, Kind::Groups) => {
            super::groups::delete_in(conn, org, &need_id()?, &pre)?;
            Ok((StatusCode::NO_CONTENT, None))
        }
    }
}

fn error_body(e: &ScimError) -> Value {
    let mut body = json!({
        "schemas": [super::error::ERROR_SCHEMA],
        "status": e.status.as_u16().to_string(),
        "detail": e.detail,
    });
    if let Some(t) = e.scim_type {
        body["scimType"] = json!(t);
    }
    body
}

/// `POST /Bulk`
pub async fn bulk(
    state: web::Data<AppState>,
    client: ScimClient,
    req: HttpRequest,
    payload: web::Payload,
) -> ScimResult<HttpResponse> {
    let body = read_json(&state, &req, payload).await?;
    let (ops, fail_on_errors) = parse(&body)?;
    let base = base_url(&state);
    let now = clock::now();
    let request_id = crate::http::context::current_request_id();
    let actor = format!("scim-token:{}", client.token_id);
    let results = state
        .db
        .write(move |conn| -> ScimResult<Vec<Value>> {
            {
                let mut created: HashMap<String, String> = HashMap::new();
                let mut failed_refs: HashMap<String, String> = HashMap::new();
                let mut errors = 0usize;
                let mut results = Vec::with_capacity(ops.len());
                for i in run_order(&ops) {
                    if fail_on_errors.is_some_and(|limit| errors >= limit) {
                        break;
                    }
                    let op = &ops[i];
                    let outcome = run_one(
                        conn,
                        &client.org,
                        &base,
                        op,
                        &created,
                        &failed_refs,
                        &actor,
                        request_id.as_deref(),
                        now,
                    )?;
                    if let (Some(b), Some(id)) = (&op.bulk_id, &outcome.created_id) {
                        created.insert(b.clone(), id.clone());
                    }
                    let mut entry = json!({
                        "method": op.method.as_str(),
                        "status": outcome.status.as_u16().to_string(),
                    });
                    if let Some(b) = &op.bulk_id {
                        entry["bulkId"] = json!(b);
                    }
                    if let Some(l) = outcome.location {
                        entry["location"] = json!(l);
                    }
                    if let Some(v) = outcome.version {
                        entry["version"] = json!(v);
                    }
                    if let Some(e) = &outcome.error {
                        errors += 1;
                        entry["response"] = error_body(e);
                        if let Some(b) = &op.bulk_id {
                            failed_refs.insert(b.clone(), e.detail.clone());
                        }
                    }
                    results.push(entry);
                }
                Ok(results)
            }
        })
        .await?;
    Ok(respond(
        StatusCode::OK,
        &json!({"schemas": [BULK_RESPONSE], "Operations": results}),
    ))
}

/// One operation and its audit event, in one transaction. Only a database failure is an
/// `Err` (it stops the request); anything the client got wrong is an outcome.
#[allow(clippy::too_many_arguments)]
fn run_one(
    conn: &mut DbConn,
    org: &OrgId,
    base: &str,
    op: &Operation,
    created: &HashMap<String, String>,
    failed_refs: &HashMap<String, String>,
    actor: &str,
    request_id: Option<&str>,
    now: i64,
) -> ScimResult<Outcome1> {
    let mut data = op.data.clone();
    let mut path = op.path.clone();
    let resolved = replace_refs(&mut data, created).and_then(|()| {
        let mut segments = Vec::new();
        for s in path.split('/') {
            match s.strip_prefix("bulkId:") {
                Some(b) => segments.push(created.get(b).cloned().ok_or_else(|| b.to_string())?),
                None => segments.push(s.to_string()),
            }
        }
        path = segments.join("/");
        Ok(())
    });
    let result = match resolved {
        Err(b) => Err(ScimError::new(
            StatusCode::CONFLICT,
            Some("invalidValue"),
            match failed_refs.get(&b) {
                Some(why) => format!("bulkId `{b}` refers to an operation that failed: {why}"),
                None if op.refs.contains(&b) && op.bulk_id.as_deref() == Some(b.as_str()) => {
                    format!("bulkId `{b}` refers to this operation itself")
                }
                None => format!(
                    "bulkId `{b}` is not created by an earlier operation of this request (missing, or a circular reference)"
                ),
            },
        )),
        Ok(()) => {
            crate::db::write_tx(conn, |conn| -> ScimResult<(StatusCode, Option<Value>)> {
                let done = execute(conn, org, base, op, &path, &data, now)?;
                audit_op(conn, org, (actor, request_id), op, &path, &data, done.0, None, now)?;
                Ok(done)
            })
        }
    };
    match result {
        Ok((status, body)) => {
            let meta = |k: &str| {
                body.as_ref()
                    .and_then(|b| b.pointer(&format!("/meta/{k}")))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let created_id = (status == StatusCode::CREATED)
                .then(|| {
                    body.as_ref()
                        .and_then(|b| b.get("id"))
                        .and_then(Value::as_str)
                })
                .flatten()
                .map(str::to_string);
            Ok(Outcome1 {
                status,
                location: meta("location")
                    .or_else(|| (op.method == Method::Delete).then(|| format!("{base}{path}"))),
                version: meta("version"),
                created_id,
                error: None,
            })
        }
        Err(e) if e.status.is_server_error() => Err(e),
        Err(e) => {
            // The refusal is audited on its own (the operation's transaction rolled back).
            crate::db::write_tx(conn, |conn| {
                audit_op(
                    conn,
                    org,
                    (actor, request_id),
                    op,
                    &path,
                    &data,
                    e.status,
                    Some(&e),
                    now,
                )
            })?;
            Ok(Outcome1 {
                status: e.status,
                location: None,
                version: None,
                created_id: None,
                error: Some(e),
            })
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn audit_op(
    conn: &mut DbConn,
    org: &OrgId,
    (actor, request_id): (&str, Option<&str>),
    op: &Operation,
    path: &str,
    data: &Value,
    status: StatusCode,
    error: Option<&ScimError>,
    now: i64,
) -> ScimResult<()> {
    let mut event = Event::new(Some(org), actor, "scim.bulk.operation")
        .outcome(if error.is_some() {
            Outcome::Failure
        } else {
            Outcome::Success
        })
        .payload(json!({
            "method": op.method.as_str(),
            "path": path,
            "bulkId": op.bulk_id,
            "status": status.as_u16(),
            "body": data,
            "error": error.map(|e| e.detail.clone()),
        }));
    event.request_id = request_id.map(str::to_string);
    audit::record(conn, &event, now)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(bulk: Option<&str>, refs: &[&str]) -> Operation {
        Operation {
            method: Method::Post,
            bulk_id: bulk.map(str::to_string),
            path: "/Groups".into(),
            data: Value::Null,
            version: None,
            refs: refs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn references_run_first_and_cycles_keep_their_place() {
        let ops = vec![
            op(Some("g"), &["u"]),
            op(Some("u"), &[]),
            op(Some("x"), &[]),
        ];
        assert_eq!(run_order(&ops), vec![1, 0, 2]);
        let cycle = vec![op(Some("a"), &["b"]), op(Some("b"), &["a"])];
        let order = run_order(&cycle);
        assert_eq!(order.len(), 2);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1]);
    }

    #[test]
    fn long_reference_chains_do_not_overflow() {
        let ops: Vec<Operation> = (0..1000)
            .map(|i| {
                let me = format!("b{i}");
                let next = format!("b{}", i + 1);
                Operation {
                    refs: if i < 999 { vec![next] } else { vec![] },
                    ..op(Some(&me), &[])
                }
            })
            .collect();
        let order = run_order(&ops);
        assert_eq!(order.first(), Some(&999));
        assert_eq!(order.last(), Some(&0));
    }

    #[test]
    fn targets() {
        assert_eq!(target("/Users").unwrap(), (Kind::Users, None));
        assert_eq!(
            target("/groups/abc").unwrap(),
            (Kind::Groups, Some("abc".into()))
        );
        assert!(target("/Schemas").is_err());
        assert!(target("/Users/a/b").is_err());
    }
}
