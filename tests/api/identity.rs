//! Identity core through the operator CLI: every command round-trips, duplicates are refused
//! whatever their case, secrets are unreadable at rest, the audit chain detects tampering.

use serde_json::Value;

use crate::helpers::*;

fn json(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

async fn cli_round_trip(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    let org = json(&app.cli_ok(&[
        "org",
        "create",
        "acme",
        "--name",
        "Acme Inc",
        "--domain",
        "Acme.TEST",
        "--json",
    ]));
    assert_eq!(org["slug"], "acme");
    assert_eq!(org["domains"][0]["domain"], "acme.test");
    assert_eq!(org["domains"][0]["verified"], true);
    assert_eq!(org["enforcement"], "off");
    assert_eq!(org["jit"], true);

    // Duplicates, whatever their case, are refused with one line and exit != 0.
    for args in [
        vec!["org", "create", "ACME"],
        vec!["domain", "add", "acme", "ACME.test"],
    ] {
        let out = app.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stderr.contains("already"), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1);
    }
    let out = app.cli(&["org", "create", "other", "--domain", "acme.test"]);
    assert!(!out.status.success(), "a domain belongs to one org only");

    let list = json(&app.cli_ok(&["org", "list", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);

    app.cli_ok(&["domain", "add", "acme", "contractors.test"]);
    app.cli_ok(&[
        "domain",
        "add",
        "acme",
        "corp.test",
        "--verified",
        "--enforce",
    ]);
    let domains = json(&app.cli_ok(&["domain", "list", "acme", "--json"]));
    let d: Vec<(String, bool, bool)> = domains
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["domain"].as_str().unwrap().to_string(),
                d["verified"].as_bool().unwrap(),
                d["enforce"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        d.contains(&("contractors.test".into(), false, false)),
        "unverified unless the operator says so"
    );
    assert!(d.contains(&("corp.test".into(), true, true)));

    app.cli_ok(&["role", "add", "acme", "admin", "--rank", "10"]);
    app.cli_ok(&["role", "add", "acme", "viewer", "--rank", "1"]);
    assert!(!app
        .cli(&["role", "add", "acme", "ADMIN", "--rank", "3"])
        .status
        .success());
    app.cli_ok(&["role", "map", "acme", "Engineering", "admin"]);
    assert!(!app
        .cli(&["role", "map", "acme", "Sales", "nope"])
        .status
        .success());
    let roles = json(&app.cli_ok(&["role", "list", "acme", "--json"]));
    assert_eq!(roles["roles"][0]["name"], "admin");
    assert_eq!(roles["mappings"][0]["group"], "Engineering");

    let org = json(&app.cli_ok(&[
        "org",
        "set",
        "acme",
        "--jit",
        "off",
        "--default-role",
        "viewer",
        "--session-idle",
        "30",
        "--session-max",
        "600",
        "--json",
    ]));
    assert_eq!(org["jit"], false);
    assert_eq!(org["default_role"], "viewer");
    assert_eq!(org["session_idle_minutes"], 30);
    assert_eq!(org["session_max_minutes"], 600);
    assert!(!app
        .cli(&["org", "set", "acme", "--default-role", "ghost"])
        .status
        .success());
    assert!(!app
        .cli(&["org", "set", "acme", "--session-idle", "0"])
        .status
        .success());

    let out = app.cli_ok(&["enforcement", "set", "acme", "domains", "--json"]);
    assert_eq!(json(&out)["enforcement"], "domains");
    assert!(!app
        .cli(&["enforcement", "set", "acme", "sometimes"])
        .status
        .success());

    // SCIM tokens: the token alone on stdout, listed by prefix, revocable.
    let token = app.cli_ok(&["scim-token", "issue", "acme"]);
    let token = token.trim();
    assert_eq!(token.lines().count(), 1);
    assert!(token.starts_with("ghs_") && token.len() > 40);
    let issued = json(&app.cli_ok(&["scim-token", "issue", "acme", "--json"]));
    let second_id = issued["id"].as_str().unwrap().to_string();
    let tokens = json(&app.cli_ok(&["scim-token", "list", "acme", "--json"]));
    assert_eq!(tokens.as_array().unwrap().len(), 2);
    assert!(!tokens.to_string().contains(token), "never listed in full");
    app.cli_ok(&["scim-token", "revoke", "acme", &second_id]);
    assert!(!app
        .cli(&["scim-token", "revoke", "acme", &second_id])
        .status
        .success());
    let rotated = json(&app.cli_ok(&["scim-token", "issue", "acme", "--revoke-others", "--json"]));
    assert_eq!(rotated["revoked_others"], 1);

    // Users: userName unique per org whatever its case.
    let pw = [("GH_TEST_PW", PASSWORD)];
    let user = json(
        &app.cli_env(
            &pw,
            &[
                "user",
                "add",
                "acme",
                "Bob@contractors.test",
                "--role",
                "admin",
                "--org-admin",
                "--password-env",
                "GH_TEST_PW",
                "--json",
            ],
        )
        .ok()
        .stdout,
    );
    assert_eq!(user["user_name"], "Bob@contractors.test");
    assert_eq!(user["role"], "admin");
    assert_eq!(user["org_admin"], true);
    assert_eq!(user["has_password"], true);
    let dup = app.cli(&["user", "add", "acme", "bob@CONTRACTORS.test"]);
    assert!(!dup.status.success());
    assert!(dup.stderr.contains("already exists"));
    let weak = app.cli_env(
        &[("GH_TEST_PW", "short")],
        &[
            "user",
            "add",
            "acme",
            "c@x.test",
            "--password-env",
            "GH_TEST_PW",
        ],
    );
    assert!(!weak.status.success() && weak.stderr.contains("12 characters"));
    let missing = app.cli(&[
        "user",
        "add",
        "acme",
        "d@x.test",
        "--password-env",
        "GH_UNSET_VAR",
    ]);
    assert!(!missing.status.success() && missing.stderr.contains("GH_UNSET_VAR"));
    let users = json(&app.cli_ok(&["user", "list", "acme", "--json"]));
    assert_eq!(users.as_array().unwrap().len(), 1);

    // The same userName in another org is another account.
    app.cli_ok(&["org", "create", "globex"]);
    app.cli_ok(&["user", "add", "globex", "bob@contractors.test"]);

    // Instance admins: the otpauth URI printed once.
    let uri = app
        .cli_env(
            &pw,
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
    assert!(uri.trim().starts_with("otpauth://totp/"), "{uri}");
    assert!(!app
        .cli_env(
            &pw,
            &[
                "admin",
                "add",
                "OPS@example.test",
                "--password-env",
                "GH_TEST_PW"
            ]
        )
        .status
        .success());
    let admins = app.cli_ok(&["admin", "list"]);
    assert!(admins.contains("ops@example.test"));
    assert!(!admins.contains("secret="));

    // Keys: generated at start (the SAML SP's, the identity JWT's, the OpenID Provider's RS256
    // and ES256), rotation keeps the previous published.
    let keys = json(&app.cli_ok(&["keys", "list", "--json"]));
    assert_eq!(keys.as_array().unwrap().len(), 4);
    app.cli_ok(&["keys", "rotate"]);
    let keys = json(&app.cli_ok(&["keys", "list", "--json"]));
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 8);
    let retired: Vec<_> = keys.iter().filter(|k| !k["retired_at"].is_null()).collect();
    assert_eq!(retired.len(), 4);
    assert!(retired
        .iter()
        .all(|k| k["publish_until"].as_i64().unwrap() > k["retired_at"].as_i64().unwrap()));
    assert!(!serde_json::to_string(keys).unwrap().contains("PRIVATE KEY"));

    // Every change is audited and the chain verifies.
    let events = json(&app.cli_ok(&["audit", "list", "acme", "--json"]));
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "org.create",
        "domain.add",
        "role.add",
        "role.map",
        "org.update",
        "enforcement.set",
        "scim_token.issue",
        "scim_token.revoke",
        "user.add",
    ] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    assert!(
        !events.to_string().contains(token),
        "tokens are never audited"
    );
    assert!(app.cli_ok(&["audit", "verify", "acme"]).contains("intact"));
    assert!(app
        .cli_ok(&["audit", "verify", "instance"])
        .contains("intact"));

    // Help exists for each command.
    for cmd in [
        "org",
        "domain",
        "enforcement",
        "role",
        "scim-token",
        "user",
        "admin",
        "keys",
        "audit",
    ] {
        assert!(app.cli(&[cmd, "--help"]).status.success(), "{cmd} --help");
    }
    let out = app.cli(&["org", "set", "no-such-org", "--jit", "on"]);
    assert!(!out.status.success());
    assert_eq!(out.stderr.trim(), "error: no org `no-such-org`");
}

#[tokio::test]
async fn cli_round_trip_on_sqlite() {
    cli_round_trip(Backend::Sqlite).await;
}

#[tokio::test]
async fn cli_round_trip_on_postgres() {
    cli_round_trip(Backend::Postgres).await;
}

async fn audit_chain_detects_tampering(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    app.cli_ok(&["org", "create", "acme"]);
    app.cli_ok(&["role", "add", "acme", "admin", "--rank", "1"]);
    app.cli_ok(&["role", "add", "acme", "viewer", "--rank", "0"]);
    assert!(app.cli(&["audit", "verify", "acme"]).status.success());

    app.sql("UPDATE audit_events SET payload = '{\"role\":\"root\",\"rank\":1}' WHERE seq = 2 AND chain <> 'instance'");
    let out = app.cli(&["audit", "verify", "acme"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("broken at event #2"), "{}", out.stderr);

    // Purging payloads (retention) keeps the chain verifiable; editing other fields does not.
    app.sql("UPDATE audit_events SET payload = NULL");
    assert!(app.cli(&["audit", "verify", "acme"]).status.success());
    app.sql("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 3 AND chain <> 'instance'");
    let out = app.cli(&["audit", "verify", "acme"]);
    assert!(out.stderr.contains("broken at event #3"), "{}", out.stderr);
    app.sql("UPDATE audit_events SET actor = 'cli' WHERE seq = 3");
    app.sql("DELETE FROM audit_events WHERE seq = 2 AND chain <> 'instance'");
    let out = app.cli(&["audit", "verify", "acme"]);
    assert!(out.stderr.contains("broken at event #3"), "{}", out.stderr);
}

#[tokio::test]
async fn audit_chain_detects_tampering_on_sqlite() {
    audit_chain_detects_tampering(Backend::Sqlite).await;
}

#[tokio::test]
async fn audit_chain_detects_tampering_on_postgres() {
    audit_chain_detects_tampering(Backend::Postgres).await;
}

#[tokio::test]
async fn secrets_are_unreadable_in_the_database_file() {
    let app = spawn_app().await;
    app.cli_ok(&["org", "create", "acme"]);
    let token = app
        .cli_ok(&["scim-token", "issue", "acme"])
        .trim()
        .to_string();
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
    let seed = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    app.seed_local_user_in("acme");
    // Checkpoint the WAL so the main file holds everything, then read every file's bytes.
    app.sql("PRAGMA wal_checkpoint(TRUNCATE)");
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(app.data_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("gatehouse.db")
        {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("ops@example.test"),
        "sanity: the file was read"
    );
    for secret in [
        token.as_str(),
        seed.as_str(),
        PASSWORD,
        "PRIVATE KEY",
        "BEGIN EC",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} is readable in the database file"
        );
    }
    assert!(
        text.contains("$argon2id$"),
        "passwords are stored as argon2id"
    );
}

impl TestApp {
    fn seed_local_user_in(&self, org: &str) {
        self.cli_env(
            &[("GH_TEST_PW", PASSWORD)],
            &[
                "user",
                "add",
                org,
                "alice@acme.test",
                "--password-env",
                "GH_TEST_PW",
            ],
        )
        .ok();
    }
}
