//! The org overview (connections, domains, enforcement, SCIM status, counts, warnings),
//! domains, enforcement with lock-out protection, break-glass accounts, roles and mappings.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::{access, check_post, sensitive, signed_in, time, Admin, AdminError, AdminResult, Nav};
use crate::db::schema::{scim_tokens, user_groups, users};
use crate::domain::{DomainName, Email, Enforcement};
use crate::http::errors::AppError;
use crate::http::pages::render;
use crate::identity::{breakglass, domains, enforcement, orgs, roles, IdentityError};
use crate::login::session::Principal;
use crate::sso::connections;
use crate::startup::AppState;

#[derive(Template)]
#[template(path = "admin/orgs.html")]
struct OrgsPage {
    who: String,
    csrf: String,
    orgs: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "first_run.html")]
pub struct FirstRun;

/// The first-run page when nobody can administer anything yet (`None` otherwise).
pub async fn first_run(state: &AppState) -> Result<Option<HttpResponse>, AppError> {
    // Nobody who could sign in to these pages: no instance admin, no org admin.
    let any = state
        .db
        .run(|conn| -> Result<bool, AppError> {
            if crate::identity::admins::any(conn)? {
                return Ok(true);
            }
            let org_admin: Option<String> = users::table
                .filter(users::is_org_admin.eq(true))
                .select(users::id)
                .first(conn)
                .optional()?;
            Ok(org_admin.is_some())
        })
        .await?;
    Ok((!any).then(|| render(StatusCode::OK, &FirstRun)))
}

/// `GET /sso/admin`: instance admins pick an org; an org admin goes to theirs. On a fresh
/// install (no instance admin yet) it says how to create one.
pub async fn home(state: web::Data<AppState>, req: HttpRequest) -> AdminResult {
    if crate::login::session::cookie_hash(&req, &state.settings).is_none() {
        if let Some(page) = first_run(&state).await? {
            return Ok(page);
        }
    }
    let signed = signed_in(&req).await?;
    match &signed.principal {
        Principal::Admin(a) => {
            let all = state
                .db
                .run(|conn| orgs::list(conn).map_err(AppError::from))
                .await?;
            Ok(render(
                StatusCode::OK,
                &OrgsPage {
                    who: a.email.clone(),
                    csrf: signed.csrf_token.clone(),
                    orgs: all.into_iter().map(|o| (o.slug, o.name)).collect(),
                },
            ))
        }
        Principal::Setup { org, .. } => Ok(HttpResponse::SeeOther()
            .insert_header(("location", format!("/sso/admin/orgs/{}/setup", org.slug)))
            .finish()),
        Principal::User { org, .. } if crate::login::session::administers(&signed, &org.id) => {
            Ok(HttpResponse::SeeOther()
                .insert_header(("location", format!("/sso/admin/orgs/{}", org.slug)))
                .finish())
        }
        _ => Err(AppError::NotFound.into()),
    }
}

struct ConnectionRow {
    id: String,
    kind: String,
    name: String,
    enabled: bool,
    draft: bool,
    last_success: Option<String>,
    tested: Option<String>,
}

pub(super) struct DomainRow {
    pub(super) domain: String,
    pub(super) verified: bool,
    pub(super) enforce: bool,
    /// Whether SSO is really required for it now (the org's mode decides).
    pub(super) required: String,
    pub(super) verified_by: String,
    pub(super) record_name: String,
    pub(super) record_value: String,
    pub(super) last_check: Option<String>,
}

/// The domains table's rows (the overview and a setup link's summary).
pub(super) fn domain_rows(
    doms: Vec<crate::identity::domains::Domain>,
    mode: Enforcement,
) -> Vec<DomainRow> {
    doms.into_iter()
        .map(|d| DomainRow {
            required: match mode {
                Enforcement::All => "yes (SSO is required for everyone)".into(),
                Enforcement::Off if d.enforce => "no (marked, but enforcement is off)".into(),
                _ if d.enforce => "yes".into(),
                _ => "no".into(),
            },
            verified_by: match d.verified_by.as_deref() {
                Some("dns") => "by DNS".into(),
                _ => "by an operator".into(),
            },
            record_name: crate::identity::domain_check::challenge_name(&d.domain),
            record_value: match d.dns_token.as_deref() {
                Some(t) => crate::identity::domain_check::expected_value(t),
                None => "(press Verify to get it)".into(),
            },
            last_check: d.checked_at.map(|t| {
                format!(
                    "{}: {}",
                    time(t),
                    d.check_result.clone().unwrap_or_default()
                )
            }),
            domain: d.domain,
            verified: d.verified,
            enforce: d.enforce,
        })
        .collect()
}

#[derive(Template)]
#[template(path = "admin/org.html")]
struct OverviewPage {
    nav: Nav,
    enforcement: String,
    connections: Vec<ConnectionRow>,
    domains: Vec<DomainRow>,
    users: i64,
    groups: i64,
    scim_last_used: Option<String>,
    break_glass: Vec<String>,
    warnings: Vec<String>,
}

/// `GET /sso/admin/orgs/{org}`
pub async fn overview(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    let org_id = admin.org.id.clone();
    let now = crate::clock::now();
    let (conns, doms, n_users, n_groups, scim_last, bg) = state
        .db
        .run(move |conn| -> Result<_, IdentityError> {
            let conns = connections::list(conn, &org_id)?;
            let doms = domains::list(conn, &org_id)?;
            let n_users: i64 = users::table
                .filter(users::org_id.eq(org_id.as_str()))
                .count()
                .get_result(conn)?;
            let n_groups: i64 = user_groups::table
                .filter(user_groups::org_id.eq(org_id.as_str()))
                .count()
                .get_result(conn)?;
            let scim_last: Option<i64> = scim_tokens::table
                .filter(scim_tokens::org_id.eq(org_id.as_str()))
                .select(diesel::dsl::max(scim_tokens::last_used_at))
                .first(conn)?;
            let bg = breakglass::list(conn, &org_id)?;
            Ok((conns, doms, n_users, n_groups, scim_last, bg))
        })
        .await
        .map_err(AppError::from)?;

    let mut warnings = Vec::new();
    for c in &conns {
        if c.enabled && c.draft {
            warnings.push(format!(
                "Connection \"{}\" is a draft: nobody is offered it. Run Test sign-in on its page, then activate it.",
                c.name
            ));
        } else if c.enabled && !c.proven() {
            warnings.push(format!(
                "Connection \"{}\" has never completed a sign-in: run Test sign-in on its page to check it works.",
                c.name
            ));
        }
        if c.kind == "saml" {
            if let Ok(cfg) = serde_json::from_str::<crate::saml::config::SamlConfig>(&c.config) {
                for cert in &cfg.certs {
                    if let Some(not_after) = crate::saml::config::cert_not_after(cert) {
                        let days = (not_after - now) / 86_400;
                        if days < 30 {
                            warnings.push(format!(
                                "An IdP signing certificate of \"{}\" expires in {days} days ({}): import the IdP's new metadata.",
                                c.name,
                                time(not_after)
                            ));
                        }
                    }
                }
            }
        }
    }
    let mode = admin.org.enforcement();
    if mode != Enforcement::Off && bg.is_empty() {
        warnings.push(
            "SSO is required but the organization has no break-glass account: if the IdP fails, nobody can sign in.".into(),
        );
    }
    if doms.iter().any(|d| !d.verified) {
        warnings.push(
            "Some domains are not verified yet: SSO routing and account linking ignore them until they are. Publish the TXT record shown under Domains, then press Verify.".into(),
        );
    }
    Ok(render(
        StatusCode::OK,
        &OverviewPage {
            nav: admin.nav(),
            enforcement: mode.as_str().to_string(),
            connections: conns
                .into_iter()
                .map(|c| ConnectionRow {
                    id: c.id,
                    kind: c.kind,
                    name: c.name,
                    enabled: c.enabled,
                    draft: c.draft,
                    last_success: c.last_success_at.map(time),
                    tested: c.tested_at.map(time),
                })
                .collect(),
            domains: domain_rows(doms, mode),
            users: n_users,
            groups: n_groups,
            scim_last_used: scim_last.map(time),
            break_glass: bg.into_iter().map(|u| u.user_name).collect(),
            warnings,
        },
    ))
}

/// Where a change on the overview goes back to (a setup link's session: its setup page).
fn org_path(admin: &Admin) -> String {
    if admin.via_setup_link() {
        format!("/sso/admin/orgs/{}/setup", admin.org.slug)
    } else {
        format!("/sso/admin/orgs/{}", admin.org.slug)
    }
}

/// Back to the overview with the refusal in an error banner.
fn refused(admin: &Admin, message: &str) -> HttpResponse {
    admin.flasher.error(&org_path(admin), message)
}

#[derive(Deserialize)]
pub struct DomainForm {
    csrf: String,
    domain: String,
}

/// `POST /sso/admin/orgs/{org}/domains`: an admin claims a domain; it counts once verified
/// (the TXT record, or an instance admin's word). Free e-mail domains and public suffixes are
/// refused.
pub async fn add_domain(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<DomainForm>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    check_post(&req, &admin, &form.csrf)?;
    let domain = match DomainName::parse(&form.domain) {
        Ok(d) => d,
        Err(e) => return Ok(refused(&admin, &format!("Not added: {e}."))),
    };
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let path = org_path(&admin);
    let result = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let d = domains::add(conn, &admin.org.id, &domain, false, false, now)?;
            admin.record(
                conn,
                "admin.domain.add",
                json!({"after": {"domain": d.domain, "verified": d.verified}}),
                now,
            )?;
            Ok(d)
        })
        .await;
    match result {
        Ok(d) => Ok(flash.notice(
            &path,
            &format!(
                "Added {}. To verify it, publish the TXT record shown below at your DNS provider, then press Verify.",
                d.domain
            ),
        )),
        Err(IdentityError::Conflict(m) | IdentityError::Invalid(m)) => {
            Ok(flash.error(&path, &format!("Not added: {m}.")))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct DomainChange {
    csrf: String,
    confirm_password: Option<String>,
    /// `check` (look the TXT record up), `verify` (an instance admin's word), `enforce`,
    /// `unenforce` or `remove`.
    action: String,
}

/// `POST /sso/admin/orgs/{org}/domains/{domain}`
pub async fn change_domain(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<DomainChange>,
) -> AdminResult {
    let (org, domain) = path.into_inner();
    let admin = access(&state, &req, &org).await?;
    check_post(&req, &admin, &form.csrf)?;
    // A setup link adds and verifies domains; requiring SSO for one or removing one is the
    // organization's admin's decision.
    if admin.via_setup_link() && form.action != "check" {
        return Ok(refused(
            &admin,
            "Through a setup link a domain can be added and verified only; ask the organization's admin to change it.",
        ));
    }
    // Looking the record up changes nothing an attacker could want; the rest needs the
    // password again.
    if form.action != "check" {
        admin
            .confirm(&state, form.confirm_password.as_deref())
            .await?;
    }
    let domain = DomainName::parse(&domain).map_err(|_| AppError::NotFound)?;
    let org_id = admin.org.id.clone();
    let name = domain.clone();
    let current = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            Ok(domains::list(conn, &org_id)?
                .into_iter()
                .find(|d| d.domain == name.as_str()))
        })
        .await?
        .ok_or(AppError::NotFound)?;
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let path = org_path(&admin);
    let action = form.action.clone();
    let dns_problem = if action == "check" {
        if current.verified {
            return Ok(flash.notice(&path, &format!("{} is already verified.", current.domain)));
        }
        match current.dns_token.clone() {
            Some(token) => Some(
                crate::identity::domain_check::check(
                    state.settings.dns_resolver,
                    &current.domain,
                    &token,
                )
                .await
                .err(),
            ),
            // Added before verification by DNS existed: a token first, then the record.
            None => Some(Some(String::new())),
        }
    } else {
        None
    };
    if action == "verify" && !admin.instance {
        return Ok(refused(
            &admin,
            "Only an instance admin can verify a domain by hand: publish the TXT record and press Verify instead.",
        ));
    }
    let result = state
        .db
        .write(move |conn| -> Result<Result<String, String>, IdentityError> {
            let d = &current;
            match action.as_str() {
                "check" => {
                    let problem = dns_problem.flatten();
                    if problem.as_deref() == Some("") {
                        domains::new_token(conn, &d.id)?;
                        return Ok(Err(format!("{} is not verified yet: publish the TXT record now shown for it, then press Verify.", d.domain)));
                    }
                    domains::record_check(conn, &d.id, problem.as_deref(), now)?;
                    if let Some(p) = problem {
                        // Recorded and audited (an Ok: an Err would roll it back).
                        admin.record(conn, "admin.domain.check", json!({"domain": d.domain, "verified": false, "cause": p}), now)?;
                        return Ok(Err(format!("{} is not verified yet: {p}.", d.domain)));
                    }
                    domains::mark_verified(conn, &d.id, "dns")?;
                    admin.record(conn, "admin.domain.verify", json!({"domain": d.domain, "method": "dns"}), now)?;
                    Ok(Ok(format!("{} is verified: its TXT record matched.", d.domain)))
                }
                "verify" => {
                    domains::mark_verified(conn, &d.id, &admin.actor)?;
                    admin.record(conn, "admin.domain.verify", json!({"domain": d.domain, "method": "manual"}), now)?;
                    Ok(Ok(format!("{} is verified (by hand).", d.domain)))
                }
                "enforce" | "unenforce" => {
                    let enforce = action == "enforce";
                    domains::set_flags(conn, &admin.org.id, &domain, None, Some(enforce))?;
                    admin.record(conn, &format!("admin.domain.{action}"), json!({"domain": d.domain, "after": {"verified": d.verified, "enforce": enforce}}), now)?;
                    // Enforcing a domain may disqualify password sessions.
                    enforcement::set(conn, &admin.org.id, admin.org.enforcement(), now)?;
                    Ok(Ok(if enforce {
                        format!("SSO is required for {} (when \"Require SSO\" is domains).", d.domain)
                    } else {
                        format!("SSO is no longer required for {}.", d.domain)
                    }))
                }
                "remove" => {
                    let org = orgs::get(conn, &admin.org.id)?;
                    if let Some(why) = enforcement::lockout(conn, &org, enforcement::Change::RemoveDomain(&d.domain))? {
                        return Err(IdentityError::Conflict(why));
                    }
                    domains::remove(conn, &admin.org.id, &domain)?;
                    admin.record(conn, "admin.domain.remove", json!({"before": {"domain": d.domain, "verified": d.verified, "enforce": d.enforce}}), now)?;
                    Ok(Ok(format!("Removed {}.", d.domain)))
                }
                _ => Err(IdentityError::Invalid("unknown action".into())),
            }
        })
        .await;
    match result {
        Ok(Ok(m)) => Ok(flash.notice(&path, &m)),
        Ok(Err(m)) => Ok(flash.error(&path, &m)),
        Err(IdentityError::Conflict(m) | IdentityError::Invalid(m)) => Ok(flash.error(&path, &m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct EnforcementForm {
    csrf: String,
    confirm_password: Option<String>,
    mode: String,
}

/// `POST /sso/admin/orgs/{org}/enforcement`. Turning on `all` is refused while the org has
/// no break-glass account or no connection that has completed a sign-in (lock-out protection).
pub async fn set_enforcement(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<EnforcementForm>,
) -> AdminResult {
    let admin = sensitive(
        &state,
        &req,
        &path,
        &form.csrf,
        form.confirm_password.as_deref(),
    )
    .await?;
    let mode: Enforcement = form
        .mode
        .parse()
        .map_err(|_| AppError::BadRequest("unknown enforcement mode".into()))?;
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let before = admin.org.enforcement().as_str().to_string();
    let path = org_path(&admin);
    // The check and the change in one transaction, under the org's lock-out lock (two
    // admins at once cannot both pass it).
    let result = state
        .db
        .write(move |conn| -> Result<Result<usize, String>, IdentityError> {
            enforcement::lock_org(conn, &admin.org.id)?;
            let bg = breakglass::list(conn, &admin.org.id)?.len();
            let tested = connections::list(conn, &admin.org.id)?
                .iter()
                .any(|c| c.live() && c.proven());
            if mode == Enforcement::All && (bg == 0 || !tested) {
                let mut why = Vec::new();
                if bg == 0 {
                    why.push("add a break-glass account first (it can sign in when the IdP cannot)");
                }
                if !tested {
                    why.push("complete one sign-in through an SSO connection first (so you know it works)");
                }
                return Ok(Err(format!(
                    "Requiring SSO for everyone was refused to keep you from locking the organization out: {}.",
                    why.join("; ")
                )));
            }
            let revoked = enforcement::set(conn, &admin.org.id, mode, now)?;
            admin.record(
                conn,
                "admin.enforcement.set",
                json!({"before": before, "after": mode.as_str(), "sessions_revoked": revoked}),
                now,
            )?;
            Ok(Ok(revoked))
        })
        .await
        .map_err(AppError::from)?;
    let revoked = match result {
        Ok(n) => n,
        Err(why) => return Ok(flash.error(&path, &why)),
    };
    Ok(flash.notice(
        &path,
        &format!(
            "Enforcement is now {} ({revoked} sessions revoked)",
            mode.as_str()
        ),
    ))
}

#[derive(Template)]
#[template(path = "admin/secret_once.html")]
pub struct SecretOnce {
    pub nav: Nav,
    /// An otpauth URI among the lines, as a QR code (SVG we generate).
    pub qr: Option<String>,
    pub title: String,
    pub lines: Vec<(String, String)>,
    pub warning: String,
    pub back: String,
}

#[derive(Deserialize)]
pub struct BreakglassForm {
    csrf: String,
    #[serde(default)]
    form_id: String,
    confirm_password: Option<String>,
    email: String,
}

/// `POST /sso/admin/orgs/{org}/breakglass`: creates (or resets) a break-glass account and
/// shows its password and TOTP URI once.
pub async fn add_breakglass(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<BreakglassForm>,
) -> AdminResult {
    let admin = sensitive(
        &state,
        &req,
        &path,
        &form.csrf,
        form.confirm_password.as_deref(),
    )
    .await?;
    let email = match Email::parse(&form.email) {
        Ok(e) => e,
        Err(e) => return Ok(refused(&admin, &format!("Not an e-mail address: {e}"))),
    };
    let generated = crate::crypto::random_token(18);
    let hash = state
        .passwords
        .hash(secrecy::SecretString::from(generated.clone()))
        .await?;
    let seed = crate::login::totp::new_seed();
    let uri =
        crate::login::totp::otpauth_uri(&seed, &email.to_string()).map_err(AppError::Internal)?;
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let key = state.key.clone();
    let back = org_path(&admin);
    let back2 = back.clone();
    let once = admin.once_form(&state, &req, &form.form_id);
    // The credentials are shown by the GET this redirects to (a reload cannot reset them),
    // and a second submit of the same form goes there too instead of resetting them again.
    let result = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            if let Some(earlier) = once.earlier(conn)? {
                return Ok(earlier);
            }
            let u = breakglass::set(conn, &key, &admin.org.id, &email, &hash, &seed, now)?;
            admin.record(
                conn,
                "admin.breakglass.set",
                json!({"user_name": u.user_name, "password": "(generated, shown once)"}),
                now,
            )?;
            let shown = super::once::Shown {
                title: format!("Break-glass account {}", u.user_name),
                lines: vec![
                    ("Password".into(), generated),
                    ("Authenticator URI (otpauth)".into(), uri),
                ],
                warning: "Shown once. Store both in your emergency vault now: they sign in at /sso/breakglass when SSO is unavailable.".into(),
                back: back2,
            };
            once.store(conn, &shown, now)
        })
        .await;
    match result {
        Ok(page) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", page))
            .finish()),
        Err(IdentityError::Conflict(m)) => Ok(flash.error(&back, &m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct BreakglassRemoveForm {
    csrf: String,
    confirm_password: Option<String>,
    email: String,
}

/// `POST /sso/admin/orgs/{org}/breakglass/remove`: ends an emergency account (its password,
/// code and sessions), unless it is the last one while SSO is required (lock-out guard).
pub async fn remove_breakglass(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<BreakglassRemoveForm>,
) -> AdminResult {
    let admin = sensitive(
        &state,
        &req,
        &path,
        &form.csrf,
        form.confirm_password.as_deref(),
    )
    .await?;
    let Ok(email) = Email::parse(&form.email) else {
        return Ok(refused(
            &admin,
            "Not an e-mail address of a break-glass account.",
        ));
    };
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let back = org_path(&admin);
    let result = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let org = orgs::get(conn, &admin.org.id)?;
            let Some(target) = breakglass::list(conn, &org.id)?
                .into_iter()
                .find(|u| u.email_folded.as_deref() == Some(&email.folded()))
            else {
                return Err(IdentityError::Conflict(format!(
                    "{email} is not a break-glass account of this organization."
                )));
            };
            if let Some(why) = enforcement::lockout(
                conn,
                &org,
                enforcement::Change::RemoveBreakGlass(target.id.as_str()),
            )? {
                return Err(IdentityError::Conflict(why));
            }
            let u = breakglass::remove(conn, &org.id, &email, now)?;
            admin.record(
                conn,
                "admin.breakglass.remove",
                json!({"user_name": u.user_name}),
                now,
            )?;
            Ok(u.user_name)
        })
        .await;
    match result {
        Ok(name) => Ok(flash.notice(
            &back,
            &format!("{name} is no longer a break-glass account: its password, code and sessions no longer work."),
        )),
        Err(IdentityError::Conflict(m)) => Ok(flash.error(&back, &m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct RolesQuery {
    /// Groups the IdP sends at sign-in (comma-separated).
    groups: Option<String>,
    /// SCIM groups the user is a member of (comma-separated).
    scim_groups: Option<String>,
}

fn list_of(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split(',')
        .map(|g| g.trim().to_string())
        .filter(|g| !g.is_empty())
        .collect()
}

/// Which groups count under the org's rule (the same choice as
/// `sso::resolve::effective_groups`), for the preview.
fn counted(source: &str, scim_groups_exist: bool, idp: &[String], scim: &[String]) -> Vec<String> {
    let (use_scim, use_idp) = crate::sso::resolve::group_sources_used(source, scim_groups_exist);
    let mut out: Vec<String> = Vec::new();
    for g in scim
        .iter()
        .filter(|_| use_scim)
        .chain(idp.iter().filter(|_| use_idp))
    {
        if !out.contains(g) {
            out.push(g.clone());
        }
    }
    out
}

#[derive(Template)]
#[template(path = "admin/roles.html")]
struct RolesPage {
    nav: Nav,
    roles: Vec<(String, i32)>,
    mappings: Vec<(String, String, i32)>,
    preview_groups: String,
    preview_scim_groups: String,
    /// (groups that count, role).
    preview: Option<(String, String)>,
    org_admins: Vec<String>,
    group_source: String,
    group_sources: Vec<(&'static str, &'static str)>,
    /// How many groups SCIM has provisioned (decides the `auto` rule).
    scim_groups: i64,
}

/// `GET /sso/admin/orgs/{org}/roles` (with `?groups=X,Y`: which role such a user gets)
pub async fn roles(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<RolesQuery>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    let org = admin.org.clone();
    let idp_groups = list_of(q.groups.as_deref());
    let scim_in = list_of(q.scim_groups.as_deref());
    let (g2, s2) = (idp_groups.clone(), scim_in.clone());
    let (rs, ms, preview, org_admins, n_scim) = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let rs = roles::list(conn, &org.id)?;
            let ms = roles::mappings(conn, &org.id)?;
            let admins: Vec<String> = users::table
                .filter(users::org_id.eq(org.id.as_str()))
                .filter(users::is_org_admin.eq(true))
                .order(users::user_name_folded.asc())
                .select(users::user_name)
                .load(conn)?;
            let n_scim: i64 = user_groups::table
                .filter(user_groups::org_id.eq(org.id.as_str()))
                .count()
                .get_result(conn)?;
            let preview = if g2.is_empty() && s2.is_empty() {
                None
            } else {
                let keys = counted(&org.group_source, n_scim > 0, &g2, &s2);
                let role = roles::resolve_app_role(
                    conn,
                    &org.id,
                    None,
                    &keys,
                    org.default_role.as_deref(),
                )?
                .unwrap_or_else(|| "(no role)".into());
                let shown = if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                };
                Some((shown, role))
            };
            Ok((rs, ms, preview, admins, n_scim))
        })
        .await?;
    Ok(render(
        StatusCode::OK,
        &RolesPage {
            nav: admin.nav(),
            roles: rs.into_iter().map(|r| (r.name, r.rank)).collect(),
            mappings: ms.into_iter().map(|m| (m.group, m.role, m.rank)).collect(),
            preview_groups: idp_groups.join(", "),
            preview_scim_groups: scim_in.join(", "),
            preview,
            org_admins,
            group_source: admin.org.group_source.clone(),
            group_sources: crate::sso::resolve::GROUP_SOURCES.to_vec(),
            scim_groups: n_scim,
        },
    ))
}

#[derive(Deserialize)]
pub struct GroupSourceForm {
    csrf: String,
    confirm_password: Option<String>,
    source: String,
}

/// `POST /sso/admin/orgs/{org}/group-source`: which groups count for app roles.
pub async fn set_group_source(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<GroupSourceForm>,
) -> AdminResult {
    let admin = sensitive(
        &state,
        &req,
        &path,
        &form.csrf,
        form.confirm_password.as_deref(),
    )
    .await?;
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let back = format!("{}/roles", org_path(&admin));
    let source = form.source.clone();
    let before = admin.org.group_source.clone();
    let result = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            orgs::update(
                conn,
                &admin.org.id,
                orgs::OrgChanges {
                    group_source: Some(source.clone()),
                    ..Default::default()
                },
                now,
            )?;
            admin.record(
                conn,
                "admin.org.group_source",
                json!({"before": before, "after": source}),
                now,
            )?;
            Ok(source)
        })
        .await;
    match result {
        Ok(s) => {
            let what = crate::sso::resolve::GROUP_SOURCES
                .iter()
                .find(|(k, _)| *k == s)
                .map(|(_, d)| *d)
                .unwrap_or("");
            Ok(flash.notice(&back, &format!("App roles now come from {what}.")))
        }
        Err(IdentityError::Invalid(m)) => Ok(flash.error(&back, &m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    csrf: String,
    name: String,
    rank: i32,
}

/// `POST /sso/admin/orgs/{org}/roles`
pub async fn add_role(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RoleForm>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    check_post(&req, &admin, &form.csrf)?;
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let back = format!("{}/roles", org_path(&admin));
    let form = form.into_inner();
    let result = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let r = roles::add(conn, &admin.org.id, &form.name, form.rank, now)?;
            admin.record(
                conn,
                "admin.role.add",
                json!({"after": {"name": r.name, "rank": r.rank}}),
                now,
            )?;
            Ok(r)
        })
        .await;
    match result {
        Ok(r) => Ok(flash.notice(&back, &format!("Added role {}", r.name))),
        Err(IdentityError::Conflict(m) | IdentityError::Invalid(m)) => Ok(flash.error(&back, &m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct MappingForm {
    csrf: String,
    group: String,
    role: String,
}

/// `POST /sso/admin/orgs/{org}/mappings`
pub async fn add_mapping(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<MappingForm>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    check_post(&req, &admin, &form.csrf)?;
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let back = format!("{}/roles", org_path(&admin));
    let form = form.into_inner();
    let result = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let m = roles::map(conn, &admin.org.id, &form.group, &form.role, now)?;
            admin.record(
                conn,
                "admin.role.map",
                json!({"after": {"group": m.group, "role": m.role}}),
                now,
            )?;
            Ok(m)
        })
        .await;
    match result {
        Ok(m) => Ok(flash.notice(&back, &format!("Group {} now maps to {}", m.group, m.role))),
        Err(
            IdentityError::Conflict(m) | IdentityError::Invalid(m) | IdentityError::NotFound(m),
        ) => Ok(flash.error(&back, &m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct RoleChange {
    csrf: String,
    /// `rank` (with `rank`) or `remove`.
    action: String,
    rank: Option<i32>,
}

/// `POST /sso/admin/orgs/{org}/roles/{name}`: a new rank, or removal (with its mappings).
pub async fn change_role(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<RoleChange>,
) -> AdminResult {
    let (org, name) = path.into_inner();
    let admin = access(&state, &req, &org).await?;
    check_post(&req, &admin, &form.csrf)?;
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let back = format!("{}/roles", org_path(&admin));
    let form = form.into_inner();
    let result = state
        .db
        .write(move |conn| -> Result<String, IdentityError> {
            let org = crate::identity::orgs::get(conn, &admin.org.id)?;
            match (form.action.as_str(), form.rank) {
                ("rank", Some(rank)) => {
                    let before = roles::set_rank(conn, &org.id, &name, rank)?;
                    admin.record(
                        conn,
                        "admin.role.update",
                        json!({"name": before.name, "before": {"rank": before.rank}, "after": {"rank": rank}}),
                        now,
                    )?;
                    Ok(format!("Role {} now has rank {rank}", before.name))
                }
                ("remove", _) => {
                    let (role, mappings) =
                        roles::remove(conn, &org.id, org.default_role.as_deref(), &name)?;
                    admin.record(
                        conn,
                        "admin.role.remove",
                        json!({"name": role.name, "before": {"name": role.name, "rank": role.rank}, "mappings_removed": mappings}),
                        now,
                    )?;
                    Ok(format!(
                        "Removed role {} and {mappings} group mapping(s) to it",
                        role.name
                    ))
                }
                _ => Err(IdentityError::Invalid("Nothing changed: give a rank.".into())),
            }
        })
        .await;
    match result {
        Ok(m) => Ok(flash.notice(&back, &m)),
        Err(
            IdentityError::Conflict(m) | IdentityError::Invalid(m) | IdentityError::NotFound(m),
        ) => Ok(flash.error(&back, &format!("Not changed: {m}."))),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct UnmapForm {
    csrf: String,
    group: String,
}

/// `POST /sso/admin/orgs/{org}/mappings/remove`
pub async fn remove_mapping(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<UnmapForm>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    check_post(&req, &admin, &form.csrf)?;
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let back = format!("{}/roles", org_path(&admin));
    let form = form.into_inner();
    let result = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let m = roles::unmap(conn, &admin.org.id, &form.group)?;
            admin.record(
                conn,
                "admin.role.unmap",
                json!({"before": {"group": m.group, "role": m.role}}),
                now,
            )?;
            Ok(m)
        })
        .await;
    match result {
        Ok(m) => Ok(flash.notice(
            &back,
            &format!("Group {} no longer maps to {}", m.group, m.role),
        )),
        Err(IdentityError::NotFound(m)) => Ok(flash.error(&back, &format!("Not changed: {m}."))),
        Err(e) => Err(e.into()),
    }
}

impl From<AdminError> for crate::http::errors::PageError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Page(p) => p,
            AdminError::SignIn(_) => AppError::Unauthorized("not signed in".into()).into(),
        }
    }
}
