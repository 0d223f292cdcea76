//! `gatehouse app …`: the OpenID Connect clients (apps) that sign users in through gatehouse.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::identity::{record, Ctx};
use crate::db::ids::OrgId;
use crate::identity::{orgs, IdentityError};
use crate::provider::apps::{self, App, AppSpec};

#[derive(Subcommand, Debug)]
pub enum AppCommand {
    /// Register an app; prints its client_id and, for a confidential app, its client secret
    /// (shown once).
    Add {
        slug: String,
        #[command(flatten)]
        uris: UriArgs,
        /// A public client (SPA, native app): no secret, PKCE required.
        #[arg(long)]
        public: bool,
        /// `all`, or the orgs (slugs, comma-separated) whose users may sign in.
        #[arg(long, default_value = "all")]
        orgs: String,
        /// RS256 (the default) or ES256.
        #[arg(long, default_value = "RS256")]
        id_token_alg: String,
    },
    /// List apps.
    List,
    /// One app.
    Show { slug: String },
    /// Change an app (what is given replaces what it had).
    Update {
        slug: String,
        #[command(flatten)]
        uris: UriArgs,
        #[arg(long)]
        orgs: Option<String>,
        #[arg(long)]
        id_token_alg: Option<String>,
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
    },
    /// A new client secret (shown once); the old one keeps working for the overlap.
    RotateSecret {
        slug: String,
        /// How long the old secret still works, in hours (0 to 720).
        #[arg(long, default_value_t = apps::DEFAULT_OVERLAP_SECS / 3600)]
        overlap_hours: i64,
    },
    /// Remove an app: its secret stops working at once.
    Remove { slug: String },
}

/// An app's name and URIs (for `add`; for `update`, what is given replaces what it had).
#[derive(Args, Debug)]
pub struct UriArgs {
    #[arg(long)]
    name: Option<String>,
    /// Exact redirect URI (https, or http to localhost); repeat for more.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// Where back-channel logout tokens are POSTed (`none` removes it).
    #[arg(long)]
    backchannel_logout_uri: Option<String>,
}

impl UriArgs {
    /// As a change: only what was given.
    fn spec(self) -> AppSpec {
        AppSpec {
            name: self.name,
            redirect_uris: (!self.redirect_uris.is_empty()).then_some(self.redirect_uris),
            post_logout_redirect_uris: (!self.post_logout_redirect_uris.is_empty())
                .then_some(self.post_logout_redirect_uris),
            backchannel_logout_uri: self
                .backchannel_logout_uri
                .map(|u| (u != "none").then_some(u)),
            ..AppSpec::default()
        }
    }
}

pub(super) fn run(ctx: &Ctx, c: AppCommand) -> anyhow::Result<()> {
    match c {
        AppCommand::Add {
            slug,
            uris,
            public,
            orgs,
            id_token_alg,
        } => {
            let spec = AppSpec {
                orgs: Some(org_ids(ctx, &orgs)?),
                id_token_alg: Some(id_token_alg),
                ..uris.spec()
            };
            let (app, created) = ctx.tx(|c| {
                let (app, created) = apps::add(c, &slug, public, &spec, ctx.now)?;
                let shown = describe(c, &app)?;
                record(c, None, "app.add", shown, ctx.now)?;
                Ok((app, created))
            })?;
            ctx.out(
                json!({"slug": app.slug, "client_id": created.client_id, "client_secret": created.client_secret}),
                || match &created.client_secret {
                    Some(s) => format!(
                        "client_id: {}\nclient_secret: {s}\n(the secret is shown once; gatehouse keeps only its hash)",
                        created.client_id
                    ),
                    None => format!("client_id: {}\n(a public app: no secret; it must use PKCE)", created.client_id),
                },
            );
        }
        AppCommand::List => {
            let all = ctx.read(|c| {
                let all = apps::list(c)?;
                all.iter()
                    .map(|a| describe(c, a))
                    .collect::<Result<Vec<_>, _>>()
            })?;
            ctx.out(Value::Array(all.clone()), || {
                all.iter()
                    .map(|a| {
                        format!(
                            "{}\t{}\t{}\t{}\n",
                            a["slug"].as_str().unwrap_or(""),
                            a["client_id"].as_str().unwrap_or(""),
                            a["type"].as_str().unwrap_or(""),
                            if a["enabled"] == true {
                                "enabled"
                            } else {
                                "disabled"
                            }
                        )
                    })
                    .collect()
            });
        }
        AppCommand::Show { slug } => {
            let shown = ctx.read(|c| {
                let app = apps::get(c, &slug)?;
                describe(c, &app)
            })?;
            ctx.out(shown.clone(), || {
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            });
        }
        AppCommand::Update {
            slug,
            uris,
            orgs,
            id_token_alg,
            disable,
            enable,
        } => {
            let spec = AppSpec {
                orgs: orgs.map(|o| org_ids(ctx, &o)).transpose()?,
                id_token_alg,
                enabled: if disable {
                    Some(false)
                } else if enable {
                    Some(true)
                } else {
                    None
                },
                ..uris.spec()
            };
            let after = ctx.tx(|c| {
                let (before, after) = apps::update(c, &slug, &spec, ctx.now)?;
                let (before, after) = (describe(c, &before)?, describe(c, &after)?);
                record(
                    c,
                    None,
                    "app.update",
                    json!({"slug": slug, "before": before, "after": after}),
                    ctx.now,
                )?;
                Ok(after)
            })?;
            ctx.out(after, || format!("updated app {slug}"));
        }
        AppCommand::RotateSecret {
            slug,
            overlap_hours,
        } => {
            let (app, secret) = ctx.tx(|c| {
                let (app, secret) =
                    apps::rotate_secret(c, &slug, overlap_hours.saturating_mul(3600), ctx.now)?;
                record(
                    c,
                    None,
                    "app.rotate_secret",
                    json!({"slug": slug, "previous_secret_until": app.previous_secret_until, "client_secret": "(shown once)"}),
                    ctx.now,
                )?;
                Ok((app, secret))
            })?;
            ctx.out(
                json!({"slug": app.slug, "client_id": app.client_id, "client_secret": secret, "previous_secret_until": app.previous_secret_until}),
                || {
                    format!(
                        "client_secret: {secret}\n(shown once; the previous secret {})",
                        match app.previous_secret_until {
                            Some(t) => format!("works until {}", crate::clock::rfc3339(t)),
                            None => "stopped working now".into(),
                        }
                    )
                },
            );
        }
        AppCommand::Remove { slug } => {
            ctx.tx(|c| {
                let app = apps::remove(c, &slug)?;
                let shown = describe(c, &app)?;
                record(c, None, "app.remove", shown, ctx.now)?;
                Ok(())
            })?;
            ctx.out(json!({"removed": slug}), || format!("removed app {slug}"));
        }
    }
    Ok(())
}

/// `all` or org slugs → `None` (every org) or their ids.
fn org_ids(ctx: &Ctx, given: &str) -> anyhow::Result<Option<Vec<OrgId>>> {
    if given.trim() == "all" {
        return Ok(None);
    }
    let mut out = Vec::new();
    for slug in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.push(ctx.org(slug)?.id);
    }
    if out.is_empty() {
        anyhow::bail!("--orgs takes `all` or org slugs");
    }
    Ok(Some(out))
}

/// The app as shown, its orgs by slug.
fn describe(conn: &mut crate::db::DbConn, app: &App) -> Result<Value, IdentityError> {
    let mut slugs = Vec::new();
    for id in app.orgs().unwrap_or_default() {
        slugs.push(orgs::get(conn, &OrgId::from(id))?.slug);
    }
    Ok(app.describe(&slugs))
}
