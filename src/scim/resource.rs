//! Stored documents ↔ SCIM representations: the columns a document projects into, the
//! attribute rows filters search, the JSON a client receives (with `meta`), and the
//! `attributes` / `excludedAttributes` projection.

use serde_json::{json, Map, Value};

use super::schema::{self, Resource, ENTERPRISE_SCHEMA};
use crate::clock::rfc3339;
use crate::identity::users::User;

/// The indexed columns of a user, derived from its document.
#[derive(Debug, Clone)]
pub struct UserColumns {
    pub user_name: String,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
}

fn str_at<'v>(v: &'v Value, keys: &[&str]) -> Option<&'v str> {
    let mut cur = v;
    for k in keys {
        cur = cur.get(*k)?;
    }
    cur.as_str()
}

pub fn user_columns(doc: &Map<String, Value>) -> Result<UserColumns, String> {
    let v = Value::Object(doc.clone());
    let user_name = str_at(&v, &["userName"])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("userName is required")?
        .to_string();
    let emails = doc.get("emails").and_then(Value::as_array);
    let pick = |pred: &dyn Fn(&Value) -> bool| {
        emails.and_then(|e| {
            e.iter()
                .find(|x| pred(x))
                .and_then(|x| x.get("value"))
                .and_then(Value::as_str)
        })
    };
    let email = pick(&|x| x.get("primary") == Some(&Value::Bool(true)))
        .or_else(|| pick(&|x| x.get("type").and_then(Value::as_str) == Some("work")))
        .or_else(|| pick(&|_| true))
        .map(str::to_string);
    Ok(UserColumns {
        user_name,
        external_id: str_at(&v, &["externalId"]).map(str::to_string),
        email,
        given_name: str_at(&v, &["name", "givenName"]).map(str::to_string),
        family_name: str_at(&v, &["name", "familyName"]).map(str::to_string),
        display_name: str_at(&v, &["displayName"]).map(str::to_string),
        active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
    })
}

/// The SCIM `roles` value that names an app role: the primary one, else the first.
pub fn requested_role(doc: &Map<String, Value>) -> Option<String> {
    let roles = doc.get("roles")?.as_array()?;
    roles
        .iter()
        .find(|r| r.get("primary") == Some(&Value::Bool(true)))
        .or_else(|| roles.first())
        .and_then(|r| r.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// One searchable value: (root, path, element key, value).
pub struct AttrRow {
    pub root: String,
    pub path: String,
    pub ekey: String,
    pub value: String,
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Core attributes that filters always read from the `users` columns (see `query::user_column`)
/// or never search (`schemas`): no rows for them, which saves a random-page index insert per
/// create (userName) and three rows of every user.
const COLUMN_ROOTS: &[&str] = &["schemas", "id", "meta", "username", "externalid", "active"];

/// Flattens a user document into searchable rows for the attributes filters read from the
/// side table (everything but [`COLUMN_ROOTS`]).
pub fn attr_rows(user_id: &str, doc: &Map<String, Value>) -> Vec<AttrRow> {
    let mut rows = Vec::new();
    let mut push_value = |root: &str, path: String, elem: usize, v: &Value| {
        if let Some(text) = scalar_text(v) {
            rows.push(AttrRow {
                root: root.to_string(),
                path,
                ekey: format!("{user_id}:{root}:{elem}"),
                value: text,
            });
        }
    };
    let walk = |prefix: &str,
                map: &Map<String, Value>,
                push: &mut dyn FnMut(&str, String, usize, &Value)| {
        for (k, v) in map {
            if k.starts_with("urn:") {
                continue;
            }
            let root = format!("{prefix}{}", k.to_ascii_lowercase());
            if prefix.is_empty() && COLUMN_ROOTS.contains(&root.as_str()) {
                continue;
            }
            match v {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        match item {
                            Value::Object(o) => {
                                for (sk, sv) in o {
                                    push(
                                        &root,
                                        format!("{root}.{}", sk.to_ascii_lowercase()),
                                        i,
                                        sv,
                                    );
                                }
                            }
                            scalar => push(&root, format!("{root}.value"), i, scalar),
                        }
                    }
                }
                Value::Object(o) => {
                    for (sk, sv) in o {
                        push(&root, format!("{root}.{}", sk.to_ascii_lowercase()), 0, sv);
                    }
                }
                scalar => push(&root, root.clone(), 0, scalar),
            }
        }
    };
    walk("", doc, &mut push_value);
    if let Some(Value::Object(ext)) = doc.get(ENTERPRISE_SCHEMA) {
        let prefix = format!("{}:", ENTERPRISE_SCHEMA.to_ascii_lowercase());
        walk(&prefix, ext, &mut push_value);
    }
    rows
}

/// The stored document of a user; users made outside SCIM get one from their columns.
pub fn user_doc(user: &User) -> Map<String, Value> {
    if let Some(doc) = user
        .scim_json
        .as_deref()
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
    {
        return doc;
    }
    let mut doc = Map::new();
    doc.insert("userName".into(), json!(user.user_name));
    if let Some(e) = &user.external_id {
        doc.insert("externalId".into(), json!(e));
    }
    let mut name = Map::new();
    if let Some(g) = &user.given_name {
        name.insert("givenName".into(), json!(g));
    }
    if let Some(f) = &user.family_name {
        name.insert("familyName".into(), json!(f));
    }
    if !name.is_empty() {
        doc.insert("name".into(), Value::Object(name));
    }
    if let Some(d) = &user.display_name {
        doc.insert("displayName".into(), json!(d));
    }
    if let Some(e) = &user.email {
        doc.insert("emails".into(), json!([{"value": e, "primary": true}]));
    }
    doc.insert("active".into(), json!(user.active));
    doc
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn meta(
    resource: Resource,
    base: &str,
    id: &str,
    created: i64,
    updated: i64,
    version: i64,
) -> Value {
    json!({
        "resourceType": resource.name(),
        "created": rfc3339(created),
        "lastModified": rfc3339(updated),
        "location": format!("{base}{}/{id}", resource.endpoint()),
        "version": etag(version),
    })
}

/// A user as SCIM JSON; `groups` when loaded: (group id, displayName).
pub fn render_user(base: &str, user: &User, groups: Option<&[(String, String)]>) -> Value {
    let mut doc = user_doc(user);
    // The row is the truth for `active` (the document may have left it out: active).
    if doc.contains_key("active") || !user.active {
        doc.insert("active".into(), json!(user.active));
    }
    let mut schemas = vec![json!(schema::USER_SCHEMA)];
    if doc.contains_key(ENTERPRISE_SCHEMA) {
        schemas.push(json!(ENTERPRISE_SCHEMA));
    }
    let mut out = Map::new();
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), json!(user.id));
    out.extend(doc);
    if let Some(groups) = groups {
        if !groups.is_empty() {
            out.insert("groups".into(), user_groups(base, groups));
        }
    }
    out.insert("meta".into(), user_meta(base, user));
    Value::Object(out)
}

fn user_meta(base: &str, user: &User) -> Value {
    meta(
        Resource::User,
        base,
        user.id.as_str(),
        user.created_at,
        user.updated_at,
        user.version,
    )
}

/// A user's `groups` value: (group id, displayName).
fn user_groups(base: &str, groups: &[(String, String)]) -> Value {
    Value::Array(
        groups
            .iter()
            .map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("{base}/Groups/{id}"), "type": "direct"}))
            .collect(),
    )
}

/// The top-level members of a stored document, each value kept as its JSON text.
struct RawEntries<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawEntries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Entries<'a> {
            type Value = RawEntries<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some(entry) =
                    map.next_entry::<String, &'de serde_json::value::RawValue>()?
                {
                    out.push(entry);
                }
                Ok(RawEntries(out))
            }
        }
        d.deserialize_map(Entries(std::marker::PhantomData))
    }
}

/// Keys [`render_user`] sets itself: a stored document holding one (it never does when SCIM
/// wrote it) goes the general way.
const RENDERED_KEYS: &[&str] = &["schemas", "id", "groups", "meta"];

/// [`render_user`] as JSON text, byte for byte, without building the document as values: the
/// stored document's members are copied as text (it was written compactly by the same
/// serializer) and only `schemas`, `id`, `active`, `groups` and `meta` are written here. For
/// pages of users with no `attributes`/`excludedAttributes`, where building and serializing
/// values was most of a page's cost. `None` when the general way must be used.
pub fn render_user_text(
    base: &str,
    user: &User,
    groups: Option<&[(String, String)]>,
) -> Option<String> {
    let stored = user.scim_json.as_deref()?;
    let RawEntries(entries) = serde_json::from_str(stored).ok()?;
    for (i, (k, _)) in entries.iter().enumerate() {
        if RENDERED_KEYS.contains(&k.as_str()) || entries[..i].iter().any(|(p, _)| p == k) {
            return None;
        }
    }
    let key = |out: &mut String, k: &str| {
        out.push_str(&Value::String(k.to_string()).to_string());
        out.push(':');
    };
    let mut out = String::with_capacity(stored.len() + 512);
    out.push_str(r#"{"schemas":["#);
    out.push_str(&Value::String(schema::USER_SCHEMA.into()).to_string());
    if entries.iter().any(|(k, _)| k == ENTERPRISE_SCHEMA) {
        out.push(',');
        out.push_str(&Value::String(ENTERPRISE_SCHEMA.into()).to_string());
    }
    out.push_str(r#"],"id":"#);
    out.push_str(&Value::String(user.id.to_string()).to_string());
    let mut has_active = false;
    for (k, v) in &entries {
        out.push(',');
        key(&mut out, k);
        if k == "active" {
            // The row is the truth for `active`.
            has_active = true;
            out.push_str(if user.active { "true" } else { "false" });
        } else {
            out.push_str(v.get());
        }
    }
    if !has_active && !user.active {
        out.push_str(r#","active":false"#);
    }
    if let Some(groups) = groups.filter(|g| !g.is_empty()) {
        out.push(',');
        key(&mut out, "groups");
        out.push_str(&user_groups(base, groups).to_string());
    }
    out.push(',');
    key(&mut out, "meta");
    out.push_str(&user_meta(base, user).to_string());
    out.push('}');
    Some(out)
}

/// A group row as the SCIM layer sees it.
#[derive(Debug, Clone, diesel::Queryable, diesel::Selectable, diesel::QueryableByName)]
#[diesel(table_name = crate::db::schema::user_groups)]
pub struct GroupRow {
    pub id: String,
    pub org_id: String,
    pub display_name: String,
    pub display_name_folded: String,
    pub external_id: Option<String>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub scim_json: Option<String>,
}

/// A group as SCIM JSON; `members` when loaded: (user id, userName).
pub fn render_group(base: &str, g: &GroupRow, members: Option<&[(String, String)]>) -> Value {
    let mut out = Map::new();
    out.insert("schemas".into(), json!([schema::GROUP_SCHEMA]));
    out.insert("id".into(), json!(g.id));
    if let Some(doc) = g
        .scim_json
        .as_deref()
        .and_then(|t| serde_json::from_str::<Map<String, Value>>(t).ok())
    {
        out.extend(doc);
    }
    out.insert("displayName".into(), json!(g.display_name));
    if let Some(e) = &g.external_id {
        out.insert("externalId".into(), json!(e));
    }
    if let Some(members) = members {
        out.insert(
            "members".into(),
            Value::Array(
                members
                    .iter()
                    .map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("{base}/Users/{id}"), "type": "User"}))
                    .collect(),
            ),
        );
    }
    out.insert(
        "meta".into(),
        meta(
            Resource::Group,
            base,
            &g.id,
            g.created_at,
            g.updated_at,
            g.version,
        ),
    );
    Value::Object(out)
}

/// `attributes` / `excludedAttributes` (comma-separated, case-insensitive, `urn:…:attr`
/// allowed). `id` and `schemas` are always returned.
#[derive(Debug, Default, Clone)]
pub struct Projection {
    include: Vec<String>,
    exclude: Vec<String>,
}

/// Attribute names; a value filter some clients put there (`emails[type eq "work"]`) is
/// read as its attribute.
fn split_list(list: Option<&str>) -> Vec<String> {
    list.map(|l| {
        l.split(',')
            .map(|s| {
                let s = s.trim().to_ascii_lowercase();
                match (s.find('['), s.rfind(']')) {
                    (Some(open), Some(close)) if close > open => {
                        format!("{}{}", &s[..open], &s[close + 1..])
                    }
                    _ => s,
                }
            })
            .filter(|s| !s.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

impl Projection {
    pub fn new(attributes: Option<&str>, excluded: Option<&str>) -> Projection {
        Projection {
            include: split_list(attributes),
            exclude: split_list(excluded),
        }
    }

    /// No `attributes` or `excludedAttributes`: resources are returned as rendered.
    pub fn is_default(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether `attr` (a top-level name) is wanted, so expensive ones need not be loaded.
    pub fn wants(&self, attr: &str) -> bool {
        let a = attr.to_ascii_lowercase();
        let named = |list: &[String]| {
            list.iter().any(|p| {
                let p = strip_core_urn(p);
                p == a || p.starts_with(&format!("{a}."))
            })
        };
        if !self.include.is_empty() {
            return named(&self.include);
        }
        !self.exclude.iter().any(|p| strip_core_urn(p) == a)
    }

    /// `wants(attr)`, and no sub-attribute of it is named (`members.value`): the attribute is
    /// returned whole.
    pub fn wants_whole(&self, attr: &str) -> bool {
        let sub = format!("{}.", attr.to_ascii_lowercase());
        self.wants(attr)
            && !self
                .include
                .iter()
                .chain(&self.exclude)
                .any(|p| strip_core_urn(p).starts_with(&sub))
    }

    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(map) = resource else {
            return resource;
        };
        if self.include.is_empty() && self.exclude.is_empty() {
            return Value::Object(map);
        }
        let mut out = Map::new();
        for (k, v) in map {
            let key = k.to_ascii_lowercase();
            if key == "id" || key == "schemas" {
                out.insert(k, v);
                continue;
            }
            if key.starts_with("urn:") {
                // An extension: filter its attributes.
                if let Value::Object(ext) = v {
                    let kept: Map<String, Value> = ext
                        .into_iter()
                        .filter(|(ek, _)| {
                            self.keep(&format!("{key}:{}", ek.to_ascii_lowercase()), Some(&key))
                        })
                        .collect();
                    if !kept.is_empty() {
                        out.insert(k, Value::Object(kept));
                    }
                }
                continue;
            }
            if !self.include.is_empty() {
                if self.include.iter().any(|p| strip_core_urn(p) == key) {
                    out.insert(k, v);
                } else {
                    let subs: Vec<String> = self
                        .include
                        .iter()
                        .filter_map(|p| {
                            strip_core_urn(p)
                                .strip_prefix(&format!("{key}."))
                                .map(str::to_string)
                        })
                        .collect();
                    if !subs.is_empty() {
                        out.insert(k, keep_subs(v, &subs));
                    }
                }
            } else if !self.exclude.iter().any(|p| strip_core_urn(p) == key) {
                out.insert(k, v);
            }
        }
        Value::Object(out)
    }

    fn keep(&self, full: &str, ext: Option<&str>) -> bool {
        if !self.include.is_empty() {
            return self.include.iter().any(|p| {
                p == full || Some(p.as_str()) == ext || full.starts_with(&format!("{p}."))
            });
        }
        !self.exclude.iter().any(|p| p == full)
    }
}

fn strip_core_urn(p: &str) -> &str {
    for urn in [schema::USER_SCHEMA, schema::GROUP_SCHEMA] {
        let lower = urn.to_ascii_lowercase();
        if let Some(rest) = p.strip_prefix(&lower) {
            if let Some(rest) = rest.strip_prefix(':') {
                return rest;
            }
        }
    }
    p
}

fn keep_subs(v: Value, subs: &[String]) -> Value {
    let filter_obj = |o: Map<String, Value>| -> Value {
        Value::Object(
            o.into_iter()
                .filter(|(k, _)| subs.contains(&k.to_ascii_lowercase()))
                .collect(),
        )
    };
    match v {
        Value::Object(o) => filter_obj(o),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| match i {
                    Value::Object(o) => filter_obj(o),
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_with(doc: Option<&str>, active: bool) -> User {
        User {
            id: crate::db::ids::UserId::from("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_string()),
            org_id: crate::db::ids::OrgId::from("org".to_string()),
            user_name: "ann@x.test".into(),
            user_name_folded: "ann@x.test".into(),
            external_id: None,
            email: None,
            email_folded: None,
            given_name: None,
            family_name: None,
            display_name: None,
            active,
            app_role: None,
            is_org_admin: false,
            is_break_glass: false,
            source: "scim".into(),
            password_hash: None,
            version: 3,
            created_at: 1_700_000_000,
            updated_at: 1_700_000_100,
            scim_json: doc.map(str::to_string),
            idp_groups: None,
        }
    }

    #[test]
    fn user_text_is_byte_for_byte_the_rendered_document() {
        let docs = [
            json!({"userName": "ann@x.test", "name": {"givenName": "Ann", "familyName": "Lee"},
                "emails": [{"value": "ann@x.test", "type": "work", "primary": true}], "active": true}),
            json!({"userName": "b", "active": false, "title": "Caf\u{e9} \u{1} \"q\" \\ \n\t</x>",
                "x-odd key": [1, 2.5, -3e-7, 18446744073709551615u64, null, {"a": []}]}),
            json!({"userName": "c", ENTERPRISE_SCHEMA: {"employeeNumber": "7", "manager": {"value": "m"}}}),
            json!({"userName": "d", "nickName": "\u{1F600} é ü"}),
            json!({}),
        ];
        let groups = [("g1".to_string(), "Eng \"core\"".to_string())];
        for doc in &docs {
            let text = doc.to_string();
            for active in [true, false] {
                for g in [None, Some(&[][..]), Some(&groups[..])] {
                    let u = user_with(Some(&text), active);
                    let expected = render_user("https://h/scim/v2", &u, g).to_string();
                    assert_eq!(
                        render_user_text("https://h/scim/v2", &u, g).as_deref(),
                        Some(expected.as_str()),
                        "{text} active={active}"
                    );
                }
            }
        }
        // Not applicable: the general way is used.
        for doc in [
            r#"{"id":"x"}"#,
            r#"{"meta":{}}"#,
            r#"{"a":1,"a":2}"#,
            "[1]",
            "not json",
        ] {
            assert_eq!(
                render_user_text("b", &user_with(Some(doc), true), None),
                None,
                "{doc}"
            );
        }
        assert_eq!(render_user_text("b", &user_with(None, true), None), None);
    }

    #[test]
    fn list_text_is_byte_for_byte_the_list_response() {
        let items = [json!({"id": "1", "a": [1, {"b": "c"}]}), json!({"id": "2"})];
        for n in [0, 1, 2] {
            let texts: Vec<String> = items[..n].iter().map(Value::to_string).collect();
            assert_eq!(
                crate::scim::list_text(12, 3, &texts),
                crate::scim::list_response(12, 3, items[..n].to_vec()).to_string()
            );
        }
    }

    #[test]
    fn projection_includes_and_excludes() {
        let v = json!({"schemas": ["s"], "id": "1", "userName": "a", "name": {"givenName": "A", "familyName": "B"}, "emails": [{"value": "x", "type": "work"}], "meta": {}});
        let p = Projection::new(Some("userName,name.givenName"), None);
        assert_eq!(
            p.apply(v.clone()),
            json!({"schemas": ["s"], "id": "1", "userName": "a", "name": {"givenName": "A"}})
        );
        let p = Projection::new(None, Some("emails,meta"));
        let out = p.apply(v);
        assert!(
            out.get("emails").is_none() && out.get("meta").is_none() && out.get("name").is_some()
        );
        assert!(!Projection::new(None, Some("members")).wants("members"));
        assert!(Projection::new(Some("members.value"), None).wants("members"));
        assert!(!Projection::new(Some("displayName"), None).wants("members"));
    }

    #[test]
    fn attribute_rows_cover_multi_valued_and_extension_values() {
        let doc = json!({"schemas": ["s"], "userName": "a", "externalId": "x", "active": true, "emails": [{"value": "A@X.com", "type": "work"}], "name": {"givenName": "Ann"},
            ENTERPRISE_SCHEMA: {"employeeNumber": "7", "manager": {"value": "m"}}});
        let rows = attr_rows("u1", doc.as_object().unwrap());
        let paths: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.path.as_str(), r.value.as_str()))
            .collect();
        assert!(paths.contains(&("emails.value", "A@X.com")));
        // Filters on these read the users' columns.
        assert!(!rows
            .iter()
            .any(|r| ["schemas", "username", "externalid", "active"].contains(&r.root.as_str())));
        assert!(paths.contains(&("emails.type", "work")));
        assert!(paths.contains(&("name.givenname", "Ann")));
        assert!(paths.contains(&(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:employeenumber",
            "7"
        )));
        assert!(paths.contains(&(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:manager.value",
            "m"
        )));
        let e: Vec<&str> = rows
            .iter()
            .filter(|r| r.root == "emails")
            .map(|r| r.ekey.as_str())
            .collect();
        assert!(e.iter().all(|k| *k == "u1:emails:0"));
    }
}
