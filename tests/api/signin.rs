//! The sign-in experience over real HTTP: the email-first page, SSO enforcement by domain
//! (a table-driven matrix of mode × domain enforcement × kind of account), local accounts,
//! instance admins, the break-glass page, back-off, no account enumeration, open redirects,
//! and a headless-Chromium run of the password and break-glass pages.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Instant;

use serde_json::Value;

use crate::helpers::*;

/// `/sso/login` with e-mail and password, in a fresh browser.
async fn password_sign_in(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    let client = browser();
    let csrf = csrf_of(app, &client, "/sso/login").await;
    client
        .post(app.url("/sso/login"))
        .form(&[("email", email), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .unwrap()
}

/// `/sso/login` with the e-mail only, in a fresh browser.
async fn email_step(app: &TestApp, email: &str) -> reqwest::Response {
    let client = browser();
    let csrf = csrf_of(app, &client, "/sso/login").await;
    client
        .post(app.url("/sso/login"))
        .form(&[("email", email), ("csrf", &csrf)])
        .send()
        .await
        .unwrap()
}

/// `/sso/breakglass` in the given browser.
pub(crate) async fn breakglass_in(
    app: &TestApp,
    client: &reqwest::Client,
    email: &str,
    password: &str,
    code: &str,
) -> reqwest::Response {
    let csrf = csrf_of(app, client, "/sso/breakglass").await;
    client
        .post(app.url("/sso/breakglass"))
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

pub(crate) struct BreakGlass {
    pub(crate) password: String,
    pub(crate) otpauth: String,
}

/// `gatehouse breakglass set`: the two lines it prints once.
pub(crate) fn set_breakglass(app: &TestApp, email: &str) -> BreakGlass {
    let out = app.cli_ok(&["breakglass", "set", "acme", email]);
    let mut lines = out.lines();
    let password = lines
        .next()
        .unwrap()
        .strip_prefix("password: ")
        .unwrap()
        .to_string();
    let otpauth = lines.next().unwrap().to_string();
    assert!(otpauth.starts_with("otpauth://totp/"), "{out}");
    BreakGlass { password, otpauth }
}

/// Org `acme` (verified acme.test) with a SAML connection whose IdP is unreachable, a local
/// user, a contractor outside the org's domains, a break-glass account and an instance admin.
async fn world(extra_env: &[(&str, &str)]) -> (TestApp, String) {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(Backend::Sqlite, data_dir.path()).unwrap();
    let mut env = test_env(data_dir.path(), &database_url);
    for (k, v) in extra_env {
        env.insert((*k).into(), (*v).into());
    }
    let app = spawn_with_env(env, data_dir, database_url).await;
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
    app.cli_env(
        &[("GH_TEST_PW", PASSWORD)],
        &[
            "admin",
            "add",
            "ops@operator.test",
            "--password-env",
            "GH_TEST_PW",
        ],
    )
    .ok();
    let c = crate::saml::add_saml_connection(
        &app,
        "acme",
        "http://127.0.0.1:1/sso",
        &["--name", "Acme Okta"],
    );
    (app, c["id"].as_str().unwrap().to_string())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Signed in (303 with a session cookie).
    SignedIn,
    /// Password refused: the SSO-required page (403).
    SsoRequired,
    /// Instance admin: the TOTP step (200).
    TotpStep,
}

#[tokio::test]
async fn the_enforcement_matrix() {
    let (app, connection) = world(&[]).await;
    let to_idp = format!("/sso/saml/{connection}/login");
    use Expect::*;
    // (mode, acme.test enforced, alice, contractor, break-glass on /sso/login, admin, email-first)
    let rows = [
        (
            "off",
            false,
            SignedIn,
            SignedIn,
            SsoRequired,
            TotpStep,
            "choice+password",
        ),
        (
            "off",
            true,
            SignedIn,
            SignedIn,
            SsoRequired,
            TotpStep,
            "choice+password",
        ),
        (
            "domains",
            false,
            SignedIn,
            SignedIn,
            SsoRequired,
            TotpStep,
            "choice+password",
        ),
        (
            "domains",
            true,
            SsoRequired,
            SignedIn,
            SsoRequired,
            TotpStep,
            "redirect",
        ),
        (
            "all",
            false,
            SsoRequired,
            SsoRequired,
            SsoRequired,
            TotpStep,
            "redirect",
        ),
        (
            "all",
            true,
            SsoRequired,
            SsoRequired,
            SsoRequired,
            TotpStep,
            "redirect",
        ),
    ];
    for (mode, enforced, alice, contractor, bg_login, admin, email_first) in rows {
        let row = format!("mode={mode} acme.test enforced={enforced}");
        app.cli_ok(&["enforcement", "set", "acme", mode]);
        app.sql(&format!(
            "UPDATE domains SET enforce = {} WHERE domain = 'acme.test'",
            if enforced { "TRUE" } else { "FALSE" }
        ));
        let bg = set_breakglass(&app, "bg@acme.test");

        for (who, expected) in [
            ("alice@acme.test", alice),
            ("contractor@partner.test", contractor),
            ("ops@operator.test", admin),
        ] {
            let res = password_sign_in(&app, who, PASSWORD).await;
            let got = match res.status().as_u16() {
                303 => {
                    assert!(
                        set_cookie(&res, "gatehouse_session").is_some(),
                        "{row} {who}"
                    );
                    SignedIn
                }
                403 => {
                    let page = res.text().await.unwrap();
                    assert!(
                        page.contains("id=\"request-id\""),
                        "{row} {who}: a reference"
                    );
                    assert!(
                        page.contains("requires you to sign in with its identity provider"),
                        "{row} {who}: {page}"
                    );
                    SsoRequired
                }
                200 => {
                    assert!(
                        res.text().await.unwrap().contains("name=\"code\""),
                        "{row} {who}"
                    );
                    TotpStep
                }
                other => panic!("{row} {who}: status {other}"),
            };
            assert_eq!(got, expected, "{row} {who}");
        }

        // The break-glass account never signs in on /sso/login, with its right password.
        let res = password_sign_in(&app, "bg@acme.test", &bg.password).await;
        assert_eq!(res.status(), 403, "{row}");
        assert_eq!(bg_login, SsoRequired);
        // ... and always on /sso/breakglass, whatever the mode.
        let res = breakglass_in(
            &app,
            &browser(),
            "bg@acme.test",
            &bg.password,
            &totp_code(&bg.otpauth, 0),
        )
        .await;
        assert_eq!(res.status(), 303, "{row}: break-glass");
        // Straight to the org's admin pages (emergency access).
        assert_eq!(res.headers()["location"], "/sso/admin/orgs/acme");

        // Email-first routing by domain only.
        let res = email_step(&app, "someone.unknown@acme.test").await;
        match email_first {
            "redirect" => {
                assert_eq!(res.status(), 303, "{row}");
                assert_eq!(res.headers()["location"], to_idp.as_str(), "{row}");
            }
            _ => {
                assert_eq!(res.status(), 200, "{row}");
                let page = res.text().await.unwrap();
                assert_eq!(
                    links(&page, "button sso-connection"),
                    vec![to_idp.clone()],
                    "{row}"
                );
                assert!(page.contains("Continue with Acme Okta"), "{row}");
                assert!(
                    page.contains("use-password"),
                    "{row}: a password link where not enforced"
                );
            }
        }
        // Another domain: the password step, known account or not.
        for email in ["contractor@partner.test", "nobody@partner.test"] {
            let res = email_step(&app, email).await;
            assert_eq!(res.status(), 200, "{row}");
            assert!(
                res.text().await.unwrap().contains("name=\"password\""),
                "{row}"
            );
        }
    }
    // Every refusal is audited with its cause.
    let events = app.cli_ok(&["audit", "list", "acme", "--json"]);
    assert!(
        events.contains("requires SSO for this e-mail domain"),
        "{events}"
    );
    assert!(events.contains("break-glass accounts sign in at /sso/breakglass"));
}

/// A one-shot HTTP listener that captures the body of the first request.
fn webhook_listener() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
        let _ = tx.send(String::from_utf8(body).unwrap());
    });
    (url, rx)
}

#[tokio::test]
async fn break_glass_works_when_the_idp_is_down_and_sso_is_required_for_all() {
    let (hook, received) = webhook_listener();
    let (app, connection) = world(&[
        ("GATEHOUSE_ALERT_WEBHOOK", &hook),
        ("GATEHOUSE_OUTBOUND_ALLOW_PRIVATE", "true"),
    ])
    .await;
    app.cli_ok(&["enforcement", "set", "acme", "all"]);
    let bg = set_breakglass(&app, "bg@acme.test");
    // At most two per org.
    set_breakglass(&app, "bg2@acme.test");
    let third = app.cli(&["breakglass", "set", "acme", "bg3@acme.test"]);
    assert!(!third.status.success());
    assert!(
        third.stderr.contains("already has 2 break-glass accounts"),
        "{}",
        third.stderr
    );
    // SCIM never sees them.
    let scim = app.scim("acme");
    let (_, list) = scim
        .get("/Users?filter=userName%20eq%20%22bg@acme.test%22")
        .await;
    assert_eq!(list["totalResults"], 0);

    // The IdP is down: SSO cannot complete (the start URL points at nothing).
    let res = email_step(&app, "alice@acme.test").await;
    assert_eq!(
        res.headers()["location"],
        format!("/sso/saml/{connection}/login").as_str()
    );

    // Password + TOTP, each code once.
    let me = browser();
    let code = totp_code(&bg.otpauth, 0);
    let res = breakglass_in(&app, &me, "bg@acme.test", &bg.password, &code).await;
    assert_eq!(res.status(), 303);
    let who: Value = json_answer(
        me.get(app.url("/sso/me"))
            .header("accept", "application/json"),
    )
    .await;
    assert_eq!(who["user_name"], "bg@acme.test");
    let res = breakglass_in(&app, &browser(), "bg@acme.test", &bg.password, &code).await;
    assert_eq!(res.status(), 401, "a code is accepted once");
    let res = breakglass_in(&app, &browser(), "bg@acme.test", &bg.password, "000000").await;
    assert_eq!(res.status(), 401);
    // No other account can use the page, not even with its right password.
    let res = breakglass_in(&app, &browser(), "alice@acme.test", PASSWORD, &code).await;
    assert_eq!(res.status(), 401);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("do not match a break-glass account"),
        "{page}"
    );

    // Audited: the use as a warning, each refusal with its cause.
    let events: Value =
        serde_json::from_str(app.cli_ok(&["audit", "list", "acme", "--json"]).trim()).unwrap();
    let of = |action: &str| -> Vec<(String, String)> {
        events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| {
                (
                    e["outcome"].as_str().unwrap().to_string(),
                    e["payload"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let uses = of("login.breakglass");
    assert!(uses.iter().any(|(o, _)| o == "warning"), "{uses:?}");
    assert!(
        uses.iter()
            .any(|(_, p)| p.contains("TOTP code already used")),
        "{uses:?}"
    );
    assert!(
        uses.iter().any(|(_, p)| p.contains("wrong TOTP code")),
        "{uses:?}"
    );
    let all = app.cli_ok(&["audit", "list", "instance", "--json"]);
    assert!(all.contains("not a break-glass account"), "{all}");
    assert!(!all.contains(PASSWORD) && !events.to_string().contains(&bg.password));

    // The alert webhook got the use.
    let body = tokio::task::spawn_blocking(move || {
        received.recv_timeout(std::time::Duration::from_secs(10))
    })
    .await
    .unwrap()
    .expect("alert webhook called");
    let alert: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alert["event"], "breakglass.sign_in");
    assert_eq!(alert["account"], "bg@acme.test");
    assert_eq!(alert["org"], "acme");
}

#[tokio::test]
async fn repeated_failures_back_off_per_account_and_address() {
    let (app, _) = world(&[]).await;
    for _ in 0..5 {
        assert_eq!(
            password_sign_in(&app, "alice@acme.test", "wrong")
                .await
                .status(),
            401
        );
    }
    let res = password_sign_in(&app, "alice@acme.test", PASSWORD).await;
    assert_eq!(res.status(), 429, "even the right password waits");
    assert!(res.headers().contains_key("retry-after"));
    // Another account from the same address is not slowed (no collateral lockout).
    assert_eq!(
        password_sign_in(&app, "contractor@partner.test", PASSWORD)
            .await
            .status(),
        303
    );
    // After the wait, the right password works and clears the count.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        password_sign_in(&app, "alice@acme.test", PASSWORD)
            .await
            .status(),
        303
    );
    assert_eq!(
        password_sign_in(&app, "alice@acme.test", "wrong")
            .await
            .status(),
        401
    );

    // The break-glass page too.
    let bg = set_breakglass(&app, "bg@acme.test");
    for _ in 0..5 {
        let res = breakglass_in(&app, &browser(), "bg@acme.test", "wrong", "000000").await;
        assert_eq!(res.status(), 401);
    }
    let res = breakglass_in(
        &app,
        &browser(),
        "bg@acme.test",
        &bg.password,
        &totp_code(&bg.otpauth, 0),
    )
    .await;
    assert_eq!(res.status(), 429);
}

#[tokio::test]
async fn unknown_emails_and_wrong_passwords_are_indistinguishable() {
    let (app, _) = world(&[]).await;
    let strip = |s: &str, email: &str| {
        s.replace(email, "EMAIL")
            .lines()
            .filter(|l| !l.contains("name=\"csrf\"") && !l.contains("request-id"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut wrong_ms = Vec::new();
    let mut unknown_ms = Vec::new();
    for i in 0..4 {
        let t = Instant::now();
        let wrong = password_sign_in(&app, "alice@acme.test", &format!("wrong {i}")).await;
        wrong_ms.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let unknown = password_sign_in(&app, &format!("nobody{i}@acme.test"), "wrong").await;
        unknown_ms.push(t.elapsed().as_secs_f64());
        assert_eq!(wrong.status(), 401);
        assert_eq!(unknown.status(), 401);
        assert_eq!(
            strip(&wrong.text().await.unwrap(), "alice@acme.test"),
            strip(
                &unknown.text().await.unwrap(),
                &format!("nobody{i}@acme.test")
            )
        );
        // The break-glass page, likewise.
        let a = breakglass_in(&app, &browser(), "alice@acme.test", PASSWORD, "123456").await;
        let b = breakglass_in(&app, &browser(), "nobody@acme.test", PASSWORD, "123456").await;
        assert_eq!(
            (a.status(), b.status()),
            (
                reqwest::StatusCode::UNAUTHORIZED,
                reqwest::StatusCode::UNAUTHORIZED
            )
        );
    }
    // The same work is done for an unknown e-mail (a dummy argon2 hash): not a speed
    // measurement, a check that no branch skips the hashing (which is what leaks).
    wrong_ms.sort_by(f64::total_cmp);
    unknown_ms.sort_by(f64::total_cmp);
    assert!(
        unknown_ms[1] > wrong_ms[1] * 0.3,
        "unknown e-mail answered much faster than a wrong password: {unknown_ms:?} vs {wrong_ms:?}"
    );
}

#[tokio::test]
async fn open_redirects_are_refused() {
    let (app, _) = world(&[("GATEHOUSE_ALLOWED_RETURN_HOSTS", "app.acme.test")]).await;
    for (return_to, expected) in [
        ("//evil.example/x", "/sso/me"),
        ("https://evil.example/", "/sso/me"),
        ("/\\evil.example", "/sso/me"),
        ("/%2F%2Fevil.example", "/sso/me"),
        ("https://app.acme.test.evil.example/", "/sso/me"),
        (
            "https://app.acme.test/dashboard",
            "https://app.acme.test/dashboard",
        ),
        ("/app/home?tab=1", "/app/home?tab=1"),
    ] {
        let client = browser();
        let csrf = csrf_of(&app, &client, "/sso/login").await;
        let res = client
            .post(app.url("/sso/login"))
            .form(&[
                ("email", "alice@acme.test"),
                ("password", PASSWORD),
                ("csrf", &csrf),
                ("return_to", return_to),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{return_to}");
        assert_eq!(res.headers()["location"], expected, "{return_to}");
    }
    // The login page never echoes a foreign return_to into its form.
    let page = app
        .get_html("/sso/login?return_to=https://evil.example/")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("evil.example"));
}

/// Chromium: the email-first page to the password step to `/sso/me`, then the break-glass
/// page, in a real browser (forms, CSRF cookies, redirects).
#[tokio::test]
async fn a_browser_uses_the_password_and_break_glass_pages() {
    let (app, _) = world(&[]).await;
    let bg = set_breakglass(&app, "bg@acme.test");
    let code = totp_code(&bg.otpauth, 0);
    let result = run_browser_script(
        "browser_password.mjs",
        vec![
            app.address.clone(),
            "contractor@partner.test".into(),
            PASSWORD.into(),
            "bg@acme.test".into(),
            bg.password.clone(),
            code,
        ],
        vec![],
    )
    .await;
    assert_eq!(result["password"]["url"], format!("{}/sso/me", app.address));
    assert_eq!(result["password"]["text"], "contractor@partner.test");
    // Emergency access lands on the org's admin pages, which say so.
    assert_eq!(
        result["breakglass"]["url"],
        format!("{}/sso/admin/orgs/acme", app.address)
    );
    assert_eq!(result["breakglass"]["text"], "bg@acme.test");
    assert!(
        result["breakglass"]["emergency"]
            .as_str()
            .unwrap()
            .contains("Emergency access"),
        "{result}"
    );
}
