//! `gatehouse connection add-saml | list`.

use clap::{ArgGroup, Subcommand};
use serde_json::{json, Value};

use crate::config::Settings;
use crate::db::write_tx;
use crate::identity::{orgs, IdentityError};
use crate::saml::config::{self as saml_config, cert_info, SamlConfig, PRESETS};
use crate::saml::routes::{acs_url, login_url, sp_entity_id};
use crate::sso::connections;

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum ConnectionCommand {
    /// Add a SAML connection from IdP metadata (file or URL) or explicit settings.
    #[command(group(ArgGroup::new("source").required(true).args(["metadata_file", "metadata_url", "entity_id"])))]
    AddSaml {
        org: String,
        #[arg(long = "metadata-file", value_name = "FILE")]
        metadata_file: Option<std::path::PathBuf>,
        #[arg(long = "metadata-url", value_name = "URL")]
        metadata_url: Option<String>,
        #[arg(long = "entity-id", requires_all = ["sso_url", "cert_file"])]
        entity_id: Option<String>,
        #[arg(long = "sso-url")]
        sso_url: Option<String>,
        #[arg(long = "cert-file", value_name = "FILE")]
        cert_file: Option<std::path::PathBuf>,
        #[arg(long)]
        name: Option<String>,
        /// Accept unsolicited (IdP-initiated) sign-ins, e.g. from Okta or Entra app tiles.
        #[arg(long = "idp-initiated", default_value_t = true, action = clap::ArgAction::Set)]
        idp_initiated: bool,
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
        preset: Option<String>,
        /// An IdP attribute name for a field, overriding the preset: `email=mail`,
        /// `groups=memberOf` (fields: email, given_name, family_name, display_name, groups).
        #[arg(long = "attribute", value_name = "FIELD=NAME")]
        attributes: Vec<String>,
        /// Allowed clock difference with the IdP, in seconds.
        #[arg(long = "clock-skew", default_value_t = saml_config::DEFAULT_SKEW_SECS)]
        clock_skew: i64,
    },
    /// List an org's connections.
    List { org: String },
    /// Fetch a connection's metadata URL again now (gatehouse also does it every 6 hours).
    Refresh { org: String, id: String },
}

fn describe(settings: &Settings, c: &connections::Connection) -> Value {
    let cfg: Option<SamlConfig> = serde_json::from_str(&c.config).ok();
    json!({
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "enabled": c.enabled,
        "sp_entity_id": sp_entity_id(settings, &c.id),
        "acs_url": acs_url(settings, &c.id),
        "metadata_url": sp_entity_id(settings, &c.id),
        "login_url": login_url(settings, &c.id),
        "idp_entity_id": cfg.as_ref().map(|c| c.idp_entity_id.clone()),
        "idp_sso_url": cfg.as_ref().map(|c| c.sso_url.clone()),
        "idp_initiated": cfg.as_ref().map(|c| c.idp_initiated),
        "preset": cfg.as_ref().and_then(|c| c.preset.clone()),
        "attribute_map": cfg.as_ref().map(|c| c.attribute_map.clone()),
        "idp_certificates": cfg.as_ref().map(|c| c.certs.iter().filter_map(|x| cert_info(x)).collect::<Vec<_>>()),
        "last_success_at": c.last_success_at,
    })
}

pub fn run(
    settings: &Settings,
    db: &crate::db::Db,
    command: ConnectionCommand,
    json_out: bool,
    now: i64,
) -> anyhow::Result<()> {
    match command {
        ConnectionCommand::AddSaml {
            org,
            metadata_file,
            metadata_url,
            entity_id,
            sso_url,
            cert_file,
            name,
            idp_initiated,
            preset,
            attributes,
            clock_skew,
        } => {
            let mut cfg = if let Some(path) = metadata_file {
                let xml = std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                saml_config::from_metadata(&xml).map_err(anyhow::Error::msg)?
            } else if let Some(url) = metadata_url {
                let xml = crate::outbound::get_text(&url, settings.outbound_allow_private)?;
                let mut cfg = saml_config::from_metadata(&xml).map_err(anyhow::Error::msg)?;
                cfg.metadata_url = Some(url);
                cfg
            } else {
                let (entity_id, sso_url, cert_file) = match (entity_id, sso_url, cert_file) {
                    (Some(e), Some(s), Some(c)) => (e, s, c),
                    _ => anyhow::bail!("--entity-id needs --sso-url and --cert-file"),
                };
                let pem = std::fs::read_to_string(&cert_file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cert_file.display()))?;
                SamlConfig {
                    idp_entity_id: entity_id,
                    sso_url,
                    certs: vec![saml_config::normalize_cert(&pem).map_err(anyhow::Error::msg)?],
                    idp_initiated: true,
                    preset: None,
                    clock_skew_secs: saml_config::DEFAULT_SKEW_SECS,
                    sign_requests: false,
                    metadata_url: None,
                    attribute_map: Default::default(),
                }
            };
            for a in &attributes {
                let (field, name) = a
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--attribute takes FIELD=NAME, got `{a}`"))?;
                cfg.attribute_map
                    .insert(field.trim().to_string(), name.trim().to_string());
            }
            cfg.idp_initiated = idp_initiated;
            cfg.preset = preset.clone();
            cfg.clock_skew_secs = clock_skew;
            cfg.validate().map_err(anyhow::Error::msg)?;
            let name = name.unwrap_or_else(|| {
                preset
                    .clone()
                    .map(|p| format!("{p} SAML"))
                    .unwrap_or_else(|| "SAML".into())
            });
            let mut conn = db.conn()?;
            let c = write_tx(&mut conn, |c| -> Result<_, IdentityError> {
                let o = orgs::find(c, &org)?;
                let created = connections::create(
                    c,
                    &o.id,
                    "saml",
                    &name,
                    &serde_json::to_value(&cfg).map_err(anyhow::Error::from)?,
                    now,
                )?;
                crate::audit::record(
                    c,
                    &crate::audit::Event::new(Some(&o.id), "cli", "connection.add").payload(json!({"id": created.id, "kind": "saml", "idp_entity_id": cfg.idp_entity_id, "idp_initiated": cfg.idp_initiated})),
                    now,
                )?;
                Ok(created)
            })?;
            let v = describe(settings, &c);
            if json_out {
                println!("{v}");
            } else {
                println!("added SAML connection {} ({})", c.id, c.name);
                for k in ["sp_entity_id", "acs_url", "metadata_url", "login_url"] {
                    println!("{k}: {}", v[k].as_str().unwrap_or_default());
                }
            }
        }
        ConnectionCommand::Refresh { org, id } => {
            let mut conn = db.conn()?;
            let o = orgs::find(&mut conn, &org)?;
            let c = connections::get(&mut conn, &id)?
                .filter(|c| c.org_id == o.id)
                .ok_or_else(|| anyhow::anyhow!("no connection {id} in {}", o.slug))?;
            drop(conn);
            let result =
                crate::saml::refresh::refresh_one(db, &c, settings.outbound_allow_private, now)?;
            let text = match result {
                crate::saml::refresh::Refreshed::Unchanged => "unchanged".to_string(),
                crate::saml::refresh::Refreshed::Updated {
                    certs_before,
                    certs_after,
                } => {
                    format!("updated ({certs_before} -> {certs_after} certificate(s))")
                }
            };
            if json_out {
                println!("{}", json!({"id": c.id, "result": text}));
            } else {
                println!("{}: {text}", c.id);
            }
        }
        ConnectionCommand::List { org } => {
            let mut conn = db.conn()?;
            let o = orgs::find(&mut conn, &org)?;
            let all = connections::list(&mut conn, &o.id)?;
            let out: Vec<Value> = all.iter().map(|c| describe(settings, c)).collect();
            if json_out {
                println!("{}", Value::Array(out));
            } else {
                for v in out {
                    println!(
                        "{}\t{}\t{}\tenabled={}\tacs={}",
                        v["id"].as_str().unwrap_or_default(),
                        v["kind"].as_str().unwrap_or_default(),
                        v["name"].as_str().unwrap_or_default(),
                        v["enabled"],
                        v["acs_url"].as_str().unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}
