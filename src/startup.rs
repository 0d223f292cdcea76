//! Builds the application: state, middleware, route groups, listeners (HTTP or rustls).

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::config::Settings;
use crate::crypto::{KeySource, SecretKey};
use crate::db::Db;
use crate::http::{context, health, metrics, pages};
use crate::login::password::Passwords;

/// Everything a handler may need, shared by all workers.
pub struct AppState {
    pub settings: Settings,
    pub db: Db,
    pub key: SecretKey,
    pub passwords: Passwords,
    /// Failed sign-in steps, for back-off (per replica).
    pub backoff: crate::login::backoff::Backoff,
    /// Unauthenticated SCIM requests, audited once per source per minute.
    pub scim_refusals: crate::scim::auth::Refusals,
    /// Token-endpoint requests whose client did not authenticate, audited the same way.
    pub oauth_refusals: crate::scim::auth::Refusals,
}

pub struct Application {
    port: u16,
    server: Server,
    metrics_server: Option<Server>,
}

/// Opens the database, runs migrations, resolves the secret key. Blocking: call it from
/// `spawn_blocking` or a synchronous context.
pub fn prepare(settings: &Settings) -> anyhow::Result<(Db, SecretKey)> {
    let (key, source) = SecretKey::load_or_generate(settings)?;
    if let KeySource::Generated(path) = source {
        eprintln!(
            "note: generated a new secret key in {}. Back it up with the database. \
             Replicas must all use the same key: set GATEHOUSE_SECRET_KEY to its contents.",
            path.display()
        );
    }
    let db = Db::connect(settings)?;
    let applied = db.migrate()?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied migrations");
    }
    let created = crate::identity::keys::ensure(&mut *db.conn()?, &key, crate::clock::now())?;
    if !created.is_empty() {
        tracing::info!(keys = ?created, "generated signing keys");
    }
    Ok((db, key))
}

impl Application {
    /// Binds the listener(s) and builds the server; does not start serving until awaited.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let prepared_settings = settings.clone();
        let (db, key) = tokio::task::spawn_blocking(move || prepare(&prepared_settings))
            .await
            .context("start-up task failed")??;
        Application::build_with(settings, db, key)
    }

    pub fn build_with(
        mut settings: Settings,
        db: Db,
        key: SecretKey,
    ) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        if settings.public_url_derived && settings.listen.port() == 0 {
            let _ = settings.public_url.set_port(Some(port));
        }
        let metrics = web::Data::new(metrics::Metrics::new()?);
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} (metrics)"))?,
            ),
            None => None,
        };
        let passwords = Passwords::new(settings.password_hash_concurrency)?;
        // A fresh install: say how to get in (also on `/` and `/sso/admin`).
        let no_admin = db
            .conn()
            .ok()
            .and_then(|mut c| crate::identity::admins::any(&mut c).ok())
            == Some(false);
        if no_admin {
            tracing::warn!(
                "no administrator exists yet: run `gatehouse admin add you@example.com --password-env VAR` (with the same settings as the server) to create one, then sign in at {}",
                settings.url_for("/sso/admin")
            );
        }
        spawn_audit_purge(db.clone(), settings.audit_retention_days);
        crate::sso::purge::spawn(db.clone());
        crate::identity::domain_check::spawn(db.clone(), settings.dns_resolver);
        crate::saml::refresh::spawn(db.clone(), settings.outbound_allow_private);
        let tls = match &settings.tls {
            Some(files) => Some(load_tls(&files.cert, &files.key)?),
            None => None,
        };
        let state = web::Data::new(AppState {
            settings,
            db: db.clone(),
            key,
            passwords,
            backoff: Default::default(),
            scim_refusals: Default::default(),
            oauth_refusals: Default::default(),
        });
        crate::provider::logout::spawn(state.clone());
        let db_data = web::Data::new(db);
        let app_metrics = metrics.clone();
        let metrics_state = state.clone();
        let upstream_tls = crate::gateway::proxy::upstream_tls(&state.settings)?;
        let server = HttpServer::new(move || {
            // Proxy mode: this worker's own upstream clients.
            let app = match &upstream_tls {
                Some(tls) => {
                    App::new().app_data(crate::gateway::proxy::upstream_client(tls.clone()))
                }
                None => App::new(),
            };
            app.wrap(from_fn(context::request_context))
                .app_data(state.clone())
                .app_data(db_data.clone())
                .app_data(app_metrics.clone())
                .app_data(body_limits::json())
                .app_data(body_limits::form())
                .app_data(body_limits::query())
                .configure(routes)
                .default_service(web::to(crate::gateway::proxy::handle))
        });
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();
        let metrics_server = match metrics_listener {
            Some(listener) => Some(
                HttpServer::new(move || {
                    App::new()
                        .app_data(metrics.clone())
                        .app_data(metrics_state.clone())
                        .route("/metrics", web::get().to(metrics::metrics))
                })
                .workers(1)
                .listen(listener)?
                .run(),
            ),
            None => None,
        };
        Ok(Application {
            port,
            server,
            metrics_server,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        if let Some(metrics_server) = self.metrics_server {
            tokio::spawn(metrics_server);
        }
        self.server.await
    }
}

/// Every route group, each module adding its own scope.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::public_metrics))
        .route(
            "/sso/static/gatehouse.css",
            web::get().to(pages::stylesheet),
        )
        .configure(crate::login::routes)
        .configure(crate::scim::routes)
        .configure(crate::saml::routes)
        .configure(crate::oidc::routes::routes)
        .configure(crate::admin::routes)
        .configure(crate::gateway::routes)
        .configure(crate::provider::routes)
        .configure(crate::sso::routes);
}

/// Purges audit payloads past the retention period, at start and then hourly: per org, the
/// candidates are read off the (org_id, occurred_at) index and their payloads dropped in
/// writes of [`crate::audit::PURGE_BATCH`] events. (One `UPDATE … WHERE occurred_at < ?`
/// scans the whole table, and on SQLite it holds the write lock for the scan: with a large
/// audit log every other write waited seconds, or failed, once an hour.)
fn spawn_audit_purge(db: Db, retention_days: u32) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        // Everything before this has been purged by this process already.
        let mut done_before = 0;
        loop {
            tick.tick().await;
            let before = crate::clock::now() - i64::from(retention_days) * 86_400;
            match purge_pass(&db, done_before, before).await {
                Ok(n) => {
                    done_before = before;
                    if n > 0 {
                        tracing::info!(events = n, "purged audit payloads past retention");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit payload purge failed; retrying in an hour")
                }
            }
        }
    });
}

/// Candidates are read a day of events at a time: a read never runs long (a long read holds
/// off the WAL restart), even on the first pass after a start, which goes through history
/// purged by earlier processes.
async fn purge_pass(db: &Db, from: i64, before: i64) -> Result<usize, crate::db::DbError> {
    use crate::db::DbError;
    const DAY: i64 = 86_400;
    let chains = db
        .run(|conn| crate::audit::chains_with_events(conn).map_err(DbError::from))
        .await?;
    let mut purged = 0;
    for org in chains {
        let o = org.clone();
        let oldest = db
            .run(move |conn| {
                crate::audit::oldest_event_since(conn, o.as_deref(), from).map_err(DbError::from)
            })
            .await?;
        let Some(mut cursor) = oldest else {
            continue;
        };
        while cursor < before {
            let until = (cursor + DAY).min(before);
            let o = org.clone();
            let batch = db
                .run(move |conn| {
                    crate::audit::purge_candidates(conn, o.as_deref(), cursor, until)
                        .map_err(DbError::from)
                })
                .await?;
            let full = batch.len() as i64 == crate::audit::PURGE_BATCH;
            let last = batch.last().map(|&(_, at)| at);
            if !batch.is_empty() {
                let ids: Vec<String> = batch.into_iter().map(|(id, _)| id).collect();
                purged += db
                    .write(move |conn| {
                        crate::audit::purge_payloads(conn, &ids).map_err(DbError::from)
                    })
                    .await?;
            }
            cursor = match (full, last) {
                // Events at `last` not yet purged are found again (purged ones no longer match).
                (true, Some(last)) => last,
                _ => until,
            };
        }
    }
    Ok(purged)
}

fn load_tls(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<rustls::ServerConfig> {
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("cannot read TLS certificate {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("cannot read TLS key {}", key.display()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("{} is not a PEM private key", key.display()))?
        .with_context(|| format!("{} holds no private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    Ok(config)
}

/// Body and query limits with clean error answers (never the extractor's internal text).
mod body_limits {
    use actix_web::error::{JsonPayloadError, QueryPayloadError, UrlencodedError};
    use actix_web::web;

    use crate::http::errors::AppError;

    pub const JSON_LIMIT: usize = 256 * 1024;
    pub const FORM_LIMIT: usize = 64 * 1024;

    pub fn json() -> web::JsonConfig {
        web::JsonConfig::default()
            .limit(JSON_LIMIT)
            .error_handler(|err, _req| {
                match err {
                    JsonPayloadError::OverflowKnownLength { .. }
                    | JsonPayloadError::Overflow { .. } => AppError::TooLarge,
                    JsonPayloadError::ContentType => AppError::BadRequest(
                        "expected a JSON body (Content-Type: application/json)".into(),
                    ),
                    JsonPayloadError::Deserialize(e) => {
                        AppError::BadRequest(format!("malformed JSON: {e}"))
                    }
                    _ => AppError::BadRequest("unreadable request body".into()),
                }
                .into()
            })
    }

    pub fn form() -> web::FormConfig {
        web::FormConfig::default()
            .limit(FORM_LIMIT)
            .error_handler(|err, _req| {
                match err {
                    UrlencodedError::Overflow { .. } => AppError::TooLarge,
                    _ => AppError::BadRequest("malformed form submission".into()),
                }
                .into()
            })
    }

    pub fn query() -> web::QueryConfig {
        web::QueryConfig::default().error_handler(|err, _req| {
            let QueryPayloadError::Deserialize(e) = err else {
                return AppError::BadRequest("malformed query string".into()).into();
            };
            AppError::BadRequest(format!("malformed query string: {e}")).into()
        })
    }
}
