//! SCIM `/Bulk` (RFC 7644 §3.7) over HTTP, and durability of acknowledged SCIM writes when the
//! process is killed.
//!
//! What the RFC asks, restated: a BulkRequest carries `Operations` (method, path, data,
//! `bulkId` for POSTs, optional `version`); `bulkId:<id>` in one operation names the resource
//! another operation of the same request creates; `failOnErrors: n` stops processing after
//! the n-th error; `maxOperations` and `maxPayloadSize` are advertised in
//! `/ServiceProviderConfig` and a request over either gets 413; the BulkResponse lists each
//! operation run with its status (as a string), `location`, `version`, and an error `response`
//! when it failed.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::helpers::*;

const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn bulk(ops: Value) -> Value {
    json!({"schemas": [BULK], "Operations": ops})
}

fn user_op(bulk_id: &str, user_name: &str) -> Value {
    json!({"method": "POST", "bulkId": bulk_id, "path": "/Users",
           "data": {"schemas": [USER], "userName": user_name}})
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn user_count(scim: &Scim<'_>) -> i64 {
    scim.get("/Users?count=0").await.1["totalResults"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn bulk_resolves_references_and_reports_each_operation() {
    let app = spawn_app().await;
    let scim = app.scim("acme");
    let (_, config) = scim.get("/ServiceProviderConfig").await;
    assert_eq!(config["bulk"]["supported"], true);
    assert_eq!(config["bulk"]["maxOperations"], 1000);
    assert_eq!(config["bulk"]["maxPayloadSize"], 4 * 1024 * 1024);

    // The group comes first and refers to users created later in the same request; a PATCH
    // and a DELETE address resources by bulkId in their path; one POST fails (duplicate
    // userName) and the group that refers to it fails with a detail naming why.
    let (s, j) = scim
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "POST", "bulkId": "eng", "path": "/Groups",
                 "data": {"schemas": [GROUP], "displayName": "Engineering",
                          "members": [{"value": "bulkId:ada"}, {"value": "bulkId:alan"}]}},
                user_op("ada", "ada@acme.test"),
                user_op("alan", "alan@acme.test"),
                user_op("dup", "ADA@acme.test"),
                {"method": "POST", "bulkId": "dup-group", "path": "/Groups",
                 "data": {"displayName": "Dup", "members": [{"value": "bulkId:dup"}]}},
                {"method": "PATCH", "path": "/Users/bulkId:alan", "version": "W/\"1\"",
                 "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": [{"op": "replace", "path": "active", "value": false}]}},
                user_op("temp", "temp@acme.test"),
                {"method": "DELETE", "path": "/Users/bulkId:temp"},
            ])),
        )
        .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(
        j["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
    );
    let ops = j["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 8, "{j}");
    let by_bulk = |b: &str| {
        ops.iter()
            .find(|o| o["bulkId"] == b)
            .unwrap_or_else(|| panic!("no result for {b}: {j}"))
            .clone()
    };
    let ada = by_bulk("ada");
    assert_eq!(ada["status"], "201");
    assert_eq!(ada["version"], "W/\"1\"");
    let ada_id = ada["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let alan_loc = by_bulk("alan")["location"].as_str().unwrap().to_string();
    let alan_id = alan_loc.rsplit('/').next().unwrap().to_string();
    let eng = by_bulk("eng");
    assert_eq!(eng["status"], "201", "{eng}");
    let eng_id = eng["location"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let dup = by_bulk("dup");
    assert_eq!(dup["status"], "409");
    assert_eq!(dup["response"]["scimType"], "uniqueness");
    let dup_group = by_bulk("dup-group");
    assert_eq!(dup_group["status"], "409");
    assert!(
        dup_group["response"]["detail"]
            .as_str()
            .unwrap()
            .contains("refers to an operation that failed"),
        "{dup_group}"
    );
    let patch = ops.iter().find(|o| o["method"] == "PATCH").unwrap();
    assert_eq!(patch["status"], "200");
    assert_eq!(patch["location"], alan_loc.as_str());
    assert_eq!(patch["version"], "W/\"2\"");
    let delete = ops.iter().find(|o| o["method"] == "DELETE").unwrap();
    assert_eq!(delete["status"], "204");

    // What the responses say is what is stored.
    let (_, g) = scim.get(&format!("/Groups/{eng_id}")).await;
    let mut members: Vec<&str> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    members.sort();
    let mut want = vec![ada_id.as_str(), alan_id.as_str()];
    want.sort();
    assert_eq!(members, want);
    assert_eq!(
        scim.get(&format!("/Users/{alan_id}")).await.1["active"],
        false
    );
    let (_, found) = scim
        .get(&format!(
            "/Users?filter={}",
            q(r#"userName eq "temp@acme.test""#)
        ))
        .await;
    assert_eq!(found["totalResults"], 0);
    let (_, found) = scim
        .get(&format!("/Groups?filter={}", q(r#"displayName eq "Dup""#)))
        .await;
    assert_eq!(found["totalResults"], 0);
    assert_eq!(user_count(&scim).await, 2);

    // Each operation is audited on its own, failures with their cause; the chain is intact.
    let audit = app.cli_ok(&["audit", "list", "acme", "--limit", "1000", "--json"]);
    let events: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| match v {
            Value::Array(items) => items,
            other => vec![other],
        })
        .filter(|e| e["action"] == "scim.bulk.operation")
        .collect();
    assert_eq!(events.len(), 8, "{audit}");
    assert_eq!(
        events.iter().filter(|e| e["outcome"] == "failure").count(),
        2
    );
    assert!(audit.contains("is already taken"));
    assert!(app.cli_ok(&["audit", "verify", "acme"]).contains("intact"));
}

#[tokio::test]
async fn bulk_fail_on_errors_cycles_and_versions() {
    let app = spawn_app().await;
    let scim = app.scim("acme");
    let existing = scim.create_user("taken@acme.test").await;

    // failOnErrors: 1 stops at the first error: later operations are not run nor reported.
    let mut req = bulk(json!([
        user_op("a", "taken@acme.test"),
        user_op("b", "b@acme.test"),
        user_op("c", "c@acme.test"),
    ]));
    req["failOnErrors"] = json!(1);
    let (s, j) = scim.post("/Bulk", req).await;
    assert_eq!(s, 200);
    let ops = j["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{j}");
    assert_eq!(ops[0]["status"], "409");
    assert_eq!(user_count(&scim).await, 1);

    // failOnErrors: 2 lets one error through and stops at the second.
    let mut req = bulk(json!([
        user_op("a", "taken@acme.test"),
        user_op("b", "b@acme.test"),
        user_op("c", "TAKEN@acme.test"),
        user_op("d", "d@acme.test"),
    ]));
    req["failOnErrors"] = json!(2);
    let (_, j) = scim.post("/Bulk", req).await;
    let statuses: Vec<&str> = j["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["409", "201", "409"]);
    assert_eq!(user_count(&scim).await, 2);

    // Two groups that name each other: a cycle, refused with a detail, nothing created.
    let (_, j) = scim
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "POST", "bulkId": "x", "path": "/Groups",
                 "data": {"displayName": "X", "members": [{"value": "bulkId:y"}]}},
                {"method": "POST", "bulkId": "y", "path": "/Groups",
                 "data": {"displayName": "Y", "members": [{"value": "bulkId:x"}]}},
                {"method": "POST", "bulkId": "z", "path": "/Groups",
                 "data": {"displayName": "Z", "members": [{"value": "bulkId:nowhere"}]}},
            ])),
        )
        .await;
    let ops = j["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 3);
    for op in ops {
        assert_eq!(op["status"], "409", "{op}");
        assert!(op["response"]["detail"]
            .as_str()
            .unwrap()
            .contains("is not created by an earlier operation"));
    }
    assert_eq!(scim.get("/Groups").await.1["totalResults"], 0);

    // `version` is the operation's If-Match: stale → 412, nothing changed.
    let (_, j) = scim
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "PUT", "path": format!("/Users/{existing}"), "version": "W/\"7\"",
                 "data": {"schemas": [USER], "userName": "renamed@acme.test"}},
                {"method": "DELETE", "path": format!("/Users/{existing}"), "version": "W/\"7\""},
            ])),
        )
        .await;
    for op in j["Operations"].as_array().unwrap() {
        assert_eq!(op["status"], "412", "{op}");
    }
    assert_eq!(
        scim.get(&format!("/Users/{existing}")).await.1["userName"],
        "taken@acme.test"
    );
}

#[tokio::test]
async fn bulk_limits_and_malformed_requests() {
    let app = spawn_app().await;
    let scim = app.scim("acme");

    // maxOperations: 1,001 operations → 413 and nothing runs.
    let ops: Vec<Value> = (0..1001)
        .map(|i| user_op(&format!("u{i}"), &format!("u{i}@acme.test")))
        .collect();
    let (s, j) = scim.post("/Bulk", bulk(json!(ops))).await;
    assert_eq!(s, 413, "{j}");
    assert!(j["detail"].as_str().unwrap().contains("maxOperations"));
    assert_eq!(user_count(&scim).await, 0);

    // Exactly 1,000 is fine.
    let ops: Vec<Value> = (0..1000)
        .map(|i| user_op(&format!("u{i}"), &format!("u{i}@acme.test")))
        .collect();
    let (s, j) = scim.post("/Bulk", bulk(json!(ops))).await;
    assert_eq!(s, 200);
    assert!(j["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["status"] == "201"));
    assert_eq!(user_count(&scim).await, 1000);

    // maxPayloadSize: a body over 4 MiB → 413 before anything runs.
    let padding = "x".repeat(5000);
    let ops: Vec<Value> = (0..900)
        .map(|i| {
            json!({"method": "POST", "bulkId": format!("p{i}"), "path": "/Users",
                   "data": {"schemas": [USER], "userName": format!("p{i}@acme.test"),
                            "nickName": padding}})
        })
        .collect();
    let (s, _) = scim.post("/Bulk", bulk(json!(ops))).await;
    assert_eq!(s, 413);
    assert_eq!(user_count(&scim).await, 1000);

    // Malformed requests: 400 with a detail, nothing runs.
    for (body, needle) in [
        (
            json!({"Operations": [user_op("a", "x1@acme.test")]}),
            "schemas",
        ),
        (json!({"schemas": [BULK]}), "Operations"),
        (
            bulk(
                json!([{"method": "POST", "path": "/Users", "data": {"userName": "x2@acme.test"}}]),
            ),
            "bulkId",
        ),
        (
            bulk(json!([
                user_op("a", "x3@acme.test"),
                user_op("a", "x4@acme.test")
            ])),
            "used twice",
        ),
        (bulk(json!([{"method": "GET", "path": "/Users"}])), "method"),
        (bulk(json!([{"method": "PUT", "path": "/Users/x"}])), "data"),
        (
            json!({"schemas": [BULK], "failOnErrors": 0, "Operations": []}),
            "failOnErrors",
        ),
    ] {
        let (s, j) = scim.post("/Bulk", body.clone()).await;
        assert_eq!(s, 400, "{body} → {j}");
        assert!(
            j["detail"].as_str().unwrap().contains(needle),
            "{needle}: {j}"
        );
    }
    // A path outside /Users and /Groups, or a POST to a resource: that operation fails.
    let (_, j) = scim
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "POST", "bulkId": "s", "path": "/Schemas", "data": {}},
                {"method": "POST", "bulkId": "t", "path": "/Users/abc", "data": {"userName": "t@acme.test"}},
                {"method": "DELETE", "path": "/Users"},
            ])),
        )
        .await;
    for op in j["Operations"].as_array().unwrap() {
        assert_eq!(op["status"], "400", "{op}");
        assert_eq!(op["response"]["scimType"], "invalidPath");
    }
    assert_eq!(user_count(&scim).await, 1000);
    // No token, no bulk.
    let res = app
        .client
        .post(scim.url("/Bulk"))
        .header("content-type", "application/scim+json")
        .body(bulk(json!([user_op("a", "x@acme.test")])).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(scim.send(reqwest::Method::GET, "/Bulk", None).await.0, 405);
}

#[tokio::test]
async fn bulk_cannot_reach_another_org() {
    let app = spawn_app().await;
    let a = app.scim("org-a");
    let b = app.scim("org-b");
    let b_user = b.create_user("bob@b.test").await;
    let b_group = b.create_group("B Team", &[&b_user]).await;
    let (_, j) = a
        .post(
            "/Bulk",
            bulk(json!([
                {"method": "PATCH", "path": format!("/Users/{b_user}"),
                 "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": [{"op": "replace", "path": "active", "value": false}]}},
                {"method": "DELETE", "path": format!("/Groups/{b_group}")},
                {"method": "PUT", "path": format!("/Groups/{b_group}"), "data": {"displayName": "mine"}},
                {"method": "POST", "bulkId": "g", "path": "/Groups",
                 "data": {"displayName": "A Team", "members": [{"value": b_user}]}},
            ])),
        )
        .await;
    let statuses: Vec<&str> = j["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["404", "404", "404", "400"], "{j}");
    let (_, g) = b.get(&format!("/Groups/{b_group}")).await;
    assert_eq!(g["displayName"], "B Team");
    assert_eq!(g["members"][0]["value"], b_user.as_str());
    assert_eq!(b.get(&format!("/Users/{b_user}")).await.1["active"], true);
}

/// Kill -9 during a burst of SCIM creates (default `synchronous=NORMAL`): every user whose
/// 201 reached the client is there after a restart.
#[test]
fn kill_9_during_creates_loses_no_acknowledged_user() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let mut env: BTreeMap<String, String> = test_env(dir.path(), &url);
    env.insert("GATEHOUSE_SCIM_RATE_LIMIT".into(), "0".into());
    let token = org_with_scim_token(&env, "acme");
    let server = ServeProcess::start(&env);
    let base = server.url("/scim/v2/Users");

    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (acked, stop, base, token) =
                (acked.clone(), stop.clone(), base.clone(), token.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let name = format!("w{w}-{i}@acme.test");
                    let res = client
                        .post(&base)
                        .bearer_auth(&token)
                        .header("content-type", "application/scim+json")
                        .body(json!({"schemas": [USER], "userName": name}).to_string())
                        .send();
                    match res {
                        Ok(r) if r.status() == 201 => {
                            let id = r.json::<Value>().unwrap()["id"]
                                .as_str()
                                .unwrap()
                                .to_string();
                            acked.lock().unwrap().push((name, id));
                        }
                        Ok(r) => panic!("unexpected {} before the kill", r.status()),
                        Err(_) => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 300 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Killed mid-burst: requests are in flight.
    server.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let server = ServeProcess::start(&env);
    let client = reqwest::blocking::Client::new();
    let total = client
        .get(server.url("/scim/v2/Users?count=0"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap()["totalResults"]
        .as_i64()
        .unwrap();
    assert!(
        total >= acked.len() as i64,
        "{total} users stored, {} acknowledged",
        acked.len()
    );
    for (name, id) in &acked {
        let res = client
            .get(server.url(&format!("/scim/v2/Users/{id}")))
            .bearer_auth(&token)
            .send()
            .unwrap();
        assert_eq!(res.status(), 200, "acknowledged user {name} lost");
        assert_eq!(res.json::<Value>().unwrap()["userName"], name.as_str());
    }
    // And the audit chain survived the kill.
    let out = run_cli(&env, &["audit", "verify", "acme"]).ok();
    assert!(out.stdout.contains("intact"), "{}", out.stdout);
}

/// `totalResults` of an unfiltered `GET /Users` (kept as a count, not counted per request)
/// equals the number of users a filter finds (counted row by row), whatever path added or
/// removed users: SCIM, Bulk, the CLI, break-glass accounts (never visible to SCIM), a restart.
async fn unfiltered_total_stays_exact(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    app.seed_local_user(); // org acme with alice@acme.test, a local account
    let scim = app.scim("acme");
    let check = |want: i64| {
        let scim = &scim;
        async move {
            let (_, all) = scim.get("/Users?count=0").await;
            let (_, counted) = scim
                .get(&format!("/Users?count=0&filter={}", q("userName pr")))
                .await;
            assert_eq!(all["totalResults"], want, "unfiltered");
            assert_eq!(counted["totalResults"], want, "counted by a filter");
            let (_, page) = scim.get("/Users?count=1000").await;
            assert_eq!(page["Resources"].as_array().unwrap().len() as i64, want);
        }
    };
    check(1).await;
    let a = scim.create_user("a@acme.test").await;
    scim.create_user("b@acme.test").await;
    check(3).await;
    app.cli_ok(&["breakglass", "set", "acme", "bg@acme.test"]);
    check(3).await;
    let (_, j) = scim
        .post(
            "/Bulk",
            bulk(json!([
                user_op("c", "c@acme.test"),
                user_op("d", "d@acme.test"),
                user_op("dup", "a@acme.test"),
            ])),
        )
        .await;
    assert_eq!(j["Operations"][2]["status"], "409");
    check(5).await;
    assert_eq!(scim.delete(&format!("/Users/{a}")).await, 204);
    check(4).await;
    // Another org's users never count here.
    app.scim("other").create_user("x@other.test").await;
    check(4).await;
    // A restart recounts (and finds the same).
    let (_, before) = scim.get("/Users?count=0").await;
    app.cli_ok(&["migrate"]);
    let (_, after) = scim.get("/Users?count=0").await;
    assert_eq!(before["totalResults"], after["totalResults"]);
}

#[tokio::test]
async fn unfiltered_total_stays_exact_on_every_path_on_sqlite() {
    unfiltered_total_stays_exact(Backend::Sqlite).await;
}

#[tokio::test]
async fn unfiltered_total_stays_exact_on_every_path_on_postgres() {
    unfiltered_total_stays_exact(Backend::Postgres).await;
}

/// Deep pages (which seek to remembered positions) list exactly what walking the index from
/// the start lists (a filter takes that path), before and after an append, an insert that
/// sorts first, and deletes; past the end is empty.
async fn deep_pages_match_the_walk(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    let scim = app.scim("acme");
    let org_id = app.first_org_id();
    // 3,500 users, seven per second of created_at, so the id decides within a second.
    insert_users(
        &app,
        &org_id,
        (0..3_500).map(|i| (i, 1_000 + (i as i64) / 7)),
    );
    let ids = |page: &Value| -> Vec<String> {
        page["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let same = |label: &'static str| {
        let scim = &scim;
        async move {
            let (_, total) = scim.get("/Users?count=0").await;
            let total = total["totalResults"].as_i64().unwrap();
            for start in [1, 999, 1000, 1001, 1002, 2001, 2950, 3001, total - 5, total] {
                let (s, seek) = scim
                    .get(&format!("/Users?startIndex={start}&count=100"))
                    .await;
                assert_eq!(s, 200);
                let (_, walk) = scim
                    .get(&format!(
                        "/Users?startIndex={start}&count=100&filter={}",
                        q("userName pr")
                    ))
                    .await;
                assert_eq!(ids(&seek), ids(&walk), "{label}: startIndex {start}");
                assert_eq!(seek["totalResults"], total, "{label}");
                assert!(!ids(&seek).is_empty(), "{label}: startIndex {start}");
            }
            let (_, past) = scim
                .get(&format!("/Users?startIndex={}&count=100", total + 1))
                .await;
            assert!(ids(&past).is_empty());
        }
    };
    same("seeded").await;
    // An append (a new user sorts last): remembered positions stay right.
    scim.create_user("late@acme.test").await;
    same("after an append").await;
    // A user that sorts first moves every position by one.
    insert_users(&app, &org_id, std::iter::once((9_000, 10)));
    same("after an insert at the front").await;
    // Deletes in the middle.
    let (_, page) = scim.get("/Users?startIndex=1500&count=3").await;
    for id in ids(&page) {
        assert_eq!(scim.delete(&format!("/Users/{id}")).await, 204);
    }
    same("after deletes").await;
    // The same ids through the middle of the list as one unfiltered walk of big pages.
    let mut all = Vec::new();
    let mut start = 1;
    loop {
        let (_, page) = scim
            .get(&format!("/Users?startIndex={start}&count=1000"))
            .await;
        let got = ids(&page);
        if got.is_empty() {
            break;
        }
        start += got.len();
        all.extend(got);
    }
    let unique: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no user listed twice");
    assert_eq!(all.len(), 3_500 + 1 + 1 - 3);
}

#[tokio::test]
async fn deep_pages_match_the_walk_on_sqlite() {
    deep_pages_match_the_walk(Backend::Sqlite).await;
}

#[tokio::test]
async fn deep_pages_match_the_walk_on_postgres() {
    deep_pages_match_the_walk(Backend::Postgres).await;
}
