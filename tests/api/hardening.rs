//! The security review's findings (issue 17), each driven as the attack over real HTTP: SCIM
//! cannot reach org-admin or local accounts, passwords an IdP sends never reach the database
//! or the log, e-mails are verified only inside the org's verified domains, forwarded
//! addresses count only from trusted proxies, and the platform findings (metrics labels,
//! HSTS, TLS-derived URLs, trailing slashes, anonymous storage, control characters).

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::*;

fn audit_json(app: &TestApp, org: &str) -> Value {
    serde_json::from_str(
        app.cli_ok(&["audit", "list", org, "--limit", "500", "--json"])
            .trim(),
    )
    .unwrap()
}

/// The claims of a JWT (its signature is checked elsewhere).
fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Finding 1, SCIM half: with the org's SCIM token, an org admin's and a local account's
/// identity cannot be changed (the rename that would hand the admin's account to an IdP user),
/// nor deleted; SCIM still sees them, and an account handed over by an admin is SCIM's.
#[tokio::test]
async fn scim_cannot_change_org_admins_or_local_accounts() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    app.cli_ok(&["user", "add", "acme", "boss@acme.test", "--org-admin"]);
    app.cli_ok(&["user", "add", "acme", "local@acme.test"]);
    let scim = app.scim("acme");
    let alice = scim.create_user("alice@acme.test").await;
    let id_of = |list: &Value| list["Resources"][0]["id"].as_str().unwrap().to_string();
    let (_, found) = scim
        .get("/Users?filter=userName%20eq%20%22boss@acme.test%22")
        .await;
    assert_eq!(found["totalResults"], 1, "SCIM still sees the admin");
    let boss = id_of(&found);
    let (_, found) = scim
        .get("/Users?filter=userName%20eq%20%22local@acme.test%22")
        .await;
    let local = id_of(&found);

    // The attack: drop Alice's account, rename the admin to her e-mail.
    assert_eq!(scim.delete(&format!("/Users/{alice}")).await, 204);
    for target in [&boss, &local] {
        let (s, body) = scim
            .patch(
                &format!("/Users/{target}"),
                patch_op(
                    json!([{"op": "replace", "path": "userName", "value": "alice@acme.test"}]),
                ),
            )
            .await;
        assert_eq!(s, 403, "{body}");
        assert_eq!(
            body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        let (s, _) = scim
            .put(
                &format!("/Users/{target}"),
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice@acme.test",
                       "emails": [{"value": "alice@acme.test", "primary": true}]}),
            )
            .await;
        assert_eq!(s, 403);
        assert_eq!(scim.delete(&format!("/Users/{target}")).await, 403);
        // Nor through Bulk.
        let (s, bulk) = scim
            .post(
                "/Bulk",
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
                    {"method": "PATCH", "path": format!("/Users/{target}"),
                     "data": patch_op(json!([{"op": "replace", "path": "userName", "value": "alice@acme.test"}]))},
                ]}),
            )
            .await;
        assert_eq!(s, 200);
        assert_eq!(bulk["Operations"][0]["status"], "403", "{bulk}");
    }
    let users: Value =
        serde_json::from_str(app.cli_ok(&["user", "list", "acme", "--json"]).trim()).unwrap();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"boss@acme.test") && names.contains(&"local@acme.test"),
        "{names:?}"
    );

    // Nor into groups (groups carry app roles).
    let (s, body) = scim
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Admins", "members": [{"value": boss}]}),
        )
        .await;
    assert_eq!(s, 403, "{body}");
    let gid = scim.create_group("Staff", &[]).await;
    for target in [&boss, &local] {
        let (s, body) = scim
            .patch(
                &format!("/Groups/{gid}"),
                patch_op(json!([{"op": "add", "path": "members", "value": [{"value": target}]}])),
            )
            .await;
        assert_eq!(s, 403, "{body}");
    }

    // An admin hands the local account over: now SCIM manages it. Never an org admin.
    app.cli_ok(&["user", "set", "acme", "local@acme.test", "--scim-managed"]);
    let (s, _) = scim
        .patch(
            &format!("/Users/{local}"),
            patch_op(json!([{"op": "replace", "path": "displayName", "value": "Local"}])),
        )
        .await;
    assert_eq!(s, 200);
    let refused = app.cli(&["user", "set", "acme", "boss@acme.test", "--scim-managed"]);
    assert!(!refused.status.success());
}

/// Finding 2: Okta's password sync (both shapes) is accepted and ignored; no password an IdP
/// sends — PATCH by path or value object, PUT, POST, Bulk, or a refused request — reaches the
/// database file, an audit payload or the server log.
#[test]
fn passwords_from_the_idp_are_ignored_and_never_stored_or_logged() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let env = test_env(dir.path(), &url);
    let token = org_with_scim_token(&env, "acme");
    let server = ServeProcess::start(&env);
    let client = reqwest::blocking::Client::new();
    let send = |method: reqwest::Method, path: &str, body: Value| -> (u16, Value) {
        let res = client
            .request(method, server.url(&format!("/scim/v2{path}")))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .unwrap();
        let status = res.status().as_u16();
        let text = res.text().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    let core = "urn:ietf:params:scim:schemas:core:2.0:User";
    let (s, user) = send(
        reqwest::Method::POST,
        "/Users",
        json!({"schemas": [core], "userName": "ann@acme.test", "password": "Sekret-POST-1"}),
    );
    assert_eq!(s, 201, "{user}");
    let id = user["id"].as_str().unwrap().to_string();
    let path = format!("/Users/{id}");
    for (i, op) in [
        json!({"op": "replace", "path": "password", "value": "Sekret-PATH-2"}),
        json!({"op": "replace", "value": {"password": "Sekret-VALUE-3"}}),
        json!({"op": "Replace", "path": "PassWord", "value": "Sekret-CASE-4"}),
        json!({"op": "replace", "path": format!("{core}:password"), "value": "Sekret-URN-5"}),
    ]
    .into_iter()
    .enumerate()
    {
        let (s, body) = send(reqwest::Method::PATCH, &path, patch_op(json!([op])));
        assert!(
            s == 200 || s == 204,
            "password sync {i} accepted: {s} {body}"
        );
    }
    let (s, _) = send(
        reqwest::Method::PUT,
        &path,
        json!({"schemas": [core], "userName": "ann@acme.test", "password": "Sekret-PUT-6"}),
    );
    assert_eq!(s, 200);
    let (s, _) = send(
        reqwest::Method::POST,
        "/Bulk",
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
            {"method": "PATCH", "path": path, "data": patch_op(json!([{"op": "replace", "path": "password", "value": "Sekret-BULK-7"}]))},
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"schemas": [core], "userName": "bob@acme.test", "password": "Sekret-BULK-8"}},
        ]}),
    );
    assert_eq!(s, 200);
    // A refused request (a bad op next to the password) is logged at WARN with its body.
    let (s, _) = send(
        reqwest::Method::PATCH,
        &path,
        patch_op(json!([
            {"op": "replace", "path": "password", "value": "Sekret-REFUSED-9"},
            {"op": "frobnicate", "path": "userName", "value": "x"}
        ])),
    );
    assert_eq!(s, 400);
    let logs = server.logs();
    drop(server);
    let audit = run_cli(&env, &["audit", "list", "acme", "--limit", "500", "--json"])
        .ok()
        .stdout;
    assert!(audit.contains("PATCH"), "the requests are audited: {audit}");
    let mut db_bytes = Vec::new();
    for f in ["gatehouse.db", "gatehouse.db-wal"] {
        if let Ok(b) = std::fs::read(dir.path().join(f)) {
            db_bytes.extend(b);
        }
    }
    let db_text = String::from_utf8_lossy(&db_bytes);
    for n in 1..=9 {
        let tag = [
            "POST-1",
            "PATH-2",
            "VALUE-3",
            "CASE-4",
            "URN-5",
            "PUT-6",
            "BULK-7",
            "BULK-8",
            "REFUSED-9",
        ][n - 1];
        let secret = format!("Sekret-{tag}");
        assert!(!audit.contains(&secret), "{secret} in the audit log");
        assert!(!logs.contains(&secret), "{secret} in the server log");
        assert!(!db_text.contains(&secret), "{secret} in the database file");
    }
}

/// Finding 3: an e-mail SCIM sets outside the user's org's verified domains (here another
/// org's verified domain) is never presented as verified: not in the JWT, not in
/// `X-Forwarded-Email`, not in `/sso/me`.
#[tokio::test]
async fn emails_outside_the_orgs_verified_domains_are_not_verified() {
    let app = spawn_app().await;
    app.seed_local_user();
    app.cli_ok(&["org", "create", "bigco", "--domain", "bigco.test"]);
    let scim = app.scim("acme");
    // Alice's account is SCIM's (as if SCIM had created it; she also has a password).
    app.sql("UPDATE users SET source = 'scim'");
    let (_, found) = scim
        .get("/Users?filter=userName%20eq%20%22alice@acme.test%22")
        .await;
    let id = found["Resources"][0]["id"].as_str().unwrap().to_string();
    let client = signed_in_browser(&app, "alice@acme.test").await;
    let verify = |client: reqwest::Client| {
        let url = app.url("/sso/verify");
        async move {
            let res = client.get(url).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let h = |n: &str| res.headers()[n].to_str().unwrap().to_string();
            (h("x-forwarded-email"), jwt_claims(&h("x-gatehouse-jwt")))
        }
    };
    let (email, claims) = verify(client.clone()).await;
    assert_eq!(email, "alice@acme.test");
    assert_eq!(
        claims["email_verified"], true,
        "inside acme's verified domain"
    );

    let (s, _) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "emails", "value": [{"value": "ceo@bigco.test", "primary": true}]}])),
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // the identity cache
    let (email, claims) = verify(client.clone()).await;
    assert_eq!(claims["email"], "ceo@bigco.test");
    assert_eq!(claims["email_verified"], false, "{claims}");
    assert_eq!(
        email, "",
        "an unverified address is not presented as the user's"
    );
    let me: Value = json_answer(
        client
            .get(app.url("/sso/me"))
            .header("accept", "application/json"),
    )
    .await;
    assert_eq!(me["email_verified"], false, "{me}");

    // An address of the org's own verified domain that another account holds (here an org
    // admin's) is not verified either: SCIM could copy a colleague's address.
    app.cli_ok(&["user", "add", "acme", "boss@acme.test", "--org-admin"]);
    let (s, _) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "emails", "value": [{"value": "boss@acme.test", "primary": true}]}])),
        )
        .await;
    assert_eq!(s, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (email, claims) = verify(client.clone()).await;
    assert_eq!(claims["email_verified"], false, "{claims}");
    assert_eq!(email, "");
}

/// Finding 11 (rule chosen: break-glass accounts keep their userName reserved in the org, so
/// no directory user, and no app behind gatehouse, ever sees a second account of that name):
/// SCIM answers a create or rename onto a break-glass account's name exactly as for any other
/// taken name, byte for byte apart from the name, and never finds the account.
#[tokio::test]
async fn scim_does_not_reveal_break_glass_accounts() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    app.cli_ok(&["breakglass", "set", "acme", "bg@acme.test"]);
    let scim = app.scim("acme");
    let (_, list) = scim
        .get("/Users?filter=userName%20eq%20%22bg@acme.test%22")
        .await;
    assert_eq!(list["totalResults"], 0);
    scim.create_user("taken@acme.test").await;
    let create = |name: &str| json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
    let (s1, taken) = scim.post("/Users", create("taken@acme.test")).await;
    let (s2, bg) = scim.post("/Users", create("bg@acme.test")).await;
    assert_eq!((s1, s2), (409, 409));
    assert_eq!(
        bg.to_string().replace("bg@acme.test", "NAME"),
        taken.to_string().replace("taken@acme.test", "NAME"),
        "the same answer as for any taken name"
    );
    let other = scim.create_user("other@acme.test").await;
    let rename =
        |name: &str| patch_op(json!([{"op": "replace", "path": "userName", "value": name}]));
    let (s1, taken) = scim
        .patch(&format!("/Users/{other}"), rename("taken@acme.test"))
        .await;
    let (s2, bg) = scim
        .patch(&format!("/Users/{other}"), rename("BG@acme.test"))
        .await;
    assert_eq!((s1, s2), (409, 409));
    assert_eq!(
        bg.to_string().replace("BG@acme.test", "NAME"),
        taken.to_string().replace("taken@acme.test", "NAME")
    );
    let bgs: Value =
        serde_json::from_str(app.cli_ok(&["breakglass", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(bgs.as_array().unwrap().len(), 1, "{bgs}");
}

/// Finding 19: control characters (a NUL byte) in a SCIM string or filter are refused with
/// 400 on both backends (PostgreSQL answered 500).
async fn control_characters_are_refused(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    let scim = app.scim("acme");
    let (s, body) = scim
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "nul\u{0}@acme.test"}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["scimType"], "invalidValue");
    let (s, body) = scim
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ok@acme.test",
                   "name": {"givenName": "A\u{0}B"}}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = scim.get("/Users?filter=userName%20eq%20%22a%00b%22").await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["scimType"], "invalidFilter");
    let id = scim.create_user("ann@acme.test").await;
    let (s, _) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "displayName", "value": "x\u{0}y"}])),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = scim
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G\u{0}"}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn control_characters_are_refused_on_sqlite() {
    control_characters_are_refused(Backend::Sqlite).await;
}

#[tokio::test]
async fn control_characters_are_refused_on_postgres() {
    control_characters_are_refused(Backend::Postgres).await;
}

/// Finding 12: the default SCIM rate limit lets a conformance tool's or an initial import's
/// burst through (the test environment turns the limit off; this test uses the default).
#[tokio::test]
async fn the_default_scim_rate_limit_lets_an_import_burst_through() {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(Backend::Sqlite, data_dir.path()).unwrap();
    let mut env = test_env(data_dir.path(), &database_url);
    env.remove("GATEHOUSE_SCIM_RATE_LIMIT");
    let app = spawn_with_env(env, data_dir, database_url).await;
    let scim = app.scim("acme");
    // 600 requests as fast as 8 connections go (an IdP's initial import is like this).
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (client, url, token) = (app.client.clone(), scim.url("/Users"), scim.token.clone());
        tasks.push(tokio::spawn(async move {
            let mut limited = 0;
            for i in 0..75 {
                let res = client
                    .get(format!(
                        "{url}?filter=userName%20eq%20%22u{t}-{i}@acme.test%22"
                    ))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                if res.status() == 429 {
                    limited += 1;
                }
            }
            limited
        }));
    }
    let mut limited = 0;
    for t in tasks {
        limited += t.await.unwrap();
    }
    assert_eq!(limited, 0, "{limited} of 600 requests got 429");
}

/// Finding 12: HTML pages answer with or without a trailing slash (the README gives
/// `/sso/admin/`); the CLI changes and removes an existing domain.
#[tokio::test]
async fn trailing_slashes_and_domain_set() {
    let app = spawn_app().await;
    for path in ["/sso/admin/", "/sso/login/", "/sso/breakglass/"] {
        let res = app.get_html(path).await;
        assert!(
            res.status().is_redirection() || res.status() == 200,
            "{path}: {}",
            res.status()
        );
        if res.status().is_redirection() {
            let to = res.headers()["location"].to_str().unwrap();
            assert!(!to.ends_with('/') || to == "/", "{path} → {to}");
        }
    }
    app.cli_ok(&["org", "create", "acme"]);
    app.cli_ok(&["domain", "add", "acme", "acme.test"]);
    app.cli_ok(&[
        "domain",
        "set",
        "acme",
        "acme.test",
        "--verified",
        "true",
        "--enforce",
        "true",
    ]);
    let ds: Value =
        serde_json::from_str(app.cli_ok(&["domain", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(ds[0]["verified"], true);
    assert_eq!(ds[0]["enforce"], true);
    app.cli_ok(&["domain", "set", "acme", "acme.test", "--enforce", "false"]);
    let ds: Value =
        serde_json::from_str(app.cli_ok(&["domain", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(
        (ds[0]["verified"].clone(), ds[0]["enforce"].clone()),
        (json!(true), json!(false))
    );
    app.cli_ok(&["domain", "remove", "acme", "acme.test"]);
    let ds: Value =
        serde_json::from_str(app.cli_ok(&["domain", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(ds.as_array().unwrap().len(), 0);
    let missing = app.cli(&["domain", "remove", "acme", "acme.test"]);
    assert!(!missing.status.success());
    assert_eq!(
        missing.stderr.trim().lines().count(),
        1,
        "{}",
        missing.stderr
    );
    let audit = audit_json(&app, "acme").to_string();
    assert!(audit.contains("domain.update") && audit.contains("domain.remove"));
}

/// `gatehouse breakglass set`: (password, otpauth URI).
fn set_breakglass(app: &TestApp, org: &str, email: &str) -> (String, String) {
    let out = app.cli_ok(&["breakglass", "set", org, email]);
    let mut lines = out.lines();
    let password = lines.next().unwrap().strip_prefix("password: ").unwrap();
    (password.to_string(), lines.next().unwrap().to_string())
}

async fn breakglass_from(
    app: &TestApp,
    forwarded_for: &str,
    email: &str,
    password: &str,
    code: &str,
) -> reqwest::Response {
    let client = browser();
    let page = client
        .get(app.url("/sso/breakglass"))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_field(&page, "csrf");
    client
        .post(app.url("/sso/breakglass"))
        .header("x-forwarded-for", forwarded_for)
        .form(&[
            ("email", email),
            ("password", password),
            ("code", code),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap()
}

/// Finding 4: behind a trusted reverse proxy, an attacker's failures back off the attacker's
/// address, not the break-glass admin's (every client shares the proxy's address); the audit
/// event names the real client. From an untrusted peer, `X-Forwarded-For` is ignored: rotating
/// it does not escape back-off.
#[tokio::test]
async fn back_off_follows_the_client_behind_trusted_proxies() {
    let app = spawn_app_with(&[("GATEHOUSE_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    app.cli_ok(&["enforcement", "set", "acme", "all"]);
    let (password, otpauth) = set_breakglass(&app, "acme", "bg-proxied@acme.test");
    for _ in 0..7 {
        let res = breakglass_from(
            &app,
            "6.6.6.6, 203.0.113.9",
            "bg-proxied@acme.test",
            "wrong",
            "000000",
        )
        .await;
        assert!(
            res.status() == 401 || res.status() == 429,
            "{}",
            res.status()
        );
    }
    let res = breakglass_from(
        &app,
        "203.0.113.9",
        "bg-proxied@acme.test",
        &password,
        &totp_code(&otpauth, 0),
    )
    .await;
    assert_eq!(res.status(), 429, "the attacker's address waits");
    let res = breakglass_from(
        &app,
        "198.51.100.7",
        "bg-proxied@acme.test",
        &password,
        &totp_code(&otpauth, 0),
    )
    .await;
    assert_eq!(res.status(), 303, "the real admin is not locked out");
    let audit = app.cli_ok(&["audit", "list", "instance", "--json"])
        + &app.cli_ok(&["audit", "list", "acme", "--json"]);
    assert!(
        audit.contains("203.0.113.9"),
        "the real client is audited: {audit}"
    );
    assert!(
        !audit.contains("6.6.6.6"),
        "a hop the client wrote is not: {audit}"
    );

    // Default: no proxy is trusted, so the header is the client's own invention.
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme", "--domain", "acme.test"]);
    let (password, otpauth) = set_breakglass(&app, "acme", "bg-direct@acme.test");
    for i in 0..6 {
        breakglass_from(
            &app,
            &format!("203.0.113.{i}"),
            "bg-direct@acme.test",
            "wrong",
            "000000",
        )
        .await;
    }
    let res = breakglass_from(
        &app,
        "198.51.100.99",
        "bg-direct@acme.test",
        &password,
        &totp_code(&otpauth, 0),
    )
    .await;
    assert_eq!(
        res.status(),
        429,
        "a forged X-Forwarded-For does not escape back-off"
    );
}

/// Finding 7: in proxy mode the app's `X-Forwarded-Host` is the public URL's host, whatever
/// `Host` the client sent; and `X-Forwarded-For` is the client gatehouse determined.
#[tokio::test]
async fn proxy_mode_forwards_the_public_host() {
    let (mut upstream, port) = crate::gateway::echo_upstream();
    let app = spawn_app_with(&[("GATEHOUSE_UPSTREAM", &format!("http://127.0.0.1:{port}"))]).await;
    app.seed_local_user();
    let user = signed_in_browser(&app, "alice@acme.test").await;
    let seen: Value = json_answer(
        user.get(app.url("/dashboard"))
            .header("host", "evil.example")
            .header("x-forwarded-for", "6.6.6.6"),
    )
    .await;
    upstream.kill().ok();
    let h = &seen["headers"];
    assert_eq!(
        h["x-forwarded-host"],
        format!("127.0.0.1:{}", app.port),
        "{seen}"
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1", "{seen}");
}

/// Finding 4 on forward-auth: `X-Forwarded-Host`/`-Proto` shape the return URL only when a
/// trusted proxy sent them.
#[tokio::test]
async fn forward_auth_trusts_forwarded_host_only_from_trusted_proxies() {
    let ask = |app: &TestApp| {
        browser()
            .get(app.url("/sso/verify"))
            .header("accept", "text/html")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-uri", "/dashboard")
            .send()
    };
    let app = spawn_app().await;
    let res = ask(&app).await.unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        app.url("/sso/login?return_to=%2Fdashboard"),
        "an untrusted peer's forwarded host is ignored"
    );
    let app = spawn_app_with(&[("GATEHOUSE_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let res = ask(&app).await.unwrap();
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        app.url("/sso/login?return_to=https%3A%2F%2Fevil.example%2Fdashboard")
    );
}

/// Finding 8: the public `/metrics` names no tenant; the metrics listener has the per-org
/// certificate gauges.
#[tokio::test]
async fn public_metrics_name_no_tenant() {
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let app = spawn_app_with(&[(
        "GATEHOUSE_METRICS_LISTEN",
        &format!("127.0.0.1:{metrics_port}"),
    )])
    .await;
    app.cli_ok(&["org", "create", "secretcorp", "--domain", "secretcorp.test"]);
    let c = crate::saml::add_saml_connection(
        &app,
        "secretcorp",
        "https://idp.secretcorp.test/sso",
        &[],
    );
    let id = c["id"].as_str().unwrap();
    app.get(&format!("/sso/saml/{id}/metadata")).await;
    let public = app.get("/metrics").await.text().await.unwrap();
    assert!(public.contains("gatehouse_http_requests_total"), "{public}");
    assert!(
        !public.contains("secretcorp") && !public.contains(id),
        "{public}"
    );
    let private = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        private.contains("gatehouse_saml_idp_certificate_not_after_seconds")
            && private.contains("secretcorp"),
        "{private}"
    );
}

fn self_signed(dir: &std::path::Path) {
    use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
    let pkey = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = x509::X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&pkey).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.sign(&pkey, MessageDigest::sha256()).unwrap();
    std::fs::write(dir.join("tls.crt"), b.build().to_pem().unwrap()).unwrap();
    std::fs::write(
        dir.join("tls.key"),
        pkey.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
}

/// Findings 15 and 16: TLS on and no public URL → an https public URL (Secure `__Host-`
/// cookies) and HSTS on every response; TLS with an http:// public URL refuses to start.
#[test]
fn tls_derives_https_cookies_and_hsts() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path());
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let mut env = test_env(dir.path(), &url);
    env.insert(
        "GATEHOUSE_TLS_CERT".into(),
        dir.path().join("tls.crt").display().to_string(),
    );
    env.insert(
        "GATEHOUSE_TLS_KEY".into(),
        dir.path().join("tls.key").display().to_string(),
    );
    let mut bad = env.clone();
    bad.insert("GATEHOUSE_PUBLIC_URL".into(), "http://sso.acme.test".into());
    let out = run_cli(&bad, &["config", "check"]);
    assert!(!out.status.success(), "{}", out.stdout);
    assert!(out.stderr.contains("https"), "{}", out.stderr);

    let server = ServeProcess::start(&env);
    let client = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let res = client
        .get(format!("https://127.0.0.1:{}/sso/login", server.port))
        .header("accept", "text/html")
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let hsts = res.headers()["strict-transport-security"].to_str().unwrap();
    let max_age: u64 = hsts
        .split(';')
        .find_map(|p| p.trim().strip_prefix("max-age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(max_age >= 31_536_000, "{hsts}");
    let cookies: Vec<&str> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!cookies.is_empty());
    for c in cookies {
        assert!(c.starts_with("__Host-") && c.contains("Secure"), "{c}");
    }
    let res = client
        .get(format!("https://127.0.0.1:{}/healthz", server.port))
        .send()
        .unwrap();
    assert!(res.headers().contains_key("strict-transport-security"));
    // Without TLS and with an http public URL: no HSTS.
    drop(server);
}

fn count(app: &TestApp, table: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel::RunQueryDsl;
    let db = app.db();
    let mut conn = db.conn().unwrap();
    let rows: Vec<N> = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
        .load(&mut *conn)
        .unwrap();
    rows[0].n
}

/// Finding 6: what anonymous requests store is capped and purged once expired (tested with the
/// clock moved forward), and refused unauthenticated SCIM calls are counted, with one audit
/// event per source per minute instead of one per request.
#[tokio::test]
async fn anonymous_requests_do_not_grow_the_database() {
    let app = spawn_app().await;
    app.seed_local_user();
    let c = crate::saml::add_saml_connection(&app, "acme", "https://idp.acme.test/sso", &[]);
    let id = c["id"].as_str().unwrap();
    let long = format!("/{}", "a".repeat(3000));
    for i in 0..40 {
        let rt = if i == 0 {
            long.clone()
        } else {
            format!("/app/{i}")
        };
        let res = browser()
            .get(app.url(&format!("/sso/saml/{id}/login")))
            .query(&[("return_to", rt)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
    }
    assert_eq!(count(&app, "saml_requests"), 40);
    assert_eq!(
        count(&app, "saml_requests WHERE LENGTH(return_to) > 2048"),
        0,
        "an anonymous request stores at most 2 KiB of return_to"
    );
    // Sessions: one live, one signed out.
    let live = signed_in_browser(&app, "alice@acme.test").await;
    let gone = signed_in_browser(&app, "alice@acme.test").await;
    let csrf = csrf_of(&app, &gone, "/sso/logout").await;
    gone.post(app.url("/sso/logout"))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(count(&app, "sessions"), 2);

    let db = app.db();
    let now = gatehouse::clock::now();
    let p = gatehouse::sso::purge::all(&db, now).await.unwrap();
    assert_eq!(p.total(), 0, "nothing is purged before it expires: {p:?}");
    // Two hours later: the sign-in requests and the signed-out session are gone.
    let p = gatehouse::sso::purge::all(&db, now + 7200).await.unwrap();
    assert_eq!(p.saml_requests, 40, "{p:?}");
    assert_eq!(count(&app, "saml_requests"), 0);
    assert!(p.sessions >= 1, "{p:?}");
    assert_eq!(
        live.get(app.url("/sso/me"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Unauthenticated SCIM: 30 refusals, one audit event, all counted.
    for _ in 0..30 {
        let res = browser()
            .get(app.url("/scim/v2/Users"))
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let events = app.cli_ok(&["audit", "list", "instance", "--limit", "500", "--json"]);
    let events: Value = serde_json::from_str(events.trim()).unwrap();
    let refusals = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "scim:unauthenticated")
        .count();
    assert_eq!(refusals, 1, "{events}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("gatehouse_scim_unauthenticated_requests_total 30"),
        "{metrics}"
    );
}
