//! gatehouse as an OpenID Provider (issue 19): the apps (OIDC clients) an operator registers.

use std::process::Command;

use serde_json::Value;

use crate::helpers::*;

/// `app add crm` with one redirect URI and `extra` arguments.
fn add_crm(app: &TestApp, extra: &[&str]) -> CliOutput {
    let mut args = vec![
        "app",
        "add",
        "crm",
        "--redirect-uri",
        "https://crm.example.com/cb",
    ];
    args.extend_from_slice(extra);
    app.cli(&args)
}

fn json_of(out: CliOutput) -> Value {
    serde_json::from_str(out.ok().stdout.trim()).unwrap()
}

/// Apps are registered with exact, safe redirect URIs; a confidential app's secret is shown
/// once and kept as a hash; rotation keeps the old secret for the overlap only; an app can be
/// limited to some orgs, changed, disabled and removed; every change is audited without a
/// secret.
#[tokio::test]
async fn operators_register_apps_with_exact_redirect_uris_and_hashed_secrets() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    for (uri, why) in [
        ("http://app.example.com/cb", "plain http only to localhost"),
        ("https://app.example.com/cb#frag", "no #fragment"),
        ("https://u:p@app.example.com/cb", "no user name or password"),
        ("javascript:alert(1)", "https only"),
        ("/cb", "not an absolute URL"),
    ] {
        let out = app.cli(&["app", "add", "crm", "--redirect-uri", uri]);
        assert!(!out.status.success(), "{uri}");
        assert!(out.stderr.contains(why), "{uri}: {}", out.stderr);
    }
    let out = add_crm(&app, &["--orgs", "nosuch"]);
    assert!(!out.status.success());
    let out = add_crm(&app, &["--id-token-alg", "HS256"]);
    assert!(out.stderr.contains("RS256 or ES256"), "{}", out.stderr);

    let created = json_of(app.cli(&[
        "app",
        "add",
        "crm",
        "--name",
        "Acme CRM",
        "--redirect-uri",
        "https://crm.example.com/cb",
        "--redirect-uri",
        "http://localhost:3000/cb",
        "--post-logout-redirect-uri",
        "https://crm.example.com/bye",
        "--backchannel-logout-uri",
        "https://crm.example.com/backchannel",
        "--orgs",
        "acme",
        "--json",
    ]));
    let client_id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 43, "256 bits");
    let again = add_crm(&app, &[]);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    // A public app has no secret.
    let spa = json_of(app.cli(&[
        "app",
        "add",
        "spa",
        "--public",
        "--redirect-uri",
        "https://spa.example.com/cb",
        "--json",
    ]));
    assert!(spa["client_secret"].is_null());
    assert!(app
        .cli(&["app", "rotate-secret", "spa"])
        .stderr
        .contains("public app"));

    let shown = json_of(app.cli(&["app", "show", "crm", "--json"]));
    assert_eq!(shown["client_id"], client_id.as_str());
    assert_eq!(shown["type"], "confidential");
    assert_eq!(shown["orgs"], serde_json::json!(["acme"]));
    assert_eq!(shown["id_token_alg"], "RS256");
    assert_eq!(
        shown["redirect_uris"],
        serde_json::json!(["https://crm.example.com/cb", "http://localhost:3000/cb"])
    );
    let listed = app.cli_ok(&["app", "list"]);
    assert!(
        listed.contains("crm\t") && listed.contains("spa\t"),
        "{listed}"
    );
    assert!(!listed.contains(&secret) && !shown.to_string().contains(&secret));

    // The secret is kept as a hash only, and it (and only it) matches.
    let db = app.db();
    let mut conn = db.conn().unwrap();
    let stored = |conn: &mut gatehouse::db::DbConn| {
        gatehouse::provider::apps::by_client_id(conn, &client_id)
            .unwrap()
            .unwrap()
    };
    let now = gatehouse::clock::now();
    let current = stored(&mut conn);
    assert!(current.secret_matches(&secret, now));
    assert!(!current.secret_matches("wrong", now));
    let dump = Command::new("grep")
        .args(["-a", "-c", "-F", &secret])
        .args(["gatehouse.db", "gatehouse.db-wal"].map(|f| app.data_dir.path().join(f)))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&dump.stdout)
            .lines()
            .all(|l| l.ends_with(":0")),
        "the secret is not stored"
    );

    // Rotation: a new secret; the old one works during the overlap only.
    let rotated = json_of(app.cli(&[
        "app",
        "rotate-secret",
        "crm",
        "--overlap-hours",
        "2",
        "--json",
    ]));
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let current = stored(&mut conn);
    assert!(current.secret_matches(&new_secret, now));
    assert!(current.secret_matches(&secret, now + 3600));
    assert!(!current.secret_matches(&secret, now + 3 * 3600));
    json_of(app.cli(&[
        "app",
        "rotate-secret",
        "crm",
        "--overlap-hours",
        "0",
        "--json",
    ]));
    let current = stored(&mut conn);
    assert!(
        !current.secret_matches(&new_secret, now),
        "no overlap: the old one ends now"
    );

    // Changes, then removal.
    let after = json_of(app.cli(&[
        "app",
        "update",
        "crm",
        "--redirect-uri",
        "https://crm.example.com/new",
        "--backchannel-logout-uri",
        "none",
        "--orgs",
        "all",
        "--disable",
        "--json",
    ]));
    assert_eq!(
        after["redirect_uris"],
        serde_json::json!(["https://crm.example.com/new"])
    );
    assert!(after["backchannel_logout_uri"].is_null());
    assert_eq!(after["orgs"], "all");
    assert_eq!(after["enabled"], false);
    app.cli_ok(&["app", "remove", "crm"]);
    assert!(!app.cli(&["app", "show", "crm"]).status.success());
    assert!(
        gatehouse::provider::apps::by_client_id(&mut conn, &client_id)
            .unwrap()
            .is_none()
    );

    let audit = app.cli_ok(&["audit", "list", "instance", "--json", "--limit", "100"]);
    for action in ["app.add", "app.update", "app.rotate_secret", "app.remove"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
    assert!(!audit.contains(&secret) && !audit.contains(&new_secret));
}

/// The keys that will sign ID tokens: RS256 (what OIDC requires) and ES256, each with its
/// `kid`, readable by an independent JOSE library (PyPI PyJWT); `keys rotate` adds new ones
/// and keeps publishing the old ones for the overlap. The proxy's identity-JWT keys stay
/// apart.
#[tokio::test]
async fn the_providers_signing_keys_are_published_and_rotated_with_overlap() {
    let app = spawn_app().await;
    let jwks = |path: &'static str| {
        let app = &app;
        async move {
            let res = app.get(path).await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()["keys"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let before = jwks("/sso/oauth/jwks").await;
    assert_eq!(before.len(), 2, "{before:?}");
    let rsa = before.iter().find(|k| k["kty"] == "RSA").unwrap();
    assert_eq!(rsa["alg"], "RS256");
    assert!(rsa["n"].as_str().unwrap().len() >= 340, "2048-bit modulus");
    assert_eq!(rsa["e"], "AQAB");
    let ec = before.iter().find(|k| k["kty"] == "EC").unwrap();
    assert_eq!(
        (ec["alg"].as_str(), ec["crv"].as_str()),
        (Some("ES256"), Some("P-256"))
    );
    assert_ne!(rsa["kid"], ec["kid"]);
    assert!(
        before
            .iter()
            .all(|k| k.get("d").is_none() && k.get("p").is_none()),
        "public only"
    );
    let parsed = Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/.venv/bin/python"),
    )
    .args([
        "-c",
        "import json,sys,jwt; s=jwt.PyJWKSet.from_dict(json.load(sys.stdin)); \
         print(' '.join(sorted(k.algorithm_name for k in s.keys)))",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .spawn()
    .and_then(|mut child| {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(serde_json::json!({ "keys": before }).to_string().as_bytes())?;
        child.wait_with_output()
    })
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout).trim(),
        "ES256 RS256"
    );
    // The proxy's identity JWT keys are not the provider's.
    let identity = jwks("/sso/.well-known/jwks.json").await;
    assert!(identity
        .iter()
        .all(|k| !before.iter().any(|b| b["kid"] == k["kid"])));

    app.cli_ok(&["keys", "rotate"]);
    let after = jwks("/sso/oauth/jwks").await;
    assert_eq!(
        after.len(),
        4,
        "new keys, and the old ones during the overlap"
    );
    for old in &before {
        assert!(after.iter().any(|k| k["kid"] == old["kid"]), "{old}");
    }
}
