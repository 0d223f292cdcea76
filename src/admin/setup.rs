//! The setup of one org as a checklist (what is configured, what is left), setup links for
//! the customer's IT admin (created by an instance admin; see `identity::setup_links`), and
//! `GET /sso/setup/{token}`, which opens such a link as a session scoped to its org and
//! intents.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::json;

use super::{access, check_post, time, AdminResult, Nav};
use crate::audit::{self, Event};
use crate::db::schema::scim_tokens;
use crate::http::errors::{AppError, PageError};
use crate::http::pages::render;
use crate::identity::{domains, orgs, setup_links, IdentityError};
use crate::login::session::{self, Subject};
use crate::sso::connections;
use crate::startup::AppState;

struct LinkRow {
    id: String,
    intents: String,
    expires: String,
    last_used: String,
    live: bool,
}

#[derive(Template)]
#[template(path = "admin/setup.html")]
struct SummaryPage {
    nav: Nav,
    /// (name, state, link to its page).
    connections: Vec<(String, String, String)>,
    scim_tokens: i64,
    scim_used: bool,
    domains: Vec<super::org::DomainRow>,
    /// A setup link for `domains`: the table with the TXT records and Verify.
    domain_setup: bool,
    left: Vec<String>,
    links: Vec<LinkRow>,
    intents: &'static [&'static str],
}

/// `GET /sso/admin/orgs/{org}/setup`: what is configured and what is left.
pub async fn summary(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    let (org_id, instance) = (admin.org.id.clone(), admin.instance);
    let now = crate::clock::now();
    let (conns, tokens, used, doms, links) = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let conns = connections::list(conn, &org_id)?;
            let live: Vec<Option<i64>> = scim_tokens::table
                .filter(scim_tokens::org_id.eq(org_id.as_str()))
                .filter(scim_tokens::revoked_at.is_null())
                .select(scim_tokens::last_used_at)
                .load(conn)?;
            let doms = domains::list(conn, &org_id)?;
            let links = if instance {
                setup_links::list(conn, &org_id)?
            } else {
                Vec::new()
            };
            Ok((
                conns,
                live.len() as i64,
                live.iter().any(Option::is_some),
                doms,
                links,
            ))
        })
        .await?;
    let mut left = Vec::new();
    if !conns.iter().any(|c| c.live()) {
        left.push("No active SSO connection yet: add one (Add connection), run Test sign-in, then activate it.".to_string());
    }
    for c in conns.iter().filter(|c| c.draft) {
        left.push(format!(
            "\"{}\" is still a draft: finish its steps and activate it.",
            c.name
        ));
    }
    if tokens == 0 {
        left.push("No SCIM token yet: generate one on the SCIM page and enter it at the IdP (if it provisions by SCIM).".into());
    } else if !used {
        left.push(
            "The SCIM token has not been used yet: the IdP has not provisioned anyone.".into(),
        );
    }
    if doms.iter().any(|d| !d.verified) {
        left.push(
            "Some domains are not verified: publish their TXT record and press Verify.".into(),
        );
    }
    let slug = admin.org.slug.clone();
    Ok(render(
        StatusCode::OK,
        &SummaryPage {
            nav: admin.nav(),
            connections: conns
                .iter()
                .map(|c| {
                    let state = if !c.enabled {
                        "disabled"
                    } else if c.draft {
                        "draft"
                    } else {
                        "active"
                    };
                    let tested = if c.proven() {
                        ", works"
                    } else {
                        ", not tested yet"
                    };
                    (
                        c.name.clone(),
                        format!("{state}{tested}"),
                        format!("/sso/admin/orgs/{slug}/connections/{}", c.id),
                    )
                })
                .collect(),
            scim_tokens: tokens,
            scim_used: used,
            domain_setup: admin
                .nav()
                .setup
                .is_some_and(|i| i.split(',').any(|x| x == "domains")),
            domains: super::org::domain_rows(doms, admin.org.enforcement()),
            left,
            links: links
                .into_iter()
                .map(|l| LinkRow {
                    live: l.live(now),
                    id: l.id,
                    intents: l.intents,
                    expires: time(l.expires_at),
                    last_used: l.last_used_at.map(time).unwrap_or_else(|| "never".into()),
                })
                .collect(),
            intents: setup_links::INTENTS,
        },
    ))
}

#[derive(Deserialize)]
pub struct LinkForm {
    csrf: String,
    confirm_password: Option<String>,
    #[serde(default)]
    form_id: String,
    #[serde(default)]
    sso: Option<String>,
    #[serde(default)]
    scim: Option<String>,
    #[serde(default)]
    domains: Option<String>,
    #[serde(default)]
    days: Option<i64>,
}

/// `POST /sso/admin/orgs/{org}/setup-links` (instance admins): a new link, shown once.
pub async fn create_link(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<LinkForm>,
) -> AdminResult {
    let admin = super::sensitive(
        &state,
        &req,
        &path,
        &form.csrf,
        form.confirm_password.as_deref(),
    )
    .await?;
    let back = format!("/sso/admin/orgs/{}/setup", admin.org.slug);
    if !admin.instance {
        return Ok(admin
            .flasher
            .error(&back, "Only an instance admin can create setup links."));
    }
    let chosen: Vec<&str> = [
        ("sso", form.sso.is_some()),
        ("scim", form.scim.is_some()),
        ("domains", form.domains.is_some()),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(k, _)| *k)
    .collect();
    let intents = match setup_links::parse_intents(chosen) {
        Ok(i) => i,
        Err(IdentityError::Invalid(m)) => return Ok(admin.flasher.error(&back, &m)),
        Err(e) => return Err(e.into()),
    };
    let days = form.days.unwrap_or(7);
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let once = admin.once_form(&state, &req, &form.form_id);
    let base = state.settings.url_for("/sso/setup/");
    let back2 = back.clone();
    let result = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            if let Some(earlier) = once.earlier(conn)? {
                return Ok(earlier);
            }
            let (link, token) =
                setup_links::create(conn, &admin.org.id, &intents, days, &admin.actor, now)?;
            admin.record(
                conn,
                "admin.setup_link.create",
                json!({"id": link.id, "intents": link.intents, "expires_at": link.expires_at, "token": "(shown once)"}),
                now,
            )?;
            let shown = super::once::Shown {
                title: format!("Setup link for {}", admin.org.name),
                lines: vec![("Setup link".into(), format!("{base}{token}"))],
                warning: format!(
                    "Shown once. Send it to the organization's IT admin over a channel you trust: whoever opens it can set up {} for this organization until {} (or until you revoke it).",
                    link.intents.replace(',', ", "),
                    time(link.expires_at)
                ),
                back: back2,
            };
            once.store(conn, &shown, now)
        })
        .await;
    match result {
        Ok(page) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", page))
            .finish()),
        Err(IdentityError::Invalid(m)) => Ok(flash.error(&back, &m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf: String,
}

/// `POST /sso/admin/orgs/{org}/setup-links/{id}/revoke` (instance admins): the link opens
/// nothing any more and its sessions end.
pub async fn revoke_link(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<RevokeForm>,
) -> AdminResult {
    let (org, id) = path.into_inner();
    let admin = access(&state, &req, &org).await?;
    check_post(&req, &admin, &form.csrf)?;
    let back = format!("/sso/admin/orgs/{}/setup", admin.org.slug);
    if !admin.instance {
        return Err(AppError::NotFound.into());
    }
    let now = crate::clock::now();
    let flash = admin.flasher.clone();
    let result = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let n = setup_links::revoke(conn, &admin.org.id, &id, now)?;
            admin.record(
                conn,
                "admin.setup_link.revoke",
                json!({"id": id, "sessions_ended": n}),
                now,
            )?;
            Ok(n)
        })
        .await;
    match result {
        Ok(n) => Ok(flash.notice(
            &back,
            &format!("Setup link revoked; {n} session(s) opened with it were ended."),
        )),
        Err(IdentityError::NotFound(m)) => Ok(flash.error(&back, &m)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "setup_open.html")]
struct OpenPage {
    org: String,
    intents: String,
    expires: String,
    /// Who this browser is signed in as (that session ends when the link opens).
    current: Option<String>,
}

/// `GET /sso/setup/{token}`: what the link is for, and a button that opens it. Opening takes
/// a same-origin POST: a page elsewhere that sends a browser here cannot swap its session
/// for the link's (login CSRF), and a mail scanner that follows the link opens nothing.
pub async fn landing(
    state: web::Data<AppState>,
    path: web::Path<String>,
    current: Option<session::SignedIn>,
) -> Result<HttpResponse, PageError> {
    let token = path.into_inner();
    let now = crate::clock::now();
    let found = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let Some(link) = setup_links::by_token(conn, &token, now)? else {
                return Ok(None);
            };
            let org = orgs::get(conn, &link.org_id.clone().into())?;
            Ok(Some((link, org)))
        })
        .await?;
    let Some((link, org)) = found else {
        return Err(AppError::NotFound.into());
    };
    let current = current.map(|s| match s.principal {
        session::Principal::User { user, .. } => user.user_name,
        session::Principal::Admin(a) => a.email,
        session::Principal::Setup { org, .. } => format!("a setup link of {}", org.name),
    });
    let page = OpenPage {
        org: org.name,
        intents: link
            .intents
            .split(',')
            .map(|i| match i {
                "sso" => "SSO connections",
                "scim" => "SCIM provisioning",
                _ => "domains",
            })
            .collect::<Vec<_>>()
            .join(", "),
        expires: time(link.expires_at),
        current,
    };
    let mut res = render(StatusCode::OK, &page);
    // The token must not leave in a Referer, but the button's POST needs its Origin (under
    // `no-referrer` browsers without Fetch Metadata send `Origin: null`).
    res.headers_mut().insert(
        actix_web::http::header::REFERRER_POLICY,
        actix_web::http::header::HeaderValue::from_static("strict-origin"),
    );
    Ok(res)
}

/// Whether a POST comes from one of our own pages: Fetch Metadata where the browser sends it,
/// else the Origin header (a browser sends one of them on every cross-site POST).
fn same_origin(req: &HttpRequest, state: &AppState) -> bool {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return site == "same-origin" || site == "none";
    }
    match header("origin") {
        Some(origin) => origin == state.settings.public_url.origin().ascii_serialization(),
        None => true,
    }
}

/// `POST /sso/setup/{token}`: opens a setup link as a session for its org and intents (a new
/// session id; the browser's previous session ends), then to the setup summary (the token
/// leaves the address bar).
pub async fn open(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    if !same_origin(&req, &state) {
        return Err(AppError::Forbidden("cross-site request refused".into()).into());
    }
    let token = path.into_inner();
    let now = crate::clock::now();
    // Looked up on a read connection: a link the CLI just created is seen there.
    let found = state
        .db
        .run(move |conn| setup_links::by_token(conn, &token, now).map_err(AppError::from))
        .await?;
    let previous = session::cookie_hash(&req, &state.settings);
    let opened = state
        .db
        .write(move |conn| {
            (|| -> Result<_, IdentityError> {
                // Each request of the session checks the link again (`session::load_row`).
                let Some(link) = found else {
                    return Ok(None);
                };
                let org = orgs::get(conn, &link.org_id.clone().into())?;
                let id = session::create(
                    conn,
                    Subject::Setup(&link, &org),
                    "setup-link",
                    None,
                    previous.as_deref(),
                    now,
                )?;
                setup_links::mark_used(conn, &link.id, now)?;
                audit::record(
                    conn,
                    &Event::new(
                        Some(&org.id),
                        format!("setup-link:{}", link.id),
                        "setup_link.open",
                    )
                    .payload(json!({"intents": link.intents})),
                    now,
                )?;
                Ok(Some((id, org.slug)))
            })()
            .map_err(AppError::from)
        })
        .await?;
    let Some((cookie, slug)) = opened else {
        return Err(AppError::NotFound.into());
    };
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", format!("/sso/admin/orgs/{slug}/setup")))
        .insert_header(("referrer-policy", "no-referrer"))
        .cookie(session::session_cookie(&state.settings, cookie))
        .finish())
}
