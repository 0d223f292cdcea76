//! Platform: configuration, health, readiness, metrics, errors, security headers, the
//! database layer on both backends, restart.

use diesel::{QueryableByName, RunQueryDsl};
use gatehouse::config::Settings;
use gatehouse::db::{write_tx, Db, DbConn, DbError};

use crate::helpers::*;

const HTML_SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

async fn health_and_readiness(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["database"], expected);
}

#[tokio::test]
async fn health_and_readiness_on_sqlite() {
    health_and_readiness(Backend::Sqlite).await;
}

#[tokio::test]
async fn health_and_readiness_on_postgres() {
    health_and_readiness(Backend::Postgres).await;
}

#[tokio::test]
async fn unknown_routes_are_404_without_internals_and_with_security_headers() {
    let app = spawn_app().await;
    let res = app.get_html("/no/such/page?x=<script>").await;
    assert_eq!(res.status(), 404);
    let headers = res.headers().clone();
    for (name, value) in HTML_SECURITY_HEADERS {
        assert_eq!(headers.get(*name).unwrap(), value, "{name}");
    }
    let csp = headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    let request_id = headers
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(request_id.len(), 32);
    let body = res.text().await.unwrap();
    assert!(
        body.contains(&request_id),
        "the page shows the reference id"
    );
    for leak in ["actix", "diesel", "panicked", "<script>", "/no/such/page"] {
        assert!(!body.contains(leak), "404 page leaks {leak}");
    }

    let res = app.get("/no/such/api").await;
    assert_eq!(res.status(), 404);
    assert!(res.headers().get("x-request-id").is_some());
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["request_id"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn request_ids_are_ours_and_unique() {
    let app = spawn_app().await;
    let a = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "attacker-chosen")
        .send()
        .await
        .unwrap();
    let b = app.get("/healthz").await;
    let a = a.headers()["x-request-id"].to_str().unwrap().to_string();
    let b = b.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(a, "attacker-chosen");
    assert_ne!(a, b);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.get("/healthz").await;
    app.get("/nothing-here").await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            r#"gatehouse_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains("gatehouse_http_request_duration_seconds_bucket"));
}

#[test]
fn bad_config_is_one_clear_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = test_env(dir.path(), "sqlite://x.db");
    env.insert("GATEHOUSE_LISTEN".into(), "not-an-address".into());
    let out = run_cli(&env, &["config", "check"]);
    assert!(!out.status.success());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out
        .stderr
        .starts_with("error: environment variable GATEHOUSE_LISTEN"));

    let file = dir.path().join("gatehouse.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\ndatabse_url = \"x\"\n").unwrap();
    let env = test_env(dir.path(), "sqlite://x.db");
    let out = run_cli(
        &env,
        &["--config", file.to_str().unwrap(), "config", "check"],
    );
    assert!(!out.status.success());
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown field `databse_url`"),
        "{}",
        out.stderr
    );

    let mut env = test_env(dir.path(), "sqlite://x.db");
    env.insert("GATEHOUSE_DATABASE_URL".into(), "mysql://x".into());
    let out = run_cli(&env, &["migrate"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("sqlite:// or postgres://"),
        "{}",
        out.stderr
    );
}

#[test]
fn config_check_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(
        dir.path(),
        "postgres://app:hunter2-db-password@db.internal/gatehouse",
    );
    let out = run_cli(&env, &["config", "check"]).ok();
    assert!(out
        .stdout
        .contains("database_url = postgres://app:***@db.internal/gatehouse"));
    assert!(out.stdout.contains("secret_key = ******** (set)"));
    assert!(!out.stdout.contains("hunter2"));
    assert!(!out.stdout.contains(TEST_SECRET_KEY));
    assert!(out.stdout.contains("listen = 127.0.0.1:0"));
}

#[test]
fn wrong_postgres_password_reports_the_real_error() {
    let Some(admin) = pg_admin_url() else { return };
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_password(Some("definitely-wrong")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = test_env(dir.path(), url.as_str());
    let out = run_cli(&env, &["migrate"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("password authentication failed"),
        "expected the server's own error, got: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("definitely-wrong"),
        "the password is not echoed"
    );
}

#[test]
fn unreachable_postgres_fails_within_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: refused at once, reported as itself.
    let env = test_env(dir.path(), "postgres://u:p@127.0.0.1:9/db");
    let out = run_cli(&env, &["migrate"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("database unavailable"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.to_lowercase().contains("connect"),
        "{}",
        out.stderr
    );
}

#[derive(QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    value: String,
}

fn settings_for(url: &str, dir: &std::path::Path) -> Settings {
    Settings::from_sources(None, &test_env(dir, url)).unwrap().0
}

#[test]
fn sqlite_connections_use_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let db = Db::connect(&settings_for(&url, dir.path())).unwrap();
    db.migrate().unwrap();
    let mut conn = db.conn().unwrap();
    let mode: Vec<Text> =
        diesel::sql_query("SELECT journal_mode AS value FROM pragma_journal_mode")
            .load(&mut *conn)
            .unwrap();
    assert_eq!(mode[0].value.to_lowercase(), "wal");
    let fk: Vec<Text> =
        diesel::sql_query("SELECT CAST(foreign_keys AS TEXT) AS value FROM pragma_foreign_keys")
            .load(&mut *conn)
            .unwrap();
    assert_eq!(fk[0].value, "1");
    // A foreign key violation is refused.
    let err = diesel::sql_query(
        "INSERT INTO domains (id, org_id, domain, verified, enforce, created_at) \
         VALUES ('d', 'missing-org', 'x.example', FALSE, FALSE, 0)",
    )
    .execute(&mut *conn);
    assert!(err.is_err());
}

/// The same queries on both backends, and concurrent read-then-write transactions that never
/// fail with "database is locked".
fn concurrent_write_transactions(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(backend, dir.path()) else {
        return;
    };
    let db = Db::connect(&settings_for(&url, dir.path())).unwrap();
    assert!(!db.migrate().unwrap().is_empty());
    assert!(
        db.migrate().unwrap().is_empty(),
        "migrations are idempotent"
    );
    {
        let mut conn = db.conn().unwrap();
        diesel::sql_query(
            "INSERT INTO organizations (id, slug, name, created_at, updated_at) \
             VALUES ('o1', 'acme', 'Acme', 0, 0)",
        )
        .execute(&mut *conn)
        .unwrap();
    }
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let mut conn = db.conn().unwrap();
                    write_tx(&mut conn, |c: &mut DbConn| -> Result<(), DbError> {
                        // Read first, then write: the pattern that breaks deferred transactions.
                        let n: Vec<Text> = diesel::sql_query(
                            "SELECT CAST(COUNT(*) AS TEXT) AS value FROM domains",
                        )
                        .load(c)?;
                        let _ = n;
                        diesel::sql_query(format!(
                            "INSERT INTO domains (id, org_id, domain, verified, enforce, created_at) \
                             VALUES ('d{t}-{i}', 'o1', 'd{t}-{i}.example', FALSE, FALSE, 0)"
                        ))
                        .execute(c)?;
                        Ok(())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut conn = db.conn().unwrap();
    let n: Vec<Text> = diesel::sql_query("SELECT CAST(COUNT(*) AS TEXT) AS value FROM domains")
        .load(&mut *conn)
        .unwrap();
    assert_eq!(n[0].value, "80");
    // A failed transaction leaves nothing behind.
    let res = write_tx(&mut conn, |c: &mut DbConn| -> Result<(), DbError> {
        diesel::sql_query(
            "INSERT INTO domains (id, org_id, domain, verified, enforce, created_at) \
             VALUES ('rolled-back', 'o1', 'rb.example', FALSE, FALSE, 0)",
        )
        .execute(c)?;
        Err(DbError::Task("abort".into()))
    });
    assert!(res.is_err());
    let n: Vec<Text> = diesel::sql_query("SELECT CAST(COUNT(*) AS TEXT) AS value FROM domains")
        .load(&mut *conn)
        .unwrap();
    assert_eq!(n[0].value, "80");
}

#[test]
fn concurrent_write_transactions_on_sqlite() {
    concurrent_write_transactions(Backend::Sqlite);
}

#[test]
fn concurrent_write_transactions_on_postgres() {
    concurrent_write_transactions(Backend::Postgres);
}

/// Kill -9 and restart on the same data dir: data and the generated secret key survive, and
/// nothing secret reaches the logs.
#[test]
fn restart_keeps_data_and_logs_hold_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let mut env = test_env(dir.path(), &url);
    env.remove("GATEHOUSE_SECRET_KEY"); // let it generate one into the data dir

    let first = ServeProcess::start(&env);
    let client = reqwest::blocking::Client::new();
    assert_eq!(
        client.get(first.url("/readyz")).send().unwrap().status(),
        200
    );
    let key = std::fs::read_to_string(dir.path().join("secret.key")).unwrap();
    {
        let db = Db::connect(&settings_for(&url, dir.path())).unwrap();
        let mut conn = db.conn().unwrap();
        diesel::sql_query(
            "INSERT INTO organizations (id, slug, name, created_at, updated_at) \
             VALUES ('o1', 'acme', 'Acme', 0, 0)",
        )
        .execute(&mut *conn)
        .unwrap();
    }
    let logs = first.kill();
    assert!(logs.contains("generated a new secret key"), "{logs}");

    let second = ServeProcess::start(&env);
    assert_eq!(
        client.get(second.url("/readyz")).send().unwrap().status(),
        200
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("secret.key")).unwrap(),
        key
    );
    let db = Db::connect(&settings_for(&url, dir.path())).unwrap();
    let mut conn = db.conn().unwrap();
    let rows: Vec<Text> = diesel::sql_query("SELECT slug AS value FROM organizations")
        .load(&mut *conn)
        .unwrap();
    assert_eq!(rows.len(), 1);
    let logs = second.kill();
    assert!(!logs.contains("generated a new secret key"));
    assert!(!logs.contains(key.trim()), "the secret key is never logged");
}

#[test]
fn serves_https_when_cert_and_key_are_set() {
    use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
    let dir = tempfile::tempdir().unwrap();
    let rsa = Rsa::generate(2048).unwrap();
    let pkey = PKey::from_rsa(rsa).unwrap();
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
    let cert = b.build();
    std::fs::write(dir.path().join("tls.crt"), cert.to_pem().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("tls.key"),
        pkey.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();

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
    let server = ServeProcess::start(&env);
    let client = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let res = client
        .get(format!("https://127.0.0.1:{}/healthz", server.port))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    // Plain HTTP on the TLS port does not get a page.
    assert!(reqwest::blocking::get(server.url("/healthz"))
        .map(|r| r.status() != 200)
        .unwrap_or(true));
}

/// Sustained writes through the group-commit writer keep the SQLite WAL file bounded: the
/// background checkpoints alone never let the log start over while commits keep coming, so
/// the writer restarts it once it passes its limit (before, the file grew by every commit's
/// pages: 1.6 GB after a few minutes of SCIM creates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_writes_keep_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let env = test_env(dir.path(), &url);
    let (settings, _) = Settings::from_sources(None, &env).unwrap();
    let db = Db::connect(&settings).unwrap();
    db.migrate().unwrap();
    diesel::sql_query("CREATE TABLE wal_load (x BLOB NOT NULL)")
        .execute(&mut *db.conn().unwrap())
        .unwrap();
    let wal = dir.path().join("gatehouse.db-wal");
    // 32 writers × 2,400 rows of 4 KiB: about 300 MB of pages through the log.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for _ in 0..2400 {
                    db.write(|conn| {
                        diesel::sql_query("INSERT INTO wal_load (x) VALUES (randomblob(4096))")
                            .execute(conn)
                            .map_err(DbError::from)
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    let mut largest = 0;
    for t in tasks {
        while !t.is_finished() {
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        t.await.unwrap();
    }
    let rows: Vec<Count> = diesel::sql_query("SELECT COUNT(*) AS n FROM wal_load")
        .load(&mut *db.conn().unwrap())
        .unwrap();
    assert_eq!(rows[0].n, 32 * 2400, "every write committed");
    // It grows past the restart point for as long as the next checkpoint takes to notice.
    assert!(
        largest < 160 * 1024 * 1024,
        "the WAL file reached {largest} bytes for ~300 MB written"
    );
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Audit payloads past retention are dropped when the server starts (and hourly), in small
/// writes off an index: the events and their hashes stay and the chain still verifies, newer
/// payloads stay, and SCIM writes go on while it runs.
#[test]
fn audit_payloads_past_retention_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let mut env = test_env(dir.path(), &url);
    let token = org_with_scim_token(&env, "acme");
    let user = "urn:ietf:params:scim:schemas:core:2.0:User";
    let bulk = |server: &ServeProcess, from: usize| {
        let ops: Vec<serde_json::Value> = (from..from + 1000)
            .map(|i| {
                serde_json::json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"),
                    "data": {"schemas": [user], "userName": format!("old{i}@acme.test")}})
            })
            .collect();
        let res = reqwest::blocking::Client::new()
            .post(server.url("/scim/v2/Bulk"))
            .bearer_auth(&token)
            .header("content-type", "application/scim+json")
            .body(
                serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                    "Operations": ops})
                .to_string(),
            )
            .send()
            .unwrap();
        assert_eq!(res.status(), 200);
    };
    // Over two purge batches of events with payloads, then a retention of 0 days: all of them
    // are past it at the next start.
    let first = ServeProcess::start(&env);
    bulk(&first, 0);
    bulk(&first, 1000);
    bulk(&first, 2000);
    drop(first);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.insert("GATEHOUSE_AUDIT_RETENTION_DAYS".into(), "0".into());
    let server = ServeProcess::start(&env);
    // A write while the purge runs.
    let res = reqwest::blocking::Client::new()
        .post(server.url("/scim/v2/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(serde_json::json!({"schemas": [user], "userName": "new@acme.test"}).to_string())
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);

    let (settings, _) = Settings::from_sources(None, &env).unwrap();
    let db = Db::connect(&settings).unwrap();
    let count = |sql: &str| -> i64 {
        let rows: Vec<Count> = diesel::sql_query(sql)
            .load(&mut *db.conn().unwrap())
            .unwrap();
        rows[0].n
    };
    let old_with_payload = "SELECT COUNT(*) AS n FROM audit_events \
        WHERE payload IS NOT NULL AND payload LIKE '%old%'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count(old_with_payload) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} old payloads left:\n{}",
            count(old_with_payload),
            server.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        count("SELECT COUNT(*) AS n FROM audit_events WHERE payload IS NULL") >= 3000,
        "the events stay, without payloads"
    );
    assert!(
        server
            .logs()
            .contains("purged audit payloads past retention"),
        "{}",
        server.logs()
    );
    let listed = run_cli(&env, &["audit", "list", "acme", "--json"])
        .ok()
        .stdout;
    assert!(listed.contains("new@acme.test"), "the newer payload stays");
    let verified = run_cli(&env, &["audit", "verify", "acme"]).ok().stdout;
    assert!(verified.contains("intact"), "{verified}");
}
