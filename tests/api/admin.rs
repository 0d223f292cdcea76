//! The admin UI over real HTTP: who sees what (instance admins, org admins of their own org,
//! 404 for everyone else, an app role named "admin" grants nothing), CSRF and Fetch Metadata
//! on every form, lock-out protection for enforcement, SCIM tokens issued in the UI working
//! against the SCIM API, escaping of audit payloads, exports; then a Chromium journey.

use serde_json::{json, Value};

use crate::helpers::*;

/// An instance admin, signed in with password and TOTP (code `step` steps from now).
pub(crate) async fn instance_admin(app: &TestApp, step: i64) -> reqwest::Client {
    let uri = add_instance_admin(app, "ops@operator.test");
    let client = browser();
    let csrf = csrf_of(app, &client, "/sso/login").await;
    let page = client
        .post(app.url("/sso/login"))
        .form(&[
            ("email", "ops@operator.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let res = client
        .post(app.url("/sso/login/totp"))
        .form(&[
            ("pending", form_field(&page, "pending")),
            ("csrf", form_field(&page, "csrf")),
            ("code", totp_code(&uri, step)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    client
}

pub(crate) async fn get(client: &reqwest::Client, app: &TestApp, path: &str) -> (u16, String) {
    let res = client.get(app.url(path)).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

/// The session CSRF token of an admin page.
pub(crate) async fn admin_csrf(client: &reqwest::Client, app: &TestApp, org: &str) -> String {
    let (status, page) = get(client, app, &format!("/sso/admin/orgs/{org}")).await;
    assert_eq!(status, 200, "{page}");
    form_field(&page, "csrf")
}

pub(crate) async fn post(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client.post(app.url(path)).form(form).send().await.unwrap()
}

pub(crate) fn add_user(app: &TestApp, org: &str, email: &str, extra: &[&str]) {
    let mut args = vec!["user", "add", org, email, "--password-env", "GH_TEST_PW"];
    args.extend_from_slice(extra);
    app.cli_env(&[("GH_TEST_PW", PASSWORD)], &args).ok();
}

const PAGES: &[&str] = &[
    "",
    "/scim",
    "/roles",
    "/audit",
    "/audit/export.csv",
    "/audit/export.jsonl",
    "/connections/new",
    "/users",
    "/users?q=root&page=2",
    "/groups",
];

#[tokio::test]
async fn only_admins_of_the_org_see_it() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "alpha", "--domain", "alpha.test"]);
    app.cli_ok(&["org", "create", "beta", "--domain", "beta.test"]);
    app.cli_ok(&["role", "add", "alpha", "admin", "--rank", "100"]);
    add_user(&app, "alpha", "root@alpha.test", &["--org-admin"]);
    add_user(&app, "alpha", "pat@alpha.test", &["--role", "admin"]);
    add_user(&app, "beta", "root@beta.test", &["--org-admin"]);

    // Not signed in: to the sign-in page, and back here afterwards.
    let res = browser()
        .get(app.url("/sso/admin/orgs/alpha/scim"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        "/sso/login?return_to=%2Fsso%2Fadmin%2Forgs%2Falpha%2Fscim"
    );

    let alpha_admin = signed_in_browser(&app, "root@alpha.test").await;
    let app_role_admin = signed_in_browser(&app, "pat@alpha.test").await;
    for page in PAGES {
        let a = format!("/sso/admin/orgs/alpha{page}");
        let b = format!("/sso/admin/orgs/beta{page}");
        let (st, body) = get(&alpha_admin, &app, &a).await;
        assert_eq!(st, 200, "{a}: {body}");
        assert_eq!(get(&alpha_admin, &app, &b).await.0, 404, "{b}: another org");
        assert_eq!(
            get(&app_role_admin, &app, &a).await.0,
            404,
            "{a}: an app role grants nothing"
        );
    }
    assert_eq!(get(&alpha_admin, &app, "/sso/admin/orgs/nope").await.0, 404);
    // An org admin's home is their org; a plain user has no admin home.
    let res = alpha_admin.get(app.url("/sso/admin")).send().await.unwrap();
    assert_eq!(res.headers()["location"], "/sso/admin/orgs/alpha");
    assert_eq!(get(&app_role_admin, &app, "/sso/admin").await.0, 404);
    // Nor can an org admin of beta change alpha, even with a valid token of their own.
    let beta_admin = signed_in_browser(&app, "root@beta.test").await;
    let csrf = admin_csrf(&beta_admin, &app, "beta").await;
    let res = post(
        &beta_admin,
        &app,
        "/sso/admin/orgs/alpha/roles",
        &[("csrf", &csrf), ("name", "x"), ("rank", "1")],
    )
    .await;
    assert_eq!(res.status(), 404);

    // Instance admins see every org.
    let ops = instance_admin(&app, 0).await;
    let (status, page) = get(&ops, &app, "/sso/admin").await;
    assert_eq!(status, 200);
    assert!(page.contains("/sso/admin/orgs/alpha") && page.contains("/sso/admin/orgs/beta"));
    for page in PAGES {
        assert_eq!(
            get(&ops, &app, &format!("/sso/admin/orgs/beta{page}"))
                .await
                .0,
            200,
            "{page}"
        );
    }
}

#[tokio::test]
async fn every_form_needs_the_session_token_and_our_origin() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "alpha", "--domain", "alpha.test"]);
    add_user(&app, "alpha", "root@alpha.test", &["--org-admin"]);
    let admin = signed_in_browser(&app, "root@alpha.test").await;
    let csrf = admin_csrf(&admin, &app, "alpha").await;
    let forms: &[(&str, &[(&str, &str)])] = &[
        (
            "/sso/admin/orgs/alpha/domains",
            &[("domain", "new.alpha.test")],
        ),
        (
            "/sso/admin/orgs/alpha/domains/alpha.test",
            &[("action", "enforce")],
        ),
        ("/sso/admin/orgs/alpha/enforcement", &[("mode", "domains")]),
        (
            "/sso/admin/orgs/alpha/breakglass",
            &[("email", "bg@alpha.test")],
        ),
        (
            "/sso/admin/orgs/alpha/roles",
            &[("name", "dev"), ("rank", "5")],
        ),
        (
            "/sso/admin/orgs/alpha/mappings",
            &[("group", "Eng"), ("role", "dev")],
        ),
        ("/sso/admin/orgs/alpha/scim/tokens", &[]),
        ("/sso/admin/orgs/alpha/connections", &[("kind", "saml")]),
    ];
    for (path, fields) in forms {
        // No token, a wrong token, a cross-site request with the right token.
        let res = post(&admin, &app, path, fields).await;
        assert!(
            matches!(res.status().as_u16(), 400 | 403),
            "{path}: {}",
            res.status()
        );
        let mut wrong = fields.to_vec();
        wrong.push(("csrf", "forged"));
        assert_eq!(
            post(&admin, &app, path, &wrong).await.status(),
            403,
            "{path}"
        );
        let mut right = fields.to_vec();
        right.push(("csrf", &csrf));
        let res = admin
            .post(app.url(path))
            .header("sec-fetch-site", "cross-site")
            .form(&right)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path}: cross-site");
    }
    // Nothing changed.
    let events = app.cli_ok(&["audit", "list", "alpha", "--json"]);
    assert!(!events.contains("admin."), "{events}");
    // With the token, from our own pages, it works (and is audited with before/after).
    let res = admin
        .post(app.url("/sso/admin/orgs/alpha/enforcement"))
        .header("sec-fetch-site", "same-origin")
        .form(&[
            ("csrf", csrf.as_str()),
            ("mode", "domains"),
            ("confirm_password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let events = app.cli_ok(&["audit", "list", "alpha", "--json"]);
    assert!(
        events.contains("admin.enforcement.set") && events.contains(r#"\"before\":\"off\""#),
        "{events}"
    );
}

#[tokio::test]
async fn requiring_sso_for_all_is_refused_until_the_org_cannot_lock_itself_out() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "alpha", "--domain", "alpha.test"]);
    add_user(&app, "alpha", "root@alpha.test", &["--org-admin"]);
    let admin = signed_in_browser(&app, "root@alpha.test").await;
    let csrf = admin_csrf(&admin, &app, "alpha").await;
    let set_all = || {
        admin
            .post(app.url("/sso/admin/orgs/alpha/enforcement"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("mode", "all"),
                ("confirm_password", PASSWORD),
            ])
            .send()
    };
    let res = set_all().await.unwrap();
    assert_eq!(res.status(), 303);
    let (_, page) = get(&admin, &app, res.headers()["location"].to_str().unwrap()).await;
    assert!(page.contains("add a break-glass account first"), "{page}");
    assert!(page.contains("complete one sign-in through an SSO connection first"));
    assert!(page.contains(r#"<strong id="enforcement">off</strong>"#));

    // A break-glass account, shown once.
    let res = post(
        &admin,
        &app,
        "/sso/admin/orgs/alpha/breakglass",
        &[
            ("csrf", &csrf),
            ("email", "bg@alpha.test"),
            ("confirm_password", PASSWORD),
        ],
    )
    .await;
    // POST/redirect/GET: the credentials are shown by the GET, once; a reload shows nothing
    // and creates nothing (before, a reload reset the account and the saved ones stopped
    // working).
    assert_eq!(res.status(), 303);
    let once = res.headers()["location"].to_str().unwrap().to_string();
    let res = admin.get(app.url(&once)).send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = res.text().await.unwrap();
    assert!(page.contains("otpauth://totp/"), "{page}");
    let (_, again) = get(&admin, &app, &once).await;
    assert!(
        !again.contains("otpauth://") && again.contains("Already shown"),
        "{again}"
    );
    // Another browser (another admin session) never sees it.
    let events = app.cli_ok(&["audit", "list", "alpha", "--json"]);
    assert_eq!(
        events.matches("admin.breakglass.set").count(),
        1,
        "{events}"
    );
    let res = set_all().await.unwrap();
    let (_, page) = get(&admin, &app, res.headers()["location"].to_str().unwrap()).await;
    assert!(!page.contains("add a break-glass account first"));
    assert!(page.contains("complete one sign-in through an SSO connection first"));

    // A connection that has completed a sign-in.
    let c = crate::saml::add_saml_connection(&app, "alpha", "https://idp.alpha.test/sso", &[]);
    app.sql(&format!(
        "UPDATE connections SET last_success_at = 1 WHERE id = '{}'",
        c["id"].as_str().unwrap()
    ));
    let res = set_all().await.unwrap();
    assert_eq!(res.headers()["location"], "/sso/admin/orgs/alpha");
    assert!(set_cookie(&res, "gatehouse_flash").is_some());
    assert!(app
        .cli_ok(&["org", "list", "--json"])
        .contains(r#""enforcement":"all""#));
    // The admin's own password session no longer qualifies: it was revoked.
    assert_eq!(get(&admin, &app, "/sso/admin/orgs/alpha").await.0, 303);
}

#[tokio::test]
async fn a_scim_token_from_the_ui_works_and_revoking_it_stops_it() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "alpha", "--domain", "alpha.test"]);
    add_user(&app, "alpha", "root@alpha.test", &["--org-admin"]);
    let admin = signed_in_browser(&app, "root@alpha.test").await;
    let csrf = admin_csrf(&admin, &app, "alpha").await;
    // A sensitive change asks for the password again.
    for confirm in [None, Some("wrong password")] {
        let mut form = vec![("csrf", csrf.as_str())];
        if let Some(c) = confirm {
            form.push(("confirm_password", c));
        }
        let res = post(&admin, &app, "/sso/admin/orgs/alpha/scim/tokens", &form).await;
        assert_eq!(res.status(), 403, "{confirm:?}");
        assert!(res
            .text()
            .await
            .unwrap()
            .contains("needs your password again"));
    }
    assert!(
        app.cli_ok(&["scim-token", "list", "alpha", "--json"])
            .trim()
            == "[]"
    );
    let res = post(
        &admin,
        &app,
        "/sso/admin/orgs/alpha/scim/tokens",
        &[("csrf", &csrf), ("confirm_password", PASSWORD)],
    )
    .await;
    assert_eq!(res.status(), 303, "POST/redirect/GET");
    let once = res.headers()["location"].to_str().unwrap().to_string();
    let (_, page) = get(&admin, &app, &once).await;
    // A reload mints nothing and shows nothing.
    let (_, again) = get(&admin, &app, &once).await;
    assert!(
        !again.contains("ghs_") && again.contains("Already shown"),
        "{again}"
    );
    let listed: Value = serde_json::from_str(
        app.cli_ok(&["scim-token", "list", "alpha", "--json"])
            .trim(),
    )
    .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "one token: {listed}");
    let token = page
        .split("ghs_")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap();
    let token = format!("ghs_{token}");
    let scim = reqwest::Client::new();
    let create = |name: &'static str| {
        scim.post(app.url("/scim/v2/Users"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "displayName": "<script>alert(1)</script>"}).to_string())
            .send()
    };
    assert_eq!(create("ann@alpha.test").await.unwrap().status(), 201);

    // The token list shows a prefix and when it was last used, never the token.
    let (_, page) = get(&admin, &app, "/sso/admin/orgs/alpha/scim").await;
    assert!(!page.contains(&token));
    assert!(page.contains(&token[..10]));
    assert!(!page.contains(">never<"), "last use shown");
    let id = page
        .split("/scim/tokens/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let res = post(
        &admin,
        &app,
        &format!("/sso/admin/orgs/alpha/scim/tokens/{id}/revoke"),
        &[("csrf", &csrf), ("confirm_password", PASSWORD)],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(create("bob@alpha.test").await.unwrap().status(), 401);

    // The SCIM request is in the audit log; its payload is shown escaped.
    let (_, page) = get(&admin, &app, "/sso/admin/orgs/alpha/audit?action=scim").await;
    let event = page
        .split("/sso/admin/orgs/alpha/audit/")
        .skip(1)
        .find(|s| !s.starts_with("export"))
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (status, page) = get(
        &admin,
        &app,
        &format!("/sso/admin/orgs/alpha/audit/{event}"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !page.contains("<script>alert"),
        "payloads are escaped: {page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert")
            || page.contains("&#60;script&#62;alert")
            || page.contains("&lt;script"),
        "{page}"
    );
    assert!(!page.contains(&token));
    // Exports: JSON lines parse, CSV has a header.
    let (status, jsonl) = get(&admin, &app, "/sso/admin/orgs/alpha/audit/export.jsonl").await;
    assert_eq!(status, 200);
    for line in jsonl.lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }
    let (_, csv) = get(
        &admin,
        &app,
        "/sso/admin/orgs/alpha/audit/export.csv?outcome=success",
    )
    .await;
    assert!(csv.starts_with("id,seq,occurred_at,action,outcome"));
}

/// Chromium, as a new admin would: see `tests/peers/browser_admin.mjs`. Screenshots of each
/// page are kept in `target/test-artifacts/admin-ui/` (not committed).
#[tokio::test]
async fn a_new_admin_sets_up_sso_in_a_browser() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    let uri = add_instance_admin(&app, "ops@operator.test");
    // The IdP (pysaml2 behind a tiny HTTP server) answers any AuthnRequest of ours.
    let idp = crate::saml::key_pair("admin journey idp");
    let config = app.data_dir.path().join("idp.json");
    std::fs::write(
        &config,
        json!({
            "idp_entity_id": "https://idp.acme.test", "idp_key_pem": idp.key_pem,
            "idp_cert_pem": idp.cert_pem, "name_id": "00u-erin",
            "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
            "attributes": {"email": ["erin@acme.test"], "groups": ["Engineering"]},
        })
        .to_string(),
    )
    .unwrap();
    let (mut server, port) = crate::saml::start_idp_server(&config);
    let metadata = app.data_dir.path().join("idp-metadata.xml");
    std::fs::write(
        &metadata,
        crate::admin_ui::idp_metadata(
            "https://idp.acme.test",
            &idp.cert_pem,
            &format!("http://127.0.0.1:{port}/sso"),
        ),
    )
    .unwrap();

    let shots = root.join("target/test-artifacts/admin-ui");
    let (address, code) = (app.address.clone(), totp_code(&uri, 0));
    let out = run_browser_script(
        "browser_admin.mjs",
        vec![
            address,
            "ops@operator.test".into(),
            PASSWORD.into(),
            code,
            "acme".into(),
            metadata.display().to_string(),
        ],
        vec![("SCREENSHOT_DIR".into(), shots.display().to_string())],
    )
    .await;
    let _ = server.kill();
    let _ = server.wait();

    // The ACS URL the admin copied is the connection's.
    let listed: Value =
        serde_json::from_str(app.cli_ok(&["connection", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(out["acs_url"], listed[0]["acs_url"]);
    // Test sign-in showed what the IdP sent and signed nobody in.
    let received = out["received"].as_str().unwrap();
    assert!(
        received.contains("email") && received.contains("erin@acme.test"),
        "{received}"
    );
    assert!(!app
        .cli_ok(&["user", "list", "acme"])
        .contains("erin@acme.test"));
    // The SCIM token works with curl.
    let curl = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "content-type: application/scim+json"])
        .arg("-H")
        .arg(format!("authorization: Bearer {}", out["scim_token"].as_str().unwrap()))
        .arg("--data")
        .arg(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"sam@acme.test"}"#)
        .arg(format!("{}/Users", out["scim_base_url"].as_str().unwrap()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "201");
    assert!(
        out["preview"]
            .as_str()
            .unwrap()
            .contains("gets role developer"),
        "{out}"
    );
    assert!(
        out["refusal"]
            .as_str()
            .unwrap()
            .contains("add a break-glass account first"),
        "{out}"
    );
    assert!(
        out["test_outcome"]
            .as_str()
            .unwrap()
            .contains("Latest test passed"),
        "{out}"
    );
    assert_eq!(out["draft_before"], true, "{out}");
    assert_eq!(out["draft_after"], false, "{out}");
    assert!(
        out["activated"].as_str().unwrap().contains("activated"),
        "{out}"
    );
    assert_eq!(out["breakglass_shown"], true);
    assert_eq!(out["enforcement"], "all");
    assert_eq!(out["failed_status"], 400);
    assert!(
        out["cause"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("xml"),
        "{out}"
    );
    assert!(out["audit_actor_links"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(
        out["unmapped"],
        "Group Engineering no longer maps to developer"
    );
    assert!(out["instance_events"].as_u64().unwrap() > 1, "{out}");
    let roles = app.cli_ok(&["role", "list", "acme", "--json"]);
    assert!(roles.contains("developer"), "the role stays: {roles}");
}

#[tokio::test]
async fn users_are_searchable_and_their_sessions_revocable() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "alpha", "--domain", "alpha.test"]);
    add_user(&app, "alpha", "root@alpha.test", &["--org-admin"]);
    add_user(&app, "alpha", "kim@alpha.test", &[]);
    let scim = app.scim("alpha");
    for i in 0..55 {
        scim.create_user(&format!("user{i:02}@alpha.test")).await;
    }
    let gid = scim.create_group("Engineering", &[]).await;
    let kim = signed_in_browser(&app, "kim@alpha.test").await;
    let admin = signed_in_browser(&app, "root@alpha.test").await;

    let (_, page) = get(&admin, &app, "/sso/admin/orgs/alpha/users").await;
    assert!(
        page.contains("57 users") && page.contains("page 1 of 2"),
        "{page}"
    );
    let (_, page) = get(&admin, &app, "/sso/admin/orgs/alpha/users?page=2").await;
    assert!(page.contains("user54@alpha.test") && !page.contains("user00@alpha.test"));
    let (_, page) = get(&admin, &app, "/sso/admin/orgs/alpha/users?q=KIM").await;
    assert!(
        page.contains("1 users") && page.contains("kim@alpha.test"),
        "{page}"
    );
    let (_, groups) = get(&admin, &app, "/sso/admin/orgs/alpha/groups").await;
    assert!(
        groups.contains("Engineering") && groups.contains("<td>0</td>"),
        "{groups} {gid}"
    );

    // Kim's page: a live password session, revoked from here.
    let id = page
        .split("/sso/admin/orgs/alpha/users/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let (status, user_page) = get(&admin, &app, &format!("/sso/admin/orgs/alpha/users/{id}")).await;
    assert_eq!(status, 200);
    assert!(user_page.contains("<td>password</td>"), "{user_page}");
    assert_eq!(
        kim.get(app.url("/sso/me"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let csrf = form_field(&user_page, "csrf");
    let res = post(
        &admin,
        &app,
        &format!("/sso/admin/orgs/alpha/users/{id}/sessions/revoke"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        kim.get(app.url("/sso/me"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // A user of another org is not found through this org.
    app.cli_ok(&["org", "create", "beta"]);
    add_user(&app, "beta", "zed@beta.test", &[]);
    let users: Value =
        serde_json::from_str(app.cli_ok(&["user", "list", "beta", "--json"]).trim()).unwrap();
    let zed = users[0]["id"].as_str().unwrap();
    assert_eq!(
        get(&admin, &app, &format!("/sso/admin/orgs/alpha/users/{zed}"))
            .await
            .0,
        404
    );
    let res = post(
        &admin,
        &app,
        &format!("/sso/admin/orgs/alpha/users/{zed}/sessions/revoke"),
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn connections_are_edited_with_before_and_after() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "alpha", "--domain", "alpha.test"]);
    add_user(&app, "alpha", "root@alpha.test", &["--org-admin"]);
    let c = crate::saml::add_saml_connection(&app, "alpha", "https://idp.alpha.test/sso", &[]);
    let id = c["id"].as_str().unwrap();
    let admin = signed_in_browser(&app, "root@alpha.test").await;
    let page_path = format!("/sso/admin/orgs/alpha/connections/{id}");
    let (status, page) = get(&admin, &app, &page_path).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"id="acs-url""#) && page.contains("Test sign-in"));
    let csrf = form_field(&page, "csrf");

    let res = post(
        &admin,
        &app,
        &page_path,
        &[
            ("csrf", &csrf),
            ("confirm_password", PASSWORD),
            ("action", "mapping"),
            ("email", "mail"),
            ("groups", "memberOf"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let listed = app.cli_ok(&["connection", "list", "alpha", "--json"]);
    assert!(
        listed.contains(r#""attribute_map":{"email":"mail","groups":"memberOf"}"#),
        "{listed}"
    );
    let res = post(
        &admin,
        &app,
        &page_path,
        &[
            ("csrf", &csrf),
            ("action", "mapping"),
            ("surname", "sn"),
            ("email", "mail"),
            ("confirm_password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(
        res.status(),
        303,
        "unknown fields are ignored, empty ones cleared"
    );

    // Disabled: its sign-in stops at once.
    assert_eq!(
        app.get(&format!("/sso/saml/{id}/login")).await.status(),
        303
    );
    let res = post(
        &admin,
        &app,
        &page_path,
        &[
            ("csrf", &csrf),
            ("action", "disable"),
            ("confirm_password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        app.get(&format!("/sso/saml/{id}/login")).await.status(),
        403
    );
    let events = app.cli_ok(&["audit", "list", "alpha", "--json"]);
    assert!(
        events.contains(r#"\"before\":{\"enabled\":true}"#),
        "{events}"
    );
    assert!(
        events.contains(r#"\"after\":{\"attribute_map\":{\"email\":\"mail\""#),
        "{events}"
    );
    // A certificate rotation: new IdP settings, the mapping kept.
    let rotated = crate::saml::key_pair("rotated idp");
    let res = post(
        &admin,
        &app,
        &format!("{page_path}/idp"),
        &[
            ("csrf", &csrf),
            ("kind", ""),
            ("entity_id", "https://idp.example.test/entity"),
            ("sso_url", "https://idp.example.test/sso2"),
            ("certificate", &rotated.cert_pem),
            ("confirm_password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let (_, shown) = get(&admin, &app, res.headers()["location"].to_str().unwrap()).await;
    assert!(shown.contains("IdP settings saved"), "{shown}");
    let listed = app.cli_ok(&["connection", "list", "alpha", "--json"]);
    assert!(
        listed.contains("sso2") && listed.contains("rotated idp"),
        "{listed}"
    );
    assert!(
        listed.contains(r#""email":"mail""#),
        "the mapping stays: {listed}"
    );
    // Bad settings are refused with the reason, nothing saved.
    let res = post(
        &admin,
        &app,
        &format!("{page_path}/idp"),
        &[
            ("csrf", &csrf),
            ("kind", ""),
            ("entity_id", "x"),
            ("sso_url", "https://x.test/"),
            ("certificate", "not a cert"),
            ("confirm_password", PASSWORD),
        ],
    )
    .await;
    let (_, shown) = get(&admin, &app, res.headers()["location"].to_str().unwrap()).await;
    assert!(shown.contains(r#"id="page-error">Not saved: "#), "{shown}");
    // An OIDC connection whose issuer cannot be discovered is refused with the reason.
    let res = post(
        &admin,
        &app,
        "/sso/admin/orgs/alpha/connections",
        &[
            ("csrf", &csrf),
            ("kind", "oidc"),
            ("issuer", "http://127.0.0.1:9/none"),
            ("client_id", "c"),
            ("client_secret", "s"),
            ("confirm_password", PASSWORD),
        ],
    )
    .await;
    // The form comes back filled in (except the secret), with the reason.
    assert_eq!(res.status(), 422);
    let page = res.text().await.unwrap();
    assert!(page.contains("OpenID discovery failed"), "{page}");
    assert!(
        page.contains(r#"value="http://127.0.0.1:9/none""#),
        "{page}"
    );

    // Roles page lists the org admins.
    let (_, roles) = get(&admin, &app, "/sso/admin/orgs/alpha/roles").await;
    assert!(roles.contains("<li>root@alpha.test</li>"));
    assert!(
        roles.contains("<title>Roles · alpha · gatehouse</title>"),
        "{roles}"
    );
    let (_, page) = get(&admin, &app, &page_path).await;
    assert!(
        page.contains("<title>SAML · alpha · gatehouse</title>"),
        "{page}"
    );
}

/// Issue 18, item 1: the enforcement form shows the mode in force, so re-entering the
/// password and saving it keeps enforcement as it is (it always showed `off`).
#[tokio::test]
async fn the_enforcement_form_shows_the_mode_in_force() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "alpha", "--domain", "alpha.test"]);
    // An instance admin: tightening enforcement ends an org admin's password session.
    let admin = instance_admin(&app, 0).await;
    for mode in ["domains", "all", "off"] {
        app.cli_ok(&["enforcement", "set", "alpha", mode]);
        let (status, page) = get(&admin, &app, "/sso/admin/orgs/alpha").await;
        assert_eq!(status, 200);
        let selected: Vec<&str> = page
            .match_indices("<option value=\"")
            .filter_map(|(i, _)| {
                let rest = &page[i + "<option value=\"".len()..];
                let value = &rest[..rest.find('"')?];
                let tag = &rest[..rest.find('>')?];
                tag.contains("selected").then_some(value)
            })
            .collect();
        assert_eq!(selected, vec![mode], "the select shows {mode}");
    }
}
