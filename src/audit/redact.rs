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

pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    if is_secret_key(k) && !v.is_null() {
                        (k.clone(), Value::String(REDACTED.into()))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect(),
        ),
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
        assert_eq!(r["nested"]["postal_code"], "1000");
    }
}
