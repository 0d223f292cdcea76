//! SCIM through the real HTTP surface, written from what Okta and Entra actually send (see the
//! facts restated in each test), plus lifecycle, isolation between orgs, and bad input.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Query-string encoding of a filter.
fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Okta: lookup before create, case-insensitive userName, create with password/groups/locale,
/// PUT profile updates, deactivate/reactivate by PATCH and PUT, group push.
async fn okta_provisioning_flow(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    let scim = app.scim("acme");

    // 1. Lookup before create: a ListResponse with integer counts even when nothing matches.
    let (s, j) = scim
        .get(&format!(
            "/Users?filter={}&startIndex=1&count=100",
            q(r#"userName eq "jane.doe@acme.test""#)
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(j["totalResults"], 0);
    assert_eq!(j["startIndex"], 1);
    assert_eq!(j["itemsPerPage"], 0);
    assert_eq!(
        j["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );

    // 3. Create as Okta does: application/json, with password, groups, locale, externalId.
    let res = app
        .client
        .post(scim.url("/Users"))
        .bearer_auth(&scim.token)
        .header("content-type", "application/json")
        .body(
            json!({"schemas": [USER], "userName": "Jane.Doe@acme.test", "name": {"givenName": "Jane", "familyName": "Doe"},
                "emails": [{"primary": true, "value": "jane.doe@acme.test", "type": "work"}], "displayName": "Jane Doe",
                "locale": "en-US", "externalId": "00u1", "groups": [], "password": "okta-sent-Secret-123", "active": true})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["content-type"], "application/scim+json");
    let location = res.headers()["location"].to_str().unwrap().to_string();
    let user: Value = res.json().await.unwrap();
    let id = user["id"].as_str().unwrap().to_string();
    assert!(location.ends_with(&format!("/scim/v2/Users/{id}")));
    assert!(user.get("password").is_none());
    assert_eq!(user["meta"]["resourceType"], "User");
    assert_eq!(user["meta"]["location"], location);
    assert!(user["meta"]["version"]
        .as_str()
        .unwrap()
        .starts_with("W/\""));

    // 2. Case-insensitive userName: the upper-case filter finds her, the same document as
    // GET by id; startIndex and count apply to that one match. A case-only duplicate is 409.
    let lookup = format!("/Users?filter={}", q(r#"userName eq "JANE.DOE@ACME.TEST""#));
    let (_, j) = scim.get(&lookup).await;
    assert_eq!(j["totalResults"], 1);
    assert_eq!(j["itemsPerPage"], 1);
    assert_eq!(j["Resources"][0], scim.get(&format!("/Users/{id}")).await.1);
    let (_, j) = scim.get(&format!("{lookup}&startIndex=2")).await;
    assert_eq!(
        (j["totalResults"].as_i64(), j["itemsPerPage"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(j["startIndex"], 2);
    assert!(j["Resources"].as_array().is_none_or(Vec::is_empty), "{j}");
    let (_, j) = scim.get(&format!("{lookup}&count=0")).await;
    assert_eq!(
        (j["totalResults"].as_i64(), j["itemsPerPage"].as_i64()),
        (Some(1), Some(0))
    );
    assert!(j["Resources"].as_array().is_none_or(Vec::is_empty), "{j}");
    let (s, j) = scim
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "jane.doe@ACME.test"}),
        )
        .await;
    assert_eq!(s, 409);
    assert_eq!(j["scimType"], "uniqueness");

    // 4. Profile update by PUT carrying id, groups and meta.
    let (s, j) = scim
        .put(&format!("/Users/{id}"), json!({"schemas": [USER], "id": id, "userName": "jane.doe@acme.test", "name": {"givenName": "Janet", "familyName": "Doe"},
            "emails": [{"primary": true, "value": "jane.doe@acme.test", "type": "work"}], "active": true, "groups": [], "meta": {"resourceType": "User"}}))
        .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["name"]["givenName"], "Janet");
    assert_eq!(j["meta"]["version"], "W/\"2\"");
    // Deactivate the OIN way, then reactivate with PUT.
    let (s, j) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(j["active"], false);
    let (s, j) = scim
        .put(
            &format!("/Users/{id}"),
            json!({"schemas": [USER], "id": id, "userName": "jane.doe@acme.test", "active": true}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(j["active"], true);

    // 5. Group push.
    let u2 = scim.create_user("bob@acme.test").await;
    let (s, g) = scim.post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering", "members": []})).await;
    assert_eq!(s, 201);
    let gid = g["id"].as_str().unwrap().to_string();
    let (_, j) = scim
        .get(&format!(
            "/Groups?filter={}",
            q(r#"displayName eq "engineering""#)
        ))
        .await;
    assert_eq!(j["totalResults"], 1);
    let (s, _) = scim
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(
                json!([{"op": "replace", "value": {"id": gid, "displayName": "Engineering Team"}}]),
            ),
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = scim
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await;
    assert_eq!(s, 204);
    // One PATCH: remove one member, then add members, applied in order.
    let (s, _) = scim
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([
                {"op": "remove", "path": format!("members[value eq \"{id}\"]")},
                {"op": "add", "path": "members", "value": [{"value": id}, {"value": u2}]}
            ])),
        )
        .await;
    assert_eq!(s, 204);
    let (_, g) = scim.get(&format!("/Groups/{gid}")).await;
    assert_eq!(g["displayName"], "Engineering Team");
    assert_eq!(g["members"].as_array().unwrap().len(), 2);
    // replace path members replaces all.
    scim.patch(
        &format!("/Groups/{gid}"),
        patch_op(json!([{"op": "replace", "path": "members", "value": [{"value": u2}]}])),
    )
    .await;
    let (_, g) = scim.get(&format!("/Groups/{gid}")).await;
    assert_eq!(
        g["members"],
        json!([{"value": u2, "display": "bob@acme.test", "$ref": scim.url(&format!("/Users/{u2}")), "type": "User"}])
    );
    // PUT with members is honoured.
    let (s, g) = scim
        .put(&format!("/Groups/{gid}"), json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering Team", "members": [{"value": id}]}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(g["members"][0]["value"], id);
    // The user sees the group.
    let (_, u) = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(u["groups"][0]["value"], gid);
    assert_eq!(u["groups"][0]["display"], "Engineering Team");

    // 6. Bad token → 401 SCIM error; unknown id → 404 SCIM error.
    let res = app
        .client
        .get(scim.url("/Users"))
        .bearer_auth("ghs_not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["content-type"], "application/scim+json");
    let j: Value = res.json().await.unwrap();
    assert_eq!(j["status"], "401");
    assert!(!j["detail"].as_str().unwrap().is_empty());
    let (s, j) = scim.get("/Users/00919288221112222").await;
    assert_eq!(s, 404);
    assert_eq!(
        j["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );

    // The IdP's password was never stored, and the audit body has it redacted.
    let db = app.db();
    let mut conn = db.conn().unwrap();
    let stored: Vec<Option<String>> = {
        use diesel::prelude::*;
        gatehouse::db::schema::users::table
            .select(gatehouse::db::schema::users::scim_json)
            .load(&mut *conn)
            .unwrap()
    };
    assert!(stored
        .iter()
        .flatten()
        .all(|s| !s.contains("okta-sent-Secret-123")));
    let audit = app.cli_ok(&["audit", "list", "acme", "--limit", "1000", "--json"]);
    assert!(!audit.contains("okta-sent-Secret-123"));
    assert!(audit.contains("scim.request") && audit.contains("[REDACTED]"));
    assert!(!audit.contains(&scim.token));
}

#[tokio::test]
async fn okta_provisioning_flow_on_sqlite() {
    okta_provisioning_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn okta_provisioning_flow_on_postgres() {
    okta_provisioning_flow(Backend::Postgres).await;
}

/// Entra: connection test without headers, string booleans, capitalised ops, value paths,
/// creating the work e-mail, manager as a bare id, roles forms, filters it uses.
async fn entra_provisioning_flow(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    let scim = app.scim("acme");
    app.cli_ok(&["role", "add", "acme", "admin", "--rank", "10"]);

    // 1. Test connection: no Accept, no Content-Type.
    let res = reqwest::Client::new()
        .get(scim.url(&format!(
            "/Users?filter={}",
            q(r#"userName eq "0d5e8c4e-8d44-4e4c-8c61-3e1e6c5b8f10""#)
        )))
        .bearer_auth(&scim.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/scim+json");
    let j: Value = res.json().await.unwrap();
    assert_eq!(j["totalResults"], 0);

    // 2. Create with charset, meta, empty roles, nulls and "True".
    let res = app
        .client
        .post(scim.url("/Users"))
        .bearer_auth(&scim.token)
        .header("content-type", "application/scim+json; charset=utf-8")
        .body(
            json!({"schemas": [USER, ENTERPRISE], "externalId": "ext-ann", "userName": "ann@acme.test", "active": "True",
                "displayName": "Ann", "meta": {"resourceType": "User"}, "roles": [], "title": null,
                "emails": [{"Primary": "True", "type": "home", "value": "ann@home.test"}],
                "name": {"givenName": "Ann", "familyName": null}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    let id = user["id"].as_str().unwrap().to_string();
    assert_eq!(user["active"], true);
    assert_eq!(user["emails"][0]["primary"], true);
    assert!(user.get("title").is_none());

    // 4./5./6. One PATCH with everything Entra sends.
    let (s, j) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "ann@acme.test"},
                {"op": "Replace", "path": "name.givenName", "value": "Anne"},
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "E-7"},
                {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "mgr-id-1"},
                {"op": "Add", "path": "roles[primary eq \"True\"].value", "value": "admin"},
                {"op": "Replace", "value": {"displayName": "Anne A", "name.familyName": "Able",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "R&D"}},
                {"op": "Replace", "path": "active", "value": "False"}
            ])),
        )
        .await;
    assert_eq!(s, 200, "{j}");
    let work: Vec<&Value> = j["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "work")
        .collect();
    assert_eq!(work.len(), 1, "the work e-mail was created");
    assert_eq!(work[0]["value"], "ann@acme.test");
    assert_eq!(j["name"]["givenName"], "Anne");
    assert_eq!(j["name"]["familyName"], "Able");
    assert_eq!(j["displayName"], "Anne A");
    assert_eq!(j[ENTERPRISE]["employeeNumber"], "E-7");
    assert_eq!(j[ENTERPRISE]["department"], "R&D");
    assert_eq!(j[ENTERPRISE]["manager"], json!({"value": "mgr-id-1"}));
    assert_eq!(j["roles"], json!([{"primary": true, "value": "admin"}]));
    assert_eq!(j["active"], false);
    // Manager in the $ref form, roles as a JSON-encoded string, replace roles.
    let (s, j) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([
                {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": [{"$ref": null, "value": "mgr-id-2"}]},
                {"op": "Add", "path": "roles", "value": "[{\"value\":\"viewer\",\"primary\":\"False\"}]"},
                {"op": "Replace", "path": "active", "value": "True"}
            ])),
        )
        .await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j[ENTERPRISE]["manager"]["value"], "mgr-id-2");
    assert_eq!(j["roles"].as_array().unwrap().len(), 2);
    assert_eq!(j["active"], true);

    // 3. The filters Entra uses; externalId is not unique.
    let other = scim.create_user("other@acme.test").await;
    scim.patch(
        &format!("/Users/{other}"),
        patch_op(json!([{"op": "Add", "path": "externalId", "value": "ext-ann"}])),
    )
    .await;
    let (_, j) = scim
        .get(&format!(
            "/Users?filter={}",
            q(r#"externalId eq "ext-ann""#)
        ))
        .await;
    assert_eq!(j["totalResults"], 2);
    let (_, j) = scim
        .get(&format!(
            "/Users?filter={}",
            q(r#"emails[type eq "work"].value eq "ANN@acme.test""#)
        ))
        .await;
    assert_eq!(j["totalResults"], 1);
    assert_eq!(j["Resources"][0]["id"], id);
    let (_, j) = scim
        .get(&format!(
            "/Users?filter={}",
            q(r#"externalId eq "ext-ann" and userName eq "ann@acme.test""#)
        ))
        .await;
    assert_eq!(j["totalResults"], 1);
    // 8. Attribute names are case-insensitive.
    let (_, j) = scim
        .get(&format!(
            "/Users?filter={}",
            q(r#"DisplayName eq "anne a""#)
        ))
        .await;
    assert_eq!(j["totalResults"], 1);

    // 7. Groups: an extra Microsoft schema URN, member add/remove forms, excludedAttributes.
    let (s, g) = scim
        .post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group", "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId": "grp-obj-1", "displayName": "Sales", "members": []}))
        .await;
    assert_eq!(s, 201);
    let gid = g["id"].as_str().unwrap().to_string();
    let (s, _) = scim
        .patch(&format!("/Groups/{gid}"), patch_op(json!([{"op": "Add", "path": "members", "value": [{"value": id}, {"value": other}]}])))
        .await;
    assert_eq!(s, 204);
    for path in [
        format!(
            "/Groups?excludedAttributes=members&filter={}",
            q(r#"displayName eq "Sales""#)
        ),
        "/Groups?excludedAttributes=members".to_string(),
    ] {
        let (_, j) = scim.get(&path).await;
        assert_eq!(j["totalResults"], 1);
        assert!(j["Resources"][0].get("members").is_none(), "{j}");
        assert_eq!(j["Resources"][0]["displayName"], "Sales");
    }
    let (_, j) = scim
        .get(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await;
    assert!(j.get("members").is_none());
    let (s, _) = scim
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([{"op": "Remove", "path": "members", "value": [{"value": other}]}])),
        )
        .await;
    assert_eq!(s, 204);
    let (_, j) = scim
        .get(&format!(
            "/Groups?filter={}",
            q(&format!(r#"members[value eq "{other}"]"#))
        ))
        .await;
    assert_eq!(j["totalResults"], 0);
    let (_, j) = scim
        .get(&format!(
            "/Groups?filter={}",
            q(&format!(r#"members.value eq "{id}""#))
        ))
        .await;
    assert_eq!(j["totalResults"], 1);

    // 8. Unknown attributes in PUT are ignored.
    let (s, _) = scim
        .put(
            &format!("/Users/{other}"),
            json!({"schemas": [USER], "userName": "other@acme.test", "favouriteColour": "blue"}),
        )
        .await;
    assert_eq!(s, 200);

    // 9. Disabled users are still returned; DELETE then 404 twice.
    scim.patch(
        &format!("/Users/{other}"),
        patch_op(json!([{"op": "Replace", "path": "active", "value": false}])),
    )
    .await;
    let (s, j) = scim.get(&format!("/Users/{other}")).await;
    assert_eq!(s, 200);
    assert_eq!(j["active"], false);
    let (_, j) = scim
        .get(&format!(
            "/Users?filter={}",
            q(r#"userName eq "other@acme.test""#)
        ))
        .await;
    assert_eq!(j["totalResults"], 1);
    let (_, j) = scim
        .get(&format!("/Users?filter={}", q("active eq false")))
        .await;
    assert_eq!(j["totalResults"], 1);
    assert_eq!(scim.delete(&format!("/Users/{other}")).await, 204);
    assert_eq!(scim.get(&format!("/Users/{other}")).await.0, 404);
    assert_eq!(scim.delete(&format!("/Users/{other}")).await, 404);
}

#[tokio::test]
async fn entra_provisioning_flow_on_sqlite() {
    entra_provisioning_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn entra_provisioning_flow_on_postgres() {
    entra_provisioning_flow(Backend::Postgres).await;
}

#[tokio::test]
async fn filters_paging_sorting_and_projection() {
    let app = spawn_app().await;
    let scim = app.scim("acme");
    for i in 0..7 {
        let id = scim.create_user(&format!("user{i}@acme.test")).await;
        scim.patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "add", "path": "title", "value": format!("Title {}", i % 3)}])),
        )
        .await;
    }
    let (_, j) = scim
        .get("/Users?startIndex=3&count=2&sortBy=userName&sortOrder=descending")
        .await;
    assert_eq!(j["totalResults"], 7);
    assert_eq!(j["startIndex"], 3);
    assert_eq!(j["itemsPerPage"], 2);
    assert_eq!(j["Resources"][0]["userName"], "user4@acme.test");
    assert_eq!(j["Resources"][1]["userName"], "user3@acme.test");
    let (_, j) = scim.get("/Users?count=0").await;
    assert_eq!(j["totalResults"], 7);
    assert_eq!(j["Resources"], json!([]));
    let (_, j) = scim.get("/Users?startIndex=0&count=100").await;
    assert_eq!(j["startIndex"], 1, "startIndex is 1-based");
    assert_eq!(j["itemsPerPage"], 7);
    // Stable order across pages.
    let mut seen = Vec::new();
    for start in [1, 4, 7] {
        let (_, j) = scim
            .get(&format!("/Users?startIndex={start}&count=3"))
            .await;
        seen.extend(
            j["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
    }
    seen.dedup();
    assert_eq!(seen.len(), 7);

    for (filter, expected) in [
        (r#"title eq "title 1""#, 2),
        (r#"title co "itle""#, 7),
        (r#"userName sw "user1""#, 1),
        (r#"userName ew "@ACME.test""#, 7),
        (r#"not (title eq "Title 0")"#, 4),
        (
            r#"(title eq "Title 0" or title eq "Title 1") and userName ne "user0@acme.test""#,
            4,
        ),
        (r#"title pr"#, 7),
        (r#"nickName pr"#, 0),
        (r#"name pr"#, 7),
        (r#"emails[type eq "work" and value co "user2"]"#, 1),
        (r#"emails[type eq "home"]"#, 0),
        (r#"meta.created gt "2000-01-01T00:00:00Z""#, 7),
        (r#"meta.lastModified lt "2000-01-01T00:00:00Z""#, 0),
        (r#"userName co "%""#, 0),
        (r#"userName co "_""#, 0),
    ] {
        let (s, j) = scim.get(&format!("/Users?filter={}", q(filter))).await;
        assert_eq!(s, 200, "{filter}: {j}");
        assert_eq!(j["totalResults"], expected, "{filter}");
    }
    // POST /.search with attributes arrays.
    let (s, j) = scim
        .post("/Users/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName eq \"user1@acme.test\"", "attributes": ["userName"], "startIndex": 1, "count": 10}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        j["Resources"][0],
        json!({"schemas": [USER], "id": j["Resources"][0]["id"], "userName": "user1@acme.test"})
    );
    let (_, j) = scim
        .get("/Users?excludedAttributes=emails,meta&count=1")
        .await;
    assert!(j["Resources"][0].get("emails").is_none() && j["Resources"][0].get("meta").is_none());
    assert!(j["Resources"][0].get("userName").is_some());
}

#[tokio::test]
async fn bad_input_gets_scim_errors_never_500() {
    let app = spawn_app().await;
    let scim = app.scim("acme");
    let id = scim.create_user("a@acme.test").await;
    let raw = |method: Method, path: &str, body: &'static str| {
        app.client
            .request(method, scim.url(path))
            .bearer_auth(&scim.token)
            .header("content-type", "application/scim+json")
            .body(body)
            .send()
    };
    for (method, path, body) in [
        (Method::POST, "/Users".to_string(), "{not json"),
        (Method::PUT, format!("/Users/{id}"), "[1,2"),
        (Method::PATCH, format!("/Users/{id}"), "\u{0}"),
    ] {
        let res = raw(method, &path, body).await.unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(res.headers()["content-type"], "application/scim+json");
        let j: Value = res.json().await.unwrap();
        assert_eq!(j["scimType"], "invalidSyntax");
    }
    for filter in [
        "userName%20eq",
        "userName%20zz%20%22x%22",
        "(((",
        "emails%5Btype%20eq%20%22x%22",
        "nosuch%20eq%20%22x%22",
    ] {
        let (s, j) = scim.get(&format!("/Users?filter={filter}")).await;
        assert_eq!(s, 400, "{filter}");
        assert_eq!(j["scimType"], "invalidFilter", "{filter}");
    }
    let (s, j) = scim.post("/Users", json!({"schemas": [USER]})).await;
    assert_eq!(s, 400);
    assert_eq!(j["scimType"], "invalidValue");
    let (s, j) = scim
        .post(
            "/Users",
            json!({"userName": "b@acme.test", "active": "sometimes"}),
        )
        .await;
    assert_eq!((s, j["scimType"].as_str()), (400, Some("invalidValue")));
    let (s, j) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "jump", "path": "active", "value": true}])),
        )
        .await;
    assert_eq!((s, j["scimType"].as_str()), (400, Some("invalidSyntax")));
    let (s, j) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "noSuchThing", "value": 1}])),
        )
        .await;
    assert_eq!((s, j["scimType"].as_str()), (400, Some("invalidPath")));
    let (s, _) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op(json!([{"op": "replace", "path": "id", "value": "mine"}])),
        )
        .await;
    assert_eq!(s, 400);
    let (s, j) = scim
        .post(
            "/Groups",
            json!({"displayName": "G", "members": [{"value": "no-such-user"}]}),
        )
        .await;
    assert_eq!((s, j["scimType"].as_str()), (400, Some("invalidValue")));
    let (s, j) = scim.get("/Nope").await;
    assert_eq!(s, 404);
    assert_eq!(j["status"], "404");
    for path in ["/Schemas", "/ResourceTypes", "/ServiceProviderConfig"] {
        let (s, j) = scim.post(path, json!({})).await;
        assert_eq!(s, 405, "{path}");
        assert_eq!(j["status"], "405");
    }
    // Beyond the body limit (4 MiB by default): 413 as a SCIM error.
    let big = json!({"userName": "c@acme.test", "title": "x".repeat(5 * 1024 * 1024)});
    let (s, j) = scim.post("/Users", big).await;
    assert_eq!(s, 413);
    assert_eq!(j["status"], "413");
    // The server is fine afterwards.
    assert_eq!(scim.get("/Users").await.0, 200);
}

#[tokio::test]
async fn discovery_endpoints_describe_what_round_trips() {
    let app = spawn_app().await;
    let scim = app.scim("acme");
    let (s, j) = scim.get("/ServiceProviderConfig").await;
    assert_eq!(s, 200);
    assert_eq!(j["patch"]["supported"], true);
    assert_eq!(j["filter"]["supported"], true);
    let (_, j) = scim.get("/Schemas").await;
    let names: Vec<&str> = j["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            USER,
            "urn:ietf:params:scim:schemas:core:2.0:Group",
            ENTERPRISE
        ]
    );
    let user_attrs: Vec<&str> = j["Resources"][0]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(
        !user_attrs.contains(&"password"),
        "passwords are never stored, so not published"
    );
    let (s, j) = scim.get(&format!("/Schemas/{USER}")).await;
    assert_eq!((s, j["id"].as_str()), (200, Some(USER)));
    let (s, j) = scim.get("/ResourceTypes/User").await;
    assert_eq!((s, j["endpoint"].as_str()), (200, Some("/Users")));
    // Endpoint names match whatever their case, with or without a trailing slash.
    assert_eq!(scim.get("/users").await.0, 200);
    assert_eq!(scim.get("/Users/").await.0, 200);
}

/// Lifecycle: deactivation revokes sessions and blocks sign-in; reactivation restores the same
/// user, groups and role; SCIM roles set the app role but never the org-admin flag; DELETE
/// leaves a tombstone; break-glass accounts are invisible to SCIM.
#[tokio::test]
async fn lifecycle_sessions_roles_tombstones_and_break_glass() {
    let app = spawn_app().await;
    app.seed_local_user(); // alice@acme.test with a password, in org acme
                           // Handed over to provisioning (SCIM changes only the accounts it owns).
    app.cli_ok(&["user", "set", "acme", "alice@acme.test", "--scim-managed"]);
    app.cli_ok(&["role", "add", "acme", "admin", "--rank", "10"]);
    let scim = app.scim("acme");
    let (_, j) = scim
        .get(&format!(
            "/Users?filter={}",
            q(r#"userName eq "alice@acme.test""#)
        ))
        .await;
    let id = j["Resources"][0]["id"].as_str().unwrap().to_string();
    let gid = scim.create_group("Engineering", &[&id]).await;
    let (s, _) = scim.patch(&format!("/Users/{id}"), patch_op(json!([{"op": "add", "path": "roles", "value": [{"value": "admin", "primary": true}]}]))).await;
    assert_eq!(s, 200);

    app.login("alice@acme.test", PASSWORD).await;
    let me: Value = app.me_json().await.json().await.unwrap();
    assert_eq!(me["role"], "admin");
    assert_eq!(me["groups"], json!(["Engineering"]));
    let users = app.cli_ok(&["user", "list", "acme", "--json"]);
    assert!(
        users.contains("\"org_admin\":false"),
        "SCIM roles never grant org-admin: {users}"
    );

    // Deactivation: the live session stops at once and sign-in is refused.
    scim.patch(
        &format!("/Users/{id}"),
        patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}])),
    )
    .await;
    assert_eq!(app.me_json().await.status(), 401);
    assert_eq!(app.login("alice@acme.test", PASSWORD).await.status(), 401);

    // Reactivation restores the same user, groups and role.
    scim.patch(
        &format!("/Users/{id}"),
        patch_op(json!([{"op": "Replace", "path": "active", "value": true}])),
    )
    .await;
    assert_eq!(app.login("alice@acme.test", PASSWORD).await.status(), 303);
    let me: Value = app.me_json().await.json().await.unwrap();
    assert_eq!(
        (me["role"].as_str(), me["groups"].clone()),
        (Some("admin"), json!(["Engineering"]))
    );
    let (_, g) = scim.get(&format!("/Groups/{gid}")).await;
    assert_eq!(g["members"][0]["value"], id);

    // A break-glass account is invisible and untouchable.
    app.cli_env(
        &[("GH_TEST_PW", PASSWORD)],
        &[
            "user",
            "add",
            "acme",
            "bg@acme.test",
            "--password-env",
            "GH_TEST_PW",
        ],
    )
    .ok();
    app.sql("UPDATE users SET is_break_glass = TRUE WHERE user_name_folded = 'bg@acme.test'");
    let bg_id: String = {
        use diesel::prelude::*;
        let db = app.db();
        let mut conn = db.conn().unwrap();
        gatehouse::db::schema::users::table
            .filter(gatehouse::db::schema::users::user_name_folded.eq("bg@acme.test"))
            .select(gatehouse::db::schema::users::id)
            .first(&mut *conn)
            .unwrap()
    };
    let (_, j) = scim.get("/Users").await;
    assert!(!j.to_string().contains("bg@acme.test"));
    let (_, j) = scim
        .get(&format!(
            "/Users?filter={}",
            q(r#"userName eq "BG@acme.test""#)
        ))
        .await;
    assert_eq!(j["totalResults"], 0, "{j}");
    assert_eq!(scim.get(&format!("/Users/{bg_id}")).await.0, 404);
    assert_eq!(
        scim.patch(
            &format!("/Users/{bg_id}"),
            patch_op(json!([{"op": "replace", "path": "active", "value": false}]))
        )
        .await
        .0,
        404
    );
    assert_eq!(scim.delete(&format!("/Users/{bg_id}")).await, 404);
    assert_eq!(
        scim.patch(
            &format!("/Groups/{gid}"),
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": bg_id}]}]))
        )
        .await
        .0,
        400
    );

    // DELETE: the session ends, the user is gone from SCIM, a tombstone remains, audit stays.
    assert_eq!(scim.delete(&format!("/Users/{id}")).await, 204);
    assert_eq!(app.me_json().await.status(), 401);
    let tombstones: i64 = {
        use diesel::prelude::*;
        let db = app.db();
        let mut conn = db.conn().unwrap();
        gatehouse::db::schema::tombstones::table
            .count()
            .get_result(&mut *conn)
            .unwrap()
    };
    assert_eq!(tombstones, 1);
    let audit = app.cli_ok(&["audit", "list", "acme", "--limit", "1000"]);
    assert!(
        audit.contains("login.password"),
        "history kept after the user is deleted"
    );
    assert!(app.cli_ok(&["audit", "verify", "acme"]).contains("intact"));
}

/// A token of org A never reads or changes org B's data, whatever ids it names.
#[tokio::test]
async fn orgs_are_isolated() {
    let app = spawn_app().await;
    let a = app.scim("org-a");
    let b = app.scim("org-b");
    let b_user = b.create_user("bob@b.test").await;
    let b_group = b.create_group("B Team", &[&b_user]).await;
    let a_user = a.create_user("alice@a.test").await;
    let a_group = a.create_group("A Team", &[&a_user]).await;

    assert_eq!(a.get(&format!("/Users/{b_user}")).await.0, 404);
    assert_eq!(a.get(&format!("/Groups/{b_group}")).await.0, 404);
    assert_eq!(
        a.put(&format!("/Users/{b_user}"), json!({"userName": "x@a.test"}))
            .await
            .0,
        404
    );
    assert_eq!(
        a.put(
            &format!("/Groups/{b_group}"),
            json!({"displayName": "mine"})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        a.patch(
            &format!("/Users/{b_user}"),
            patch_op(json!([{"op": "replace", "path": "active", "value": false}]))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        a.patch(
            &format!("/Groups/{b_group}"),
            patch_op(json!([{"op": "remove", "path": "members"}]))
        )
        .await
        .0,
        404
    );
    assert_eq!(a.delete(&format!("/Users/{b_user}")).await, 404);
    assert_eq!(a.delete(&format!("/Groups/{b_group}")).await, 404);
    // B's user cannot be made a member of A's group, nor found by id or membership filters.
    assert_eq!(
        a.patch(
            &format!("/Groups/{a_group}"),
            patch_op(json!([{"op": "add", "path": "members", "value": [{"value": b_user}]}]))
        )
        .await
        .0,
        400
    );
    let (_, j) = a
        .get(&format!(
            "/Users?filter={}",
            q(&format!(r#"id eq "{b_user}""#))
        ))
        .await;
    assert_eq!(j["totalResults"], 0);
    let (_, j) = a
        .get(&format!(
            "/Groups?filter={}",
            q(&format!(r#"members[value eq "{b_user}"]"#))
        ))
        .await;
    assert_eq!(j["totalResults"], 0);
    let (_, j) = a.get("/Users").await;
    assert_eq!(j["totalResults"], 1);
    let (_, j) = a.post("/.search", json!({})).await;
    assert_eq!(
        j["totalResults"], 2,
        "root search sees A's user and group only: {j}"
    );
    // The same userName can exist in both orgs.
    b.create_user("alice@a.test").await;
    // B is untouched.
    let (_, j) = b.get(&format!("/Groups/{b_group}")).await;
    assert_eq!(j["displayName"], "B Team");
    assert_eq!(j["members"][0]["value"], b_user);
    let (_, j) = b.get(&format!("/Users/{b_user}")).await;
    assert_eq!(j["active"], true);
}

/// A 10,000-member PATCH fits under the body limit, and removing one member of a large group
/// touches only that member.
#[tokio::test]
async fn ten_thousand_member_patch() {
    let app = spawn_app().await;
    let scim = app.scim("acme");
    // Seed the users directly (creating 10,000 over HTTP would only test the loop).
    let org_id = app.first_org_id();
    insert_users(&app, &org_id, (0..10_000).map(|i| (i, 0)));
    let gid = scim.create_group("Everyone", &[]).await;
    let members: Vec<Value> = (0..10_000).map(|i| json!({"value": guid(i)})).collect();
    let body = patch_op(json!([{"op": "add", "path": "members", "value": members}]));
    assert!(
        body.to_string().len() > 400_000,
        "as large as Entra's object ids make it"
    );
    let (s, j) = scim.patch(&format!("/Groups/{gid}"), body).await;
    assert_eq!(s, 204, "{j}");
    let (_, j) = scim
        .get(&format!(
            "/Groups?filter={}&attributes=displayName",
            q(r#"displayName eq "Everyone""#)
        ))
        .await;
    assert!(j["Resources"][0].get("members").is_none());
    let (s, _) = scim
        .patch(
            &format!("/Groups/{gid}"),
            patch_op(
                json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", guid(42))}]),
            ),
        )
        .await;
    assert_eq!(s, 204);
    let (_, j) = scim.get(&format!("/Groups/{gid}")).await;
    let members = j["members"].as_array().unwrap();
    assert_eq!(members.len(), 9_999);
    assert!(!members.iter().any(|m| m["value"] == guid(42).as_str()));
}

/// Reads write a group's members as text straight from the database; writes answer with
/// them as JSON values. Both must say the same thing, whatever the display names hold, in a
/// single GET, a list, a root `.search`, and with `attributes=members`; a member sub-attribute
/// projection still applies.
#[tokio::test]
async fn member_lists_read_the_same_as_written() {
    let app = spawn_app().await;
    let scim = app.scim("acme");
    let mut ids = Vec::new();
    for (i, name) in [
        "plain@acme.test",
        "quote\"and\\slash@acme.test",
        "zoë\tctl@acme.test",
    ]
    .iter()
    .enumerate()
    {
        let (s, u) = scim
            .post(
                "/Users",
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "externalId": format!("x{i}")}),
            )
            .await;
        assert_eq!(s, 201, "{u}");
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    // The placeholder's control-character prefix cannot be sent at all (control characters
    // are refused), and a display name that looks like the rest of it is just text.
    let (s, _) = scim
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "\u{1}gatehouse-members:x"}),
        )
        .await;
    assert_eq!(s, 400);
    let tricky = "gatehouse-members:00000000000000000000000000000000:x";
    let members: Vec<Value> = ids
        .iter()
        .map(|id| json!({"value": id, "display": format!("{tricky} {id}")}))
        .collect();
    let (s, written) = scim
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": tricky, "members": members}),
        )
        .await;
    assert_eq!(s, 201, "{written}");
    let gid = written["id"].as_str().unwrap().to_string();
    let sorted = |v: &Value| {
        let mut m = v.as_array().cloned().unwrap_or_default();
        m.sort_by_key(|x| x["value"].as_str().unwrap_or_default().to_string());
        m
    };
    let want = sorted(&written["members"]);
    assert_eq!(want.len(), 3);
    assert_eq!(want[0]["type"], "User");

    let (s, one) = scim.get(&format!("/Groups/{gid}")).await;
    assert_eq!(s, 200);
    assert_eq!(sorted(&one["members"]), want, "{one}");
    assert_eq!(one["displayName"], tricky);
    let (_, listed) = scim
        .get(&format!("/Groups?filter={}", q(r#"displayName pr"#)))
        .await;
    assert_eq!(sorted(&listed["Resources"][0]["members"]), want);
    let (_, only) = scim.get(&format!("/Groups/{gid}?attributes=members")).await;
    assert_eq!(sorted(&only["members"]), want);
    assert!(only.get("displayName").is_none());
    let (s, found) = scim
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "displayName pr", "startIndex": 1, "count": 10}),
        )
        .await;
    assert_eq!(s, 200, "{found}");
    let group = found["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == gid.as_str())
        .cloned()
        .unwrap();
    assert_eq!(sorted(&group["members"]), want);
    // A sub-attribute projection keeps only what it names.
    let (_, values) = scim
        .get(&format!("/Groups/{gid}?attributes=members.value"))
        .await;
    let m = sorted(&values["members"]);
    assert_eq!(m.len(), 3);
    assert!(
        m.iter()
            .all(|x| x.get("display").is_none() && x["value"].is_string()),
        "{values}"
    );
}

/// Every attribute × operator × value combination answers 200 or 400 — never a 500 — on both
/// backends (PostgreSQL is strict about types where SQLite is not).
async fn every_filter_combination_is_200_or_400(backend: Backend) {
    let Some(app) = spawn_app_on(backend).await else {
        return;
    };
    let scim = app.scim("acme");
    let id = scim.create_user("a@acme.test").await;
    scim.create_group("G", &[&id]).await;
    let attrs = [
        "userName",
        "id",
        "externalId",
        "active",
        "meta.created",
        "meta.lastModified",
        "title",
        "emails",
        "emails.type",
        "name.givenName",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        "displayName",
        "members",
        "members.value",
    ];
    let ops = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"];
    let values = [
        "\"a@acme.test\"",
        "true",
        "false",
        "null",
        "42",
        "\"2011-05-13T04:42:34Z\"",
        "\"%_\\\\\"",
    ];
    for endpoint in ["/Users", "/Groups"] {
        for attr in attrs {
            for op in ops {
                for value in values {
                    let filter = format!("{attr} {op} {value}");
                    let (s, j) = scim.get(&format!("{endpoint}?filter={}", q(&filter))).await;
                    assert!(
                        s == 200 || (s == 400 && j["scimType"] == "invalidFilter"),
                        "{endpoint} {filter}: {s} {j}"
                    );
                }
            }
            let (s, _) = scim
                .get(&format!("{endpoint}?filter={}", q(&format!("{attr} pr"))))
                .await;
            assert!(s == 200 || s == 400);
        }
    }
}

#[tokio::test]
async fn every_filter_combination_is_200_or_400_on_sqlite() {
    every_filter_combination_is_200_or_400(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_filter_combination_is_200_or_400_on_postgres() {
    every_filter_combination_is_200_or_400(Backend::Postgres).await;
}

/// Beyond the per-token rate (bursts up to 3×), 429 with an integer Retry-After, as a SCIM
/// error; other tokens are not affected; after the wait the token works again.
#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path()).unwrap();
    let mut env = test_env(dir.path(), &url);
    env.insert("GATEHOUSE_SCIM_RATE_LIMIT".into(), "2".into());
    let app = spawn_with_env(env, dir, url).await;
    let a = app.scim("acme");
    let b = app.scim("globex");
    let mut limited = None;
    for _ in 0..20 {
        let (s, j, h) = a.send(Method::GET, "/Users", None).await;
        if s == 429 {
            limited = Some((j, h));
            break;
        }
        assert_eq!(s, 200);
    }
    let (j, h) = limited.expect("the burst of 6 was exceeded");
    assert_eq!(j["status"], "429");
    let retry: u64 = h["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("an integer Retry-After");
    assert!((1..=2).contains(&retry));
    assert_eq!(h["content-type"], "application/scim+json");
    assert_eq!(b.get("/Users").await.0, 200, "another token is not limited");
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    assert_eq!(a.get("/Users").await.0, 200);
}

/// ETags (RFC 7644 §3.14): `meta.version` and `ETag` on every resource, `If-None-Match` on GET
/// → 304, `If-Match` on PUT/PATCH/DELETE → 412 when stale; advertised in
/// `/ServiceProviderConfig`.
#[tokio::test]
async fn etags_guard_against_lost_updates() {
    let app = spawn_app().await;
    let scim = app.scim("acme");
    let id = scim.create_user("etag@acme.test").await;
    let gid = scim.create_group("Etag group", &[]).await;
    let (_, config) = scim.get("/ServiceProviderConfig").await;
    assert_eq!(config["etag"]["supported"], true);

    let with = |method: reqwest::Method,
                path: String,
                headers: Vec<(&'static str, String)>,
                body: Option<Value>| {
        let mut req = app
            .client
            .request(method, scim.url(&path))
            .bearer_auth(&scim.token);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        req.send()
    };
    for path in [format!("/Users/{id}"), format!("/Groups/{gid}")] {
        let res = with(reqwest::Method::GET, path.clone(), vec![], None)
            .await
            .unwrap();
        let etag = res.headers()["etag"].to_str().unwrap().to_string();
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["meta"]["version"], etag.as_str(), "{path}");
        // The client's copy is current: 304, no body.
        let res = with(
            reqwest::Method::GET,
            path.clone(),
            vec![("if-none-match", etag.clone())],
            None,
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 304, "{path}");
        assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
        // A change through the current version.
        let op = patch_op(json!([{"op": "replace", "path": "externalId", "value": "ext-1"}]));
        let res = with(
            reqwest::Method::PATCH,
            path.clone(),
            vec![("if-match", etag.clone())],
            Some(op.clone()),
        )
        .await
        .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        let newer = res.headers()["etag"].to_str().unwrap().to_string();
        assert_ne!(newer, etag);
        // The old version is stale now: 412 for PATCH, PUT and DELETE, nothing changed.
        let res = with(
            reqwest::Method::PATCH,
            path.clone(),
            vec![("if-match", etag.clone())],
            Some(op),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 412, "{path}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["status"], "412");
        let res = with(
            reqwest::Method::DELETE,
            path.clone(),
            vec![("if-match", etag.clone())],
            None,
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 412, "{path}");
        let res = with(
            reqwest::Method::GET,
            path.clone(),
            vec![("if-none-match", etag.clone())],
            None,
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 200, "a stale If-None-Match gets the resource");
        // `*` and the current version pass.
        let res = with(
            reqwest::Method::DELETE,
            path.clone(),
            vec![("if-match", newer.clone())],
            None,
        )
        .await
        .unwrap();
        assert_eq!(res.status(), 204, "{path}");
    }
    // PUT with a stale version.
    let id = scim.create_user("put@acme.test").await;
    let res = with(
        reqwest::Method::PUT,
        format!("/Users/{id}"),
        vec![("if-match", "W/\"999\"".to_string())],
        Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "put@acme.test"})),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 412);
    let res = with(
        reqwest::Method::PUT,
        format!("/Users/{id}"),
        vec![("if-match", "*".to_string())],
        Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "put@acme.test"})),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
}
