//! The admin UI under `/sso/admin/`: server-rendered pages (askama), forms that work without
//! JavaScript. Instance admins see every org; org admins (the org-admin flag, never an app
//! role) see only their own; anyone else gets 404. Every state-changing form carries the
//! session's CSRF token and must come from our own origin (Fetch Metadata); every change is
//! audited with before/after, secrets masked.

pub mod actors;
pub mod apps;
pub mod audit_log;
pub mod connections;
pub mod flash;
pub mod guides;
pub mod once;
pub mod org;
pub mod scim;
pub mod setup;
pub mod submit;
pub mod users;

use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde_json::Value;

use crate::audit::{self, Event};
use crate::http::errors::{AppError, PageError};
use crate::identity::orgs::{self, Organization};
use crate::login::session::{Principal, SignedIn};
use crate::startup::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sso/setup/{token}", web::get().to(setup::landing));
    cfg.route("/sso/setup/{token}", web::post().to(setup::open));
    cfg.service(
        web::scope("/sso/admin")
            .wrap_fn(|req, srv| {
                use actix_web::dev::Service;
                let had = flash::present(&req);
                let fut = srv.call(req);
                async move { fut.await.map(|res| flash::clear_when_shown(had, res)) }
            })
            .route("", web::get().to(org::home))
            .route("/static/admin.js", web::get().to(script))
            .route("/audit", web::get().to(audit_log::instance))
            .route("/apps", web::get().to(apps::list))
            .route("/apps", web::post().to(apps::create))
            .route("/apps/{slug}", web::get().to(apps::show))
            .route("/apps/{slug}", web::post().to(apps::change))
            .route("/once/{id}", web::get().to(apps::once))
            .route("/orgs/{org}", web::get().to(org::overview))
            .route("/orgs/{org}/setup", web::get().to(setup::summary))
            .route(
                "/orgs/{org}/setup-links",
                web::post().to(setup::create_link),
            )
            .route(
                "/orgs/{org}/setup-links/{id}/revoke",
                web::post().to(setup::revoke_link),
            )
            .route("/orgs/{org}/domains", web::post().to(org::add_domain))
            .route(
                "/orgs/{org}/domains/{domain}",
                web::post().to(org::change_domain),
            )
            .route(
                "/orgs/{org}/enforcement",
                web::post().to(org::set_enforcement),
            )
            .route(
                "/orgs/{org}/breakglass",
                web::post().to(org::add_breakglass),
            )
            .route(
                "/orgs/{org}/breakglass/remove",
                web::post().to(org::remove_breakglass),
            )
            .route("/orgs/{org}/roles", web::get().to(org::roles))
            .route("/orgs/{org}/roles", web::post().to(org::add_role))
            .route("/orgs/{org}/roles/{name}", web::post().to(org::change_role))
            .route("/orgs/{org}/mappings", web::post().to(org::add_mapping))
            .route(
                "/orgs/{org}/mappings/remove",
                web::post().to(org::remove_mapping),
            )
            .route(
                "/orgs/{org}/group-source",
                web::post().to(org::set_group_source),
            )
            .route("/orgs/{org}/scim", web::get().to(scim::page))
            .route("/orgs/{org}/scim/tokens", web::post().to(scim::issue))
            .route("/orgs/{org}/once/{id}", web::get().to(once::show))
            .route(
                "/orgs/{org}/scim/tokens/{id}/revoke",
                web::post().to(scim::revoke),
            )
            .route(
                "/orgs/{org}/connections/new",
                web::get().to(connections::new_page),
            )
            .route(
                "/orgs/{org}/connections/start",
                web::post().to(connections::start),
            )
            .service(
                web::resource("/orgs/{org}/connections")
                    .app_data(web::FormConfig::default().limit(512 * 1024))
                    .route(web::post().to(connections::create)),
            )
            .route(
                "/orgs/{org}/connections/{id}",
                web::get().to(connections::show),
            )
            .route(
                "/orgs/{org}/connections/{id}",
                web::post().to(connections::change),
            )
            .service(
                web::resource("/orgs/{org}/connections/{id}/idp")
                    .app_data(web::FormConfig::default().limit(512 * 1024))
                    .route(web::post().to(connections::update_idp)),
            )
            .route("/orgs/{org}/users", web::get().to(users::list))
            .route("/orgs/{org}/users/{id}", web::get().to(users::show))
            .route(
                "/orgs/{org}/users/{id}/sessions/revoke",
                web::post().to(users::revoke_sessions),
            )
            .route("/orgs/{org}/groups", web::get().to(users::groups))
            .route("/orgs/{org}/audit", web::get().to(audit_log::list))
            .route(
                "/orgs/{org}/audit/export.{format}",
                web::get().to(audit_log::export),
            )
            .route("/orgs/{org}/audit/{id}", web::get().to(audit_log::show)),
    );
}

/// Copy buttons (progressive enhancement; the pages work without it).
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("cache-control", "public, max-age=3600"))
        .body(include_str!("../../templates/static/admin.js"))
}

/// Why an admin request did not get its page.
#[derive(Debug)]
pub enum AdminError {
    /// Not signed in: to the sign-in page, then back here.
    SignIn(String),
    Page(PageError),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::SignIn(_) => write!(f, "not signed in"),
            AdminError::Page(p) => write!(f, "{p}"),
        }
    }
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::SignIn(_) => StatusCode::SEE_OTHER,
            AdminError::Page(p) => p.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AdminError::SignIn(path) => HttpResponse::SeeOther()
                .insert_header((
                    "location",
                    format!(
                        "/sso/login?return_to={}",
                        url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
                    ),
                ))
                .finish(),
            AdminError::Page(p) => p.error_response(),
        }
    }
}

impl From<AppError> for AdminError {
    fn from(e: AppError) -> Self {
        AdminError::Page(e.into())
    }
}

impl From<crate::identity::IdentityError> for AdminError {
    fn from(e: crate::identity::IdentityError) -> Self {
        AdminError::Page(AppError::from(e).into())
    }
}

pub type AdminResult = Result<HttpResponse, AdminError>;

/// Who is acting, and on which org.
pub struct Admin {
    pub signed: SignedIn,
    pub org: Organization,
    pub instance: bool,
    /// The audit actor: `admin:<id>` or `user:<id>`.
    pub actor: String,
    pub name: String,
    /// The banner left by the previous POST, shown once.
    pub flash: Option<flash::Flash>,
    /// Leaves the next banner for this session.
    pub flasher: flash::Flasher,
}

/// The navigation every admin page shows.
pub struct Nav {
    pub slug: String,
    pub org_name: String,
    pub who: String,
    pub instance: bool,
    pub csrf: String,
    /// Sensitive forms ask for the password again (accounts that have one); SSO-only admins
    /// must have signed in within the last few minutes instead.
    pub confirm_password: bool,
    /// The banner left by the previous POST (see `flash`).
    pub flash: Option<flash::Flash>,
    /// This rendering's form id (see `submit`: a form is done once).
    pub form_id: String,
    /// Signed in with a break-glass account (emergency access).
    pub emergency: bool,
    /// Through a setup link: its intents (`sso,scim`); the navigation shows only those.
    pub setup: Option<String>,
}

/// How recent an SSO admin's sign-in must be for a sensitive change.
pub const RECENT_SIGN_IN_SECS: i64 = 600;

impl Admin {
    pub fn nav(&self) -> Nav {
        Nav {
            slug: self.org.slug.clone(),
            org_name: self.org.name.clone(),
            who: self.name.clone(),
            instance: self.instance,
            csrf: self.signed.csrf_token.clone(),
            confirm_password: self.password_hash().is_some(),
            flash: self.flash.clone(),
            form_id: submit::new_form_id(),
            emergency: crate::login::session::is_break_glass_session(&self.signed),
            setup: match &self.signed.principal {
                Principal::Setup { link, .. } => Some(link.intents.clone()),
                _ => None,
            },
        }
    }

    /// The shown-once result of the form `form_id` posted by this admin (see `once`).
    pub fn once_form(&self, state: &AppState, req: &HttpRequest, form_id: &str) -> once::OnceForm {
        once::OnceForm::new(
            state,
            req,
            format!("/sso/admin/orgs/{}", self.org.slug),
            &self.signed.id_hash,
            form_id,
        )
    }

    /// Signed in through a setup link (no account: the link is the credential).
    pub fn via_setup_link(&self) -> bool {
        matches!(self.signed.principal, Principal::Setup { .. })
    }

    fn password_hash(&self) -> Option<String> {
        match &self.signed.principal {
            Principal::Admin(a) => Some(a.password_hash.clone()),
            Principal::User { user, .. } => user.password_hash.clone(),
            Principal::Setup { .. } => None,
        }
    }

    /// A sensitive change (certificates and connections, enforcement, tokens, admins and
    /// break-glass accounts): the admin's password again, or for an SSO-only admin a sign-in
    /// within the last few minutes.
    pub async fn confirm(
        &self,
        state: &AppState,
        password: Option<&str>,
    ) -> Result<(), AdminError> {
        match self.password_hash() {
            Some(hash) => password_again(state, hash, password).await?,
            // A setup link's session: the link is the credential (CSRF is still checked).
            None if matches!(self.signed.principal, Principal::Setup { .. }) => {}
            None => {
                if crate::clock::now() - self.signed.created_at > RECENT_SIGN_IN_SECS {
                    return Err(AppError::Forbidden(
                        "This change needs a recent sign-in: sign out, sign in again with your identity provider, and resubmit within 10 minutes.".into(),
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Records an admin change in the org's audit log (in the caller's transaction).
    pub fn record(
        &self,
        conn: &mut crate::db::DbConn,
        action: &str,
        payload: Value,
        now: i64,
    ) -> Result<(), crate::identity::IdentityError> {
        let mut event =
            Event::new(Some(&self.org.id), self.actor.clone(), action.to_string()).payload(payload);
        // Changes made with emergency access stand out, like its sign-in.
        if crate::login::session::is_break_glass_session(&self.signed) {
            event = event.outcome(audit::Outcome::Warning);
        }
        audit::record(conn, &event, now)?;
        Ok(())
    }
}

pub async fn signed_in(req: &HttpRequest) -> Result<SignedIn, AdminError> {
    match SignedIn::extract(req).await {
        Ok(s) => Ok(s),
        Err(AppError::Unauthorized(_)) => Err(AdminError::SignIn(
            req.uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "/sso/admin".into()),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The signed-in admin of `org` (a slug), or 404 for anyone else (nothing is revealed about
/// orgs the caller does not administer).
pub async fn access(state: &AppState, req: &HttpRequest, org: &str) -> Result<Admin, AdminError> {
    let signed = signed_in(req).await?;
    let slug = org.to_string();
    let found = state
        .db
        .run(move |conn| match orgs::find(conn, &slug) {
            Ok(o) => Ok(Some(o)),
            Err(crate::identity::IdentityError::NotFound(_)) => Ok(None),
            Err(e) => Err(AppError::from(e)),
        })
        .await?;
    let Some(org) = found else {
        return Err(AppError::NotFound.into());
    };
    if !crate::login::session::administers(&signed, &org.id) {
        return Err(AppError::NotFound.into());
    }
    let (instance, actor, name) = match &signed.principal {
        Principal::Admin(a) => (true, format!("admin:{}", a.id), a.email.clone()),
        Principal::User { user, .. } => {
            (false, format!("user:{}", user.id), user.user_name.clone())
        }
        Principal::Setup { link, .. } => {
            setup_scope(req, &org.slug, link)?;
            (
                false,
                format!("setup-link:{}", link.id),
                "IT admin (setup link)".to_string(),
            )
        }
    };
    let flash = flash::read(req, state, &signed.id_hash);
    let flasher = flash::Flasher::new(state, &signed.id_hash);
    Ok(Admin {
        signed,
        org,
        instance,
        actor,
        name,
        flash,
        flasher,
    })
}

/// The admin of `org` making a sensitive change: access, the form's CSRF token and origin,
/// and the password again.
pub async fn sensitive(
    state: &AppState,
    req: &HttpRequest,
    org: &str,
    csrf: &str,
    confirm_password: Option<&str>,
) -> Result<Admin, AdminError> {
    let admin = access(state, req, org).await?;
    check_post(req, &admin, csrf)?;
    admin.confirm(state, confirm_password).await?;
    Ok(admin)
}

/// A setup link's session sees only its org's setup pages for the link's intents: the setup
/// summary and shown-once results always; connections for `sso`; the SCIM page and tokens
/// for `scim`; domains for `domains`. Anything else is 404, as for a stranger.
fn setup_scope(
    req: &HttpRequest,
    slug: &str,
    link: &crate::identity::setup_links::SetupLink,
) -> Result<(), AdminError> {
    let prefix = format!("/sso/admin/orgs/{slug}");
    let rest = req.path().strip_prefix(&prefix).unwrap_or("/none");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let allowed = match segments.as_slice() {
        ["setup"] | ["once", _] => true,
        ["connections", ..] => link.allows("sso"),
        ["scim"] | ["scim", "tokens"] | ["scim", "tokens", _, "revoke"] => link.allows("scim"),
        ["domains"] | ["domains", _] => link.allows("domains"),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(AppError::NotFound.into())
    }
}

/// Emergency access (a break-glass session) changes only what an IdP outage needs:
/// enforcement, and connections (create, fix their IdP settings, enable, disable, activate);
/// it may revoke SCIM tokens but not mint them, and cannot touch break-glass accounts,
/// domains, roles or users.
fn emergency_allows(req: &HttpRequest, admin: &Admin) -> Result<(), AdminError> {
    if !crate::login::session::is_break_glass_session(&admin.signed) {
        return Ok(());
    }
    let prefix = format!("/sso/admin/orgs/{}", admin.org.slug);
    let rest = req.path().strip_prefix(&prefix).unwrap_or("");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let allowed = matches!(
        segments.as_slice(),
        ["enforcement"]
            | ["connections"]
            | ["connections", "start"]
            | ["connections", _]
            | ["connections", _, "idp"]
            | ["scim", "tokens", _, "revoke"]
    );
    if allowed {
        return Ok(());
    }
    Err(AppError::Forbidden(
        "Emergency access (a break-glass account) can change SSO enforcement and fix connections only. Sign in as an admin for anything else.".into(),
    )
    .into())
}

/// A sensitive change: the admin's password, given again, must match `hash`.
pub async fn password_again(
    state: &AppState,
    hash: String,
    password: Option<&str>,
) -> Result<(), AdminError> {
    let given = password.unwrap_or("").to_string();
    let ok = !given.is_empty()
        && state
            .passwords
            .verify_any(vec![hash], secrecy::SecretString::from(given))
            .await?
            .is_some();
    if !ok {
        return Err(AppError::Forbidden(
            "This change needs your password again: go back, enter it in the form, and resubmit."
                .into(),
        )
        .into());
    }
    Ok(())
}

/// A state-changing request: the session's CSRF token in the form, and a same-origin request
/// (Fetch Metadata; browsers that do not send it are covered by the token).
pub fn check_post(req: &HttpRequest, admin: &Admin, submitted: &str) -> Result<(), AdminError> {
    emergency_allows(req, admin)?;
    let site = req
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    if matches!(site, Some(s) if s != "same-origin" && s != "none") {
        return Err(AppError::Forbidden("cross-site request refused".into()).into());
    }
    let ok: bool =
        subtle::ConstantTimeEq::ct_eq(submitted.as_bytes(), admin.signed.csrf_token.as_bytes())
            .into();
    if !ok {
        return Err(AppError::Forbidden(
            "This form expired or did not come from this site. Reload the page and try again."
                .into(),
        )
        .into());
    }
    Ok(())
}

pub fn time(ts: i64) -> String {
    crate::clock::rfc3339(ts)
}
