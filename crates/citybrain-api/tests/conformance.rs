//! Conformance to ETSI GS CIM 009 V1.8.1 (NGSI-LD API), black-box over HTTP
//! against the real server. Each test names the clause it checks; the
//! behaviours are those of `docs/ngsild-conformance.md`, where the ETSI
//! conformance suite found the hub deviating from the specification.

mod common;

use common::{start, Resp, Server};
use serde_json::{json, Value};

const CORE: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld";

fn vehicle(id: &str, speed: f64) -> Value {
    json!({"id": id, "type": "Vehicle",
        "speed": {"type": "Property", "value": speed},
        "brand": {"type": "Property", "value": "Mercedes"}})
}

async fn seed_vehicles(s: &Server) {
    for (i, speed) in [(1, 80.0), (2, 120.0), (3, 100.0)] {
        let r = s
            .post("/entities", vehicle(&format!("urn:ngsi-ld:Vehicle:{i}"), speed))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

/// A hosted user @context defining `Vehicle`, `speed`, `brand` in an
/// example vocabulary; returns the URL to put in a Link header.
async fn hosted_context(s: &Server) -> String {
    let r = s
        .post(
            "/jsonldContexts",
            json!({"@context": {"Vehicle": "https://example.org/vocab#Vehicle",
                "speed": "https://example.org/vocab#speed", "brand": "https://example.org/vocab#brand"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let loc = r.header("location").unwrap();
    format!("{}{}", s.base.trim_end_matches("/ngsi-ld/v1"), loc)
}

fn link(url: &str) -> String {
    format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"")
}

fn assert_error(r: &Resp, status: u16, kind: &str, what: &str) {
    assert_eq!(
        (r.status, r.error_type().as_str()),
        (status, kind),
        "{what}: {}",
        r.text
    );
    assert!(r.body["title"].is_string(), "{what}: ProblemDetails has a title");
}

// ---- row 2: an entity id that is not a URI is BadRequestData ---------------

/// V1.8.1 clauses 5.6.3, 5.6.4, 5.6.5, 5.6.6 and 5.7.1: "If the Entity Id is
/// not present or it is not a valid URI, an error of type BadRequestData
/// shall be raised".
#[tokio::test]
async fn path_entity_id_that_is_not_a_uri_is_bad_request_data() {
    let s = start().await;
    let attr = json!({"speed": {"type": "Property", "value": 1}});
    let cases: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/entities/thisisaninvaliduri", None),
        ("DELETE", "/entities/thisisaninvaliduri", None),
        ("PATCH", "/entities/thisisaninvaliduri", Some(attr.clone())),
        ("PUT", "/entities/thisisaninvaliduri", Some(json!({"type": "Vehicle"}))),
        ("POST", "/entities/thisisaninvaliduri/attrs", Some(attr.clone())),
        ("PATCH", "/entities/thisisaninvaliduri/attrs", Some(attr.clone())),
        (
            "PATCH",
            "/entities/thisisaninvaliduri/attrs/speed",
            Some(json!({"value": 2})),
        ),
        (
            "PUT",
            "/entities/thisisaninvaliduri/attrs/speed",
            Some(json!({"type": "Property", "value": 2})),
        ),
        ("DELETE", "/entities/thisisaninvaliduri/attrs/speed", None),
        ("GET", "/temporal/entities/thisisaninvaliduri", None),
        ("DELETE", "/temporal/entities/thisisaninvaliduri", None),
    ];
    for (method, path, body) in cases {
        let r = s.req(method, path, body, &[]).await;
        assert_error(&r, 400, "BadRequestData", &format!("{method} {path}"));
    }
    // A valid URI that names nothing is still 404.
    let r = s.get("/entities/urn:ngsi-ld:Vehicle:none").await;
    assert_error(&r, 404, "ResourceNotFound", "unknown entity");
}

// ---- row 3: invalid query parameters are BadRequestData ---------------------

/// V1.8.1 clause 6.4.3.2 (query parameters of GET /entities), 4.9 (q), 4.10
/// (geo-queries), 5.5.9 (pagination), 5.2.23 (the Query data type).
#[tokio::test]
async fn malformed_query_parameters_are_bad_request_data() {
    let s = start().await;
    seed_vehicles(&s).await;
    let bad = [
        "/entities?idPattern=urn:(unclosed",
        "/entities?type=Vehicle&format=fancy",
        "/entities?type=Vehicle&options=fancy",
        "/entities?type=Vehicle&options=keyValues,normalized",
        "/entities?type=Vehicle&attrs=speed&pick=brand",
        "/entities?type=Vehicle&q=speed%3E%3E3",
        "/entities?type=Vehicle&q=(speed%3E3",
        "/entities?type=Vehicle&limit=-1",
        "/entities?type=Vehicle&limit=abc",
        "/entities?type=Vehicle&limit=0",
        "/entities?type=Vehicle&offset=-3",
        "/entities?type=Vehicle&count=yes",
        "/entities?id=not-a-uri",
        "/entities?type=Vehicle&georel=near;maxDistance==0&geometry=Point&coordinates=[0,0]",
        "/entities?type=Vehicle&georel=near;maxDistance==-5&geometry=Point&coordinates=[0,0]",
        "/entities?type=Vehicle&georel=near;maxDistance==1e400&geometry=Point&coordinates=[0,0]",
        "/entities?type=Vehicle&georel=near;maxDistance==5;minDistance==1&geometry=Point&coordinates=[0,0]",
        "/entities?type=Vehicle&georel=near&geometry=Point&coordinates=[0,0]",
        "/entities?type=Vehicle&georel=nearby&geometry=Point&coordinates=[0,0]",
        "/entities?type=Vehicle&georel=within&geometry=Point",
        "/entities?type=Vehicle&georel=within&geometry=Polygon&coordinates=[1,2",
    ];
    for path in bad {
        let r = s.get(path).await;
        assert_error(&r, 400, "BadRequestData", path);
    }
    assert_eq!(s.get("/entities?type=Vehicle&limit=0&count=true").await.status, 200);
}

/// V1.8.1 clause 5.2.23, table 5.2.23-1 (the Query data type of POST
/// /entityOperations/query): type shall be "Query"; entities, attrs and pick
/// are non-empty arrays; q is a string; joinLevel a positive integer;
/// temporalQ only for the temporal query; an EntitySelector has a type
/// (table 5.2.33-1).
#[tokio::test]
async fn query_body_members_are_checked() {
    let s = start().await;
    seed_vehicles(&s).await;
    let bad = [
        json!({"type": "NotQuery", "entities": [{"type": "Vehicle"}]}),
        json!({"entities": [{"type": "Vehicle"}]}),
        json!({"type": "Query", "entities": []}),
        json!({"type": "Query", "entities": [{"type": "Vehicle"}], "attrs": []}),
        json!({"type": "Query", "entities": [{"type": "Vehicle"}], "pick": []}),
        json!({"type": "Query", "entities": [{"type": "Vehicle"}], "q": 42}),
        json!({"type": "Query", "entities": [{"type": "Vehicle"}], "join": "inline", "joinLevel": 0}),
        json!({"type": "Query", "entities": [{"type": "Vehicle"}], "temporalQ": {"timerel": "after", "timeAt": "2020-01-01T00:00:00Z"}}),
        json!({"type": "Query", "entities": [{"id": "urn:ngsi-ld:Vehicle:1"}]}),
        json!({"type": "Query", "entities": [{"type": "Vehicle", "id": "nope"}]}),
        json!({"type": "Query", "entities": ["Vehicle"]}),
    ];
    for b in bad {
        let r = s.post("/entityOperations/query", b.clone()).await;
        assert_error(&r, 400, "BadRequestData", &b.to_string());
    }
    let r = s
        .post(
            "/entityOperations/query",
            json!({"type": "Query", "entities": [{"type": "Vehicle"}], "q": "speed>100"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.body[0]["id"], "urn:ngsi-ld:Vehicle:2");
}

// ---- row 4: the @context of a JSON-LD response is the request's own ---------

/// V1.8.1 clause 6.3.6 (and 5.5.7): in an application/ld+json response the
/// @context is the one the request used — the Link header's URL as given,
/// or the body's @context member — and the core context, being implied, is
/// not appended; with no user context it is the core context.
#[tokio::test]
async fn ld_json_response_context_is_the_requests_own() {
    let s = start().await;
    let url = hosted_context(&s).await;
    let l = link(&url);
    let r = s
        .req(
            "POST",
            "/entities",
            Some(vehicle("urn:ngsi-ld:Vehicle:1", 80.0)),
            &[("Link", &l)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let accept = ("Accept", "application/ld+json");
    let r = s
        .req("GET", "/entities/urn:ngsi-ld:Vehicle:1", None, &[accept, ("Link", &l)])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type").unwrap(), "application/ld+json");
    assert_eq!(r.body["@context"], json!(url));
    assert_eq!(r.body["type"], "Vehicle");
    assert!(r.header("link").is_none(), "no Link header with an ld+json body");

    let r = s
        .req("GET", "/entities?type=Vehicle", None, &[accept, ("Link", &l)])
        .await;
    assert_eq!(r.body[0]["@context"], json!(url));

    let r = s.req("GET", "/entities/urn:ngsi-ld:Vehicle:1", None, &[accept]).await;
    assert_eq!(r.body["@context"], json!(CORE));
    assert_eq!(r.body["type"], "https://example.org/vocab#Vehicle");

    // A body @context comes back exactly as given (here an array of two).
    let given = json!([url, {"fast": "https://example.org/vocab#fast"}]);
    let r = s
        .req(
            "POST",
            "/entityOperations/query",
            Some(json!({"type": "Query", "entities": [{"type": "Vehicle"}], "@context": given})),
            &[("Content-Type", "application/ld+json"), accept],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body[0]["@context"], given);
}

// ---- row 5: which error type for which fault --------------------------------

/// V1.8.1 clause 6.3.5: with Content-Type application/ld+json the @context is
/// the body's and a JSON-LD Link header is refused with BadRequestData; with
/// application/json an @context member in the body is refused the same way.
/// Unparsable JSON is InvalidRequest (table 5.5.2-1, 6.3.4).
#[tokio::test]
async fn context_placement_and_error_types() {
    let s = start().await;
    let url = hosted_context(&s).await;
    let l = link(&url);
    let mut with_ctx = vehicle("urn:ngsi-ld:Vehicle:9", 1.0);
    with_ctx["@context"] = json!(url);
    let r = s
        .req(
            "POST",
            "/entities",
            Some(with_ctx.clone()),
            &[("Content-Type", "application/ld+json"), ("Link", &l)],
        )
        .await;
    assert_error(&r, 400, "BadRequestData", "Link header with an ld+json body");
    let r = s.post("/entities", with_ctx.clone()).await;
    assert_error(&r, 400, "BadRequestData", "@context in an application/json body");
    let r = s
        .req(
            "POST",
            "/entities",
            Some(vehicle("urn:ngsi-ld:Vehicle:9", 1.0)),
            &[("Content-Type", "application/ld+json")],
        )
        .await;
    assert_error(&r, 400, "BadRequestData", "ld+json body without @context");
    let r = s
        .req(
            "POST",
            "/entities",
            Some(with_ctx),
            &[("Content-Type", "application/ld+json")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let raw = s
        .http
        .post(format!("{}/entities", s.base))
        .header("Content-Type", "application/json")
        .body("{\"id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let v: Value = raw.json().await.unwrap();
    assert_eq!(v["type"], "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest");
}

// ---- row 6: attrs and pick select entities, datasetId selects instances ----

/// V1.8.1 clauses 4.21 and 5.7.2: with `attrs` (or `pick`) a query returns
/// only the entities that have at least one of the named attributes;
/// `datasetId` (a list, `@none` for the default instance) keeps only those
/// instances.
#[tokio::test]
async fn attrs_and_pick_filter_entities_and_dataset_id_selects_instances() {
    let s = start().await;
    seed_vehicles(&s).await;
    let r = s
        .post(
            "/entities",
            json!({"id": "urn:ngsi-ld:Vehicle:4", "type": "Vehicle",
                "fuel": [{"type": "Property", "value": 10},
                         {"type": "Property", "value": 20, "datasetId": "urn:ngsi-ld:Dataset:a"},
                         {"type": "Property", "value": 30, "datasetId": "urn:ngsi-ld:Dataset:b"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let ids = |r: &Resp| -> Vec<String> {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    let r = s.get("/entities?type=Vehicle&attrs=fuel").await;
    assert_eq!(ids(&r), vec!["urn:ngsi-ld:Vehicle:4"]);
    let r = s.get("/entities?type=Vehicle&pick=id,fuel").await;
    assert_eq!(ids(&r), vec!["urn:ngsi-ld:Vehicle:4"]);
    assert_eq!(r.body[0].as_object().unwrap().len(), 2, "{}", r.text);
    let r = s
        .post(
            "/entityOperations/query",
            json!({"type": "Query", "entities": [{"type": "Vehicle"}], "pick": ["id", "speed"]}),
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 3, "{}", r.text);

    let r = s
        .get("/entities/urn:ngsi-ld:Vehicle:4?datasetId=urn:ngsi-ld:Dataset:a")
        .await;
    assert_eq!(r.body["fuel"]["value"], 20, "{}", r.text);
    let r = s
        .get("/entities/urn:ngsi-ld:Vehicle:4?datasetId=urn:ngsi-ld:Dataset:a,@none")
        .await;
    let values: Vec<i64> = r.body["fuel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_i64().unwrap())
        .collect();
    assert_eq!(values, vec![10, 20]);
}

// ---- row 1: orderBy ---------------------------------------------------------

/// V1.8.1 clause 6.4.3.2 ("Entity ordering", the `orderBy` parameter of
/// Query Entities): results come in the requested order, pages cut from the
/// ordered list; an entity without the key comes last; a malformed
/// `orderBy` is BadRequestData. The syntax is documented in
/// docs/ngsild-conformance.md.
#[tokio::test]
async fn order_by_sorts_query_results() {
    let s = start().await;
    seed_vehicles(&s).await;
    let r = s
        .post(
            "/entities",
            json!({"id": "urn:ngsi-ld:Vehicle:0", "type": "Vehicle", "brand": {"type": "Property", "value": "Fiat"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let ids = |r: &Resp| -> Vec<String> {
        r.body
            .as_array()
            .unwrap_or_else(|| panic!("{}", r.text))
            .iter()
            .map(|e| e["id"].as_str().unwrap().rsplit(':').next().unwrap().to_string())
            .collect()
    };
    let r = s.get("/entities?type=Vehicle&orderBy=speed").await;
    assert_eq!(ids(&r), ["1", "3", "2", "0"]);
    let r = s.get("/entities?type=Vehicle&orderBy=speed;desc").await;
    assert_eq!(ids(&r), ["2", "3", "1", "0"]);
    let r = s.get("/entities?type=Vehicle&orderBy=brand;desc,id;desc").await;
    assert_eq!(ids(&r), ["3", "2", "1", "0"]);
    let r = s
        .get("/entities?type=Vehicle&orderBy=speed;desc&limit=2&offset=1&count=true")
        .await;
    assert_eq!(ids(&r), ["3", "1"]);
    assert_eq!(r.header("ngsild-results-count").as_deref(), Some("4"));
    let r = s
        .post(
            "/entityOperations/query",
            json!({"type": "Query", "entities": [{"type": "Vehicle"}], "orderBy": "speed"}),
        )
        .await;
    assert_eq!(ids(&r), ["1", "3", "2", "0"]);
    for bad in ["speed;sideways", "speed,,id", "sp%20eed"] {
        let r = s.get(&format!("/entities?type=Vehicle&orderBy={bad}")).await;
        assert_error(&r, 400, "BadRequestData", bad);
    }
}

// ---- row 11: batch results, purge with drop/keep ----------------------------

fn batch_ids(v: &Value, member: &str) -> Vec<String> {
    let mut ids: Vec<String> = v[member]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|x| x.as_str().or_else(|| x["entityId"].as_str()).unwrap_or("?").to_string())
        .collect();
    ids.sort();
    ids
}

/// V1.8.1 clauses 5.6.7-5.6.10 and 5.2.16 (BatchOperationResult): 201/204
/// only when every entity succeeded; 207 with `success` and `errors` (one
/// BatchEntityError per failed id) as soon as one fails; batch delete of an
/// id that does not exist is such a per-id error.
#[tokio::test]
async fn batch_operations_report_each_entity() {
    let s = start().await;
    seed_vehicles(&s).await;
    let (v1, v9) = ("urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:9");

    let r = s
        .post("/entityOperations/create", json!([vehicle(v1, 1.0), vehicle(v9, 2.0)]))
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(batch_ids(&r.body, "success"), [v9]);
    assert_eq!(batch_ids(&r.body, "errors"), [v1]);
    assert_eq!(
        r.body["errors"][0]["error"]["type"],
        "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"
    );

    let r = s
        .post(
            "/entityOperations/update",
            json!([{"id": v1, "type": "Vehicle", "speed": {"type": "Property", "value": 5}},
                   {"id": "urn:ngsi-ld:Vehicle:404", "type": "Vehicle", "speed": {"type": "Property", "value": 5}}]),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(batch_ids(&r.body, "errors"), ["urn:ngsi-ld:Vehicle:404"]);

    let r = s
        .post(
            "/entityOperations/upsert",
            json!([vehicle(v1, 3.0), {"id": "bad id", "type": "Vehicle"}]),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(batch_ids(&r.body, "success"), [v1]);

    let r = s
        .post("/entityOperations/delete", json!([v1, "urn:ngsi-ld:Vehicle:404"]))
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(batch_ids(&r.body, "success"), [v1]);
    assert_eq!(batch_ids(&r.body, "errors"), ["urn:ngsi-ld:Vehicle:404"]);
    assert_eq!(
        r.body["errors"][0]["error"]["type"],
        "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    );

    let r = s.post("/entityOperations/delete", json!([v9])).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.post("/entityOperations/delete", json!(["not a uri"])).await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(
        r.body["errors"][0]["error"]["type"],
        "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    );
}

/// V1.8.1 clause 5.6.21 (Purge Entities): `drop` removes the named
/// attributes from every matching entity, `keep` removes all others; neither
/// deletes the matching entities.
#[tokio::test]
async fn purge_drops_or_keeps_attributes() {
    let s = start().await;
    seed_vehicles(&s).await;
    let r = s.delete("/entities?type=Vehicle&drop=brand").await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.get("/entities/urn:ngsi-ld:Vehicle:2").await;
    assert!(r.body.get("brand").is_none(), "{}", r.text);
    assert_eq!(r.body["speed"]["value"], 120.0);
    let r = s
        .post(
            "/entities/urn:ngsi-ld:Vehicle:2/attrs",
            json!({"colour": {"type": "Property", "value": "red"}, "brand": {"type": "Property", "value": "Seat"}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.delete("/entities?id=urn:ngsi-ld:Vehicle:2&keep=colour").await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.get("/entities/urn:ngsi-ld:Vehicle:2").await;
    let mut names: Vec<&String> = r.body.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["colour", "id", "type"], "{}", r.text);
    let r = s.delete("/entities?type=Vehicle&drop=a&keep=b").await;
    assert_error(&r, 400, "BadRequestData", "drop and keep together");
    assert_eq!(s.delete("/entities?type=Vehicle").await.status, 204);
    assert_eq!(s.get("/entities/urn:ngsi-ld:Vehicle:2").await.status, 404);
}

// ---- row 12: merge edge cases -------------------------------------------------

/// V1.8.1 clause 5.6.17 (Merge Entity) and 4.5.5 (NGSI-LD Null): an empty
/// fragment changes nothing (204); `urn:ngsi-ld:null` deletes a
/// LanguageProperty (as a whole languageMap or as `{"@none": null}`) and, in
/// a multi-attribute, only the instance of its datasetId; PATCH without an
/// entity id in the path is 400, not 405 (6.5.3.4).
#[tokio::test]
async fn merge_edge_cases() {
    let s = start().await;
    let id = "urn:ngsi-ld:Building:1";
    let r = s
        .post(
            "/entities",
            json!({"id": id, "type": "Building",
                "name": {"type": "LanguageProperty", "languageMap": {"en": "Hospital", "zh": "医院"}},
                "motto": {"type": "LanguageProperty", "languageMap": {"en": "Care"}},
                "temp": [{"type": "Property", "value": 20},
                         {"type": "Property", "value": 21, "datasetId": "urn:ngsi-ld:Dataset:a"},
                         {"type": "Property", "value": 22, "datasetId": "urn:ngsi-ld:Dataset:b"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let before = s.get(&format!("/entities/{id}")).await.body;

    let r = s.patch(&format!("/entities/{id}"), json!({})).await;
    assert_eq!(r.status, 204, "empty fragment: {}", r.text);
    assert_eq!(s.get(&format!("/entities/{id}")).await.body, before);

    let r = s
        .patch(
            &format!("/entities/{id}"),
            json!({"name": {"type": "LanguageProperty", "languageMap": "urn:ngsi-ld:null"},
                   "motto": {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"}},
                   "temp": {"type": "Property", "value": "urn:ngsi-ld:null", "datasetId": "urn:ngsi-ld:Dataset:a"}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let after = s.get(&format!("/entities/{id}")).await.body;
    assert!(after.get("name").is_none(), "{after}");
    assert!(after.get("motto").is_none(), "{after}");
    let temps: Vec<i64> = after["temp"]
        .as_array()
        .unwrap_or_else(|| panic!("{after}"))
        .iter()
        .map(|i| i["value"].as_i64().unwrap())
        .collect();
    assert_eq!(temps, [20, 22]);

    for method in ["PATCH", "PUT"] {
        let r = s
            .req(method, "/entities/", Some(json!({"type": "Building"})), &[])
            .await;
        assert_error(&r, 400, "BadRequestData", &format!("{method} without an id"));
    }
}

// ---- row 8: temporal ----------------------------------------------------------

async fn speed_history(s: &Server) -> &'static str {
    let id = "urn:ngsi-ld:Vehicle:t1";
    let r = s
        .post(
            "/temporal/entities",
            json!({"id": id, "type": "Vehicle", "speed": [
                {"type": "Property", "value": 80, "observedAt": "2020-08-01T12:00:00Z"},
                {"type": "Property", "value": 80.0, "observedAt": "2020-08-01T12:05:00Z"},
                {"type": "Property", "value": 90, "observedAt": "2020-08-01T12:10:00Z"},
                {"type": "Property", "value": 100, "observedAt": "2020-08-01T12:15:00Z"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    id
}

fn observed(v: &Value) -> Vec<String> {
    let list = match v {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let mut out: Vec<String> = list
        .iter()
        .map(|i| i["observedAt"].as_str().unwrap_or("?").to_string())
        .collect();
    out.sort();
    out
}

/// V1.8.1 clauses 5.7.3 / 6.3.17 (lastN, partial content) and 4.6.3
/// (DateTime values kept as given): lastN within a window returns the newest
/// N of that window, and 206 with a Content-Range when the window holds
/// more; observedAt comes back exactly as written; numbers as JSON wrote them.
#[tokio::test]
async fn temporal_last_n_partial_content_and_values_as_given() {
    let s = start().await;
    let id = speed_history(&s).await;
    let r = s.get(&format!("/temporal/entities/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        observed(&r.body["speed"]),
        [
            "2020-08-01T12:00:00Z",
            "2020-08-01T12:05:00Z",
            "2020-08-01T12:10:00Z",
            "2020-08-01T12:15:00Z"
        ]
    );
    assert!(
        r.text.contains("\"value\":80,") || r.text.contains("\"value\":80}"),
        "{}",
        r.text
    );
    assert!(r.text.contains("\"value\":80.0"), "{}", r.text);

    let r = s.get(&format!("/temporal/entities/{id}?lastN=2")).await;
    assert_eq!(r.status, 206, "{}", r.text);
    assert_eq!(
        observed(&r.body["speed"]),
        ["2020-08-01T12:10:00Z", "2020-08-01T12:15:00Z"]
    );
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("date-time 2020-08-01T12:15:00Z-2020-08-01T12:10:00Z/4")
    );
    let r = s
        .get(&format!(
            "/temporal/entities/{id}?lastN=2&timerel=before&timeAt=2020-08-01T12:12:00Z"
        ))
        .await;
    assert_eq!(r.status, 206, "{}", r.text);
    assert_eq!(
        observed(&r.body["speed"]),
        ["2020-08-01T12:05:00Z", "2020-08-01T12:10:00Z"]
    );
    let r = s.get(&format!("/temporal/entities/{id}?lastN=4")).await;
    assert_eq!(r.status, 200, "all four fit: {}", r.text);
}

/// V1.8.1 clause 4.5.19 / 5.7.3 (aggregated temporal representation):
/// periods of aggrPeriodDuration start at timeAt; each ends at its start
/// plus the duration.
#[tokio::test]
async fn temporal_aggregation_periods_are_aligned_to_time_at() {
    let s = start().await;
    let id = speed_history(&s).await;
    let r = s
        .get(&format!(
            "/temporal/entities/{id}?format=aggregatedValues&aggrMethods=sum,max&aggrPeriodDuration=PT10M&timerel=after&timeAt=2020-08-01T12:00:00Z"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["speed"]["sum"],
        json!([
            [160.0, "2020-08-01T12:00:00Z", "2020-08-01T12:10:00Z"],
            [190.0, "2020-08-01T12:10:00Z", "2020-08-01T12:20:00Z"]
        ]),
        "{}",
        r.text
    );
    let r = s
        .get(&format!(
            "/temporal/entities/{id}?format=aggregatedValues&aggrMethods=max&aggrPeriodDuration=PT10M&timerel=before&timeAt=2020-08-01T12:13:00Z"
        ))
        .await;
    assert_eq!(
        r.body["speed"]["max"],
        json!([
            [80.0, "2020-08-01T11:53:00Z", "2020-08-01T12:03:00Z"],
            [90.0, "2020-08-01T12:03:00Z", "2020-08-01T12:13:00Z"]
        ]),
        "{}",
        r.text
    );
}

/// V1.8.1 clauses 5.6.13 / 5.6.14 (Delete Attribute / Attribute Instance
/// from the temporal representation).
#[tokio::test]
async fn temporal_delete_instance_and_attribute() {
    let s = start().await;
    let id = speed_history(&s).await;
    let r = s.get(&format!("/temporal/entities/{id}")).await;
    let first = r.body["speed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["observedAt"] == "2020-08-01T12:00:00Z")
        .unwrap()["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s.delete(&format!("/temporal/entities/{id}/attrs/speed/{first}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.get(&format!("/temporal/entities/{id}")).await;
    assert_eq!(observed(&r.body["speed"]).len(), 3, "{}", r.text);
    let r = s.delete(&format!("/temporal/entities/{id}/attrs/speed/{first}")).await;
    assert_error(&r, 404, "ResourceNotFound", "instance already deleted");
    let r = s.delete(&format!("/temporal/entities/{id}/attrs/speed")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.get(&format!("/temporal/entities/{id}")).await;
    assert!(r.body.get("speed").is_none(), "{}", r.text);
}

// ---- row 10: @context management ---------------------------------------------

/// A small HTTP server that serves one JSON-LD context document.
async fn context_server(doc: Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/ctx.jsonld",
        axum::routing::get(move || {
            let d = doc.clone();
            async move { ([("content-type", "application/ld+json")], d.to_string()) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/ctx.jsonld")
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// V1.8.1 clauses 5.13.2-5.13.5 (@context management): contexts fetched
/// from a URL are listed as Cached, inline ones as ImplicitlyCreated, added
/// ones as Hosted; `kind` filters (any other value is BadRequestData);
/// `details=true` gives the record; a context is served as
/// application/ld+json; `reload=true` re-fetches a Cached context and is
/// refused for others; the core context cannot be deleted.
#[tokio::test]
async fn context_management() {
    let s = start().await;
    let remote = context_server(json!({"@context": {"Car": "https://example.org/vocab#Car"}})).await;
    let r = s
        .req(
            "POST",
            "/entities",
            Some(json!({"id": "urn:ngsi-ld:Car:1", "type": "Car"})),
            &[("Link", &link(&remote))],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hosted = hosted_context(&s).await;
    let hosted_id = hosted.rsplit('/').next().unwrap().to_string();

    let r = s.get("/jsonldContexts?kind=Cached").await;
    assert_eq!(r.body, json!([remote]), "{}", r.text);
    let r = s.get("/jsonldContexts?kind=hosted").await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{}", r.text);
    assert!(r.body[0].as_str().unwrap().ends_with(&hosted_id));
    let r = s.get("/jsonldContexts?kind=Remote").await;
    assert_error(&r, 400, "BadRequestData", "unknown kind");

    let r = s.get(&format!("/jsonldContexts/{}?details=true", enc(&remote))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["kind"], "Cached");
    assert_eq!(r.body["URL"], json!(remote));
    let r = s.get(&format!("/jsonldContexts/{hosted_id}")).await;
    assert_eq!(r.header("content-type").as_deref(), Some("application/ld+json"));
    assert_eq!(r.body["@context"]["speed"], "https://example.org/vocab#speed");

    // An inline @context becomes an ImplicitlyCreated context that a Link header can name.
    let inline = json!({"Bike": "https://example.org/vocab#Bike"});
    let r = s
        .req(
            "POST",
            "/entityOperations/query",
            Some(json!({"type": "Query", "entities": [{"type": "Bike"}], "@context": inline})),
            &[("Content-Type", "application/ld+json")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let link_header = r.header("link").unwrap();
    let implicit = link_header
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    assert!(implicit.starts_with("/ngsi-ld/v1/jsonldContexts/"), "{link_header}");
    let r = s.get("/jsonldContexts?kind=ImplicitlyCreated&details=true").await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{}", r.text);
    assert_eq!(r.body[0]["kind"], "ImplicitlyCreated");
    let id = implicit.rsplit('/').next().unwrap();
    assert_eq!(s.get(&format!("/jsonldContexts/{id}")).await.body["@context"], inline);

    let r = s
        .req("DELETE", &format!("/jsonldContexts/{hosted_id}?reload=true"), None, &[])
        .await;
    assert_error(&r, 400, "BadRequestData", "reload of a Hosted context");
    let r = s
        .req(
            "DELETE",
            &format!("/jsonldContexts/{}?reload=true", enc(&remote)),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(s.get("/jsonldContexts?kind=Cached").await.body, json!([remote]));
    let r = s.delete(&format!("/jsonldContexts/{}", enc(&remote))).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(s.get("/jsonldContexts?kind=Cached").await.body, json!([]));
    let r = s.delete(&format!("/jsonldContexts/{}", enc(CORE))).await;
    assert_error(&r, 400, "BadRequestData", "deleting the core context");
}

// ---- row 9: subscriptions and notifications -------------------------------------

/// V1.8.1 clauses 5.2.12 / 5.2.14 / 5.2.15 and 4.5.x: on attributeDeleted
/// the deleted attribute is notified as the NGSI-LD Null of its kind, and
/// with showChanges its last value as previousValue / previousJson /
/// previousVocab (GeoProperty included).
#[tokio::test]
async fn notifications_show_deleted_attributes_with_previous_values() {
    let s = start().await;
    let rx = common::receiver().await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "Building"}],
        "notificationTrigger": ["attributeDeleted"],
        "notification": {"endpoint": {"uri": rx.url}, "showChanges": true}});
    assert_eq!(s.post("/subscriptions", sub).await.status, 201);
    let id = "urn:ngsi-ld:Building:n1";
    let r = s
        .post(
            "/entities",
            json!({"id": id, "type": "Building",
                "config": {"type": "JsonProperty", "json": {"floors": 3}},
                "category": {"type": "VocabProperty", "vocab": "hospital"},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.1, 30.2]}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for a in ["config", "category", "location"] {
        assert_eq!(s.delete(&format!("/entities/{id}/attrs/{a}")).await.status, 204);
    }
    let got = rx.wait_for(3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    let find = |name: &str| -> Value {
        got.iter()
            .map(|(_, n)| n["data"][0][name].clone())
            .find(|v| v.to_string().contains("urn:ngsi-ld:null"))
            .unwrap_or_else(|| panic!("no notification for {name}: {got:?}"))
    };
    assert_eq!(
        find("config"),
        json!({"type": "JsonProperty", "json": "urn:ngsi-ld:null", "previousJson": {"floors": 3}})
    );
    assert_eq!(
        find("category"),
        json!({"type": "VocabProperty", "vocab": "urn:ngsi-ld:null", "previousVocab": "hospital"})
    );
    assert_eq!(
        find("location"),
        json!({"type": "GeoProperty", "value": "urn:ngsi-ld:null",
            "previousValue": {"type": "Point", "coordinates": [120.1, 30.2]}})
    );
    assert!(got.iter().all(|(_, n)| n["triggerReason"] == "attributeDeleted"));
}

/// V1.8.1 clause 5.2.12 (jsonldContext: the URI of the @context to compact
/// notifications with; anything else is BadRequestData) and 5.2.15
/// (endpoint.accept application/json, application/ld+json or
/// application/geo+json; endpoint.timeout and cooldown in milliseconds).
#[tokio::test]
async fn subscription_jsonld_context_accept_and_timeouts() {
    let s = start().await;
    let url = hosted_context(&s).await;
    let rx = common::receiver().await;
    let base = |extra: Value| -> Value {
        let mut sub = json!({"type": "Subscription", "entities": [{"type": "https://example.org/vocab#Vehicle"}],
            "notificationTrigger": ["entityCreated"],
            "notification": {"endpoint": {"uri": rx.url}}});
        for (k, v) in extra.as_object().unwrap() {
            match k.as_str() {
                "endpoint" => {
                    for (ek, ev) in v.as_object().unwrap() {
                        sub["notification"]["endpoint"][ek] = ev.clone();
                    }
                }
                _ => sub[k] = v.clone(),
            }
        }
        sub
    };
    for bad in [
        json!({"jsonldContext": "not a uri"}),
        json!({"jsonldContext": 7}),
        json!({"endpoint": {"accept": "text/plain"}}),
        json!({"endpoint": {"timeout": -1}}),
        json!({"endpoint": {"cooldown": "soon"}}),
    ] {
        let r = s.post("/subscriptions", base(bad.clone())).await;
        assert_error(&r, 400, "BadRequestData", &bad.to_string());
    }
    let r = s
        .post(
            "/subscriptions",
            base(json!({"jsonldContext": url, "endpoint": {"accept": "application/ld+json", "timeout": 2000, "cooldown": 100}})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s
        .req(
            "POST",
            "/entities",
            Some(vehicle("urn:ngsi-ld:Vehicle:n1", 50.0)),
            &[("Link", &link(&url))],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let got = rx.wait_for(1).await;
    let n = &got[0].1;
    assert_eq!(n["@context"], json!(url), "{n}");
    assert_eq!(n["data"][0]["type"], "Vehicle", "compacted with jsonldContext: {n}");
    assert_eq!(n["data"][0]["speed"]["value"], 50.0);
}

// ---- row 7: linked entity retrieval ---------------------------------------------

/// V1.8.1 clause 4.5.23 and 5.7.1 / 5.7.2 (join, joinLevel): `join=inline`
/// puts the target entity inside its Relationship as `entity`, `joinLevel`
/// follows further hops, `join=flat` returns the targets beside the entity;
/// an unknown join or a joinLevel that is not a positive integer is
/// BadRequestData.
#[tokio::test]
async fn linked_entities_inline_and_flat() {
    let s = start().await;
    for e in [
        json!({"id": "urn:ngsi-ld:Person:owner", "type": "Person", "name": {"type": "Property", "value": "Ana"}}),
        json!({"id": "urn:ngsi-ld:Building:b", "type": "Building",
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:owner"}}),
        json!({"id": "urn:ngsi-ld:Vehicle:v", "type": "Vehicle",
            "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:Building:b"},
            "ghost": {"type": "Relationship", "object": "urn:ngsi-ld:Building:gone"}}),
    ] {
        assert_eq!(s.post("/entities", e).await.status, 201);
    }
    let r = s.get("/entities/urn:ngsi-ld:Vehicle:v?join=inline").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = &r.body["locatedAt"]["entity"];
    assert_eq!(b["id"], "urn:ngsi-ld:Building:b", "{}", r.text);
    assert!(b["owner"].get("entity").is_none(), "joinLevel 1 stops at one hop");
    assert!(r.body["ghost"].get("entity").is_none(), "a missing target is left out");

    let r = s.get("/entities/urn:ngsi-ld:Vehicle:v?join=inline&joinLevel=2").await;
    assert_eq!(
        r.body["locatedAt"]["entity"]["owner"]["entity"]["name"]["value"], "Ana",
        "{}",
        r.text
    );

    let r = s.get("/entities?type=Vehicle&join=flat&joinLevel=2").await;
    let ids: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "urn:ngsi-ld:Vehicle:v",
            "urn:ngsi-ld:Building:b",
            "urn:ngsi-ld:Person:owner"
        ]
    );

    let r = s
        .post(
            "/entityOperations/query",
            json!({"type": "Query", "entities": [{"type": "Vehicle"}], "join": "inline"}),
        )
        .await;
    assert_eq!(r.body[0]["locatedAt"]["entity"]["type"], "Building", "{}", r.text);

    for bad in [
        "join=nested",
        "join=inline&joinLevel=0",
        "join=inline&joinLevel=x",
        "pick=locatedAt%7Bowner%7D",
    ] {
        let r = s.get(&format!("/entities?type=Vehicle&{bad}")).await;
        assert_error(&r, 400, "BadRequestData", bad);
    }
}

/// V1.8.1 clause 4.19 (scopeQ): orOp is `|` or `,`, andOp `;`, and
/// parentheses group (EXAMPLE 4 and 5).
#[tokio::test]
async fn scope_query_operators() {
    let s = start().await;
    for (i, scope) in [
        (1, json!("/Madrid/Gardens")),
        (2, json!(["/Madrid/Gardens", "/CompanyA/Unit"])),
    ] {
        let r = s
            .post(
                "/entities",
                json!({"id": format!("urn:ngsi-ld:Building:s{i}"), "type": "Building", "scope": scope}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    for (q, n) in [
        ("(/Madrid/Gardens;/CompanyA/Unit)", 1),
        ("(/Madrid/Gardens;/CompanyA/Unit)|/Madrid/Gardens", 2),
        ("/CompanyA/Unit|/Nowhere", 1),
        ("(/Madrid/Gardens;/Nowhere)", 0),
    ] {
        let r = s.get(&format!("/entities?type=Building&scopeQ={}", enc(q))).await;
        assert_eq!(r.body.as_array().map(Vec::len), Some(n), "{q}: {}", r.text);
    }
}
