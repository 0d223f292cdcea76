//! The OpenID Provider's JWTs: ID tokens, RFC 9068 access tokens and back-channel logout
//! tokens, signed RS256 (RSA-2048) or ES256 (P-256) with the database keys whose `kid` the
//! JWKS publishes. Verification here is for gatehouse's own tokens only (access tokens at
//! `userinfo`, `id_token_hint` at logout): the algorithm must be one of the two and match the
//! key named by `kid`; `none`, HS256 and anything else are refused before any key is touched.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::{hash, MessageDigest};
use openssl::pkey::{PKey, Public};
use openssl::sign::{Signer, Verifier};
use serde_json::{json, Value};

use crate::crypto::SecretKey;
use crate::db::DbConn;
use crate::gateway::identity::{b64, fixed, private_key};
use crate::identity::keys::{self, Purpose, SigningKey};

/// How long a replica reuses the published keys it read (a key made by `keys rotate` on
/// another replica is read at once when a token names it).
const KEYRING_TTL: Duration = Duration::from_secs(5);

struct Keyring {
    read_at: Instant,
    /// Current key first, per algorithm.
    keys: Vec<SigningKey>,
}

fn keyring() -> &'static Mutex<Option<Keyring>> {
    static RING: OnceLock<Mutex<Option<Keyring>>> = OnceLock::new();
    RING.get_or_init(Default::default)
}

fn public_keys() -> &'static Mutex<HashMap<String, PKey<Public>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, PKey<Public>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn load_keys(conn: &mut DbConn, now: i64) -> crate::identity::Result<Vec<SigningKey>> {
    let mut all = keys::published(conn, Purpose::OidcRs256, now)?;
    all.extend(keys::published(conn, Purpose::OidcEs256, now)?);
    if let Ok(mut ring) = keyring().lock() {
        *ring = Some(Keyring {
            read_at: Instant::now(),
            keys: all.clone(),
        });
    }
    Ok(all)
}

/// The published OpenID Provider keys (current first per algorithm), at most
/// [`KEYRING_TTL`] old; `fresh` reads them again.
pub fn published(
    conn: &mut DbConn,
    now: i64,
    fresh: bool,
) -> crate::identity::Result<Vec<SigningKey>> {
    if !fresh {
        if let Ok(ring) = keyring().lock() {
            if let Some(r) = ring.as_ref().filter(|r| r.read_at.elapsed() < KEYRING_TTL) {
                return Ok(r.keys.clone());
            }
        }
    }
    load_keys(conn, now)
}

/// The key that signs for `alg` now.
pub fn signing_key(
    conn: &mut DbConn,
    alg: &str,
    now: i64,
) -> crate::identity::Result<Option<SigningKey>> {
    let current = |keys: Vec<SigningKey>| {
        keys.into_iter()
            .find(|k| k.algorithm == alg && k.retired_at.is_none())
    };
    if let Some(k) = current(published(conn, now, false)?) {
        return Ok(Some(k));
    }
    Ok(current(published(conn, now, true)?))
}

/// Signs `claims` as a compact JWS with `typ` (`JWT`, `at+jwt`, `logout+jwt`).
pub fn sign(
    claims: &Value,
    typ: &str,
    key: &SigningKey,
    secret: &SecretKey,
) -> anyhow::Result<String> {
    let header = json!({"alg": key.algorithm, "typ": typ, "kid": key.id.to_string()});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let pkey = private_key(key, secret)?;
    let signature = match key.algorithm.as_str() {
        "RS256" => {
            let mut signer = Signer::new(MessageDigest::sha256(), &pkey)?;
            signer.update(input.as_bytes())?;
            signer.sign_to_vec()?
        }
        "ES256" => {
            let digest = hash(MessageDigest::sha256(), input.as_bytes())?;
            let sig = EcdsaSig::sign(&digest, &*pkey.ec_key()?)?;
            let mut raw = fixed(sig.r(), 32)?;
            raw.extend(fixed(sig.s(), 32)?);
            raw
        }
        other => anyhow::bail!("no signer for {other}"),
    };
    Ok(format!("{input}.{}", b64(&signature)))
}

/// `at_hash`: the left half of the access token's SHA-256, base64url (both algorithms here
/// hash with SHA-256).
pub fn at_hash(access_token: &str) -> String {
    let digest = openssl::sha::sha256(access_token.as_bytes());
    b64(&digest[..16])
}

/// Why a token was not accepted (said to the log and the audit, never to a stranger).
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("not a compact JWS")]
    Malformed,
    #[error("algorithm `{0}` is not accepted")]
    Algorithm(String),
    #[error("signed by an unknown key")]
    UnknownKey,
    #[error("the signature does not verify")]
    Signature,
    #[error("the token is of another type")]
    Type,
    #[error("the token has expired")]
    Expired,
    #[error("the token is from another issuer")]
    Issuer,
    #[error("{0}")]
    Keys(String),
}

fn public_key(k: &SigningKey) -> Option<PKey<Public>> {
    if let Ok(map) = public_keys().lock() {
        if let Some(p) = map.get(k.id.as_str()) {
            return Some(p.clone());
        }
    }
    let p = PKey::public_key_from_pem(k.public_pem.as_bytes()).ok()?;
    if let Ok(mut map) = public_keys().lock() {
        map.insert(k.id.to_string(), p.clone());
    }
    Some(p)
}

/// Verifies one of gatehouse's own tokens: signature by a published key (the `kid`'s, with its
/// own algorithm), `typ` as given, `iss` = `issuer`, and unless `allow_expired`, `exp` in the
/// future. Returns the claims.
pub fn verify(
    conn: &mut DbConn,
    token: &str,
    typ: &str,
    issuer: &str,
    now: i64,
    allow_expired: bool,
) -> Result<Value, Invalid> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid::Malformed);
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| Invalid::Malformed);
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|_| Invalid::Malformed)?;
    let alg = header["alg"].as_str().unwrap_or_default().to_string();
    if alg != "RS256" && alg != "ES256" {
        return Err(Invalid::Algorithm(alg));
    }
    if !header["typ"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case(typ))
    {
        return Err(Invalid::Type);
    }
    let kid = header["kid"].as_str().ok_or(Invalid::UnknownKey)?;
    let find = |fresh: bool, conn: &mut DbConn| -> Result<Option<SigningKey>, Invalid> {
        Ok(published(conn, now, fresh)
            .map_err(|e| Invalid::Keys(e.to_string()))?
            .into_iter()
            .find(|k| k.id.as_str() == kid))
    };
    let key = match find(false, conn)? {
        Some(k) => k,
        None => find(true, conn)?.ok_or(Invalid::UnknownKey)?,
    };
    if key.algorithm != alg {
        return Err(Invalid::Algorithm(alg));
    }
    let pkey = public_key(&key).ok_or(Invalid::UnknownKey)?;
    let sig = decode(s)?;
    let input = format!("{h}.{c}");
    let ok = match alg.as_str() {
        "RS256" => Verifier::new(MessageDigest::sha256(), &pkey)
            .and_then(|mut v| {
                v.update(input.as_bytes())?;
                v.verify(&sig)
            })
            .unwrap_or(false),
        _ => {
            if sig.len() != 64 {
                return Err(Invalid::Signature);
            }
            let parsed = openssl::bn::BigNum::from_slice(&sig[..32])
                .and_then(|r| Ok((r, openssl::bn::BigNum::from_slice(&sig[32..])?)))
                .and_then(|(r, s)| EcdsaSig::from_private_components(r, s));
            match (
                parsed,
                pkey.ec_key(),
                hash(MessageDigest::sha256(), input.as_bytes()),
            ) {
                (Ok(sig), Ok(ec), Ok(digest)) => sig.verify(&digest, &ec).unwrap_or(false),
                _ => false,
            }
        }
    };
    if !ok {
        return Err(Invalid::Signature);
    }
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|_| Invalid::Malformed)?;
    if claims["iss"].as_str() != Some(issuer) {
        return Err(Invalid::Issuer);
    }
    if !allow_expired && claims["exp"].as_i64().is_none_or(|exp| now >= exp) {
        return Err(Invalid::Expired);
    }
    Ok(claims)
}
