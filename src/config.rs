//! Typed configuration: defaults → optional `gatehouse.toml` (`--config FILE`) → `GATEHOUSE_*`
//! environment variables (the environment wins). Unknown keys in the file are refused; unknown
//! `GATEHOUSE_*` variables are reported as warnings (a typo must not pass silently).
//!
//! | variable | file key | default |
//! | --- | --- | --- |
//! | `GATEHOUSE_LISTEN` | `listen` | `127.0.0.1:8080` |
//! | `GATEHOUSE_PUBLIC_URL` | `public_url` | `http://` + listen (`https://` when TLS is on; an `http://` one with TLS on is refused) |
//! | `GATEHOUSE_DATA_DIR` | `data_dir` | `./data` |
//! | `GATEHOUSE_DATABASE_URL` | `database_url` | `sqlite://<data_dir>/gatehouse.db` |
//! | `GATEHOUSE_SECRET_KEY` | `secret_key` | generated once into `<data_dir>/secret.key` |
//! | `GATEHOUSE_TLS_CERT`, `GATEHOUSE_TLS_KEY` | `tls_cert`, `tls_key` | unset (plain HTTP) |
//! | `GATEHOUSE_LOG_FORMAT` | `log_format` | `text` (`text`/`json`) |
//! | `GATEHOUSE_LOG` | `log` | `info` |
//! | `GATEHOUSE_TRUSTED_PROXIES` | `trusted_proxies` | none (comma-separated CIDRs) |
//! | `GATEHOUSE_METRICS_LISTEN` | `metrics_listen` | unset |
//! | `GATEHOUSE_DB_POOL_SIZE` | `db_pool_size` | 8 |
//! | `GATEHOUSE_DB_CONNECT_TIMEOUT_SECS` | `db_connect_timeout_secs` | 5 |
//! | `GATEHOUSE_SQLITE_SYNCHRONOUS` | `sqlite_synchronous` | `normal` (`normal`/`full`) |
//! | `GATEHOUSE_AUDIT_RETENTION_DAYS` | `audit_retention_days` | 90 |
//! | `GATEHOUSE_PASSWORD_HASH_CONCURRENCY` | `password_hash_concurrency` | 2 |
//! | `GATEHOUSE_OUTBOUND_ALLOW_PRIVATE` | `outbound_allow_private` | false |
//! | `GATEHOUSE_SCIM_MAX_BODY_BYTES` | `scim_max_body_bytes` | 4194304 (4 MiB) |
//! | `GATEHOUSE_SCIM_RATE_LIMIT` | `scim_rate_limit` | 1000 (requests/s per token, bursts of 3×; 0 = off) |
//! | `GATEHOUSE_ALLOWED_RETURN_HOSTS` | `allowed_return_hosts` | none (comma-separated hosts a sign-in may return to besides our own paths) |
//! | `GATEHOUSE_COOKIE_DOMAIN` | `cookie_domain` | unset (host-only session cookie) — a parent domain of the public URL's host, for forward-auth on sibling hosts |
//! | `GATEHOUSE_UPSTREAM` | `upstream` | unset (proxy mode off) — the app every other path is proxied to |
//! | `GATEHOUSE_UPSTREAM_CA` | `upstream_ca` | unset (public roots only) — a PEM file of CA certificates trusted for an `https://` upstream, besides the public roots |
//! | `GATEHOUSE_PUBLIC_PATHS` | `public_paths` | none (comma-separated path prefixes proxied without sign-in) |
//! | `GATEHOUSE_ROLE_PATHS` | `role_paths` | none (comma-separated `prefix=role`: sign-in with that app role required) |
//! | `GATEHOUSE_ALERT_WEBHOOK` | `alert_webhook` | unset (URL that receives a JSON POST for every break-glass sign-in) |
//! | `GATEHOUSE_DNS_RESOLVER` | `dns_resolver` | unset (the system's resolvers, `/etc/resolv.conf`) — `ip:port` of the DNS server that domain verification asks |

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

/// Why configuration could not be loaded. Each variant reads as one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Normal,
    Full,
}

impl SqliteSynchronous {
    pub fn pragma_value(self) -> &'static str {
        match self {
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
        }
    }
}

/// The file's shape: every key optional, nothing unknown accepted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    secret_key: Option<SecretString>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log: Option<String>,
    trusted_proxies: Option<Vec<IpNet>>,
    metrics_listen: Option<SocketAddr>,
    db_pool_size: Option<u32>,
    db_connect_timeout_secs: Option<u64>,
    sqlite_synchronous: Option<SqliteSynchronous>,
    audit_retention_days: Option<u32>,
    password_hash_concurrency: Option<usize>,
    outbound_allow_private: Option<bool>,
    dns_resolver: Option<SocketAddr>,
    scim_max_body_bytes: Option<usize>,
    scim_rate_limit: Option<u32>,
    allowed_return_hosts: Option<Vec<String>>,
    alert_webhook: Option<String>,
    upstream: Option<String>,
    upstream_ca: Option<PathBuf>,
    cookie_domain: Option<String>,
    public_paths: Option<Vec<String>>,
    role_paths: Option<Vec<String>>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub public_url: Url,
    /// True when `public_url` was derived from `listen` (then a port-0 listen is fixed up
    /// once the real port is known).
    pub public_url_derived: bool,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    /// `None` until [`crate::startup::load_secret_key`] resolves it (env, file, or generated).
    pub secret_key: Option<SecretString>,
    pub tls: Option<TlsFiles>,
    pub log_format: LogFormat,
    pub log: String,
    pub trusted_proxies: Vec<IpNet>,
    pub metrics_listen: Option<SocketAddr>,
    pub db_pool_size: u32,
    pub db_connect_timeout_secs: u64,
    pub sqlite_synchronous: SqliteSynchronous,
    pub audit_retention_days: u32,
    pub password_hash_concurrency: usize,
    pub outbound_allow_private: bool,
    /// The DNS server domain verification asks (`None`: the system's).
    pub dns_resolver: Option<SocketAddr>,
    pub scim_max_body_bytes: usize,
    /// SCIM requests per second per token (bursts up to 3×); 0 turns the limit off.
    pub scim_rate_limit: u32,
    /// Hosts (lower case, optionally `host:port`) that `return_to` may name besides local paths.
    pub allowed_return_hosts: Vec<String>,
    /// Receives a JSON POST (through the guarded outbound client) for every break-glass use.
    pub alert_webhook: Option<Url>,
    /// Proxy mode: the app that every path outside gatehouse's own is proxied to.
    pub upstream: Option<Url>,
    /// CA certificates (PEM) trusted for an `https://` upstream besides the public roots.
    pub upstream_ca: Option<PathBuf>,
    /// The session cookie's Domain (a parent of the public host), for forward-auth setups
    /// where apps on sibling hosts must see the session.
    pub cookie_domain: Option<String>,
    /// Path prefixes proxied without sign-in.
    pub public_paths: Vec<String>,
    /// (path prefix, app role) pairs: signing in is not enough, the role is required.
    pub role_paths: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every environment variable we read, so a misspelt one can be reported.
/// Requests per second per SCIM token (bursts of three times that). Real IdPs send well
/// under 100/s and an initial import's bursts stay far below 3,000; one token at this rate
/// takes at most a fraction of what one replica serves (≈ 4,000 creates/s, 8,000 lookups/s
/// here), so it cannot starve the others.
pub const DEFAULT_SCIM_RATE_LIMIT: u32 = 1000;

const KNOWN_ENV: &[&str] = &[
    "GATEHOUSE_LISTEN",
    "GATEHOUSE_PUBLIC_URL",
    "GATEHOUSE_DATA_DIR",
    "GATEHOUSE_DATABASE_URL",
    "GATEHOUSE_SECRET_KEY",
    "GATEHOUSE_TLS_CERT",
    "GATEHOUSE_TLS_KEY",
    "GATEHOUSE_LOG_FORMAT",
    "GATEHOUSE_LOG",
    "GATEHOUSE_TRUSTED_PROXIES",
    "GATEHOUSE_METRICS_LISTEN",
    "GATEHOUSE_DB_POOL_SIZE",
    "GATEHOUSE_DB_CONNECT_TIMEOUT_SECS",
    "GATEHOUSE_SQLITE_SYNCHRONOUS",
    "GATEHOUSE_AUDIT_RETENTION_DAYS",
    "GATEHOUSE_PASSWORD_HASH_CONCURRENCY",
    "GATEHOUSE_OUTBOUND_ALLOW_PRIVATE",
    "GATEHOUSE_DNS_RESOLVER",
    "GATEHOUSE_SCIM_MAX_BODY_BYTES",
    "GATEHOUSE_SCIM_RATE_LIMIT",
    "GATEHOUSE_ALLOWED_RETURN_HOSTS",
    "GATEHOUSE_ALERT_WEBHOOK",
    "GATEHOUSE_UPSTREAM",
    "GATEHOUSE_COOKIE_DOMAIN",
    "GATEHOUSE_PUBLIC_PATHS",
    "GATEHOUSE_ROLE_PATHS",
];

impl Settings {
    /// Loads from the process environment and an optional file.
    pub fn load(file: Option<&Path>) -> Result<(Settings, Vec<String>), ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("GATEHOUSE_"))
            .collect();
        Settings::from_sources(file, &env)
    }

    /// Pure loader (testable): returns the settings and warnings to print.
    pub fn from_sources(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<(Settings, Vec<String>), ConfigError> {
        let fc = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::File {
                    path: path.to_owned(),
                    message: e.message().to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        let warnings = env
            .keys()
            // Test harness variables are ours but not configuration.
            .filter(|k| !KNOWN_ENV.contains(&k.as_str()) && !k.starts_with("GATEHOUSE_TEST_"))
            .map(|k| format!("warning: unknown environment variable {k} is ignored"))
            .collect();

        let listen = env_parse(env, "GATEHOUSE_LISTEN")?
            .or(fc.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let data_dir = env_parse::<PathBuf>(env, "GATEHOUSE_DATA_DIR")?
            .or(fc.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = env
            .get("GATEHOUSE_DATABASE_URL")
            .cloned()
            .or(fc.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("gatehouse.db").display()));
        crate::db::Backend::from_url(&database_url)
            .map_err(|e| ConfigError::Invalid(format!("database_url: {e}")))?;
        let secret_key = env
            .get("GATEHOUSE_SECRET_KEY")
            .map(|s| SecretString::from(s.clone()))
            .or(fc.secret_key);
        let tls_cert = env_parse::<PathBuf>(env, "GATEHOUSE_TLS_CERT")?.or(fc.tls_cert);
        let tls_key = env_parse::<PathBuf>(env, "GATEHOUSE_TLS_KEY")?.or(fc.tls_key);
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "TLS needs both GATEHOUSE_TLS_CERT and GATEHOUSE_TLS_KEY (only one is set)"
                        .into(),
                ))
            }
        };
        // With TLS on, the derived public URL is https (Secure `__Host-` cookies); an explicit
        // http:// one with TLS on is refused: the cookies would silently lose `Secure`.
        let configured_public_url = env.get("GATEHOUSE_PUBLIC_URL").cloned().or(fc.public_url);
        let public_url_derived = configured_public_url.is_none();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let public_url_text =
            configured_public_url.unwrap_or_else(|| format!("{scheme}://{listen}"));
        let public_url = parse_public_url(&public_url_text)?;
        if tls.is_some() && public_url.scheme() != "https" {
            return Err(ConfigError::Invalid(format!(
                "public_url `{public_url_text}` is http:// but TLS is on (GATEHOUSE_TLS_CERT/KEY): \
                 browsers reach gatehouse over https, so the public URL must be https:// \
                 (cookies are marked Secure from it)"
            )));
        }
        let log_format = match env.get("GATEHOUSE_LOG_FORMAT") {
            Some(v) => match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(env_err(
                        "GATEHOUSE_LOG_FORMAT",
                        format!("expected `text` or `json`, got `{other}`"),
                    ))
                }
            },
            None => fc.log_format.unwrap_or(LogFormat::Text),
        };
        let sqlite_synchronous = match env.get("GATEHOUSE_SQLITE_SYNCHRONOUS") {
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "normal" => SqliteSynchronous::Normal,
                "full" => SqliteSynchronous::Full,
                other => {
                    return Err(env_err(
                        "GATEHOUSE_SQLITE_SYNCHRONOUS",
                        format!("expected `normal` or `full`, got `{other}`"),
                    ))
                }
            },
            None => fc.sqlite_synchronous.unwrap_or(SqliteSynchronous::Normal),
        };
        let trusted_proxies = match env.get("GATEHOUSE_TRUSTED_PROXIES") {
            Some(list) => parse_cidrs(list)?,
            None => fc.trusted_proxies.unwrap_or_default(),
        };
        let allowed_return_hosts: Vec<String> = match env.get("GATEHOUSE_ALLOWED_RETURN_HOSTS") {
            Some(list) => list
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            None => fc
                .allowed_return_hosts
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
        };
        let alert_webhook = match env
            .get("GATEHOUSE_ALERT_WEBHOOK")
            .cloned()
            .or(fc.alert_webhook)
            .filter(|v| !v.trim().is_empty())
        {
            None => None,
            Some(v) => {
                let url = Url::parse(v.trim()).map_err(|e| {
                    env_err(
                        "GATEHOUSE_ALERT_WEBHOOK",
                        format!("`{v}` is not a URL: {e}"),
                    )
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(env_err(
                        "GATEHOUSE_ALERT_WEBHOOK",
                        format!("`{v}` must be an http(s) URL"),
                    ));
                }
                Some(url)
            }
        };
        let list = |var: &str, file: Option<Vec<String>>| -> Vec<String> {
            match env.get(var) {
                Some(v) => v
                    .split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect(),
                None => file.unwrap_or_default(),
            }
        };
        let upstream = match env
            .get("GATEHOUSE_UPSTREAM")
            .cloned()
            .or(fc.upstream)
            .filter(|v| !v.trim().is_empty())
        {
            None => None,
            Some(v) => {
                let url = Url::parse(v.trim()).map_err(|e| {
                    env_err("GATEHOUSE_UPSTREAM", format!("`{v}` is not a URL: {e}"))
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(env_err(
                        "GATEHOUSE_UPSTREAM",
                        format!("`{v}` must be an http(s) URL"),
                    ));
                }
                Some(url)
            }
        };
        let upstream_ca = env_parse::<PathBuf>(env, "GATEHOUSE_UPSTREAM_CA")?.or(fc.upstream_ca);
        let cookie_domain = env
            .get("GATEHOUSE_COOKIE_DOMAIN")
            .cloned()
            .or(fc.cookie_domain)
            .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty());
        let public_paths = list("GATEHOUSE_PUBLIC_PATHS", fc.public_paths);
        let mut role_paths = Vec::new();
        for rule in list("GATEHOUSE_ROLE_PATHS", fc.role_paths) {
            let (prefix, role) = rule.split_once('=').ok_or_else(|| {
                env_err(
                    "GATEHOUSE_ROLE_PATHS",
                    format!("`{rule}` is not prefix=role"),
                )
            })?;
            role_paths.push((prefix.trim().to_string(), role.trim().to_string()));
        }
        for p in public_paths.iter().chain(role_paths.iter().map(|(p, _)| p)) {
            if !p.starts_with('/') {
                return Err(env_err(
                    "GATEHOUSE_PUBLIC_PATHS / GATEHOUSE_ROLE_PATHS",
                    format!("`{p}` must start with /"),
                ));
            }
        }
        let settings = Settings {
            cookie_domain,
            upstream,
            upstream_ca,
            public_paths,
            role_paths,
            allowed_return_hosts,
            alert_webhook,
            listen,
            public_url,
            public_url_derived,
            data_dir,
            database_url: SecretString::from(database_url),
            secret_key,
            tls,
            log_format,
            log: env
                .get("GATEHOUSE_LOG")
                .cloned()
                .or(fc.log)
                .unwrap_or_else(|| "info".into()),
            trusted_proxies,
            metrics_listen: env_parse(env, "GATEHOUSE_METRICS_LISTEN")?.or(fc.metrics_listen),
            db_pool_size: env_parse(env, "GATEHOUSE_DB_POOL_SIZE")?
                .or(fc.db_pool_size)
                .unwrap_or(8),
            db_connect_timeout_secs: env_parse(env, "GATEHOUSE_DB_CONNECT_TIMEOUT_SECS")?
                .or(fc.db_connect_timeout_secs)
                .unwrap_or(5),
            sqlite_synchronous,
            audit_retention_days: env_parse(env, "GATEHOUSE_AUDIT_RETENTION_DAYS")?
                .or(fc.audit_retention_days)
                .unwrap_or(90),
            password_hash_concurrency: env_parse(env, "GATEHOUSE_PASSWORD_HASH_CONCURRENCY")?
                .or(fc.password_hash_concurrency)
                .unwrap_or(2),
            outbound_allow_private: env_parse(env, "GATEHOUSE_OUTBOUND_ALLOW_PRIVATE")?
                .or(fc.outbound_allow_private)
                .unwrap_or(false),
            dns_resolver: env_parse(env, "GATEHOUSE_DNS_RESOLVER")?.or(fc.dns_resolver),
            scim_max_body_bytes: env_parse(env, "GATEHOUSE_SCIM_MAX_BODY_BYTES")?
                .or(fc.scim_max_body_bytes)
                .unwrap_or(4 * 1024 * 1024),
            scim_rate_limit: env_parse(env, "GATEHOUSE_SCIM_RATE_LIMIT")?
                .or(fc.scim_rate_limit)
                .unwrap_or(DEFAULT_SCIM_RATE_LIMIT),
        };
        settings.validate()?;
        Ok((settings, warnings))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(d) = &self.cookie_domain {
            let host = self
                .public_url
                .host_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !(host == *d || host.ends_with(&format!(".{d}"))) || !d.contains('.') {
                return Err(ConfigError::Invalid(format!(
                    "cookie_domain `{d}` must be the public URL's host ({host}) or a parent domain of it"
                )));
            }
        }
        if self.db_pool_size == 0 {
            return Err(ConfigError::Invalid(
                "db_pool_size must be at least 1".into(),
            ));
        }
        if self.db_connect_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "db_connect_timeout_secs must be at least 1".into(),
            ));
        }
        if self.scim_max_body_bytes < 2 * 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "scim_max_body_bytes must be at least 2 MiB (a 10,000-member PATCH must fit)"
                    .into(),
            ));
        }
        if self.password_hash_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "password_hash_concurrency must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// Whether cookies get `Secure` and the `__Host-` prefix: decided by the public URL only.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// A URL under the public base, e.g. `url_for("/sso/login")`.
    pub fn url_for(&self, path: &str) -> String {
        let base = self.public_url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }

    /// The effective configuration as `key = value` lines, secrets masked.
    pub fn render_masked(&self) -> String {
        let masked_db = mask_url_password(self.database_url.expose_secret());
        let secret = match &self.secret_key {
            Some(_) => "******** (set)".to_string(),
            None => format!(
                "(from {} or generated there on first start)",
                self.data_dir.join("secret.key").display()
            ),
        };
        let proxies: Vec<String> = self.trusted_proxies.iter().map(|p| p.to_string()).collect();
        let lines = [
            ("listen", self.listen.to_string()),
            ("public_url", self.public_url.to_string()),
            ("data_dir", self.data_dir.display().to_string()),
            ("database_url", masked_db),
            ("secret_key", secret),
            (
                "tls_cert",
                self.tls
                    .as_ref()
                    .map(|t| t.cert.display().to_string())
                    .unwrap_or_else(|| "(unset: plain HTTP)".into()),
            ),
            (
                "tls_key",
                self.tls
                    .as_ref()
                    .map(|t| t.key.display().to_string())
                    .unwrap_or_else(|| "(unset)".into()),
            ),
            (
                "log_format",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
            ("log", self.log.clone()),
            ("trusted_proxies", format!("[{}]", proxies.join(", "))),
            (
                "metrics_listen",
                self.metrics_listen
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "(unset: /metrics on the main listener)".into()),
            ),
            ("db_pool_size", self.db_pool_size.to_string()),
            (
                "db_connect_timeout_secs",
                self.db_connect_timeout_secs.to_string(),
            ),
            (
                "sqlite_synchronous",
                self.sqlite_synchronous.pragma_value().to_lowercase(),
            ),
            (
                "audit_retention_days",
                self.audit_retention_days.to_string(),
            ),
            (
                "password_hash_concurrency",
                self.password_hash_concurrency.to_string(),
            ),
            (
                "outbound_allow_private",
                self.outbound_allow_private.to_string(),
            ),
            (
                "upstream",
                self.upstream
                    .as_ref()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "(unset)".into()),
            ),
            (
                "upstream_ca",
                self.upstream_ca
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(unset: public roots only)".into()),
            ),
            (
                "allowed_return_hosts",
                format!("[{}]", self.allowed_return_hosts.join(", ")),
            ),
            (
                "alert_webhook",
                // A webhook URL may carry a token: show only where it goes.
                self.alert_webhook
                    .as_ref()
                    .map(|u| format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("")))
                    .unwrap_or_else(|| "(unset)".into()),
            ),
        ];
        lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }
}

fn env_err(var: &str, message: String) -> ConfigError {
    ConfigError::Env {
        var: var.into(),
        message,
    }
}

fn env_parse<T: std::str::FromStr>(
    env: &BTreeMap<String, String>,
    var: &str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match env.get(var) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| env_err(var, format!("cannot parse `{v}`: {e}"))),
    }
}

fn parse_cidrs(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    env_err(
                        "GATEHOUSE_TRUSTED_PROXIES",
                        format!("`{s}` is not an IP address or CIDR"),
                    )
                })
        })
        .collect()
}

fn parse_public_url(text: &str) -> Result<Url, ConfigError> {
    let url =
        Url::parse(text).map_err(|e| ConfigError::Invalid(format!("public_url `{text}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid(format!(
            "public_url `{text}` must start with http:// or https://"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::Invalid(format!(
            "public_url `{text}` must not carry a query or fragment"
        )));
    }
    if url.path() != "/" {
        return Err(ConfigError::Invalid(format!(
            "public_url `{text}` must be an origin (gatehouse serves /sso/ and /scim/v2/ at its root)"
        )));
    }
    Ok(url)
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn mask_url_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_derive_public_url_from_listen() {
        let (s, w) = Settings::from_sources(None, &env(&[])).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.public_url.as_str(), "http://127.0.0.1:8080/");
        assert!(s.database_url.expose_secret().ends_with("gatehouse.db"));
        assert!(w.is_empty());
    }

    #[test]
    fn env_overrides_file_and_unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let (s, _) =
            Settings::from_sources(Some(&path), &env(&[("GATEHOUSE_LISTEN", "0.0.0.0:7000")]))
                .unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:7000");
        assert_eq!(s.log_format, LogFormat::Json);

        std::fs::write(&path, "listn = \"127.0.0.1:9000\"\n").unwrap();
        let err = Settings::from_sources(Some(&path), &env(&[])).unwrap_err();
        assert!(err.to_string().contains("unknown field `listn`"), "{err}");
    }

    #[test]
    fn bad_values_say_which_variable() {
        let err = Settings::from_sources(None, &env(&[("GATEHOUSE_LISTEN", "nope")])).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("environment variable GATEHOUSE_LISTEN"));
        let err =
            Settings::from_sources(None, &env(&[("GATEHOUSE_PUBLIC_URL", "ftp://x")])).unwrap_err();
        assert!(err.to_string().contains("http:// or https://"));
        let err =
            Settings::from_sources(None, &env(&[("GATEHOUSE_TLS_CERT", "/x.pem")])).unwrap_err();
        assert!(err.to_string().contains("both"));
        let (_, w) = Settings::from_sources(None, &env(&[("GATEHOUSE_LISTN", "x")])).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn trusted_proxies_accept_addresses_and_cidrs() {
        let (s, _) = Settings::from_sources(
            None,
            &env(&[("GATEHOUSE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]),
        )
        .unwrap();
        assert_eq!(s.trusted_proxies.len(), 2);
    }

    #[test]
    fn masked_rendering_hides_passwords() {
        let (s, _) = Settings::from_sources(
            None,
            &env(&[
                ("GATEHOUSE_DATABASE_URL", "postgres://u:hunter2@db/x"),
                ("GATEHOUSE_SECRET_KEY", "c2VjcmV0"),
            ]),
        )
        .unwrap();
        let out = s.render_masked();
        assert!(!out.contains("hunter2"));
        assert!(!out.contains("c2VjcmV0"));
        assert!(out.contains("postgres://u:***@db/x"));
    }
}
