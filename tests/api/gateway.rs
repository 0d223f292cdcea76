//! Forward-auth and the identity the app receives: `/sso/verify` as nginx, Traefik and Caddy
//! call it, the identity headers, the JWT verified by an independent library (PyPI PyJWT)
//! against `/sso/.well-known/jwks.json`, and revocation within a second.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::*;

/// Waits out the identity cache (a revocation takes effect within it).
async fn settle() {
    tokio::time::sleep(gatehouse::gateway::IDENTITY_CACHE + std::time::Duration::from_millis(150))
        .await;
}

/// PyJWT's verdict on a token: the claims, or the error.
fn pyjwt(app: &TestApp, token: &str) -> Result<Value, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(root.join("tests/.venv/bin/python"))
        .arg(root.join("tests/peers/verify_jwt.py"))
        .arg(app.url("/sso/.well-known/jwks.json"))
        .arg(&app.address)
        .arg("gatehouse-app")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tests/.venv (scripts/test installs PyJWT)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn forward_auth_answers_as_each_proxy_expects() {
    // The proxy (here the test itself, on 127.0.0.1) is trusted with X-Forwarded-Host/-Proto.
    let app = spawn_app_with(&[("GATEHOUSE_TRUSTED_PROXIES", "127.0.0.1")]).await;
    // Anonymous API client: 401, with where to sign in.
    let res = browser()
        .get(app.url("/sso/verify"))
        .header("accept", "application/json")
        .header("x-forwarded-uri", "/api/items")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["x-gatehouse-login"]
        .to_str()
        .unwrap()
        .ends_with("/sso/login?return_to=%2Fapi%2Fitems"));
    // A browser behind Traefik or Caddy: the redirect they pass on, back to the app's host.
    let res = browser()
        .get(app.url("/sso/verify"))
        .header("accept", "text/html,application/xhtml+xml")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.acme.test")
        .header("x-forwarded-uri", "/dashboard?tab=2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        app.url("/sso/login?return_to=https%3A%2F%2Fapp.acme.test%2Fdashboard%3Ftab%3D2")
    );
    // nginx auth_request cannot pass a redirect on: 401, and its error_page redirects.
    let res = browser()
        .get(app.url("/sso/verify"))
        .header("accept", "text/html")
        .header("x-original-uri", "/reports")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The JWKS publishes the signing key.
    let jwks: Value = app
        .get("/sso/.well-known/jwks.json")
        .await
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert!(key["d"].is_null(), "never the private part");
}

#[tokio::test]
async fn signed_in_users_get_verifiable_identity_and_revocation_is_immediate() {
    let app = spawn_app().await;
    app.seed_local_user();
    // Provisioning manages alice (SCIM changes only the accounts it owns).
    app.cli_ok(&["user", "set", "acme", "alice@acme.test", "--scim-managed"]);
    app.cli_ok(&["role", "add", "acme", "editor", "--rank", "10"]);
    app.cli_ok(&["role", "map", "acme", "Writers", "editor"]);
    let scim = app.scim("acme");
    let (_, list) = scim
        .get("/Users?filter=userName%20eq%20%22alice@acme.test%22")
        .await;
    let id = list["Resources"][0]["id"].as_str().map(str::to_string);
    let user = signed_in_browser(&app, "alice@acme.test").await;
    let verify = || {
        user.get(app.url("/sso/verify"))
            .header("x-forwarded-uri", "/")
            .send()
    };

    let res = verify().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(h("x-forwarded-user").as_deref(), Some("alice@acme.test"));
    assert_eq!(h("x-forwarded-email").as_deref(), Some("alice@acme.test"));
    assert_eq!(h("x-gatehouse-org").as_deref(), Some("acme"));
    assert_eq!(h("cache-control").as_deref(), Some("no-store"));
    let token = h("x-gatehouse-jwt").unwrap();
    let claims = pyjwt(&app, &token).unwrap();
    assert_eq!(claims["email"], "alice@acme.test");
    assert_eq!(claims["org"], "acme");
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 60);
    let users: Value =
        serde_json::from_str(app.cli_ok(&["user", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(
        claims["sub"], users[0]["id"],
        "sub is the immutable user id"
    );
    // A tampered token fails the independent check.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = parts[1].replace('A', "B");
    assert!(pyjwt(&app, &parts.join(".")).is_err());

    // A group that maps to a role: carried within a second.
    let alice = id.unwrap_or_else(|| users[0]["id"].as_str().unwrap().to_string());
    scim.create_group("Writers", &[&alice]).await;
    settle().await;
    let res = verify().await.unwrap();
    assert_eq!(res.headers()["x-forwarded-role"], "editor");
    assert_eq!(res.headers()["x-forwarded-groups"], "Writers");
    // Deactivated by SCIM: refused within a second.
    let (status, _) = scim
        .patch(
            &format!("/Users/{alice}"),
            patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await;
    assert_eq!(status, 200);
    settle().await;
    assert_eq!(verify().await.unwrap().status(), 401);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Checks the `Cookie` header the app behind the proxy at `base` receives when a browser
/// sends gatehouse's cookies among its own: the app's, never gatehouse's.
async fn check_cookies_reaching_the_app(app: &TestApp, base: &str) {
    let session = session_cookie(app).await;
    let seen: Value = json_answer(browser().get(format!("{base}/reports/q3")).header(
        "cookie",
        format!("gatehouse_login_csrf=c; app_pref=dark; {session}; mygatehouse_x=1; __Host-gatehouse_oidc=o; theme=x"),
    ))
    .await;
    let cookies = seen["headers"]["cookie"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        seen["headers"]["x-forwarded-user"], "alice@acme.test",
        "{seen}"
    );
    assert!(
        !cookies.contains("gatehouse_session")
            && !cookies.contains("gatehouse_login_csrf")
            && !cookies.contains("__Host-gatehouse"),
        "{cookies}"
    );
    for kept in ["app_pref=dark", "mygatehouse_x=1", "theme=x"] {
        assert!(cookies.contains(kept), "{kept} kept: {cookies}");
    }
}

/// Debian's nginx with `auth_request` (the configuration in docs/forward-auth.md) in front of
/// a tiny upstream that echoes the headers it receives.
#[tokio::test]
async fn nginx_auth_request_in_front_of_an_app() {
    let app = spawn_app().await;
    app.seed_local_user();
    let (mut upstream, up_port) = echo_upstream();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = free_port();
    let gh = app.port;
    let config = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  map $http_cookie $gh_cookie1 {{
    default $http_cookie;
    "~^(?<a>.*?)(?:^|; )(?:__Host-)?gatehouse_[A-Za-z_]+=[^;]*(?<b>.*)$" "$a$b";
  }}
  map $gh_cookie1 $gh_cookie2 {{
    default $gh_cookie1;
    "~^(?<a>.*?)(?:^|; )(?:__Host-)?gatehouse_[A-Za-z_]+=[^;]*(?<b>.*)$" "$a$b";
  }}
  map $gh_cookie2 $gh_cookie3 {{
    default $gh_cookie2;
    "~^(?<a>.*?)(?:^|; )(?:__Host-)?gatehouse_[A-Za-z_]+=[^;]*(?<b>.*)$" "$a$b";
  }}
  map $gh_cookie3 $gh_app_cookie {{
    default $gh_cookie3;
    "~^(?<a>.*?)(?:^|; )(?:__Host-)?gatehouse_[A-Za-z_]+=[^;]*(?<b>.*)$" "$a$b";
  }}
  server {{
    listen 127.0.0.1:{port};
    location = /_gatehouse_verify {{
      internal;
      proxy_pass http://127.0.0.1:{gh}/sso/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
    }}
    location /sso/ {{ proxy_pass http://127.0.0.1:{gh}; }}
    location / {{
      auth_request /_gatehouse_verify;
      auth_request_set $gh_user $upstream_http_x_forwarded_user;
      auth_request_set $gh_email $upstream_http_x_forwarded_email;
      auth_request_set $gh_groups $upstream_http_x_forwarded_groups;
      auth_request_set $gh_role $upstream_http_x_forwarded_role;
      auth_request_set $gh_org $upstream_http_x_gatehouse_org;
      auth_request_set $gh_jwt $upstream_http_x_gatehouse_jwt;
      auth_request_set $gh_login $upstream_http_x_gatehouse_login;
      proxy_set_header X-Forwarded-User $gh_user;
      proxy_set_header X-Forwarded-Email $gh_email;
      proxy_set_header X-Forwarded-Groups $gh_groups;
      proxy_set_header X-Forwarded-Role $gh_role;
      proxy_set_header X-Gatehouse-Org $gh_org;
      proxy_set_header X-Gatehouse-Jwt $gh_jwt;
      proxy_set_header Cookie $gh_app_cookie;
      error_page 401 = @gatehouse_login;
      proxy_pass http://127.0.0.1:{up_port};
    }}
    location @gatehouse_login {{ return 302 $gh_login; }}
  }}
}}
"#
    );
    std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
    let mut nginx = Command::new("nginx")
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .arg("-p")
        .arg(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/test installs nginx-light)");
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        ready,
        "nginx did not start: {}",
        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
    );

    // Anonymous: to gatehouse's sign-in page, coming back to the same path.
    let anon = browser();
    let res = anon
        .get(format!("{base}/reports/q3?x=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        app.url("/sso/login?return_to=%2Freports%2Fq3%3Fx%3D1")
    );

    // Signed in (cookies are per host, so the gatehouse session reaches this port too): the
    // app gets gatehouse's headers, never the client's own.
    let user = signed_in_browser(&app, "alice@acme.test").await;
    let seen: Value = json_answer(
        user.get(format!("{base}/reports/q3"))
            .header("x-forwarded-user", "mallory@evil.test")
            .header("x-gatehouse-jwt", "forged"),
    )
    .await;
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-user"], "alice@acme.test", "{seen}");
    assert_eq!(h["x-gatehouse-org"], "acme");
    let claims = pyjwt(&app, h["x-gatehouse-jwt"].as_str().unwrap()).unwrap();
    assert_eq!(claims["email"], "alice@acme.test");
    // gatehouse's cookies (the session opens /sso/admin for org admins) never reach the app;
    // the app's own do, wherever they stand in the header.
    check_cookies_reaching_the_app(&app, &base).await;
    // Revoked: turned away within the identity cache's second.
    app.cli_ok(&["user", "revoke-sessions", "acme", "alice@acme.test"]);
    settle().await;
    let res = user
        .get(format!("{base}/reports/q3"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);

    let _ = nginx.kill();
    let _ = nginx.wait();
    let _ = upstream.kill();
    let _ = upstream.wait();
}

/// Debian's Caddy with `forward_auth` (the configuration in docs/forward-auth.md) in front of
/// the echo upstream: the redirect passed on, the identity headers copied, and the client's own
/// identity headers removed — including the role, which this user does not have (gatehouse
/// answers it empty; `copy_headers` alone would let the client's through).
#[tokio::test]
async fn caddy_forward_auth_in_front_of_an_app() {
    let app = spawn_app().await;
    app.seed_local_user();
    let (mut upstream, up_port) = echo_upstream();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gh = app.port;
    let config = format!(
        r#"{{
    admin off
    auto_https off
}}
http://127.0.0.1:{port} {{
    handle /sso/* {{
        reverse_proxy 127.0.0.1:{gh}
    }}
    handle {{
        route {{
            request_header -X-Forwarded-User
            request_header -X-Forwarded-Email
            request_header -X-Forwarded-Groups
            request_header -X-Forwarded-Role
            request_header -X-Gatehouse-Org
            request_header -X-Gatehouse-Jwt
            forward_auth 127.0.0.1:{gh} {{
                uri /sso/verify
                copy_headers X-Forwarded-User X-Forwarded-Email X-Forwarded-Groups X-Forwarded-Role X-Gatehouse-Org X-Gatehouse-Jwt
            }}
            reverse_proxy 127.0.0.1:{up_port} {{
                header_up Cookie "(?:^|; )(?:__Host-)?gatehouse_[A-Za-z_]+=[^;]*()" "$1"
            }}
        }}
    }}
}}
"#
    );
    std::fs::write(dir.path().join("Caddyfile"), config).unwrap();
    let mut caddy = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.path().join("Caddyfile"))
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("caddy.log")).unwrap())
        .spawn()
        .expect("caddy (scripts/test installs it)");
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        ready,
        "caddy did not start: {}",
        std::fs::read_to_string(dir.path().join("caddy.log")).unwrap_or_default()
    );

    // Anonymous browser: Caddy passes gatehouse's redirect on, back to the same path.
    let res = browser()
        .get(format!("{base}/reports/q3?x=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        app.url("/sso/login?return_to=%2Freports%2Fq3%3Fx%3D1")
    );
    // Anonymous API client: 401, and the app never sees the request.
    let res = browser()
        .get(format!("{base}/api/items"))
        .header("accept", "application/json")
        .header("x-forwarded-user", "mallory@evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Signed in through Caddy's /sso/ route: the app gets gatehouse's headers, never the
    // client's, and no role header at all for a user without a role.
    let user = browser();
    let csrf = csrf_of_url(&user, &format!("{base}/sso/login")).await;
    let res = user
        .post(format!("{base}/sso/login"))
        .form(&[
            ("email", "alice@acme.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let seen: Value = json_answer(
        user.get(format!("{base}/reports/q3"))
            .header("x-forwarded-user", "mallory@evil.test")
            .header("x-forwarded-role", "admin")
            .header("x-gatehouse-jwt", "forged"),
    )
    .await;
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-user"], "alice@acme.test", "{seen}");
    assert_eq!(h["x-gatehouse-org"], "acme");
    assert_eq!(
        h["x-forwarded-role"].as_str().unwrap_or_default(),
        "",
        "only gatehouse's (empty) role reaches the app: {seen}"
    );
    let claims = pyjwt(&app, h["x-gatehouse-jwt"].as_str().unwrap()).unwrap();
    assert_eq!(claims["sub"].as_str().map(str::len), Some(36));
    assert_eq!(claims["email"], "alice@acme.test");
    // gatehouse's cookies never reach the app; the app's own do.
    check_cookies_reaching_the_app(&app, &base).await;

    // Revoked: turned away within the identity cache's second.
    app.cli_ok(&["user", "revoke-sessions", "acme", "alice@acme.test"]);
    settle().await;
    let res = user
        .get(format!("{base}/reports/q3"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let _ = caddy.kill();
    let _ = caddy.wait();
    let _ = upstream.kill();
    let _ = upstream.wait();
}

/// The echo upstream (`tests/peers/echo_upstream.py`): the child and its port.
pub(crate) fn echo_upstream() -> (std::process::Child, u64) {
    echo_upstream_with(&[])
}

/// The echo upstream with arguments (a certificate and key: HTTPS).
fn echo_upstream_with(args: &[&std::path::Path]) -> (std::process::Child, u64) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(root.join("tests/peers/echo_upstream.py"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = serde_json::from_str::<Value>(&line).unwrap()["port"]
        .as_u64()
        .unwrap();
    (child, port)
}

/// `gatehouse_session=…` of a fresh sign-in as alice (for requests that set their own Cookie
/// header, which replaces a client's cookie store).
async fn session_cookie(app: &TestApp) -> String {
    raw_session_cookie(app, "gatehouse_session")
        .await
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The whole `Set-Cookie` value of the session cookie `name` after signing in as alice.
async fn raw_session_cookie(app: &TestApp, name: &str) -> String {
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = plain.get(app.url("/sso/login")).send().await.unwrap();
    let csrf_cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
        .next()
        .unwrap();
    let csrf = form_field(&res.text().await.unwrap(), "csrf");
    let res = plain
        .post(app.url("/sso/login"))
        .header("cookie", csrf_cookie)
        .form(&[
            ("email", "alice@acme.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    set_cookie(&res, name).unwrap_or_else(|| panic!("no {name} cookie: {:?}", res.headers()))
}

/// `cookie_domain`: the session cookie reaches sibling hosts (with `__Secure-`, since
/// `__Host-` forbids a Domain); a domain that is not a parent of the public host is refused.
#[tokio::test]
async fn cookie_domain_shares_the_session_with_sibling_hosts() {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(Backend::Sqlite, data_dir.path()).unwrap();
    let mut env = test_env(data_dir.path(), &database_url);
    env.insert(
        "GATEHOUSE_PUBLIC_URL".into(),
        "https://sso.acme.test".into(),
    );
    env.insert("GATEHOUSE_COOKIE_DOMAIN".into(), "acme.test".into());
    let mut bad = env.clone();
    bad.insert("GATEHOUSE_COOKIE_DOMAIN".into(), "evil.test".into());
    let out = run_cli(&bad, &["config", "check"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("cookie_domain `evil.test`"),
        "{}",
        out.stderr
    );
    let app = spawn_with_env(env, data_dir, database_url).await;
    app.seed_local_user();
    let cookie = raw_session_cookie(&app, "__Secure-gatehouse_session").await;
    for attr in [
        "Domain=acme.test",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
}

async fn proxy_app(upstream: &str) -> TestApp {
    proxy_app_with(upstream, &[]).await
}

/// [`proxy_app`] with more settings.
async fn proxy_app_with(upstream: &str, extra: &[(&str, String)]) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(Backend::Sqlite, data_dir.path()).unwrap();
    let mut env = test_env(data_dir.path(), &database_url);
    env.insert("GATEHOUSE_UPSTREAM".into(), upstream.into());
    env.insert("GATEHOUSE_PUBLIC_PATHS".into(), "/public".into());
    env.insert("GATEHOUSE_ROLE_PATHS".into(), "/admin=admin".into());
    for (name, value) in extra {
        env.insert(name.to_string(), value.clone());
    }
    let app = spawn_with_env(env, data_dir, database_url).await;
    app.seed_local_user();
    app
}

#[tokio::test]
async fn proxy_mode_guards_and_forwards_the_app() {
    let (mut upstream, port) = echo_upstream();
    let app = proxy_app(&format!("http://127.0.0.1:{port}")).await;
    let anon = browser();

    // Not signed in: browsers to the sign-in page, API clients 401; public paths pass.
    let res = anon
        .get(app.url("/dashboard?tab=2"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(
        res.headers()["location"],
        "/sso/login?return_to=%2Fdashboard%3Ftab%3D2"
    );
    let res = anon
        .get(app.url("/api/items"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let seen: Value = json_answer(
        anon.get(app.url("/public/info"))
            .header("x-forwarded-user", "mallory@evil.test"),
    )
    .await;
    assert_eq!(seen["path"], "/public/info");
    assert!(
        seen["headers"]["x-forwarded-user"].is_null(),
        "spoofed identity stripped: {seen}"
    );

    // Signed in: gatehouse's identity, the app's own cookies only, forwarding headers.
    let user = signed_in_browser(&app, "alice@acme.test").await;
    let seen: Value = json_answer(
        user.get(app.url("/dashboard/./x/../y?q=1"))
            .header("x-forwarded-user", "mallory@evil.test")
            .header("x-gatehouse-jwt", "forged")
            .header(
                "cookie",
                format!("app_pref=dark; {}", session_cookie(&app).await),
            )
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "secret")
            .header("x_forwarded_role", "admin")
            .header("x-original-url", "/admin")
            .header("forwarded", "for=6.6.6.6")
            .header("x-real-ip", "6.6.6.6"),
    )
    .await;
    let h = &seen["headers"];
    assert_eq!(seen["path"], "/dashboard/y?q=1", "{seen}");
    assert_eq!(h["x-forwarded-user"], "alice@acme.test");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(
        h["x-hop"].is_null(),
        "hop-by-hop headers named in Connection are dropped"
    );
    for spoofable in [
        "x_forwarded_role",
        "x-original-url",
        "forwarded",
        "x-real-ip",
    ] {
        assert!(
            h[spoofable].is_null(),
            "{spoofable} reached the app: {seen}"
        );
    }
    let cookies = h["cookie"].as_str().unwrap_or_default();
    assert!(
        cookies.contains("app_pref=dark") && !cookies.contains("gatehouse"),
        "{cookies}"
    );
    let claims = pyjwt(&app, h["x-gatehouse-jwt"].as_str().unwrap()).unwrap();
    assert_eq!(claims["org"], "acme");

    // A role rule holds whatever spelling of the path reaches it.
    for path in [
        "/admin",
        "/admin/",
        "//admin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public%2F..%2Fadmin/users",
        "/x/..//admin",
        "/ADMIN/users",
        "/Admin",
    ] {
        let res = user.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 403, "{path}");
    }
    // A path parameter is not a way around the rule: the app sees the `;` encoded.
    let seen: Value = json_answer(user.get(app.url("/admin;x/panel"))).await;
    assert_eq!(seen["path"], "/admin%3Bx/panel");

    // HEAD keeps the app's length; a 103 Early Hints is not taken for the answer (and the
    // next request gets its own answer); `Expect: 100-continue` is gatehouse's to answer.
    let head = user.head(app.url("/report")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(
        head.headers().contains_key("content-length"),
        "{:?}",
        head.headers()
    );
    for i in 0..3 {
        let seen: Value = json_answer(user.get(app.url(&format!("/early-hints/{i}")))).await;
        assert_eq!(seen["path"], format!("/early-hints/{i}"));
        let seen: Value = json_answer(user.get(app.url(&format!("/after/{i}")))).await;
        assert_eq!(seen["path"], format!("/after/{i}"));
    }
    let seen: Value = json_answer(
        user.post(app.url("/form"))
            .header("expect", "100-continue")
            .body("a=1"),
    )
    .await;
    assert_eq!(seen["body"]["size"], 3);
    assert!(seen["headers"]["expect"].is_null());
    assert_eq!(seen["headers"]["content-length"], "3");
    assert_eq!(
        user.get(app.url("/a%5c..%5cadmin"))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    // A large upload goes through streamed (far beyond any buffered body limit).
    let body: Vec<u8> = (0..32 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = hex::encode(openssl::sha::sha256(&body));
    let seen: Value = json_answer(user.post(app.url("/upload")).body(body)).await;
    assert_eq!(seen["body"]["size"], 32 * 1024 * 1024);
    assert_eq!(seen["body"]["sha256"], digest);

    // Revocation: within the identity cache's second.
    app.cli_ok(&["user", "revoke-sessions", "acme", "alice@acme.test"]);
    settle().await;
    let res = user
        .get(app.url("/dashboard"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);

    // The app down: a 502 page, not a hang or a 500.
    let _ = upstream.kill();
    let _ = upstream.wait();
    let res = anon
        .get(app.url("/public/info"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    assert!(res.text().await.unwrap().contains("not reachable"));
}

/// The echo apps' side of a WebSocket: `greeting` first, then each text frame back as
/// `echo:<text>`.
async fn echo_session<S>(mut ws: tokio_tungstenite::WebSocketStream<S>, greeting: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let _ = ws.send(Message::text(greeting)).await;
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(t) = msg {
            if ws
                .send(Message::text(format!("echo:{}", t.as_str())))
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

/// A WebSocket echo app: echoes each text frame as `echo:<text>` and its first frame answers
/// with the identity header it was opened with.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback signature
async fn websocket_echo_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut user = String::new();
                let callback = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                mut res: tokio_tungstenite::tungstenite::handshake::server::Response| {
                    user = req
                        .headers()
                        .get("x-forwarded-user")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("(none)")
                        .to_string();
                    // A subprotocol, when the client offers ours.
                    let offered = req
                        .headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if offered.split(',').any(|p| p.trim() == "superchat") {
                        res.headers_mut()
                            .insert("sec-websocket-protocol", "superchat".parse().unwrap());
                    }
                    Ok(res)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                echo_session(ws, format!("hello {user}")).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn websockets_are_relayed_with_the_identity() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let port = websocket_echo_app().await;
    let app = proxy_app(&format!("http://127.0.0.1:{port}")).await;
    let ws_url = format!("ws://127.0.0.1:{}/ws/chat", app.port);

    // Not signed in: the handshake is refused.
    let refused = tokio_tungstenite::connect_async(ws_url.as_str()).await;
    assert!(refused.is_err(), "anonymous WebSocket must be refused");

    let mut request = ws_url.as_str().into_client_request().unwrap();
    let cookie = format!("{}; other=1", session_cookie(&app).await);
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("x-forwarded-user", "mallory@evil.test".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let next_text =
        |m: tokio_tungstenite::tungstenite::Message| m.into_text().unwrap().as_str().to_string();
    assert_eq!(
        next_text(ws.next().await.unwrap().unwrap()),
        "hello alice@acme.test"
    );
    for i in 0..3 {
        ws.send(tokio_tungstenite::tungstenite::Message::text(format!(
            "ping {i}"
        )))
        .await
        .unwrap();
        assert_eq!(
            next_text(ws.next().await.unwrap().unwrap()),
            format!("echo:ping {i}")
        );
    }
    // A frame larger than actix-ws's 64 KiB default goes through.
    let big = "x".repeat(200 * 1024);
    ws.send(tokio_tungstenite::tungstenite::Message::text(big.clone()))
        .await
        .unwrap();
    assert_eq!(
        next_text(ws.next().await.unwrap().unwrap()),
        format!("echo:{big}")
    );
    ws.close(None).await.unwrap();

    // The subprotocol the app chose reaches the client.
    let mut request = ws_url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", session_cookie(&app).await.parse().unwrap());
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "chat, superchat".parse().unwrap());
    let (mut ws, answer) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(answer.headers()["sec-websocket-protocol"], "superchat");
    assert_eq!(
        next_text(ws.next().await.unwrap().unwrap()),
        "hello alice@acme.test"
    );
    ws.close(None).await.unwrap();
}

/// A private CA and a certificate it issued for 127.0.0.1, written to `dir` as `ca.pem`,
/// `cert.pem` (leaf then CA) and `key.pem`.
fn private_ca(dir: &std::path::Path) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
    use openssl::x509::{X509Builder, X509NameBuilder};
    let name = |cn: &str| {
        let mut n = X509NameBuilder::new().unwrap();
        n.append_entry_by_text("CN", cn).unwrap();
        n.build()
    };
    let build = |subject: &str, key: &PKey<openssl::pkey::Private>, serial: u32| {
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name(subject)).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        b
    };
    let ca_key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut ca = build("gatehouse test CA", &ca_key, 1);
    ca.set_issuer_name(&name("gatehouse test CA")).unwrap();
    ca.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    ca.append_extension(KeyUsage::new().key_cert_sign().crl_sign().build().unwrap())
        .unwrap();
    ca.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let ca = ca.build();
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut leaf = build("127.0.0.1", &key, 2);
    leaf.set_issuer_name(ca.subject_name()).unwrap();
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&leaf.x509v3_context(Some(&ca), None))
        .unwrap();
    leaf.append_extension(san).unwrap();
    leaf.sign(&ca_key, MessageDigest::sha256()).unwrap();
    let leaf = leaf.build();
    let ca_pem = ca.to_pem().unwrap();
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(
        dir.join("cert.pem"),
        [leaf.to_pem().unwrap(), ca_pem].concat(),
    )
    .unwrap();
    std::fs::write(dir.join("key.pem"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
}

/// A WebSocket echo app like [`websocket_echo_app`], over TLS with `dir`'s certificate.
async fn tls_websocket_echo_app(dir: &std::path::Path) -> u16 {
    use tokio_rustls::rustls;
    let certs = rustls_pemfile::certs(&mut std::fs::read(dir.join("cert.pem")).unwrap().as_slice())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key =
        rustls_pemfile::private_key(&mut std::fs::read(dir.join("key.pem")).unwrap().as_slice())
            .unwrap()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                echo_session(ws, "hello over tls".into()).await;
            });
        }
    });
    port
}

/// An `https://` app with a private CA: refused (502) until `GATEHOUSE_UPSTREAM_CA` names the
/// CA; then requests and WebSockets (`wss://` to the app) pass, with the identity.
#[tokio::test]
async fn https_upstream_with_a_private_ca() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let certs = tempfile::tempdir().unwrap();
    private_ca(certs.path());
    let (mut upstream, port) = echo_upstream_with(&[
        &certs.path().join("cert.pem"),
        &certs.path().join("key.pem"),
    ]);
    let upstream_url = format!("https://127.0.0.1:{port}");

    // The public roots only: the app's certificate is not trusted.
    let untrusting = proxy_app(&upstream_url).await;
    let cookie = session_cookie(&untrusting).await;
    let res = reqwest::Client::new()
        .get(untrusting.url("/items"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);

    // A CA file that is not PEM stops the start with the reason.
    std::fs::write(certs.path().join("bad.pem"), "not a certificate").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("serve")
        .env("GATEHOUSE_DATA_DIR", certs.path().join("data"))
        .env("GATEHOUSE_LISTEN", "127.0.0.1:0")
        .env("GATEHOUSE_UPSTREAM", &upstream_url)
        .env("GATEHOUSE_UPSTREAM_CA", certs.path().join("bad.pem"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("holds no PEM certificate"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let ca = [(
        "GATEHOUSE_UPSTREAM_CA",
        certs.path().join("ca.pem").display().to_string(),
    )];
    let app = proxy_app_with(&upstream_url, &ca).await;
    let cookie = session_cookie(&app).await;
    let seen: Value = json_answer(
        reqwest::Client::new()
            .get(app.url("/items?x=1"))
            .header("cookie", &cookie)
            .header("x-forwarded-user", "mallory@evil.test"),
    )
    .await;
    assert_eq!(seen["path"], "/items?x=1");
    assert_eq!(seen["headers"]["x-forwarded-user"], "alice@acme.test");
    assert_eq!(seen["headers"]["host"], format!("127.0.0.1:{port}"));
    let _ = upstream.kill();
    let _ = upstream.wait();
    drop(app);

    // WebSockets: wss:// to the app, same CA setting.
    let ws_port = tls_websocket_echo_app(certs.path()).await;
    let app = proxy_app_with(&format!("https://127.0.0.1:{ws_port}"), &ca).await;
    let mut request = format!("ws://127.0.0.1:{}/ws", app.port)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", session_cookie(&app).await.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let text =
        |m: tokio_tungstenite::tungstenite::Message| m.into_text().unwrap().as_str().to_string();
    assert_eq!(text(ws.next().await.unwrap().unwrap()), "hello over tls");
    ws.send(tokio_tungstenite::tungstenite::Message::text("secure"))
        .await
        .unwrap();
    assert_eq!(text(ws.next().await.unwrap().unwrap()), "echo:secure");
    ws.close(None).await.unwrap();
}

/// The close code a client socket receives within five seconds (`None`: no close frame).
async fn close_code<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), wait)
        .await
        .ok()
        .flatten()
}

/// Findings 14 and 17: a relayed WebSocket is closed with 1008 soon after its session ends
/// (here `user revoke-sessions`), and a handshake from another site's page (its `Origin`, or
/// `Sec-Fetch-Site: cross-site`) is refused.
#[tokio::test]
async fn websockets_end_with_their_session_and_refuse_other_origins() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let port = websocket_echo_app().await;
    let app = proxy_app(&format!("http://127.0.0.1:{port}")).await;
    let ws_url = format!("ws://127.0.0.1:{}/ws/chat", app.port);
    let cookie = session_cookie(&app).await;
    let request = |extra: &[(&'static str, String)]| {
        let mut r = ws_url.as_str().into_client_request().unwrap();
        r.headers_mut().insert("cookie", cookie.parse().unwrap());
        for (k, v) in extra {
            r.headers_mut().insert(*k, v.parse().unwrap());
        }
        r
    };
    for bad in [
        vec![("origin", "https://evil.example".to_string())],
        vec![("origin", "http://127.0.0.1.evil.example".to_string())],
        vec![
            ("origin", app.address.clone()),
            ("sec-fetch-site", "cross-site".to_string()),
        ],
    ] {
        let refused = tokio_tungstenite::connect_async(request(&bad)).await;
        assert!(refused.is_err(), "{bad:?} must be refused");
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request(&[
        ("origin", app.address.clone()),
        ("sec-fetch-site", "same-origin".to_string()),
    ]))
    .await
    .unwrap();
    assert_eq!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .into_text()
            .unwrap()
            .as_str(),
        "hello alice@acme.test"
    );
    // Under a role rule (/admin=admin), a socket lives only while the user has the role.
    app.cli_ok(&["role", "add", "acme", "admin", "--rank", "10"]);
    app.sql("UPDATE users SET app_role = 'admin' WHERE user_name = 'alice@acme.test'");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut r = format!("ws://127.0.0.1:{}/admin/ws", app.port)
        .into_client_request()
        .unwrap();
    r.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut admin_ws, _) = tokio_tungstenite::connect_async(r).await.unwrap();
    admin_ws.next().await.unwrap().unwrap();
    app.sql("UPDATE users SET app_role = NULL WHERE user_name = 'alice@acme.test'");
    assert_eq!(
        close_code(&mut admin_ws).await,
        Some(1008),
        "the admin socket is closed within seconds of losing the role"
    );

    app.cli_ok(&["user", "revoke-sessions", "acme", "alice@acme.test"]);
    assert_eq!(
        close_code(&mut ws).await,
        Some(1008),
        "the socket is closed within seconds of the revocation"
    );
}
