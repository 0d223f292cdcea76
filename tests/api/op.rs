//! gatehouse as an OpenID Provider (issue 19): the authorization code flow, tokens, userinfo,
//! revocation, introspection, logout and back-channel logout, driven over HTTP as an app's
//! OpenID Connect library and a browser would, with pysaml2 as the customer's IdP.
//!
//! What these tests hold gatehouse to (restated from the OpenID Connect and OAuth specs):
//! an unknown client or unregistered redirect URI never gets a redirect; a code works once,
//! for 60 s, for its client, redirect URI and PKCE verifier, and a second use revokes what the
//! first gave; refresh tokens rotate and a reused one revokes the family; every token dies
//! with the user's gatehouse session; a logout token reaches the app when the session ends.

use std::io::BufRead;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::saml::{self, authn_request_xml, request_id, Setup, IDP_SSO};

pub(crate) const REDIRECT: &str = "https://crm.example.com/cb";
pub(crate) const BYE: &str = "https://crm.example.com/bye";

pub(crate) struct Op {
    pub s: Setup,
    pub client_id: String,
    pub secret: String,
}

pub(crate) async fn op_setup(env_extra: &[(&str, String)], app_extra: &[&str]) -> Op {
    op_setup_on(Backend::Sqlite, env_extra, app_extra)
        .await
        .unwrap()
}

pub(crate) async fn op_setup_on(
    backend: Backend,
    env_extra: &[(&str, String)],
    app_extra: &[&str],
) -> Option<Op> {
    let s = saml::setup_with(backend, &[], env_extra).await?;
    let mut args = vec![
        "app",
        "add",
        "crm",
        "--name",
        "Acme CRM",
        "--redirect-uri",
        REDIRECT,
        "--post-logout-redirect-uri",
        BYE,
        "--json",
    ];
    args.extend_from_slice(app_extra);
    let created: Value = serde_json::from_str(s.app.cli_ok(&args).trim()).unwrap();
    Some(Op {
        client_id: created["client_id"].as_str().unwrap().to_string(),
        secret: created["client_secret"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        s,
    })
}

pub(crate) fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let digest = sha2_256(verifier.as_bytes());
    (
        verifier,
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
    )
}

fn sha2_256(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

pub(crate) fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

pub(crate) fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

impl Op {
    pub(crate) fn authorize_url(&self, extra: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.s.app.url("/sso/oauth2/authorize")).unwrap();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", REDIRECT)
                .append_pair("response_type", "code")
                .append_pair("scope", "openid email profile");
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        url.to_string()
    }

    /// Follows the browser through gatehouse (and pysaml2 when gatehouse sends it to the IdP)
    /// until gatehouse sends it away; returns that location (the app's redirect URI, with
    /// the code or an error). `name_id`/`email` say who signs in at the IdP.
    pub(crate) async fn browse(&self, start: &str, who: &str) -> String {
        let client = &self.s.app.client;
        let mut url = start.to_string();
        for _ in 0..12 {
            let res = client.get(&url).send().await.unwrap();
            assert_eq!(res.status(), 303, "{url}: {}", res.text().await.unwrap());
            let location = res.headers()["location"].to_str().unwrap().to_string();
            if location.starts_with(IDP_SSO) {
                let r = self.s.response(json!({
                    "in_response_to": request_id(&location),
                    "name_id": format!("00u-{who}"),
                    "attributes": {"email": [format!("{who}@acme.test")], "firstName": ["Ann"], "lastName": ["Lee"], "groups": ["Engineering"]},
                }));
                let res = self
                    .s
                    .post_acs(r["saml_response"].as_str().unwrap(), None)
                    .await;
                assert_eq!(res.status(), 303);
                url = self.s.app.url(res.headers()["location"].to_str().unwrap());
            } else if location.starts_with('/') {
                url = self.s.app.url(&location);
            } else if location.starts_with(&self.s.app.address) {
                url = location;
            } else {
                return location;
            }
        }
        panic!("too many redirects from {start}");
    }

    /// Asks for a code with PKCE (and `extra`) in `browser`: the verifier and the answer.
    pub(crate) async fn authorize_with(
        &self,
        browser: &reqwest::Client,
        extra: &[(&str, &str)],
    ) -> (String, reqwest::Response) {
        let (verifier, challenge) = pkce();
        let mut params = extra.to_vec();
        params.extend([
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        let res = browser
            .get(self.authorize_url(&params))
            .send()
            .await
            .unwrap();
        (verifier, res)
    }

    pub(crate) async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let res = reqwest::Client::new()
            .post(self.s.app.url("/sso/oauth2/token"))
            .basic_auth(&self.client_id, Some(&self.secret))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        assert_eq!(res.headers()["cache-control"], "no-store");
        (status, res.json().await.unwrap())
    }

    pub(crate) async fn exchange(&self, code: &str, verifier: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub(crate) async fn refresh(&self, token: &str) -> (u16, Value) {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .await
    }

    pub(crate) async fn userinfo(&self, access_token: &str) -> (u16, Value) {
        let res = reqwest::Client::new()
            .get(self.s.app.url("/sso/oauth2/userinfo"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A full sign-in as `who`: (code exchange answer).
    pub(crate) async fn sign_in(&self, who: &str) -> Value {
        let (verifier, challenge) = pkce();
        let back = self
            .browse(
                &self.authorize_url(&[
                    ("state", "st-1"),
                    ("nonce", "n-1"),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                    ("login_hint", &format!("{who}@acme.test")),
                ]),
                who,
            )
            .await;
        let q = query_of(&back);
        let (status, tokens) = self.exchange(&q["code"], &verifier).await;
        assert_eq!(status, 200, "{tokens}");
        tokens
    }

    pub(crate) fn issuer(&self) -> String {
        self.s.app.url("/sso")
    }

    pub(crate) fn events(&self, action: &str) -> Vec<Value> {
        let all: Value = serde_json::from_str(
            self.s
                .app
                .cli_ok(&["audit", "list", "acme", "--limit", "200", "--json"])
                .trim(),
        )
        .unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == action)
            .cloned()
            .collect()
    }
}

/// Verifies `token` with PyJWT against the JWKS (RS256 or ES256 only).
pub(crate) fn verified_by_pyjwt(op: &Op, token: &str) -> Result<Value, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(root.join("tests/.venv/bin/python"))
        .arg(root.join("tests/peers/verify_jwt.py"))
        .args([
            op.s.app.url("/sso/oauth2/jwks"),
            op.issuer(),
            op.client_id.clone(),
            "RS256,ES256".into(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), token.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// The code flow end to end: discovery, authorize with a login hint straight to the IdP,
/// code with state and iss, PKCE exchange, ID token claims (verified by PyJWT), userinfo,
/// single sign-on for a second authorization, refresh rotation, and the audit trail.
#[tokio::test]
async fn an_app_signs_a_user_in_with_the_code_flow() {
    let op = op_setup(&[], &[]).await;
    let app = &op.s.app;
    app.cli_ok(&["role", "add", "acme", "developer", "--rank", "5"]);
    app.cli_ok(&["role", "map", "acme", "Engineering", "developer"]);

    let d: Value = app
        .get("/sso/.well-known/openid-configuration")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], op.issuer());
    assert_eq!(
        d["authorization_endpoint"],
        app.url("/sso/oauth2/authorize")
    );
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(d["backchannel_logout_session_supported"], true);
    assert_eq!(d["jwks_uri"], app.url("/sso/oauth2/jwks"));

    // login_hint: home-realm discovery goes straight to the org's IdP.
    let (verifier, challenge) = pkce();
    let start = op.authorize_url(&[
        ("state", "xyz"),
        ("nonce", "nonce-1"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
        ("login_hint", "ann@acme.test"),
    ]);
    let first = app.client.get(&start).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let to = first.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with(&format!("/sso/saml/{}/login?return_to=", op.s.connection)),
        "{to}"
    );
    let to_idp = app.client.get(app.url(to)).send().await.unwrap();
    let xml = authn_request_xml(to_idp.headers()["location"].to_str().unwrap());
    assert!(
        !xml.contains(r#"ForceAuthn="true""#),
        "an ordinary sign-in: {xml}"
    );
    let back = op.browse(&start, "ann").await;
    assert!(back.starts_with(REDIRECT), "{back}");
    let q = query_of(&back);
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], op.issuer());
    assert!(q["code"].len() >= 43);

    let (status, tokens) = op.exchange(&q["code"], &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let id_token = tokens["id_token"].as_str().unwrap();
    let claims = verified_by_pyjwt(&op, id_token).unwrap();
    assert_eq!(claims["iss"], op.issuer());
    assert_eq!(claims["aud"], op.client_id);
    assert_eq!(claims["nonce"], "nonce-1");
    assert_eq!(claims["email"], "ann@acme.test");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["org"], "acme");
    assert_eq!(claims["role"], "developer");
    assert_eq!(claims["groups"], json!(["Engineering"]));
    assert_eq!(claims["amr"], json!(["ext"]));
    assert_eq!(claims["name"], "Ann Lee");
    for c in ["sub", "exp", "iat", "auth_time", "at_hash", "sid", "org_id"] {
        assert!(!claims[c].is_null(), "{c} in {claims}");
    }
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 600);
    let sub = claims["sub"].as_str().unwrap().to_string();
    let users: Value =
        serde_json::from_str(app.cli_ok(&["user", "list", "acme", "--json"]).trim()).unwrap();
    assert_eq!(users[0]["id"], sub, "sub is the user's immutable id");
    // The access token is an RFC 9068 JWT.
    let access = tokens["access_token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let at = claims_of(access);
    assert_eq!(at["client_id"], op.client_id);
    assert_eq!(at["sub"], sub);

    let (status, info) = op.userinfo(access).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sub"], sub);
    // Browser apps may call these endpoints from their own origin (never with cookies).
    for path in [
        "/sso/oauth2/token",
        "/sso/oauth2/userinfo",
        "/sso/oauth2/revoke",
    ] {
        let res = reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://spa.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{path}");
        assert_eq!(res.headers()["access-control-allow-origin"], "*");
        assert!(res
            .headers()
            .get("access-control-allow-credentials")
            .is_none());
        assert!(res.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization"));
    }
    let res = reqwest::Client::new()
        .get(app.url("/sso/oauth2/userinfo"))
        .bearer_auth(access)
        .header("origin", "https://spa.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert_eq!(info["email"], "ann@acme.test");
    assert_eq!(info["role"], "developer");

    // A second authorization reuses the live session: no trip to the IdP.
    let (verifier2, challenge2) = pkce();
    let res = app
        .client
        .get(op.authorize_url(&[
            ("code_challenge", &challenge2),
            ("code_challenge_method", "S256"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = res.headers()["location"].to_str().unwrap().to_string();
    assert!(back.starts_with(REDIRECT), "{back}");
    let (status, second) = op.exchange(&query_of(&back)["code"], &verifier2).await;
    assert_eq!(status, 200);
    assert_eq!(
        claims_of(second["id_token"].as_str().unwrap())["sid"],
        claims["sid"]
    );

    // Refresh: rotated; the new ID token keeps auth_time and drops the nonce.
    let (status, refreshed) = op.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_ne!(refreshed["refresh_token"], tokens["refresh_token"]);
    let rc = verified_by_pyjwt(&op, refreshed["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(rc["auth_time"], claims["auth_time"]);
    assert!(rc.get("nonce").is_none());
    let (status, again) = op
        .refresh(refreshed["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(status, 200, "{again}");

    // Audited, with no code or token in any payload; the org's audit page names the app.
    app.add_org_admin("acme", "root@acme.test");
    let admin = signed_in_browser(app, "root@acme.test").await;
    let (status, audit_page) = crate::admin::get(&admin, app, "/sso/admin/orgs/acme/audit").await;
    assert_eq!(status, 200);
    assert!(audit_page.contains("app Acme CRM"), "{audit_page}");
    assert!(!op.events("oauth.authorize").is_empty());
    assert_eq!(op.events("oauth.token").len(), 2);
    assert_eq!(op.events("oauth.refresh").len(), 2);
    let all = app.cli_ok(&["audit", "list", "acme", "--limit", "200", "--json"]);
    for secret in [
        q["code"].as_str(),
        tokens["refresh_token"].as_str().unwrap(),
        access,
        op.secret.as_str(),
    ] {
        assert!(!all.contains(secret));
    }
}

/// What the specs forbid, refused: unknown client and unregistered redirect URI (no
/// redirect), code replay (first tokens revoked), PKCE mismatch, missing PKCE for a public
/// client, wrong secret, expired code, refresh reuse (family revoked), prompt=none without a
/// session, an org-restricted app, and tokens with alg none or HS256.
#[tokio::test]
async fn the_provider_refuses_what_the_specs_forbid() {
    let op = op_setup(&[], &[]).await;
    let app = &op.s.app;

    // No redirect for an unknown client or an unregistered redirect URI.
    for url in [
        op.authorize_url(&[]).replace(&op.client_id, "nosuch"),
        op.authorize_url(&[])
            .replace("crm.example.com%2Fcb", "evil.example%2Fcb"),
        op.authorize_url(&[]).replace("%2Fcb", "%2Fcb%2F.."),
    ] {
        let res = app.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 400, "{url}");
        assert!(res.headers().get("location").is_none());
    }
    // Other errors go back to the app, with state.
    for (extra, error) in [
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("scope", "email")], "invalid_scope"),
        (
            vec![
                ("code_challenge", "abc"),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (vec![("request", "eyJ")], "request_not_supported"),
        (vec![("prompt", "none")], "login_required"),
    ] {
        let mut params = vec![("state", "s1")];
        params.extend(extra.iter().cloned());
        let mut url = op.authorize_url(&params);
        if params.iter().any(|(k, _)| *k == "response_type") {
            url = url.replacen("response_type=code&", "", 1);
        }
        if params.iter().any(|(k, _)| *k == "scope") {
            url = url.replacen("scope=openid+email+profile&", "", 1);
        }
        let res = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{url}");
        let q = query_of(res.headers()["location"].to_str().unwrap());
        assert_eq!(q["error"], error, "{url}");
        assert_eq!(q["state"], "s1");
    }
    // A parameter given twice.
    let dup = format!("{}&client_id={}", op.authorize_url(&[]), op.client_id);
    assert_eq!(app.client.get(&dup).send().await.unwrap().status(), 400);

    // Code replay: refused, and the first exchange's tokens are revoked.
    let (verifier, challenge) = pkce();
    let back = op
        .browse(
            &op.authorize_url(&[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("login_hint", "ann@acme.test"),
            ]),
            "ann",
        )
        .await;
    let code = query_of(&back)["code"].clone();
    // Wrong verifier, wrong redirect URI, wrong secret: refused without using the code up.
    let (status, e) = op.exchange(&code, &pkce().0).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _) = op
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://crm.example.com/other"),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(status, 400);
    let wrong = reqwest::Client::new()
        .post(app.url("/sso/oauth2/token"))
        .basic_auth(&op.client_id, Some("not-the-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    let (status, tokens) = op.exchange(&code, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let (status, e) = op.exchange(&code, &verifier).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    let (status, _) = op.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        status, 400,
        "the replay revoked the first exchange's refresh token"
    );
    let (status, _) = op.userinfo(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 401, "and its access token");

    // Expired code.
    let (verifier, res) = op.authorize_with(&app.client, &[]).await;
    let code = query_of(res.headers()["location"].to_str().unwrap())["code"].clone();
    app.sql("UPDATE oidc_codes SET expires_at = expires_at - 61");
    let (status, e) = op.exchange(&code, &verifier).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_grant")),
        "{e}"
    );

    // Refresh reuse revokes the whole family.
    let t = op.sign_in("ann").await;
    let (status, r1) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    let (status, _) = op.refresh(r1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400, "the newest token of the family died too");
    assert!(op
        .events("oauth.refresh")
        .iter()
        .any(|e| e["payload"].as_str().unwrap().contains("already used")));

    // Forged access tokens: alg none, HS256 keyed with the public JWKS, a bad signature.
    let good = op.sign_in("ann").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let kid = claims_of(&format!("x.{}.y", parts[0]))["kid"].clone();
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
        parts[1]
    );
    let hs = {
        use hmac_sha256_for_test as h;
        let input = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "typ": "at+jwt", "kid": kid})),
            parts[1]
        );
        let jwks = app.get("/sso/oauth2/jwks").await.text().await.unwrap();
        format!("{input}.{}", h(jwks.as_bytes(), input.as_bytes()))
    };
    let mut tampered_claims = claims_of(&good);
    tampered_claims["sub"] = json!("someone-else");
    let tampered = format!("{}.{}.{}", parts[0], b64(&tampered_claims), parts[2]);
    for bad in [none, hs, tampered] {
        let (status, _) = op.userinfo(&bad).await;
        assert_eq!(status, 401, "{bad}");
        let introspected: Value = reqwest::Client::new()
            .post(app.url("/sso/oauth2/introspect"))
            .basic_auth(&op.client_id, Some(&op.secret))
            .form(&[("token", bad.as_str())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(introspected, json!({"active": false}), "{bad}");
    }
    // Nor as an id_token_hint at logout: an unsigned ID token names no session.
    let id_parts: Vec<String> = op.sign_in("ann").await["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .map(str::to_string)
        .collect();
    let unsigned_hint = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        id_parts[1]
    );
    let mut url = url::Url::parse(&app.url("/sso/oauth2/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", &unsigned_hint)
        .append_pair("post_logout_redirect_uri", BYE);
    let res = app.client.get(url.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    assert_eq!(app.me_json().await.status(), 200, "still signed in");

    // A public client must use PKCE; a confidential one cannot skip its secret.
    app.cli_ok(&["app", "add", "spa", "--public", "--redirect-uri", REDIRECT]);
    let spa: Value =
        serde_json::from_str(app.cli_ok(&["app", "show", "spa", "--json"]).trim()).unwrap();
    let url = op
        .authorize_url(&[("state", "p")])
        .replace(&op.client_id, spa["client_id"].as_str().unwrap());
    let res = app.client.get(&url).send().await.unwrap();
    let q = query_of(res.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("PKCE"));
    let no_secret = reqwest::Client::new()
        .post(app.url("/sso/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", &op.client_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(no_secret.status(), 401);

    // An app open to another org only refuses acme's users (after sign-in, back to the app).
    app.cli_ok(&["org", "create", "beta", "--domain", "beta.test"]);
    app.cli_ok(&["app", "update", "crm", "--orgs", "beta"]);
    let (_, res) = op.authorize_with(&app.client, &[("state", "o")]).await;
    let q = query_of(res.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "o");
    // And its refresh tokens stop.
    let (status, _) = op.refresh(r1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
}

fn hmac_sha256_for_test(key: &[u8], msg: &[u8]) -> String {
    use sha2::Digest;
    // HMAC per RFC 2104, spelled out so the test needs no extra crate.
    let mut k = if key.len() > 64 {
        sha2::Sha256::digest(key).to_vec()
    } else {
        key.to_vec()
    };
    k.resize(64, 0);
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = sha2::Sha256::digest([ipad.as_slice(), msg].concat());
    let outer = sha2::Sha256::digest([opad.as_slice(), inner.as_slice()].concat());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(outer)
}

/// A back-channel receiver verifying logout tokens with PyJWT.
pub(crate) struct Receiver {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<Value>,
    pub port: u64,
}

impl Receiver {
    pub(crate) fn start(op: &Op, fail_first: u32) -> Receiver {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(root.join("tests/.venv/bin/python"))
            .arg(root.join("tests/peers/backchannel_receiver.py"))
            .args([
                op.s.app.url("/sso/oauth2/jwks"),
                op.issuer(),
                op.client_id.clone(),
                fail_first.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port = serde_json::from_str::<Value>(&first).unwrap()["port"]
            .as_u64()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        Receiver {
            child,
            lines: rx,
            port,
        }
    }

    /// The next POST the receiver saw, waiting up to `secs` (without blocking the server,
    /// which runs on the test's own runtime).
    pub(crate) async fn next(&self, secs: u64) -> Option<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Ok(v) = self.lines.try_recv() {
                return Some(v);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        None
    }
}

impl Op {
    /// A back-channel receiver (its first `fail_first` POSTs answered 503), set as crm's
    /// back-channel logout URI.
    pub(crate) fn receiver(&self, fail_first: u32) -> Receiver {
        let receiver = Receiver::start(self, fail_first);
        self.s.app.cli_ok(&[
            "app",
            "update",
            "crm",
            "--backchannel-logout-uri",
            &format!("http://127.0.0.1:{}/backchannel", receiver.port),
        ]);
        receiver
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Back-channel logout: a SCIM deactivation, an admin's revoke and a sign-out each end the
/// session, and the app receives a logout token (verified by PyJWT against the JWKS) while its
/// refresh token stops at once; a failing receiver is retried, every attempt audited.
#[tokio::test]
async fn session_ends_reach_the_app_by_back_channel_logout() {
    let mut op = op_setup(&[("GATEHOUSE_OUTBOUND_ALLOW_PRIVATE", "true".into())], &[]).await;
    let receiver = op.receiver(1);
    let _ = &mut op;

    // 1. SCIM deactivation.
    let t = op.sign_in("ann").await;
    let sid = claims_of(t["id_token"].as_str().unwrap())["sid"].clone();
    let sub = claims_of(t["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_string();
    let scim = op.s.app.scim("acme");
    let (status, _) = scim
        .patch(
            &format!("/Users/{sub}"),
            patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await;
    assert_eq!(status, 200);
    let (status, e) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400, "the refresh token stops at once: {e}");
    let (status, _) = op.userinfo(t["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 401);
    // The receiver fails the first POST; gatehouse retries after its back-off.
    let failed = receiver.next(10).await.expect("a first delivery");
    assert_eq!(failed["error"], "told to fail");
    op.s.app
        .sql("UPDATE oidc_logouts SET next_attempt_at = 0 WHERE sent_at IS NULL");
    let got = receiver.next(10).await.expect("a retried delivery");
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["claims"]["sid"], sid);
    assert_eq!(got["claims"]["sub"], sub);
    let attempts = op.events("oauth.backchannel_logout");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert!(attempts.iter().any(|e| e["outcome"] == "failure"));
    assert!(attempts
        .iter()
        .any(|e| e["payload"].as_str().unwrap().contains("deactivated")));

    // 2. An admin's revoke of the user's sessions (CLI).
    let (_, _) = scim
        .patch(
            &format!("/Users/{sub}"),
            patch_op(json!([{"op": "replace", "path": "active", "value": true}])),
        )
        .await;
    let t = op.sign_in("ann").await;
    let sid = claims_of(t["id_token"].as_str().unwrap())["sid"].clone();
    op.s.app
        .cli_ok(&["user", "revoke-sessions", "acme", "ann@acme.test"]);
    let (status, _) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    let got = receiver
        .next(10)
        .await
        .expect("a delivery after the revoke");
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["claims"]["sid"], sid);

    // 3. RP-initiated logout with id_token_hint: back to the registered URI with state; the
    //    app's back channel hears of it too.
    let t = op.sign_in("ann").await;
    let sid = claims_of(t["id_token"].as_str().unwrap())["sid"].clone();
    let mut url = url::Url::parse(&op.s.app.url("/sso/oauth2/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", t["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", BYE)
        .append_pair("state", "bye-1");
    let res = op.s.app.client.get(url.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], format!("{BYE}?state=bye-1"));
    let (status, _) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    let got = receiver
        .next(10)
        .await
        .expect("a delivery after the sign-out");
    assert_eq!(got["claims"]["sid"], sid);

    // An unregistered post-logout URI is refused without a redirect; no hint → confirm first.
    let t = op.sign_in("ann").await;
    let mut url = url::Url::parse(&op.s.app.url("/sso/oauth2/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", t["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", "https://evil.example/");
    let res = op.s.app.client.get(url.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    let res =
        op.s.app
            .client
            .get(op.s.app.url("/sso/oauth2/logout"))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Sign out?"));
    let (status, _) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "a link alone signs nobody out");

    // The app's page lists its recent sign-ins and what became of them.
    let ops = crate::admin::instance_admin(&op.s.app, 0).await;
    let (status, page) = crate::admin::get(&ops, &op.s.app, "/sso/admin/apps/crm").await;
    assert_eq!(status, 200);
    assert!(page.contains(&op.issuer()), "{page}");
    let table = &page[page.find("id=\"sign-ins\"").expect("a sign-ins table")..];
    assert_eq!(table.matches("ann@acme.test").count(), 4, "{table}");
    assert!(
        table.contains("signed out") && table.contains("signed in"),
        "{table}"
    );
}

/// A relying-party program from another project, driven over its stdio line protocol.
pub(crate) struct Peer {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Peer {
    pub(crate) fn start(program: &std::path::Path, args: &[String]) -> Peer {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(program)
            .args(args)
            .current_dir(root.join("tests/peers"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            child,
            stdin,
            lines: rx,
        }
    }

    /// The program's next JSON line (waiting without blocking the server's runtime).
    pub(crate) async fn next(&mut self, secs: u64) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = self.lines.try_recv() {
                return serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the relying party exited with {status} (its stderr is above)");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the relying party said nothing for {secs} s");
    }

    pub(crate) fn send(&mut self, line: &str) {
        std::io::Write::write_all(&mut self.stdin, format!("{line}\n").as_bytes()).unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// npm openid-client v6, a certified relying-party library, as a public client (PKCE, no
/// secret): discovery, code + PKCE + nonce + state, the ID token validated by the library,
/// userinfo, refresh, and RP-initiated logout back to the registered URI.
#[tokio::test]
async fn openid_client_signs_in_refreshes_and_logs_out() {
    let op = op_setup(&[], &["--public"]).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rp = Peer::start(
        std::path::Path::new("node"),
        &[
            root.join("tests/peers/rp_openid_client.mjs")
                .display()
                .to_string(),
            op.issuer(),
            op.client_id.clone(),
            REDIRECT.into(),
            BYE.into(),
        ],
    );
    let start = rp.next(30).await;
    let back = op.browse(start["authorize"].as_str().unwrap(), "ann").await;
    rp.send(&back);
    let out = rp.next(30).await;
    assert_eq!(out["claims"]["email"], "ann@acme.test", "{out}");
    assert_eq!(out["claims"]["org"], "acme");
    assert_eq!(out["userinfo"]["sub"], out["claims"]["sub"]);
    assert_eq!(out["refreshed_claims"]["sub"], out["claims"]["sub"]);
    assert_eq!(out["rotated"], true);
    let res =
        op.s.app
            .client
            .get(out["end_session"].as_str().unwrap())
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], format!("{BYE}?state=bye-state"));
    assert_eq!(op.s.app.me_json().await.status(), 401, "signed out");
}

/// PyPI Authlib as a confidential client with client_secret_basic: code + PKCE, the ID token
/// validated by Authlib (nonce, at_hash), userinfo, refresh, introspection and revocation.
#[tokio::test]
async fn authlib_signs_in_as_a_confidential_client() {
    let op = op_setup(&[], &[]).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rp = Peer::start(
        &root.join("tests/.venv/bin/python"),
        &[
            root.join("tests/peers/rp_authlib.py").display().to_string(),
            op.issuer(),
            op.client_id.clone(),
            op.secret.clone(),
            REDIRECT.into(),
        ],
    );
    let start = rp.next(30).await;
    let back = op.browse(start["authorize"].as_str().unwrap(), "ann").await;
    rp.send(&back);
    let out = rp.next(30).await;
    assert_eq!(out["claims"]["email"], "ann@acme.test", "{out}");
    assert_eq!(out["userinfo"]["org"], "acme");
    assert_eq!(out["rotated"], true);
    assert_eq!(out["introspected"]["active"], true);
    assert_eq!(out["introspected"]["client_id"], op.client_id);
    assert_eq!(out["revoked"], 200);
    assert_eq!(out["after_revoke"], "invalid_grant");
    assert_eq!(op.events("oauth.revoke").len(), 1);
}

/// What anonymous authorization requests and finished sign-ins leave behind is purged once
/// nothing can use it: waiting requests, codes, ended grants with their refresh tokens.
#[tokio::test]
async fn what_the_provider_keeps_is_purged() {
    let op = op_setup(&[], &[]).await;
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..30 {
        let res = anonymous.get(op.authorize_url(&[])).send().await.unwrap();
        assert_eq!(res.status(), 303);
    }
    let t = op.sign_in("ann").await;
    op.s.app
        .cli_ok(&["user", "revoke-sessions", "acme", "ann@acme.test"]);
    let db = op.s.app.db();
    let count = |table: &str| -> i64 {
        use diesel::prelude::*;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = db.conn().unwrap();
        diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result::<N>(&mut *c)
            .unwrap()
            .n
    };
    assert_eq!(count("oidc_auth_requests"), 31);
    let now = gatehouse::clock::now();
    // The sweep (here, or the server's own, whichever runs first) ends the revoked session's
    // grant.
    gatehouse::provider::logout::sweep(&mut db.conn().unwrap(), now).unwrap();
    let p = gatehouse::sso::purge::all(&db, now).await.unwrap();
    assert_eq!(p.provider, 0, "nothing goes before it expires: {p:?}");
    let p = gatehouse::sso::purge::all(&db, now + 7200).await.unwrap();
    assert!(p.provider >= 33, "{p:?}");
    for table in [
        "oidc_auth_requests",
        "oidc_codes",
        "oidc_grants",
        "oidc_refresh_tokens",
    ] {
        assert_eq!(count(table), 0, "{table}");
    }
    let (status, _) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
}

/// `prompt=login` and `max_age` ask for a new sign-in even with a live session (and
/// `auth_time` says when it happened); `organization` goes straight to that org's IdP; an app
/// can have ES256 ID tokens; a sign-in request works once.
#[tokio::test]
async fn prompts_hints_and_es256() {
    let op = op_setup(&[], &["--id-token-alg", "ES256"]).await;
    let app = &op.s.app;
    let t = op.sign_in("ann").await;
    let id_token = t["id_token"].as_str().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id_token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    let first = verified_by_pyjwt(&op, id_token).unwrap();

    // A live session, but prompt=login and max_age=0 want a new sign-in.
    for extra in [("prompt", "login"), ("max_age", "0")] {
        let (verifier, challenge) = pkce();
        let start = op.authorize_url(&[
            extra,
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let res = app.client.get(&start).send().await.unwrap();
        assert_eq!(res.status(), 303);
        let to = res.headers()["location"].to_str().unwrap().to_string();
        assert!(
            to.starts_with("/sso/login?return_to=%2Fsso%2Foauth2%2Fcontinue%2F"),
            "{extra:?}: {to}"
        );
        // The e-mail page; the sign-in goes to the IdP and comes back with a new session.
        let choices = app
            .sso_choices(
                "ann@acme.test",
                &url::form_urlencoded::parse(to.split_once('?').unwrap().1.as_bytes())
                    .find(|(k, _)| k == "return_to")
                    .unwrap()
                    .1,
            )
            .await;
        assert_eq!(choices.len(), 1);
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        // The IdP is asked to authenticate again (a live IdP session must not answer).
        let to_idp = app.client.get(app.url(&choices[0])).send().await.unwrap();
        let idp_url = to_idp.headers()["location"].to_str().unwrap().to_string();
        let xml = authn_request_xml(&idp_url);
        assert!(xml.contains(r#"ForceAuthn="true""#), "{xml}");
        // An IdP that answers from its own session anyway (an AuthnInstant from before the
        // app's request) is refused: the app asked for a new sign-in.
        let stale = op.s.response(json!({
            "in_response_to": request_id(&idp_url),
            "name_id": "00u-ann",
            "authn_instant_offset": -600,
        }));
        let res =
            op.s.post_acs(stale["saml_response"].as_str().unwrap(), None)
                .await;
        assert_eq!(res.status(), 400, "{extra:?}");
        let refusal = op.events("login.saml");
        assert!(
            refusal[0]["payload"]
                .as_str()
                .unwrap()
                .contains("answered from its session"),
            "{:?}",
            refusal[0]
        );
        let back = op.browse(&app.url(&choices[0]), "ann").await;
        let q = query_of(&back);
        let (status, t2) = op.exchange(&q["code"], &verifier).await;
        assert_eq!(status, 200, "{t2}");
        let c = claims_of(t2["id_token"].as_str().unwrap());
        assert!(
            c["auth_time"].as_i64() > first["auth_time"].as_i64(),
            "{extra:?}: a new sign-in"
        );
        // The continue URL works once.
        let cont = url::form_urlencoded::parse(to.split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == "return_to")
            .unwrap()
            .1
            .into_owned();
        let again = app.client.get(app.url(&cont)).send().await.unwrap();
        assert_eq!(again.status(), 400);
        assert!(again
            .text()
            .await
            .unwrap()
            .contains("already used or it expired"));
    }
    // max_age the session satisfies: a code at once.
    let (_, res) = op.authorize_with(&app.client, &[("max_age", "3600")]).await;
    assert!(res.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(REDIRECT));

    // organization=<slug> from a fresh browser: straight to the org's IdP.
    let (_, res) = op
        .authorize_with(&browser(), &[("organization", "acme")])
        .await;
    let to = res.headers()["location"].to_str().unwrap();
    assert!(
        to.starts_with(&format!("/sso/saml/{}/login", op.s.connection)),
        "{to}"
    );
}

/// The same on PostgreSQL: exchange, refresh rotation and reuse, code replay, and the sweep
/// that ends a deactivated user's grants and queues the back-channel logout.
#[tokio::test]
async fn the_provider_on_postgres() {
    let Some(op) = op_setup_on(
        Backend::Postgres,
        &[],
        &[
            "--backchannel-logout-uri",
            "https://crm.example.com/backchannel",
        ],
    )
    .await
    else {
        return;
    };
    // A NUL anywhere is a bad request, not a database error.
    let res = op.s.app.get("/sso/oauth2/authorize?client_id=%00").await;
    assert_eq!(res.status(), 400);
    let res =
        op.s.app
            .client
            .get(op.authorize_url(&[("state", "a\0b")]))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 400);
    let res = reqwest::Client::new()
        .post(op.s.app.url("/sso/oauth2/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", "a\0"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let t = op.sign_in("ann").await;
    let (status, r1) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{r1}");
    let (status, _) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    let (status, _) = op.refresh(r1["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400, "family revoked");
    let t = op.sign_in("ann").await;
    let (status, info) = op.userinfo(t["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{info}");
    let sub = claims_of(t["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) =
        op.s.app
            .scim("acme")
            .patch(
                &format!("/Users/{sub}"),
                patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
            )
            .await;
    assert_eq!(status, 200);
    let (status, _) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    let db = op.s.app.db();
    gatehouse::provider::logout::sweep(&mut db.conn().unwrap(), gatehouse::clock::now()).unwrap();
    let queued: Vec<String> = {
        use diesel::prelude::*;
        use gatehouse::db::schema::oidc_logouts;
        oidc_logouts::table
            .select(oidc_logouts::cause)
            .load(&mut *db.conn().unwrap())
            .unwrap()
    };
    assert_eq!(queued, vec!["the user was deactivated".to_string()]);
    let p = gatehouse::sso::purge::all(&db, gatehouse::clock::now() + 7200)
        .await
        .unwrap();
    assert!(p.provider > 0, "{p:?}");
}

/// Claims follow the scope (`email` for e-mail, `profile` for names), and an e-mail outside
/// the user's org's verified domains is never given as the user's: another org's user named
/// `ann@acme.test` gets neither `email` nor an e-mail-shaped `preferred_username`, so an app
/// that matches accounts by e-mail cannot be led into acme's ann.
#[tokio::test]
async fn claims_follow_the_scope_and_only_verified_emails() {
    let op = op_setup(&[], &[]).await;
    let app = &op.s.app;
    // acme's ann with scope=openid only: no e-mail, no names; org and role always.
    let (verifier, challenge) = pkce();
    let back = op
        .browse(
            &op.authorize_url(&[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("login_hint", "ann@acme.test"),
            ])
            .replace("scope=openid+email+profile", "scope=openid"),
            "ann",
        )
        .await;
    let (_, t) = op.exchange(&query_of(&back)["code"], &verifier).await;
    let c = claims_of(t["id_token"].as_str().unwrap());
    assert!(c.get("email").is_none() && c.get("name").is_none(), "{c}");
    assert_eq!(c["org"], "acme");
    let (_, info) = op.userinfo(t["access_token"].as_str().unwrap()).await;
    assert!(info.get("email").is_none(), "{info}");

    // beta's user who calls herself ann@acme.test.
    app.cli_ok(&["org", "create", "beta", "--domain", "beta.test"]);
    app.cli_env(
        &[("GH_TEST_PW", PASSWORD)],
        &[
            "user",
            "add",
            "beta",
            "ann@acme.test",
            "--password-env",
            "GH_TEST_PW",
        ],
    )
    .ok();
    let mallory = browser();
    let csrf = csrf_of(app, &mallory, "/sso/login").await;
    let res = mallory
        .post(app.url("/sso/login"))
        .form(&[
            ("email", "ann@acme.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (verifier, res) = op.authorize_with(&mallory, &[]).await;
    let to = res.headers()["location"].to_str().unwrap().to_string();
    let (status, t) = op.exchange(&query_of(&to)["code"], &verifier).await;
    assert_eq!(status, 200, "{t}");
    let c = claims_of(t["id_token"].as_str().unwrap());
    assert_eq!(c["org"], "beta");
    assert!(c.get("email").is_none(), "{c}");
    assert!(c.get("preferred_username").is_none(), "{c}");
    let (_, info) = op.userinfo(t["access_token"].as_str().unwrap()).await;
    assert!(
        info.get("email").is_none() && info.get("preferred_username").is_none(),
        "{info}"
    );
    let introspected: Value = reqwest::Client::new()
        .post(app.url("/sso/oauth2/introspect"))
        .basic_auth(&op.client_id, Some(&op.secret))
        .form(&[("token", t["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true);
    assert!(introspected["username"].is_null(), "{introspected}");
}

/// A refused refresh (a wider scope) leaves the refresh token as it was (RFC 6749 §5.2): the
/// retry works and does not count as reuse.
#[tokio::test]
async fn a_refused_refresh_keeps_the_token() {
    let op = op_setup(&[], &[]).await;
    let t = op.sign_in("ann").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let (status, e) = op
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "openid offline_access"),
        ])
        .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_scope")));
    let (status, e) = op.refresh(rt).await;
    assert_eq!(status, 200, "{e}");
}

/// Signing in again in the same browser (one app's prompt=login) keeps the user's other
/// apps signed in: their grants move to the new session.
#[tokio::test]
async fn a_new_sign_in_keeps_the_other_apps_signed_in() {
    let op = op_setup(&[("GATEHOUSE_OUTBOUND_ALLOW_PRIVATE", "true".into())], &[]).await;
    let app = &op.s.app;
    let receiver = op.receiver(0);
    let t = op.sign_in("ann").await;
    let sid1 = claims_of(t["id_token"].as_str().unwrap())["sid"].clone();
    let (verifier, challenge) = pkce();
    let start = op.authorize_url(&[
        ("prompt", "login"),
        ("login_hint", "ann@acme.test"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let back = op.browse(&start, "ann").await;
    let (status, t2) = op.exchange(&query_of(&back)["code"], &verifier).await;
    assert_eq!(status, 200);
    let sid2 = claims_of(t2["id_token"].as_str().unwrap())["sid"].clone();
    let (status, e) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "the first sign-in's tokens still work: {e}");
    // And they still end with the (new) session; the app hears of both its sessions.
    app.cli_ok(&["user", "revoke-sessions", "acme", "ann@acme.test"]);
    let (status, _) = op.refresh(e["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    let mut sids = vec![
        receiver.next(10).await.expect("a logout")["claims"]["sid"].clone(),
        receiver.next(10).await.expect("a second logout")["claims"]["sid"].clone(),
    ];
    sids.sort_by_key(|v| v.to_string());
    let mut want = vec![sid1, sid2];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(sids, want);
}

/// A redirect URI the operator removed gets no code from a request that was already waiting;
/// a disabled app's post-logout redirect is not followed; a continue URL works only in the
/// browser that started the request (another signed-in browser cannot finish it for its own
/// account: login CSRF).
#[tokio::test]
async fn removed_uris_disabled_apps_and_other_browsers_get_nothing() {
    let op = op_setup(&[], &[]).await;
    let app = &op.s.app;
    let continue_of = |to: &str| {
        url::form_urlencoded::parse(to.split_once('?').unwrap().1.as_bytes())
            .find(|(k, _)| k == "return_to")
            .unwrap()
            .1
            .into_owned()
    };
    // Another browser, signed in as someone else, opens the victim's continue URL.
    app.cli_ok(&["org", "create", "beta", "--domain", "beta.test"]);
    app.cli_env(
        &[("GH_TEST_PW", PASSWORD)],
        &[
            "user",
            "add",
            "beta",
            "mallory@beta.test",
            "--password-env",
            "GH_TEST_PW",
        ],
    )
    .ok();
    let victim = browser();
    let (_, res) = op
        .authorize_with(&victim, &[("state", "victim-state")])
        .await;
    let cont = continue_of(res.headers()["location"].to_str().unwrap());
    let attacker = signed_in_browser(app, "mallory@beta.test").await;
    let res = attacker.get(app.url(&cont)).send().await.unwrap();
    assert_eq!(res.status(), 400, "{:?}", res.headers().get("location"));

    // A request waiting while its redirect URI is removed.
    let (_, res) = op
        .authorize_with(&app.client, &[("login_hint", "ann@acme.test")])
        .await;
    assert_eq!(res.status(), 303);
    app.cli_ok(&[
        "app",
        "update",
        "crm",
        "--redirect-uri",
        "https://crm.example.com/new",
    ]);
    let cont = continue_of(res.headers()["location"].to_str().unwrap());
    op.s.app.sql("SELECT 1");
    let t_back = {
        // Sign in (SAML) as the browser would, then come back to the continue URL.
        let to = res.headers()["location"].to_str().unwrap().to_string();
        let r = app.client.get(app.url(&to)).send().await.unwrap();
        let idp = r.headers()["location"].to_str().unwrap().to_string();
        let saml = op.s.response(json!({"in_response_to": request_id(&idp)}));
        let acs =
            op.s.post_acs(saml["saml_response"].as_str().unwrap(), None)
                .await;
        let done = app
            .client
            .get(app.url(acs.headers()["location"].to_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(done.headers()["location"].to_str().unwrap(), cont);
        app.client.get(app.url(&cont)).send().await.unwrap()
    };
    assert_eq!(
        t_back.status(),
        400,
        "{:?}",
        t_back.headers().get("location")
    );

    // A disabled app's post-logout redirect is not followed.
    app.cli_ok(&["app", "update", "crm", "--redirect-uri", REDIRECT]);
    let t = op.sign_in("ann").await;
    app.cli_ok(&["app", "update", "crm", "--disable"]);
    let mut url = url::Url::parse(&app.url("/sso/oauth2/logout")).unwrap();
    url.query_pairs_mut()
        .append_pair("id_token_hint", t["id_token"].as_str().unwrap())
        .append_pair("post_logout_redirect_uri", BYE);
    let res = app.client.get(url.as_str()).send().await.unwrap();
    assert_eq!(res.status(), 400, "{:?}", res.headers().get("location"));
    assert!(res.headers().get("location").is_none());
}

/// The purge finishes however many rows there are, drops grants whose code was never
/// redeemed, and keeps a revoked grant while its session lives, so the app still gets its
/// back-channel logout when the session ends.
#[tokio::test]
async fn the_purge_is_complete_and_keeps_what_a_logout_needs() {
    let op = op_setup(
        &[],
        &[
            "--backchannel-logout-uri",
            "https://crm.example.com/backchannel",
        ],
    )
    .await;
    let app = &op.s.app;
    let shown: Value =
        serde_json::from_str(app.cli_ok(&["app", "show", "crm", "--json"]).trim()).unwrap();
    let app_id = shown["id"].as_str().unwrap();
    let rows: Vec<String> = (0..2500)
        .map(|i| format!("('h{i}', '{app_id}', '{REDIRECT}', 'openid', 'b', 0, 1)"))
        .collect();
    app.sql(&format!(
        "INSERT INTO oidc_auth_requests (id_hash, app_id, redirect_uri, scope, browser_hash, created_at, expires_at) VALUES {}",
        rows.join(",")
    ));
    // A grant revoked by refresh-token reuse while its session lives on.
    let t = op.sign_in("ann").await;
    let (status, _) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let (status, _) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 400);
    // An authorization whose code is never redeemed.
    let (_, res) = op.authorize_with(&app.client, &[]).await;
    assert!(res.headers()["location"]
        .to_str()
        .unwrap()
        .contains("code="));
    let db = app.db();
    let count = |sql: &str| -> i64 {
        use diesel::prelude::*;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(sql)
            .get_result::<N>(&mut *db.conn().unwrap())
            .unwrap()
            .n
    };
    assert_eq!(count("SELECT COUNT(*) AS n FROM oidc_grants"), 2);
    let later = gatehouse::clock::now() + 7200;
    // The session outlives the purge's clock here (its idle limit is moved out of the way).
    app.sql("UPDATE sessions SET idle_timeout_secs = 86400, expires_at = expires_at + 86400");
    gatehouse::sso::purge::all(&db, later).await.unwrap();
    assert_eq!(count("SELECT COUNT(*) AS n FROM oidc_auth_requests"), 0);
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM oidc_grants"),
        1,
        "the unredeemed grant went; the revoked one stays while its session lives"
    );
    app.cli_ok(&["user", "revoke-sessions", "acme", "ann@acme.test"]);
    gatehouse::provider::logout::sweep(&mut db.conn().unwrap(), gatehouse::clock::now()).unwrap();
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM oidc_logouts"),
        1,
        "the app hears of it"
    );
}

/// A slow back-channel endpoint delays only its own app: another app's logout arrives at
/// once, and the sweep goes on.
#[tokio::test]
async fn a_slow_back_channel_endpoint_delays_no_one_else() {
    let op = op_setup(&[("GATEHOUSE_OUTBOUND_ALLOW_PRIVATE", "true".into())], &[]).await;
    let app = &op.s.app;
    let receiver = op.receiver(0);
    // An endpoint that accepts connections and never answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hang.accept().await {
            held.push(socket);
        }
    });
    let slow: Value = serde_json::from_str(
        app.cli_ok(&[
            "app",
            "add",
            "slow",
            "--redirect-uri",
            REDIRECT,
            "--backchannel-logout-uri",
            &format!("http://127.0.0.1:{hang_port}/backchannel"),
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let slow_id = slow["client_id"].as_str().unwrap();
    // Signed in to the slow app, then signed out: its delivery hangs.
    let _ = op.sign_in("ann").await;
    let (_, challenge) = pkce();
    let res = app
        .client
        .get(
            op.authorize_url(&[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .replace(&op.client_id, slow_id),
        )
        .send()
        .await
        .unwrap();
    assert!(res.headers()["location"]
        .to_str()
        .unwrap()
        .contains("code="));
    app.cli_ok(&["user", "revoke-sessions", "acme", "ann@acme.test"]);
    let first = receiver.next(10).await.expect("crm's first logout");
    assert_eq!(first["ok"], true);
    // A backlog of the slow app's deliveries, all due.
    let slow_row: Value =
        serde_json::from_str(app.cli_ok(&["app", "show", "slow", "--json"]).trim()).unwrap();
    let org_id = app.first_org_id();
    let rows: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "('l{i}', '{}', 's{i}', 'sid{i}', '{org_id}', 'u', 'test', 0, 0, 0)",
                slow_row["id"].as_str().unwrap()
            )
        })
        .collect();
    app.sql(&format!(
        "INSERT INTO oidc_logouts (id, app_id, session_hash, sid, org_id, user_id, cause, created_at, attempts, next_attempt_at) VALUES {}",
        rows.join(",")
    ));
    // A new session signed in to crm only, signed out while the slow delivery still hangs.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let _ = op.sign_in("ann").await;
    app.cli_ok(&["user", "revoke-sessions", "acme", "ann@acme.test"]);
    let started = std::time::Instant::now();
    let got = receiver
        .next(8)
        .await
        .expect("crm's logout, not behind the slow app's");
    assert_eq!(got["ok"], true);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A native app (public, loopback redirect URI): any port is accepted (RFC 8252 §7.3), and
/// since nothing proves which program listens there, a live session is not enough: the user
/// confirms (`prompt=none` answers interaction_required); the confirmation works once.
#[tokio::test]
async fn native_apps_on_loopback_ask_the_user_first() {
    let op = op_setup(&[], &[]).await;
    let app = &op.s.app;
    let _ = op.sign_in("ann").await;
    let cli: Value = serde_json::from_str(
        app.cli_ok(&[
            "app",
            "add",
            "desktop",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1:7777/cb",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let client_id = cli["client_id"].as_str().unwrap();
    let redirect = "http://127.0.0.1:54321/cb";
    let (verifier, challenge) = pkce();
    let url = |extra: &[(&str, &str)]| {
        let mut u = url::Url::parse(&app.url("/sso/oauth2/authorize")).unwrap();
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("client_id", client_id)
                .append_pair("redirect_uri", redirect)
                .append_pair("response_type", "code")
                .append_pair("scope", "openid")
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        u.to_string()
    };
    let res = app
        .client
        .get(url(&[("prompt", "none"), ("state", "n")]))
        .send()
        .await
        .unwrap();
    let q = query_of(res.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "interaction_required");
    let res = app.client.get(url(&[("state", "s")])).send().await.unwrap();
    let to = res.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with("/sso/oauth2/continue/"), "{to}");
    let page = app.client.get(app.url(&to)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("Continue to desktop"), "{page}");
    let csrf = form_field(&page, "csrf");
    let post = || {
        app.client
            .post(app.url(&to))
            .form(&[("csrf", csrf.as_str())])
            .send()
    };
    let res = post().await.unwrap();
    assert_eq!(res.status(), 303);
    let back = res.headers()["location"].to_str().unwrap().to_string();
    assert!(back.starts_with(redirect), "{back}");
    assert_eq!(
        post().await.unwrap().status(),
        400,
        "a second submit makes nothing twice"
    );
    let res = reqwest::Client::new()
        .post(app.url("/sso/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &query_of(&back)["code"]),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
            ("client_id", client_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A forged confirmation (no or another CSRF value) is refused.
    let res = app.client.get(url(&[])).send().await.unwrap();
    let to = res.headers()["location"].to_str().unwrap().to_string();
    let res = app
        .client
        .post(app.url(&to))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // An https redirect URI matches exactly, port included.
    let bad = op
        .authorize_url(&[])
        .replace("crm.example.com%2Fcb", "crm.example.com%3A8443%2Fcb");
    assert_eq!(app.client.get(&bad).send().await.unwrap().status(), 400);
}

/// The provider's pages in Chromium: see `tests/peers/browser_op_pages.mjs`. Screenshots are
/// kept in `target/test-artifacts/op-pages/` (not committed).
#[tokio::test]
async fn the_providers_pages_in_a_browser() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let op = op_setup(&[], &[]).await;
    let app = &op.s.app;
    app.cli_ok(&["org", "create", "beta", "--domain", "beta.test"]);
    app.cli_env(
        &[("GH_TEST_PW", PASSWORD)],
        &[
            "user",
            "add",
            "beta",
            "bob@beta.test",
            "--password-env",
            "GH_TEST_PW",
        ],
    )
    .ok();
    let uri = add_instance_admin(app, "ops@operator.test");
    // The apps' own pages: one loopback server answers for both (the native app's ephemeral
    // port, and crm's page after sign-out).
    let apps_page = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let apps_port = apps_page.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in apps_page.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let body = "<h1>The app's own page</h1>";
            let _ = std::io::Write::write_all(
                &mut stream,
                format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).as_bytes(),
            );
        }
    });
    let bye = format!("http://127.0.0.1:{apps_port}/bye");
    app.cli_ok(&["app", "update", "crm", "--post-logout-redirect-uri", &bye]);
    let desktop: Value = serde_json::from_str(
        app.cli_ok(&[
            "app",
            "add",
            "desktop",
            "--name",
            "Acme Desktop",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1:7777/cb",
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    let (_, challenge) = pkce();
    let mut native = url::Url::parse(&app.url("/sso/oauth2/authorize")).unwrap();
    native
        .query_pairs_mut()
        .append_pair("client_id", desktop["client_id"].as_str().unwrap())
        .append_pair("redirect_uri", &format!("http://127.0.0.1:{apps_port}/cb"))
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", "desk")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut logout = url::Url::parse(&app.url("/sso/oauth2/logout")).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("client_id", &op.client_id)
        .append_pair("post_logout_redirect_uri", &bye)
        .append_pair("state", "bye-2");
    let shots = root.join("target/test-artifacts/op-pages");
    let _ = std::fs::remove_dir_all(&shots);
    let out = run_browser_script(
        "browser_op_pages.mjs",
        vec![
            app.address.clone(),
            "bob@beta.test".into(),
            PASSWORD.into(),
            native.to_string(),
            logout.to_string(),
            "ops@operator.test".into(),
            totp_code(&uri, 0),
            "desktop".into(),
        ],
        vec![("SCREENSHOT_DIR".into(), shots.display().to_string())],
    )
    .await;
    assert_eq!(out["confirm_title"], "Continue to Acme Desktop?", "{out}");
    let to_app = out["to_app"].as_str().unwrap();
    assert!(
        to_app.contains("code=") && to_app.contains("state=desk"),
        "{to_app}"
    );
    assert_eq!(out["again_title"], "This sign-in has ended", "{out}");
    assert_eq!(out["logout_title"], "Sign out?");
    assert!(
        out["logout_text"]
            .as_str()
            .unwrap()
            .contains("Acme CRM asks to sign you out"),
        "{out}"
    );
    assert_eq!(out["bye"], format!("{bye}?state=bye-2"));
    assert_eq!(
        out["back_title"], "The app's own page",
        "back after signing out: nobody to sign out, straight on to the app"
    );
    assert_eq!(out["me_status"], 401, "signed out");
    let rows = out["sign_ins"].as_str().unwrap();
    assert!(
        rows.contains("bob@beta.test") && rows.contains("signed out"),
        "{rows}"
    );
    assert_eq!(out["issuer"], op.issuer());
}
