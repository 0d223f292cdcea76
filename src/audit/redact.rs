//! Removes secrets from audit payloads before they are stored or logged.

use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

/// Key names (compared lower-case, ignoring `_` and `-`) whose values are always secret.
const SECRET_SUBSTRINGS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "privatekey",
    "authorization",
    "cookie",
    "samlresponse",
    "totp",
    "otp",
    "assertion_raw",
];
/// Exact key names that are secret (too short to match as substrings safely).
const SECRET_EXACT: &[&str] = &["code", "pin", "key", "sessionid"];

fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_EXACT.contains(&k.as_str()) || SECRET_SUBSTRINGS.iter().any(|s| k.contains(s))
}

/// Whether a SCIM PATCH `path` names a secret attribute (`password`, in any case, with or
/// without a schema URN, with or without a sub-attribute or value filter). The filter is cut
/// off first (its text may hold anything, `:` included).
fn is_secret_path(path: &str) -> bool {
    let head = path.split('[').next().unwrap_or(path).trim();
    let attr = head.rsplit(':').next().unwrap_or(head);
    let attr = attr.split('.').next().unwrap_or(attr).trim();
    is_secret_key(attr)
}

/// Redacts by meaning, not only by key: a secret key's value, and the `value` of any object
/// whose `path` names a secret attribute (a SCIM PATCH operation, also inside Bulk `data`).
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            // A path that is not a plain string cannot be read: its value is kept out too.
            let secret_path = map.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case("path")
                    && match v {
                        Value::String(p) => is_secret_path(p),
                        Value::Null => false,
                        _ => true,
                    }
            });
            Value::Object(
                map.iter()
                    .map(|(k, v)| {
                        let secret =
                            is_secret_key(k) || (secret_path && k.eq_ignore_ascii_case("value"));
                        if secret && !v.is_null() {
                            (k.clone(), Value::String(REDACTED.into()))
                        } else {
                            (k.clone(), redact(v))
                        }
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let v = json!({
            "userName": "alice",
            "password": "hunter2",
            "nested": {"client_secret": "s", "ID-Token": "eyJ", "code": "abc", "postal_code": "1000"},
            "list": [{"accessToken": "t"}, {"totp": "123456"}],
            "SAMLResponse": "PHNhbWw+"
        });
        let r = redact(&v);
        let text = r.to_string();
        for secret in [
            "hunter2", "\"s\"", "eyJ", "abc", "\"t\"", "123456", "PHNhbWw+",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(r["userName"], "alice");
        // By meaning: PATCH operations that set a password, however the path is spelled.
        let ops = json!({"Operations": [
            {"op": "replace", "path": "password", "value": "p1"},
            {"op": "Replace", "path": "PASSWORD", "value": "p2"},
            {"op": "add", "path": "urn:ietf:params:scim:schemas:core:2.0:User:password", "value": "p3"},
            {"op": "replace", "value": {"password": "p4"}},
            {"op": "replace", "path": "name.givenName", "value": "Ann"}
        ,
            {"op": "replace", "path": "password[value eq \"a:b\"]", "value": "p6"},
            {"op": "replace", "path": ["password"], "value": "p7"},
            {"op": "replace", "path": "emails[type eq \"work\" or value eq \":password\"].value", "value": "new@acme.test"}
        ], "Bulk": {"data": {"Operations": [{"op": "replace", "path": "password", "value": "p5"}]}}});
        let text = redact(&ops).to_string();
        for secret in ["p1", "p2", "p3", "p4", "p5", "p6", "p7"] {
            assert!(
                !text.contains(&format!("\"{secret}\"")),
                "{secret} leaked: {text}"
            );
        }
        assert!(text.contains("\"Ann\""), "{text}");
        assert!(
            text.contains("new@acme.test"),
            "a real change is not hidden: {text}"
        );
        assert_eq!(r["nested"]["postal_code"], "1000");
    }
}
