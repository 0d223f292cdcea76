//! `gatehouse connection add-saml | add-oidc | list | refresh`.

use clap::{ArgGroup, Subcommand};
use serde_json::{json, Value};

use crate::config::Settings;
use crate::db::write_tx;
use crate::identity::{orgs, IdentityError};
use crate::oidc::config::{self as oidc_config, OidcConfig};
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
        /// Create it as a draft: offered to nobody until `connection activate` (its admins
        /// can still run Test sign-in from the admin UI).
        #[arg(long)]
        draft: bool,
    },
    /// Add an OpenID Connect connection (the issuer is discovered now, to check it).
    AddOidc {
        org: String,
        /// The issuer URL (its /.well-known/openid-configuration is read).
        #[arg(long)]
        issuer: String,
        #[arg(long = "client-id")]
        client_id: String,
        /// The environment variable that holds the client secret (never a command-line
        /// argument: those show up in process lists and shell history).
        #[arg(long = "client-secret-env", value_name = "VAR")]
        client_secret_env: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(oidc_config::PRESETS))]
        preset: Option<String>,
        /// The claim that lists the user's groups.
        #[arg(long = "groups-claim", default_value = "groups")]
        groups_claim: String,
        /// An Entra tenant id allowed to sign in (repeat for several; required for a
        /// multi-tenant issuer such as .../organizations/v2.0).
        #[arg(long = "tenant-allow", value_name = "ID")]
        tenant_allow: Vec<String>,
        /// Allowed clock difference with the IdP, in seconds.
        #[arg(long = "clock-leeway", default_value_t = oidc_config::DEFAULT_LEEWAY_SECS)]
        clock_leeway: i64,
        /// Create it as a draft: offered to nobody until `connection activate`.
        #[arg(long)]
        draft: bool,
    },
    /// Make a draft connection live: offered to the org's users from now on.
    Activate { org: String, id: String },
    /// List an org's connections.
    List { org: String },
    /// Fetch a connection's metadata URL again now (gatehouse also does it every 6 hours).
    Refresh { org: String, id: String },
}

fn describe(settings: &Settings, c: &connections::Connection) -> Value {
    if c.kind == "oidc" {
        let cfg: Option<OidcConfig> = serde_json::from_str(&c.config).ok();
        return json!({
            "id": c.id,
            "kind": c.kind,
            "name": c.name,
            "enabled": c.enabled,
            "draft": c.draft,
            "tested_at": c.tested_at,
            "redirect_uri": crate::oidc::routes::redirect_uri(settings, &c.id),
            "login_url": crate::oidc::routes::login_url(settings, &c.id),
            "issuer": cfg.as_ref().map(|c| c.issuer.clone()),
            "client_id": cfg.as_ref().map(|c| c.client_id.clone()),
            "client_secret": if c.secret_enc.is_some() { "(set, write-only)" } else { "(missing)" },
            "preset": cfg.as_ref().and_then(|c| c.preset.clone()),
            "groups_claim": cfg.as_ref().map(|c| c.groups_claim.clone()),
            "tenant_allow": cfg.as_ref().map(|c| c.tenant_allow.clone()),
            "last_success_at": c.last_success_at,
        });
    }
    let cfg: Option<SamlConfig> = serde_json::from_str(&c.config).ok();
    json!({
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "enabled": c.enabled,
        "draft": c.draft,
        "tested_at": c.tested_at,
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
    key: &crate::crypto::SecretKey,
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
            draft,
        } => {
            let source = if let Some(path) = metadata_file {
                saml_config::Source::MetadataXml(
                    std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
                )
            } else if let Some(url) = metadata_url {
                saml_config::Source::MetadataUrl(url)
            } else {
                let (entity_id, sso_url, cert_file) = match (entity_id, sso_url, cert_file) {
                    (Some(e), Some(s), Some(c)) => (e, s, c),
                    _ => anyhow::bail!("--entity-id needs --sso-url and --cert-file"),
                };
                saml_config::Source::Explicit {
                    entity_id,
                    sso_url,
                    cert_pem: std::fs::read_to_string(&cert_file)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", cert_file.display()))?,
                }
            };
            let mut cfg = saml_config::from_source(source, settings.outbound_allow_private)
                .map_err(anyhow::Error::msg)?;
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
                    draft,
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
        ConnectionCommand::Activate { org, id } => {
            let mut conn = db.conn()?;
            let c = write_tx(&mut conn, |c| -> Result<_, IdentityError> {
                let o = orgs::find(c, &org)?;
                let found = connections::get_in_org(c, &o.id, &id)?.ok_or_else(|| {
                    IdentityError::NotFound(format!("connection {id} in {}", o.slug))
                })?;
                if found.draft {
                    connections::activate(c, &found.id, now)?;
                    crate::audit::record(
                        c,
                        &crate::audit::Event::new(Some(&o.id), "cli", "admin.connection.activate")
                            .payload(json!({"id": found.id, "tested": found.tested_at.is_some()})),
                        now,
                    )?;
                }
                Ok((found.draft, found.tested_at.is_some()))
            })?;
            let text = match c {
                (false, _) => "already active",
                (true, true) => "activated",
                (true, false) => "activated (it has not passed a Test sign-in yet)",
            };
            if json_out {
                println!("{}", json!({"id": id, "result": text}));
            } else {
                println!("{id}: {text}");
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
        ConnectionCommand::AddOidc {
            org,
            issuer,
            client_id,
            client_secret_env,
            name,
            preset,
            groups_claim,
            tenant_allow,
            clock_leeway,
            draft,
        } => {
            let secret = std::env::var(&client_secret_env)
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "the environment variable {client_secret_env} (--client-secret-env) is not set"
                    )
                })?;
            let cfg = OidcConfig {
                issuer: issuer.trim_end_matches('/').to_string(),
                client_id,
                preset: preset.clone(),
                groups_claim,
                tenant_allow,
                scopes: vec!["openid".into(), "email".into(), "profile".into()],
                leeway_secs: clock_leeway,
            };
            cfg.validate().map_err(anyhow::Error::msg)?;
            // Discover now: a wrong issuer is reported here, not at the first sign-in.
            crate::oidc::provider::probe(&cfg, settings.outbound_allow_private, now)
                .map_err(|f| anyhow::anyhow!("OpenID discovery failed: {}", f.0))?;
            let name = name.unwrap_or_else(|| {
                preset
                    .clone()
                    .map(|p| format!("{p} OIDC"))
                    .unwrap_or_else(|| "OIDC".into())
            });
            let mut conn = db.conn()?;
            let c = write_tx(&mut conn, |c| -> Result<_, IdentityError> {
                let o = orgs::find(c, &org)?;
                crate::oidc::routes::store_connection(
                    c, key, &o.id, "cli", &name, &cfg, &secret, draft, now,
                )
            })?;
            let v = describe(settings, &c);
            if json_out {
                println!("{v}");
            } else {
                println!("added OIDC connection {} ({})", c.id, c.name);
                for k in ["redirect_uri", "login_url"] {
                    println!("{k}: {}", v[k].as_str().unwrap_or_default());
                }
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
                    let endpoint = match v["kind"].as_str() {
                        Some("oidc") => format!(
                            "redirect_uri={}",
                            v["redirect_uri"].as_str().unwrap_or_default()
                        ),
                        _ => format!("acs={}", v["acs_url"].as_str().unwrap_or_default()),
                    };
                    println!(
                        "{}\t{}\t{}\tenabled={}{}\t{endpoint}",
                        v["id"].as_str().unwrap_or_default(),
                        v["kind"].as_str().unwrap_or_default(),
                        v["name"].as_str().unwrap_or_default(),
                        v["enabled"],
                        if v["draft"] == true { "\tdraft" } else { "" },
                    );
                }
            }
        }
    }
    Ok(())
}
