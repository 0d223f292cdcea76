//! `/sso/saml/{connection}/metadata`, `/login` and `/acs`.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use samael::traits::ToXml;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use super::config::{attribute_names, SamlConfig};
use super::validate::{self, Failure, SpContext, Verified};
use crate::audit::{self, Event, Outcome};
use crate::config::Settings;
use crate::db::schema::{saml_replay, saml_requests};
use crate::db::{write_tx, DbConn};
use crate::http::errors::{AppError, PageError};
use crate::identity::{keys, orgs, IdentityError};
use crate::login::return_to::safe_local_path;
use crate::sso::connections::{self, Connection};
use crate::sso::handoff;
use crate::sso::resolve::Asserted;
use crate::startup::AppState;

const REQUEST_TTL_SECS: i64 = 600;
/// At most this many responses are validated at once (XML signature work is CPU-bound).
pub const ACS_CONCURRENCY: usize = 8;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/sso/saml")
            .route("/{connection}/metadata", web::get().to(metadata))
            .route("/{connection}/login", web::get().to(login))
            .service(
                web::resource("/{connection}/acs")
                    .app_data(
                        web::FormConfig::default()
                            .limit(validate::MAX_RESPONSE_BYTES + 16 * 1024)
                            .error_handler(|err, _| {
                                match err {
                                    actix_web::error::UrlencodedError::Overflow { .. } => {
                                        AppError::TooLarge
                                    }
                                    _ => AppError::BadRequest("malformed SAML POST".into()),
                                }
                                .into()
                            }),
                    )
                    .route(web::post().to(acs)),
            ),
    );
}

/// The SP entity ID of a connection: its metadata URL.
pub fn sp_entity_id(settings: &Settings, connection: &str) -> String {
    settings.url_for(&format!("/sso/saml/{connection}/metadata"))
}

pub fn acs_url(settings: &Settings, connection: &str) -> String {
    settings.url_for(&format!("/sso/saml/{connection}/acs"))
}

pub fn login_url(settings: &Settings, connection: &str) -> String {
    settings.url_for(&format!("/sso/saml/{connection}/login"))
}

fn saml_config(c: &Connection) -> Result<SamlConfig, AppError> {
    if c.kind != "saml" {
        return Err(AppError::NotFound);
    }
    serde_json::from_str(&c.config)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored SAML config unreadable: {e}")))
}

/// The connection (404 when unknown or not SAML) with its settings and the SP key material.
async fn load(
    state: &AppState,
    id: &str,
) -> Result<(Connection, SamlConfig, Option<keys::SigningKey>), AppError> {
    let id = id.to_string();
    let (c, key) = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let c = connections::get(conn, &id)?.ok_or(AppError::NotFound)?;
            let key = keys::current(conn, keys::Purpose::SamlSp)?;
            Ok((c, key))
        })
        .await?;
    let cfg = saml_config(&c)?;
    Ok((c, cfg, key))
}

fn sp_context(
    state: &AppState,
    c: &Connection,
    cfg: &SamlConfig,
    key: Option<&keys::SigningKey>,
) -> Result<SpContext, AppError> {
    let (pkey, cert_der) = match key {
        Some(k) => {
            let pkey = k.private_key(&state.key).map_err(AppError::Internal)?;
            let der = k
                .certificate_pem
                .as_deref()
                .and_then(|pem| openssl::x509::X509::from_pem(pem.as_bytes()).ok())
                .and_then(|x| x.to_der().ok());
            (Some(pkey), der)
        }
        None => (None, None),
    };
    Ok(SpContext {
        entity_id: sp_entity_id(&state.settings, &c.id),
        acs_url: acs_url(&state.settings, &c.id),
        config: cfg.clone(),
        key: pkey,
        cert_der,
    })
}

/// `GET /sso/saml/{connection}/metadata`: entity ID, ACS URL, signing and encryption certs.
pub async fn metadata(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (c, cfg, key) = load(&state, &path).await?;
    let ctx = sp_context(&state, &c, &cfg, key.as_ref())?;
    let sp = validate::service_provider(&ctx, cfg.idp_initiated)
        .map_err(|f| AppError::Internal(anyhow::anyhow!(f.0)))?;
    let mut md = sp
        .metadata()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("metadata: {e}")))?;
    if let Some(d) = md.sp_sso_descriptors.as_mut().and_then(|v| v.first_mut()) {
        d.single_logout_services = None;
        d.authn_requests_signed = Some(cfg.sign_requests);
        if let Some(kds) = d.key_descriptors.as_mut() {
            if let Some(enc) = kds.get_mut(1) {
                enc.key_use = Some("encryption".into());
            }
        }
    }
    let xml = md
        .to_string()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("metadata XML: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml")
        .insert_header((
            "content-disposition",
            format!("inline; filename=\"gatehouse-{}.xml\"", c.id),
        ))
        .body(xml))
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    /// `test=1`: the admin UI's "Test sign-in" (validated in full, nobody signed in).
    test: Option<String>,
}

/// `GET /sso/saml/{connection}/login`: an AuthnRequest over HTTP-Redirect. The request id (128
/// random bits) is stored server-side with its expiry and accepted once.
pub async fn login(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<LoginQuery>,
    current: Option<crate::login::session::SignedIn>,
) -> Result<HttpResponse, PageError> {
    let (c, cfg, key) = load(&state, &path).await?;
    if !c.enabled {
        return Err(AppError::Forbidden(
            "This sign-in connection is disabled. Ask your administrator.".into(),
        )
        .into());
    }
    if c.draft && q.test.is_none() {
        return Err(crate::sso::handoff::not_active().into());
    }
    if !cfg.configured() {
        return Err(crate::sso::handoff::not_set_up().into());
    }
    let test_session = crate::sso::handoff::test_session(q.test.is_some(), current.as_ref(), &c)?;
    let ctx = sp_context(&state, &c, &cfg, key.as_ref())?;
    let sp = validate::service_provider(&ctx, false)
        .map_err(|f| AppError::Internal(anyhow::anyhow!(f.0)))?;
    let mut request = sp
        .make_authentication_request(&cfg.sso_url)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("AuthnRequest: {e}")))?;
    request.id = format!("_{}", hex::encode(random_bytes()));
    // An app asked for a new sign-in (prompt=login, max_age): the IdP must authenticate again.
    let fresh =
        crate::provider::grants::fresh_for(&state.db, q.return_to.clone(), crate::clock::now())
            .await?;
    if fresh.is_some() {
        request.force_authn = Some(true);
    }
    let url = if cfg.sign_requests {
        let k = ctx
            .key
            .as_ref()
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("no SP key to sign with")))?;
        request.signed_redirect("", k)
    } else {
        request.redirect("")
    }
    .map_err(|e| AppError::Internal(anyhow::anyhow!("AuthnRequest redirect: {e}")))?
    .ok_or_else(|| AppError::Internal(anyhow::anyhow!("AuthnRequest has no destination")))?;
    let now = crate::clock::now();
    let (id, conn_id) = (request.id.clone(), c.id.clone());
    let return_to =
        crate::login::return_to::safe(q.return_to.as_deref(), &state.settings.allowed_return_hosts);
    let purpose = q.test.as_ref().map(|_| "test");
    state
        .db
        .run(move |conn| {
            diesel::insert_into(saml_requests::table)
                .values((
                    saml_requests::id.eq(&id),
                    saml_requests::connection_id.eq(&conn_id),
                    saml_requests::return_to.eq(return_to),
                    saml_requests::purpose.eq(purpose),
                    saml_requests::test_session.eq(test_session),
                    saml_requests::created_at.eq(now),
                    saml_requests::expires_at.eq(now + REQUEST_TTL_SECS),
                ))
                .execute(conn)
                .map_err(AppError::from)
        })
        .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", url.to_string()))
        .insert_header(("cache-control", "no-store"))
        .finish())
}

fn random_bytes() -> [u8; 16] {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

#[derive(Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// Maps the verified attributes with the connection's preset.
fn asserted(v: &Verified, cfg: &SamlConfig) -> Asserted {
    let names = attribute_names(cfg.preset.as_deref());
    // A per-connection name comes first, then the preset's.
    let with_custom = |field: &str, preset: &'static [&'static str]| -> Vec<String> {
        cfg.attribute_map
            .get(field)
            .cloned()
            .into_iter()
            .chain(preset.iter().map(|s| s.to_string()))
            .collect()
    };
    let first = |keys: &[String]| {
        keys.iter().find_map(|k| {
            v.attributes
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .and_then(|(_, vals)| vals.first().cloned())
        })
    };
    let groups = with_custom("groups", names.groups)
        .iter()
        .flat_map(|k| {
            v.attributes
                .iter()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(k))
        })
        .flat_map(|(_, vals)| vals.iter().cloned())
        .collect();
    // The NameID is the e-mail when it looks like one (Google sends the primary e-mail).
    let email = first(&with_custom("email", names.email)).or_else(|| {
        crate::domain::Email::parse(&v.subject)
            .ok()
            .map(|e| e.to_string())
    });
    Asserted {
        subject: v.subject.clone(),
        transient: v.transient,
        email,
        given_name: first(&with_custom("given_name", names.given_name)),
        family_name: first(&with_custom("family_name", names.family_name)),
        display_name: first(&with_custom("display_name", names.display_name)),
        groups,
    }
}

enum AcsError {
    /// The response was refused: audited with `cause` and the decoded XML.
    Refused {
        cause: String,
        xml: Option<String>,
    },
    Server(AppError),
    /// A Test sign-in failed: recorded on the connection, the admin goes back to its page.
    TestFailed {
        cause: String,
        xml: Option<String>,
        back: Option<String>,
    },
}

impl From<AppError> for AcsError {
    fn from(e: AppError) -> Self {
        AcsError::Server(e)
    }
}

impl From<IdentityError> for AcsError {
    fn from(e: IdentityError) -> Self {
        AcsError::Server(e.into())
    }
}

impl From<diesel::result::Error> for AcsError {
    fn from(e: diesel::result::Error) -> Self {
        AcsError::Server(e.into())
    }
}

fn refused(cause: impl Into<String>, xml: &str) -> AcsError {
    AcsError::Refused {
        cause: cause.into(),
        xml: Some(xml.chars().take(audit::MAX_PAYLOAD_BYTES / 2).collect()),
    }
}

type RequestRow = (
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

static ACS_PERMITS: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();

/// `POST /sso/saml/{connection}/acs`
pub async fn acs(
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<AcsForm>,
) -> Result<HttpResponse, PageError> {
    let connection_id = path.into_inner();
    let (c, cfg, key) = load(&state, &connection_id).await?;
    let permits = ACS_PERMITS
        .get_or_init(|| Arc::new(Semaphore::new(ACS_CONCURRENCY)))
        .clone();
    // Wait briefly for a validation slot; answer 429 only when the queue does not move.
    let Ok(Ok(_permit)) =
        tokio::time::timeout(std::time::Duration::from_secs(5), permits.acquire_owned()).await
    else {
        return Err(AppError::TooManyRequests { retry_after: 1 }.into());
    };
    let now = crate::clock::now();
    let form = form.into_inner();
    let outcome = process(&state, &c, &cfg, key.as_ref(), form, now).await;
    match outcome {
        Ok(Done::Session(token)) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", handoff::COMPLETE_URL))
            .insert_header(("cache-control", "no-store"))
            .cookie(handoff::cookie(&state.settings, token))
            .finish()),
        Ok(Done::Test(back)) => Ok(HttpResponse::SeeOther()
            .insert_header(("location", back.unwrap_or_else(|| "/sso/admin".into())))
            .insert_header(("cache-control", "no-store"))
            .finish()),
        Err(AcsError::Server(e)) => Err(e.into()),
        Err(AcsError::TestFailed { cause, xml, back }) => Ok(handoff::test_failed_back(
            &state,
            &c,
            "saml",
            cause,
            json!({"response_xml": xml}),
            back,
            now,
        )
        .await?),
        Err(AcsError::Refused { cause, xml }) => {
            let event = Event::new(Some(&c.org_id), format!("saml:{}", c.id), "login.saml")
                .outcome(Outcome::Failure)
                .payload(json!({"connection": c.id, "cause": cause, "response_xml": xml}));
            state
                .db
                .run(move |conn| audit::record(conn, &event, now).map_err(AppError::from))
                .await?;
            Err(AppError::BadRequest(
                "Your sign-in could not be completed. Your administrator can look up the reason with the reference below.".into(),
            )
            .into())
        }
    }
}

async fn process(
    state: &AppState,
    c: &Connection,
    cfg: &SamlConfig,
    key: Option<&keys::SigningKey>,
    form: AcsForm,
    now: i64,
) -> Result<Done, AcsError> {
    if !c.enabled {
        return Err(AcsError::Refused {
            cause: "the connection is disabled".into(),
            xml: None,
        });
    }
    if !cfg.configured() {
        return Err(AcsError::Refused {
            cause: "the connection is not set up yet (the IdP's metadata was never entered)".into(),
            xml: None,
        });
    }
    let Some(raw) = form.saml_response.filter(|s| !s.trim().is_empty()) else {
        return Err(AcsError::Refused {
            cause: "the POST has no SAMLResponse".into(),
            xml: None,
        });
    };
    let xml =
        validate::decode(&raw).map_err(|Failure(cause)| AcsError::Refused { cause, xml: None })?;
    let env = validate::envelope(&xml);

    // SP-initiated: the request must be ours, for this connection, live and unused.
    let request = match env.in_response_to.clone() {
        Some(id) => {
            let conn_id = c.id.clone();
            let row: Option<RequestRow> = state
                .db
                .run(move |conn| {
                    saml_requests::table
                        .find(&id)
                        .filter(saml_requests::connection_id.eq(&conn_id))
                        .select((
                            saml_requests::id,
                            saml_requests::return_to,
                            saml_requests::expires_at,
                            saml_requests::consumed_at,
                            saml_requests::purpose,
                            saml_requests::test_session,
                        ))
                        .first(conn)
                        .optional()
                        .map_err(AppError::from)
                })
                .await?;
            match row {
                Some((id, return_to, expires, None, purpose, test_session)) if expires > now => {
                    let test = (purpose.as_deref() == Some("test")).then_some(test_session);
                    Some((id, return_to, test))
                }
                Some((_, _, _, Some(_), _, _)) => {
                    return Err(refused(
                        "InResponseTo names a sign-in request that was already used (replay)",
                        &xml,
                    ))
                }
                Some(_) => {
                    return Err(refused(
                        "InResponseTo names a sign-in request that expired",
                        &xml,
                    ))
                }
                None => {
                    return Err(refused(
                        "InResponseTo does not name a sign-in request issued by this connection",
                        &xml,
                    ))
                }
            }
        }
        None if cfg.idp_initiated => None,
        None => {
            return Err(refused(
                "unsolicited (IdP-initiated) sign-in is disabled for this connection",
                &xml,
            ))
        }
    };

    let test = request.as_ref().and_then(|(_, _, test)| test.clone());
    // A draft answers only its admins' Test sign-in.
    if c.draft && test.is_none() {
        return Err(refused(
            "the connection is a draft: an admin must activate it before anyone can sign in with it",
            &xml,
        ));
    }
    let back = request.as_ref().and_then(|(_, r, _)| r.clone());
    let request_id = request.as_ref().map(|(id, _, _)| id.clone());
    let relay_state = form.relay_state;
    match verify_and_finish(state, c, cfg, key, relay_state, now, xml, env, request).await {
        // A failed test goes back to the connection's page with its cause, once: the request
        // is used up, so a second response to it (anyone who saw its id) records nothing.
        Err(AcsError::Refused { cause, xml }) if test.is_some() => {
            let id = request_id.unwrap_or_default();
            let first = state
                .db
                .write(move |conn| {
                    diesel::update(
                        saml_requests::table
                            .find(&id)
                            .filter(saml_requests::consumed_at.is_null()),
                    )
                    .set(saml_requests::consumed_at.eq(Some(now)))
                    .execute(conn)
                    .map_err(AppError::from)
                })
                .await?
                == 1;
            if first {
                Err(AcsError::TestFailed { cause, xml, back })
            } else {
                Err(AcsError::Refused {
                    cause: "InResponseTo names a sign-in request that was already used (replay)"
                        .into(),
                    xml,
                })
            }
        }
        other => other,
    }
}

#[allow(clippy::too_many_arguments)]
async fn verify_and_finish(
    state: &AppState,
    c: &Connection,
    cfg: &SamlConfig,
    key: Option<&keys::SigningKey>,
    relay_state: Option<String>,
    now: i64,
    xml: String,
    env: validate::Envelope,
    request: Option<(String, Option<String>, Option<Option<String>>)>,
) -> Result<Done, AcsError> {
    let ctx = sp_context(state, c, cfg, key)?;
    let expected = request.as_ref().map(|(id, _, _)| id.clone());
    let test = request.as_ref().and_then(|(_, _, test)| test.clone());
    let is_test = test.is_some();
    let xml_for_check = xml.clone();
    let verified = tokio::task::spawn_blocking(move || {
        validate::validate(&xml_for_check, env, &ctx, expected.as_deref(), now)
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("validation task: {e}")))?
    .map_err(|Failure(cause)| refused(cause, &xml))?;

    let asserted = asserted(&verified, cfg);
    let return_to = match &request {
        Some((_, r, _)) => r.clone(),
        None => safe_local_path(relay_state.as_deref()),
    };
    let test_return = return_to.clone();
    let method = if request.is_some() {
        "saml"
    } else {
        "saml-idp-initiated"
    };
    let (conn_id, org_id) = (c.id.clone(), c.org_id.clone());
    // The settings the response was checked against (a test counts only for them).
    let validated_config = c.config.clone();
    let skew = cfg.clock_skew_secs;
    let xml_audit: String = xml.chars().take(audit::MAX_PAYLOAD_BYTES / 2).collect();
    let result = state
        .db
        .run(move |conn| -> Result<Result<String, String>, AppError> {
            write_tx(conn, |conn: &mut DbConn| -> Result<Result<String, String>, IdentityError> {
                // Each assertion is accepted once (kept until it could no longer be valid).
                let replay = diesel::insert_into(saml_replay::table)
                    .values((
                        saml_replay::connection_id.eq(&conn_id),
                        saml_replay::assertion_id.eq(&verified.assertion_id),
                        // Until the assertion could no longer pass any time check.
                        saml_replay::expires_at.eq(verified
                            .not_on_or_after
                            .unwrap_or(now + 3600)
                            .max(now + validate::MAX_ISSUE_AGE_SECS + skew)
                            + skew),
                    ))
                    .execute(conn);
                match replay {
                    Ok(_) => {}
                    Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
                        return Ok(Err(format!("assertion {} was already used (replay)", verified.assertion_id)));
                    }
                    Err(e) => return Err(e.into()),
                }
                if let Some((id, _, _)) = &request {
                    let n = diesel::update(saml_requests::table.find(id).filter(saml_requests::consumed_at.is_null()))
                        .set(saml_requests::consumed_at.eq(Some(now)))
                        .execute(conn)?;
                    if n != 1 {
                        return Ok(Err("InResponseTo names a sign-in request that was already used (replay)".into()));
                    }
                }
                // An app asked for a new sign-in: the IdP must have authenticated the user
                // again, not answered from its own session (it was sent ForceAuthn).
                if let Some(fresh) = crate::provider::grants::fresh_sign_in_for(conn, return_to.as_deref(), now)? {
                    match verified.authn_instant {
                        Some(at) if at + skew >= fresh.not_before => {}
                        Some(at) => {
                            return Ok(Err(format!(
                                "the app asked for a new sign-in, but the IdP's AuthnInstant ({}) is older than that request: the IdP answered from its session",
                                crate::clock::rfc3339(at)
                            )))
                        }
                        None => {
                            return Ok(Err("the app asked for a new sign-in, but the assertion has no AuthnInstant".into()))
                        }
                    }
                }
                let org = orgs::get(conn, &org_id)?;
                if let Some(test_session) = &test {
                    return Ok(handoff::test_sign_in(conn, &org.id, &conn_id, &validated_config, "saml", &asserted, json!({"attributes": verified.attributes, "response_xml": xml_audit}), test_session.as_deref(), now)?.map(|()| String::new()));
                }
                handoff::verified_sign_in(
                    conn,
                    &org,
                    &conn_id,
                    "saml",
                    method,
                    &asserted,
                    json!({"attributes": verified.attributes, "response_xml": xml_audit}),
                    return_to.as_deref(),
                    now,
                )
            })
            .map_err(AppError::from)
        })
        .await?;
    let token = result.map_err(|cause| refused(cause, &xml))?;
    Ok(if is_test {
        Done::Test(test_return)
    } else {
        Done::Session(token)
    })
}

/// What a valid response led to.
enum Done {
    /// A new sign-in: the handoff token.
    Session(String),
    /// A test sign-in: back to where it started (the connection's admin page).
    Test(Option<String>),
}
