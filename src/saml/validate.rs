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
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};
use samael::key_info::{KeyInfo, X509Data};
use samael::metadata::{Endpoint, EntityDescriptor, IdpSsoDescriptor, KeyDescriptor};
use samael::schema::{Assertion, CipherValue, Response};
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
    /// When the IdP authenticated the user (the first AuthnStatement's AuthnInstant).
    pub authn_instant: Option<i64>,
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
    if !xml
        .trim_start_matches('\u{feff}')
        .trim_start()
        .starts_with('<')
    {
        return fail("SAMLResponse is base64 but not an XML document");
    }
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

/// Byte offset of the first start tag with this local name.
fn first_element(xml: &str, local: &str) -> Option<usize> {
    let mut i = 0;
    while let Some(pos) = xml[i..].find('<') {
        let start = i + pos + 1;
        i = start;
        let end = xml[start..]
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .map(|e| start + e)
            .unwrap_or(xml.len());
        let name = &xml[start..end];
        if name.rsplit(':').next() == Some(local) {
            return Some(start - 1);
        }
    }
    None
}

/// Encrypted assertions. Entra's default is an unsigned Response around an assertion that was
/// signed, then encrypted; samael decrypts only inside a signed Response (and neither parses
/// every IdP's XML Encryption layout nor handles AES-256). So we decrypt here and put the
/// still-signed assertion in place of the EncryptedAssertion; its own signature is verified
/// next, as for any response. An encrypted assertion must therefore itself be signed.
fn decrypt_envelope(
    xml: &str,
    key: Option<&PKey<Private>>,
    config: &SamlConfig,
) -> Result<Option<String>, Failure> {
    let Some(enc_start) = first_element(xml, "EncryptedAssertion") else {
        return Ok(None);
    };
    // A signed Response: verify it here, then drop its (verified) signature so the document can
    // carry the decrypted assertion, whose own signature samael verifies next.
    let owned;
    let xml = match first_element(xml, "Signature") {
        Some(sig) if sig < enc_start => {
            let certs: Vec<CertificateDer> = config
                .certs
                .iter()
                .filter_map(|c| B64.decode(c).ok())
                .map(CertificateDer::from)
                .collect();
            if <Crypto as CryptoProvider>::reduce_xml_to_signed_with_allowed_algorithms(
                xml,
                &certs,
                ReduceMode::default(),
                Some(&allowed_algorithms()),
            )
            .is_err()
            {
                return Ok(None); // samael reports the signature failure in words
            }
            // One Response and one EncryptedAssertion (checked by the caller): the verified
            // signature is the Response's, which covered everything we keep.
            let (s_start, s_end) = element_span(xml, "Signature")
                .ok_or_else(|| Failure("the Response signature could not be located".into()))?;
            owned = format!("{}{}", &xml[..s_start], &xml[s_end..]);
            owned.as_str()
        }
        _ => xml,
    };
    let key = key.ok_or_else(|| {
        Failure("an encrypted assertion arrived but this SP has no decryption key".into())
    })?;
    let undecryptable = || {
        Failure("the encrypted assertion could not be decrypted with this SP's key (the IdP must use the encryption certificate from our metadata)".into())
    };
    let (ea_start, ea_end) = element_span(xml, "EncryptedAssertion").ok_or_else(undecryptable)?;
    let ea = &xml[ea_start..ea_end];
    // The EncryptedKey may sit inside EncryptedData's KeyInfo or beside it (both are common).
    let (k_start, k_end) = element_span(ea, "EncryptedKey").ok_or_else(undecryptable)?;
    let key_part = &ea[k_start..k_end];
    let data_part = format!("{}{}", &ea[..k_start], &ea[k_end..]);
    let cipher = |part: &str| -> Option<(CipherValue, String)> {
        let alg = attribute_of(part, "EncryptionMethod", "Algorithm")?;
        let value = element_text(part, "CipherValue")?;
        Some((
            CipherValue {
                value: value.chars().filter(|c| !c.is_whitespace()).collect(),
            },
            alg,
        ))
    };
    let (kc, km) = cipher(key_part).ok_or_else(undecryptable)?;
    let (vc, vm) = cipher(&data_part).ok_or_else(undecryptable)?;
    let sym = <Crypto as CryptoProvider>::decrypt_assertion_key_info(&kc, &km, key)
        .map_err(|_| undecryptable())?;
    let plain = decrypt_content(&vm, &sym, &vc.value).ok_or_else(undecryptable)?;
    let plain = String::from_utf8(plain).map_err(|_| undecryptable())?;
    reject_dtd(&plain).map_err(Failure)?;
    let plain = match plain.trim_start().strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default(),
        None => plain,
    };
    let _ = enc_start;
    Ok(Some(format!(
        "{}{}{}",
        &xml[..ea_start],
        plain.trim(),
        &xml[ea_end..]
    )))
}

/// XML Encryption content decryption: AES-CBC (128/192/256, ISO 10126 padding) and AES-GCM
/// (128/192/256). Entra ID encrypts with AES-256-CBC, which samael does not handle.
fn decrypt_content(method: &str, key: &[u8], b64: &str) -> Option<Vec<u8>> {
    use openssl::symm::{decrypt_aead, Cipher, Crypter, Mode};
    let data = B64.decode(b64).ok()?;
    let (cipher, gcm) = match method {
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => (Cipher::aes_128_cbc(), false),
        "http://www.w3.org/2001/04/xmlenc#aes192-cbc" => (Cipher::aes_192_cbc(), false),
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => (Cipher::aes_256_cbc(), false),
        "http://www.w3.org/2009/xmlenc11#aes128-gcm" => (Cipher::aes_128_gcm(), true),
        "http://www.w3.org/2009/xmlenc11#aes192-gcm" => (Cipher::aes_192_gcm(), true),
        "http://www.w3.org/2009/xmlenc11#aes256-gcm" => (Cipher::aes_256_gcm(), true),
        _ => return None,
    };
    if key.len() != cipher.key_len() {
        return None;
    }
    if gcm {
        if data.len() < 12 + 16 {
            return None;
        }
        let (iv, rest) = data.split_at(12);
        let (body, tag) = rest.split_at(rest.len() - 16);
        return decrypt_aead(cipher, key, Some(iv), &[], body, tag).ok();
    }
    let iv_len = cipher.iv_len()?;
    if data.len() <= iv_len || (data.len() - iv_len) % 16 != 0 {
        return None;
    }
    let (iv, body) = data.split_at(iv_len);
    let mut c = Crypter::new(cipher, Mode::Decrypt, key, Some(iv)).ok()?;
    c.pad(false);
    let mut out = vec![0u8; body.len() + cipher.block_size()];
    let mut n = c.update(body, &mut out).ok()?;
    n += c.finalize(&mut out[n..]).ok()?;
    out.truncate(n);
    // ISO 10126: the last byte is the padding length; the others are arbitrary.
    let pad = *out.last()? as usize;
    if pad == 0 || pad > 16 || pad > out.len() {
        return None;
    }
    out.truncate(out.len() - pad);
    Some(out)
}

/// `(start, end)` of the first element with this local name, end after its close tag.
fn element_span(xml: &str, local: &str) -> Option<(usize, usize)> {
    let start = first_element(xml, local)?;
    let name_end =
        xml[start + 1..].find(|c: char| c.is_whitespace() || c == '>' || c == '/')? + start + 1;
    let tag = &xml[start + 1..name_end];
    let close = format!("</{tag}>");
    let close_at = xml[start..].find(&close)? + start;
    Some((start, close_at + close.len()))
}

/// The text of the first element with this local name.
fn element_text<'x>(xml: &'x str, local: &str) -> Option<&'x str> {
    let start = first_element(xml, local)?;
    let open_end = xml[start..].find('>')? + start + 1;
    let close = xml[open_end..].find('<')? + open_end;
    Some(&xml[open_end..close])
}

/// An attribute of the first element with this local name.
fn attribute_of(xml: &str, local: &str, attr: &str) -> Option<String> {
    let start = first_element(xml, local)?;
    let open_end = xml[start..].find('>')? + start;
    let tag = &xml[start..open_end];
    let key = format!("{attr}=\"");
    let at = tag.find(&key)? + key.len();
    let end = tag[at..].find('"')? + at;
    Some(tag[at..end].to_string())
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

/// SHA-2 signatures only (SHA-1 is refused).
fn allowed_algorithms() -> Vec<AllowedSignatureAlgorithm> {
    vec![
        AllowedSignatureAlgorithm::RsaSha256,
        AllowedSignatureAlgorithm::RsaSha384,
        AllowedSignatureAlgorithm::RsaSha512,
        AllowedSignatureAlgorithm::EcdsaSha256,
        AllowedSignatureAlgorithm::EcdsaSha384,
        AllowedSignatureAlgorithm::EcdsaSha512,
    ]
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
        .allowed_signature_algorithms(allowed_algorithms());
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

/// Full validation. `env` is the caller's [`envelope`] of `xml` (read once per response);
/// `expected_request` is the request id this response must answer (SP-initiated), or `None`
/// for an unsolicited (IdP-initiated) response.
pub fn validate(
    xml: &str,
    env: Envelope,
    sp: &SpContext,
    expected_request: Option<&str>,
    now: i64,
) -> Result<Verified, Failure> {
    if count_elements(xml, "EncryptedAssertion") > 1 {
        return fail("the document holds more than one EncryptedAssertion (signature wrapping?)");
    }
    let decrypted = decrypt_envelope(xml, sp.key.as_ref(), &sp.config)?;
    // A decrypted document has an assertion the first reading could not see: read it again.
    let env = match &decrypted {
        Some(d) => envelope(d),
        None => env,
    };
    let xml = decrypted.as_deref().unwrap_or(xml);
    let assertions = count_elements(xml, "Assertion") + count_elements(xml, "EncryptedAssertion");
    let responses = count_elements(xml, "Response");
    if assertions != 1 || responses > 1 {
        return fail(format!(
            "the document holds {responses} Response and {assertions} Assertion elements; exactly one of each is accepted (signature wrapping?)"
        ));
    }
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
    let authn_instant = a
        .authn_statements
        .iter()
        .flatten()
        .find_map(|s| s.authn_instant)
        .map(|t: DateTime<Utc>| t.timestamp());
    Ok(Verified {
        authn_instant,
        assertion_id: a.id.clone(),
        subject: name_id.value.trim().to_string(),
        transient: name_id.format.as_deref() == Some(TRANSIENT),
        not_on_or_after,
        attributes,
    })
}
