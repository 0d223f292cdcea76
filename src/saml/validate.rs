//! Validating a SAML Response at the ACS. samael verifies the signature against the
//! connection's certificates and returns only signed-and-verified content (no signature
//! wrapping); it also checks Destination, Recipient, Issuer, NotBefore/NotOnOrAfter and
//! InResponseTo. On top of that we refuse (stack-notes.md): DTDs/entities, a non-Success
//! Status, a missing AudienceRestriction, SHA-1 signatures, an unsolicited response that
//! answers a request, a future IssueInstant; the replay cache is the caller's. Every failure
//! says why in words an admin can act on.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use openssl::pkey::{PKey, Private};
use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer};
use samael::key_info::{KeyInfo, X509Data};
use samael::metadata::{Endpoint, EntityDescriptor, IdpSsoDescriptor, KeyDescriptor};
use samael::schema::{Assertion, Response};
use samael::service_provider::{Error as SpError, ServiceProvider, ServiceProviderBuilder};

use super::config::{fingerprint, reject_dtd, SamlConfig};

/// Largest SAMLResponse accepted (base64 text).
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024;
/// How old an IssueInstant may be (on top of the clock skew): a response is used at once.
pub const MAX_ISSUE_AGE_SECS: i64 = 300;

const SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const TRANSIENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient";

/// The SP side of one connection.
pub struct SpContext {
    pub entity_id: String,
    pub acs_url: String,
    pub config: SamlConfig,
    pub key: Option<PKey<Private>>,
    pub cert_der: Option<Vec<u8>>,
}

/// What the unverified document claims, read only to find the request it answers and to word
/// failures precisely. Nothing from here is trusted for identity.
#[derive(Debug, Default, Clone)]
pub struct Envelope {
    pub in_response_to: Option<String>,
    pub status: Option<String>,
    pub destination: Option<String>,
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Verified {
    pub assertion_id: String,
    pub subject: String,
    pub transient: bool,
    pub not_on_or_after: Option<i64>,
    pub attributes: Vec<(String, Vec<String>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

fn fail<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(msg.into()))
}

/// Decodes the POSTed value; refuses oversized, non-base64, non-UTF-8 and DTD-bearing input.
pub fn decode(saml_response: &str) -> Result<String, Failure> {
    if saml_response.len() > MAX_RESPONSE_BYTES {
        return fail(format!(
            "SAMLResponse larger than {MAX_RESPONSE_BYTES} bytes"
        ));
    }
    let compact: String = saml_response
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let bytes = B64
        .decode(compact)
        .map_err(|_| Failure("SAMLResponse is not base64".into()))?;
    let xml =
        String::from_utf8(bytes).map_err(|_| Failure("SAMLResponse is not UTF-8 XML".into()))?;
    reject_dtd(&xml).map_err(Failure)?;
    Ok(xml)
}

/// Counts start tags with this local name (any prefix). Used to refuse documents shaped for
/// signature wrapping: a genuine Response holds one Response and one (possibly encrypted)
/// Assertion.
pub fn count_elements(xml: &str, local: &str) -> usize {
    let mut n = 0;
    let bytes = xml.as_bytes();
    let mut i = 0;
    while let Some(pos) = xml[i..].find('<') {
        let start = i + pos + 1;
        i = start;
        if matches!(bytes.get(start), Some(b'/' | b'!' | b'?') | None) {
            continue;
        }
        let end = xml[start..]
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .map(|e| start + e)
            .unwrap_or(xml.len());
        let name = &xml[start..end];
        let name = name.rsplit(':').next().unwrap_or(name);
        if name == local {
            n += 1;
        }
    }
    n
}

/// Reads the envelope without trusting it.
pub fn envelope(xml: &str) -> Envelope {
    match xml.parse::<Response>() {
        Ok(r) => Envelope {
            in_response_to: r.in_response_to.clone(),
            status: r.status.as_ref().and_then(|s| s.status_code.value.clone()),
            destination: r.destination.clone(),
            audiences: r
                .assertion
                .as_ref()
                .and_then(|a| a.conditions.as_ref())
                .and_then(|c| c.audience_restrictions.as_ref())
                .map(|rs| rs.iter().flat_map(|r| r.audience.clone()).collect())
                .unwrap_or_default(),
        },
        Err(_) => Envelope::default(),
    }
}

fn idp_metadata(config: &SamlConfig) -> EntityDescriptor {
    EntityDescriptor {
        entity_id: Some(config.idp_entity_id.clone()),
        idp_sso_descriptors: Some(vec![IdpSsoDescriptor {
            protocol_support_enumeration: Some("urn:oasis:names:tc:SAML:2.0:protocol".into()),
            key_descriptors: vec![KeyDescriptor {
                key_use: Some("signing".into()),
                key_info: KeyInfo {
                    id: None,
                    x509_data: Some(X509Data {
                        certificates: config.certs.clone(),
                    }),
                },
                encryption_methods: None,
            }],
            single_sign_on_services: vec![Endpoint {
                binding: "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect".into(),
                location: config.sso_url.clone(),
                response_location: None,
            }],
            id: None,
            valid_until: None,
            cache_duration: None,
            error_url: None,
            signature: None,
            organization: None,
            contact_people: Vec::new(),
            artifact_resolution_service: Vec::new(),
            single_logout_services: Vec::new(),
            manage_name_id_services: Vec::new(),
            name_id_formats: Vec::new(),
            want_authn_requests_signed: None,
            name_id_mapping_services: Vec::new(),
            assertion_id_request_services: Vec::new(),
            attribute_profiles: Vec::new(),
            attributes: Vec::new(),
        }]),
        ..EntityDescriptor::default()
    }
}

/// The samael service provider for this connection.
pub fn service_provider(sp: &SpContext, idp_initiated: bool) -> Result<ServiceProvider, Failure> {
    let mut b = ServiceProviderBuilder::default();
    b.entity_id(sp.entity_id.clone())
        .acs_url(sp.acs_url.clone())
        .metadata_url(sp.entity_id.clone())
        .slo_url(sp.acs_url.clone())
        .idp_metadata(idp_metadata(&sp.config))
        .allow_idp_initiated(idp_initiated)
        .max_clock_skew(chrono::Duration::seconds(sp.config.clock_skew_secs))
        .max_issue_delay(chrono::Duration::seconds(
            MAX_ISSUE_AGE_SECS + sp.config.clock_skew_secs,
        ))
        .allowed_signature_algorithms(vec![
            AllowedSignatureAlgorithm::RsaSha256,
            AllowedSignatureAlgorithm::RsaSha384,
            AllowedSignatureAlgorithm::RsaSha512,
            AllowedSignatureAlgorithm::EcdsaSha256,
            AllowedSignatureAlgorithm::EcdsaSha384,
            AllowedSignatureAlgorithm::EcdsaSha512,
        ]);
    if let Some(k) = &sp.key {
        b.key(k.clone());
    }
    if let Some(c) = &sp.cert_der {
        b.certificate(CertificateDer::from(c.clone()));
    }
    b.build()
        .map_err(|e| Failure(format!("connection misconfigured: {e}")))
}

/// Why samael refused, in words; uses the raw XML (unverified) only to be specific.
fn explain(err: SpError, xml: &str, sp: &SpContext, env: &Envelope, now: i64) -> Failure {
    let skew = sp.config.clock_skew_secs;
    let ago = |t: &str| -> String {
        DateTime::parse_from_rfc3339(t)
            .map(|t| {
                let secs = now - t.timestamp() + skew;
                format!("{} min ago", (secs.max(0) + 30) / 60)
            })
            .unwrap_or_else(|_| t.to_string())
    };
    let msg = match err {
        SpError::FailedToValidateSignature => {
            let lower = xml.to_ascii_lowercase();
            if lower.contains("xmldsig#rsa-sha1") || lower.contains("xmldsig#dsa-sha1") {
                "signed with RSA-SHA1, which is not allowed (configure the IdP for SHA-256)".to_string()
            } else if let Some(fp) = unknown_signer(xml, &sp.config) {
                format!("signed by an unknown certificate SHA-256 {fp}; the connection trusts {}", trusted(&sp.config))
            } else if !lower.contains("signature") {
                "the response is not signed".to_string()
            } else {
                "the signature does not verify: the document was altered after signing, or is not signed by the connection's certificate".to_string()
            }
        }
        SpError::DestinationValidationError { response_destination, sp_acs_url } => format!(
            "Destination mismatch: expected {}, got {}",
            sp_acs_url.unwrap_or_default(),
            response_destination.unwrap_or_else(|| "none".into())
        ),
        SpError::AssertionRecipientMismatch { assertion_recipient, sp_acs_url } => format!(
            "Recipient mismatch: expected {}, got {}",
            sp_acs_url.unwrap_or_default(),
            assertion_recipient.unwrap_or_else(|| "none".into())
        ),
        SpError::AssertionConditionAudienceRestrictionFailed { requirement } => format!(
            "audience mismatch: expected {requirement}, got {}",
            if env.audiences.is_empty() { "none".to_string() } else { env.audiences.join(", ") }
        ),
        SpError::AssertionExpired { time } | SpError::ResponseExpired { time } => format!(
            "IssueInstant too old: issued more than {} min before now (limit reached {}); clock skew allowed {} s",
            (MAX_ISSUE_AGE_SECS + skew) / 60,
            ago(&time),
            skew
        ),
        SpError::AssertionConditionExpired { time } | SpError::AssertionSubjectConfirmationExpired { time } => {
            format!("assertion expired {}; clock skew allowed {} min", ago(&time), skew / 60)
        }
        SpError::AssertionConditionExpiredBefore { time } | SpError::AssertionSubjectConfirmationExpiredBefore { time } => {
            format!("assertion not valid yet (valid from {time} including the {skew} s clock skew): check the IdP's clock")
        }
        SpError::AssertionIssuerMismatch { issuer, entity_id } | SpError::ResponseIssuerMismatch { issuer, entity_id } => format!(
            "Issuer mismatch: expected {}, got {}",
            entity_id.unwrap_or_default(),
            issuer.unwrap_or_else(|| "none".into())
        ),
        SpError::ResponseBadStatusCode { code } => format!("the IdP answered with status {code}"),
        SpError::AssertionInResponseToInvalid { .. } | SpError::ResponseInResponseToInvalid { .. } => {
            "InResponseTo does not match a sign-in request issued by this connection".to_string()
        }
        SpError::AssertionBearerSubjectConfirmationMissing | SpError::AssertionSubjectConfirmationMissing => {
            "the assertion has no bearer SubjectConfirmation with NotOnOrAfter and Recipient".to_string()
        }
        SpError::FailedToDecryptAssertion | SpError::EncryptedAssertionInvalid | SpError::MissingPrivateKeySP => {
            "the encrypted assertion could not be decrypted with this SP's key (the IdP must use the encryption certificate from our metadata)".to_string()
        }
        other => format!("the response could not be processed: {other}"),
    };
    Failure(msg)
}

fn trusted(config: &SamlConfig) -> String {
    config
        .certs
        .iter()
        .filter_map(|c| B64.decode(c).ok())
        .map(|d| fingerprint(&d))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The fingerprint of a KeyInfo certificate in the document that the connection does not
/// trust, if there is one.
fn unknown_signer(xml: &str, config: &SamlConfig) -> Option<String> {
    let mut rest = xml;
    while let Some(start) = rest.find("X509Certificate>") {
        let after = &rest[start + "X509Certificate>".len()..];
        let end = after.find('<')?;
        let b64: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Some(der) = B64.decode(&b64).ok().filter(|d| !d.is_empty()) {
            if !config
                .certs
                .iter()
                .any(|c| B64.decode(c).ok().as_deref() == Some(der.as_slice()))
            {
                return Some(fingerprint(&der));
            }
        }
        rest = &after[end..];
    }
    None
}

/// Full validation. `expected_request` is the request id this response must answer
/// (SP-initiated), or `None` for an unsolicited (IdP-initiated) response.
pub fn validate(
    xml: &str,
    sp: &SpContext,
    expected_request: Option<&str>,
    now: i64,
) -> Result<Verified, Failure> {
    let assertions = count_elements(xml, "Assertion") + count_elements(xml, "EncryptedAssertion");
    let responses = count_elements(xml, "Response");
    if assertions != 1 || responses > 1 {
        return fail(format!(
            "the document holds {responses} Response and {assertions} Assertion elements; exactly one of each is accepted (signature wrapping?)"
        ));
    }
    let env = envelope(xml);
    if let Some(status) = env.status.as_deref() {
        if status != SUCCESS {
            return fail(format!(
                "the IdP answered with status {status} instead of Success"
            ));
        }
    }
    if let Some(dest) = env.destination.as_deref() {
        if dest != sp.acs_url {
            return fail(format!(
                "Destination mismatch: expected {}, got {dest}",
                sp.acs_url
            ));
        }
    }
    let provider = service_provider(sp, expected_request.is_none())?;
    let ids: Vec<&str> = expected_request.into_iter().collect();
    let assertion: Assertion = provider
        .parse_xml_response(xml, expected_request.map(|_| ids.as_slice()))
        .map_err(|e| explain(e, xml, sp, &env, now))?;
    check_assertion(&assertion, sp, expected_request, now)
}

/// Our checks on the verified assertion.
fn check_assertion(
    a: &Assertion,
    sp: &SpContext,
    expected_request: Option<&str>,
    now: i64,
) -> Result<Verified, Failure> {
    let skew = sp.config.clock_skew_secs;
    // AudienceRestriction is required, and must name us.
    let audiences: Vec<String> = a
        .conditions
        .as_ref()
        .and_then(|c| c.audience_restrictions.as_ref())
        .map(|rs| rs.iter().flat_map(|r| r.audience.clone()).collect())
        .unwrap_or_default();
    if audiences.is_empty() {
        return fail(format!(
            "the assertion has no AudienceRestriction (expected audience {})",
            sp.entity_id
        ));
    }
    if !audiences.iter().any(|x| x == &sp.entity_id) {
        return fail(format!(
            "audience mismatch: expected {}, got {}",
            sp.entity_id,
            audiences.join(", ")
        ));
    }
    if a.issue_instant.timestamp() > now + skew {
        return fail(format!(
            "IssueInstant {} is in the future beyond the {skew} s clock skew: check the IdP's clock",
            a.issue_instant.to_rfc3339()
        ));
    }
    let confirmations: Vec<_> = a
        .subject
        .as_ref()
        .and_then(|s| s.subject_confirmations.as_ref())
        .into_iter()
        .flatten()
        .collect();
    // An unsolicited response must not carry an assertion that answers a request.
    if expected_request.is_none() {
        if let Some(irt) = confirmations
            .iter()
            .filter_map(|c| c.subject_confirmation_data.as_ref())
            .find_map(|d| d.in_response_to.clone())
        {
            return fail(format!(
                "the assertion answers sign-in request {irt} but arrived unsolicited"
            ));
        }
    }
    let name_id = a
        .subject
        .as_ref()
        .and_then(|s| s.name_id.as_ref())
        .ok_or_else(|| Failure("the assertion has no NameID".into()))?;
    if name_id.value.trim().is_empty() {
        return fail("the assertion's NameID is empty");
    }
    let not_on_or_after = a
        .conditions
        .as_ref()
        .and_then(|c| c.not_on_or_after)
        .or_else(|| {
            confirmations
                .iter()
                .filter_map(|c| c.subject_confirmation_data.as_ref())
                .find_map(|d| d.not_on_or_after)
        })
        .map(|t: DateTime<Utc>| t.timestamp());
    let attributes = a
        .attribute_statements
        .iter()
        .flatten()
        .flat_map(|s| s.attributes.iter())
        .filter_map(|attr| {
            let name = attr.name.clone().or_else(|| attr.friendly_name.clone())?;
            let values = attr.values.iter().filter_map(|v| v.value.clone()).collect();
            Some((name, values))
        })
        .collect();
    Ok(Verified {
        assertion_id: a.id.clone(),
        subject: name_id.value.trim().to_string(),
        transient: name_id.format.as_deref() == Some(TRANSIENT),
        not_on_or_after,
        attributes,
    })
}
