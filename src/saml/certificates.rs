//! IdP signing-certificate expiry: exported as a metric, and warned about in the log when a
//! certificate expires within 30 days (sign-ins stop the day it expires at the IdP's side).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use diesel::prelude::*;

use super::config::{cert_not_after, fingerprint, SamlConfig};
use crate::db::schema::{connections, organizations};
use crate::db::{DbConn, DbError};

pub const WARN_DAYS: i64 = 30;

pub struct Expiry {
    pub org: String,
    pub connection: String,
    pub sha256: String,
    pub not_after: i64,
}

pub fn expiries(conn: &mut DbConn) -> Result<Vec<Expiry>, DbError> {
    let rows: Vec<(String, String, String)> = connections::table
        .inner_join(organizations::table)
        .filter(connections::kind.eq("saml"))
        .filter(connections::enabled.eq(true))
        .select((organizations::slug, connections::id, connections::config))
        .load(conn)?;
    let now = crate::clock::now();
    let mut out = Vec::new();
    for (org, connection, config) in rows {
        let Ok(cfg) = serde_json::from_str::<SamlConfig>(&config) else {
            continue;
        };
        for cert in &cfg.certs {
            let (Some(not_after), Ok(der)) = (cert_not_after(cert), B64.decode(cert)) else {
                continue;
            };
            let sha256 = fingerprint(&der);
            if not_after - now < WARN_DAYS * 86_400 {
                tracing::warn!(org = %org, connection = %connection, sha256 = %sha256, days_left = (not_after - now) / 86_400, "IdP signing certificate expires soon: import the IdP's new certificate");
            }
            out.push(Expiry {
                org: org.clone(),
                connection: connection.clone(),
                sha256,
                not_after,
            });
        }
    }
    Ok(out)
}
