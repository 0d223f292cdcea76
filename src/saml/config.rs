//! A SAML connection's settings: the IdP (entity ID, SSO URL, signing certificates — at least
//! one, several during rotation), IdP-initiated sign-in, clock skew, and the attribute names
//! of the IdP preset. Imported from IdP metadata XML or given explicitly.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::x509::X509;
use samael::metadata::EntityDescriptor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const DEFAULT_SKEW_SECS: i64 = 180;
const REDIRECT_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamlConfig {
    pub idp_entity_id: String,
    pub sso_url: String,
    /// IdP signing certificates, base64 DER.
    pub certs: Vec<String>,
    #[serde(default = "yes")]
    pub idp_initiated: bool,
    #[serde(default)]
    pub preset: Option<String>,
    #[serde(default = "default_skew")]
    pub clock_skew_secs: i64,
    #[serde(default)]
    pub sign_requests: bool,
    #[serde(default)]
    pub metadata_url: Option<String>,
    /// Attribute names that override the preset: keys `email`, `given_name`, `family_name`,
    /// `display_name`, `groups`.
    #[serde(default)]
    pub attribute_map: std::collections::BTreeMap<String, String>,
}

pub const MAPPABLE: &[&str] = &[
    "email",
    "given_name",
    "family_name",
    "display_name",
    "groups",
];

fn yes() -> bool {
    true
}

fn default_skew() -> i64 {
    DEFAULT_SKEW_SECS
}

/// A certificate as the admin sees it.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub sha256: String,
    pub subject: String,
    pub not_after: String,
}

pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Decodes one certificate (PEM or bare base64 DER) into base64 DER, refusing anything that
/// is not an X.509 certificate.
pub fn normalize_cert(text: &str) -> Result<String, String> {
    let der = if text.contains("-----BEGIN") {
        X509::from_pem(text.as_bytes())
            .and_then(|c| c.to_der())
            .map_err(|_| "not a PEM certificate".to_string())?
    } else {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let der = B64
            .decode(compact)
            .map_err(|_| "certificate is not base64".to_string())?;
        X509::from_der(&der).map_err(|_| "not an X.509 certificate".to_string())?;
        der
    };
    Ok(B64.encode(der))
}

/// The certificate's expiry as Unix seconds.
pub fn cert_not_after(b64: &str) -> Option<i64> {
    let der = B64.decode(b64).ok()?;
    let cert = X509::from_der(&der).ok()?;
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

#[allow(deprecated)] // as_utf8: subject names hold no NUL bytes we care about
pub fn cert_info(b64: &str) -> Option<CertInfo> {
    let der = B64.decode(b64).ok()?;
    let cert = X509::from_der(&der).ok()?;
    let subject = cert
        .subject_name()
        .entries()
        .filter_map(|e| e.data().as_utf8().ok().map(|s| s.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    Some(CertInfo {
        sha256: fingerprint(&der),
        subject,
        not_after: cert.not_after().to_string(),
    })
}

/// Where a new connection's IdP settings come from.
pub enum Source {
    MetadataXml(String),
    MetadataUrl(String),
    Explicit {
        entity_id: String,
        sso_url: String,
        cert_pem: String,
    },
}

/// Builds a connection's settings from its source (a metadata URL is fetched through the
/// guarded outbound client: blocking).
pub fn from_source(source: Source, allow_private: bool) -> Result<SamlConfig, String> {
    match source {
        Source::MetadataXml(xml) => from_metadata(&xml),
        Source::MetadataUrl(url) => {
            let xml = crate::outbound::get_text(&url, allow_private).map_err(|e| e.to_string())?;
            let mut cfg = from_metadata(&xml)?;
            cfg.metadata_url = Some(url);
            Ok(cfg)
        }
        Source::Explicit {
            entity_id,
            sso_url,
            cert_pem,
        } if entity_id.trim().is_empty() && sso_url.trim().is_empty() && cert_pem.trim().is_empty() => Err(
            "nothing to connect to yet: paste the IdP's metadata XML, give its metadata URL, or enter its entity ID, SSO URL and signing certificate".into(),
        ),
        Source::Explicit {
            entity_id,
            sso_url,
            cert_pem,
        } => Ok(SamlConfig {
            idp_entity_id: entity_id,
            sso_url,
            certs: vec![normalize_cert(&cert_pem)?],
            idp_initiated: true,
            preset: None,
            clock_skew_secs: DEFAULT_SKEW_SECS,
            sign_requests: false,
            metadata_url: None,
            attribute_map: Default::default(),
        }),
    }
}

/// What a paste that is not metadata gets.
const NOT_METADATA: &str = "this is not SAML metadata: paste the IdP's metadata XML as downloaded from its console (it starts with <EntityDescriptor> or <md:EntityDescriptor>)";

/// Reads IdP metadata. DTDs and entities are refused before any parser sees the document.
pub fn from_metadata(xml: &str) -> Result<SamlConfig, String> {
    reject_dtd(xml)?;
    if !xml.contains("EntityDescriptor") {
        return Err(NOT_METADATA.into());
    }
    let entity: EntityDescriptor = xml.parse().map_err(|e| {
        tracing::debug!(error = %e, "IdP metadata did not parse");
        NOT_METADATA.to_string()
    })?;
    let entity_id = entity.entity_id.clone().ok_or("metadata has no entityID")?;
    let idp = entity
        .idp_sso_descriptors
        .as_ref()
        .and_then(|d| d.first())
        .ok_or("metadata has no IDPSSODescriptor")?;
    let sso_url = idp
        .single_sign_on_services
        .iter()
        .find(|s| s.binding == REDIRECT_BINDING)
        .or_else(|| idp.single_sign_on_services.first())
        .map(|s| s.location.clone())
        .ok_or("metadata has no SingleSignOnService")?;
    let mut certs = Vec::new();
    for kd in &idp.key_descriptors {
        if kd.key_use.as_deref().is_some_and(|u| u == "encryption") {
            continue;
        }
        for c in kd
            .key_info
            .x509_data
            .iter()
            .flat_map(|x| x.certificates.iter())
        {
            let c = normalize_cert(c)?;
            if !certs.contains(&c) {
                certs.push(c);
            }
        }
    }
    if certs.is_empty() {
        return Err("metadata has no IdP signing certificate: a connection without one would accept forged responses".into());
    }
    Ok(SamlConfig {
        idp_entity_id: entity_id,
        sso_url,
        certs,
        idp_initiated: true,
        preset: None,
        clock_skew_secs: DEFAULT_SKEW_SECS,
        sign_requests: idp.want_authn_requests_signed.unwrap_or(false),
        metadata_url: None,
        attribute_map: Default::default(),
    })
}

/// The document must be UTF-8 as it claims: a declaration of any other encoding (UTF-7's
/// `+ADw-` for `<` hides a DOCTYPE or a second Assertion from every text check here, while
/// libxml2 decodes it), and NUL bytes (UTF-16 without a byte-order mark reads as ASCII with
/// NULs), are refused.
pub fn reject_encoding(xml: &str) -> Result<(), String> {
    if xml.contains('\0') {
        return Err("the XML document contains NUL bytes (UTF-16/32 is not accepted)".into());
    }
    let doc = xml.trim_start_matches('\u{feff}').trim_start();
    let Some(rest) = doc.strip_prefix("<?xml") else {
        return Ok(());
    };
    let Some(end) = rest.find("?>") else {
        return Err("the XML declaration is not closed".into());
    };
    let decl = &rest[..end];
    let Some(i) = decl.find("encoding") else {
        return Ok(());
    };
    let value = decl[i + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')
        .map(str::trim_start)
        .and_then(|v| {
            let quote = v.chars().next().filter(|q| *q == '"' || *q == '\'')?;
            v[1..].split(quote).next()
        })
        .ok_or_else(|| "the XML declaration's encoding is malformed".to_string())?;
    if value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8") {
        Ok(())
    } else {
        Err(format!(
            "the XML document declares encoding {value:?}; only UTF-8 is accepted"
        ))
    }
}

/// Refuses DTDs and entity declarations, and any encoding but UTF-8 (which would hide them).
pub fn reject_dtd(xml: &str) -> Result<(), String> {
    reject_encoding(xml)?;
    let upper = xml.to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err("XML with a DOCTYPE or ENTITY declaration is refused".into());
    }
    Ok(())
}

impl SamlConfig {
    /// A connection started from a setup guide before the IdP's settings are known: the SP
    /// values exist (the IdP console asks for them first); it signs nobody in until the IdP's
    /// metadata is entered.
    pub fn pending(preset: Option<String>) -> SamlConfig {
        SamlConfig {
            idp_entity_id: String::new(),
            sso_url: String::new(),
            certs: Vec::new(),
            idp_initiated: true,
            preset,
            clock_skew_secs: DEFAULT_SKEW_SECS,
            sign_requests: false,
            metadata_url: None,
            attribute_map: Default::default(),
        }
    }

    /// Whether the IdP's settings are there (see [`SamlConfig::pending`]).
    pub fn configured(&self) -> bool {
        !self.sso_url.is_empty() && !self.certs.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.certs.is_empty() {
            return Err("a SAML connection needs at least one IdP signing certificate".into());
        }
        let url = url::Url::parse(&self.sso_url)
            .map_err(|_| format!("SSO URL `{}` is not a URL", self.sso_url))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("the SSO URL must be http(s)".into());
        }
        if self.idp_entity_id.trim().is_empty() {
            return Err("the IdP entity ID is empty".into());
        }
        if !(0..=3600).contains(&self.clock_skew_secs) {
            return Err("clock skew must be between 0 and 3600 seconds".into());
        }
        for c in &self.certs {
            normalize_cert(c)?;
        }
        if let Some(k) = self
            .attribute_map
            .keys()
            .find(|k| !MAPPABLE.contains(&k.as_str()))
        {
            return Err(format!(
                "unknown attribute mapping `{k}` (one of {})",
                MAPPABLE.join(", ")
            ));
        }
        Ok(())
    }
}

/// Attribute names per IdP preset (conformance.md), checked in order.
pub struct AttributeNames {
    pub email: &'static [&'static str],
    pub given_name: &'static [&'static str],
    pub family_name: &'static [&'static str],
    pub display_name: &'static [&'static str],
    pub groups: &'static [&'static str],
}

const ENTRA_EMAIL: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress";
const ENTRA_GIVEN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname";
const ENTRA_SURNAME: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname";
const ENTRA_NAME: &str = "http://schemas.microsoft.com/identity/claims/displayname";
const ENTRA_GROUPS: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups";

pub const PRESETS: &[&str] = &["okta", "entra", "google", "onelogin", "jumpcloud"];

pub fn attribute_names(preset: Option<&str>) -> AttributeNames {
    match preset {
        Some("okta") => AttributeNames {
            email: &["email"],
            given_name: &["firstName"],
            family_name: &["lastName"],
            display_name: &["displayName"],
            groups: &["groups"],
        },
        Some("entra") => AttributeNames {
            email: &[ENTRA_EMAIL],
            given_name: &[ENTRA_GIVEN],
            family_name: &[ENTRA_SURNAME],
            display_name: &[ENTRA_NAME],
            groups: &[ENTRA_GROUPS],
        },
        Some("google") => AttributeNames {
            email: &["email"],
            given_name: &["firstName", "first_name"],
            family_name: &["lastName", "last_name"],
            display_name: &["displayName"],
            groups: &["groups"],
        },
        Some("onelogin") => AttributeNames {
            email: &["User.email"],
            given_name: &["User.FirstName"],
            family_name: &["User.LastName"],
            display_name: &["User.DisplayName"],
            groups: &["memberOf"],
        },
        Some("jumpcloud") => AttributeNames {
            email: &["email"],
            given_name: &["firstname"],
            family_name: &["lastname"],
            display_name: &["displayname"],
            groups: &["memberOf"],
        },
        // No preset: the union of the names above.
        _ => AttributeNames {
            email: &[
                "email",
                ENTRA_EMAIL,
                "User.email",
                "mail",
                "urn:oid:0.9.2342.19200300.100.1.3",
            ],
            given_name: &[
                "firstName",
                ENTRA_GIVEN,
                "User.FirstName",
                "firstname",
                "givenName",
                "urn:oid:2.5.4.42",
            ],
            family_name: &[
                "lastName",
                ENTRA_SURNAME,
                "User.LastName",
                "lastname",
                "surname",
                "sn",
                "urn:oid:2.5.4.4",
            ],
            display_name: &["displayName", ENTRA_NAME, "User.DisplayName", "displayname"],
            groups: &["groups", ENTRA_GROUPS, "memberOf"],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_without_a_signing_certificate_is_refused() {
        let xml = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.test">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.test/sso"/>
  </md:IDPSSODescriptor></md:EntityDescriptor>"#;
        let err = from_metadata(xml).unwrap_err();
        assert!(err.contains("no IdP signing certificate"), "{err}");
        assert!(from_metadata(&format!("<!DOCTYPE x []>{xml}"))
            .unwrap_err()
            .contains("DOCTYPE"));
    }
}
