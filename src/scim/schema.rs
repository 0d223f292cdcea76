//! The attributes we publish and store (RFC 7643). One table drives `/Schemas`, the
//! normalisation of incoming documents (canonical names, string booleans, read-only and
//! unknown attributes dropped) and the flattening used by filters. Only attributes that
//! really round-trip are published.

use serde_json::{json, Map, Value};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    Complex,
    Reference,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadWrite,
    ReadOnly,
    Immutable,
}

#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub subs: &'static [Attr],
    pub canonical: &'static [&'static str],
}

const fn s(name: &'static str) -> Attr {
    Attr {
        name,
        kind: Kind::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        subs: &[],
        canonical: &[],
    }
}

const fn b(name: &'static str) -> Attr {
    Attr {
        kind: Kind::Boolean,
        ..s(name)
    }
}

const fn r(name: &'static str) -> Attr {
    Attr {
        kind: Kind::Reference,
        ..s(name)
    }
}

const fn complex(name: &'static str, subs: &'static [Attr]) -> Attr {
    Attr {
        kind: Kind::Complex,
        subs,
        ..s(name)
    }
}

const fn multi(name: &'static str, subs: &'static [Attr]) -> Attr {
    Attr {
        kind: Kind::Complex,
        multi: true,
        subs,
        ..s(name)
    }
}

const fn typed(types: &'static [&'static str]) -> Attr {
    Attr {
        canonical: types,
        ..s("type")
    }
}

const NAME_SUBS: &[Attr] = &[
    s("formatted"),
    s("familyName"),
    s("givenName"),
    s("middleName"),
    s("honorificPrefix"),
    s("honorificSuffix"),
];
const EMAIL_SUBS: &[Attr] = &[
    s("value"),
    s("display"),
    typed(&["work", "home", "other"]),
    b("primary"),
];
const PHONE_SUBS: &[Attr] = &[
    s("value"),
    s("display"),
    typed(&["work", "home", "mobile", "fax", "pager", "other"]),
    b("primary"),
];
const IM_SUBS: &[Attr] = &[
    s("value"),
    s("display"),
    typed(&["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]),
    b("primary"),
];
const PHOTO_SUBS: &[Attr] = &[
    r("value"),
    s("display"),
    typed(&["photo", "thumbnail"]),
    b("primary"),
];
const ADDRESS_SUBS: &[Attr] = &[
    s("formatted"),
    s("streetAddress"),
    s("locality"),
    s("region"),
    s("postalCode"),
    s("country"),
    typed(&["work", "home", "other"]),
    b("primary"),
];
const VALUE_SUBS: &[Attr] = &[s("value"), s("display"), s("type"), b("primary")];
const GROUP_REF_SUBS: &[Attr] = &[
    Attr {
        mutability: Mutability::ReadOnly,
        ..s("value")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..r("$ref")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..s("display")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        canonical: &["direct", "indirect"],
        ..s("type")
    },
];

pub const USER_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        ..s("userName")
    },
    complex("name", NAME_SUBS),
    s("displayName"),
    s("nickName"),
    r("profileUrl"),
    s("title"),
    s("userType"),
    s("preferredLanguage"),
    s("locale"),
    s("timezone"),
    b("active"),
    multi("emails", EMAIL_SUBS),
    multi("phoneNumbers", PHONE_SUBS),
    multi("ims", IM_SUBS),
    multi("photos", PHOTO_SUBS),
    multi("addresses", ADDRESS_SUBS),
    Attr {
        mutability: Mutability::ReadOnly,
        ..multi("groups", GROUP_REF_SUBS)
    },
    multi("entitlements", VALUE_SUBS),
    multi("roles", VALUE_SUBS),
];

const MANAGER_SUBS: &[Attr] = &[
    s("value"),
    r("$ref"),
    Attr {
        mutability: Mutability::ReadOnly,
        ..s("displayName")
    },
];

pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber"),
    s("costCenter"),
    s("organization"),
    s("division"),
    s("department"),
    complex("manager", MANAGER_SUBS),
];

const MEMBER_SUBS: &[Attr] = &[
    Attr {
        mutability: Mutability::Immutable,
        ..s("value")
    },
    Attr {
        mutability: Mutability::Immutable,
        ..r("$ref")
    },
    Attr {
        mutability: Mutability::Immutable,
        ..s("display")
    },
    Attr {
        mutability: Mutability::Immutable,
        canonical: &["User"],
        ..s("type")
    },
];

pub const GROUP_ATTRS: &[Attr] = &[
    Attr {
        required: true,
        ..s("displayName")
    },
    multi("members", MEMBER_SUBS),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    Group,
}

impl Resource {
    pub fn core_schema(self) -> &'static str {
        match self {
            Resource::User => USER_SCHEMA,
            Resource::Group => GROUP_SCHEMA,
        }
    }
    pub fn attrs(self) -> &'static [Attr] {
        match self {
            Resource::User => USER_ATTRS,
            Resource::Group => GROUP_ATTRS,
        }
    }
    pub fn extension(self) -> Option<(&'static str, &'static [Attr])> {
        match self {
            Resource::User => Some((ENTERPRISE_SCHEMA, ENTERPRISE_ATTRS)),
            Resource::Group => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Resource::User => "User",
            Resource::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            Resource::User => "/Users",
            Resource::Group => "/Groups",
        }
    }
}

/// `externalId` is a common attribute of every resource (RFC 7643 §3.1), not in a schema.
pub const EXTERNAL_ID: Attr = Attr {
    case_exact: true,
    ..s("externalId")
};

/// A top-level attribute of the resource, `externalId` included.
pub fn find_top(resource: Resource, name: &str) -> Option<&'static Attr> {
    if name.eq_ignore_ascii_case("externalId") {
        return Some(&EXTERNAL_ID);
    }
    find(resource.attrs(), name)
}

pub fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Coerces a value to the attribute's type: Entra's `"True"`/`"False"` become booleans.
/// Control characters other than tab and line breaks (a formatted address has those). A NUL
/// cannot be stored by PostgreSQL, and none of them belongs in a directory attribute.
pub fn has_control(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

fn coerce(attr: &Attr, value: &Value) -> Result<Option<Value>, String> {
    match (attr.kind, value) {
        (_, Value::Null) => Ok(None),
        (Kind::Boolean, Value::Bool(_)) => Ok(Some(value.clone())),
        (Kind::Boolean, Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" => Ok(Some(Value::Bool(true))),
            "false" => Ok(Some(Value::Bool(false))),
            _ => Err(format!("`{}` must be a boolean", attr.name)),
        },
        (Kind::Boolean, _) => Err(format!("`{}` must be a boolean", attr.name)),
        (Kind::String | Kind::Reference, Value::String(s)) if has_control(s) => Err(format!(
            "`{}` must not contain control characters",
            attr.name
        )),
        (Kind::String | Kind::Reference, Value::String(_)) => Ok(Some(value.clone())),
        (Kind::String | Kind::Reference, Value::Number(n)) => {
            Ok(Some(Value::String(n.to_string())))
        }
        (Kind::String | Kind::Reference, Value::Bool(b)) => Ok(Some(Value::String(b.to_string()))),
        (Kind::String | Kind::Reference, _) => Err(format!("`{}` must be a string", attr.name)),
        (Kind::Complex, Value::Object(map)) => {
            let out = normalize_object(attr.subs, map, false)?;
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        (Kind::Complex, _) => Err(format!("`{}` must be an object", attr.name)),
    }
}

/// Normalises a single attribute's value (multi-valued ones always become arrays).
pub fn normalize_value(attr: &Attr, value: &Value) -> Result<Option<Value>, String> {
    if attr.multi {
        let items: Vec<Value> = match value {
            Value::Null => return Ok(None),
            Value::Array(items) => items.clone(),
            single => vec![single.clone()],
        };
        let mut out = Vec::new();
        for item in &items {
            let one = Attr {
                multi: false,
                ..clone_attr(attr)
            };
            if let Some(v) = coerce(&one, item)? {
                out.push(v);
            }
        }
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    coerce(attr, value)
}

fn clone_attr(a: &Attr) -> Attr {
    Attr {
        name: a.name,
        kind: a.kind,
        multi: a.multi,
        required: a.required,
        case_exact: a.case_exact,
        mutability: a.mutability,
        subs: a.subs,
        canonical: a.canonical,
    }
}

/// Keeps known attributes under their canonical names; drops unknown and read-only ones.
pub fn normalize_object(
    attrs: &[Attr],
    map: &Map<String, Value>,
    keep_read_only: bool,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (key, value) in map {
        let Some(attr) = find(attrs, key) else {
            continue;
        };
        if attr.mutability == Mutability::ReadOnly && !keep_read_only {
            continue;
        }
        if let Some(v) = normalize_value(attr, value)? {
            out.insert(attr.name.to_string(), v);
        }
    }
    Ok(out)
}

/// A whole resource as sent by a client: core attributes, the extension object, and
/// extension attributes given as full URN keys. Server-managed keys (`id`, `meta`,
/// `schemas`) and passwords are dropped.
pub fn normalize_resource(resource: Resource, body: &Value) -> Result<Map<String, Value>, String> {
    let Value::Object(map) = body else {
        return Err("the request body must be a JSON object".into());
    };
    let mut out = normalize_object(resource.attrs(), map, false)?;
    if let Some((_, v)) = map
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("externalId"))
    {
        if let Some(v) = normalize_value(&EXTERNAL_ID, v)? {
            out.insert("externalId".into(), v);
        }
    }
    if let Some((urn, ext_attrs)) = resource.extension() {
        let mut ext = Map::new();
        for (key, value) in map {
            if key.eq_ignore_ascii_case(urn) {
                if let Value::Object(obj) = value {
                    ext.extend(normalize_object(ext_attrs, obj, false)?);
                }
            } else if key.len() > urn.len() + 1
                && key[..urn.len()].eq_ignore_ascii_case(urn)
                && key.as_bytes()[urn.len()] == b':'
            {
                let name = &key[urn.len() + 1..];
                if let Some(attr) = find(ext_attrs, name) {
                    if let Some(v) = normalize_value(attr, value)? {
                        ext.insert(attr.name.to_string(), v);
                    }
                }
            }
        }
        if !ext.is_empty() {
            out.insert(urn.to_string(), Value::Object(ext));
        }
    }
    Ok(out)
}

fn attr_json(a: &Attr) -> Value {
    let kind = match a.kind {
        Kind::String => "string",
        Kind::Boolean => "boolean",
        Kind::Complex => "complex",
        Kind::Reference => "reference",
    };
    let mutability = match a.mutability {
        Mutability::ReadWrite => "readWrite",
        Mutability::ReadOnly => "readOnly",
        Mutability::Immutable => "immutable",
    };
    let mut v = json!({
        "name": a.name,
        "type": kind,
        "multiValued": a.multi,
        "description": a.name,
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": if a.name == "userName" { "server" } else { "none" },
    });
    if a.kind == Kind::Reference {
        v["referenceTypes"] = json!(match a.name {
            "$ref" => vec!["User", "Group"],
            _ => vec!["external"],
        });
    }
    if !a.canonical.is_empty() {
        v["canonicalValues"] = json!(a.canonical);
    }
    if !a.subs.is_empty() {
        v["subAttributes"] = Value::Array(a.subs.iter().map(attr_json).collect());
    }
    v
}

pub fn schema_json(id: &str, name: &str, attrs: &[Attr], location: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": match name {
            "User" => "User Account",
            "EnterpriseUser" => "Enterprise User",
            other => other,
        },
        "attributes": attrs.iter().map(attr_json).collect::<Vec<_>>(),
        "meta": {"resourceType": "Schema", "location": location},
    })
}

pub fn all_schemas(base: &str) -> Vec<Value> {
    vec![
        schema_json(
            USER_SCHEMA,
            "User",
            USER_ATTRS,
            &format!("{base}/Schemas/{USER_SCHEMA}"),
        ),
        schema_json(
            GROUP_SCHEMA,
            "Group",
            GROUP_ATTRS,
            &format!("{base}/Schemas/{GROUP_SCHEMA}"),
        ),
        schema_json(
            ENTERPRISE_SCHEMA,
            "EnterpriseUser",
            ENTERPRISE_ATTRS,
            &format!("{base}/Schemas/{ENTERPRISE_SCHEMA}"),
        ),
    ]
}

pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User", "name": "User", "endpoint": "/Users", "description": "User accounts",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE_SCHEMA, "required": false}],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group", "name": "Group", "endpoint": "/Groups", "description": "Groups",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group")},
        }),
    ]
}

pub fn service_provider_config(base: &str, max_filter_results: usize, max_payload: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
        "patch": {"supported": true},
        "bulk": {"supported": true, "maxOperations": super::bulk::MAX_OPERATIONS, "maxPayloadSize": max_payload},
        "filter": {"supported": true, "maxResults": max_filter_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A SCIM token issued by gatehouse for one organization",
            "specUri": "https://datatracker.ietf.org/doc/html/rfc6750",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_fixes_case_booleans_and_drops_what_we_do_not_keep() {
        let body = json!({
            "schemas": [USER_SCHEMA],
            "UserName": "a@b.c",
            "Active": "True",
            "password": "hunter2",
            "groups": [{"value": "x"}],
            "unknownThing": 1,
            "emails": {"Value": "a@b.c", "Primary": "false"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": 42,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "R&D", "manager": {"value": "m1", "displayName": "x"}},
            "name": {"givenName": null, "familyName": "Doe"},
        });
        let n = normalize_resource(Resource::User, &body).unwrap();
        assert_eq!(n["userName"], "a@b.c");
        assert_eq!(n["active"], true);
        assert!(!n.contains_key("password"));
        assert!(!n.contains_key("groups"));
        assert!(!n.contains_key("unknownThing"));
        assert_eq!(n["emails"], json!([{"value": "a@b.c", "primary": false}]));
        assert_eq!(n["name"], json!({"familyName": "Doe"}));
        let ext = &n[ENTERPRISE_SCHEMA];
        assert_eq!(ext["employeeNumber"], "42");
        assert_eq!(ext["department"], "R&D");
        assert_eq!(ext["manager"], json!({"value": "m1"}));
        assert!(normalize_resource(Resource::User, &json!({"active": "maybe"})).is_err());
    }
}
