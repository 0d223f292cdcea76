//! Who did it and to what, in words: the audit log's actors (`user:<id>`, `admin:<id>`,
//! `saml:<connection>`, `scim-token:<id>`, `setup-link:<id>`, …) and each event's target
//! (the user, connection, group, domain or token it changed, from its kind and payload),
//! shown by name with a link to the object's page. Looked up for a whole page at once; an
//! object that is gone (or of another org) keeps its raw reference.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use serde_json::Value;

use crate::db::ids::OrgId;
use crate::db::schema::{connections, instance_admins, setup_links, user_groups, users};
use crate::db::DbConn;

/// A reference as shown: its name, a link when the object has a page.
#[derive(Clone)]
pub struct Named {
    pub text: String,
    pub href: Option<String>,
}

/// What an event acted on.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// An object by id (`user:<id>`, `connection:<id>`, `group:<id>`, `scim-token:<id>`,
    /// `setup-link:<id>`): shown by name.
    Ref(String),
    /// Words from the payload (a domain, a role, a user name a client sent): shown as they
    /// are, never looked up (a SCIM client could name a user `user:<someone's id>`).
    Text(String),
}

impl Target {
    fn as_ref_str(&self) -> Option<&str> {
        match self {
            Target::Ref(r) => Some(r),
            Target::Text(_) => None,
        }
    }
}

/// The references among `targets`, for [`names`].
pub fn refs(targets: &[Option<Target>]) -> impl Iterator<Item = &str> {
    targets.iter().flatten().filter_map(Target::as_ref_str)
}

/// `t` as shown.
pub fn show_target(names: &HashMap<String, Named>, t: &Target) -> Named {
    match t {
        Target::Ref(r) => show(names, r),
        Target::Text(text) => Named {
            text: text.clone(),
            href: None,
        },
    }
}

/// What an event acted on, from its kind and payload, if it says.
pub fn target(action: &str, payload: &Value) -> Option<Target> {
    target_text(action, payload).map(|(is_ref, t)| {
        if is_ref {
            Target::Ref(t)
        } else {
            Target::Text(t)
        }
    })
}

/// (whether it is a reference, the text).
fn target_text(action: &str, payload: &Value) -> Option<(bool, String)> {
    let s = |k: &str| payload.get(k).and_then(Value::as_str).map(str::to_string);
    if let Some(u) = s("user_id") {
        return Some((true, format!("user:{u}")));
    }
    if action == "scim.request" {
        // `/scim/v2/Users/<id>` (the query string left out).
        let path = s("path").unwrap_or_default();
        let path = path.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.split('/').collect();
        let at = parts
            .iter()
            .position(|p| *p == "Users" || *p == "Groups")
            .unwrap_or(parts.len());
        return match (parts.get(at).copied(), parts.get(at + 1).copied()) {
            (Some("Users"), Some(id)) if !id.is_empty() => Some((true, format!("user:{id}"))),
            (Some("Groups"), Some(id)) if !id.is_empty() => Some((true, format!("group:{id}"))),
            _ => payload
                .get("body")
                .and_then(|b| b.get("userName").or_else(|| b.get("displayName")))
                .and_then(Value::as_str)
                .map(|t| (false, t.to_string())),
        };
    }
    if let Some(c) = s("connection") {
        return Some((true, format!("connection:{c}")));
    }
    let id = s("id");
    let kind = |k: &str| action.contains(k);
    if kind("connection") {
        return id.map(|i| (true, format!("connection:{i}")));
    }
    if kind("scim_token") {
        return id.map(|i| (true, format!("scim-token:{i}")));
    }
    if kind("setup_link") {
        return id.map(|i| (true, format!("setup-link:{i}")));
    }
    if kind("domain") {
        return s("domain")
            .or_else(|| {
                payload
                    .pointer("/after/domain")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .map(|d| (false, d));
    }
    if kind("role") || kind("mapping") {
        let after = |k: &str| {
            payload
                .get("after")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        return s("role")
            .or_else(|| s("name"))
            .or_else(|| after("group").map(|g| format!("group {g}")))
            .or_else(|| after("name"))
            .map(|t| (false, t));
    }
    s("user_name").or_else(|| s("email")).map(|t| (false, t))
}

/// Names for the references `refs` (actors and targets) of one org's events.
pub fn names<'a>(
    conn: &mut DbConn,
    org: &OrgId,
    slug: &str,
    refs: impl IntoIterator<Item = &'a str>,
) -> QueryResult<HashMap<String, Named>> {
    let mut wanted: HashMap<&str, HashSet<&str>> = HashMap::new();
    for r in refs {
        if let Some((kind, id)) = r.split_once(':') {
            wanted.entry(kind).or_default().insert(id);
        }
    }
    let ids = |kind: &str| -> Vec<String> {
        wanted
            .get(kind)
            .map(|s| s.iter().map(|i| i.to_string()).collect())
            .unwrap_or_default()
    };
    let mut out = HashMap::new();
    let base = format!("/sso/admin/orgs/{slug}");
    let found: Vec<(String, String)> = users::table
        .filter(users::org_id.eq(org.as_str()))
        .filter(users::id.eq_any(ids("user")))
        .select((users::id, users::user_name))
        .load(conn)?;
    for (id, name) in found {
        out.insert(
            format!("user:{id}"),
            Named {
                text: name,
                href: Some(format!("{base}/users/{id}")),
            },
        );
    }
    let mut conn_ids = ids("connection");
    conn_ids.extend(ids("saml"));
    conn_ids.extend(ids("oidc"));
    let found: Vec<(String, String, String)> = connections::table
        .filter(connections::org_id.eq(org.as_str()))
        .filter(connections::id.eq_any(conn_ids))
        .select((connections::id, connections::kind, connections::name))
        .load(conn)?;
    for (id, kind, name) in found {
        let named = |text: String| Named {
            text,
            href: Some(format!("{base}/connections/{id}")),
        };
        out.insert(format!("connection:{id}"), named(name.clone()));
        // As an actor: the IdP speaking through the connection.
        out.insert(format!("{kind}:{id}"), named(format!("IdP via {name}")));
    }
    let found: Vec<(String, String)> = user_groups::table
        .filter(user_groups::org_id.eq(org.as_str()))
        .filter(user_groups::id.eq_any(ids("group")))
        .select((user_groups::id, user_groups::display_name))
        .load(conn)?;
    for (id, name) in found {
        out.insert(
            format!("group:{id}"),
            Named {
                text: format!("group {name}"),
                href: Some(format!("{base}/groups")),
            },
        );
    }
    let found: Vec<(String, String)> = instance_admins::table
        .filter(instance_admins::id.eq_any(ids("admin")))
        .select((instance_admins::id, instance_admins::email))
        .load(conn)?;
    for (id, email) in found {
        out.insert(
            format!("admin:{id}"),
            Named {
                text: format!("{email} (instance admin)"),
                href: None,
            },
        );
    }
    for id in ids("scim-token") {
        out.insert(
            format!("scim-token:{id}"),
            Named {
                text: format!("SCIM token {}", short(&id)),
                href: Some(format!("{base}/scim")),
            },
        );
    }
    let found: Vec<(String, String)> = setup_links::table
        .filter(setup_links::org_id.eq(org.as_str()))
        .filter(setup_links::id.eq_any(ids("setup-link")))
        .select((setup_links::id, setup_links::created_by))
        .load(conn)?;
    for (id, by) in found {
        out.insert(
            format!("setup-link:{id}"),
            Named {
                text: format!("setup link {} (made by {by})", short(&id)),
                href: Some(format!("{base}/setup")),
            },
        );
    }
    // Apps signing users in (the token endpoint's events). No link: an app's page is for
    // instance admins, and org admins read these pages too.
    let found: Vec<(String, String)> = crate::db::schema::oidc_apps::table
        .filter(crate::db::schema::oidc_apps::id.eq_any(ids("app")))
        .select((
            crate::db::schema::oidc_apps::id,
            crate::db::schema::oidc_apps::name,
        ))
        .load(conn)?;
    for (id, name) in found {
        out.insert(
            format!("app:{id}"),
            Named {
                text: format!("app {name}"),
                href: None,
            },
        );
    }
    Ok(out)
}

/// The first characters of an id: enough to tell tokens and links apart on a page.
fn short(id: &str) -> &str {
    let end = id.char_indices().nth(8).map(|(i, _)| i).unwrap_or(id.len());
    &id[..end]
}

/// `r` by name, or as itself when it names nothing known.
pub fn show(names: &HashMap<String, Named>, r: &str) -> Named {
    names.get(r).cloned().unwrap_or_else(|| Named {
        text: match r {
            "cli" => "gatehouse CLI".into(),
            "system" | "gatehouse" => "gatehouse".into(),
            _ => r.to_string(),
        },
        href: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_come_from_the_kind_and_payload() {
        assert_eq!(
            target("scim.request", &json!({"path": "/scim/v2/Users/u1?x=1"})),
            Some(Target::Ref("user:u1".into()))
        );
        assert_eq!(
            target(
                "scim.request",
                &json!({"path": "/Users", "body": {"userName": "user:someone-elses-id"}})
            ),
            Some(Target::Text("user:someone-elses-id".into())),
            "what a client names is words, never a reference"
        );
        assert_eq!(
            target("admin.connection.update", &json!({"id": "c1"})),
            Some(Target::Ref("connection:c1".into()))
        );
        assert_eq!(
            target(
                "admin.domain.add",
                &json!({"after": {"domain": "acme.test"}})
            ),
            Some(Target::Text("acme.test".into()))
        );
        assert_eq!(target("login.password", &json!({})), None);
    }
}
