//! The apps (OpenID Connect clients) in the admin UI, for instance admins: the list, registering
//! one (its client secret shown once), changing its URIs and orgs, rotating its secret (the old
//! one kept for an overlap), disabling and removing it. The same rules as `gatehouse app`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{signed_in, AdminError, AdminResult};
use crate::audit::{self, Event};
use crate::db::ids::OrgId;
use crate::http::errors::AppError;
use crate::http::pages::render;
use crate::identity::admins::InstanceAdmin;
use crate::identity::{orgs, IdentityError};
use crate::login::session::{Principal, SignedIn};
use crate::provider::apps::{self, App, AppSpec};
use crate::startup::AppState;

/// A signed-in instance admin (anyone else: 404).
struct Operator {
    signed: SignedIn,
    admin: InstanceAdmin,
    flasher: super::flash::Flasher,
    flash: Option<super::flash::Flash>,
}

async fn operator(state: &AppState, req: &HttpRequest) -> Result<Operator, AdminError> {
    let signed = signed_in(req).await?;
    let Principal::Admin(a) = &signed.principal else {
        return Err(AppError::NotFound.into());
    };
    let admin = (**a).clone();
    Ok(Operator {
        flasher: super::flash::Flasher::new(state, &signed.id_hash),
        flash: super::flash::read(req, state, &signed.id_hash),
        admin,
        signed,
    })
}

impl Operator {
    /// The shown-once result of the form `form_id` (instance-level: under `/sso/admin`).
    fn once_form(
        &self,
        state: &AppState,
        req: &HttpRequest,
        form_id: &str,
    ) -> super::once::OnceForm {
        super::once::OnceForm::new(
            state,
            req,
            "/sso/admin".into(),
            &self.signed.id_hash,
            form_id,
        )
    }

    /// A same-origin POST with this session's CSRF token and, for a sensitive change, the
    /// admin's password again.
    async fn check(
        &self,
        state: &AppState,
        req: &HttpRequest,
        csrf: &str,
        password: Option<&str>,
    ) -> Result<(), AdminError> {
        let site = req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok());
        let token_ok: bool =
            subtle::ConstantTimeEq::ct_eq(csrf.as_bytes(), self.signed.csrf_token.as_bytes())
                .into();
        if matches!(site, Some(s) if s != "same-origin" && s != "none") || !token_ok {
            return Err(AppError::Forbidden(
                "This form expired or did not come from this site. Reload the page and try again."
                    .into(),
            )
            .into());
        }
        if let Some(password) = password {
            super::password_again(state, self.admin.password_hash.clone(), Some(password)).await?;
        }
        Ok(())
    }
}

struct AppRow {
    slug: String,
    name: String,
    client_id: String,
    kind: &'static str,
    enabled: bool,
    redirect_uris: String,
}

#[derive(Template)]
#[template(path = "admin/apps.html")]
struct ListPage {
    who: String,
    csrf: String,
    form_id: String,
    flash: Option<super::flash::Flash>,
    apps: Vec<AppRow>,
    /// What a refused form had (shown again).
    refill: AppForm,
}

#[derive(Template)]
#[template(path = "admin/app.html")]
struct AppPage {
    who: String,
    csrf: String,
    form_id: String,
    flash: Option<super::flash::Flash>,
    slug: String,
    name: String,
    client_id: String,
    public: bool,
    enabled: bool,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    backchannel_logout_uri: String,
    orgs: String,
    id_token_alg: String,
    previous_secret_until: Option<String>,
    sign_ins: Vec<SignInRow>,
    /// What the app's OpenID Connect library is given.
    issuer: String,
}

/// One of an app's recent sign-ins.
struct SignInRow {
    when: String,
    user: String,
    href: Option<String>,
    org: String,
    method: &'static str,
    state: String,
}

fn sign_in_row((g, user, org, live): crate::provider::grants::RecentSignIn) -> SignInRow {
    let state = match (g.revoked_at, g.ended_at) {
        (Some(t), _) => format!(
            "revoked {}: {}",
            super::time(t),
            g.revoked_reason.unwrap_or_default()
        ),
        (None, Some(t)) => format!("signed out {}", super::time(t)),
        // Ended a moment ago; the sweep has not marked it yet.
        (None, None) if !live => "signed out".into(),
        (None, None) => "signed in".into(),
    };
    SignInRow {
        when: super::time(g.created_at),
        href: match (&user, &org) {
            (Some(_), Some(o)) => Some(format!("/sso/admin/orgs/{o}/users/{}", g.user_id)),
            _ => None,
        },
        user: user.unwrap_or_else(|| "(deleted user)".into()),
        org: org.unwrap_or_default(),
        method: match g.auth_method.as_str() {
            "password" => "password",
            "breakglass" => "break-glass",
            "saml" => "SAML",
            "oidc" => "OIDC",
            _ => "SSO",
        },
        state,
    }
}

#[derive(Template)]
#[template(path = "admin/app_secret.html")]
struct SecretPage {
    title: String,
    lines: Vec<(String, String)>,
    warning: String,
    back: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct AppForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    form_id: String,
    confirm_password: Option<String>,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    name: String,
    /// One URI per line.
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    post_logout_redirect_uris: String,
    #[serde(default)]
    backchannel_logout_uri: String,
    /// `all` or org slugs, comma-separated.
    #[serde(default)]
    orgs: String,
    #[serde(default)]
    id_token_alg: String,
    public: Option<String>,
    /// On an app's page: `update`, `rotate`, `disable`, `enable` or `remove`.
    #[serde(default)]
    action: String,
    overlap_hours: Option<i64>,
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `all` or org slugs → `None` (every org) or their ids.
fn org_ids(conn: &mut crate::db::DbConn, given: &str) -> Result<Option<Vec<OrgId>>, IdentityError> {
    let given = given.trim();
    if given == "all" {
        return Ok(None);
    }
    if given.is_empty() {
        // Never read an emptied field as "every org".
        return Err(IdentityError::Invalid(
            "name the organizations (slugs separated by commas), or write all".into(),
        ));
    }
    let mut out = Vec::new();
    for slug in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.push(orgs::find(conn, slug)?.id);
    }
    Ok(Some(out))
}

fn org_slugs(conn: &mut crate::db::DbConn, app: &App) -> Result<Vec<String>, IdentityError> {
    let mut out = Vec::new();
    for id in app.orgs().unwrap_or_default() {
        out.push(orgs::get(conn, &OrgId::from(id))?.slug);
    }
    Ok(out)
}

fn spec(conn: &mut crate::db::DbConn, f: &AppForm) -> Result<AppSpec, IdentityError> {
    let backchannel = f.backchannel_logout_uri.trim();
    Ok(AppSpec {
        name: Some(f.name.trim().to_string()).filter(|n| !n.is_empty()),
        redirect_uris: Some(lines(&f.redirect_uris)),
        post_logout_redirect_uris: Some(lines(&f.post_logout_redirect_uris)),
        backchannel_logout_uri: Some((!backchannel.is_empty()).then(|| backchannel.to_string())),
        orgs: Some(org_ids(conn, &f.orgs)?),
        id_token_alg: Some(f.id_token_alg.trim().to_string()).filter(|a| !a.is_empty()),
        enabled: None,
    })
}

/// `GET /sso/admin/apps`
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> AdminResult {
    let op = operator(&state, &req).await?;
    let all = state
        .db
        .run(|conn| apps::list(conn).map_err(AppError::from))
        .await?;
    Ok(list_page(&op, all, AppForm::default()))
}

fn list_page(op: &Operator, all: Vec<App>, refill: AppForm) -> HttpResponse {
    render(
        StatusCode::OK,
        &ListPage {
            who: op.admin.email.clone(),
            csrf: op.signed.csrf_token.clone(),
            form_id: super::submit::new_form_id(),
            flash: op.flash.clone(),
            apps: all
                .into_iter()
                .map(|a| AppRow {
                    kind: if a.public { "public" } else { "confidential" },
                    redirect_uris: a.redirect_uris().join(" "),
                    slug: a.slug,
                    name: a.name,
                    client_id: a.client_id,
                    enabled: a.enabled,
                })
                .collect(),
            refill,
        },
    )
}

/// `POST /sso/admin/apps`: registers an app; its secret is shown once.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<AppForm>,
) -> AdminResult {
    let op = operator(&state, &req).await?;
    let form = form.into_inner();
    op.check(
        &state,
        &req,
        &form.csrf,
        Some(form.confirm_password.as_deref().unwrap_or("")),
    )
    .await?;
    let now = crate::clock::now();
    let f = form.clone();
    let once = op.once_form(&state, &req, &form.form_id);
    let op_record = OperatorRef::of(&op);
    let result = state
        .db
        .write(move |conn| -> Result<String, IdentityError> {
            if let Some(earlier) = once.earlier(conn)? {
                return Ok(earlier);
            }
            let spec = spec(conn, &f)?;
            let (app, created) = apps::add(conn, f.slug.trim(), f.public.is_some(), &spec, now)?;
            let slugs = org_slugs(conn, &app)?;
            op_record.record(conn, "admin.app.add", app.describe(&slugs), now)?;
            let mut lines = vec![("client_id".to_string(), created.client_id.clone())];
            if let Some(secret) = created.client_secret {
                lines.push(("client_secret".into(), secret));
            }
            let shown = super::once::Shown {
                title: format!("App {} registered", app.name),
                lines,
                warning: if app.public {
                    "A public app has no secret: it must use PKCE.".into()
                } else {
                    "Shown once: store the client secret in the app's configuration now. gatehouse keeps only a hash of it.".into()
                },
                back: format!("/sso/admin/apps/{}", app.slug),
            };
            once.store(conn, &shown, now)
        })
        .await;
    match result {
        Ok(page) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", page))
            .finish()),
        Err(
            IdentityError::Invalid(m) | IdentityError::Conflict(m) | IdentityError::NotFound(m),
        ) => {
            // Refused: the form again, with what was entered (never the password).
            let all = state
                .db
                .run(|conn| apps::list(conn).map_err(AppError::from))
                .await?;
            let op = Operator {
                flash: Some(super::flash::Flash::error_now(format!(
                    "Not registered: {m}."
                ))),
                ..op
            };
            let mut res = list_page(
                &op,
                all,
                AppForm {
                    confirm_password: None,
                    ..form
                },
            );
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(res)
        }
        Err(e) => Err(AppError::from(e).into()),
    }
}

/// What a write closure needs to audit as the operator.
#[derive(Clone)]
struct OperatorRef {
    actor: String,
}

impl OperatorRef {
    fn of(op: &Operator) -> OperatorRef {
        OperatorRef {
            actor: format!("admin:{}", op.admin.id),
        }
    }

    fn record(
        &self,
        conn: &mut crate::db::DbConn,
        action: &str,
        payload: Value,
        now: i64,
    ) -> Result<(), IdentityError> {
        audit::record(
            conn,
            &Event::new(None, self.actor.clone(), action).payload(payload),
            now,
        )?;
        Ok(())
    }
}

/// `GET /sso/admin/apps/{slug}`
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> AdminResult {
    let op = operator(&state, &req).await?;
    let slug = path.into_inner();
    let (app, slugs, recent) = state
        .db
        .run(move |conn| -> Result<_, IdentityError> {
            let app = apps::get(conn, &slug)?;
            let slugs = org_slugs(conn, &app)?;
            let recent = crate::provider::grants::recent(conn, &app.id, 20, crate::clock::now())?;
            Ok((app, slugs, recent))
        })
        .await
        .map_err(|e| match e {
            IdentityError::NotFound(_) => AppError::NotFound,
            other => other.into(),
        })?;
    Ok(render(
        StatusCode::OK,
        &AppPage {
            who: op.admin.email.clone(),
            csrf: op.signed.csrf_token.clone(),
            form_id: super::submit::new_form_id(),
            flash: op.flash.clone(),
            redirect_uris: app.redirect_uris().join("\n"),
            post_logout_redirect_uris: app.post_logout_redirect_uris().join("\n"),
            backchannel_logout_uri: app.backchannel_logout_uri.clone().unwrap_or_default(),
            orgs: if app.orgs().is_some() {
                slugs.join(", ")
            } else {
                "all".into()
            },
            previous_secret_until: app
                .previous_secret_until
                .filter(|t| *t > crate::clock::now())
                .map(super::time),
            slug: app.slug,
            name: app.name,
            client_id: app.client_id,
            public: app.public,
            enabled: app.enabled,
            id_token_alg: app.id_token_alg,
            sign_ins: recent.into_iter().map(sign_in_row).collect(),
            issuer: crate::provider::issuer(&state.settings),
        },
    ))
}

/// `POST /sso/admin/apps/{slug}`: a change (`action`).
pub async fn change(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<AppForm>,
) -> AdminResult {
    let op = operator(&state, &req).await?;
    let slug = path.into_inner();
    if !apps::valid_slug(&slug) {
        return Err(AppError::NotFound.into());
    }
    let form = form.into_inner();
    // Every change asks for the password again: new URIs or orgs decide where codes and
    // tokens go and whose users they are; enabling brings back an app someone stopped.
    op.check(
        &state,
        &req,
        &form.csrf,
        Some(form.confirm_password.as_deref().unwrap_or("")),
    )
    .await?;
    let back = format!("/sso/admin/apps/{slug}");
    let now = crate::clock::now();
    let once = op.once_form(&state, &req, &form.form_id);
    let rec = OperatorRef::of(&op);
    let (f, s2) = (form.clone(), slug.clone());
    enum Done {
        Notice(String),
        Page(String),
    }
    let result = state
        .db
        .write(move |conn| -> Result<Done, IdentityError> {
            let describe = |conn: &mut crate::db::DbConn, a: &App| -> Result<Value, IdentityError> {
                let slugs = org_slugs(conn, a)?;
                Ok(a.describe(&slugs))
            };
            match f.action.as_str() {
                "update" => {
                    let spec = spec(conn, &f)?;
                    let (before, after) = apps::update(conn, &s2, &spec, now)?;
                    let payload = json!({"slug": s2, "before": describe(conn, &before)?, "after": describe(conn, &after)?});
                    rec.record(conn, "admin.app.update", payload, now)?;
                    Ok(Done::Notice("App saved".into()))
                }
                "enable" | "disable" => {
                    let enabled = f.action == "enable";
                    let spec = AppSpec { enabled: Some(enabled), ..AppSpec::default() };
                    apps::update(conn, &s2, &spec, now)?;
                    rec.record(conn, "admin.app.update", json!({"slug": s2, "after": {"enabled": enabled}}), now)?;
                    Ok(Done::Notice(if enabled { "App enabled".into() } else { "App disabled: its users cannot sign in to it".into() }))
                }
                "rotate" => {
                    if let Some(earlier) = once.earlier(conn)? {
                        return Ok(Done::Page(earlier));
                    }
                    let hours = f.overlap_hours.unwrap_or(apps::DEFAULT_OVERLAP_SECS / 3600);
                    let (app, secret) = apps::rotate_secret(conn, &s2, hours.saturating_mul(3600), now)?;
                    rec.record(conn, "admin.app.rotate_secret", json!({"slug": s2, "previous_secret_until": app.previous_secret_until, "client_secret": "(shown once)"}), now)?;
                    let shown = super::once::Shown {
                        title: format!("New client secret of {}", app.name),
                        lines: vec![("client_id".into(), app.client_id.clone()), ("client_secret".into(), secret)],
                        warning: match app.previous_secret_until {
                            Some(t) => format!("Shown once. The previous secret keeps working until {}: put this one in the app's configuration before then.", super::time(t)),
                            None => "Shown once. The previous secret stopped working now.".into(),
                        },
                        back: format!("/sso/admin/apps/{}", app.slug),
                    };
                    Ok(Done::Page(once.store(conn, &shown, now)?))
                }
                "remove" => {
                    let app = apps::remove(conn, &s2)?;
                    let payload = describe(conn, &app)?;
                    rec.record(conn, "admin.app.remove", payload, now)?;
                    Ok(Done::Page("/sso/admin/apps".into()))
                }
                _ => Err(IdentityError::Invalid("unknown change".into())),
            }
        })
        .await;
    match result {
        Ok(Done::Notice(n)) => Ok(op.flasher.notice(&back, &n)),
        Ok(Done::Page(p)) if p == "/sso/admin/apps" => Ok(op.flasher.notice(
            &p,
            &format!("Removed app {slug}: its secret no longer works"),
        )),
        Ok(Done::Page(p)) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", p))
            .finish()),
        Err(IdentityError::Invalid(m) | IdentityError::Conflict(m)) => {
            Ok(op.flasher.error(&back, &format!("Not saved: {m}.")))
        }
        Err(IdentityError::NotFound(_)) => Err(AppError::NotFound.into()),
        Err(e) => Err(AppError::from(e).into()),
    }
}

/// `GET /sso/admin/once/{id}`: an instance-level secret (an app's), once.
pub async fn once(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> AdminResult {
    let op = operator(&state, &req).await?;
    let id = path.into_inner();
    let (key, session, now) = (
        state.key.clone(),
        op.signed.id_hash.clone(),
        crate::clock::now(),
    );
    let shown = state
        .db
        .write(move |conn| super::once::take(conn, &key, &id, &session, now))
        .await
        .map_err(AppError::from)?;
    let shown = shown.unwrap_or_else(|| super::once::Shown {
        title: "Already shown".into(),
        lines: Vec::new(),
        warning: "This secret was shown once and is not available any more (a reload or the back button cannot show it again, and nothing new was created). If you did not store it, rotate the app's secret.".into(),
        back: "/sso/admin/apps".into(),
    });
    Ok(super::once::no_store(render(
        StatusCode::OK,
        &SecretPage {
            title: shown.title,
            lines: shown.lines,
            warning: shown.warning,
            back: shown.back,
        },
    )))
}
