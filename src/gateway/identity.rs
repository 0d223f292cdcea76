//! What the protected app receives: identity headers and a short-lived ES256 JWT signed with
//! the key from the database (`kid` = its id), verifiable with `/sso/.well-known/jwks.json`.
//! Header values are encoded so they cannot inject lines or split lists, and size-capped.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::EcKey;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::pkey::{PKey, Private};
use serde_json::{json, Value};

use crate::crypto::SecretKey;
use crate::identity::keys::SigningKey;

/// The identity JWT's lifetime.
pub const JWT_LIFETIME_SECS: i64 = 60;
/// Longest value of one identity header (a very long group list is cut at a whole group).
pub const MAX_HEADER_BYTES: usize = 4096;

/// The headers gatehouse sets; the same names arriving from a client are always removed.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-role",
    "x-gatehouse-org",
    "x-gatehouse-jwt",
];

/// Who the app is told is signed in.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_id: String,
    pub user_name: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub org: String,
    pub role: Option<String>,
    pub groups: Vec<String>,
}

fn private_key_cache() -> &'static Mutex<HashMap<String, PKey<Private>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, PKey<Private>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The unsealed private key of a signing key, cached in memory by key id.
pub(crate) fn private_key(k: &SigningKey, secret: &SecretKey) -> anyhow::Result<PKey<Private>> {
    if let Ok(map) = private_key_cache().lock() {
        if let Some(p) = map.get(k.id.as_str()) {
            return Ok(p.clone());
        }
    }
    let p = k.private_key(secret)?;
    if let Ok(mut map) = private_key_cache().lock() {
        map.insert(k.id.to_string(), p.clone());
    }
    Ok(p)
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fixed-width big-endian integer (JWS wants r and s as 32 bytes each for P-256).
pub(crate) fn fixed(n: &openssl::bn::BigNumRef, width: usize) -> anyhow::Result<Vec<u8>> {
    Ok(n.to_vec_padded(width as i32)?)
}

/// An ES256 JWT for `identity`, valid for [`JWT_LIFETIME_SECS`].
pub fn jwt(
    identity: &Identity,
    k: &SigningKey,
    secret: &SecretKey,
    issuer: &str,
    audience: &str,
    now: i64,
) -> anyhow::Result<String> {
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": k.id.to_string()});
    let claims = json!({
        "iss": issuer,
        "aud": audience,
        "sub": identity.user_id,
        "preferred_username": identity.user_name,
        "email": identity.email,
        "email_verified": identity.email_verified,
        "org": identity.org,
        "role": identity.role,
        "groups": identity.groups,
        "iat": now,
        "nbf": now - 5,
        "exp": now + JWT_LIFETIME_SECS,
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let pkey = private_key(k, secret)?;
    let ec = pkey.ec_key()?;
    let digest = hash(MessageDigest::sha256(), signing_input.as_bytes())?;
    let sig = EcdsaSig::sign(&digest, &ec)?;
    let mut raw = fixed(sig.r(), 32)?;
    raw.extend(fixed(sig.s(), 32)?);
    Ok(format!("{signing_input}.{}", b64(&raw)))
}

/// A public key as a JWK (EC P-256).
pub fn jwk(k: &SigningKey) -> anyhow::Result<Value> {
    if k.algorithm == "RS256" {
        let rsa = openssl::rsa::Rsa::public_key_from_pem(k.public_pem.as_bytes())?;
        return Ok(json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.id.to_string(),
            "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec()),
        }));
    }
    let ec = EcKey::public_key_from_pem(k.public_pem.as_bytes())?;
    let mut ctx = BigNumContext::new()?;
    let (mut x, mut y) = (BigNum::new()?, BigNum::new()?);
    ec.public_key()
        .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)?;
    Ok(json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": k.id.to_string(),
        "x": b64(&fixed(&x, 32)?), "y": b64(&fixed(&y, 32)?),
    }))
}

/// A header value that cannot break the header or the list it carries: printable ASCII kept,
/// anything else (and `%`, `,`) percent-encoded; capped at [`MAX_HEADER_BYTES`].
pub fn header_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'%' && b != b',' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.truncate(MAX_HEADER_BYTES);
    out
}

/// Groups as one comma-separated header value, each group encoded; whole groups only.
pub fn groups_value(groups: &[String]) -> String {
    let mut out = String::new();
    for g in groups {
        let v = header_value(g);
        if out.len() + v.len() + 1 > MAX_HEADER_BYTES {
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&v);
    }
    out
}

/// The identity headers (name, value) for the app: all six, empty when the user has no such
/// value (no role, no e-mail), so a proxy that copies them never leaves a client's own value
/// or its own placeholder text in place (Caddy 2.6 does the latter). `X-Forwarded-Email` is
/// empty unless the e-mail is verified (its domain is a verified domain of the user's org).
pub fn headers(identity: &Identity, jwt: &str) -> Vec<(&'static str, String)> {
    let optional = |v: &Option<String>| v.as_deref().map(header_value).unwrap_or_default();
    vec![
        ("x-forwarded-user", header_value(&identity.user_name)),
        // Only an address inside the user's org's verified domains is presented as theirs.
        (
            "x-forwarded-email",
            if identity.email_verified {
                optional(&identity.email)
            } else {
                String::new()
            },
        ),
        ("x-forwarded-groups", groups_value(&identity.groups)),
        ("x-forwarded-role", optional(&identity.role)),
        ("x-gatehouse-org", header_value(&identity.org)),
        ("x-gatehouse-jwt", jwt.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_cannot_inject_or_split() {
        assert_eq!(header_value("ann@acme.test"), "ann@acme.test");
        assert_eq!(header_value("a\r\nX-Evil: 1"), "a%0D%0AX-Evil: 1");
        assert_eq!(header_value("R&D, Europe"), "R&D%2C Europe");
        assert_eq!(header_value("Zoë"), "Zo%C3%AB");
        let many: Vec<String> = (0..2000).map(|i| format!("group-{i}")).collect();
        let v = groups_value(&many);
        assert!(v.len() <= MAX_HEADER_BYTES && v.ends_with(|c: char| c.is_ascii_digit()));
    }
}
