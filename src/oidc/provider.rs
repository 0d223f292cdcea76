//! The OpenID Provider as gatehouse sees it: discovery and JWKS (fetched through the guarded
//! outbound client, cached, fetched again on an unknown `kid`), the code exchange, ID token
//! verification (signature, `aud`, `exp`, nonce and algorithm by the openidconnect crate; `iss`,
//! the Entra tenant, `iat`, `at_hash` by us) and userinfo. Blocking: call off the workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use openidconnect::core::{CoreIdToken, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{
    AccessToken, AccessTokenHash, ClaimsVerificationError, ClientId, ClientSecret, IdTokenVerifier,
    IssuerUrl, Nonce, SignatureVerificationError,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::{OidcConfig, TENANT_PLACEHOLDER};
use crate::outbound::{self, OutboundError};

/// Discovery documents are fetched again after this long.
const DISCOVERY_TTL_SECS: i64 = 3600;
/// An unknown `kid` fetches the JWKS again, at most this often per connection.

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

pub struct Discovered {
    pub metadata: Metadata,
    pub jwks: CoreJsonWebKeySet,
    fetched_at: i64,
}

/// Why a sign-in failed, in words an admin can act on.
#[derive(Debug)]
pub struct Failure(pub String);

impl From<OutboundError> for Failure {
    fn from(e: OutboundError) -> Self {
        Failure(e.to_string())
    }
}

type Cache = Mutex<HashMap<String, Arc<Discovered>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn get_json<T: serde::de::DeserializeOwned>(
    url: &str,
    what: &str,
    allow_private: bool,
) -> Result<T, Failure> {
    let text = outbound::get_text(url, allow_private)?;
    serde_json::from_str(&text)
        .map_err(|e| Failure(format!("the {what} at {url} is unreadable: {e}")))
}

fn fetch(cfg: &OidcConfig, allow_private: bool, now: i64) -> Result<Discovered, Failure> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        cfg.issuer.trim_end_matches('/')
    );
    let metadata: Metadata = get_json(&url, "discovery document", allow_private)?;
    // The document must be the issuer's own (Entra's multi-tenant document names a template).
    let same = metadata.issuer.trim_end_matches('/') == cfg.issuer.trim_end_matches('/');
    let template = cfg.is_multi_tenant() && metadata.issuer.contains(TENANT_PLACEHOLDER);
    if !(same || template) {
        return Err(Failure(format!(
            "the discovery document at {url} names issuer {}, not {}",
            metadata.issuer, cfg.issuer
        )));
    }
    let jwks = get_json(&metadata.jwks_uri, "JWKS", allow_private)?;
    Ok(Discovered {
        metadata,
        jwks,
        fetched_at: now,
    })
}

/// Checks that an issuer can be discovered (a new connection's settings), without caching.
pub fn probe(cfg: &OidcConfig, allow_private: bool, now: i64) -> Result<(), Failure> {
    fetch(cfg, allow_private, now).map(|_| ())
}

/// The cached discovery of a connection (keyed by its id and settings).
pub fn discover(
    key: &str,
    cfg: &OidcConfig,
    allow_private: bool,
    now: i64,
) -> Result<Arc<Discovered>, Failure> {
    if let Ok(map) = cache().lock() {
        if let Some(d) = map.get(key) {
            if now - d.fetched_at < DISCOVERY_TTL_SECS {
                return Ok(d.clone());
            }
        }
    }
    let d = Arc::new(fetch(cfg, allow_private, now)?);
    if let Ok(mut map) = cache().lock() {
        map.insert(key.to_string(), d.clone());
    }
    Ok(d)
}

/// Fetches the JWKS again: an unknown `kid` means the IdP rotated its keys. Once per callback
/// at most, and a callback needs a code the IdP's own token endpoint answered, so this cannot
/// be driven by an attacker alone.
fn refetch_jwks(
    key: &str,
    d: &Discovered,
    allow_private: bool,
) -> Result<Arc<Discovered>, Failure> {
    let jwks = get_json(&d.metadata.jwks_uri, "JWKS", allow_private)?;
    let fresh = Arc::new(Discovered {
        metadata: d.metadata.clone(),
        jwks,
        fetched_at: d.fetched_at,
    });
    if let Ok(mut map) = cache().lock() {
        map.insert(key.to_string(), fresh.clone());
    }
    Ok(fresh)
}

/// One sign-in's view of its connection.
pub struct Rp<'a> {
    /// The discovery cache key.
    pub key: &'a str,
    pub cfg: &'a OidcConfig,
    pub secret: &'a str,
    pub redirect_uri: &'a str,
    pub allow_private: bool,
    pub now: i64,
}

pub type Claims = Map<String, Value>;

pub struct Tokens {
    id_token: String,
    access_token: Option<String>,
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The authorization code for tokens (client_secret_basic, or client_secret_post when that is
/// all the provider takes), with the PKCE verifier.
pub fn exchange(
    rp: &Rp<'_>,
    d: &Discovered,
    code: &str,
    verifier: &str,
) -> Result<Tokens, Failure> {
    let (cfg, secret) = (rp.cfg, rp.secret);
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", rp.redirect_uri),
        ("code_verifier", verifier),
    ];
    let mut headers = vec![
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    let post_only = d
        .metadata
        .token_endpoint_auth_methods_supported
        .as_ref()
        .is_some_and(|m| {
            !m.iter().any(|x| x == "client_secret_basic")
                && m.iter().any(|x| x == "client_secret_post")
        });
    if post_only {
        pairs.push(("client_id", &cfg.client_id));
        pairs.push(("client_secret", secret));
    } else {
        // RFC 6749 §2.3.1: both parts form-encoded before base64.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = STANDARD.encode(format!("{}:{}", enc(&cfg.client_id), enc(secret)));
        headers.push(("authorization".to_string(), format!("Basic {basic}")));
    }
    let res = outbound::send(
        outbound::Request {
            method: reqwest::Method::POST,
            url: &d.metadata.token_endpoint,
            headers,
            body: Some(form_encode(&pairs).into_bytes()),
        },
        rp.allow_private,
    )?;
    let body: Value = serde_json::from_slice(&res.body).map_err(|_| {
        Failure(format!(
            "the token endpoint answered HTTP {} with a body that is not JSON",
            res.status
        ))
    })?;
    if !(200..300).contains(&res.status) {
        let error = body["error"].as_str().unwrap_or("unknown error");
        let desc = body["error_description"].as_str().unwrap_or("");
        return Err(Failure(
            format!("the token endpoint refused the authorization code: {error} {desc}")
                .trim()
                .to_string(),
        ));
    }
    let id_token = body["id_token"]
        .as_str()
        .ok_or_else(|| Failure("the token response has no ID token".into()))?
        .to_string();
    Ok(Tokens {
        id_token,
        access_token: body["access_token"].as_str().map(str::to_string),
    })
}

/// The verified claims of an ID token, as JSON (the raw token is never kept).
pub struct Verified {
    pub claims: Claims,
    pub access_token: Option<String>,
}

fn allowed_algs() -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm as A;
    vec![
        A::RsaSsaPkcs1V15Sha256,
        A::RsaSsaPkcs1V15Sha384,
        A::RsaSsaPkcs1V15Sha512,
        A::RsaSsaPssSha256,
        A::RsaSsaPssSha384,
        A::RsaSsaPssSha512,
        A::EcdsaP256Sha256,
        A::EcdsaP384Sha384,
        A::EdDsa,
    ]
}

/// The payload of a JWT whose signature the library has verified.
fn payload(raw: &str) -> Option<Claims> {
    let part = raw.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The claims of an ID token that was not verified, for the audit of a refusal only.
pub fn unverified_claims(tokens: &Tokens) -> Option<Claims> {
    payload(&tokens.id_token)
}

fn explain(e: &ClaimsVerificationError, claims: Option<&Claims>, cfg: &OidcConfig) -> String {
    let claim = |k: &str| {
        claims
            .and_then(|c| c.get(k))
            .map(|v| v.to_string())
            .unwrap_or_else(|| "nothing".into())
    };
    match e {
        ClaimsVerificationError::InvalidAudience(_) => format!(
            "ID token issued for audience {}, not this connection's client id {}",
            claim("aud"),
            cfg.client_id
        ),
        ClaimsVerificationError::Expired(_) => format!(
            "ID token expired (exp {}; clock leeway allowed {} s)",
            claim("exp"),
            cfg.leeway_secs
        ),
        ClaimsVerificationError::InvalidNonce(m) => format!("nonce mismatch ({m})"),
        ClaimsVerificationError::SignatureVerification(s) => match s {
            SignatureVerificationError::NoMatchingKey => {
                "ID token signed with a key (kid) that is not in the IdP's JWKS".into()
            }
            SignatureVerificationError::DisallowedAlg(a)
            | SignatureVerificationError::UnsupportedAlg(a) => {
                format!("ID token signed with an algorithm that is not accepted ({a})")
            }
            SignatureVerificationError::NoSignature => "ID token is not signed (alg none)".into(),
            other => format!("ID token signature does not verify: {other}"),
        },
        other => format!("ID token refused: {other}"),
    }
}

/// Verifies the ID token: the library checks signature, algorithm, audience, expiry (with the
/// leeway) and nonce; we check the issuer (and Entra tenant), `iat` and `at_hash`.
pub fn verify(
    rp: &Rp<'_>,
    d: Arc<Discovered>,
    tokens: Tokens,
    nonce: &str,
) -> Result<Verified, Failure> {
    let (cfg, secret, now) = (rp.cfg, rp.secret, rp.now);
    let unverified = payload(&tokens.id_token);
    let id_token: CoreIdToken = tokens
        .id_token
        .parse()
        .map_err(|e| Failure(format!("the ID token is not a well-formed JWT: {e}")))?;
    let leeway = cfg.leeway_secs;
    // The library's issuer check is off (we check `iss` below); the URL is only carried.
    let issuer = IssuerUrl::new(d.metadata.issuer.clone()).map_err(|_| {
        Failure(format!(
            "the discovered issuer {} is not a URL",
            d.metadata.issuer
        ))
    })?;
    let verifier_for = |jwks: CoreJsonWebKeySet| {
        IdTokenVerifier::new_confidential_client(
            ClientId::new(cfg.client_id.clone()),
            ClientSecret::new(secret.to_string()),
            issuer.clone(),
            jwks,
        )
        .require_issuer_match(false)
        .set_allowed_algs(allowed_algs())
        .set_time_fn(move || {
            chrono::DateTime::from_timestamp(now - leeway, 0).unwrap_or_else(chrono::Utc::now)
        })
    };
    let nonce = Nonce::new(nonce.to_string());
    let mut discovered = d;
    let mut verifier = verifier_for(discovered.jwks.clone());
    let mut result = id_token.claims(&verifier, &nonce).map(|_| ());
    if matches!(
        result,
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey
        ))
    ) {
        discovered = refetch_jwks(rp.key, &discovered, rp.allow_private)?;
        verifier = verifier_for(discovered.jwks.clone());
        result = id_token.claims(&verifier, &nonce).map(|_| ());
    }
    result.map_err(|e| Failure(explain(&e, unverified.as_ref(), cfg)))?;
    let claims =
        unverified.ok_or_else(|| Failure("the ID token payload is not a JSON object".into()))?;

    check_issuer(&claims, &discovered.metadata.issuer, cfg)?;
    if let Some(iat) = claims.get("iat").and_then(Value::as_i64) {
        if iat > now + leeway {
            return Err(Failure(format!(
                "ID token issued {} s in the future (clock leeway allowed {leeway} s)",
                iat - now
            )));
        }
    }
    if let (Some(expected), Some(at)) = (
        claims.get("at_hash").and_then(Value::as_str),
        tokens.access_token.as_deref(),
    ) {
        let alg = id_token
            .signing_alg()
            .map_err(|e| Failure(format!("at_hash cannot be checked: {e}")))?;
        let jwk = id_token
            .signing_key(&verifier)
            .map_err(|e| Failure(format!("at_hash cannot be checked: {e}")))?;
        let actual = AccessTokenHash::from_token(&AccessToken::new(at.to_string()), alg, jwk)
            .map_err(|e| Failure(format!("at_hash cannot be checked: {e}")))?;
        if actual.as_str() != expected {
            return Err(Failure(
                "at_hash does not match the access token (the tokens were swapped?)".into(),
            ));
        }
    }
    Ok(Verified {
        claims,
        access_token: tokens.access_token,
    })
}

/// `iss` must be the discovered issuer; for an Entra multi-tenant issuer, the template with the
/// token's own `tid`, and that tenant must be on the allowlist.
fn check_issuer(claims: &Claims, issuer: &str, cfg: &OidcConfig) -> Result<(), Failure> {
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let tid = claims.get("tid").and_then(Value::as_str);
    let expected = if issuer.contains(TENANT_PLACEHOLDER) {
        let tid = tid.ok_or_else(|| {
            Failure("the ID token of a multi-tenant issuer has no tid (tenant id) claim".into())
        })?;
        issuer.replace(TENANT_PLACEHOLDER, tid)
    } else {
        issuer.to_string()
    };
    if iss.trim_end_matches('/') != expected.trim_end_matches('/') {
        return Err(Failure(format!(
            "ID token issued by {iss}, not by this connection's issuer {expected}"
        )));
    }
    if !cfg.tenant_allow.is_empty() || cfg.is_multi_tenant() {
        let tid = tid.unwrap_or("(none)");
        if !cfg.tenant_allow.iter().any(|t| t.eq_ignore_ascii_case(tid)) {
            return Err(Failure(format!(
                "tenant {tid} not allowed by this connection"
            )));
        }
    }
    Ok(())
}

/// Claims from the userinfo endpoint, which must describe the same subject.
pub fn userinfo(
    d: &Discovered,
    access_token: &str,
    subject: &str,
    allow_private: bool,
) -> Result<Option<Claims>, Failure> {
    let Some(url) = d.metadata.userinfo_endpoint.as_deref() else {
        return Ok(None);
    };
    let res = outbound::send(
        outbound::Request {
            method: reqwest::Method::GET,
            url,
            headers: vec![
                ("authorization".into(), format!("Bearer {access_token}")),
                ("accept".into(), "application/json".into()),
            ],
            body: None,
        },
        allow_private,
    )?;
    if !(200..300).contains(&res.status) {
        return Err(Failure(format!(
            "the userinfo endpoint answered HTTP {}",
            res.status
        )));
    }
    let claims: Claims = serde_json::from_slice(&res.body).map_err(|_| {
        Failure(
            "the userinfo response is not a JSON object (signed userinfo is not supported)".into(),
        )
    })?;
    if claims.get("sub").and_then(Value::as_str) != Some(subject) {
        return Err(Failure(
            "the userinfo response describes another subject than the ID token".into(),
        ));
    }
    Ok(Some(claims))
}
