//! Connections imported from a metadata URL are refreshed periodically (IdPs rotate their
//! signing certificates there) through the guarded outbound client. A refresh that fails
//! keeps the current settings and is logged and audited; a changed certificate set is audited.

use std::time::Duration;

use serde_json::json;

use super::config::{self, SamlConfig};
use crate::audit::{self, Event, Outcome};
use crate::db::{write_tx, Db, DbConn};
use crate::identity::IdentityError;
use crate::sso::connections::{self, Connection};

pub const REFRESH_EVERY: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, PartialEq, Eq)]
pub enum Refreshed {
    Unchanged,
    Updated {
        certs_before: usize,
        certs_after: usize,
    },
}

/// Fetches and applies the metadata of one connection (blocking: outbound HTTP + DB).
pub fn refresh_one(
    db: &Db,
    c: &Connection,
    allow_private: bool,
    now: i64,
) -> anyhow::Result<Refreshed> {
    let mut cfg: SamlConfig = serde_json::from_str(&c.config)?;
    let url = cfg.metadata_url.clone().ok_or_else(|| {
        anyhow::anyhow!("connection {} was not imported from a metadata URL", c.id)
    })?;
    let fetched = crate::outbound::get_text(&url, allow_private)
        .map_err(anyhow::Error::from)
        .and_then(|xml| config::from_metadata(&xml).map_err(anyhow::Error::msg));
    let mut conn = db.conn()?;
    let fresh = match fetched {
        Ok(f) => f,
        Err(e) => {
            let event = Event::new(Some(&c.org_id), "gatehouse", "connection.metadata_refresh")
                .outcome(Outcome::Failure)
                .payload(json!({"connection": c.id, "url": url, "cause": format!("{e:#}")}));
            audit::record(&mut conn, &event, now)?;
            return Err(e);
        }
    };
    if fresh.certs == cfg.certs
        && fresh.sso_url == cfg.sso_url
        && fresh.idp_entity_id == cfg.idp_entity_id
    {
        return Ok(Refreshed::Unchanged);
    }
    let before = cfg.certs.len();
    cfg.certs = fresh.certs;
    cfg.sso_url = fresh.sso_url;
    cfg.idp_entity_id = fresh.idp_entity_id;
    cfg.validate().map_err(anyhow::Error::msg)?;
    let after = cfg.certs.len();
    write_tx(
        &mut conn,
        |conn: &mut DbConn| -> Result<(), IdentityError> {
            connections::update_config(
                conn,
                &c.id,
                &serde_json::to_value(&cfg).map_err(anyhow::Error::from)?,
                now,
            )?;
            audit::record(
            conn,
            &Event::new(Some(&c.org_id), "gatehouse", "connection.metadata_refresh").payload(json!({
                "connection": c.id, "url": url, "idp_entity_id": cfg.idp_entity_id,
                "certificates": cfg.certs.iter().filter_map(|x| config::cert_info(x)).collect::<Vec<_>>(),
            })),
            now,
        )?;
            Ok(())
        },
    )?;
    Ok(Refreshed::Updated {
        certs_before: before,
        certs_after: after,
    })
}

/// Every few hours, every SAML connection with a metadata URL.
pub fn spawn(db: Db, allow_private: bool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            tick.tick().await;
            let db2 = db.clone();
            let result = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let all = connections::with_metadata_url(&mut *db2.conn()?)?;
                for c in all {
                    if let Err(e) = refresh_one(&db2, &c, allow_private, crate::clock::now()) {
                        tracing::warn!(connection = %c.id, error = format!("{e:#}"), "SAML metadata refresh failed; keeping the current settings");
                    }
                }
                Ok(())
            })
            .await;
            if let Ok(Err(e)) = result {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "SAML metadata refresh round failed"
                );
            }
        }
    });
}
