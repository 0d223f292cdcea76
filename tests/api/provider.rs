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

/// The app with this client id, as stored.
fn stored_app(conn: &mut gatehouse::db::DbConn, client_id: &str) -> gatehouse::provider::apps::App {
    gatehouse::provider::apps::by_client_id(conn, client_id)
        .unwrap()
        .unwrap()
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
    let stored = |conn: &mut gatehouse::db::DbConn| stored_app(conn, &client_id);
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
    let before = jwks("/sso/oauth2/jwks").await;
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
    let after = jwks("/sso/oauth2/jwks").await;
    assert_eq!(
        after.len(),
        4,
        "new keys, and the old ones during the overlap"
    );
    for old in &before {
        assert!(after.iter().any(|k| k["kid"] == old["kid"]), "{old}");
    }
}

/// The apps in the admin UI, for instance admins only: registering one shows its secret once
/// (a reload or a second submit makes no second app or secret), a refused form keeps what was
/// entered, URIs are changed with the same rules as the CLI, a rotation shows the new secret
/// once and keeps the old one for the overlap, and disabling and removing need the password.
#[tokio::test]
async fn instance_admins_manage_apps_in_the_ui() {
    use crate::admin::{get, instance_admin, post};
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    app.add_org_admin("acme", "root@acme.test");
    let org_admin = signed_in_browser(&app, "root@acme.test").await;
    assert_eq!(get(&org_admin, &app, "/sso/admin/apps").await.0, 404);
    let ops = instance_admin(&app, 0).await;
    let (status, page) = get(&ops, &app, "/sso/admin/apps").await;
    assert_eq!(status, 200);
    let (csrf, form_id) = (form_field(&page, "csrf"), form_field(&page, "form_id"));
    let register = |redirect: &'static str, password: &'static str| {
        let (ops, app, csrf, form_id) = (&ops, &app, csrf.clone(), form_id.clone());
        async move {
            post(
                ops,
                app,
                "/sso/admin/apps",
                &[
                    ("csrf", csrf.as_str()),
                    ("form_id", form_id.as_str()),
                    ("slug", "crm"),
                    ("name", "Acme CRM"),
                    ("redirect_uris", redirect),
                    ("orgs", "acme"),
                    ("id_token_alg", "RS256"),
                    ("confirm_password", password),
                ],
            )
            .await
        }
    };
    assert_eq!(
        register("https://crm.example.com/cb", "wrong")
            .await
            .status(),
        403
    );
    // Refused: the form again with what was entered.
    let refused = register("http://crm.example.com/cb", PASSWORD).await;
    assert_eq!(refused.status(), 422);
    let refused = refused.text().await.unwrap();
    assert!(
        refused.contains("plain http only to localhost"),
        "{refused}"
    );
    assert!(
        refused.contains("http://crm.example.com/cb</textarea>"),
        "{refused}"
    );
    assert!(refused.contains("value=\"Acme CRM\""), "{refused}");
    // Registered: the secret on a page shown once; a second submit goes there too.
    let first = register(
        "https://crm.example.com/cb\nhttp://localhost:3000/cb",
        PASSWORD,
    )
    .await;
    let second = register(
        "https://crm.example.com/cb\nhttp://localhost:3000/cb",
        PASSWORD,
    )
    .await;
    assert_eq!(first.status(), 303);
    assert_eq!(first.headers()["location"], second.headers()["location"]);
    let shown_at = first.headers()["location"].to_str().unwrap().to_string();
    let (_, shown) = get(&ops, &app, &shown_at).await;
    let secret = shown_secret(&shown, 2);
    let listed: Value =
        serde_json::from_str(app.cli_ok(&["app", "list", "--json"]).trim()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "one app");
    let client_id = listed[0]["client_id"].as_str().unwrap().to_string();
    assert!(shown.contains(&client_id));
    let (_, again) = get(&ops, &app, &shown_at).await;
    assert!(again.contains("Already shown") && !again.contains(&secret));
    let db = app.db();
    let mut conn = db.conn().unwrap();
    let stored = |conn: &mut gatehouse::db::DbConn| stored_app(conn, &client_id);
    let now = gatehouse::clock::now();
    assert!(stored(&mut conn).secret_matches(&secret, now));

    // The app's page: new URIs (checked), a new secret (once), disable, remove.
    let (_, page) = get(&ops, &app, "/sso/admin/apps/crm").await;
    assert!(page.contains(&client_id) && !page.contains(&secret));
    let change = |form: Vec<(&'static str, String)>| {
        let (ops, app, csrf) = (&ops, &app, csrf.clone());
        async move {
            let mut f = vec![("csrf", csrf)];
            f.extend(form);
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(ops, app, "/sso/admin/apps/crm", &f).await
        }
    };
    // New URIs or orgs decide where codes go and whose users they are: the password again.
    for (action, uris, orgs) in [
        ("update", "https://attacker.example/cb", "acme"),
        ("enable", "", ""),
    ] {
        let res = change(vec![
            ("action", action.into()),
            ("redirect_uris", uris.into()),
            ("orgs", orgs.into()),
        ])
        .await;
        assert_eq!(res.status(), 403, "{action}");
    }
    let res = change(vec![
        ("action", "update".into()),
        ("confirm_password", PASSWORD.into()),
        ("redirect_uris", "https://crm.example.com/cb".into()),
        ("orgs", "".into()),
    ])
    .await;
    let (_, page) = get(&ops, &app, res.headers()["location"].to_str().unwrap()).await;
    assert!(
        page.contains("or write all"),
        "an emptied orgs field is not every org: {page}"
    );
    assert_eq!(
        get(&ops, &app, "/sso/admin/apps/crm")
            .await
            .1
            .matches("attacker.example")
            .count(),
        0
    );
    let res = change(vec![
        ("action", "update".into()),
        ("confirm_password", PASSWORD.into()),
        ("redirect_uris", "https://crm.example.com/new#x".into()),
        ("orgs", "acme".into()),
    ])
    .await;
    let (_, page) = get(&ops, &app, res.headers()["location"].to_str().unwrap()).await;
    assert!(page.contains("no #fragment"), "{page}");
    let res = change(vec![
        ("action", "update".into()),
        ("confirm_password", PASSWORD.into()),
        ("redirect_uris", "https://crm.example.com/new".into()),
        ("orgs", "all".into()),
    ])
    .await;
    let (_, page) = get(&ops, &app, res.headers()["location"].to_str().unwrap()).await;
    assert!(
        page.contains("App saved") && page.contains("https://crm.example.com/new</textarea>"),
        "{page}"
    );
    let res = change(vec![
        ("action", "rotate".into()),
        ("form_id", "f1".into()),
        ("overlap_hours", "1".into()),
        ("confirm_password", PASSWORD.into()),
    ])
    .await;
    assert_eq!(res.status(), 303);
    let (_, shown) = get(&ops, &app, res.headers()["location"].to_str().unwrap()).await;
    let new_secret = shown_secret(&shown, 2);
    assert_ne!(new_secret, secret);
    let current = stored(&mut conn);
    assert!(current.secret_matches(&new_secret, now) && current.secret_matches(&secret, now));
    assert!(!current.secret_matches(&secret, now + 2 * 3600));
    assert_eq!(
        change(vec![("action", "disable".into())]).await.status(),
        403,
        "needs the password"
    );
    change(vec![
        ("action", "disable".into()),
        ("confirm_password", PASSWORD.into()),
    ])
    .await;
    assert!(!stored(&mut conn).enabled);
    let res = change(vec![
        ("action", "remove".into()),
        ("confirm_password", PASSWORD.into()),
    ])
    .await;
    assert_eq!(res.headers()["location"], "/sso/admin/apps");
    assert!(
        gatehouse::provider::apps::by_client_id(&mut conn, &client_id)
            .unwrap()
            .is_none()
    );
    // Cross-site, and for another admin's session: refused.
    let res = ops
        .post(app.url("/sso/admin/apps"))
        .header("sec-fetch-site", "cross-site")
        .form(&[
            ("csrf", csrf.as_str()),
            ("slug", "x"),
            ("redirect_uris", "https://x.example/cb"),
            ("confirm_password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let audit = app.cli_ok(&["audit", "list", "instance", "--json", "--limit", "100"]);
    for a in [
        "admin.app.add",
        "admin.app.update",
        "admin.app.rotate_secret",
        "admin.app.remove",
    ] {
        assert!(audit.contains(a), "{a}");
    }
    assert!(!audit.contains(&secret) && !audit.contains(&new_secret));
}

/// The apps pages in Chromium: see `tests/peers/browser_apps.mjs`. Screenshots are kept in
/// `target/test-artifacts/apps/` (not committed).
#[tokio::test]
async fn an_instance_admin_registers_an_app_in_a_browser() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let app = spawn_app().await;
    let uri = add_instance_admin(&app, "ops@operator.test");
    let shots = root.join("target/test-artifacts/apps");
    let _ = std::fs::remove_dir_all(&shots);
    let out = run_browser_script(
        "browser_apps.mjs",
        vec![
            app.address.clone(),
            "ops@operator.test".into(),
            PASSWORD.into(),
            totp_code(&uri, 0),
        ],
        vec![("SCREENSHOT_DIR".into(), shots.display().to_string())],
    )
    .await;
    assert!(
        out["refused"]
            .as_str()
            .unwrap()
            .contains("plain http only to localhost"),
        "{out}"
    );
    assert_eq!(out["kept"], "http://crm.example.com/callback");
    assert!(out["client_id"].as_str().unwrap().starts_with("app_"));
    assert!(out["secret_shown"].as_u64().unwrap() >= 43);
    assert_eq!(out["reload"], "Already shown");
    assert_eq!(out["rows"], 1, "back and reload made no second app");
    assert!(
        out["rotated_warning"]
            .as_str()
            .unwrap()
            .contains("previous secret keeps working"),
        "{out}"
    );
    let listed: Value =
        serde_json::from_str(app.cli_ok(&["app", "list", "--json"]).trim()).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
