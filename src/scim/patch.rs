//! SCIM PATCH (RFC 7644 §3.5.2) on a stored resource document, with the lenient forms real
//! IdPs send: capitalised op names, string booleans, `Add emails[type eq "work"].value`
//! creating the element, a manager given as a bare id, roles given as a JSON-encoded string,
//! no-path values keyed by dotted paths or full URNs, Okta's rename carrying `id`. Group
//! membership operations are returned separately so they can run as single-row changes.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{self, AttrPath, Filter, Op};
use super::schema::{self, Attr, Kind, Mutability, Resource};

pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Clone)]
pub struct PatchPath {
    pub urn: Option<String>,
    pub attr: String,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// A member to add: the user id and the `display` the client sent, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    pub id: String,
    pub display: Option<String>,
}

/// A change to a group's members, applied in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    Add(Vec<NewMember>),
    Remove(Vec<String>),
    RemoveAll,
}

pub fn parse_path(text: &str) -> Result<PatchPath, ScimError> {
    let text = text.trim();
    let (head, filter, sub) = match text.find('[') {
        Some(open) => {
            let close = text.rfind(']').filter(|c| *c > open).ok_or_else(|| {
                ScimError::invalid_path(format!("unbalanced `[` in path `{text}`"))
            })?;
            let inner = filter::parse(&text[open + 1..close])
                .map_err(|e| ScimError::invalid_path(format!("path `{text}`: {e}")))?;
            let rest = &text[close + 1..];
            let sub = match rest.strip_prefix('.') {
                Some(s) if !s.is_empty() => Some(s.to_ascii_lowercase()),
                None if rest.is_empty() => None,
                _ => return Err(ScimError::invalid_path(format!("invalid path `{text}`"))),
            };
            (&text[..open], Some(inner), sub)
        }
        None => (text, None, None),
    };
    let p = AttrPath::parse(head).map_err(ScimError::invalid_path)?;
    if filter.is_some() && p.sub.is_some() {
        return Err(ScimError::invalid_path(format!("invalid path `{text}`")));
    }
    Ok(PatchPath {
        urn: p.urn,
        attr: p.attr,
        filter,
        sub: sub.or(p.sub),
    })
}

/// Parses the PatchOp body.
/// `password`, with or without the core User schema URN, in any case.
fn is_password_path(path: &str) -> bool {
    let p = path.trim();
    let attr = match p.rfind(':') {
        Some(i) if p[..i].eq_ignore_ascii_case("urn:ietf:params:scim:schemas:core:2.0:User") => {
            &p[i + 1..]
        }
        Some(_) => return false,
        None => p,
    };
    attr.eq_ignore_ascii_case("password")
}

pub fn parse_operations(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let ops = body
        .get("Operations")
        .or_else(|| body.get("operations"))
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a PatchOp needs an `Operations` array"))?;
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_value(format!(
            "at most {MAX_OPERATIONS} operations per PATCH"
        )));
    }
    ops.iter()
        // Passwords an IdP sends (Okta's password sync: `path: "password"`) are accepted and
        // ignored, never stored (a `value` object's `password` key is dropped by normalization).
        .filter(|op| {
            !op.get("path")
                .and_then(Value::as_str)
                .is_some_and(is_password_path)
        })
        .map(|op| {
            let kind = match op
                .get("op")
                .and_then(Value::as_str)
                .map(|s| s.to_ascii_lowercase())
                .as_deref()
            {
                Some("add") => OpKind::Add,
                Some("replace") => OpKind::Replace,
                Some("remove") => OpKind::Remove,
                other => {
                    return Err(ScimError::invalid_syntax(format!(
                        "unknown PATCH op {other:?} (expected add, replace or remove)"
                    )))
                }
            };
            let path = match op.get("path") {
                Some(Value::String(p)) if !p.trim().is_empty() => Some(parse_path(p)?),
                Some(Value::String(_)) | Some(Value::Null) | None => None,
                Some(_) => return Err(ScimError::invalid_path("`path` must be a string")),
            };
            let mut value = op.get("value").cloned();
            if let (None, Some(Value::Object(map))) = (&path, value.as_mut()) {
                map.retain(|k, _| !is_password_path(k));
            }
            if kind != OpKind::Remove && value.is_none() {
                return Err(ScimError::invalid_value("add and replace need a `value`"));
            }
            if kind == OpKind::Remove && path.is_none() {
                return Err(ScimError::no_target("remove needs a `path`"));
            }
            Ok(Operation {
                op: kind,
                path,
                value,
            })
        })
        .collect()
}

/// Where an attribute lives in the document: the core map or the extension object.
struct Target<'a> {
    attr: &'a Attr,
    ext: Option<&'static str>,
}

fn resolve<'a>(
    resource: Resource,
    urn: Option<&str>,
    attr: &str,
) -> Result<Option<Target<'a>>, ScimError> {
    let core = resource.core_schema().to_ascii_lowercase();
    match urn {
        Some(u) if u != core => match resource.extension() {
            Some((ext_urn, attrs)) if ext_urn.eq_ignore_ascii_case(u) => {
                Ok(schema::find(attrs, attr).map(|a| Target {
                    attr: a,
                    ext: Some(ext_urn),
                }))
            }
            // Unknown extensions (custom IdP schemas) are not stored: ignore them.
            _ => Ok(None),
        },
        _ => match schema::find_top(resource, attr) {
            Some(a) => Ok(Some(Target { attr: a, ext: None })),
            None => {
                // An enterprise attribute without its URN (some clients do that).
                if let Some((ext_urn, attrs)) = resource.extension() {
                    if let Some(a) = schema::find(attrs, attr) {
                        return Ok(Some(Target {
                            attr: a,
                            ext: Some(ext_urn),
                        }));
                    }
                }
                Err(ScimError::invalid_path(format!(
                    "unknown attribute `{attr}`"
                )))
            }
        },
    }
}

fn container<'d>(
    doc: &'d mut Map<String, Value>,
    ext: Option<&str>,
) -> Result<&'d mut Map<String, Value>, ScimError> {
    let Some(urn) = ext else { return Ok(doc) };
    let slot = doc
        .entry(urn.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| ScimError::internal("extension container is not an object"))
}

/// The lenient value forms, before type normalisation.
fn lenient_value(attr: &Attr, value: &Value) -> Value {
    match value {
        Value::String(s) if attr.kind == Kind::Complex => {
            let t = s.trim();
            if t.starts_with('[') || t.starts_with('{') {
                if let Ok(parsed) = serde_json::from_str::<Value>(t) {
                    return parsed;
                }
            }
            serde_json::json!({"value": s})
        }
        // A single-valued complex attribute sent as a one-element array (Entra's manager).
        Value::Array(items) if attr.kind == Kind::Complex && !attr.multi && items.len() == 1 => {
            lenient_value(attr, &items[0])
        }
        Value::Array(items) if attr.kind == Kind::Complex => {
            Value::Array(items.iter().map(|i| lenient_value(attr, i)).collect())
        }
        other => other.clone(),
    }
}

/// Applies resource-attribute operations to `doc`; membership changes (groups) are returned.
pub fn apply(
    resource: Resource,
    doc: &mut Map<String, Value>,
    ops: &[Operation],
) -> Result<Vec<MemberChange>, ScimError> {
    let mut members = Vec::new();
    for op in ops {
        match &op.path {
            None => {
                let Some(Value::Object(values)) = &op.value else {
                    return Err(ScimError::invalid_value(
                        "an operation without `path` needs an object `value`",
                    ));
                };
                for (key, value) in values {
                    let lower = key.to_ascii_lowercase();
                    if matches!(lower.as_str(), "id" | "schemas" | "meta") {
                        continue; // Okta's rename sends the id along: ignored.
                    }
                    if let Some((ext_urn, _)) = resource.extension() {
                        if key.eq_ignore_ascii_case(ext_urn) {
                            if let Value::Object(ext_values) = value {
                                for (k, v) in ext_values {
                                    let path = parse_path(&format!("{ext_urn}:{k}"))?;
                                    apply_one(resource, doc, op.op, &path, Some(v), &mut members)?;
                                }
                            }
                            continue;
                        }
                    }
                    let path = parse_path(key)?;
                    apply_one(resource, doc, op.op, &path, Some(value), &mut members)?;
                }
            }
            Some(path) if is_extension_path(resource, path) => {
                let Some((ext_urn, _)) = resource.extension() else {
                    continue;
                };
                match op.op {
                    OpKind::Remove => {
                        doc.remove(ext_urn);
                    }
                    kind => {
                        let Some(Value::Object(values)) = &op.value else {
                            return Err(ScimError::invalid_value(
                                "the extension's value must be an object",
                            ));
                        };
                        if kind == OpKind::Replace {
                            doc.remove(ext_urn);
                        }
                        for (k, v) in values {
                            let path = parse_path(&format!("{ext_urn}:{k}"))?;
                            apply_one(resource, doc, OpKind::Add, &path, Some(v), &mut members)?;
                        }
                    }
                }
            }
            Some(path) => apply_one(resource, doc, op.op, path, op.value.as_ref(), &mut members)?,
        }
    }
    Ok(members)
}

/// Members as sent in a POST/PUT body or a PATCH value.
pub fn new_members(value: Option<&Value>) -> Result<Vec<NewMember>, ScimError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.clone(),
        Some(single) => vec![single.clone()],
    };
    let ids = member_ids(Some(&Value::Array(items.clone())))?;
    Ok(ids
        .into_iter()
        .zip(items.iter())
        .map(|(id, item)| NewMember {
            id,
            display: get_ci(item, "display")
                .or_else(|| get_ci(item, "displayName"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
        .collect())
}

/// A path naming the extension schema itself (`urn:…:enterprise:2.0:User`).
fn is_extension_path(resource: Resource, path: &PatchPath) -> bool {
    let Some((ext_urn, _)) = resource.extension() else {
        return false;
    };
    path.filter.is_none()
        && path.sub.is_none()
        && path
            .urn
            .as_deref()
            .is_some_and(|u| format!("{u}:{}", path.attr).eq_ignore_ascii_case(ext_urn))
}

fn member_ids(value: Option<&Value>) -> Result<Vec<String>, ScimError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.clone(),
        Some(single) => vec![single.clone()],
    };
    items
        .iter()
        .map(|m| match m {
            Value::Object(o) => o
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("value"))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| ScimError::invalid_value("each member needs a string `value`")),
            Value::String(s) => Ok(s.clone()),
            _ => Err(ScimError::invalid_value(
                "each member needs a string `value`",
            )),
        })
        .collect()
}

fn apply_one(
    resource: Resource,
    doc: &mut Map<String, Value>,
    op: OpKind,
    path: &PatchPath,
    value: Option<&Value>,
    members: &mut Vec<MemberChange>,
) -> Result<(), ScimError> {
    if resource == Resource::Group && path.attr == "members" && path.urn.is_none() {
        let change = match (op, &path.filter) {
            (OpKind::Add, None) => MemberChange::Add(new_members(value)?),
            (OpKind::Replace, None) => {
                members.push(MemberChange::RemoveAll);
                MemberChange::Add(new_members(value)?)
            }
            (OpKind::Remove, None) => {
                let ids = member_ids(value)?;
                if ids.is_empty() {
                    MemberChange::RemoveAll
                } else {
                    MemberChange::Remove(ids) // the legacy form with a value array
                }
            }
            (OpKind::Remove, Some(f)) => MemberChange::Remove(member_filter_ids(f)?),
            (_, Some(_)) => {
                return Err(ScimError::invalid_path(
                    "members can be added or replaced only without a filter",
                ))
            }
        };
        members.push(change);
        return Ok(());
    }
    if matches!(path.attr.as_str(), "id" | "meta" | "schemas") && path.urn.is_none() {
        return Err(ScimError::mutability(format!(
            "`{}` cannot be changed",
            path.attr
        )));
    }
    let Some(target) = resolve(resource, path.urn.as_deref(), &path.attr)? else {
        return Ok(());
    };
    let attr = target.attr;
    if attr.mutability == Mutability::ReadOnly {
        return Ok(()); // e.g. `groups` on a user: read-only, silently ignored like in PUT
    }
    let map = container(doc, target.ext)?;
    let name = attr.name.to_string();
    let sub_attr = match &path.sub {
        Some(sub) => Some(schema::find(attr.subs, sub).ok_or_else(|| {
            ScimError::invalid_path(format!("unknown sub-attribute `{}.{sub}`", attr.name))
        })?),
        None => None,
    };

    if !attr.multi {
        match (op, sub_attr) {
            (OpKind::Remove, None) => {
                map.remove(&name);
            }
            (OpKind::Remove, Some(sub)) => {
                if let Some(Value::Object(o)) = map.get_mut(&name) {
                    o.remove(sub.name);
                }
            }
            (_, None) => {
                let v = value.map(|v| lenient_value(attr, v)).unwrap_or(Value::Null);
                match schema::normalize_value(attr, &v).map_err(ScimError::invalid_value)? {
                    Some(Value::Object(new)) if attr.kind == Kind::Complex => {
                        let slot = map.entry(name).or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(existing) = slot {
                            existing.extend(new);
                        } else {
                            *slot = Value::Object(new);
                        }
                    }
                    Some(v) => {
                        map.insert(name, v);
                    }
                    None => {
                        map.remove(&name);
                    }
                }
            }
            (_, Some(sub)) => {
                let v = value.cloned().unwrap_or(Value::Null);
                let slot = map.entry(name).or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(o) = slot {
                    match schema::normalize_value(sub, &v).map_err(ScimError::invalid_value)? {
                        Some(v) => {
                            o.insert(sub.name.to_string(), v);
                        }
                        None => {
                            o.remove(sub.name);
                        }
                    }
                }
            }
        }
        return Ok(());
    }

    // Multi-valued attributes.
    let current: Vec<Value> = match map.get(&name) {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    let matched: Vec<bool> = current
        .iter()
        .map(|item| {
            path.filter
                .as_ref()
                .map(|f| element_matches(f, item))
                .unwrap_or(true)
        })
        .collect();
    let mut items = current.clone();
    match (op, &path.filter, sub_attr) {
        (OpKind::Remove, None, None) => {
            let ids = value
                .map(|v| member_ids(Some(v)))
                .transpose()?
                .unwrap_or_default();
            if ids.is_empty() {
                items.clear();
            } else {
                items.retain(|i| {
                    !i.get("value")
                        .and_then(Value::as_str)
                        .is_some_and(|v| ids.iter().any(|id| id == v))
                });
            }
        }
        (OpKind::Remove, _, None) => {
            let mut keep = matched.iter().map(|m| !m);
            items.retain(|_| keep.next().unwrap_or(true));
        }
        (OpKind::Remove, _, Some(sub)) => {
            for (item, m) in items.iter_mut().zip(&matched) {
                if let (true, Value::Object(o)) = (*m, item) {
                    o.remove(sub.name);
                }
            }
        }
        (_, None, None) => {
            let v = value.map(|v| lenient_value(attr, v)).unwrap_or(Value::Null);
            let new = match schema::normalize_value(attr, &v).map_err(ScimError::invalid_value)? {
                Some(Value::Array(new)) => new,
                _ => Vec::new(),
            };
            if op == OpKind::Replace {
                items = new;
            } else {
                if new.iter().any(is_primary) {
                    clear_primary(&mut items);
                }
                for n in new {
                    if !items.contains(&n) {
                        items.push(n);
                    }
                }
            }
        }
        (_, Some(f), None) => {
            let v = value.map(|v| lenient_value(attr, v)).unwrap_or(Value::Null);
            let one = match v {
                Value::Array(mut a) if a.len() == 1 => a.remove(0),
                other => other,
            };
            let Some(Value::Array(mut new)) =
                schema::normalize_value(attr, &one).map_err(ScimError::invalid_value)?
            else {
                return Ok(());
            };
            let new = new.pop().unwrap_or(Value::Null);
            if matched.iter().any(|m| *m) {
                for (item, m) in items.iter_mut().zip(&matched) {
                    if *m {
                        merge(item, &new);
                    }
                }
            } else {
                let mut created = seed_from_filter(f);
                merge(&mut created, &new);
                items.push(created);
            }
        }
        (_, filter, Some(sub)) => {
            let v = value.cloned().unwrap_or(Value::Null);
            let v = schema::normalize_value(sub, &v).map_err(ScimError::invalid_value)?;
            if v.as_ref()
                .is_some_and(|v| sub.name == "primary" && v == &Value::Bool(true))
            {
                clear_primary(&mut items);
            }
            if matched.iter().any(|m| *m) && !items.is_empty() {
                for (item, m) in items.iter_mut().zip(&matched) {
                    if let (true, Value::Object(o)) = (*m, item) {
                        match &v {
                            Some(v) => {
                                o.insert(sub.name.to_string(), v.clone());
                            }
                            None => {
                                o.remove(sub.name);
                            }
                        }
                    }
                }
            } else if let Some(v) = v {
                // Entra: `Add emails[type eq "work"].value` with no work e-mail creates one.
                let mut created = filter
                    .as_ref()
                    .map(seed_from_filter)
                    .unwrap_or_else(|| Value::Object(Map::new()));
                if let Value::Object(o) = &mut created {
                    o.insert(sub.name.to_string(), v);
                }
                items.push(created);
            }
        }
    }
    // Re-normalise (string booleans inside elements, canonical sub-attribute names).
    let normalized =
        schema::normalize_value(attr, &Value::Array(items)).map_err(ScimError::invalid_value)?;
    match normalized {
        Some(v) => {
            map.insert(name, v);
        }
        None => {
            map.remove(&name);
        }
    }
    Ok(())
}

fn is_primary(v: &Value) -> bool {
    v.get("primary").is_some_and(|p| p == &Value::Bool(true))
}

fn clear_primary(items: &mut [Value]) {
    for i in items {
        if let Value::Object(o) = i {
            if o.contains_key("primary") {
                o.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

fn merge(target: &mut Value, new: &Value) {
    match (target, new) {
        (Value::Object(t), Value::Object(n)) => {
            for (k, v) in n {
                t.insert(k.clone(), v.clone());
            }
        }
        (t, n) => *t = n.clone(),
    }
}

/// The element a filter like `type eq "work" and primary eq true` describes.
fn seed_from_filter(f: &Filter) -> Value {
    let mut out = Map::new();
    fn walk(f: &Filter, out: &mut Map<String, Value>) {
        match f {
            Filter::Compare {
                path,
                op: Op::Eq,
                value,
            } if path.sub.is_none() => {
                let v = match value {
                    Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
                    Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
                    other => other.clone(),
                };
                out.insert(path.attr.clone(), v);
            }
            Filter::And(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            _ => {}
        }
    }
    walk(f, &mut out);
    Value::Object(out)
}

/// The member ids named by `members[value eq "x"]` (or `or` of several).
fn member_filter_ids(f: &Filter) -> Result<Vec<String>, ScimError> {
    match f {
        Filter::Compare {
            path,
            op: Op::Eq,
            value: Value::String(id),
        } if path.attr == "value" => Ok(vec![id.clone()]),
        Filter::Or(a, b) => {
            let mut ids = member_filter_ids(a)?;
            ids.extend(member_filter_ids(b)?);
            Ok(ids)
        }
        _ => Err(ScimError::invalid_filter(
            "members can be removed by `members[value eq \"id\"]`",
        )),
    }
}

/// Evaluates a value filter against one element of a multi-valued attribute (in memory: an
/// element is small). String comparisons ignore case, booleans accept "True"/"False".
pub fn element_matches(f: &Filter, item: &Value) -> bool {
    match f {
        Filter::And(a, b) => element_matches(a, item) && element_matches(b, item),
        Filter::Or(a, b) => element_matches(a, item) || element_matches(b, item),
        Filter::Not(a) => !element_matches(a, item),
        Filter::ValuePath { .. } => false,
        Filter::Present(p) => get_ci(item, &p.attr).is_some_and(|v| !v.is_null()),
        Filter::Compare { path, op, value } => {
            let Some(actual) = get_ci(item, &path.attr) else {
                return false;
            };
            compare(actual, op, value)
        }
    }
}

fn get_ci<'v>(item: &'v Value, key: &str) -> Option<&'v Value> {
    item.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_lowercase()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn compare(actual: &Value, op: &Op, expected: &Value) -> bool {
    let (Some(a), Some(e)) = (as_text(actual), as_text(expected)) else {
        return matches!(op, Op::Eq) && actual.is_null() && expected.is_null();
    };
    match op {
        Op::Eq => a == e,
        Op::Ne => a != e,
        Op::Co => a.contains(&e),
        Op::Sw => a.starts_with(&e),
        Op::Ew => a.ends_with(&e),
        Op::Gt => a > e,
        Op::Ge => a >= e,
        Op::Lt => a < e,
        Op::Le => a <= e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        json!({"userName": "a@b.c", "active": true, "emails": [{"value": "a@b.c", "type": "home", "primary": true}]})
            .as_object()
            .cloned()
            .unwrap()
    }

    fn run(doc: &mut Map<String, Value>, body: Value) -> Vec<MemberChange> {
        let ops = parse_operations(&body).unwrap();
        apply(Resource::User, doc, &ops).unwrap()
    }

    #[test]
    fn entra_forms() {
        let mut d = user();
        run(
            &mut d,
            json!({"Operations": [
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "w@b.c"},
                {"op": "Replace", "path": "name.givenName", "value": "Ann"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "mgr-1"},
                {"op": "Add", "path": "roles", "value": "[{\"value\":\"admin\",\"primary\":\"True\"}]"},
                {"op": "Replace", "value": {"displayName": "Ann B", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "7"}},
            ]}),
        );
        assert_eq!(d["active"], false);
        assert_eq!(d["emails"][1], json!({"type": "work", "value": "w@b.c"}));
        assert_eq!(d["name"]["givenName"], "Ann");
        let ext = &d[schema::ENTERPRISE_SCHEMA];
        assert_eq!(ext["manager"], json!({"value": "mgr-1"}));
        assert_eq!(ext["employeeNumber"], "7");
        assert_eq!(d["roles"], json!([{"value": "admin", "primary": true}]));
        assert_eq!(d["displayName"], "Ann B");
        // A second Add on the same filter updates the element instead of adding another.
        run(
            &mut d,
            json!({"Operations": [{"op": "add", "path": "emails[type eq \"work\"].value", "value": "w2@b.c"}]}),
        );
        assert_eq!(d["emails"].as_array().unwrap().len(), 2);
        assert_eq!(d["emails"][1]["value"], "w2@b.c");
        run(
            &mut d,
            json!({"Operations": [{"op": "remove", "path": "emails[type eq \"work\"]"}]}),
        );
        assert_eq!(d["emails"].as_array().unwrap().len(), 1);
    }

    fn m(id: &str) -> NewMember {
        NewMember {
            id: id.into(),
            display: None,
        }
    }

    #[test]
    fn group_member_operations_in_order() {
        let mut g = json!({"displayName": "Eng"}).as_object().cloned().unwrap();
        let ops = parse_operations(&json!({"Operations": [
            {"op": "replace", "value": {"id": "g1", "displayName": "Engineering"}},
            {"op": "remove", "path": "members[value eq \"u1\"]"},
            {"op": "add", "path": "members", "value": [{"value": "u2"}, {"value": "u3"}]},
            {"op": "Remove", "path": "members", "value": [{"value": "u3"}]},
            {"op": "replace", "path": "members", "value": [{"value": "u4"}]},
        ]}))
        .unwrap();
        let changes = apply(Resource::Group, &mut g, &ops).unwrap();
        assert_eq!(g["displayName"], "Engineering");
        assert_eq!(
            changes,
            vec![
                MemberChange::Remove(vec!["u1".into()]),
                MemberChange::Add(vec![m("u2"), m("u3")]),
                MemberChange::Remove(vec!["u3".into()]),
                MemberChange::RemoveAll,
                MemberChange::Add(vec![m("u4")]),
            ]
        );
    }

    #[test]
    fn errors_are_scim_errors() {
        for bad in [
            json!({}),
            json!({"Operations": [{"op": "frobnicate", "path": "active", "value": true}]}),
            json!({"Operations": [{"op": "add", "path": "active"}]}),
            json!({"Operations": [{"op": "remove"}]}),
            json!({"Operations": [{"op": "add", "path": "emails[type eq", "value": "x"}]}),
        ] {
            assert!(parse_operations(&bad).is_err(), "{bad}");
        }
        let mut d = user();
        let ops = parse_operations(
            &json!({"Operations": [{"op": "add", "path": "noSuchAttr", "value": 1}]}),
        )
        .unwrap();
        assert!(apply(Resource::User, &mut d, &ops).is_err());
        let ops = parse_operations(
            &json!({"Operations": [{"op": "replace", "path": "active", "value": "perhaps"}]}),
        )
        .unwrap();
        assert!(apply(Resource::User, &mut d, &ops).is_err());
    }
}
