//! `spawn_app()` and friends: hermetic servers and CLI runs for the tests.
#![allow(dead_code)] // helpers are shared by every test module; not each uses all

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use diesel::{Connection, RunQueryDsl};
use gatehouse::config::Settings;
use gatehouse::startup::Application;

/// A fixed test key (base64 of 32 bytes); real deployments generate their own.
pub const TEST_SECRET_KEY: &str = "dGVzdC1zZWNyZXQta2V5LTMyLWJ5dGVzLWxvbmchISE=";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub env: BTreeMap<String, String>,
    pub data_dir: tempfile::TempDir,
    pub database_url: String,
}

/// The PostgreSQL admin URL, or `None` when the developer opted out with
/// `GATEHOUSE_TEST_SKIP_PG=1`. Never skipped silently: without either variable the test fails.
pub fn pg_admin_url() -> Option<String> {
    // Before libpq initialises OpenSSL: rust-openssl's init asks for no exit-time cleanup, so a
    // connection still being opened on a pool thread cannot crash the process as it exits.
    openssl::init();
    if let Ok(url) = std::env::var("GATEHOUSE_TEST_PG_URL") {
        return Some(url);
    }
    if std::env::var("GATEHOUSE_TEST_SKIP_PG").as_deref() == Ok("1") {
        eprintln!("GATEHOUSE_TEST_SKIP_PG=1: skipping a PostgreSQL test");
        return None;
    }
    panic!("set GATEHOUSE_TEST_PG_URL to a PostgreSQL admin URL (scripts/test does), or GATEHOUSE_TEST_SKIP_PG=1");
}

/// A fresh database for one test: a SQLite file in `data_dir`, or a new PostgreSQL database.
pub fn fresh_database_url(backend: Backend, data_dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!(
            "sqlite://{}",
            data_dir.join("gatehouse.db").display()
        )),
        Backend::Postgres => {
            let admin = pg_admin_url()?;
            let name = format!("gh_{}", uuid::Uuid::new_v4().simple());
            let mut conn =
                diesel::pg::PgConnection::establish(&admin).expect("connect to test PostgreSQL");
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .expect("create test database");
            let mut url = url::Url::parse(&admin).expect("admin url");
            url.set_path(&format!("/{name}"));
            Some(url.to_string())
        }
    }
}

/// The environment a test server (or CLI run) uses.
pub fn test_env(data_dir: &std::path::Path, database_url: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("GATEHOUSE_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("GATEHOUSE_DATA_DIR".into(), data_dir.display().to_string());
    env.insert("GATEHOUSE_DATABASE_URL".into(), database_url.into());
    env.insert("GATEHOUSE_SECRET_KEY".into(), TEST_SECRET_KEY.into());
    env.insert("GATEHOUSE_LOG".into(), "warn".into());
    // Tests fire requests faster than any IdP; the limit has its own test.
    env.insert("GATEHOUSE_SCIM_RATE_LIMIT".into(), "0".into());
    env
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(Backend::Sqlite).await.expect("sqlite app")
}

/// `None` only when PostgreSQL tests were explicitly skipped.
/// A SQLite test app with extra settings on top of the test environment.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database_url(Backend::Sqlite, data_dir.path()).expect("sqlite url");
    let mut env = test_env(data_dir.path(), &database_url);
    for (k, v) in extra {
        env.insert((*k).into(), (*v).into());
    }
    spawn_with_env(env, data_dir, database_url).await
}

pub async fn spawn_app_on(backend: Backend) -> Option<TestApp> {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let database_url = fresh_database_url(backend, data_dir.path())?;
    let env = test_env(data_dir.path(), &database_url);
    Some(spawn_with_env(env, data_dir, database_url).await)
}

pub async fn spawn_with_env(
    mut env: BTreeMap<String, String>,
    data_dir: tempfile::TempDir,
    database_url: String,
) -> TestApp {
    let (settings, _) = Settings::from_sources(None, &env).expect("test settings");
    let app = Application::build(settings).await.expect("build app");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    // CLI runs must hand out the same URLs as the server (it listened on port 0).
    env.entry("GATEHOUSE_PUBLIC_URL".into())
        .or_insert_with(|| format!("http://127.0.0.1:{port}"));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        // Below the server's 5 s keep-alive: a pooled connection is never reused just as the
        // server closes it (seen as IncompleteMessage when a test pauses under load).
        .pool_idle_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client,
        env,
        data_dir,
        database_url,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn get_html(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("accept", "text/html")
            .send()
            .await
            .expect("request")
    }

    /// Runs the CLI against this app's database.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(&self.env, args)
    }
}

pub struct CliOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn ok(self) -> CliOutput {
        assert!(
            self.status.success(),
            "command failed: {}\nstdout: {}",
            self.stderr,
            self.stdout
        );
        self
    }
}

/// Runs the real binary with exactly `env` (other GATEHOUSE_* variables removed).
/// Creates an org through the CLI and issues it a SCIM token (for tests that run the binary).
pub fn org_with_scim_token(env: &BTreeMap<String, String>, org: &str) -> String {
    run_cli(env, &["org", "create", org]).ok();
    run_cli(env, &["scim-token", "issue", org])
        .ok()
        .stdout
        .trim()
        .to_string()
}

pub fn run_cli(env: &BTreeMap<String, String>, args: &[&str]) -> CliOutput {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env).args(args).stdin(Stdio::null());
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run gatehouse binary");
    CliOutput {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `gatehouse serve` as a child process (for restart and log-capture tests).
pub struct ServeProcess {
    pub child: std::process::Child,
    pub port: u16,
    pub logs: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ServeProcess {
    /// Starts the binary and waits for its "gatehouse ready" line (text logs at info).
    pub fn start(env: &BTreeMap<String, String>) -> ServeProcess {
        use std::io::{BufRead, BufReader};
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("GATEHOUSE_")) {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .envs(env)
            .env("GATEHOUSE_LOG", "info")
            .env("GATEHOUSE_LOG_FORMAT", "text")
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gatehouse serve");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<u16>();
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("gatehouse ready") {
                    if let Some(port) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("port="))
                        .and_then(|p| p.parse().ok())
                    {
                        let _ = tx.send(port);
                    }
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gatehouse serve did not become ready:\n{}",
                    logs.lock().unwrap()
                );
            }
        };
        ServeProcess { child, port, logs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// SIGKILL: nothing gets a chance to flush, like a crash.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.logs()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a hidden form field in a page.
pub fn form_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in:\n{html}"))
        + marker.len();
    let end = html[start..].find('"').expect("field end") + start;
    html[start..end]
        .replace("&#x2b;", "+")
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
}

/// The `href`s of the links with this class, unescaped.
pub fn links(html: &str, class: &str) -> Vec<String> {
    let marker = format!("class=\"{class}\" href=\"");
    html.match_indices(&marker)
        .map(|(i, _)| {
            let start = i + marker.len();
            let end = html[start..].find('"').unwrap() + start;
            unescape(&html[start..end])
        })
        .collect()
}

/// The `n`th value of a shown-once page (`id="secret-n"`), unescaped.
pub fn shown_secret(page: &str, n: usize) -> String {
    let marker = format!("id=\"secret-{n}\">");
    unescape(
        page.split(marker.as_str())
            .nth(1)
            .unwrap_or_else(|| panic!("no secret-{n} on: {page}"))
            .split('<')
            .next()
            .unwrap_or(""),
    )
}

pub fn unescape(s: &str) -> String {
    s.replace("&#x2b;", "+")
        .replace("&#x2f;", "/")
        .replace("&#x3d;", "=")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
}

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// Runs the CLI and insists it succeeds.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        self.cli(args).ok().stdout
    }

    /// Like `cli_ok`, with extra environment variables (e.g. a password variable).
    pub fn cli_env(&self, extra: &[(&str, &str)], args: &[&str]) -> CliOutput {
        let mut env = self.env.clone();
        for (k, v) in extra {
            env.insert((*k).into(), (*v).into());
        }
        run_cli(&env, args)
    }

    /// An org `acme` with verified domain acme.test and a local user alice@acme.test.
    pub fn seed_local_user(&self) {
        self.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
        self.cli_env(
            &[("GH_TEST_PW", PASSWORD)],
            &[
                "user",
                "add",
                "acme",
                "alice@acme.test",
                "--password-env",
                "GH_TEST_PW",
            ],
        )
        .ok();
    }

    /// An org admin of `org` with the test password.
    pub fn add_org_admin(&self, org: &str, email: &str) {
        self.cli_env(
            &[("GH_TEST_PW", PASSWORD)],
            &[
                "user",
                "add",
                org,
                email,
                "--org-admin",
                "--password-env",
                "GH_TEST_PW",
            ],
        )
        .ok();
    }

    /// The sign-in form's CSRF value (sets the CSRF cookie in the client).
    pub async fn login_csrf(&self) -> String {
        let page = self.get_html("/sso/login").await.text().await.unwrap();
        form_field(&page, "csrf")
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        let csrf = self.login_csrf().await;
        self.client
            .post(self.url("/sso/login"))
            .form(&[
                ("email", email),
                ("password", password),
                ("csrf", &csrf),
                ("return_to", ""),
            ])
            .send()
            .await
            .unwrap()
    }

    /// The email-first step of `/sso/login`: an e-mail and no password.
    pub async fn email_first(&self, email: &str, return_to: &str) -> reqwest::Response {
        let csrf = self.login_csrf().await;
        self.client
            .post(self.url("/sso/login"))
            .form(&[
                ("email", email),
                ("password", ""),
                ("csrf", &csrf),
                ("return_to", return_to),
            ])
            .send()
            .await
            .unwrap()
    }

    /// The email-first step for an e-mail whose domain has SSO: the links of the page's
    /// "Continue with …" buttons (or the redirect, when the domain requires SSO).
    pub async fn sso_choices(&self, email: &str, return_to: &str) -> Vec<String> {
        let res = self.email_first(email, return_to).await;
        if res.status() == 303 {
            return vec![res.headers()["location"].to_str().unwrap().to_string()];
        }
        assert_eq!(res.status(), 200);
        links(&res.text().await.unwrap(), "button sso-connection")
    }

    pub async fn me_json(&self) -> reqwest::Response {
        self.client
            .get(self.url("/sso/me"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
    }

    /// A direct database handle (for checks the HTTP surface cannot make).
    pub fn db(&self) -> gatehouse::db::Db {
        let (settings, _) = Settings::from_sources(None, &self.env).unwrap();
        gatehouse::db::Db::connect(&settings).unwrap()
    }

    pub fn sql(&self, statement: &str) {
        let db = self.db();
        let mut conn = db.conn().unwrap();
        diesel::sql_query(statement).execute(&mut *conn).unwrap();
    }
}

/// Sends a request and reads its JSON answer.
pub async fn json_answer(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// The cookie value set by a response, if any.
pub fn set_cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// A SCIM client for one org's token.
pub struct Scim<'a> {
    pub app: &'a TestApp,
    pub token: String,
}

impl TestApp {
    /// Creates the org (if needed) and issues a SCIM token for it.
    pub fn scim(&self, org: &str) -> Scim<'_> {
        let _ = self.cli(&["org", "create", org]);
        let token = self
            .cli_ok(&["scim-token", "issue", org])
            .trim()
            .to_string();
        Scim { app: self, token }
    }
}

impl Scim<'_> {
    pub fn url(&self, path: &str) -> String {
        self.app.url(&format!("/scim/v2{path}"))
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
        let mut req = self
            .app
            .client
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, json, headers)
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (s, j, _) = self.send(reqwest::Method::GET, path, None).await;
        (s, j)
    }
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let (s, j, _) = self.send(reqwest::Method::POST, path, Some(body)).await;
        (s, j)
    }
    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let (s, j, _) = self.send(reqwest::Method::PUT, path, Some(body)).await;
        (s, j)
    }
    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let (s, j, _) = self.send(reqwest::Method::PATCH, path, Some(body)).await;
        (s, j)
    }
    pub async fn delete(&self, path: &str) -> u16 {
        self.send(reqwest::Method::DELETE, path, None).await.0
    }

    /// Creates a user and returns its id.
    pub async fn create_user(&self, user_name: &str) -> String {
        let (s, j) = self
            .post(
                "/Users",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "name": {"givenName": "Given", "familyName": "Family"},
                    "emails": [{"value": user_name, "type": "work", "primary": true}],
                    "active": true
                }),
            )
            .await;
        assert_eq!(s, 201, "{j}");
        j["id"].as_str().unwrap().to_string()
    }

    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<_> = members
            .iter()
            .map(|m| serde_json::json!({"value": m}))
            .collect();
        let (s, j) = self
            .post(
                "/Groups",
                serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members}),
            )
            .await;
        assert_eq!(s, 201, "{j}");
        j["id"].as_str().unwrap().to_string()
    }
}

pub fn patch_op(ops: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// The TOTP code of an `otpauth://` URI now (or `step_offset` 30-second steps away).
pub fn totp_code(uri: &str, step_offset: i64) -> String {
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let seed = totp_rs::Secret::Encoded(secret.to_string())
        .to_bytes()
        .unwrap();
    let t = (gatehouse::clock::now() + step_offset * 30) as u64;
    gatehouse::login::totp::code_at(&seed, t).unwrap()
}

/// Runs a `tests/peers/*.mjs` browser script (off the test's runtime thread: the server under
/// test runs on it) and returns the JSON it prints; panics with its stderr when it fails.
pub async fn run_browser_script(
    script: &str,
    args: Vec<String>,
    env: Vec<(String, String)>,
) -> serde_json::Value {
    let peers = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    let script = peers.join(script);
    let node = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .envs(env)
            .current_dir(peers)
            .output()
            .expect("node (scripts/test installs it)")
    })
    .await
    .expect("browser task");
    assert!(
        node.status.success(),
        "browser run failed: {}",
        String::from_utf8_lossy(&node.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&node.stdout).trim())
        .expect("browser script output")
}

/// `gatehouse admin add` with the test password; returns the otpauth URI it prints once.
pub fn add_instance_admin(app: &TestApp, email: &str) -> String {
    app.cli_env(
        &[("GH_TEST_PW", PASSWORD)],
        &["admin", "add", email, "--password-env", "GH_TEST_PW"],
    )
    .ok()
    .stdout
}

/// A browser of its own: cookies, no automatic redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap()
}

/// A fresh browser signed in at `/sso/login` with e-mail and the test password.
pub async fn signed_in_browser(app: &TestApp, email: &str) -> reqwest::Client {
    let client = browser();
    let csrf = csrf_of(app, &client, "/sso/login").await;
    let res = client
        .post(app.url("/sso/login"))
        .form(&[("email", email), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{email} signs in");
    client
}

/// The CSRF value of the form on a page (sets the CSRF cookie in that browser).
pub async fn csrf_of(app: &TestApp, client: &reqwest::Client, path: &str) -> String {
    csrf_of_url(client, &app.url(path)).await
}

/// The CSRF value of the form at `url` (sets the CSRF cookie in that browser), e.g. a
/// gatehouse page reached through a proxy.
pub async fn csrf_of_url(client: &reqwest::Client, url: &str) -> String {
    let page = client.get(url).send().await.unwrap().text().await.unwrap();
    form_field(&page, "csrf")
}

/// An Entra-like object id.
pub fn guid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

/// Inserts users straight into the database (creating thousands over HTTP would only test the
/// loop): `user{i}@acme.test` with id [`guid`]`(i)` and the given `created_at`.
pub fn insert_users(app: &TestApp, org_id: &str, rows: impl Iterator<Item = (usize, i64)>) {
    use diesel::prelude::*;
    let db = app.db();
    let mut conn = db.conn().unwrap();
    gatehouse::db::write_tx(&mut conn, |c| -> Result<(), diesel::result::Error> {
        for (i, created_at) in rows {
            diesel::sql_query(format!(
                "INSERT INTO users (id, org_id, user_name, user_name_folded, active, is_org_admin, is_break_glass, source, version, created_at, updated_at) \
                 VALUES ('{}', '{org_id}', 'user{i}@acme.test', 'user{i}@acme.test', TRUE, FALSE, FALSE, 'scim', 1, {created_at}, {created_at})",
                guid(i)
            ))
            .execute(c)?;
        }
        Ok(())
    })
    .unwrap();
}

impl TestApp {
    /// The id of the first org `org list` shows.
    pub fn first_org_id(&self) -> String {
        let out = self.cli_ok(&["org", "list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v[0]["id"].as_str().unwrap().to_string()
    }
}
