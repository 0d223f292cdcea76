//! OpenID Connect sign-in against a certified OpenID Provider (npm `oidc-provider`,
//! `tests/peers/oidc_provider.mjs`, installed by `scripts/test`) over real HTTP: code + PKCE,
//! JIT, groups and roles, then the refusals — each with no session and an audit event naming
//! the cause. Tokens a certified provider will not issue (wrong audience or issuer, `alg: none`,
//! expired, unknown `kid`) come from a forging provider in this file.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{json, Value};

use crate::helpers::*;

const SECRET: &str = "op-client-secret-for-tests-only-0123456789";

/// The certified provider, as a child process.
struct Op {
    child: Child,
    issuer: String,
    clients_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peers() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

impl Op {
    fn start(accounts: Value) -> Op {
        Op::start_with(accounts, false)
    }

    /// `id_token_claims`: the provider puts the user's claims in the ID token too (by default
    /// it keeps them for userinfo).
    fn start_with(accounts: Value, id_token_claims: bool) -> Op {
        let dir = tempfile::tempdir().unwrap();
        let clients_file = dir.path().join("clients.json");
        let config = dir.path().join("op.json");
        std::fs::write(
            &config,
            json!({"accounts": accounts, "clients_file": clients_file, "id_token_claims": id_token_claims}).to_string(),
        )
        .unwrap();
        let mut child = Command::new("node")
            .arg(peers().join("oidc_provider.mjs"))
            .arg(&config)
            .current_dir(peers())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("op.log")).unwrap())
            .spawn()
            .expect("node (scripts/test installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let issuer = serde_json::from_str::<Value>(&line)
            .unwrap_or_else(|_| panic!("oidc-provider did not start: {line}"))["issuer"]
            .as_str()
            .unwrap()
            .to_string();
        Op {
            child,
            issuer,
            clients_file,
            _dir: dir,
        }
    }

    /// Registers gatehouse's clients (one per connection) with their redirect URIs.
    fn register(&self, clients: &[(&str, &str)]) {
        let list: Vec<Value> = clients
            .iter()
            .map(|(id, redirect)| {
                json!({
                    "client_id": id, "client_secret": SECRET, "redirect_uris": [redirect],
                    "grant_types": ["authorization_code"], "response_types": ["code"],
                    "token_endpoint_auth_method": "client_secret_basic",
                })
            })
            .collect();
        std::fs::write(&self.clients_file, Value::Array(list).to_string()).unwrap();
    }
}

fn accounts() -> Value {
    json!({
        "ann": {"email": "ann@acme.test", "email_verified": true, "name": "Ann Lee",
                "given_name": "Ann", "family_name": "Lee", "groups": ["Engineering", "Everyone"]},
        "bob": {"email": "bob@acme.test", "email_verified": false, "name": "Bob"},
        "eve": {"email": "eve@evil.test", "email_verified": true, "name": "Eve"},
        "tia": {"email": "tia@acme.test", "email_verified": true, "tid": "tenant-2"},
    })
}

/// An app with org `acme` (verified domain acme.test) whose server may reach 127.0.0.1.
async fn app_on(backend: Backend) -> Option<TestApp> {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(backend, data_dir.path())?;
    let mut env = test_env(data_dir.path(), &database_url);
    env.insert("GATEHOUSE_OUTBOUND_ALLOW_PRIVATE".into(), "true".into());
    let app = spawn_with_env(env, data_dir, database_url).await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    Some(app)
}

/// `gatehouse connection add-oidc … --json`.
fn add_oidc(app: &TestApp, issuer: &str, client_id: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "connection",
        "add-oidc",
        "acme",
        "--issuer",
        issuer,
        "--client-id",
        client_id,
        "--client-secret-env",
        "GH_TEST_CLIENT_SECRET",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = app
        .cli_env(&[("GH_TEST_CLIENT_SECRET", SECRET)], &args)
        .ok();
    serde_json::from_str(out.stdout.trim()).unwrap()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_string()
}

fn absolute(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

/// Plays the user at the provider: follows its redirects and fills its login form with
/// `login`, until it redirects back to gatehouse; returns that callback URL.
async fn at_provider(issuer: &str, authorize_url: &str, login: &str, app: &TestApp) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let mut url = authorize_url.to_string();
    for _ in 0..10 {
        let res = browser.get(&url).send().await.unwrap();
        if res.status().is_redirection() {
            let next = absolute(&url, &location(&res));
            if next.starts_with(&app.address) {
                return next;
            }
            url = next;
            continue;
        }
        let html = res.text().await.unwrap();
        assert!(
            html.contains(r#"name="login""#),
            "no login form at {url}:\n{html}"
        );
        let start = html.find("action=\"").unwrap() + 8;
        let action = &html[start..start + html[start..].find('"').unwrap()];
        let res = browser
            .post(absolute(issuer, action))
            .form(&[("prompt", "login"), ("login", login), ("password", "any")])
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_redirection(),
            "login form: {}",
            res.status()
        );
        let next = absolute(&url, &location(&res));
        if next.starts_with(&app.address) {
            return next;
        }
        url = next;
    }
    panic!("the provider never redirected back");
}

struct Setup {
    app: TestApp,
    op: Op,
    connection: String,
}

async fn setup(backend: Backend) -> Option<Setup> {
    let app = app_on(backend).await?;
    let op = Op::start(accounts());
    let out = add_oidc(&app, &op.issuer, "gatehouse", &["--preset", "okta"]);
    op.register(&[("gatehouse", out["redirect_uri"].as_str().unwrap())]);
    Some(Setup {
        connection: out["id"].as_str().unwrap().to_string(),
        app,
        op,
    })
}

impl Setup {
    /// Starts at `/sso/oidc/{c}/login` and returns the callback URL the provider sends back.
    async fn authorize(&self, login: &str, return_to: &str) -> String {
        let res = self
            .app
            .get(&format!(
                "/sso/oidc/{}/login?return_to={return_to}",
                self.connection
            ))
            .await;
        assert_eq!(res.status(), 303);
        let to = location(&res);
        assert!(to.starts_with(&self.op.issuer), "{to}");
        at_provider(&self.op.issuer, &to, login, &self.app).await
    }

    /// The callback, then `/sso/complete`: the final response.
    async fn finish(&self, callback: &str) -> reqwest::Response {
        let res = self.app.client.get(callback).send().await.unwrap();
        if res.status() != 303 {
            return res;
        }
        assert_eq!(location(&res), "/sso/complete");
        self.app.get_html("/sso/complete").await
    }

    fn last_failure(&self) -> (String, Value) {
        last_failure(&self.app)
    }

    fn last_event_text(&self) -> String {
        last_event(&self.app)
    }

    fn op_log(&self) -> String {
        std::fs::read_to_string(self.op._dir.path().join("op.log")).unwrap_or_default()
    }
}

fn last_event(app: &TestApp) -> String {
    app.cli_ok(&["audit", "list", "acme", "--limit", "1", "--json"])
}

fn last_failure(app: &TestApp) -> (String, Value) {
    let events: Value = serde_json::from_str(
        app.cli_ok(&["audit", "list", "acme", "--limit", "1", "--json"])
            .trim(),
    )
    .unwrap();
    let e = &events[0];
    assert_eq!(e["action"], "login.oidc", "{e}");
    assert_eq!(e["outcome"], "failure", "{e}");
    let payload: Value = serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
    (payload["cause"].as_str().unwrap().to_string(), payload)
}

async fn code_flow_with_jit(backend: Backend) {
    let Some(s) = setup(backend).await else {
        return;
    };
    s.app
        .cli_ok(&["role", "add", "acme", "developer", "--rank", "5"]);
    s.app
        .cli_ok(&["role", "map", "acme", "Engineering", "developer"]);

    // Email-first: an e-mail of the verified domain goes to this connection.
    let links = s.app.sso_choices("ann@acme.test", "/app/home").await;
    assert_eq!(
        links,
        vec![format!(
            "/sso/oidc/{}/login?return_to=%2Fapp%2Fhome",
            s.connection
        )]
    );

    // The authorization request: code, PKCE S256, state and nonce, our redirect URI.
    let res = s.app.get(&links[0]).await;
    assert_eq!(res.status(), 303);
    let bound = set_cookie(&res, "gatehouse_oidc").unwrap();
    assert!(
        bound.contains("HttpOnly") && bound.contains("SameSite=Lax"),
        "{bound}"
    );
    let auth = url::Url::parse(&location(&res)).unwrap();
    let q: std::collections::HashMap<_, _> = auth.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43, "{q:?}");
    assert!(q["redirect_uri"].ends_with(&format!("/sso/oidc/{}/callback", s.connection)));

    let callback = at_provider(&s.op.issuer, auth.as_str(), "ann", &s.app).await;
    let res = s.finish(&callback).await;
    assert_eq!(res.status(), 303, "{}\n{}", last_event(&s.app), s.op_log());
    assert_eq!(location(&res), "/app/home");
    let me: Value = s.app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "ann@acme.test");
    assert_eq!(me["org"], "acme");
    // Groups and names come from userinfo (the provider keeps the ID token minimal).
    assert_eq!(me["groups"], json!(["Engineering", "Everyone"]));
    assert_eq!(me["role"], "developer");
    let users = s.app.cli_ok(&["user", "list", "acme", "--json"]);
    assert!(users.contains("\"source\":\"jit\""), "{users}");

    // The success is audited with the decoded claims, never the raw token or code.
    let events: Value = serde_json::from_str(
        s.app
            .cli_ok(&["audit", "list", "acme", "--limit", "3", "--json"])
            .trim(),
    )
    .unwrap();
    let login = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "login.oidc")
        .unwrap();
    assert_eq!(login["outcome"], "success");
    let payload: Value = serde_json::from_str(login["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["claims"]["email"], "ann@acme.test", "{payload}");
    assert_eq!(payload["account"], "created just in time");
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let all = s.app.cli_ok(&["audit", "list", "acme", "--json"]);
    assert!(
        !all.contains(&code),
        "the authorization code is never stored"
    );
    assert!(!all.contains("eyJ"), "no raw JWT is stored");

    // The same callback again: refused (state is single-use), the session stays.
    let res = s.app.client.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(s.last_failure().0.contains("already completed (replay)"));

    // A second sign-in finds the same user by subject.
    let callback = s.authorize("ann", "/").await;
    assert_eq!(s.finish(&callback).await.status(), 303);
    let users: Value =
        serde_json::from_str(s.app.cli_ok(&["user", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn code_flow_with_jit_on_sqlite() {
    code_flow_with_jit(Backend::Sqlite).await;
}

#[tokio::test]
async fn code_flow_with_jit_on_postgres() {
    code_flow_with_jit(Backend::Postgres).await;
}

#[tokio::test]
async fn callbacks_that_are_not_ours_are_refused() {
    let s = setup(Backend::Sqlite).await.unwrap();
    let cb = |q: &str| format!("/sso/oidc/{}/callback{q}", s.connection);

    // No state at all.
    let res = s.app.get(&cb("?code=abc")).await;
    assert_eq!(res.status(), 400);
    let page = res.text().await.unwrap();
    assert!(page.contains("reference"), "{page}");
    assert_eq!(s.last_failure().0, "the callback has no state");

    // A state we never issued.
    let callback = s.authorize("ann", "/").await;
    let forged = callback.replace("state=", "state=x");
    assert_eq!(
        s.app.client.get(&forged).send().await.unwrap().status(),
        400
    );
    assert!(s.last_failure().0.contains("state does not name a sign-in"));

    // The right state, delivered to another browser (login CSRF): refused, and it burns the
    // request so the real browser must start again.
    let other = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(other.get(&callback).send().await.unwrap().status(), 400);
    assert!(s.last_failure().0.contains("another browser"));
    assert_eq!(s.app.me_json().await.status(), 401);

    // The provider's error answer.
    let callback = s.authorize("ann", "/").await;
    let state = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let res = s
        .app
        .get(&cb(&format!(
            "?error=access_denied&error_description=user+cancelled&state={state}"
        )))
        .await;
    assert_eq!(res.status(), 400);
    assert!(s.last_failure().0.contains("access_denied: user cancelled"));

    // A connection id of another kind or none at all: 404.
    assert_eq!(s.app.get("/sso/oidc/nope/login").await.status(), 404);
    assert_eq!(s.app.me_json().await.status(), 401);
}

#[tokio::test]
async fn identities_the_org_must_not_trust_are_refused() {
    let s = setup(Backend::Sqlite).await.unwrap();

    // email_verified=false.
    let callback = s.authorize("bob", "/").await;
    assert_eq!(s.finish(&callback).await.status(), 400);
    let (cause, payload) = s.last_failure();
    assert!(cause.contains("email not verified by the IdP"), "{cause}");
    assert_eq!(
        payload["claims"]["email"], "bob@acme.test",
        "decoded claims are audited"
    );

    // An e-mail outside the org's verified domains.
    let callback = s.authorize("eve", "/").await;
    assert_eq!(s.finish(&callback).await.status(), 400);
    assert!(s
        .last_failure()
        .0
        .contains("evil.test is not a verified domain"));
    assert_eq!(s.app.me_json().await.status(), 401);

    // A user deactivated by SCIM: refused, and the live session stops at once.
    let callback = s.authorize("ann", "/").await;
    assert_eq!(s.finish(&callback).await.status(), 303);
    assert_eq!(s.app.me_json().await.status(), 200);
    let scim = s.app.scim("acme");
    let (_, list) = scim
        .get("/Users?filter=userName%20eq%20%22ann@acme.test%22")
        .await;
    let id = list["Resources"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.app.me_json().await.status(), 401);
    let callback = s.authorize("ann", "/").await;
    assert_eq!(s.finish(&callback).await.status(), 400);
    assert!(s.last_failure().0.contains("deactivated"));

    // A tenant outside the allowlist (Entra preset; `tid` in the ID token, as Entra sends it).
    let op = Op::start_with(accounts(), true);
    let entra = add_oidc(
        &s.app,
        &op.issuer,
        "gatehouse-entra",
        &["--preset", "entra", "--tenant-allow", "tenant-1"],
    );
    op.register(&[("gatehouse-entra", entra["redirect_uri"].as_str().unwrap())]);
    let res = s
        .app
        .get(&format!(
            "/sso/oidc/{}/login",
            entra["id"].as_str().unwrap()
        ))
        .await;
    let callback = at_provider(&op.issuer, &location(&res), "tia", &s.app).await;
    assert_eq!(s.finish(&callback).await.status(), 400);
    assert_eq!(
        s.last_failure().0,
        "tenant tenant-2 not allowed by this connection"
    );
    assert_eq!(s.app.me_json().await.status(), 401);
}

#[tokio::test]
async fn add_oidc_checks_its_settings_and_keeps_the_secret_write_only() {
    let app = app_on(Backend::Sqlite).await.unwrap();
    let op = Op::start(accounts());
    // The secret comes from the environment and must be there.
    let out = app.cli(&[
        "connection",
        "add-oidc",
        "acme",
        "--issuer",
        &op.issuer,
        "--client-id",
        "x",
        "--client-secret-env",
        "GH_UNSET_SECRET",
    ]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("GH_UNSET_SECRET"), "{}", out.stderr);
    // A wrong issuer is reported at once.
    let out = app.cli_env(
        &[("S", "x")],
        &[
            "connection",
            "add-oidc",
            "acme",
            "--issuer",
            "http://127.0.0.1:9/none",
            "--client-id",
            "x",
            "--client-secret-env",
            "S",
        ],
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("OpenID discovery failed"),
        "{}",
        out.stderr
    );
    // A multi-tenant Entra issuer without an allowlist is refused.
    let out = app.cli_env(
        &[("S", "x")],
        &[
            "connection",
            "add-oidc",
            "acme",
            "--issuer",
            "https://login.microsoftonline.com/organizations/v2.0",
            "--client-id",
            "x",
            "--client-secret-env",
            "S",
            "--preset",
            "entra",
        ],
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("--tenant-allow"), "{}", out.stderr);

    let out = add_oidc(&app, &op.issuer, "gatehouse", &[]);
    for k in ["id", "redirect_uri", "login_url"] {
        assert!(out[k].is_string(), "{out}");
    }
    let listed = app.cli_ok(&["connection", "list", "acme", "--json"]);
    assert!(
        !listed.contains(SECRET),
        "the client secret is never shown again"
    );
    assert!(listed.contains("write-only"), "{listed}");
    let audit = app.cli_ok(&["audit", "list", "acme", "--json"]);
    assert!(!audit.contains(SECRET));
    // At rest it is sealed.
    let db = app.db();
    let mut conn = db.conn().unwrap();
    let c = gatehouse::sso::connections::get(&mut conn, out["id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert!(!c.secret_enc.unwrap().contains(SECRET));
    assert!(!c.config.contains(SECRET));
}

/// Chromium from `/sso/login` through the provider's own login form to `/sso/me`.
#[tokio::test]
async fn a_browser_signs_in_through_the_providers_form() {
    let s = setup(Backend::Sqlite).await.unwrap();
    let result = run_browser_script(
        "browser_sign_in.mjs",
        vec![s.app.address.clone(), "ann@acme.test".into(), "ann".into()],
        vec![],
    )
    .await;
    assert_eq!(result["url"], format!("{}/sso/me", s.app.address));
    assert_eq!(result["text"], "ann@acme.test");
}

// ---------------------------------------------------------------------------------------------
// A forging provider: serves discovery, JWKS, a token endpoint that answers with whatever ID
// token the test builds, and userinfo. Nothing here is trusted by gatehouse beyond what a
// real provider's answers would be.

#[derive(Default)]
struct Forge {
    keys: Vec<(String, PKey<Private>)>,
    /// (kid to sign with, header overrides, claim overrides) for the next token request.
    next: Option<(String, Value, Value)>,
    nonce: String,
    /// The subject of the last token issued (userinfo describes it).
    subject: String,
}

struct FakeOp {
    issuer: String,
    forge: Arc<Mutex<Forge>>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn merge(base: &mut Value, overrides: &Value) {
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
}

impl FakeOp {
    async fn start() -> FakeOp {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let forge = Arc::new(Mutex::new(Forge {
            keys: vec![("k1".into(), rsa_key())],
            ..Default::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let (f, iss) = (forge.clone(), issuer.clone());
        // Its own thread and runtime: the test thread blocks on CLI runs that call it.
        std::thread::spawn(move || {
            let server = HttpServer::new(move || {
            let (f1, f2, f3, iss1, iss2) =
                (f.clone(), f.clone(), f.clone(), iss.clone(), iss.clone());
            App::new()
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(move || {
                        let i = iss1.clone();
                        async move {
                            HttpResponse::Ok().json(json!({
                                "issuer": i, "authorization_endpoint": format!("{i}/auth"),
                                "token_endpoint": format!("{i}/token"), "jwks_uri": format!("{i}/jwks"),
                                "userinfo_endpoint": format!("{i}/userinfo"),
                            }))
                        }
                    }),
                )
                .route(
                    "/jwks",
                    web::get().to(move || {
                        let f = f1.clone();
                        async move {
                            let keys: Vec<Value> = f
                                .lock()
                                .unwrap()
                                .keys
                                .iter()
                                .map(|(kid, k)| {
                                    let rsa = k.rsa().unwrap();
                                    json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                                           "n": b64(&rsa.n().to_vec()), "e": b64(&rsa.e().to_vec())})
                                })
                                .collect();
                            HttpResponse::Ok().json(json!({ "keys": keys }))
                        }
                    }),
                )
                .route(
                    "/userinfo",
                    web::get().to(move || {
                        let f = f3.clone();
                        async move {
                            let sub = f.lock().unwrap().subject.clone();
                            HttpResponse::Ok().json(json!({ "sub": sub }))
                        }
                    }),
                )
                .route(
                    "/token",
                    web::post().to(move || {
                        let (f, i) = (f2.clone(), iss2.clone());
                        async move {
                            let mut forge = f.lock().unwrap();
                            let (kid, header_over, claims_over) = forge.next.clone().unwrap();
                            let now = chrono_now();
                            let mut header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
                            merge(&mut header, &header_over);
                            let mut claims = json!({
                                "iss": i, "aud": "gatehouse", "sub": "forged-sub",
                                "exp": now + 300, "iat": now, "nonce": forge.nonce,
                                "email": "fay@acme.test", "email_verified": true,
                            });
                            merge(&mut claims, &claims_over);
                            forge.subject = claims["sub"].as_str().unwrap_or_default().to_string();
                            let signing = format!(
                                "{}.{}",
                                b64(header.to_string().as_bytes()),
                                b64(claims.to_string().as_bytes())
                            );
                            let signature = if header["alg"] == "none" {
                                String::new()
                            } else {
                                let key = &forge.keys.iter().find(|(k, _)| *k == kid).map(|(_, k)| k.clone()).unwrap_or_else(rsa_key);
                                let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
                                signer.update(signing.as_bytes()).unwrap();
                                b64(&signer.sign_to_vec().unwrap())
                            };
                            HttpResponse::Ok().json(json!({
                                "id_token": format!("{signing}.{signature}"),
                                "access_token": "forged-access-token",
                                "token_type": "Bearer", "expires_in": 300,
                            }))
                        }
                    }),
                )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
            let _ = actix_web::rt::System::new().block_on(server);
        });
        FakeOp { issuer, forge }
    }
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Starts a sign-in, has the forging provider answer with the given token, and returns the
/// final response.
async fn forged_sign_in(
    app: &TestApp,
    op: &FakeOp,
    connection: &str,
    kid: &str,
    header: Value,
    claims: Value,
) -> reqwest::Response {
    let res = app.get(&format!("/sso/oidc/{connection}/login")).await;
    assert_eq!(res.status(), 303);
    let auth = url::Url::parse(&location(&res)).unwrap();
    let q: std::collections::HashMap<_, _> = auth.query_pairs().into_owned().collect();
    {
        let mut f = op.forge.lock().unwrap();
        f.nonce = q["nonce"].clone();
        f.next = Some((kid.into(), header, claims));
    }
    let res = app
        .get(&format!(
            "/sso/oidc/{connection}/callback?code=c0de&state={}",
            q["state"]
        ))
        .await;
    if res.status() != 303 {
        return res;
    }
    app.get_html("/sso/complete").await
}

#[tokio::test]
async fn forged_id_tokens_are_refused_with_the_cause() {
    let app = app_on(Backend::Sqlite).await.unwrap();
    let op = FakeOp::start().await;
    let c = add_oidc(&app, &op.issuer, "gatehouse", &[]);
    let id = c["id"].as_str().unwrap();
    let now = chrono_now();
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "k1",
            json!({}),
            json!({"nonce": "not-the-nonce"}),
            "nonce mismatch",
        ),
        (
            "k1",
            json!({}),
            json!({"nonce": null}),
            "nonce mismatch (missing nonce claim)",
        ),
        (
            "k1",
            json!({}),
            json!({"aud": "someone-else"}),
            "ID token issued for audience \"someone-else\"",
        ),
        (
            "k1",
            json!({}),
            json!({"iss": "https://evil.test"}),
            "ID token issued by https://evil.test, not by this connection's issuer",
        ),
        ("k1", json!({"alg": "none"}), json!({}), "(alg none)"),
        (
            "k1",
            json!({"alg": "HS256"}),
            json!({}),
            "algorithm that is not accepted (algorithm `HS256`",
        ),
        (
            "k1",
            json!({}),
            json!({"exp": now - 600}),
            "ID token expired",
        ),
        ("k1", json!({}), json!({"iat": now + 3600}), "in the future"),
        ("k9", json!({}), json!({}), "not in the IdP's JWKS"),
        (
            "k1",
            json!({}),
            json!({"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}),
            "at_hash does not match",
        ),
        (
            "k1",
            json!({}),
            json!({"email_verified": false}),
            "email not verified by the IdP",
        ),
    ];
    for (kid, header, claims, expected) in cases {
        let res = forged_sign_in(&app, &op, id, kid, header.clone(), claims.clone()).await;
        assert_eq!(res.status(), 400, "{header} {claims}");
        let (cause, _) = last_failure(&app);
        assert!(cause.contains(expected), "{header} {claims}: got `{cause}`");
        assert_eq!(app.me_json().await.status(), 401);
    }

    // Within the clock leeway (60 s) an expiry just past is accepted.
    let res = forged_sign_in(&app, &op, id, "k1", json!({}), json!({"exp": now - 20})).await;
    assert_eq!(res.status(), 303);
    assert_eq!(app.me_json().await.status(), 200);

    // Key rotation: a token signed with a key the JWKS does not list yet is refused; once the
    // provider publishes it, the JWKS is fetched again and the token accepted.
    let rotated = rsa_key();
    let res = forged_sign_in(&app, &op, id, "k2", json!({}), json!({})).await;
    assert_eq!(res.status(), 400);
    assert!(last_failure(&app).0.contains("not in the IdP's JWKS"));
    op.forge.lock().unwrap().keys.push(("k2".into(), rotated));
    let res = forged_sign_in(&app, &op, id, "k2", json!({}), json!({})).await;
    assert_eq!(res.status(), 303);
    let me: Value = app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "fay@acme.test");
}

/// An app's `prompt=login` or `max_age` (gatehouse as OpenID Provider) reaches the customer's
/// OIDC IdP as `prompt=login` / `max_age`, so a live IdP session does not answer silently.
#[tokio::test]
async fn an_apps_request_for_a_new_sign_in_reaches_the_idp() {
    let Some(s) = setup(Backend::Sqlite).await else {
        return;
    };
    let created: Value = serde_json::from_str(
        s.app
            .cli_ok(&[
                "app",
                "add",
                "crm",
                "--redirect-uri",
                "https://crm.example.com/cb",
                "--json",
            ])
            .trim(),
    )
    .unwrap();
    let client_id = created["client_id"].as_str().unwrap();
    for (extra, prompt, max_age) in [
        ("&prompt=login", Some("login"), Some("0")),
        ("&max_age=300", None, Some("300")),
        ("", None, None),
    ] {
        let res = s
            .app
            .get(&format!(
                "/sso/oauth2/authorize?client_id={client_id}&redirect_uri=https%3A%2F%2Fcrm.example.com%2Fcb&response_type=code&scope=openid&organization=acme{extra}"
            ))
            .await;
        let to = location(&res);
        assert!(
            to.starts_with(&format!("/sso/oidc/{}/login", s.connection)),
            "{to}"
        );
        let res = s.app.get(&to).await;
        let auth = url::Url::parse(&location(&res)).unwrap();
        let q: std::collections::HashMap<_, _> = auth.query_pairs().into_owned().collect();
        assert_eq!(q.get("prompt").map(String::as_str), prompt, "{extra}");
        assert_eq!(q.get("max_age").map(String::as_str), max_age, "{extra}");
    }
    // The IdP authenticates again and says so (auth_time): the sign-in goes on to the app.
    let res = s
        .app
        .get(&format!(
            "/sso/oauth2/authorize?client_id={client_id}&redirect_uri=https%3A%2F%2Fcrm.example.com%2Fcb&response_type=code&scope=openid&organization=acme&prompt=login"
        ))
        .await;
    let res = s.app.get(&location(&res)).await;
    let callback = at_provider(&s.op.issuer, &location(&res), "ann", &s.app).await;
    let done = s.finish(&callback).await;
    assert_eq!(done.status(), 303, "{}", s.last_event_text());
    let cont = location(&done);
    assert!(cont.starts_with("/sso/oauth2/continue/"), "{cont}");
    let back = s.app.get(&cont).await;
    assert!(location(&back).starts_with("https://crm.example.com/cb?code="));
}
