//! Operator commands on orgs, domains, enforcement, roles, SCIM tokens, users, instance admins,
//! keys and the audit log. Each change commits together with its audit event (actor `cli`).

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use secrecy::SecretString;
use serde_json::{json, Value};

use super::Command;
use crate::audit::{self, Event};
use crate::clock::{self, rfc3339};
use crate::config::Settings;
use crate::crypto::SecretKey;
use crate::db::ids::OrgId;
use crate::db::{write_tx, Db, DbConn};
use crate::domain::{DomainName, Email, Enforcement, Slug, UserSource};
use crate::identity::orgs::{OrgChanges, Organization};
use crate::identity::{
    admins, domains, enforcement, keys, orgs, roles, scim_tokens, users, IdentityError,
};
use crate::login::{password, totp};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create an org; domains given here are verified (the operator vouches for them).
    Create {
        slug: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "domain", value_name = "DOMAIN")]
        domains: Vec<String>,
    },
    /// List orgs.
    List,
    /// Change an org's settings.
    Set {
        org: String,
        #[arg(long)]
        jit: Option<OnOff>,
        #[arg(long = "default-role", value_name = "ROLE")]
        default_role: Option<String>,
        /// Idle session lifetime in minutes.
        #[arg(long = "session-idle", value_name = "MIN")]
        session_idle: Option<i32>,
        /// Absolute session lifetime in minutes.
        #[arg(long = "session-max", value_name = "MIN")]
        session_max: Option<i32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainCommand {
    /// Add a domain to an org.
    Add {
        org: String,
        domain: String,
        #[arg(long)]
        verified: bool,
        #[arg(long)]
        enforce: bool,
    },
    /// Change an existing domain's flags (only those given).
    Set {
        org: String,
        domain: String,
        #[arg(long, value_name = "true|false")]
        verified: Option<bool>,
        #[arg(long, value_name = "true|false")]
        enforce: Option<bool>,
    },
    /// Remove a domain from an org.
    Remove { org: String, domain: String },
    /// List an org's domains.
    List { org: String },
}

#[derive(Subcommand, Debug)]
pub enum EnforcementCommand {
    /// Set the mode: off, domains (enforced domains must use SSO) or all.
    Set { org: String, mode: String },
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Add an app role; a higher rank wins when several mappings match.
    Add {
        org: String,
        name: String,
        #[arg(long)]
        rank: i32,
    },
    /// Map an IdP group (displayName or value) to a role.
    Map {
        org: String,
        group: String,
        role: String,
    },
    /// List roles and mappings.
    List { org: String },
}

#[derive(Subcommand, Debug)]
pub enum ScimTokenCommand {
    /// Issue a token; prints it once, alone on one line.
    Issue {
        org: String,
        #[arg(long = "revoke-others")]
        revoke_others: bool,
    },
    /// List tokens (prefix, created, last used, revoked).
    List { org: String },
    /// Revoke a token by id.
    Revoke { org: String, id: String },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a local account.
    Add {
        org: String,
        email: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long = "org-admin")]
        org_admin: bool,
        /// Read the password from this environment variable (never from the command line).
        #[arg(long = "password-env", value_name = "VAR")]
        password_env: Option<String>,
    },
    /// List an org's users.
    List { org: String },
    /// End every session of a user now.
    RevokeSessions { org: String, user: String },
    /// Change how an account is managed: `--scim-managed` hands a local account over to SCIM
    /// provisioning (SCIM never changes local accounts or org admins otherwise).
    Set {
        org: String,
        user: String,
        #[arg(long = "scim-managed")]
        scim_managed: bool,
    },
    /// Link an account to an IdP identity (connection id + subject: SAML NameID or OIDC `sub`),
    /// e.g. an org admin, whom sign-in never links by e-mail.
    Link {
        org: String,
        user: String,
        #[arg(long)]
        connection: String,
        #[arg(long)]
        subject: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Add an instance admin; prints the TOTP otpauth:// URI once.
    Add {
        email: String,
        #[arg(long = "password-env", value_name = "VAR")]
        password_env: String,
    },
    /// List instance admins.
    List,
}

#[derive(Subcommand, Debug)]
pub enum BreakglassCommand {
    /// Create or mark an org's break-glass account (at most two per org) with a new generated
    /// password and TOTP seed; prints `password: …` and the otpauth:// URI, once.
    Set { org: String, email: String },
    /// List an org's break-glass accounts.
    List { org: String },
    /// Make a break-glass account an ordinary account again (its password and TOTP removed).
    Remove { org: String, email: String },
}

#[derive(Subcommand, Debug)]
pub enum SetupLinkCommand {
    /// Create a link for the org's IT admin; prints its URL once, alone on one line.
    Create {
        org: String,
        /// What it may set up: sso, scim, domains (comma-separated or repeated).
        #[arg(long = "intent", required = true, value_name = "INTENTS")]
        intents: Vec<String>,
        /// How long it lives: `7d` (days, 1 to 30).
        #[arg(long, default_value = "7d")]
        expires: String,
    },
    /// List an org's setup links.
    List { org: String },
    /// Revoke a link: it opens nothing any more and its sessions end.
    Revoke { org: String, id: String },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Add new signing keys; the previous ones stay published during the overlap.
    Rotate,
    /// List signing keys.
    List,
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recent events of an org (or `instance`), newest first.
    List {
        org: String,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Verify an org's (or the instance's) hash chain.
    Verify { org: String },
}

/// Everything an operator command needs.
pub(super) struct Ctx {
    pub(super) db: Db,
    key: SecretKey,
    pub(super) json: bool,
    pub(super) now: i64,
}

impl Ctx {
    /// Runs `f` in one write transaction.
    pub(super) fn tx<T>(
        &self,
        f: impl FnOnce(&mut DbConn) -> Result<T, IdentityError>,
    ) -> anyhow::Result<T> {
        let mut conn = self.db.conn()?;
        Ok(write_tx(&mut conn, f)?)
    }

    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&mut DbConn) -> Result<T, IdentityError>,
    ) -> anyhow::Result<T> {
        let mut conn = self.db.conn()?;
        Ok(f(&mut conn)?)
    }

    pub(super) fn org(&self, key: &str) -> anyhow::Result<Organization> {
        self.read(|c| orgs::find(c, key))
    }

    /// Prints `value` as JSON, or `human` as text.
    pub(super) fn out(&self, value: Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            let text = human();
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }
}

pub(super) fn record(
    conn: &mut DbConn,
    org: Option<&OrgId>,
    action: &str,
    payload: Value,
    now: i64,
) -> Result<(), IdentityError> {
    audit::record(conn, &Event::new(org, "cli", action).payload(payload), now)?;
    Ok(())
}

fn secret_from_env(var: &str) -> anyhow::Result<SecretString> {
    let value =
        std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?;
    password::check_strength(&value).map_err(|e| anyhow::anyhow!(e))?;
    Ok(SecretString::from(value))
}

fn parse<T>(r: Result<T, String>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!(e))
}

pub fn run(settings: &Settings, command: Command, json: bool) -> anyhow::Result<()> {
    let (db, key) = crate::startup::prepare(settings)?;
    let ctx = Ctx {
        db,
        key,
        json,
        now: clock::now(),
    };
    match command {
        Command::Org(c) => org(&ctx, c),
        Command::Domain(c) => domain(&ctx, c),
        Command::Enforcement(EnforcementCommand::Set { org, mode }) => {
            let mode: Enforcement = parse(mode.parse())?;
            let o = ctx.org(&org)?;
            let revoked = ctx.tx(|c| {
                let n = enforcement::set(c, &o.id, mode, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "enforcement.set",
                    json!({"mode": mode.as_str(), "sessions_revoked": n}),
                    ctx.now,
                )?;
                Ok(n)
            })?;
            ctx.out(
                json!({"org": o.slug, "enforcement": mode.as_str(), "sessions_revoked": revoked}),
                || {
                    format!(
                        "enforcement of {} is now {} ({revoked} session(s) revoked)",
                        o.slug,
                        mode.as_str()
                    )
                },
            );
            Ok(())
        }
        Command::Role(c) => role(&ctx, c),
        Command::ScimToken(c) => scim_token(&ctx, c),
        Command::User(c) => user(&ctx, c),
        Command::Admin(c) => admin(&ctx, c),
        Command::Breakglass(c) => breakglass_cmd(&ctx, c),
        Command::SetupLink(c) => setup_link_cmd(&ctx, settings, c),
        Command::Keys(c) => keys_cmd(&ctx, c),
        Command::Audit(c) => audit_cmd(&ctx, c),
        Command::App(c) => super::apps::run(&ctx, c),
        Command::Serve | Command::Migrate | Command::Config(_) | Command::Connection(_) => {
            bail!("not an operator command")
        }
    }
}

fn org_json(o: &Organization, domains: &[domains::Domain]) -> Value {
    json!({
        "id": o.id,
        "slug": o.slug,
        "name": o.name,
        "enforcement": o.enforcement,
        "jit": o.jit_enabled,
        "default_role": o.default_role,
        "session_idle_minutes": o.session_idle_minutes,
        "session_max_minutes": o.session_max_minutes,
        "domains": domains.iter().map(domain_json).collect::<Vec<_>>(),
    })
}

fn org(ctx: &Ctx, c: OrgCommand) -> anyhow::Result<()> {
    match c {
        OrgCommand::Create {
            slug,
            name,
            domains: ds,
        } => {
            let slug = parse(Slug::parse(&slug))?;
            let names: Vec<DomainName> = ds
                .iter()
                .map(|d| parse(DomainName::parse(d)))
                .collect::<Result<_, _>>()?;
            let name = name.unwrap_or_else(|| slug.to_string());
            let (o, ds) = ctx.tx(|c| {
                let o = orgs::create(c, &slug, &name, ctx.now)?;
                let mut added = Vec::new();
                for d in &names {
                    added.push(domains::add(c, &o.id, d, true, false, ctx.now)?);
                }
                let list: Vec<&str> = added.iter().map(|d| d.domain.as_str()).collect();
                record(
                    c,
                    Some(&o.id),
                    "org.create",
                    json!({"slug": o.slug, "name": o.name, "domains": list}),
                    ctx.now,
                )?;
                Ok((o, added))
            })?;
            ctx.out(org_json(&o, &ds), || {
                format!("created org {} ({})", o.slug, o.id)
            });
        }
        OrgCommand::List => {
            let all = ctx.read(|c| {
                orgs::list(c)?
                    .into_iter()
                    .map(|o| {
                        let ds = domains::list(c, &o.id)?;
                        Ok((o, ds))
                    })
                    .collect::<Result<Vec<_>, IdentityError>>()
            })?;
            ctx.out(
                Value::Array(all.iter().map(|(o, d)| org_json(o, d)).collect()),
                || {
                    all.iter()
                        .map(|(o, d)| {
                            let ds: Vec<&str> = d.iter().map(|d| d.domain.as_str()).collect();
                            format!(
                                "{}\t{}\tenforcement={}\tdomains={}\n",
                                o.slug,
                                o.name,
                                o.enforcement,
                                ds.join(",")
                            )
                        })
                        .collect()
                },
            );
        }
        OrgCommand::Set {
            org,
            jit,
            default_role,
            session_idle,
            session_max,
        } => {
            let o = ctx.org(&org)?;
            let changes = OrgChanges {
                jit_enabled: jit.map(|j| matches!(j, OnOff::On)),
                default_role: default_role.map(|r| Some(r).filter(|r| !r.is_empty())),
                session_idle_minutes: session_idle,
                session_max_minutes: session_max,
                ..Default::default()
            };
            let payload = json!({"jit": changes.jit_enabled, "default_role": changes.default_role, "session_idle_minutes": session_idle, "session_max_minutes": session_max});
            let o = ctx.tx(|c| {
                if let Some(Some(role)) = &changes.default_role {
                    if roles::find(c, &o.id, role)?.is_none() {
                        return Err(IdentityError::NotFound(format!(
                            "no role `{role}` (add it first with `role add`)"
                        )));
                    }
                }
                let updated = orgs::update(c, &o.id, changes, ctx.now)?;
                record(c, Some(&o.id), "org.update", payload, ctx.now)?;
                Ok(updated)
            })?;
            let ds = ctx.read(|c| domains::list(c, &o.id))?;
            ctx.out(org_json(&o, &ds), || format!("updated org {}", o.slug));
        }
    }
    Ok(())
}

fn domain_json(d: &domains::Domain) -> Value {
    json!({"domain": d.domain, "verified": d.verified, "enforce": d.enforce})
}

fn domain(ctx: &Ctx, c: DomainCommand) -> anyhow::Result<()> {
    match c {
        DomainCommand::Add {
            org,
            domain,
            verified,
            enforce,
        } => {
            let o = ctx.org(&org)?;
            let name = parse(DomainName::parse(&domain))?;
            let d = ctx.tx(|c| {
                let d = domains::add(c, &o.id, &name, verified, enforce, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "domain.add",
                    json!({"domain": d.domain, "verified": verified, "enforce": enforce}),
                    ctx.now,
                )?;
                if enforce {
                    enforcement::revoke_disqualified(c, &o.id, ctx.now)?;
                }
                Ok(d)
            })?;
            ctx.out(domain_json(&d), || {
                format!(
                    "added {} to {} (verified={}, enforce={})",
                    d.domain, o.slug, d.verified, d.enforce
                )
            });
        }
        DomainCommand::Set {
            org,
            domain,
            verified,
            enforce,
        } => {
            let o = ctx.org(&org)?;
            let name = parse(DomainName::parse(&domain))?;
            if verified.is_none() && enforce.is_none() {
                bail!("nothing to change: give --verified true|false and/or --enforce true|false");
            }
            let d = ctx.tx(|c| {
                let before = domains::find(c, &name)?
                    .filter(|d| d.org_id == o.id)
                    .ok_or_else(|| IdentityError::NotFound(format!("{} has no domain {name}", o.slug)))?;
                let d = domains::set_flags(c, &o.id, &name, verified, enforce)?;
                record(
                    c,
                    Some(&o.id),
                    "domain.update",
                    json!({"domain": d.domain, "before": {"verified": before.verified, "enforce": before.enforce}, "after": {"verified": d.verified, "enforce": d.enforce}}),
                    ctx.now,
                )?;
                if d.enforce && d.verified {
                    enforcement::revoke_disqualified(c, &o.id, ctx.now)?;
                }
                Ok(d)
            })?;
            ctx.out(domain_json(&d), || {
                format!(
                    "{} in {}: verified={}, enforce={}",
                    d.domain, o.slug, d.verified, d.enforce
                )
            });
        }
        DomainCommand::Remove { org, domain } => {
            let o = ctx.org(&org)?;
            let name = parse(DomainName::parse(&domain))?;
            ctx.tx(|c| {
                if !domains::remove(c, &o.id, &name)? {
                    return Err(IdentityError::NotFound(format!(
                        "{} has no domain {name}",
                        o.slug
                    )));
                }
                record(
                    c,
                    Some(&o.id),
                    "domain.remove",
                    json!({"domain": name.as_str()}),
                    ctx.now,
                )
            })?;
            ctx.out(json!({"removed": name.as_str()}), || {
                format!("removed {name} from {}", o.slug)
            });
        }
        DomainCommand::List { org } => {
            let o = ctx.org(&org)?;
            let ds = ctx.read(|c| domains::list(c, &o.id))?;
            ctx.out(Value::Array(ds.iter().map(domain_json).collect()), || {
                ds.iter()
                    .map(|d| {
                        format!(
                            "{}\tverified={}\tenforce={}\n",
                            d.domain, d.verified, d.enforce
                        )
                    })
                    .collect()
            });
        }
    }
    Ok(())
}

fn role(ctx: &Ctx, c: RoleCommand) -> anyhow::Result<()> {
    match c {
        RoleCommand::Add { org, name, rank } => {
            let o = ctx.org(&org)?;
            let r = ctx.tx(|c| {
                let r = roles::add(c, &o.id, &name, rank, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "role.add",
                    json!({"role": r.name, "rank": rank}),
                    ctx.now,
                )?;
                Ok(r)
            })?;
            ctx.out(json!({"id": r.id, "name": r.name, "rank": r.rank}), || {
                format!("added role {} (rank {})", r.name, r.rank)
            });
        }
        RoleCommand::Map { org, group, role } => {
            let o = ctx.org(&org)?;
            let m = ctx.tx(|c| {
                let m = roles::map(c, &o.id, &group, &role, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "role.map",
                    json!({"group": m.group, "role": m.role}),
                    ctx.now,
                )?;
                Ok(m)
            })?;
            ctx.out(json!(m), || format!("group {} → role {}", m.group, m.role));
        }
        RoleCommand::List { org } => {
            let o = ctx.org(&org)?;
            let (rs, ms) =
                ctx.read(|c| Ok((roles::list(c, &o.id)?, roles::mappings(c, &o.id)?)))?;
            ctx.out(
                json!({"roles": rs.iter().map(|r| json!({"name": r.name, "rank": r.rank})).collect::<Vec<_>>(), "mappings": ms, "default_role": o.default_role}),
                || {
                    let mut s: String = rs.iter().map(|r| format!("role {}\trank {}\n", r.name, r.rank)).collect();
                    s.extend(ms.iter().map(|m| format!("map {}\t→ {}\n", m.group, m.role)));
                    s
                },
            );
        }
    }
    Ok(())
}

fn scim_token(ctx: &Ctx, c: ScimTokenCommand) -> anyhow::Result<()> {
    match c {
        ScimTokenCommand::Issue { org, revoke_others } => {
            let o = ctx.org(&org)?;
            let issued = ctx.tx(|c| {
                let t = scim_tokens::issue(c, &o.id, revoke_others, ctx.now)?;
                record(c, Some(&o.id), "scim_token.issue", json!({"id": t.id, "prefix": &t.token[..10], "revoked_others": t.revoked_others}), ctx.now)?;
                Ok(t)
            })?;
            ctx.out(json!({"id": issued.id, "token": issued.token, "revoked_others": issued.revoked_others}), || issued.token.clone());
        }
        ScimTokenCommand::List { org } => {
            let o = ctx.org(&org)?;
            let ts = ctx.read(|c| scim_tokens::list(c, &o.id))?;
            ctx.out(json!(ts), || {
                ts.iter()
                    .map(|t| {
                        format!(
                            "{}\t{}…\tcreated {}\tlast used {}\t{}\n",
                            t.id,
                            t.prefix,
                            rfc3339(t.created_at),
                            t.last_used_at
                                .map(rfc3339)
                                .unwrap_or_else(|| "never".into()),
                            if t.revoked_at.is_some() {
                                "revoked"
                            } else {
                                "live"
                            }
                        )
                    })
                    .collect()
            });
        }
        ScimTokenCommand::Revoke { org, id } => {
            let o = ctx.org(&org)?;
            ctx.tx(|c| {
                scim_tokens::revoke(c, &o.id, &id, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "scim_token.revoke",
                    json!({"id": id}),
                    ctx.now,
                )
            })?;
            ctx.out(json!({"revoked": id}), || {
                format!("revoked SCIM token {id}")
            });
        }
    }
    Ok(())
}

fn user_json(u: &users::User) -> Value {
    json!({
        "id": u.id,
        "user_name": u.user_name,
        "email": u.email,
        "active": u.active,
        "role": u.app_role,
        "org_admin": u.is_org_admin,
        "break_glass": u.is_break_glass,
        "source": u.source,
        "has_password": u.password_hash.is_some(),
    })
}

fn user(ctx: &Ctx, c: UserCommand) -> anyhow::Result<()> {
    match c {
        UserCommand::Add {
            org,
            email,
            role,
            org_admin,
            password_env,
        } => {
            let o = ctx.org(&org)?;
            let email = parse(Email::parse(&email))?;
            let hash = match password_env {
                Some(var) => Some(password::hash_blocking(&secret_from_env(&var)?)?),
                None => None,
            };
            let mut new = users::NewUser::new(&o.id, &email.to_string(), UserSource::Local);
            new.email = Some(email.to_string());
            new.is_org_admin = org_admin;
            new.password_hash = hash;
            let u = ctx.tx(|c| {
                if let Some(r) = &role {
                    let found = roles::find(c, &o.id, r)?
                        .ok_or_else(|| IdentityError::NotFound(format!("no role `{r}` (add it first with `role add`)")))?;
                    new.app_role = Some(found.name);
                }
                let u = users::create(c, &new, ctx.now)?;
                record(c, Some(&o.id), "user.add", json!({"user_name": u.user_name, "role": u.app_role, "org_admin": org_admin, "sign_in": if new.password_hash.is_some() { "password" } else { "sso-only" }}), ctx.now)?;
                Ok(u)
            })?;
            ctx.out(user_json(&u), || {
                format!("added user {} ({})", u.user_name, u.id)
            });
        }
        UserCommand::List { org } => {
            let o = ctx.org(&org)?;
            let us = ctx.read(|c| users::list(c, &o.id))?;
            ctx.out(Value::Array(us.iter().map(user_json).collect()), || {
                us.iter()
                    .map(|u| {
                        format!(
                            "{}\t{}\t{}\trole={}\t{}{}\n",
                            u.id,
                            u.user_name,
                            if u.active { "active" } else { "inactive" },
                            u.app_role.as_deref().unwrap_or("-"),
                            u.source,
                            if u.is_org_admin { "\torg-admin" } else { "" }
                        )
                    })
                    .collect()
            });
        }
        UserCommand::Set {
            org,
            user,
            scim_managed,
        } => {
            let o = ctx.org(&org)?;
            if !scim_managed {
                bail!("nothing to change: give --scim-managed");
            }
            let u = ctx.tx(|c| {
                let u = users::find_by_user_name(c, &o.id, &user)?.ok_or_else(|| {
                    IdentityError::NotFound(format!("no user `{user}` in {}", o.slug))
                })?;
                if u.is_org_admin || u.is_break_glass {
                    return Err(IdentityError::Invalid(format!(
                        "{} is an org admin or a break-glass account: SCIM never manages those",
                        u.user_name
                    )));
                }
                let u = users::set_source(c, &u, UserSource::Scim, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "user.update",
                    json!({"user_name": u.user_name, "after": {"source": "scim"}}),
                    ctx.now,
                )?;
                Ok(u)
            })?;
            ctx.out(user_json(&u), || {
                format!("{} is now managed by SCIM provisioning", u.user_name)
            });
        }
        UserCommand::Link {
            org,
            user,
            connection,
            subject,
        } => {
            let o = ctx.org(&org)?;
            ctx.tx(|c| {
                let u = users::find_by_user_name(c, &o.id, &user)?.ok_or_else(|| {
                    IdentityError::NotFound(format!("no user `{user}` in {}", o.slug))
                })?;
                crate::sso::connections::get_in_org(c, &o.id, &connection)?.ok_or_else(|| {
                    IdentityError::NotFound(format!("no connection `{connection}` in {}", o.slug))
                })?;
                crate::sso::resolve::link_explicitly(c, &connection, &subject, &u, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "user.link",
                    json!({"user_name": u.user_name, "connection": connection, "subject": subject}),
                    ctx.now,
                )
            })?;
            ctx.out(json!({"linked": true}), || {
                format!("linked {user} to {subject} on connection {connection}")
            });
        }
        UserCommand::RevokeSessions { org, user } => {
            let o = ctx.org(&org)?;
            let n = ctx.tx(|c| {
                let u = users::find_by_user_name(c, &o.id, &user)?.ok_or_else(|| {
                    IdentityError::NotFound(format!("no user `{user}` in {}", o.slug))
                })?;
                let n = users::revoke_sessions(c, &u.id, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "user.sessions_revoked",
                    json!({"user_name": u.user_name, "sessions": n}),
                    ctx.now,
                )?;
                Ok(n)
            })?;
            ctx.out(json!({"sessions_revoked": n}), || {
                format!("revoked {n} session(s)")
            });
        }
    }
    Ok(())
}

fn admin(ctx: &Ctx, c: AdminCommand) -> anyhow::Result<()> {
    match c {
        AdminCommand::Add {
            email,
            password_env,
        } => {
            let email = parse(Email::parse(&email))?;
            let hash = password::hash_blocking(&secret_from_env(&password_env)?)?;
            let seed = totp::new_seed();
            let uri = totp::otpauth_uri(&seed, &email.to_string())?;
            let a = ctx.tx(|c| {
                let a = admins::add(c, &ctx.key, &email, &hash, &seed, ctx.now)?;
                record(c, None, "admin.add", json!({"email": a.email}), ctx.now)?;
                Ok(a)
            })?;
            ctx.out(
                json!({"id": a.id, "email": a.email, "otpauth_uri": uri}),
                || uri.clone(),
            );
            show_qr(&uri, ctx.json);
        }
        AdminCommand::List => {
            let all = ctx.read(admins::list)?;
            ctx.out(json!(all), || {
                all.iter()
                    .map(|a| format!("{}\t{}\n", a.id, a.email))
                    .collect()
            });
        }
    }
    Ok(())
}

/// The otpauth URI as a QR code on the terminal (stderr, and only when it is a terminal:
/// stdout stays the URI alone for scripts).
fn show_qr(uri: &str, json_out: bool) {
    use std::io::IsTerminal;
    if json_out || !std::io::stderr().is_terminal() {
        return;
    }
    if let Some(qr) = totp::qr_text(uri) {
        eprintln!("Scan with the authenticator app:\n{qr}");
    }
}

fn setup_link_cmd(ctx: &Ctx, settings: &Settings, c: SetupLinkCommand) -> anyhow::Result<()> {
    use crate::identity::setup_links;
    match c {
        SetupLinkCommand::Create {
            org,
            intents,
            expires,
        } => {
            let o = ctx.org(&org)?;
            let intents = setup_links::parse_intents(intents.iter().map(String::as_str))?;
            let days: i64 = expires
                .trim()
                .strip_suffix('d')
                .unwrap_or(expires.trim())
                .parse()
                .map_err(|_| anyhow::anyhow!("--expires takes days, e.g. 7d"))?;
            let (link, token) = ctx.tx(|c| {
                let (link, token) =
                    setup_links::create(c, &o.id, &intents, days, "cli", ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "setup_link.create",
                    json!({"id": link.id, "intents": link.intents, "expires_at": link.expires_at, "token": "(shown once)"}),
                    ctx.now,
                )?;
                Ok((link, token))
            })?;
            let url = settings.url_for(&format!("/sso/setup/{token}"));
            ctx.out(
                json!({"id": link.id, "url": url, "intents": link.intents, "expires_at": rfc3339(link.expires_at)}),
                || url.clone(),
            );
        }
        SetupLinkCommand::List { org } => {
            let o = ctx.org(&org)?;
            let all = ctx.read(|c| setup_links::list(c, &o.id))?;
            let rows: Vec<Value> = all
                .iter()
                .map(|l| json!({"id": l.id, "intents": l.intents, "created_by": l.created_by, "expires_at": rfc3339(l.expires_at), "revoked": l.revoked_at.is_some(), "live": l.live(ctx.now), "last_used_at": l.last_used_at.map(rfc3339)}))
                .collect();
            ctx.out(Value::Array(rows), || {
                all.iter()
                    .map(|l| {
                        format!(
                            "{}\t{}\texpires {}\t{}\n",
                            l.id,
                            l.intents,
                            rfc3339(l.expires_at),
                            if l.live(ctx.now) { "live" } else { "ended" }
                        )
                    })
                    .collect()
            });
        }
        SetupLinkCommand::Revoke { org, id } => {
            let o = ctx.org(&org)?;
            let n = ctx.tx(|c| {
                let n = setup_links::revoke(c, &o.id, &id, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "setup_link.revoke",
                    json!({"id": id, "sessions_ended": n}),
                    ctx.now,
                )?;
                Ok(n)
            })?;
            ctx.out(json!({"id": id, "sessions_ended": n}), || {
                format!("revoked {id} ({n} session(s) ended)")
            });
        }
    }
    Ok(())
}

fn breakglass_cmd(ctx: &Ctx, c: BreakglassCommand) -> anyhow::Result<()> {
    use crate::identity::breakglass;
    match c {
        BreakglassCommand::Set { org, email } => {
            let o = ctx.org(&org)?;
            let email = parse(Email::parse(&email))?;
            // 144 random bits, shown once; only its argon2id hash is stored.
            let generated = crate::crypto::random_token(18);
            let hash = password::hash_blocking(&SecretString::from(generated.clone()))?;
            let seed = totp::new_seed();
            let uri = totp::otpauth_uri(&seed, &email.to_string())?;
            let u = ctx.tx(|c| {
                let u = breakglass::set(c, &ctx.key, &o.id, &email, &hash, &seed, ctx.now)?;
                record(c, Some(&o.id), "breakglass.set", json!({"user_name": u.user_name, "password": "(generated, shown once)", "totp": "(new seed)"}), ctx.now)?;
                Ok(u)
            })?;
            ctx.out(
                json!({"id": u.id, "user_name": u.user_name, "password": generated, "otpauth_uri": uri}),
                || format!("password: {generated}\n{uri}"),
            );
            show_qr(&uri, ctx.json);
        }
        BreakglassCommand::List { org } => {
            let o = ctx.org(&org)?;
            let all = ctx.read(|c| breakglass::list(c, &o.id))?;
            ctx.out(Value::Array(all.iter().map(user_json).collect()), || {
                all.iter()
                    .map(|u| format!("{}\t{}\n", u.id, u.user_name))
                    .collect()
            });
        }
        BreakglassCommand::Remove { org, email } => {
            let o = ctx.org(&org)?;
            let email = parse(Email::parse(&email))?;
            let u = ctx.tx(|c| {
                // The same lock-out guard as the admin UI's.
                let org = orgs::get(c, &o.id)?;
                if let Some(target) = breakglass::list(c, &o.id)?
                    .into_iter()
                    .find(|u| u.email_folded.as_deref() == Some(&email.folded()))
                {
                    if let Some(why) = crate::identity::enforcement::lockout(
                        c,
                        &org,
                        crate::identity::enforcement::Change::RemoveBreakGlass(target.id.as_str()),
                    )? {
                        return Err(IdentityError::Conflict(why));
                    }
                }
                let u = breakglass::remove(c, &o.id, &email, ctx.now)?;
                record(
                    c,
                    Some(&o.id),
                    "breakglass.remove",
                    json!({"user_name": u.user_name}),
                    ctx.now,
                )?;
                Ok(u)
            })?;
            ctx.out(user_json(&u), || {
                format!("{} is no longer a break-glass account", u.user_name)
            });
        }
    }
    Ok(())
}

fn keys_cmd(ctx: &Ctx, c: KeysCommand) -> anyhow::Result<()> {
    match c {
        KeysCommand::Rotate => {
            let ids = ctx.tx(|c| {
                let ids = keys::rotate(c, &ctx.key, ctx.now, keys::ROTATION_OVERLAP_SECS)?;
                record(c, None, "keys.rotate", json!({"new_keys": ids}), ctx.now)?;
                Ok(ids)
            })?;
            ctx.out(
                json!({"new_keys": ids, "overlap_days": keys::ROTATION_OVERLAP_SECS / 86_400}),
                || {
                    format!(
                        "added {} new key(s); the previous keys stay published for {} days",
                        ids.len(),
                        keys::ROTATION_OVERLAP_SECS / 86_400
                    )
                },
            );
        }
        KeysCommand::List => {
            let all = ctx.read(keys::list)?;
            ctx.out(json!(all), || {
                all.iter()
                    .map(|k| {
                        let state = match (k.retired_at, k.publish_until) {
                            (None, _) => "current".to_string(),
                            (Some(_), Some(until)) if until > ctx.now => {
                                format!("retired, published until {}", rfc3339(until))
                            }
                            _ => "retired".to_string(),
                        };
                        format!("{}\t{}\t{}\t{}\n", k.id, k.purpose, k.algorithm, state)
                    })
                    .collect()
            });
        }
    }
    Ok(())
}

fn audit_cmd(ctx: &Ctx, c: AuditCommand) -> anyhow::Result<()> {
    let org_of = |key: &str| -> anyhow::Result<Option<OrgId>> {
        if key == "instance" {
            Ok(None)
        } else {
            Ok(Some(ctx.org(key)?.id))
        }
    };
    match c {
        AuditCommand::List { org, limit } => {
            let org = org_of(&org)?;
            let events = ctx.read(|c| Ok(audit::list(c, org.as_ref(), limit.clamp(1, 10_000))?))?;
            ctx.out(json!(events), || {
                events
                    .iter()
                    .map(|e| {
                        format!(
                            "#{}\t{}\t{}\t{}\t{}\t{}\n",
                            e.seq,
                            rfc3339(e.occurred_at),
                            e.outcome,
                            e.action,
                            e.actor,
                            e.payload.as_deref().unwrap_or("")
                        )
                    })
                    .collect()
            });
        }
        AuditCommand::Verify { org } => {
            let org = org_of(&org)?;
            let mut conn = ctx.db.conn()?;
            let n = audit::verify(&mut conn, org.as_ref())?;
            ctx.out(json!({"intact": true, "events": n}), || {
                format!("audit chain intact ({n} events)")
            });
        }
    }
    Ok(())
}
