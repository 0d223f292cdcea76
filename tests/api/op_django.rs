//! A real web framework as the app: a Django project (`tests/peers/django_app/`) using PyPI
//! mozilla-django-oidc as a confidential client (client_secret_basic, PKCE S256, nonce, RS256
//! ID tokens checked against the JWKS) signs a user in through gatehouse, with pysaml2 as the
//! org's IdP and Debian's Chromium as the browser (`tests/peers/browser_django.mjs`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::*;

/// The child processes of a test, killed when it ends (passing or not).
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The next JSON line a child prints (it has printed nothing else on stdout).
fn json_line(out: &mut BufReader<ChildStdout>, what: &str) -> Value {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("{what}: {line:?}"))
}

/// Django signs Ann in: the app's Sign in link, gatehouse's e-mail page, the IdP, back to
/// the app's callback; the app shows her e-mail, org and role (mapped from her IdP group)
/// from the ID token and from userinfo; gatehouse audited the code exchange.
#[tokio::test]
async fn a_django_app_signs_users_in_with_mozilla_django_oidc() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let app = spawn_app().await;
    let mut children = Children(Vec::new());
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    app.cli_ok(&["role", "add", "acme", "developer", "--rank", "5"]);
    app.cli_ok(&["role", "map", "acme", "Engineering", "developer"]);

    // The SAML connection to a browser-facing pysaml2 IdP.
    let (server, _connection) = crate::saml::browser_idp(
        &app,
        "ann",
        json!({"email": ["ann@acme.test"], "firstName": ["Ann"], "lastName": ["Lee"], "groups": ["Engineering"]}),
    );
    children.0.push(server);

    // Django binds its port first; the app is registered with that redirect URI, and Django
    // gets its credentials on stdin.
    let django_dir = app.data_dir.path().join("django");
    std::fs::create_dir(&django_dir).unwrap();
    let mut django = Command::new(root.join("tests/.venv/bin/python"))
        .arg(root.join("tests/peers/django_app/serve.py"))
        .env("OIDC_ISSUER", app.url("/sso"))
        .env("DJANGO_DATA_DIR", &django_dir)
        .env_remove("OIDC_RP_CLIENT_ID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("tests/.venv (scripts/test installs Django and mozilla-django-oidc)");
    let mut stdin = django.stdin.take().unwrap();
    let mut stdout = BufReader::new(django.stdout.take().unwrap());
    children.0.push(django);
    let port = json_line(&mut stdout, "Django's port")["port"]
        .as_u64()
        .unwrap();
    let django_url = format!("http://127.0.0.1:{port}");
    let redirect_uri = format!("{django_url}/oidc/callback/");
    let created: Value = serde_json::from_str(
        app.cli_ok(&[
            "app",
            "add",
            "notes",
            "--name",
            "Acme Notes",
            "--redirect-uri",
            &redirect_uri,
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let client_id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    writeln!(
        stdin,
        "{}",
        json!({"client_id": client_id, "client_secret": secret})
    )
    .unwrap();
    drop(stdin);
    // Django does not call gatehouse before it is ready, so waiting here blocks no one.
    assert_eq!(json_line(&mut stdout, "Django ready")["ready"], true);

    let shots = root.join("target/test-artifacts/django");
    let _ = std::fs::remove_dir_all(&shots);
    let result = run_browser_script(
        "browser_django.mjs",
        vec![
            django_url.clone(),
            app.address.clone(),
            "ann@acme.test".into(),
        ],
        vec![("SCREENSHOT_DIR".into(), shots.display().to_string())],
    )
    .await;

    assert_eq!(result["anonymous"], "Sign in");
    assert_eq!(result["connection"], "Continue with okta SAML", "{result}");
    assert_eq!(result["url"], format!("{django_url}/"), "{result}");
    assert_eq!(result["name"], "Ann Lee");
    for (id, want) in [
        ("email", "ann@acme.test"),
        ("org", "acme"),
        ("role", "developer"),
        ("userinfo-email", "ann@acme.test"),
        ("userinfo-org", "acme"),
        ("userinfo-role", "developer"),
        ("django-email", "ann@acme.test"),
    ] {
        assert_eq!(result[id], want, "#{id} in {result}");
    }
    let users: Value =
        serde_json::from_str(app.cli_ok(&["user", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(result["sub"], users[0]["id"], "sub is the user's id");

    // Audited: the authorization and the code exchange, by client_secret_basic.
    let all: Value = serde_json::from_str(
        app.cli_ok(&["audit", "list", "acme", "--limit", "200", "--json"])
            .trim(),
    )
    .unwrap();
    let events = |action: &str| -> Vec<Value> {
        all.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    };
    let tokens = events("oauth.token");
    assert_eq!(tokens.len(), 1, "{all}");
    assert_eq!(tokens[0]["outcome"], "success", "{}", tokens[0]);
    let payload = tokens[0]["payload"].as_str().unwrap();
    assert!(payload.contains("client_secret_basic"), "{payload}");
    assert!(payload.contains("\"notes\""), "{payload}");
    assert_eq!(events("oauth.authorize").len(), 1, "{all}");
    assert!(!all.to_string().contains(&secret));
    drop(children);
}
