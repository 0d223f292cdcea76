//! An OIDC connection's settings: the issuer (discovered), the client id (the secret is sealed
//! in the connection row, never here), the preset, the groups claim, the Entra tenant
//! allowlist and the clock leeway.

use serde::{Deserialize, Serialize};

pub const PRESETS: &[&str] = &["generic", "entra", "google", "okta"];
pub const DEFAULT_LEEWAY_SECS: i64 = 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub preset: Option<String>,
    /// The claim (in the ID token or from userinfo) that lists the user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Entra tenant ids allowed to sign in (required for a multi-tenant issuer).
    #[serde(default)]
    pub tenant_allow: Vec<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Allowed clock difference with the IdP for `exp` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: i64,
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_leeway() -> i64 {
    DEFAULT_LEEWAY_SECS
}

/// Entra's multi-tenant endpoints publish an issuer with this placeholder.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

impl OidcConfig {
    /// A connection started from a setup guide before the IdP's client is registered (the
    /// redirect URI comes first).
    pub fn pending(preset: Option<String>) -> OidcConfig {
        OidcConfig {
            issuer: String::new(),
            client_id: String::new(),
            preset,
            groups_claim: default_groups_claim(),
            tenant_allow: Vec::new(),
            scopes: default_scopes(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Whether the IdP's settings are there (see [`OidcConfig::pending`]).
    pub fn configured(&self) -> bool {
        !self.issuer.is_empty() && !self.client_id.is_empty()
    }

    /// Entra never sends `email_verified`; every other preset must assert it.
    pub fn requires_email_verified(&self) -> bool {
        self.preset.as_deref() != Some("entra")
    }

    /// Google Workspace accounts carry `hd` (the Workspace domain); consumer accounts don't.
    pub fn requires_hosted_domain(&self) -> bool {
        self.preset.as_deref() == Some("google")
    }

    /// An Entra issuer that is not one tenant (`common`, `organizations`, `consumers`).
    pub fn is_multi_tenant(&self) -> bool {
        self.preset.as_deref() == Some("entra")
            && ["/common/", "/organizations/", "/consumers/"]
                .iter()
                .any(|p| self.issuer.contains(p))
    }

    pub fn validate(&self) -> Result<(), String> {
        let url = url::Url::parse(&self.issuer)
            .map_err(|_| format!("the issuer `{}` is not a URL", self.issuer))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!("the issuer `{}` must be an https URL", self.issuer));
        }
        if self.client_id.trim().is_empty() {
            return Err("the client id is empty".into());
        }
        if let Some(p) = &self.preset {
            if !PRESETS.contains(&p.as_str()) {
                return Err(format!(
                    "unknown preset `{p}` (one of {})",
                    PRESETS.join(", ")
                ));
            }
        }
        if self.is_multi_tenant() && self.tenant_allow.is_empty() {
            return Err(
                "a multi-tenant Entra issuer lets any Microsoft tenant sign in: name the allowed tenant ids with --tenant-allow"
                    .into(),
            );
        }
        if !(0..=600).contains(&self.leeway_secs) {
            return Err("the clock leeway must be between 0 and 600 seconds".into());
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err("the scopes must include `openid`".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(issuer: &str, preset: Option<&str>) -> OidcConfig {
        OidcConfig {
            issuer: issuer.into(),
            client_id: "c".into(),
            preset: preset.map(Into::into),
            groups_claim: default_groups_claim(),
            tenant_allow: vec![],
            scopes: default_scopes(),
            leeway_secs: 60,
        }
    }

    #[test]
    fn multi_tenant_entra_needs_an_allowlist() {
        let mut c = cfg(
            "https://login.microsoftonline.com/organizations/v2.0",
            Some("entra"),
        );
        assert!(c.validate().unwrap_err().contains("--tenant-allow"));
        c.tenant_allow = vec!["t1".into()];
        assert!(c.validate().is_ok());
        assert!(!c.requires_email_verified());
        assert!(
            cfg("https://login.microsoftonline.com/t1/v2.0", Some("entra"))
                .validate()
                .is_ok()
        );
        assert!(cfg("https://accounts.google.com", Some("google")).requires_email_verified());
        assert!(cfg("ftp://x", None).validate().is_err());
    }
}
