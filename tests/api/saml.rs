//! SAML sign-in driven by an independent IdP (PyPI pysaml2, `tests/peers/saml_idp.py`, run
//! from the venv `scripts/test` creates), over the real HTTP surface: SP- and IdP-initiated
//! happy paths with JIT, then the attack corpus — each refused with no session and an audit
//! event naming the cause.

use std::io::Write;
use std::process::{Command, Stdio};

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509};
use serde_json::{json, Value};

use crate::helpers::*;

pub(crate) const IDP_ENTITY: &str = "https://idp.example.test/saml";
pub(crate) const IDP_SSO: &str = "https://idp.example.test/sso";

pub(crate) struct KeyPair {
    pub(crate) key_pem: String,
    pub(crate) cert_pem: String,
}

pub(crate) fn key_pair(cn: &str) -> KeyPair {
    let pkey = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    // A positive random serial (RFC 5280): PyPI cryptography warns it will refuse serial 0.
    let mut serial = openssl::bn::BigNum::new().unwrap();
    serial.rand(64, openssl::bn::MsbOption::ONE, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&pkey).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&pkey, MessageDigest::sha256()).unwrap();
    KeyPair {
        key_pem: String::from_utf8(pkey.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        cert_pem: String::from_utf8(b.build().to_pem().unwrap()).unwrap(),
    }
}

/// `gatehouse connection add-saml <org> --entity-id … --sso-url <sso_url>` with a fresh IdP
/// certificate; the `--json` output.
pub(crate) fn add_saml_connection(
    app: &TestApp,
    org: &str,
    sso_url: &str,
    extra: &[&str],
) -> Value {
    let idp = key_pair("cli idp");
    let cert = app.data_dir.path().join(format!("idp-{org}.pem"));
    std::fs::write(&cert, &idp.cert_pem).unwrap();
    let mut args = vec![
        "connection",
        "add-saml",
        org,
        "--entity-id",
        "https://idp.example.test/entity",
        "--sso-url",
        sso_url,
        "--cert-file",
        cert.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(app.cli_ok(&args).trim()).unwrap()
}

/// `tests/peers/saml_idp_server.py` with this config: the child and its port.
/// A browser-facing pysaml2 IdP (`saml_idp_server.py`) for org acme, and the SAML connection
/// to it: the connection is created first (its SP entity ID goes into the IdP's config), then
/// pointed at the server's port. Returns the server (kill it at the end) and the connection id.
pub(crate) fn browser_idp(
    app: &TestApp,
    name_id: &str,
    attributes: Value,
) -> (std::process::Child, String) {
    let idp = key_pair("browser idp");
    let config = app.data_dir.path().join("idp.json");
    let cert = app.data_dir.path().join("idp.pem");
    std::fs::write(&cert, &idp.cert_pem).unwrap();
    // The SP entity ID is known only once the connection exists; the server reads its config
    // at start, so create the connection with a provisional SSO URL and fix it after.
    let out: Value = serde_json::from_str(
        app.cli_ok(&[
            "connection",
            "add-saml",
            "acme",
            "--entity-id",
            IDP_ENTITY,
            "--sso-url",
            "http://127.0.0.1:1/sso",
            "--cert-file",
            cert.to_str().unwrap(),
            "--preset",
            "okta",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let connection = out["id"].as_str().unwrap().to_string();
    std::fs::write(
        &config,
        json!({
            "idp_entity_id": IDP_ENTITY, "idp_key_pem": idp.key_pem, "idp_cert_pem": idp.cert_pem,
            "sp_entity_id": out["sp_entity_id"], "name_id": format!("00u-{name_id}"),
            "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            "attributes": attributes,
        })
        .to_string(),
    )
    .unwrap();
    let (server, port) = start_idp_server(&config);
    app.sql(&format!(
        "UPDATE connections SET config = REPLACE(config, 'http://127.0.0.1:1/sso', 'http://127.0.0.1:{port}/sso') WHERE id = '{connection}'"
    ));
    (server, connection)
}

pub(crate) fn start_idp_server(config: &std::path::Path) -> (std::process::Child, u64) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut server = Command::new(python())
        .arg(root.join("tests/peers/saml_idp_server.py"))
        .arg(config)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = serde_json::from_str::<Value>(&line).unwrap()["port"]
        .as_u64()
        .unwrap();
    (server, port)
}

fn python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("tests/.venv/bin/python");
    assert!(
        venv.exists(),
        "tests/.venv is missing: run scripts/test (it installs pysaml2)"
    );
    venv
}

fn run_python(script_args: &[&str], input: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(python())
        .args(script_args)
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The AuthnRequest ID inside an HTTP-Redirect URL (base64 of raw DEFLATE).
pub(crate) fn request_id(location: &str) -> String {
    let xml = authn_request_xml(location);
    let start = xml.find(" ID=\"").expect("an AuthnRequest ID") + 5;
    xml[start..start + xml[start..].find('"').unwrap()].to_string()
}

/// The AuthnRequest XML inside an HTTP-Redirect URL (base64 of raw DEFLATE).
pub(crate) fn authn_request_xml(location: &str) -> String {
    let code = "import sys,zlib,base64,urllib.parse\n\
                q=urllib.parse.urlparse(sys.stdin.read()).query\n\
                print(zlib.decompress(base64.b64decode(urllib.parse.parse_qs(q)['SAMLRequest'][0]),-15).decode())";
    run_python(&["-c", code], location)
}

pub(crate) struct Setup {
    pub(crate) app: TestApp,
    pub(crate) idp: KeyPair,
    pub(crate) connection: String,
    pub(crate) acs_url: String,
    pub(crate) sp_entity_id: String,
}

pub(crate) async fn setup(backend: Backend, extra: &[&str]) -> Option<Setup> {
    setup_with(backend, extra, &[]).await
}

/// [`setup`] with extra settings for the server.
pub(crate) async fn setup_with(
    backend: Backend,
    extra: &[&str],
    env_extra: &[(&str, String)],
) -> Option<Setup> {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(backend, data_dir.path())?;
    let mut env = test_env(data_dir.path(), &database_url);
    for (k, v) in env_extra {
        env.insert(k.to_string(), v.clone());
    }
    let app = spawn_with_env(env, data_dir, database_url).await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    let idp = key_pair("test idp");
    let cert = app.data_dir.path().join("idp.pem");
    std::fs::write(&cert, &idp.cert_pem).unwrap();
    let mut args = vec![
        "connection",
        "add-saml",
        "acme",
        "--entity-id",
        IDP_ENTITY,
        "--sso-url",
        IDP_SSO,
        "--cert-file",
        cert.to_str().unwrap(),
        "--preset",
        "okta",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out: Value = serde_json::from_str(app.cli_ok(&args).trim()).unwrap();
    Some(Setup {
        connection: out["id"].as_str().unwrap().to_string(),
        acs_url: out["acs_url"].as_str().unwrap().to_string(),
        sp_entity_id: out["sp_entity_id"].as_str().unwrap().to_string(),
        app,
        idp,
    })
}

impl Setup {
    /// The status a Test sign-in of this connection started by `client` gets.
    pub(crate) async fn test_status(&self, client: &reqwest::Client) -> u16 {
        client
            .get(
                self.app
                    .url(&format!("/sso/saml/{}/login?test=1", self.connection)),
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// A SAMLResponse from the independent IdP; `spec` overrides the defaults.
    pub(crate) fn response(&self, spec: Value) -> Value {
        let mut req = json!({
            "idp_entity_id": IDP_ENTITY,
            "idp_key_pem": self.idp.key_pem,
            "idp_cert_pem": self.idp.cert_pem,
            "sp_entity_id": self.sp_entity_id,
            "acs_url": self.acs_url,
            "name_id": "00u-ann",
            "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            "attributes": {"email": ["ann@acme.test"], "firstName": ["Ann"], "lastName": ["Lee"], "groups": ["Engineering", "Everyone"]},
        });
        for (k, v) in spec.as_object().unwrap() {
            req[k] = v.clone();
        }
        serde_json::from_str(&run_python(&["tests/peers/saml_idp.py"], &req.to_string())).unwrap()
    }

    /// Starts an SP-initiated sign-in and returns the request id the IdP must answer.
    async fn start(&self, return_to: &str) -> String {
        let res = self
            .app
            .get(&format!(
                "/sso/saml/{}/login?return_to={return_to}",
                self.connection
            ))
            .await;
        assert_eq!(res.status(), 303);
        let location = res.headers()["location"].to_str().unwrap().to_string();
        assert!(location.starts_with(IDP_SSO), "{location}");
        request_id(&location)
    }

    /// POSTs a response to the ACS as the browser would (cross-site: a fresh client without
    /// our cookies), then follows the handoff with the browser's own client.
    pub(crate) async fn post_acs(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![("SAMLResponse", saml_response.to_string())];
        if let Some(r) = relay_state {
            form.push(("RelayState", r.to_string()));
        }
        self.app
            .client
            .post(self.app.url(&format!("/sso/saml/{}/acs", self.connection)))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// ACS then `/sso/complete`: the final response (a redirect into the app on success).
    pub(crate) async fn sign_in(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
    ) -> reqwest::Response {
        let res = self.post_acs(saml_response, relay_state).await;
        if res.status() != 303 {
            return res;
        }
        let next = res.headers()["location"].to_str().unwrap().to_string();
        assert_eq!(
            next, "/sso/complete",
            "the handoff token travels in a cookie, never in the URL"
        );
        assert!(set_cookie(&res, "gatehouse_handoff").is_some_and(|c| c.contains("HttpOnly")));
        self.app.get_html(&next).await
    }

    fn last_failure(&self) -> String {
        let events: Value = serde_json::from_str(
            self.app
                .cli_ok(&["audit", "list", "acme", "--limit", "1", "--json"])
                .trim(),
        )
        .unwrap();
        let e = &events[0];
        assert_eq!(e["action"], "login.saml");
        assert_eq!(e["outcome"], "failure");
        let payload: Value = serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
        payload["cause"].as_str().unwrap().to_string()
    }
}

async fn sp_initiated_sign_in_with_jit(backend: Backend) {
    let Some(s) = setup(backend, &[]).await else {
        return;
    };
    s.app
        .cli_ok(&["role", "add", "acme", "developer", "--rank", "5"]);
    s.app
        .cli_ok(&["role", "map", "acme", "Engineering", "developer"]);

    // SP metadata: entity ID, ACS, signing and encryption certificates.
    let md = s
        .app
        .get(&format!("/sso/saml/{}/metadata", s.connection))
        .await;
    assert_eq!(md.status(), 200);
    let md = md.text().await.unwrap();
    assert!(md.contains(&s.sp_entity_id) && md.contains(&s.acs_url));
    assert!(
        md.contains(r#"use="signing""#) && md.contains(r#"use="encryption""#),
        "{md}"
    );

    // Email-first start: POST /sso/login with the e-mail only goes to this connection.
    let links = s.app.sso_choices("ann@acme.test", "/app/home").await;
    assert_eq!(
        links,
        vec![format!(
            "/sso/saml/{}/login?return_to=%2Fapp%2Fhome",
            s.connection
        )]
    );

    let request = s.start("/app/home").await;
    assert!(request.len() >= 33, "≥ 128-bit request ids: {request}");
    let r = s.response(json!({"in_response_to": request}));
    let res = s.sign_in(r["saml_response"].as_str().unwrap(), None).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/app/home");
    let me: Value = s.app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "ann@acme.test");
    assert_eq!(me["org"], "acme");
    assert_eq!(me["groups"], json!(["Engineering", "Everyone"]));
    assert_eq!(me["role"], "developer");
    let users = s.app.cli_ok(&["user", "list", "acme", "--json"]);
    assert!(users.contains("\"source\":\"jit\""), "{users}");

    // The same request id is never accepted twice (a fresh response answering it).
    let again = s.response(json!({"in_response_to": request}));
    let res = s
        .post_acs(again["saml_response"].as_str().unwrap(), None)
        .await;
    assert_eq!(res.status(), 400);
    assert!(
        s.last_failure().contains("already used"),
        "{}",
        s.last_failure()
    );
    // Nor the same response twice.
    let res = s.post_acs(r["saml_response"].as_str().unwrap(), None).await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn sp_initiated_sign_in_with_jit_on_sqlite() {
    sp_initiated_sign_in_with_jit(Backend::Sqlite).await;
}

#[tokio::test]
async fn sp_initiated_sign_in_with_jit_on_postgres() {
    sp_initiated_sign_in_with_jit(Backend::Postgres).await;
}

#[tokio::test]
async fn idp_initiated_sign_in_with_and_without_relay_state() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    // Empty RelayState: lands on /sso/me.
    let r = s.response(json!({}));
    let res = s
        .sign_in(r["saml_response"].as_str().unwrap(), Some(""))
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/sso/me");
    assert_eq!(s.app.me_json().await.status(), 200);
    // RelayState is used only as a local path.
    for (relay, expected) in [
        ("/app/x", "/app/x"),
        ("https://evil.test/", "/sso/me"),
        ("//evil.test", "/sso/me"),
    ] {
        let r = s.response(json!({}));
        let res = s
            .sign_in(r["saml_response"].as_str().unwrap(), Some(relay))
            .await;
        assert_eq!(res.headers()["location"], expected, "{relay}");
    }
    // No RelayState at all.
    let r = s.response(json!({}));
    assert_eq!(
        s.sign_in(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn an_unsolicited_assertion_never_silently_replaces_another_users_session() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    let r = s.response(json!({}));
    s.sign_in(r["saml_response"].as_str().unwrap(), None).await;
    let me: Value = s.app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "ann@acme.test");
    // Bob's assertion posted into Ann's browser: asked, not switched.
    let bob = s.response(json!({"name_id": "00u-bob", "attributes": {"email": ["bob@acme.test"]}}));
    let res = s
        .sign_in(bob["saml_response"].as_str().unwrap(), None)
        .await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("Continue as bob@acme.test") && page.contains("ann@acme.test"),
        "{page}"
    );
    let me: Value = s.app.me_json().await.json().await.unwrap();
    assert_eq!(
        me["user_name"], "ann@acme.test",
        "still Ann until confirmed"
    );
    // Confirming switches (with the form's CSRF value).
    let csrf = form_field(&page, "csrf");
    let res = s
        .app
        .client
        .post(s.app.url("/sso/complete"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let me: Value = s.app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "bob@acme.test");
    // The handoff is single-use.
    let res = s
        .app
        .client
        .post(s.app.url("/sso/complete"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// Each attack: refused (400 page with a reference id, no session) and audited with its cause.
#[tokio::test]
async fn the_attack_corpus_is_refused_with_the_right_cause() {
    let s = setup(Backend::Sqlite, &["--idp-initiated", "true"])
        .await
        .unwrap();
    let other_idp = key_pair("someone else");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unsigned",
            json!({"sign_response": false, "sign_assertion": false}),
            "not signed",
        ),
        (
            "tampered after signing",
            json!({"attack": "tamper_after_sign"}),
            "does not verify",
        ),
        (
            "untrusted key with its cert in KeyInfo",
            json!({"attack": "untrusted_key"}),
            "unknown certificate SHA-256",
        ),
        (
            "XSW evil assertion before",
            json!({"attack": "xsw_before"}),
            "signature wrapping",
        ),
        (
            "XSW evil assertion after",
            json!({"attack": "xsw_after"}),
            "signature wrapping",
        ),
        (
            "XSW genuine assertion in Extensions",
            json!({"attack": "xsw_extensions"}),
            "signature wrapping",
        ),
        (
            "XSW genuine assertion in Advice",
            json!({"attack": "xsw_advice"}),
            "signature wrapping",
        ),
        (
            "wrapped Response",
            json!({"attack": "wrapped_response"}),
            "signature wrapping",
        ),
        (
            "comment inside NameID",
            json!({"attack": "comment_in_nameid"}),
            "does not verify",
        ),
        (
            "wrong audience",
            json!({"audience": "https://other-sp.test/metadata"}),
            "audience mismatch: expected",
        ),
        (
            "no AudienceRestriction",
            json!({"omit_audience_restriction": true}),
            "no AudienceRestriction",
        ),
        (
            "wrong Destination",
            json!({"destination": "https://evil.test/acs"}),
            "Destination mismatch",
        ),
        (
            "wrong Recipient",
            json!({"recipient": "https://evil.test/acs", "sign_response": false}),
            "Recipient mismatch",
        ),
        (
            "expired",
            json!({"not_on_or_after_offset": -900, "not_before_offset": -1800}),
            "expired",
        ),
        (
            "not yet valid beyond skew",
            json!({"not_before_offset": 900}),
            "not valid yet",
        ),
        (
            "stale IssueInstant",
            json!({"issue_instant_offset": -3600}),
            "IssueInstant too old",
        ),
        (
            "failure Status",
            json!({"status": "responder"}),
            "status urn:oasis:names:tc:SAML:2.0:status:Responder",
        ),
        (
            "RSA-SHA1",
            json!({"sign_alg": "rsa-sha1", "digest_alg": "sha1"}),
            "RSA-SHA1",
        ),
        ("DOCTYPE", json!({"attack": "doctype"}), "DOCTYPE"),
        ("entity expansion", json!({"attack": "entity"}), "DOCTYPE"),
        (
            "email outside the verified domains",
            json!({"name_id": "00u-mal", "attributes": {"email": ["mallory@evil.test"]}}),
            "not a verified domain",
        ),
        (
            "unknown InResponseTo",
            json!({"in_response_to": "_00000000000000000000000000000000"}),
            "does not name a sign-in request",
        ),
    ];
    let _ = other_idp;
    for (name, spec, cause) in cases {
        let r = s.response(spec);
        let res = s.post_acs(r["saml_response"].as_str().unwrap(), None).await;
        assert_eq!(res.status(), 400, "{name} was not refused");
        assert!(
            set_cookie(&res, "gatehouse_session").is_none(),
            "{name}: no session"
        );
        let page = res.text().await.unwrap();
        assert!(
            page.contains("request-id"),
            "{name}: the page shows a reference id"
        );
        assert!(
            !page.contains("samael") && !page.contains("xmlsec"),
            "{name}: no internals"
        );
        let logged = s.last_failure();
        eprintln!("{name}: {logged}");
        assert!(
            logged.contains(cause),
            "{name}: cause was `{logged}`, expected `{cause}`"
        );
        assert_eq!(s.app.me_json().await.status(), 401, "{name}: not signed in");
    }
    // Within the clock skew is accepted.
    let r = s.response(json!({"not_before_offset": 60}));
    assert_eq!(
        s.sign_in(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn malformed_and_misdirected_posts_are_refused() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    for body in ["%%%not-base64%%%", "", "PHhtbD4="] {
        let res = s.post_acs(body, None).await;
        assert_eq!(res.status(), 400, "{body}");
    }
    let big = "A".repeat(700 * 1024);
    let res = s.post_acs(&big, None).await;
    assert_eq!(res.status(), 413);
    // A response for connection A posted to connection B's ACS.
    let cert = s.app.data_dir.path().join("idp.pem");
    let out: Value = serde_json::from_str(
        s.app
            .cli_ok(&[
                "connection",
                "add-saml",
                "acme",
                "--entity-id",
                "https://idp-b.test",
                "--sso-url",
                IDP_SSO,
                "--cert-file",
                cert.to_str().unwrap(),
                "--json",
            ])
            .trim(),
    )
    .unwrap();
    let b = out["id"].as_str().unwrap();
    let r = s.response(json!({}));
    let res = s
        .app
        .client
        .post(s.app.url(&format!("/sso/saml/{b}/acs")))
        .form(&[("SAMLResponse", r["saml_response"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(s.app.me_json().await.status(), 401);
    // Unknown connection.
    assert_eq!(s.app.get("/sso/saml/nope/metadata").await.status(), 404);
    // IdP-initiated turned off for a connection: unsolicited responses refused.
    let out: Value = serde_json::from_str(
        s.app
            .cli_ok(&[
                "connection",
                "add-saml",
                "acme",
                "--entity-id",
                IDP_ENTITY,
                "--sso-url",
                IDP_SSO,
                "--cert-file",
                cert.to_str().unwrap(),
                "--idp-initiated",
                "false",
                "--json",
            ])
            .trim(),
    )
    .unwrap();
    let c = out["id"].as_str().unwrap();
    let mut spec = json!({"acs_url": out["acs_url"], "sp_entity_id": out["sp_entity_id"]});
    spec["name_id"] = json!("00u-ann");
    let r = s.response(spec);
    let res = s
        .app
        .client
        .post(s.app.url(&format!("/sso/saml/{c}/acs")))
        .form(&[("SAMLResponse", r["saml_response"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(s
        .last_failure()
        .contains("IdP-initiated) sign-in is disabled"));
}

#[tokio::test]
async fn account_resolution_links_refuses_and_respects_tombstones() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    // An existing local account with the asserted (verified-domain) e-mail is linked.
    s.app.cli_ok(&["user", "add", "acme", "ann@acme.test"]);
    let r = s.response(json!({}));
    assert_eq!(
        s.sign_in(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        303
    );
    let users: Value =
        serde_json::from_str(s.app.cli_ok(&["user", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(
        users.as_array().unwrap().len(),
        1,
        "linked, not duplicated: {users}"
    );
    // Later sign-ins find the user by subject even if the e-mail changes.
    let r = s.response(json!({"attributes": {"email": ["ann.lee@acme.test"]}}));
    assert_eq!(
        s.sign_in(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        303
    );
    let me: Value = s.app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "ann@acme.test");
    // Another subject claiming Ann's e-mail is refused (she is linked already).
    let r = s.response(json!({"name_id": "00u-impostor"}));
    assert_eq!(
        s.post_acs(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        400
    );
    assert!(
        s.last_failure().contains("already linked"),
        "{}",
        s.last_failure()
    );
    // A deactivated user is refused.
    s.app.sql("UPDATE users SET active = FALSE");
    let r = s.response(json!({}));
    assert_eq!(
        s.post_acs(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        400
    );
    assert!(s.last_failure().contains("deactivated"));
    s.app.sql("UPDATE users SET active = TRUE");
    // A tombstone (SCIM delete) stops JIT from re-creating the identity.
    let scim = s.app.scim("acme");
    let id = scim.create_user("carl@acme.test").await;
    assert_eq!(scim.delete(&format!("/Users/{id}")).await, 204);
    let r = s.response(json!({"name_id": "00u-carl", "attributes": {"email": ["carl@acme.test"]}}));
    assert_eq!(
        s.post_acs(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        400
    );
    assert!(
        s.last_failure().contains("deleted by SCIM"),
        "{}",
        s.last_failure()
    );
    // JIT off.
    s.app.cli_ok(&["org", "set", "acme", "--jit", "off"]);
    let r = s.response(json!({"name_id": "00u-dee", "attributes": {"email": ["dee@acme.test"]}}));
    assert_eq!(
        s.post_acs(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        400
    );
    assert!(s.last_failure().contains("just-in-time creation is off"));
    // A transient NameID is never linked to an existing account.
    let r = s.response(json!({"name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:transient", "name_id": "tr-1", "attributes": {"email": ["ann@acme.test"]}}));
    assert_eq!(
        s.post_acs(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        400
    );
    // A break-glass account is never linked.
    s.app.cli_ok(&["user", "add", "acme", "bg@acme.test"]);
    s.app
        .sql("UPDATE users SET is_break_glass = TRUE WHERE user_name_folded = 'bg@acme.test'");
    let r = s.response(json!({"name_id": "00u-bg", "attributes": {"email": ["bg@acme.test"]}}));
    assert_eq!(
        s.post_acs(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        400
    );
    assert!(s.last_failure().contains("break-glass"));
}

#[tokio::test]
async fn connections_need_a_signing_certificate() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme"]);
    let md = app.data_dir.path().join("md.xml");
    std::fs::write(
        &md,
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.test"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.test/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
    )
    .unwrap();
    let out = app.cli(&[
        "connection",
        "add-saml",
        "acme",
        "--metadata-file",
        md.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("no IdP signing certificate"),
        "{}",
        out.stderr
    );
    // Metadata with a certificate imports, and the JSON has the URLs an IdP admin needs.
    let idp = key_pair("md idp");
    let b64: String = idp
        .cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    std::fs::write(
        &md,
        format!(r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.test"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.test/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#),
    )
    .unwrap();
    let out: Value = serde_json::from_str(
        app.cli_ok(&[
            "connection",
            "add-saml",
            "acme",
            "--metadata-file",
            md.to_str().unwrap(),
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    for k in ["id", "sp_entity_id", "acs_url", "metadata_url", "login_url"] {
        assert!(out[k].as_str().is_some_and(|v| !v.is_empty()), "{k}: {out}");
    }
    assert_eq!(out["idp_certificates"].as_array().unwrap().len(), 1);
    let list = app.cli_ok(&["connection", "list", "acme", "--json"]);
    assert!(list.contains(out["id"].as_str().unwrap()));
    // A metadata URL on a private address is refused by the guarded client.
    let out = app.cli(&[
        "connection",
        "add-saml",
        "acme",
        "--metadata-url",
        "https://127.0.0.1:9/md.xml",
    ]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("private or loopback"), "{}", out.stderr);
}

/// A real browser (Debian's Chromium via playwright-core) signs in from the login page through
/// the independent IdP and lands on `/sso/me`.
#[tokio::test]
async fn a_browser_signs_in_end_to_end() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    let (mut server, _connection) = browser_idp(
        &app,
        "web",
        json!({"email": ["web.user@acme.test"], "firstName": ["Web"], "lastName": ["User"]}),
    );

    let result = run_browser_script(
        "browser_sign_in.mjs",
        vec![app.address.clone(), "web.user@acme.test".into()],
        vec![],
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(result["url"], format!("{}/sso/me", app.address));
    assert_eq!(result["text"], "web.user@acme.test");
}

/// Encrypted assertions: Entra's default (assertion signed, then encrypted, Response unsigned)
/// and an encrypted assertion inside a signed Response; both to our metadata's certificate.
#[tokio::test]
async fn encrypted_assertions_are_decrypted_and_verified() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    let keys: Value =
        serde_json::from_str(s.app.cli_ok(&["keys", "list", "--json"]).trim()).unwrap();
    let sp_cert = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["purpose"] == "saml_sp" && k["retired_at"].is_null())
        .and_then(|k| k["certificate_pem"].as_str())
        .unwrap()
        .to_string();
    let md = s
        .app
        .get(&format!("/sso/saml/{}/metadata", s.connection))
        .await
        .text()
        .await
        .unwrap();
    let b64: String = sp_cert
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(
        md.contains(&b64),
        "the metadata publishes the encryption certificate"
    );

    let entra_default = s.response(json!({"encrypt_assertion": true, "sp_cert_pem": sp_cert, "sign_response": false, "encryption_alg": "aes256-cbc"}));
    assert!(entra_default["xml"]
        .as_str()
        .unwrap()
        .contains("EncryptedAssertion"));
    let res = s
        .sign_in(entra_default["saml_response"].as_str().unwrap(), None)
        .await;
    if res.status() != 303 {
        panic!("Entra default refused: {}", s.last_failure());
    }
    let me: Value = s.app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "ann@acme.test");

    let signed_outer = s.response(
        json!({"encrypt_assertion": true, "sp_cert_pem": sp_cert, "sign_response": true}),
    );
    let res = s
        .sign_in(signed_outer["saml_response"].as_str().unwrap(), None)
        .await;
    if res.status() != 303 {
        panic!(
            "signed Response with encrypted assertion refused: {}",
            s.last_failure()
        );
    }

    // Encrypted for someone else's key: refused, and said so.
    let stranger = key_pair("not our sp");
    let wrong = s.response(json!({"encrypt_assertion": true, "sp_cert_pem": stranger.cert_pem, "sign_response": false}));
    assert_eq!(
        s.post_acs(wrong["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        400
    );
    assert!(
        s.last_failure().contains("could not be decrypted"),
        "{}",
        s.last_failure()
    );
    // Unsigned inside the encryption, Response unsigned: refused.
    let unsigned = s.response(json!({"encrypt_assertion": true, "sp_cert_pem": sp_cert, "sign_response": false, "sign_assertion": false}));
    assert_eq!(
        s.post_acs(unsigned["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        400
    );
}

/// A per-connection attribute mapping overrides the preset; the IdP certificate's expiry is
/// exported as a metric.
#[tokio::test]
async fn custom_attribute_names_and_certificate_expiry_metric() {
    // The certificate gauges name orgs and connections: only on the metrics listener.
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = setup_with(
        Backend::Sqlite,
        &[
            "--attribute",
            "email=urn:custom:mail",
            "--attribute",
            "groups=team-claim",
        ],
        &[(
            "GATEHOUSE_METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )],
    )
    .await
    .unwrap();
    let bad = s.app.cli(&[
        "connection",
        "add-saml",
        "acme",
        "--entity-id",
        IDP_ENTITY,
        "--sso-url",
        IDP_SSO,
        "--cert-file",
        s.app.data_dir.path().join("idp.pem").to_str().unwrap(),
        "--attribute",
        "colour=x",
    ]);
    assert!(
        !bad.status.success() && bad.stderr.contains("unknown attribute mapping"),
        "{}",
        bad.stderr
    );
    let r = s.response(json!({"name_id": "00u-cus", "attributes": {"urn:custom:mail": ["custom@acme.test"], "team-claim": ["Platform"], "email": ["ignored@elsewhere.test"]}}));
    assert_eq!(
        s.sign_in(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        303
    );
    let me: Value = s.app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "custom@acme.test");
    assert_eq!(me["groups"], json!(["Platform"]));

    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("gatehouse_saml_idp_certificate_not_after_seconds{")
                && l.contains(&s.connection)
        })
        .unwrap_or_else(|| panic!("no certificate metric:\n{metrics}"));
    let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let in_days = (value - gatehouse::clock::now() as f64) / 86_400.0;
    assert!((29.0..=31.0).contains(&in_days), "{line}");
}

fn metadata_xml(cert_pem: &str) -> String {
    let b64: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP_ENTITY}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SSO}"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    )
}

/// Metadata imported from a URL is fetched again (here on demand; the server does it every
/// 6 hours): an IdP certificate rotation is picked up, and a response signed with the new key
/// is accepted.
#[tokio::test]
async fn metadata_url_refresh_picks_up_a_rotated_certificate() {
    let mut s = setup(Backend::Sqlite, &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("md.xml"), metadata_xml(&s.idp.cert_pem)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
            dir.path().to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/md.xml");
    let allow = [("GATEHOUSE_OUTBOUND_ALLOW_PRIVATE", "true")];
    let mut out = s.app.cli_env(
        &allow,
        &[
            "connection",
            "add-saml",
            "acme",
            "--metadata-url",
            &url,
            "--json",
        ],
    );
    for _ in 0..50 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100)); // the server is starting
        out = s.app.cli_env(
            &allow,
            &[
                "connection",
                "add-saml",
                "acme",
                "--metadata-url",
                &url,
                "--json",
            ],
        );
    }
    let created: Value = serde_json::from_str(out.ok().stdout.trim()).unwrap();
    s.connection = created["id"].as_str().unwrap().to_string();
    s.acs_url = created["acs_url"].as_str().unwrap().to_string();
    s.sp_entity_id = created["sp_entity_id"].as_str().unwrap().to_string();

    // The IdP rotates its key and publishes the new certificate.
    let rotated = key_pair("rotated idp");
    std::fs::write(dir.path().join("md.xml"), metadata_xml(&rotated.cert_pem)).unwrap();
    let refreshed = s
        .app
        .cli_env(&allow, &["connection", "refresh", "acme", &s.connection])
        .ok()
        .stdout;
    assert!(refreshed.contains("updated"), "{refreshed}");
    assert!(s
        .app
        .cli_env(&allow, &["connection", "refresh", "acme", &s.connection])
        .ok()
        .stdout
        .contains("unchanged"));
    s.idp = rotated;
    let r = s.response(json!({}));
    assert_eq!(
        s.sign_in(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        303
    );

    // An unreachable metadata URL keeps the settings and is audited.
    let _ = server.kill();
    let _ = server.wait();
    let failed = s
        .app
        .cli_env(&allow, &["connection", "refresh", "acme", &s.connection]);
    assert!(!failed.status.success());
    let audit = s.app.cli_ok(&["audit", "list", "acme", "--limit", "5"]);
    assert!(
        audit.contains("connection.metadata_refresh") && audit.contains("failure"),
        "{audit}"
    );
}

/// An IdP whose metadata asks for signed requests gets an HTTP-Redirect AuthnRequest signed
/// with the SP key of our metadata (RSA-SHA256 over the raw query, per the binding).
#[tokio::test]
async fn signed_authn_requests_when_the_idp_asks() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    let idp = key_pair("signing idp");
    let md = metadata_xml(&idp.cert_pem).replace(
        "<md:IDPSSODescriptor ",
        "<md:IDPSSODescriptor WantAuthnRequestsSigned=\"true\" ",
    );
    let file = app.data_dir.path().join("md.xml");
    std::fs::write(&file, md).unwrap();
    let out: Value = serde_json::from_str(
        app.cli_ok(&[
            "connection",
            "add-saml",
            "acme",
            "--metadata-file",
            file.to_str().unwrap(),
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let id = out["id"].as_str().unwrap();
    let res = app.get(&format!("/sso/saml/{id}/login")).await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let query = location.split_once('?').unwrap().1;
    let raw: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    let get = |k: &str| raw.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let sig_alg = get("SigAlg").expect("SigAlg");
    assert_eq!(
        url::form_urlencoded::parse(format!("a={sig_alg}").as_bytes())
            .next()
            .unwrap()
            .1,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    );
    let mut signed = format!("SAMLRequest={}", get("SAMLRequest").unwrap());
    if let Some(r) = get("RelayState") {
        signed.push_str(&format!("&RelayState={r}"));
    }
    signed.push_str(&format!("&SigAlg={sig_alg}"));
    let signature: String = url::form_urlencoded::parse(
        format!("s={}", get("Signature").expect("Signature")).as_bytes(),
    )
    .next()
    .unwrap()
    .1
    .into_owned();
    let signature = base64_decode(&signature);
    let keys: Value = serde_json::from_str(app.cli_ok(&["keys", "list", "--json"]).trim()).unwrap();
    let cert_pem = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["purpose"] == "saml_sp" && k["retired_at"].is_null())
        .unwrap()["certificate_pem"]
        .as_str()
        .unwrap()
        .to_string();
    let cert = X509::from_pem(cert_pem.as_bytes()).unwrap();
    let public_key = cert.public_key().unwrap();
    let mut verifier = openssl::sign::Verifier::new(MessageDigest::sha256(), &public_key).unwrap();
    verifier.update(signed.as_bytes()).unwrap();
    assert!(
        verifier.verify(&signature).unwrap(),
        "the redirect signature verifies with the SP certificate"
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    openssl::base64::decode_block(s).unwrap()
}

/// A handoff cannot be carried to another browser: without this browser's handoff cookie,
/// `/sso/complete` signs no one in (no login CSRF through a link).
#[tokio::test]
async fn the_handoff_is_bound_to_the_browser() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    let r = s.response(json!({}));
    let res = s.post_acs(r["saml_response"].as_str().unwrap(), None).await;
    assert_eq!(res.status(), 303);
    let other_browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = other_browser
        .get(s.app.url("/sso/complete"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(set_cookie(&res, "gatehouse_session").is_none());
}

/// Finding 1, linking half: an IdP identity whose e-mail matches an org admin's account is
/// never linked to it by e-mail (SCIM or the IdP can put any address of the org's domains in
/// the claim); an admin links it explicitly, and then the admin signs in with SSO.
#[tokio::test]
async fn e_mail_linking_never_opens_an_org_admin_account() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    s.app
        .cli_ok(&["user", "add", "acme", "boss@acme.test", "--org-admin"]);
    let r =
        s.response(json!({"name_id": "00u-alice", "attributes": {"email": ["boss@acme.test"]}}));
    let res = s.post_acs(r["saml_response"].as_str().unwrap(), None).await;
    assert_eq!(res.status(), 400, "not linked to the admin's account");
    assert!(
        s.last_failure().contains("org admin"),
        "{}",
        s.last_failure()
    );
    assert_eq!(
        s.app
            .get_html("/sso/admin/orgs/acme")
            .await
            .status()
            .as_u16(),
        303,
        "nobody signed in"
    );
    // A link made by e-mail before this version (it could have been planted by renaming
    // the admin through SCIM) does not open the admin's account either.
    let boss_id: String = {
        let users: Value =
            serde_json::from_str(s.app.cli_ok(&["user", "list", "acme", "--json"]).trim()).unwrap();
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user_name"] == "boss@acme.test")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    s.app.sql(&format!(
        "INSERT INTO user_identities (connection_id, subject, user_id, created_at, last_login_at) \
         VALUES ('{}', '00u-planted', '{boss_id}', 0, 0)",
        s.connection
    ));
    let r =
        s.response(json!({"name_id": "00u-planted", "attributes": {"email": ["boss@acme.test"]}}));
    let res = s.post_acs(r["saml_response"].as_str().unwrap(), None).await;
    assert_eq!(
        res.status(),
        400,
        "an old e-mail link does not open the admin"
    );
    assert!(
        s.last_failure().contains("org admin"),
        "{}",
        s.last_failure()
    );
    // The explicit link: the admin's own IdP subject.
    s.app.cli_ok(&[
        "user",
        "link",
        "acme",
        "boss@acme.test",
        "--connection",
        &s.connection,
        "--subject",
        "00u-boss",
    ]);
    let r = s.response(json!({"name_id": "00u-boss", "attributes": {"email": ["boss@acme.test"]}}));
    let res = s.sign_in(r["saml_response"].as_str().unwrap(), None).await;
    assert_eq!(res.status(), 303);
    let me: Value = s.app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "boss@acme.test");
    // The explicit link replaced the old one: the planted subject opens nothing now.
    let r =
        s.response(json!({"name_id": "00u-planted", "attributes": {"email": ["boss@acme.test"]}}));
    assert_eq!(
        s.post_acs(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        400
    );
    // A subject already linked to another account is refused; re-linking the admin's own
    // subject (an upgrade's old link made explicit) is fine.
    s.app.cli_ok(&["user", "add", "acme", "carl@acme.test"]);
    let link = |user: &str, subject: &str| {
        s.app.cli(&[
            "user",
            "link",
            "acme",
            user,
            "--connection",
            &s.connection,
            "--subject",
            subject,
        ])
    };
    assert!(!link("carl@acme.test", "00u-boss").status.success());
    assert!(link("boss@acme.test", "00u-boss").status.success());
}

/// Finding 13: a response declared in another encoding (UTF-7's `+ADw-` for `<` hides a
/// DOCTYPE from the text checks) or carrying NUL bytes (UTF-16 without a BOM) is refused for
/// its encoding, before any XML parser sees it.
#[tokio::test]
async fn responses_in_other_encodings_are_refused() {
    use base64::Engine;
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    let b64 = |x: &[u8]| base64::engine::general_purpose::STANDARD.encode(x);
    let utf7 = b"<?xml version=\"1.0\" encoding=\"UTF-7\"?>+ADw-!DOCTYPE r +AFs-+ADw-!ENTITY x SYSTEM +ACI-file:///etc/passwd+ACI-+AD4-+AF0-+AD4-<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\">+ACY-x;</samlp:Response>";
    let res = s.post_acs(&b64(utf7), None).await;
    assert_eq!(res.status(), 400);
    let cause = s.last_failure();
    assert!(
        cause.contains("encoding") && cause.contains("UTF-7"),
        "{cause}"
    );
    // The declaration with single quotes and another spelling.
    let latin = b"<?xml version='1.0' encoding='ISO-8859-1'?><samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>";
    s.post_acs(&b64(latin), None).await;
    assert!(
        s.last_failure().contains("ISO-8859-1"),
        "{}",
        s.last_failure()
    );
    // UTF-16LE without a byte-order mark: ASCII and NULs.
    let utf16: Vec<u8> = "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    s.post_acs(&b64(&utf16), None).await;
    assert!(s.last_failure().contains("NUL"), "{}", s.last_failure());
    // A genuine UTF-8 declaration still signs in.
    let r = s.response(json!({}));
    let xml = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(r["saml_response"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        !xml.starts_with("<?xml")
            || xml[..60].to_ascii_lowercase().contains("utf-8")
            || !xml[..60].contains("encoding"),
        "{}",
        &xml[..60]
    );
    assert_eq!(
        s.sign_in(r["saml_response"].as_str().unwrap(), None)
            .await
            .status(),
        303
    );
}

/// Finding 18: `?test=1` needs a signed-in admin of the connection's org, and the test's
/// result counts only while that admin's session lives.
#[tokio::test]
async fn test_sign_ins_need_a_signed_in_admin_of_the_org() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    let res = s
        .app
        .get_html(&format!("/sso/saml/{}/login?test=1", s.connection))
        .await;
    assert_eq!(res.status(), 403, "an anonymous test is refused");
    // Another org's admin cannot test this connection either.
    s.app
        .cli_ok(&["org", "create", "other", "--domain", "other.test"]);
    s.app.add_org_admin("other", "root@other.test");
    let outsider = signed_in_browser(&s.app, "root@other.test").await;
    assert_eq!(s.test_status(&outsider).await, 403);
    // This org's admin: the test runs and records a success.
    s.app.add_org_admin("acme", "root@acme.test");
    let admin = signed_in_browser(&s.app, "root@acme.test").await;
    let res = admin
        .get(s.app.url(&format!(
            "/sso/saml/{}/login?test=1&return_to=/sso/admin/orgs/acme",
            s.connection
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let request = request_id(res.headers()["location"].to_str().unwrap());
    let r = s.response(json!({"in_response_to": request}));
    let res = browser()
        .post(s.app.url(&format!("/sso/saml/{}/acs", s.connection)))
        .form(&[("SAMLResponse", r["saml_response"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let events = s
        .app
        .cli_ok(&["audit", "list", "acme", "--limit", "3", "--json"]);
    assert!(events.contains(r#""action":"connection.test""#), "{events}");
    assert!(!events.contains(r#""action":"login.saml""#), "{events}");
    // Started by the admin, but the admin signed out before the IdP answered: not counted.
    let res = admin
        .get(
            s.app
                .url(&format!("/sso/saml/{}/login?test=1", s.connection)),
        )
        .send()
        .await
        .unwrap();
    let request = request_id(res.headers()["location"].to_str().unwrap());
    s.app
        .cli_ok(&["user", "revoke-sessions", "acme", "root@acme.test"]);
    let r = s.response(json!({"in_response_to": request, "name_id": "00u-late"}));
    let res = browser()
        .post(s.app.url(&format!("/sso/saml/{}/acs", s.connection)))
        .form(&[("SAMLResponse", r["saml_response"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    // Back to the connection's page, where the failure and its cause are shown.
    assert_eq!(res.status(), 303);
    let events: Value = serde_json::from_str(
        s.app
            .cli_ok(&["audit", "list", "acme", "--limit", "1", "--json"])
            .trim(),
    )
    .unwrap();
    assert_eq!(events[0]["action"], "connection.test");
    assert_eq!(events[0]["outcome"], "failure");
    assert!(
        events[0]["payload"]
            .as_str()
            .unwrap()
            .contains("signed-in admin"),
        "{events}"
    );
}

/// Finding 10: IdP metadata URLs and OIDC issuers over plain http:// are refused (unless
/// `GATEHOUSE_OUTBOUND_ALLOW_PRIVATE=true`, which tests use for their local IdPs).
#[tokio::test]
async fn plain_http_metadata_and_issuers_are_refused() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    let out = s.app.cli(&[
        "connection",
        "add-saml",
        "acme",
        "--metadata-url",
        "http://idp.example.invalid/metadata.xml",
    ]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("https"), "{}", out.stderr);
    let out = s.app.cli_env(
        &[("GH_UNUSED_SECRET", "s3cret-for-the-test")],
        &[
            "connection",
            "add-oidc",
            "acme",
            "--issuer",
            "http://idp.example.invalid",
            "--client-id",
            "x",
            "--client-secret-env",
            "GH_UNUSED_SECRET",
        ],
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("https"), "{}", out.stderr);
}

/// Finding 5: sessions record the connection that created them; disabling the connection, or
/// replacing its signing certificate (the leaked-certificate case), ends them at once, and the
/// admin is told how many.
#[tokio::test]
async fn disabling_a_connection_or_removing_its_certificate_ends_its_sessions() {
    let s = setup(Backend::Sqlite, &[]).await.unwrap();
    s.app.add_org_admin("acme", "root@acme.test");
    let admin = signed_in_browser(&s.app, "root@acme.test").await;
    let page = admin
        .get(s.app.url("/sso/admin/orgs/acme"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_field(&page, "csrf");
    let sign_in_ann = || async {
        let r = s.response(json!({}));
        assert_eq!(
            s.sign_in(r["saml_response"].as_str().unwrap(), None)
                .await
                .status(),
            303
        );
        assert_eq!(s.app.me_json().await.status(), 200);
    };
    let change = |action: &'static str| {
        admin
            .post(s.app.url(&format!(
                "/sso/admin/orgs/acme/connections/{}",
                s.connection
            )))
            .form(&[
                ("csrf", csrf.as_str()),
                ("confirm_password", PASSWORD),
                ("action", action),
            ])
            .send()
    };
    sign_in_ann().await;
    let res = change("disable").await.unwrap();
    assert_eq!(res.status(), 303);
    let page = admin
        .get(s.app.url(res.headers()["location"].to_str().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let notice = unescape(page.split("id=\"page-notice\">").nth(1).unwrap_or(""));
    assert!(notice.contains("1 session"), "{page}");
    assert_ne!(s.app.me_json().await.status(), 200, "Ann's session ended");
    assert_eq!(
        admin
            .get(s.app.url("/sso/admin/orgs/acme"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the admin's password session is not this connection's"
    );

    // Enabled again: a new sign-in, then the certificate is replaced.
    assert_eq!(change("enable").await.unwrap().status(), 303);
    sign_in_ann().await;
    let new_idp = key_pair("replacement idp");
    let res = admin
        .post(s.app.url(&format!(
            "/sso/admin/orgs/acme/connections/{}/idp",
            s.connection
        )))
        .form(&[
            ("csrf", csrf.as_str()),
            ("confirm_password", PASSWORD),
            ("kind", "saml"),
            ("entity_id", IDP_ENTITY),
            ("sso_url", IDP_SSO),
            ("certificate", new_idp.cert_pem.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let page = admin
        .get(s.app.url(res.headers()["location"].to_str().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("session(s) this connection signed in were ended"),
        "{page}"
    );
    assert_ne!(
        s.app.me_json().await.status(),
        200,
        "ended with the old certificate"
    );
}
