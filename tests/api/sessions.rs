//! Sessions through the real HTTP surface: password sign-in, fixation, `/sso/me`, logout with
//! CSRF, revocation, deactivation, idle and absolute expiry, cookie flags, instance admins
//! with single-use TOTP, the hashing semaphore, and logs without secrets.

use std::collections::BTreeMap;

use crate::helpers::*;

const COOKIE: &str = "gatehouse_session";

#[tokio::test]
async fn sign_in_issues_a_new_session_id_and_me_answers_both_ways() {
    let app = spawn_app().await;
    app.seed_local_user();
    app.cli_ok(&["role", "add", "acme", "viewer", "--rank", "1"]);
    app.cli_ok(&["role", "add", "acme", "admin", "--rank", "9"]);
    app.cli_ok(&["org", "set", "acme", "--default-role", "viewer"]);

    // Not signed in: 401 in both representations.
    assert_eq!(app.me_json().await.status(), 401);
    let page = app.get_html("/sso/me").await;
    assert_eq!(page.status(), 401);

    // A session id planted by an attacker is never adopted.
    let planted = "planted-session-id-0123456789abcdef0123456789";
    app.client
        .get(app.url("/healthz"))
        .header("cookie", format!("{COOKIE}={planted}"))
        .send()
        .await
        .unwrap();
    let res = app.login("Alice@ACME.test", PASSWORD).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/sso/me");
    let set = set_cookie(&res, COOKIE).expect("session cookie");
    assert!(!set.contains(planted));
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"));
    assert!(
        !set.contains("Secure"),
        "plain-http public URL: no Secure flag"
    );
    let first_id = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("gatehouse_session=")
        .to_string();
    assert!(first_id.len() >= 43, "256-bit id");

    let me: serde_json::Value = app.me_json().await.json().await.unwrap();
    assert_eq!(me["user_name"], "alice@acme.test");
    assert_eq!(me["email"], "alice@acme.test");
    assert_eq!(me["org"], "acme");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["groups"], serde_json::json!([]));
    let html = app.get_html("/sso/me").await.text().await.unwrap();
    assert!(html.contains("alice@acme.test") && html.contains("viewer"));

    // Group membership maps to the highest-ranked role; an explicit role wins.
    app.sql("INSERT INTO user_groups (id, org_id, display_name, display_name_folded, external_id, version, created_at, updated_at) SELECT 'g1', id, 'Engineering', 'engineering', 'obj-123', 1, 0, 0 FROM organizations WHERE slug = 'acme'");
    app.sql("INSERT INTO memberships (group_id, user_id, org_id, created_at) SELECT 'g1', id, org_id, 0 FROM users WHERE user_name_folded = 'alice@acme.test'");
    app.cli_ok(&["role", "map", "acme", "OBJ-123", "admin"]);
    let me: serde_json::Value = app.me_json().await.json().await.unwrap();
    assert_eq!(
        me["role"], "admin",
        "mapping by the IdP value, case-insensitively"
    );
    assert_eq!(me["groups"], serde_json::json!(["Engineering"]));

    // Signing in again replaces the id and revokes the previous session.
    let res = app.login("alice@acme.test", PASSWORD).await;
    let second = set_cookie(&res, COOKIE).unwrap();
    assert!(!second.contains(&first_id));
    let old = app
        .client
        .get(app.url("/sso/me"))
        .header("accept", "application/json")
        .header("cookie", format!("{COOKIE}={first_id}"))
        .send()
        .await
        .unwrap();
    // reqwest adds its own cookie too; use a fresh client to present only the old one.
    let _ = old;
    let bare = reqwest::Client::new();
    let old = bare
        .get(app.url("/sso/me"))
        .header("accept", "application/json")
        .header("cookie", format!("{COOKIE}={first_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let app = spawn_app().await;
    app.seed_local_user();
    let wrong = app
        .login("alice@acme.test", "not the password at all")
        .await;
    let unknown = app
        .login("nobody@acme.test", "not the password at all")
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let a = wrong
        .text()
        .await
        .unwrap()
        .replace("alice@acme.test", "EMAIL");
    let b = unknown
        .text()
        .await
        .unwrap()
        .replace("nobody@acme.test", "EMAIL");
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("name=\"csrf\"") && !l.contains("request-id"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(app.me_json().await.status(), 401);
    // Failures are audited with the cause, never the password.
    let events = app.cli_ok(&["audit", "list", "acme", "--json"]);
    assert!(events.contains("wrong password"));
    assert!(!events.contains("not the password at all"));
    let events = app.cli_ok(&["audit", "list", "instance", "--json"]);
    assert!(events.contains("no account with a password for this e-mail"));
}

#[tokio::test]
async fn sign_in_forms_need_the_csrf_cookie() {
    let app = spawn_app().await;
    app.seed_local_user();
    // A cross-site form post carries no CSRF cookie.
    let res = reqwest::Client::new()
        .post(app.url("/sso/login"))
        .header("accept", "text/html")
        .form(&[
            ("email", "alice@acme.test"),
            ("password", PASSWORD),
            ("csrf", "guess"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(set_cookie(&res, COOKIE).is_none());
    // Wrong value with a real cookie.
    app.login_csrf().await;
    let res = app
        .client
        .post(app.url("/sso/login"))
        .form(&[
            ("email", "alice@acme.test"),
            ("password", PASSWORD),
            ("csrf", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A malformed body is a clean 400, not a 500.
    let res = app
        .client
        .post(app.url("/sso/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=%ZZ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let big = "a".repeat(200 * 1024);
    let res = app
        .client
        .post(app.url("/sso/login"))
        .form(&[("email", big.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn return_to_is_only_a_local_path() {
    let app = spawn_app().await;
    app.seed_local_user();
    for (given, expected) in [
        ("/app/x?y=1", "/app/x?y=1"),
        ("//evil.test/x", "/sso/me"),
        ("https://evil.test", "/sso/me"),
        ("/\\evil.test", "/sso/me"),
    ] {
        let csrf = app.login_csrf().await;
        let res = app
            .client
            .post(app.url("/sso/login"))
            .form(&[
                ("email", "alice@acme.test"),
                ("password", PASSWORD),
                ("csrf", &csrf),
                ("return_to", given),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], expected, "{given}");
    }
    // The page itself drops a hostile return_to.
    let page = app
        .get_html("/sso/login?return_to=//evil.test")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(form_field(&page, "return_to"), "");
}

#[tokio::test]
async fn logout_needs_confirmation_and_csrf() {
    let app = spawn_app().await;
    app.seed_local_user();
    app.login("alice@acme.test", PASSWORD).await;
    // GET only shows a confirmation page.
    let page = app.get_html("/sso/logout").await.text().await.unwrap();
    assert_eq!(app.me_json().await.status(), 200);
    let csrf = form_field(&page, "csrf");
    let res = app
        .client
        .post(app.url("/sso/logout"))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(app.me_json().await.status(), 200);
    let res = app
        .client
        .post(app.url("/sso/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(set_cookie(&res, COOKIE).unwrap().contains("Max-Age=0"));
    assert_eq!(app.me_json().await.status(), 401);
    assert!(app.cli_ok(&["audit", "list", "acme"]).contains("logout"));
}

#[tokio::test]
async fn revocation_deactivation_and_expiry_take_effect_on_the_next_request() {
    let app = spawn_app().await;
    app.seed_local_user();

    app.login("alice@acme.test", PASSWORD).await;
    assert_eq!(app.me_json().await.status(), 200);
    assert!(app
        .cli_ok(&["user", "revoke-sessions", "acme", "alice@acme.test"])
        .contains("revoked 1"));
    assert_eq!(app.me_json().await.status(), 401);

    app.login("alice@acme.test", PASSWORD).await;
    app.sql("UPDATE users SET active = FALSE");
    assert_eq!(
        app.me_json().await.status(),
        401,
        "a deactivated user's session stops"
    );
    app.sql("UPDATE users SET active = TRUE");
    assert_eq!(app.login("alice@acme.test", PASSWORD).await.status(), 303);

    // Idle expiry: last seen longer ago than the org's idle lifetime.
    app.cli_ok(&["org", "set", "acme", "--session-idle", "5"]);
    app.login("alice@acme.test", PASSWORD).await;
    let now = gatehouse::clock::now();
    app.sql(&format!(
        "UPDATE sessions SET last_seen_at = {} WHERE revoked_at IS NULL",
        now - 4 * 60
    ));
    assert_eq!(
        app.me_json().await.status(),
        200,
        "within the idle lifetime"
    );
    app.sql(&format!(
        "UPDATE sessions SET last_seen_at = {} WHERE revoked_at IS NULL",
        now - 6 * 60
    ));
    assert_eq!(app.me_json().await.status(), 401);

    // last_seen_at is written at most once a minute.
    app.login("alice@acme.test", PASSWORD).await;
    app.sql(&format!(
        "UPDATE sessions SET last_seen_at = {} WHERE revoked_at IS NULL",
        now - 30
    ));
    app.me_json().await;
    let seen = last_seen(&app);
    assert_eq!(seen, now - 30, "not rewritten within a minute");
    app.sql(&format!(
        "UPDATE sessions SET last_seen_at = {} WHERE revoked_at IS NULL",
        now - 90
    ));
    app.me_json().await;
    assert!(last_seen(&app) >= now, "touched after a minute");

    // Absolute expiry.
    app.sql(&format!(
        "UPDATE sessions SET expires_at = {} WHERE revoked_at IS NULL",
        now - 1
    ));
    assert_eq!(app.me_json().await.status(), 401);

    // Tightening enforcement revokes password sessions that no longer qualify.
    app.login("alice@acme.test", PASSWORD).await;
    assert_eq!(app.me_json().await.status(), 200);
    let out = app.cli_ok(&["enforcement", "set", "acme", "all"]);
    assert!(out.contains("1 session(s) revoked"), "{out}");
    assert_eq!(app.me_json().await.status(), 401);
}

fn last_seen(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    let db = app.db();
    let mut conn = db.conn().unwrap();
    gatehouse::db::schema::sessions::table
        .filter(gatehouse::db::schema::sessions::revoked_at.is_null())
        .select(gatehouse::db::schema::sessions::last_seen_at)
        .first::<i64>(&mut *conn)
        .unwrap()
}

#[tokio::test]
async fn https_public_url_gives_host_prefixed_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let mut env = test_env(dir.path(), &url);
    env.insert(
        "GATEHOUSE_PUBLIC_URL".into(),
        "https://sso.acme.test".into(),
    );
    let app = spawn_with_env(env, dir, url).await;
    app.seed_local_user();
    let page = app.get_html("/sso/login").await;
    let csrf_cookie =
        set_cookie(&page, "__Host-gatehouse_login_csrf").expect("__Host- CSRF cookie");
    assert!(csrf_cookie.contains("Secure"));
    let csrf_value = csrf_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let html = page.text().await.unwrap();
    let csrf = form_field(&html, "csrf");
    // reqwest keeps Secure cookies off plain http: present the cookie by hand.
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url("/sso/login"))
        .header(
            "cookie",
            format!("__Host-gatehouse_login_csrf={csrf_value}"),
        )
        .form(&[
            ("email", "alice@acme.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let session = set_cookie(&res, "__Host-gatehouse_session").expect("__Host- session cookie");
    assert!(
        session.contains("Secure") && session.contains("HttpOnly") && session.contains("Path=/")
    );
    assert!(!session.to_lowercase().contains("domain="));
    // A spoofed X-Forwarded-Proto cannot change the decision: still __Host- and Secure.
    let res = reqwest::Client::new()
        .get(app.url("/sso/login"))
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&res, "__Host-gatehouse_login_csrf")
        .unwrap()
        .contains("Secure"));
}

#[tokio::test]
async fn instance_admins_sign_in_with_password_then_single_use_totp() {
    let app = spawn_app().await;
    let uri = app
        .cli_env(
            &[("GH_TEST_PW", PASSWORD)],
            &[
                "admin",
                "add",
                "ops@example.test",
                "--password-env",
                "GH_TEST_PW",
            ],
        )
        .ok()
        .stdout;

    let res = app.login("ops@example.test", PASSWORD).await;
    assert_eq!(res.status(), 200);
    assert!(
        set_cookie(&res, COOKIE).is_none(),
        "no session after the password alone"
    );
    let page = res.text().await.unwrap();
    let pending = form_field(&page, "pending");
    let csrf = form_field(&page, "csrf");
    assert_eq!(app.me_json().await.status(), 401);

    let post_code = |code: String| {
        let (pending, csrf) = (pending.clone(), csrf.clone());
        let client = app.client.clone();
        let url = app.url("/sso/login/totp");
        async move {
            client
                .post(url)
                .form(&[
                    ("pending", pending.as_str()),
                    ("csrf", csrf.as_str()),
                    ("code", code.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(post_code("000000".into()).await.status(), 401);
    let code = totp_code(&uri, 0);
    let res = post_code(code.clone()).await;
    assert_eq!(res.status(), 303);
    let me: serde_json::Value = app.me_json().await.json().await.unwrap();
    assert_eq!(me["role"], "instance-admin");
    assert!(me["org"].is_null());

    // The same code never works twice (nor an earlier one).
    assert_eq!(post_code(code).await.status(), 401);
    assert_eq!(post_code(totp_code(&uri, -1)).await.status(), 401);
    let events = app.cli_ok(&["audit", "list", "instance", "--json"]);
    assert!(events.contains("TOTP code already used") || events.contains("wrong TOTP code"));

    // A tampered pending token is refused.
    let res = app
        .client
        .post(app.url("/sso/login/totp"))
        .form(&[
            ("pending", "v1:AAAA"),
            ("csrf", csrf.as_str()),
            ("code", "123456"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_full_hashing_queue_answers_429_not_a_stall() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let mut env = test_env(dir.path(), &url);
    env.insert("GATEHOUSE_PASSWORD_HASH_CONCURRENCY".into(), "1".into());
    let app = spawn_with_env(env, dir, url).await;
    app.seed_local_user();
    let csrf = app.login_csrf().await;
    let attempts = (0..48).map(|i| {
        let client = app.client.clone();
        let url = app.url("/sso/login");
        let csrf = csrf.clone();
        async move {
            client
                .post(url)
                .form(&[
                    ("email", format!("user{i}@acme.test")),
                    ("password", "wrong-password-123".into()),
                    ("csrf", csrf),
                ])
                .send()
                .await
                .unwrap()
        }
    });
    let results = futures_join_all(attempts).await;
    let limited: Vec<_> = results.iter().filter(|r| r.status() == 429).collect();
    assert!(
        !limited.is_empty(),
        "statuses: {:?}",
        results.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    assert!(limited
        .iter()
        .all(|r| r.headers().get("retry-after").is_some()));
    assert!(results
        .iter()
        .all(|r| r.status() == 429 || r.status() == 401));
}

async fn futures_join_all<F: std::future::Future<Output = reqwest::Response> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<reqwest::Response> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[test]
fn logs_hold_no_passwords_tokens_or_session_ids() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let mut env: BTreeMap<String, String> = test_env(dir.path(), &url);
    env.insert("GATEHOUSE_LOG".into(), "debug".into());
    let mut cli_env = env.clone();
    cli_env.insert("GH_TEST_PW".into(), PASSWORD.into());
    run_cli(&cli_env, &["org", "create", "acme"]).ok();
    run_cli(
        &cli_env,
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
    let token_out = run_cli(&env, &["scim-token", "issue", "acme"]).ok();
    let token = token_out.stdout.trim().to_string();
    assert!(!token_out.stderr.contains(&token));

    let server = ServeProcess::start(&env);
    let client = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(server.url("/sso/login"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let csrf = form_field(&page, "csrf");
    let res = client
        .post(server.url("/sso/login"))
        .form(&[
            ("email", "alice@acme.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .unwrap();
    let session = set_cookie_blocking(&res, COOKIE);
    client
        .post(server.url("/sso/login"))
        .form(&[
            ("email", "alice@acme.test"),
            ("password", "a-wrong-password-xyz"),
            ("csrf", &csrf),
        ])
        .send()
        .unwrap();
    let logs = server.kill();
    assert!(
        logs.contains("login.password"),
        "sanity: the sign-ins were logged:\n{logs}"
    );
    for secret in [
        PASSWORD,
        "a-wrong-password-xyz",
        token.as_str(),
        session.as_str(),
        TEST_SECRET_KEY,
    ] {
        assert!(
            !logs.contains(secret),
            "`{secret}` appears in the logs:\n{logs}"
        );
    }
}

fn set_cookie_blocking(res: &reqwest::blocking::Response, name: &str) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap()
                .split_once('=')
                .unwrap()
                .1
                .to_string()
        })
        .expect("session cookie")
}

/// SSO enforcement applies to new password sign-ins, not only to sessions alive when it was
/// switched on; break-glass accounts never use this page.
#[tokio::test]
async fn enforcement_refuses_password_sign_in() {
    let app = spawn_app().await;
    app.seed_local_user();
    app.cli_env(
        &[("GH_TEST_PW", PASSWORD)],
        &[
            "user",
            "add",
            "acme",
            "contractor@partner.test",
            "--password-env",
            "GH_TEST_PW",
        ],
    )
    .ok();
    app.cli_ok(&["enforcement", "set", "acme", "domains"]);
    app.cli_ok(&[
        "domain",
        "add",
        "acme",
        "corp.test",
        "--verified",
        "--enforce",
    ]);
    assert_eq!(
        app.login("alice@acme.test", PASSWORD).await.status(),
        303,
        "acme.test is not enforced"
    );
    app.sql("UPDATE domains SET enforce = TRUE WHERE domain = 'acme.test'");
    assert_eq!(app.login("alice@acme.test", PASSWORD).await.status(), 403);
    assert_eq!(
        app.login("contractor@partner.test", PASSWORD)
            .await
            .status(),
        303,
        "contractors outside enforced domains keep passwords"
    );
    app.cli_ok(&["enforcement", "set", "acme", "all"]);
    assert_eq!(
        app.login("contractor@partner.test", PASSWORD)
            .await
            .status(),
        403
    );
    assert!(app
        .cli_ok(&["audit", "list", "acme", "--json"])
        .contains("requires SSO"));
    app.cli_ok(&["enforcement", "set", "acme", "off"]);
    app.sql(
        "UPDATE users SET is_break_glass = TRUE WHERE user_name_folded = 'contractor@partner.test'",
    );
    assert_eq!(
        app.login("contractor@partner.test", PASSWORD)
            .await
            .status(),
        403,
        "break-glass accounts use /sso/breakglass"
    );
}

/// Wrong TOTP codes back off per (admin, address) after five tries.
#[tokio::test]
async fn totp_guessing_backs_off() {
    let app = spawn_app().await;
    app.cli_env(
        &[("GH_TEST_PW", PASSWORD)],
        &[
            "admin",
            "add",
            "guess@example.test",
            "--password-env",
            "GH_TEST_PW",
        ],
    )
    .ok();
    let page = app
        .login("guess@example.test", PASSWORD)
        .await
        .text()
        .await
        .unwrap();
    let (pending, csrf) = (form_field(&page, "pending"), form_field(&page, "csrf"));
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let res = app
            .client
            .post(app.url("/sso/login/totp"))
            .form(&[
                ("pending", pending.as_str()),
                ("csrf", csrf.as_str()),
                ("code", "000000"),
            ])
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(&statuses[..5], &[401; 5]);
    assert!(statuses[5..].contains(&429), "{statuses:?}");
}
