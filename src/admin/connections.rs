//! Connections: create SAML (paste IdP metadata XML, a metadata URL, or entity ID + SSO URL +
//! certificate) and OIDC (issuer, client id, write-only secret, preset, tenant allowlist);
//! a connection's page shows what to enter at the IdP with copy buttons, setup hints per
//! IdP, a "Test sign-in" link, and the attributes or claims of its latest sign-in.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use diesel::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{access, sensitive, time, AdminResult, Nav};
use crate::db::schema::audit_events;
use crate::http::errors::AppError;
use crate::http::pages::render;
use crate::identity::IdentityError;
use crate::oidc::config::OidcConfig;
use crate::saml::config::{self as saml_config, SamlConfig};
use crate::sso::connections;
use crate::startup::AppState;

#[derive(Template)]
#[template(path = "admin/connection_new.html")]
struct NewPage {
    nav: Nav,
    error: Option<String>,
    /// The guided setups: (key, name).
    guides: Vec<(&'static str, &'static str)>,
    /// What the admin entered (a refused form comes back filled in).
    f: CreateForm,
    saml_presets: &'static [&'static str],
    oidc_presets: &'static [&'static str],
}

/// `GET /sso/admin/orgs/{org}/connections/new`
pub async fn new_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    Ok(render(
        StatusCode::OK,
        &NewPage {
            nav: admin.nav(),
            error: None,
            guides: super::guides::CHOICES
                .iter()
                .map(|(k, n, _)| (*k, *n))
                .collect(),
            f: CreateForm::default(),
            saml_presets: saml_config::PRESETS,
            oidc_presets: crate::oidc::config::PRESETS,
        },
    ))
}

#[derive(Deserialize, Default)]
pub struct CreateForm {
    csrf: String,
    #[serde(default)]
    form_id: String,
    confirm_password: Option<String>,
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    preset: String,
    // SAML
    #[serde(default)]
    metadata_xml: String,
    #[serde(default)]
    metadata_url: String,
    #[serde(default)]
    entity_id: String,
    #[serde(default)]
    sso_url: String,
    #[serde(default)]
    certificate: String,
    // OIDC
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    tenant_allow: String,
    #[serde(default)]
    groups_claim: String,
}

fn filled(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// `POST /sso/admin/orgs/{org}/connections`
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<CreateForm>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    super::check_post(&req, &admin, &form.csrf)?;
    let form = form.into_inner();
    // A wrong password keeps what was pasted too.
    if admin
        .confirm(&state, form.confirm_password.as_deref())
        .await
        .is_err()
    {
        let why = if admin.nav().confirm_password {
            "your password did not match: enter it again at the end of the form"
        } else {
            "this change needs a recent sign-in: sign out, sign in again with your identity provider, and submit within 10 minutes"
        };
        return Ok(refill(&admin, form, why.into()));
    }
    let preset = filled(&form.preset);
    let allow_private = state.settings.outbound_allow_private;
    let now = crate::clock::now();
    // Settings first (fetching and discovering off the workers), then one transaction.
    let built = build(&form, &form.kind, preset.clone(), true, allow_private, now).await?;
    let (config, secret) = match built {
        Ok(b) => b,
        Err(message) => return Ok(refill(&admin, form, message)),
    };
    let kind = form.kind.clone();
    let name = filled(&form.name).unwrap_or_else(|| {
        format!(
            "{} {}",
            preset.clone().unwrap_or_default(),
            kind.to_uppercase()
        )
        .trim()
        .to_string()
    });
    let key = state.key.clone();
    let slug = admin.org.slug.clone();
    let admin_slug = slug.clone();
    let flash = admin.flasher.clone();
    let form_id = form.form_id.clone();
    let action = format!("{}#{}", req.path(), form.kind);
    // Made in the UI, a connection starts as a draft: offered to nobody until activated.
    let created = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let session = admin.signed.id_hash.clone();
            if let Some(earlier) = super::submit::earlier(conn, &form_id, &action, &session)? {
                return Ok(Err(earlier));
            }
            let c = if let Some(secret) = &secret {
                let cfg: OidcConfig =
                    serde_json::from_value(config.clone()).map_err(anyhow::Error::from)?;
                crate::oidc::routes::store_connection(
                    conn,
                    &key,
                    &admin.org.id,
                    &admin.actor,
                    &name,
                    &cfg,
                    secret,
                    true,
                    now,
                )?
            } else {
                let c = connections::create(conn, &admin.org.id, &kind, &name, &config, true, now)?;
                admin.record(conn, "connection.add", json!({"id": c.id, "kind": kind, "draft": true, "idp_entity_id": config["idp_entity_id"], "metadata_url": config["metadata_url"]}), now)?;
                c
            };
            let page = format!("/sso/admin/orgs/{slug}/connections/{}", c.id);
            super::submit::remember(conn, &form_id, &action, &session, &page, now)?;
            Ok(Ok(page))
        })
        .await;
    Ok(match created {
        Ok(Ok(page)) => flash.notice(
            &page,
            "Draft connection created: nobody is offered it yet. Enter the values below at the IdP, run Test sign-in, then activate it.",
        ),
        Ok(Err(earlier)) => flash.notice(&earlier, "This form was already sent: here is the connection it created (no second one was made)."),
        Err(IdentityError::Conflict(m)) => flash.error(&format!("/sso/admin/orgs/{}/connections/new", admin_slug), &m),
        Err(e) => return Err(AppError::from(e).into()),
    })
}

#[derive(Deserialize)]
pub struct StartForm {
    csrf: String,
    #[serde(default)]
    form_id: String,
    idp: String,
    #[serde(default)]
    name: String,
}

/// `POST /sso/admin/orgs/{org}/connections/start`: a guided setup begins with a draft
/// connection that has gatehouse's values (entity ID, ACS URL, redirect URI) and none of the
/// IdP's yet: most IdP consoles ask for the ACS URL before they show their metadata. It signs
/// nobody in until the IdP's settings are entered, tested and the draft activated.
pub async fn start(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<StartForm>,
) -> AdminResult {
    let admin = access(&state, &req, &path).await?;
    super::check_post(&req, &admin, &form.csrf)?;
    let Some((key, idp_name, kind)) = super::guides::CHOICES
        .iter()
        .find(|(k, _, _)| *k == form.idp)
        .copied()
    else {
        return Ok(admin.flasher.error(
            &format!("/sso/admin/orgs/{}/connections/new", admin.org.slug),
            "Choose your identity provider first.",
        ));
    };
    let preset = saml_config::PRESETS.contains(&key).then(|| key.to_string());
    let config = if kind == "saml" {
        serde_json::to_value(SamlConfig::pending(preset))
    } else {
        serde_json::to_value(OidcConfig::pending(None))
    }
    .map_err(|e| AppError::Internal(e.into()))?;
    let name = filled(&form.name).unwrap_or_else(|| idp_name.to_string());
    let now = crate::clock::now();
    let (flash, slug) = (admin.flasher.clone(), admin.org.slug.clone());
    let (form_id, action) = (form.form_id.clone(), req.path().to_string());
    let page = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            let session = admin.signed.id_hash.clone();
            if let Some(earlier) = super::submit::earlier(conn, &form_id, &action, &session)? {
                return Ok(earlier);
            }
            let c = connections::create(conn, &admin.org.id, kind, &name, &config, true, now)?;
            admin.record(
                conn,
                "connection.add",
                json!({"id": c.id, "kind": kind, "draft": true, "guide": key}),
                now,
            )?;
            let page = format!("/sso/admin/orgs/{slug}/connections/{}", c.id);
            super::submit::remember(conn, &form_id, &action, &session, &page, now)?;
            Ok(page)
        })
        .await
        .map_err(AppError::from)?;
    Ok(flash.notice(
        &page,
        "Draft connection created. Follow the steps below in your IdP's console.",
    ))
}

/// The "Add a connection" page again after a refusal: filled in with what the admin entered
/// (except the client secret and the password) and the reason in an error banner.
fn refill(admin: &super::Admin, mut form: CreateForm, message: String) -> actix_web::HttpResponse {
    form.client_secret.clear();
    form.confirm_password = None;
    let mut chars = message.chars();
    let message = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
        None => message,
    };
    render(
        StatusCode::UNPROCESSABLE_ENTITY,
        &NewPage {
            nav: admin.nav(),
            error: Some(format!("Not created: {}.", message.trim_end_matches('.'))),
            guides: super::guides::CHOICES
                .iter()
                .map(|(k, n, _)| (*k, *n))
                .collect(),
            f: form,
            saml_presets: saml_config::PRESETS,
            oidc_presets: crate::oidc::config::PRESETS,
        },
    )
}

/// A connection's IdP settings from the form: (config JSON, client secret). A metadata URL is
/// fetched and an OIDC issuer discovered here, off the workers.
async fn build(
    form: &CreateForm,
    kind: &str,
    preset: Option<String>,
    secret_required: bool,
    allow_private: bool,
    now: i64,
) -> Result<Result<(Value, Option<String>), String>, AppError> {
    let built: Result<(Value, Option<String>), String> = match kind {
        "saml" => {
            let source = if let Some(xml) = filled(&form.metadata_xml) {
                saml_config::Source::MetadataXml(xml)
            } else if let Some(url) = filled(&form.metadata_url) {
                saml_config::Source::MetadataUrl(url)
            } else {
                saml_config::Source::Explicit {
                    entity_id: form.entity_id.trim().to_string(),
                    sso_url: form.sso_url.trim().to_string(),
                    cert_pem: form.certificate.clone(),
                }
            };
            let preset2 = preset.clone();
            web::block(move || -> Result<Value, String> {
                let mut cfg: SamlConfig = saml_config::from_source(source, allow_private)?;
                cfg.preset = preset2;
                cfg.validate()?;
                serde_json::to_value(&cfg).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?
            .map(|v| (v, None))
        }
        "oidc" => {
            let cfg = OidcConfig {
                issuer: form.issuer.trim().trim_end_matches('/').to_string(),
                client_id: form.client_id.trim().to_string(),
                preset: preset.clone(),
                groups_claim: filled(&form.groups_claim).unwrap_or_else(|| "groups".into()),
                tenant_allow: form
                    .tenant_allow
                    .split([',', ' ', '\n'])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect(),
                scopes: vec!["openid".into(), "email".into(), "profile".into()],
                leeway_secs: crate::oidc::config::DEFAULT_LEEWAY_SECS,
            };
            let secret = filled(&form.client_secret);
            web::block(move || -> Result<(Value, Option<String>), String> {
                cfg.validate()?;
                if secret_required && secret.is_none() {
                    return Err("the client secret is required".into());
                }
                crate::oidc::provider::probe(&cfg, allow_private, now)
                    .map_err(|f| format!("OpenID discovery failed: {}", f.0))?;
                Ok((
                    serde_json::to_value(&cfg).map_err(|e| e.to_string())?,
                    secret,
                ))
            })
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?
        }
        _ => Err("choose SAML or OIDC".into()),
    };
    Ok(built)
}

/// A value the IdP admin copies.
pub struct Field {
    pub id: String,
    pub label: String,
    pub value: String,
}

#[derive(Template)]
#[template(path = "admin/connection.html")]
struct ShowPage {
    nav: Nav,
    name: String,
    kind: String,
    enabled: bool,
    fields: Vec<Field>,
    hints: Vec<String>,
    settings: Vec<(String, String)>,
    test_url: String,
    last_sign_in: Option<String>,
    received: Vec<(String, String)>,
    id: String,
    /// SAML: (field, the connection's own attribute name for it).
    mapping: Vec<(String, String)>,
    draft: bool,
    /// The IdP's settings are there (a guided setup starts without them).
    configured: bool,
    guide_idp: &'static str,
    guide_steps: &'static [&'static str],
    guide_bring_back: &'static str,
    guide_scim: &'static [&'static str],
    scim_url: String,
    /// A real sign-in or a successful test has gone through it.
    proven: bool,
    test: Option<TestView>,
}

/// The latest Test sign-in, for its connection's page.
struct TestView {
    ok: bool,
    when: String,
    cause: Option<String>,
    /// What a real sign-in would do: (label, value).
    outcome: Vec<(String, String)>,
    /// The decoded SAML response or the ID token's claims, pretty-printed.
    response: Option<String>,
}

impl TestView {
    fn of(t: &connections::TestResult, detail: Option<&Value>) -> TestView {
        let mut outcome = Vec::new();
        let o = detail.map(|d| &d["outcome"]);
        if let Some(o) = o.filter(|o| o.is_object()) {
            let text = |v: &Value| match v {
                Value::String(s) => s.clone(),
                Value::Null => "(none)".into(),
                Value::Array(a) if a.is_empty() => "(none)".into(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| x.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            outcome.push(("A real sign-in".into(), text(&o["result"])));
            for (label, key) in [
                ("Why", "cause"),
                ("Account", "user_name"),
                ("How", "how"),
                ("Groups that count for roles", "groups"),
                ("App role", "role"),
            ] {
                if !o[key].is_null() || key == "role" && o["result"] == "would sign in" {
                    outcome.push((label.into(), text(&o[key])));
                }
            }
        }
        let response = detail.and_then(|d| {
            d["response_xml"].as_str().map(str::to_string).or_else(|| {
                d.get("claims")
                    .filter(|c| !c.is_null())
                    .and_then(|c| serde_json::to_string_pretty(c).ok())
            })
        });
        TestView {
            ok: t.ok,
            when: time(t.created_at),
            cause: t.cause.clone(),
            outcome,
            response,
        }
    }
}

fn hints(kind: &str, preset: Option<&str>) -> Vec<String> {
    let h: &[&str] = match (kind, preset) {
        ("saml", Some("okta")) => &["Okta: Applications → Create App Integration → SAML 2.0.", "Single sign-on URL = the ACS URL; Audience URI (SP Entity ID) = the SP entity ID.", "Name ID format: EmailAddress or Persistent; attribute statements: email, firstName, lastName; group attribute statement: groups."],
        ("saml", Some("entra")) => &["Entra ID: Enterprise applications → New application → Create your own → SAML.", "Identifier (Entity ID) = the SP entity ID; Reply URL (ACS) = the ACS URL; Sign on URL = the sign-on URL.", "Entra signs the assertion and may encrypt it: upload nothing, gatehouse's metadata URL carries its encryption certificate."],
        ("saml", Some("google")) => &["Google Workspace: Admin console → Apps → Web and mobile apps → Add custom SAML app.", "ACS URL and Entity ID from below; Name ID: Basic Information → Primary email."],
        ("saml", Some("onelogin")) => &["OneLogin: Applications → Add App → SAML Custom Connector (Advanced).", "Recipient and ACS (Consumer) URL = the ACS URL; Audience = the SP entity ID; ACS URL validator = the ACS URL."],
        ("saml", Some("jumpcloud")) => &["JumpCloud: SSO Applications → Custom SAML App.", "SP Entity ID = the SP entity ID; ACS URL = the ACS URL; IdP Entity ID must match the metadata you imported."],
        ("saml", _) => &["At the IdP, create a SAML 2.0 application with the SP entity ID and ACS URL below, or give it the SP metadata URL."],
        ("oidc", Some("entra")) => &["Entra ID: App registrations → Redirect URI (Web) = the redirect URI below; Certificates & secrets → client secret.", "A multi-tenant issuer (…/organizations/v2.0) needs the allowed tenant ids."],
        ("oidc", Some("google")) => &["Google Cloud console → Credentials → OAuth client ID (Web application); Authorized redirect URI = the redirect URI below.", "Only Workspace accounts of this organization's verified domains can sign in (the hd claim)."],
        ("oidc", Some("okta")) => &["Okta: Applications → Create App Integration → OIDC, Web Application; Sign-in redirect URI = the redirect URI below; Initiate login URI = the sign-in URL.", "Add a groups claim named groups to the ID token if roles come from Okta groups."],
        ("oidc", _) => &["Register a confidential web client with the redirect URI below; the sign-in URL is its initiate_login_uri."],
        _ => &[],
    };
    h.iter().map(|s| s.to_string()).collect()
}

/// `GET /sso/admin/orgs/{org}/connections/{id}`
pub async fn show(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> AdminResult {
    let (org, id) = path.into_inner();
    let admin = access(&state, &req, &org).await?;
    let org_id = admin.org.id.clone();
    let (c, last, test) = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let c = connections::get_in_org(conn, &org_id, &id)?.ok_or(AppError::NotFound)?;
            let test = connections::latest_test(conn, &c.id)?;
            // The latest successful sign-in through it (its payload has what the IdP sent).
            let last: Option<(i64, Option<String>)> = audit_events::table
                .filter(audit_events::chain.eq(org_id.as_str()))
                .filter(audit_events::action.eq(format!("login.{}", c.kind)))
                .filter(audit_events::outcome.eq("success"))
                .filter(audit_events::payload.like(format!("%\"connection\":\"{}\"%", c.id)))
                .order(audit_events::seq.desc())
                .select((audit_events::occurred_at, audit_events::payload))
                .first(conn)
                .optional()?;
            Ok((c, last, test))
        })
        .await?;
    let s = &state.settings;
    let mut settings = Vec::new();
    let configured;
    let (mut fields, preset, test_url) = if c.kind == "saml" {
        let cfg: SamlConfig = serde_json::from_str(&c.config)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
        configured = cfg.configured();
        settings.push(("IdP entity ID".into(), cfg.idp_entity_id.clone()));
        settings.push(("IdP SSO URL".into(), cfg.sso_url.clone()));
        if let Some(u) = &cfg.metadata_url {
            settings.push(("IdP metadata URL (refreshed every 6 h)".into(), u.clone()));
        }
        for info in cfg.certs.iter().filter_map(|x| saml_config::cert_info(x)) {
            settings.push((
                "IdP signing certificate".into(),
                format!(
                    "SHA-256 {} · {} · expires {}",
                    info.sha256, info.subject, info.not_after
                ),
            ));
        }
        let login = crate::saml::routes::login_url(s, &c.id);
        (
            vec![
                Field {
                    id: "sp-entity-id".into(),
                    label: "SP entity ID (Audience)".into(),
                    value: crate::saml::routes::sp_entity_id(s, &c.id),
                },
                Field {
                    id: "acs-url".into(),
                    label: "ACS URL (Reply / Single sign-on URL)".into(),
                    value: crate::saml::routes::acs_url(s, &c.id),
                },
                Field {
                    id: "metadata-url".into(),
                    label: "SP metadata URL".into(),
                    value: crate::saml::routes::sp_entity_id(s, &c.id),
                },
                Field {
                    id: "login-url".into(),
                    label: "Sign-on URL".into(),
                    value: login,
                },
            ],
            cfg.preset,
            format!(
                "/sso/saml/{}/login?test=1&return_to=/sso/admin/orgs/{}/connections/{}",
                c.id, admin.org.slug, c.id
            ),
        )
    } else {
        let cfg: OidcConfig = serde_json::from_str(&c.config)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
        configured = cfg.configured();
        settings.push(("Issuer".into(), cfg.issuer.clone()));
        settings.push(("Client ID".into(), cfg.client_id.clone()));
        settings.push((
            "Client secret".into(),
            if c.secret_enc.is_some() {
                "set (write-only)".into()
            } else {
                "missing".into()
            },
        ));
        settings.push(("Groups claim".into(), cfg.groups_claim.clone()));
        if !cfg.tenant_allow.is_empty() {
            settings.push(("Allowed tenants".into(), cfg.tenant_allow.join(", ")));
        }
        (
            vec![
                Field {
                    id: "redirect-uri".into(),
                    label: "Redirect URI".into(),
                    value: crate::oidc::routes::redirect_uri(s, &c.id),
                },
                Field {
                    id: "login-url".into(),
                    label: "Sign-in URL (initiate_login_uri)".into(),
                    value: crate::oidc::routes::login_url(s, &c.id),
                },
            ],
            cfg.preset,
            format!(
                "/sso/oidc/{}/login?test=1&return_to=/sso/admin/orgs/{}/connections/{}",
                c.id, admin.org.slug, c.id
            ),
        )
    };
    // What the IdP sent last time (the latest test, else the latest sign-in): attribute names
    // to map, claim values to check.
    let test_detail: Option<Value> = test
        .as_ref()
        .and_then(|t| serde_json::from_str(&t.detail).ok());
    let mut received = Vec::new();
    let sent = test_detail.clone().or_else(|| {
        last.as_ref()
            .and_then(|(_, p)| p.as_deref())
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
    });
    {
        if let Some(v) = sent {
            let source = if c.kind == "saml" {
                &v["attributes"]
            } else {
                &v["claims"]
            };
            if let Some(map) = source.as_object() {
                for (k, val) in map {
                    received.push((k.clone(), val.to_string()));
                }
            }
            // SAML attributes are kept as [name, [values]] pairs.
            for pair in source.as_array().into_iter().flatten() {
                if let (Some(k), Some(vals)) = (pair[0].as_str(), pair.get(1)) {
                    received.push((k.to_string(), vals.to_string()));
                }
            }
        }
    }
    let mapping = if c.kind == "saml" {
        let cfg: SamlConfig = serde_json::from_str(&c.config)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("{e}")))?;
        saml_config::MAPPABLE
            .iter()
            .map(|f| {
                (
                    f.to_string(),
                    cfg.attribute_map.get(*f).cloned().unwrap_or_default(),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let test = test.map(|t| TestView::of(&t, test_detail.as_ref()));
    // The IdP's own words for what it asks.
    let guide = super::guides::for_preset(&c.kind, preset.as_deref());
    for f in &mut fields {
        if let Some((_, label)) = guide.labels.iter().find(|(id, _)| *id == f.id) {
            f.label = label.to_string();
        }
    }
    Ok(render(
        StatusCode::OK,
        &ShowPage {
            nav: admin.nav(),
            configured,
            guide_idp: guide.idp,
            guide_steps: guide.steps,
            guide_bring_back: guide.bring_back,
            guide_scim: guide.scim,
            scim_url: state.settings.url_for("/scim/v2"),
            draft: c.draft,
            proven: c.proven(),
            test,
            id: c.id.clone(),
            mapping,
            hints: hints(&c.kind, preset.as_deref()),
            name: c.name,
            kind: c.kind.to_uppercase(),
            enabled: c.enabled,
            fields,
            settings,
            test_url,
            last_sign_in: last.map(|(t, _)| time(t)),
            received,
        },
    ))
}

#[derive(Deserialize)]
pub struct ChangeForm {
    csrf: String,
    confirm_password: Option<String>,
    /// `enable`, `disable` or `mapping`.
    action: String,
    #[serde(flatten)]
    fields: std::collections::BTreeMap<String, String>,
}

/// `POST /sso/admin/orgs/{org}/connections/{id}`: enable, disable, or (SAML) the attribute
/// mapping; audited with before and after.
pub async fn change(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<ChangeForm>,
) -> AdminResult {
    let (org, id) = path.into_inner();
    let admin = sensitive(
        &state,
        &req,
        &org,
        &form.csrf,
        form.confirm_password.as_deref(),
    )
    .await?;
    let form = form.into_inner();
    let now = crate::clock::now();
    let back = format!("/sso/admin/orgs/{}/connections/{id}", admin.org.slug);
    let flash = admin.flasher.clone();
    let notice = state
        .db
        .write(move |conn| -> Result<String, IdentityError> {
                let c = connections::get_in_org(conn, &admin.org.id, &id)?
                    .ok_or_else(|| IdentityError::NotFound("connection".into()))?;
                // A setup link sets up new connections: it cannot change one users already
                // sign in with (its IdP, its mapping, on or off), nor activate one untested.
                if admin.via_setup_link() && !c.draft {
                    return Err(IdentityError::Conflict(SETUP_LINK_LIVE.into()));
                }
                if admin.via_setup_link() && form.action == "activate" && !c.proven() {
                    return Err(IdentityError::Conflict("Not activated: run Test sign-in first. Through a setup link a connection is activated only after it passed a test.".into()));
                }
                match form.action.as_str() {
                    "activate" if c.draft => {
                        if !configured_config(&c) {
                            return Err(IdentityError::Conflict("Not activated: the IdP's settings are missing. Enter them below first.".into()));
                        }
                        let untested = !c.proven();
                        if untested && form.fields.get("untested").map(String::as_str) != Some("yes") {
                            return Err(IdentityError::Conflict("Not activated: this connection has not passed a Test sign-in. Run Test sign-in first, or tick \"Activate without a successful test\".".into()));
                        }
                        connections::activate(conn, &c.id, now)?;
                        admin.record(conn, "admin.connection.activate", json!({"id": c.id, "tested": !untested}), now)?;
                        Ok(if untested {
                            "Connection activated without a successful test: it is now offered to the organization's users.".to_string()
                        } else {
                            "Connection activated: it is now offered to the organization's users.".to_string()
                        })
                    }
                    "activate" => Ok("This connection is already active.".to_string()),
                    "disable" if c.enabled => {
                        let org = crate::identity::orgs::get(conn, &admin.org.id)?;
                        if let Some(why) = crate::identity::enforcement::lockout(conn, &org, crate::identity::enforcement::Change::DisableConnection(&c.id))? {
                            return Err(IdentityError::Conflict(why));
                        }
                        let ended = connections::set_enabled(conn, &c.id, false, now)?;
                        admin.record(conn, "admin.connection.update", json!({"id": c.id, "before": {"enabled": true}, "after": {"enabled": false}, "sessions_ended": ended}), now)?;
                        Ok(format!("Connection disabled; {ended} session(s) it signed in were ended"))
                    }
                    "enable" | "disable" => {
                        let enabled = form.action == "enable";
                        let ended = connections::set_enabled(conn, &c.id, enabled, now)?;
                        admin.record(conn, "admin.connection.update", json!({"id": c.id, "before": {"enabled": c.enabled}, "after": {"enabled": enabled}, "sessions_ended": ended}), now)?;
                        Ok(if enabled {
                            "Connection enabled".to_string()
                        } else {
                            format!("Connection disabled; {ended} session(s) it signed in were ended")
                        })
                    }
                    "mapping" if c.kind == "saml" => {
                        let mut cfg: SamlConfig = serde_json::from_str(&c.config).map_err(anyhow::Error::from)?;
                        let before = cfg.attribute_map.clone();
                        for field in saml_config::MAPPABLE {
                            match form.fields.get(*field).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                                Some(name) => {
                                    cfg.attribute_map.insert(field.to_string(), name.to_string());
                                }
                                None => {
                                    cfg.attribute_map.remove(*field);
                                }
                            }
                        }
                        cfg.validate().map_err(|m| IdentityError::Invalid(format!("Mapping not saved: {m}.")))?;
                        connections::update_config(conn, &c.id, &serde_json::to_value(&cfg).map_err(anyhow::Error::from)?, now)?;
                        admin.record(conn, "admin.connection.update", json!({"id": c.id, "before": {"attribute_map": before}, "after": {"attribute_map": cfg.attribute_map}}), now)?;
                        Ok("Attribute mapping saved".into())
                    }
                    _ => Err(IdentityError::Invalid("unknown change".into())),
                }
            })
        .await;
    match notice {
        Ok(n) => Ok(flash.notice(&back, &n)),
        Err(IdentityError::Conflict(m) | IdentityError::Invalid(m)) => Ok(flash.error(&back, &m)),
        Err(IdentityError::NotFound(_)) => Err(AppError::NotFound.into()),
        Err(e) => Err(AppError::from(e).into()),
    }
}

/// Why a setup link's session may not change a live connection.
const SETUP_LINK_LIVE: &str = "This connection is live: users sign in with it. A setup link sets up new connections only; ask the organization's admin to change this one.";

/// Whether a connection has its IdP's settings (see `SamlConfig::pending`).
fn configured_config(c: &connections::Connection) -> bool {
    match c.kind.as_str() {
        "saml" => serde_json::from_str::<SamlConfig>(&c.config).is_ok_and(|x| x.configured()),
        _ => serde_json::from_str::<OidcConfig>(&c.config).is_ok_and(|x| x.configured()),
    }
}

/// `POST /sso/admin/orgs/{org}/connections/{id}/idp`: new IdP settings (SAML: metadata or
/// entity ID, SSO URL and certificate — the certificate rotation case; OIDC: issuer, client
/// id, optionally a new secret, tenants, groups claim). The preset, attribute mapping and
/// other choices stay; audited with before and after (secrets masked).
pub async fn update_idp(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<CreateForm>,
) -> AdminResult {
    let (org, id) = path.into_inner();
    let admin = sensitive(
        &state,
        &req,
        &org,
        &form.csrf,
        form.confirm_password.as_deref(),
    )
    .await?;
    let form = form.into_inner();
    let (org_id, id2) = (admin.org.id.clone(), id.clone());
    let c = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            connections::get_in_org(conn, &org_id, &id2)?.ok_or(AppError::NotFound)
        })
        .await?;
    let back = format!("/sso/admin/orgs/{}/connections/{id}", admin.org.slug);
    let now = crate::clock::now();
    let old: Value = serde_json::from_str(&c.config).map_err(|e| AppError::Internal(e.into()))?;
    let preset = old["preset"].as_str().map(str::to_string);
    let built = build(
        &form,
        &c.kind,
        preset,
        c.secret_enc.is_none(),
        state.settings.outbound_allow_private,
        now,
    )
    .await?;
    let (mut config, secret) = match built {
        Ok(b) => b,
        Err(message) => return Ok(admin.flasher.error(&back, &format!("Not saved: {message}"))),
    };
    // What the admin chose before stays.
    for keep in [
        "attribute_map",
        "idp_initiated",
        "clock_skew_secs",
        "sign_requests",
        "scopes",
        "leeway_secs",
    ] {
        if let (Some(v), Some(obj)) = (old.get(keep), config.as_object_mut()) {
            obj.insert(keep.to_string(), v.clone());
        }
    }
    let key = state.key.clone();
    let flash = admin.flasher.clone();
    let setup_link = admin.via_setup_link();
    // A signing certificate taken away (the leaked-certificate case) ends the sessions this
    // connection signed in: they may rest on assertions signed with it. Adding one does not.
    let certs = |v: &Value| -> Vec<String> {
        v["certs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old_certs, new_certs) = (certs(&old), certs(&config));
    let cert_removed = old_certs.iter().any(|c| !new_certs.contains(c));
    let ended = state
        .db
        .write(move |conn| -> Result<_, IdentityError> {
            if setup_link {
                let live = connections::get_in_org(conn, &c.org_id, &c.id)?
                    .is_none_or(|current| !current.draft);
                if live {
                    return Err(IdentityError::Conflict(SETUP_LINK_LIVE.into()));
                }
            }
            connections::update_config(conn, &c.id, &config, now)?;
            connections::forget_test(conn, &c.id)?;
            let ended = if cert_removed {
                connections::revoke_sessions(conn, &c.id, now)?
            } else {
                0
            };
            if let Some(secret) = &secret {
                connections::set_secret(
                    conn,
                    &c.id,
                    &crate::oidc::routes::seal_secret(&key, &c.id, secret),
                )?;
            }
            admin.record(
                conn,
                "admin.connection.update",
                json!({
                    "id": c.id, "before": old, "after": config,
                    "client_secret": if secret.is_some() { "(replaced)" } else { "(unchanged)" },
                    "sessions_ended": ended,
                }),
                now,
            )?;
            Ok(ended)
        })
        .await;
    let ended = match ended {
        Err(IdentityError::Conflict(m)) => return Ok(flash.error(&back, &m)),
        other => other.map_err(AppError::from)?,
    };
    let notice = if cert_removed && ended > 0 {
        format!("IdP settings saved; a signing certificate was removed, so the {ended} session(s) this connection signed in were ended")
    } else {
        "IdP settings saved".to_string()
    };
    Ok(flash.notice(&back, &notice))
}
