//! Black-box HTTP tests of the NGSI-LD API against a real server and a real
//! SQLite file: every endpoint, its error paths, notifications and streams.

mod common;

use std::time::Duration;

use common::{receiver, start, start_with, Server};
use serde_json::{json, Value};

fn parking(i: u32, free: i64) -> Value {
    json!({"id": format!("urn:ngsi-ld:OffStreetParking:{i}"), "type": "OffStreetParking",
        "availableSpotNumber": {"type": "Property", "value": free, "observedAt": "2026-11-26T08:00:00Z", "unitCode": "C62"},
        "totalSpotNumber": 100, "name": format!("Lot {i}"),
        "owner": {"type": "Relationship", "object": format!("urn:ngsi-ld:Organization:{}", i % 2)},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.17 + i as f64 / 1000.0, 30.26]}},
        "scope": if i.is_multiple_of(2) { "/hz/shangcheng" } else { "/hz/xihu" }})
}

async fn seed(s: &Server, n: u32) {
    let items: Vec<Value> = (1..=n).map(|i| parking(i, (i * 10) as i64)).collect();
    let r = s.post("/entityOperations/create", Value::Array(items)).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn create_retrieve_and_errors() {
    let s = start().await;
    let r = s.post("/entities/", parking(1, 5)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.header("location").unwrap(),
        "/ngsi-ld/v1/entities/urn%3Angsi-ld%3AOffStreetParking%3A1"
    );
    let r = s.post("/entities", parking(1, 5)).await;
    assert_eq!((r.status, r.error_type().as_str()), (409, "AlreadyExists"));
    let r = s.post("/entities", json!({"id": "not-a-uri", "type": "T"})).await;
    assert_eq!((r.status, r.error_type().as_str()), (400, "BadRequestData"));
    assert!(r.body["detail"].as_str().unwrap().contains("not-a-uri"));
    let r = s.post("/entities", json!({"id": "urn:x:1"})).await;
    assert_eq!(r.status, 400);

    let r = s.get("/entities/urn:ngsi-ld:OffStreetParking:1").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["availableSpotNumber"],
        json!({"type": "Property", "value": 5, "observedAt": "2026-11-26T08:00:00Z", "unitCode": "C62"})
    );
    assert_eq!(r.body["owner"]["object"], "urn:ngsi-ld:Organization:1");
    assert!(r.header("link").unwrap().contains("ngsi-ld-core-context"));
    assert_eq!(r.header("content-type").unwrap(), "application/json");

    let r = s
        .get("/entities/urn:ngsi-ld:OffStreetParking:1?options=keyValues")
        .await;
    assert_eq!(r.body["availableSpotNumber"], 5);
    let r = s.get("/entities/urn:ngsi-ld:OffStreetParking:1?format=concise").await;
    assert_eq!(r.body["totalSpotNumber"], 100);
    assert_eq!(r.body["availableSpotNumber"]["value"], 5);
    let r = s
        .get("/entities/urn:ngsi-ld:OffStreetParking:1?options=sysAttrs&attrs=totalSpotNumber")
        .await;
    assert!(r.body["createdAt"].is_string() && r.body["totalSpotNumber"]["modifiedAt"].is_string());
    assert!(r.body.get("name").is_none());
    let r = s.get("/entities/urn:ngsi-ld:OffStreetParking:1?pick=id,name").await;
    assert_eq!(r.body.as_object().unwrap().len(), 2);
    let r = s
        .get("/entities/urn:ngsi-ld:OffStreetParking:1?omit=location,owner")
        .await;
    assert!(r.body.get("location").is_none() && r.body.get("name").is_some());
    let r = s
        .req(
            "GET",
            "/entities/urn:ngsi-ld:OffStreetParking:1",
            None,
            &[("Accept", "application/ld+json")],
        )
        .await;
    assert_eq!(r.header("content-type").unwrap(), "application/ld+json");
    assert!(r.body["@context"].is_array() || r.body["@context"].is_string());
    let r = s
        .req(
            "GET",
            "/entities/urn:ngsi-ld:OffStreetParking:1",
            None,
            &[("Accept", "application/geo+json")],
        )
        .await;
    assert_eq!(r.body["type"], "Feature");
    assert_eq!(r.body["geometry"]["type"], "Point");
    let r = s.get("/entities/urn:ngsi-ld:OffStreetParking:404").await;
    assert_eq!((r.status, r.error_type().as_str()), (404, "ResourceNotFound"));
}

#[tokio::test]
async fn replace_merge_and_attribute_operations() {
    let s = start().await;
    s.post("/entities", parking(1, 5)).await;
    let id = "/entities/urn:ngsi-ld:OffStreetParking:1";
    // Merge: change a value, delete with urn:ngsi-ld:null, add one.
    let r = s
        .patch(
            id,
            json!({"availableSpotNumber": 7, "name": "urn:ngsi-ld:null", "fee": 3}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = s.get(&format!("{id}?options=keyValues")).await.body;
    assert_eq!(
        (e["availableSpotNumber"].clone(), e["fee"].clone()),
        (json!(7), json!(3))
    );
    assert!(e.get("name").is_none());
    // The merge kept the unitCode of availableSpotNumber.
    assert_eq!(s.get(id).await.body["availableSpotNumber"]["unitCode"], "C62");
    // Append with noOverwrite: existing attribute reported in 207.
    let r = s
        .post(
            &format!("{id}/attrs?options=noOverwrite"),
            json!({"fee": 9, "height": 2.1}),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(r.body["updated"], json!(["height"]));
    assert_eq!(r.body["notUpdated"][0]["attributeName"], "fee");
    let r = s.post(&format!("{id}/attrs"), json!({"fee": 9})).await;
    assert_eq!(r.status, 204);
    // Update attrs: only existing ones.
    let r = s.patch(&format!("{id}/attrs"), json!({"fee": 10, "ghost": 1})).await;
    assert_eq!(r.status, 207);
    assert_eq!(r.body["notUpdated"][0]["attributeName"], "ghost");
    let r = s.patch(&format!("{id}/attrs"), json!({"ghost": 1})).await;
    assert_eq!(r.status, 404);
    // Partial update of one attribute keeps other members.
    let r = s
        .patch(&format!("{id}/attrs/availableSpotNumber"), json!({"value": 1}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let a = s.get(id).await.body["availableSpotNumber"].clone();
    assert_eq!((a["value"].clone(), a["unitCode"].clone()), (json!(1), json!("C62")));
    assert_eq!(
        s.patch(&format!("{id}/attrs/ghost"), json!({"value": 1})).await.status,
        404
    );
    // Replace one attribute: members not given are gone.
    let r = s
        .put(
            &format!("{id}/attrs/availableSpotNumber"),
            json!({"type": "Property", "value": 2}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(s.get(id).await.body["availableSpotNumber"].get("unitCode").is_none());
    // Multi-instance attributes.
    s.post(&format!("{id}/attrs"), json!({"temp": [{"type": "Property", "value": 20}, {"type": "Property", "value": 21, "datasetId": "urn:ds:b"}]})).await;
    assert_eq!(s.get(id).await.body["temp"].as_array().unwrap().len(), 2);
    assert_eq!(
        s.get(&format!("{id}?datasetId=urn:ds:b")).await.body["temp"]["value"],
        21
    );
    assert_eq!(
        s.delete(&format!("{id}/attrs/temp?datasetId=urn:ds:b")).await.status,
        204
    );
    assert_eq!(s.get(id).await.body["temp"]["value"], 20);
    assert_eq!(
        s.delete(&format!("{id}/attrs/temp?datasetId=urn:ds:zz")).await.status,
        404
    );
    s.post(
        &format!("{id}/attrs"),
        json!({"temp": {"type": "Property", "value": 22, "datasetId": "urn:ds:c"}}),
    )
    .await;
    assert_eq!(s.delete(&format!("{id}/attrs/temp?deleteAll=true")).await.status, 204);
    assert!(s.get(id).await.body.get("temp").is_none());
    // Other attribute kinds round-trip.
    let kinds = json!({
        "label": {"type": "LanguageProperty", "languageMap": {"en": "Gate", "zh": "门"}},
        "kind": {"type": "VocabProperty", "vocab": "Underground"},
        "raw": {"type": "JsonProperty", "json": {"any": ["thing"]}},
        "levels": {"type": "ListProperty", "valueList": [1, 2, 3]},
        "near": {"type": "ListRelationship", "objectList": [{"object": "urn:x:1"}, {"object": "urn:x:2"}]}});
    assert_eq!(s.post(&format!("{id}/attrs"), kinds).await.status, 204);
    let e = s.get(id).await.body;
    assert_eq!(e["label"]["languageMap"]["zh"], "门");
    assert_eq!(e["kind"]["vocab"], "Underground");
    assert_eq!(e["raw"]["json"]["any"][0], "thing");
    assert_eq!(e["levels"]["valueList"], json!([1, 2, 3]));
    assert_eq!(e["near"]["objectList"], json!(["urn:x:1", "urn:x:2"]));
    assert_eq!(s.get(&format!("{id}?lang=en")).await.body["label"]["value"], "Gate");
    // Replace the whole entity.
    let r = s
        .put(id, json!({"type": "OffStreetParking", "totalSpotNumber": 1}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = s.get(&format!("{id}?options=keyValues")).await.body;
    assert_eq!(e.as_object().unwrap().len(), 3, "{e}");
    // Delete.
    assert_eq!(s.delete(id).await.status, 204);
    assert_eq!(s.delete(id).await.status, 404);
    assert_eq!(s.delete(&format!("{id}/attrs/x")).await.status, 404);
}

#[tokio::test]
async fn queries() {
    let s = start().await;
    seed(&s, 30).await;
    s.post(
        "/entities",
        json!({"id": "urn:ngsi-ld:Road:1", "type": ["Road", "Asset"], "name": "Qingchun Road"}),
    )
    .await;
    let ids = |r: &common::Resp| {
        r.body
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    let r = s
        .get("/entities?type=OffStreetParking&q=availableSpotNumber%3E250&count=true")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("ngsild-results-count").unwrap(), "5");
    let r = s
        .get("/entities?type=OffStreetParking&q=availableSpotNumber==100..120&count=true")
        .await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "3");
    let r = s.get("/entities?type=OffStreetParking&q=(availableSpotNumber%3C20%7CavailableSpotNumber%3E290);owner==urn:ngsi-ld:Organization:0").await;
    assert_eq!(ids(&r), vec!["urn:ngsi-ld:OffStreetParking:30"]);
    let r = s
        .get("/entities?type=OffStreetParking&q=name~=%22Lot%202.%22&count=true")
        .await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "10");
    let r = s
        .get("/entities?type=OffStreetParking&q=availableSpotNumber.unitCode==%22C62%22&limit=1&count=true")
        .await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "30");
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert!(r.header("link").is_some());
    // Paging.
    let a = s.get("/entities?type=OffStreetParking&limit=10&offset=0").await;
    let b = s.get("/entities?type=OffStreetParking&limit=10&offset=10").await;
    assert_eq!(ids(&a).len(), 10);
    assert!(ids(&a).iter().all(|i| !ids(&b).contains(i)));
    let r = s.get("/entities?type=OffStreetParking&limit=0&count=true").await;
    assert_eq!(
        (
            r.body.as_array().unwrap().len(),
            r.header("ngsild-results-count").unwrap()
        ),
        (0, "30".into())
    );
    let r = s.get("/entities?type=OffStreetParking&limit=5000").await;
    assert_eq!((r.status, r.error_type().as_str()), (403, "TooManyResults"));
    // Type expressions, ids, patterns.
    assert_eq!(
        ids(&s.get("/entities?type=Road;Asset").await),
        vec!["urn:ngsi-ld:Road:1"]
    );
    assert_eq!(ids(&s.get("/entities?type=(Road;Asset),Nothing").await).len(), 1);
    assert_eq!(
        s.get("/entities?type=Road,OffStreetParking&limit=100")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        31
    );
    let r = s
        .get("/entities?id=urn:ngsi-ld:OffStreetParking:3,urn:ngsi-ld:Road:1")
        .await;
    assert_eq!(ids(&r).len(), 2);
    let r = s.get("/entities?idPattern=.*Parking:1[0-9]$&count=true").await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "10");
    // Filtering by attribute presence.
    assert_eq!(ids(&s.get("/entities?attrs=name&type=Road").await).len(), 1);
    // scopeQ.
    let r = s
        .get("/entities?type=OffStreetParking&scopeQ=/hz/shangcheng&count=true")
        .await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "15");
    let r = s.get("/entities?scopeQ=/hz/%23&count=true").await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "30");
    // Geo: near, within, GeoJSON output.
    let r = s.get("/entities?type=OffStreetParking&georel=near;maxDistance==500&geometry=Point&coordinates=%5B120.171,30.26%5D&count=true").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let n: usize = r.header("ngsild-results-count").unwrap().parse().unwrap();
    assert!(
        (5..=6).contains(&n),
        "about 0.0052 degrees of longitude either side: {n}"
    );
    let poly =
        "%5B%5B%5B120.17,30.25%5D,%5B120.175,30.25%5D,%5B120.175,30.27%5D,%5B120.17,30.27%5D,%5B120.17,30.25%5D%5D%5D";
    let r = s
        .get(&format!(
            "/entities?type=OffStreetParking&georel=within&geometry=Polygon&coordinates={poly}&count=true"
        ))
        .await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "4");
    let r = s
        .req(
            "GET",
            "/entities?type=OffStreetParking&limit=3",
            None,
            &[("Accept", "application/geo+json")],
        )
        .await;
    assert_eq!(r.body["type"], "FeatureCollection");
    assert_eq!(r.body["features"].as_array().unwrap().len(), 3);
    let r = s
        .get("/entities?type=OffStreetParking&georel=near&geometry=Point&coordinates=%5B1,2%5D")
        .await;
    assert_eq!(r.status, 400);
    let r = s
        .get("/entities?type=OffStreetParking&georel=within&geometry=Polygon&coordinates=%5B1,2%5D")
        .await;
    assert_eq!(r.status, 400);
    // Bad input is named.
    let r = s
        .get("/entities?type=OffStreetParking&q=availableSpotNumber%3E%3E")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["detail"].as_str().unwrap().starts_with("q:"));
    assert_eq!(s.get("/entities").await.status, 400, "a query needs a filter");
    assert_eq!(s.get("/entities?local=true&limit=1").await.status, 200);
    let long = "a".repeat(5000);
    assert_eq!(
        s.get(&format!("/entities?type=T&q={long}")).await.error_type(),
        "TooComplexQuery"
    );
    // POST query.
    let r = s.post("/entityOperations/query?count=true", json!({"type": "Query", "entities": [{"type": "OffStreetParking"}], "q": "availableSpotNumber>=290", "attrs": ["name"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("ngsild-results-count").unwrap(), "2");
    assert!(r.body[0].get("availableSpotNumber").is_none() && r.body[0].get("name").is_some());
}

#[tokio::test]
async fn batches_purge_and_discovery() {
    let s = start().await;
    let r = s
        .post(
            "/entityOperations/create",
            json!([parking(1, 1), parking(2, 2), {"id": "bad", "type": "T"}, parking(1, 1)]),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(
        r.body["success"],
        json!(["urn:ngsi-ld:OffStreetParking:1", "urn:ngsi-ld:OffStreetParking:2"])
    );
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2);
    assert_eq!(
        r.body["errors"][1]["error"]["type"],
        "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists"
    );
    // Upsert: 201 with the created ids, then 204 when all existed.
    let r = s
        .post(
            "/entityOperations/upsert/?options=replace",
            json!([parking(2, 20), parking(3, 3)]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body, json!(["urn:ngsi-ld:OffStreetParking:3"]));
    let r = s
        .post(
            "/entityOperations/upsert?options=update",
            json!([{"id": "urn:ngsi-ld:OffStreetParking:2", "type": "OffStreetParking", "extra": 1}]),
        )
        .await;
    assert_eq!(r.status, 204);
    let e = s
        .get("/entities/urn:ngsi-ld:OffStreetParking:2?options=keyValues")
        .await
        .body;
    assert_eq!(
        (e["availableSpotNumber"].clone(), e["extra"].clone()),
        (json!(20), json!(1)),
        "update-upsert keeps what it does not name"
    );
    // The same id twice in one batch: both applied in order.
    let r = s.post("/entityOperations/update", json!([{"id": "urn:ngsi-ld:OffStreetParking:3", "a": 1}, {"id": "urn:ngsi-ld:OffStreetParking:3", "b": 2}, {"id": "urn:ngsi-ld:OffStreetParking:9", "a": 1}])).await;
    assert_eq!(r.status, 207, "{}", r.text);
    let e = s
        .get("/entities/urn:ngsi-ld:OffStreetParking:3?options=keyValues")
        .await
        .body;
    assert_eq!((e["a"].clone(), e["b"].clone()), (json!(1), json!(2)));
    let r = s
        .post(
            "/entityOperations/merge",
            json!([{"id": "urn:ngsi-ld:OffStreetParking:3", "a": "urn:ngsi-ld:null"}]),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(s
        .get("/entities/urn:ngsi-ld:OffStreetParking:3")
        .await
        .body
        .get("a")
        .is_none());
    let r = s
        .post(
            "/entityOperations/delete",
            json!(["urn:ngsi-ld:OffStreetParking:3", "urn:ngsi-ld:OffStreetParking:404"]),
        )
        .await;
    assert_eq!(r.status, 207);
    assert_eq!(r.body["success"], json!(["urn:ngsi-ld:OffStreetParking:3"]));
    assert_eq!(
        s.post("/entityOperations/upsert", json!({"not": "an array"}))
            .await
            .status,
        400
    );
    assert_eq!(s.post("/entityOperations/frobnicate", json!([])).await.status, 404);
    // Discovery.
    let r = s.get("/types").await;
    assert_eq!(r.body["typeList"], json!(["OffStreetParking"]));
    let r = s.get("/types/OffStreetParking").await;
    assert_eq!(r.body["entityCount"], 2);
    assert!(r.body["attributeDetails"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["attributeName"] == "availableSpotNumber"));
    let r = s.get("/attributes").await;
    assert!(r.body["attributeList"].as_array().unwrap().contains(&json!("owner")));
    let r = s.get("/attributes/owner").await;
    assert_eq!(r.body["attributeTypes"], json!(["Relationship"]));
    assert_eq!(s.get("/attributes/nope").await.status, 404);
    assert_eq!(
        s.get("/types?details=true").await.body[0]["typeName"],
        "OffStreetParking"
    );
    // Purge.
    assert_eq!(s.delete("/entities").await.status, 400);
    assert_eq!(
        s.delete("/entities?type=OffStreetParking&q=availableSpotNumber%3E10")
            .await
            .status,
        204
    );
    let left = s.get("/entities?type=OffStreetParking").await.body;
    assert_eq!(left.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn batch_limit_is_enforced() {
    let mut cfg = citybrain_hub::HubConfig::default();
    cfg.limits.max_batch = 2;
    let s = start_with(cfg, Default::default()).await;
    let r = s
        .post(
            "/entityOperations/upsert",
            json!([parking(1, 1), parking(2, 2), parking(3, 3)]),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.body["detail"].as_str().unwrap().contains("limit of 2"));
}

#[tokio::test]
async fn temporal_history() {
    let mut cfg = citybrain_hub::HubConfig::default();
    cfg.limits.temporal_page = 3;
    let s = start_with(cfg, Default::default()).await;
    s.post("/entities", parking(1, 0)).await;
    let id = "urn:ngsi-ld:OffStreetParking:1";
    for (i, t) in ["08:10", "08:20", "08:30", "08:40"].iter().enumerate() {
        let r = s
            .patch(
                &format!("/entities/{id}/attrs/availableSpotNumber"),
                json!({"value": (i + 1) * 10, "observedAt": format!("2026-11-26T{t}:00Z")}),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let r = s
        .get(&format!("/temporal/entities/{id}?attrs=availableSpotNumber&lastN=2"))
        .await;
    assert_eq!(r.status, 206, "lastN of more than N (6.3.17): {}", r.text);
    let inst = r.body["availableSpotNumber"].as_array().unwrap();
    assert_eq!(inst.len(), 2);
    assert_eq!(
        (inst[0]["value"].clone(), inst[1]["value"].clone()),
        (json!(30), json!(40))
    );
    assert!(inst[0]["instanceId"]
        .as_str()
        .unwrap()
        .starts_with("urn:ngsi-ld:attribute:instance:"));
    // Five instances, a page of three: 206 with Content-Range.
    let r = s
        .get(&format!("/temporal/entities/{id}?attrs=availableSpotNumber"))
        .await;
    assert_eq!(r.status, 206, "{}", r.text);
    assert_eq!(
        r.header("content-range").unwrap(),
        "date-time 2026-11-26T08:00:00Z-2026-11-26T08:20:00Z/5"
    );
    let r = s.get(&format!("/temporal/entities/{id}?attrs=availableSpotNumber&timerel=between&timeAt=2026-11-26T08:15:00Z&endTimeAt=2026-11-26T08:35:00Z&options=temporalValues")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["availableSpotNumber"]["values"],
        json!([[20, "2026-11-26T08:20:00Z"], [30, "2026-11-26T08:30:00Z"]])
    );
    let r = s.get(&format!("/temporal/entities/{id}?attrs=availableSpotNumber&timerel=after&timeAt=2026-11-26T08:00:00Z&options=aggregatedValues&aggrMethods=sum,avg,max,totalCount&aggrPeriodDuration=PT30M")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let a = &r.body["availableSpotNumber"];
    assert_eq!(a["sum"][0][0], json!(30.0), "08:00-08:30 holds 0, 10, 20: {a}");
    assert_eq!(a["totalCount"][1][0], json!(2));
    assert_eq!(a["max"][1][0], json!(40.0));
    assert_eq!(
        s.get(&format!(
            "/temporal/entities/{id}?timerel=between&timeAt=2026-11-26T08:15:00Z"
        ))
        .await
        .status,
        400
    );
    assert_eq!(
        s.get(&format!("/temporal/entities/{id}?options=aggregatedValues"))
            .await
            .status,
        400
    );
    // Query over entities.
    let r = s
        .get("/temporal/entities?type=OffStreetParking&attrs=availableSpotNumber&lastN=1")
        .await;
    assert_eq!(r.body[0]["availableSpotNumber"][0]["value"], 40);
    let r = s.post("/temporal/entityOperations/query", json!({"type": "Query", "entities": [{"type": "OffStreetParking"}], "attrs": ["availableSpotNumber"], "temporalQ": {"lastN": 1}})).await;
    assert_eq!(r.body[0]["availableSpotNumber"][0]["value"], 40, "{}", r.text);
    // Provision: create a temporal entity with its instances.
    let t = json!({"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor", "speed": [
        {"type": "Property", "value": 30, "observedAt": "2026-11-26T07:00:00Z"},
        {"type": "Property", "value": 50, "observedAt": "2026-11-26T07:05:00Z"}]});
    assert_eq!(s.post("/temporal/entities", t.clone()).await.status, 201);
    assert_eq!(
        s.get("/entities/urn:ngsi-ld:Sensor:1?options=keyValues").await.body["speed"],
        50,
        "current state is the newest instance"
    );
    assert_eq!(s.post("/temporal/entities", t).await.status, 204);
    let r = s
        .get("/temporal/entities/urn:ngsi-ld:Sensor:1?options=temporalValues&lastN=10")
        .await;
    assert_eq!(r.body["speed"]["values"].as_array().unwrap().len(), 4);
    let r = s
        .post(
            "/temporal/entities/urn:ngsi-ld:Sensor:1/attrs",
            json!({"speed": [{"type": "Property", "value": 70, "observedAt": "2026-11-26T07:10:00Z"}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.get("/temporal/entities/urn:ngsi-ld:Sensor:1?lastN=1").await;
    let inst = r.body["speed"][0].clone();
    assert_eq!(inst["value"], 70);
    let iid = inst["instanceId"].as_str().unwrap().to_string();
    let r = s
        .patch(
            &format!("/temporal/entities/urn:ngsi-ld:Sensor:1/attrs/speed/{iid}"),
            json!({"speed": [{"type": "Property", "value": 71}]}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        s.get("/temporal/entities/urn:ngsi-ld:Sensor:1?lastN=1").await.body["speed"][0]["value"],
        71
    );
    assert_eq!(
        s.delete(&format!("/temporal/entities/urn:ngsi-ld:Sensor:1/attrs/speed/{iid}"))
            .await
            .status,
        204
    );
    assert_eq!(
        s.delete(&format!("/temporal/entities/urn:ngsi-ld:Sensor:1/attrs/speed/{iid}"))
            .await
            .status,
        404
    );
    assert_eq!(
        s.delete("/temporal/entities/urn:ngsi-ld:Sensor:1/attrs/speed?deleteAll=true")
            .await
            .status,
        204
    );
    assert!(s
        .get("/temporal/entities/urn:ngsi-ld:Sensor:1")
        .await
        .body
        .get("speed")
        .is_none());
    // Deleting the entity deletes its history; a new entity with the same id starts empty.
    assert_eq!(s.delete(&format!("/entities/{id}")).await.status, 204);
    assert_eq!(s.get(&format!("/temporal/entities/{id}")).await.status, 404);
    s.post("/entities", parking(1, 99)).await;
    let r = s
        .get(&format!("/temporal/entities/{id}?attrs=availableSpotNumber"))
        .await;
    assert_eq!(r.body["availableSpotNumber"].as_array().unwrap().len(), 1);
    assert_eq!(s.delete(&format!("/temporal/entities/{id}")).await.status, 204);
    assert_eq!(s.get(&format!("/entities/{id}")).await.status, 404);
}

#[tokio::test]
async fn subscriptions_notify_over_http() {
    let s = start().await;
    let rx = receiver().await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "OffStreetParking"}], "watchedAttributes": ["availableSpotNumber"],
        "q": "availableSpotNumber<5",
        "notification": {"endpoint": {"uri": rx.url, "accept": "application/json", "receiverInfo": [{"key": "X-Auth", "value": "secret"}]},
                         "attributes": ["availableSpotNumber"], "showChanges": true}});
    let r = s
        .req("POST", "/subscriptions/", Some(sub), &[("NGSILD-Tenant", "cityA")])
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let loc = r.header("location").unwrap();
    let sid = loc.rsplit('/').next().unwrap().replace("%3A", ":");
    let t = &[("NGSILD-Tenant", "cityA")];
    s.req("POST", "/entities", Some(parking(1, 10)), t).await;
    // Filtered out by q (10 is not < 5); then an unwatched attribute; then a match.
    s.req(
        "PATCH",
        "/entities/urn:ngsi-ld:OffStreetParking:1/attrs",
        Some(json!({"name": "x"})),
        t,
    )
    .await;
    s.req(
        "PATCH",
        "/entities/urn:ngsi-ld:OffStreetParking:1/attrs",
        Some(json!({"availableSpotNumber": 3})),
        t,
    )
    .await;
    let got = rx.wait_for(1).await;
    s.notifications_settled().await;
    assert_eq!(rx.count(), 1, "exactly one change matched");
    let (h, n) = &got[0];
    assert_eq!(n["type"], "Notification");
    assert_eq!(n["subscriptionId"], sid);
    assert_eq!(n["triggerReason"], "attributeUpdated");
    assert_eq!(n["data"][0]["availableSpotNumber"]["value"], 3);
    assert_eq!(n["data"][0]["availableSpotNumber"]["previousValue"], 10);
    assert!(n["data"][0].get("name").is_none(), "notification.attributes projects");
    assert_eq!(h.get("x-auth").unwrap(), "secret");
    assert_eq!(h.get("ngsild-tenant").unwrap(), "cityA");
    assert_eq!(h.get("content-type").unwrap(), "application/json");
    assert!(h.get("link").unwrap().to_str().unwrap().contains("json-ld#context"));
    // Status fields.
    let r = s.req("GET", &format!("/subscriptions/{sid}"), None, t).await;
    assert_eq!(r.body["status"], "active");
    for _ in 0..100 {
        if s.req("GET", &format!("/subscriptions/{sid}"), None, t).await.body["notification"]["timesSent"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = s.req("GET", &format!("/subscriptions/{sid}"), None, t).await;
    assert_eq!(r.body["notification"]["timesSent"], 1, "{}", r.text);
    assert!(r.body["notification"]["lastSuccess"].is_string());
    // PATCH merges: pause it; changes no longer notify.
    assert_eq!(
        s.req(
            "PATCH",
            &format!("/subscriptions/{sid}"),
            Some(json!({"isActive": false})),
            t
        )
        .await
        .status,
        204
    );
    let r = s.req("GET", &format!("/subscriptions/{sid}"), None, t).await;
    assert_eq!(
        (r.body["status"].clone(), r.body["q"].clone()),
        (json!("paused"), json!("availableSpotNumber<5"))
    );
    s.req(
        "PATCH",
        "/entities/urn:ngsi-ld:OffStreetParking:1/attrs",
        Some(json!({"availableSpotNumber": 2})),
        t,
    )
    .await;
    s.notifications_settled().await;
    assert_eq!(rx.count(), 1);
    // Tenants are isolated: the default tenant has no subscription.
    assert_eq!(s.get(&format!("/subscriptions/{sid}")).await.status, 404);
    let r = s.req("GET", "/subscriptions?count=true", None, t).await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "1");
    assert_eq!(
        s.req("DELETE", &format!("/subscriptions/{sid}"), None, t).await.status,
        204
    );
    assert_eq!(
        s.req("DELETE", &format!("/subscriptions/{sid}"), None, t).await.status,
        404
    );
    // Validation.
    let r = s
        .post(
            "/subscriptions",
            json!({"type": "Subscription", "notification": {"endpoint": {"uri": rx.url}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = s.post("/subscriptions", json!({"type": "Subscription", "entities": [{"type": "T"}], "notification": {"endpoint": {"uri": "ftp://x"}}})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn notifications_triggers_ld_json_and_deletion() {
    let s = start().await;
    let rx = receiver().await;
    let sub = json!({"id": "urn:ngsi-ld:Subscription:t1", "type": "Subscription", "entities": [{"idPattern": ".*", "type": "OffStreetParking"}],
        "notificationTrigger": ["entityCreated", "entityDeleted"],
        "notification": {"endpoint": {"uri": rx.url, "accept": "application/ld+json"}, "format": "keyValues"}});
    assert_eq!(s.post("/subscriptions", sub.clone()).await.status, 201);
    assert_eq!(s.post("/subscriptions", sub).await.status, 409);
    s.post("/entities", parking(1, 10)).await;
    s.patch(
        "/entities/urn:ngsi-ld:OffStreetParking:1/attrs",
        json!({"availableSpotNumber": 3}),
    )
    .await;
    s.delete("/entities/urn:ngsi-ld:OffStreetParking:1").await;
    let got = rx.wait_for(2).await;
    s.notifications_settled().await;
    assert_eq!(rx.count(), 2, "created and deleted, not updated");
    let reasons: Vec<Value> = got.iter().map(|(_, n)| n["triggerReason"].clone()).collect();
    assert!(reasons.contains(&json!("entityCreated")) && reasons.contains(&json!("entityDeleted")));
    let created = got.iter().find(|(_, n)| n["triggerReason"] == "entityCreated").unwrap();
    assert_eq!(created.0.get("content-type").unwrap(), "application/ld+json");
    assert!(created.1.get("@context").is_some());
    assert_eq!(created.1["data"][0]["availableSpotNumber"], 10, "keyValues format");
    let deleted = got.iter().find(|(_, n)| n["triggerReason"] == "entityDeleted").unwrap();
    assert!(deleted.1["data"][0]["deletedAt"].is_string());
}

#[tokio::test]
async fn undeliverable_notifications_are_retried_until_the_receiver_is_back() {
    let s = start().await;
    // Reserve a port, then close it: the receiver is "down".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/notify");
    let sub = json!({"type": "Subscription", "entities": [{"type": "OffStreetParking"}], "notification": {"endpoint": {"uri": url}}});
    assert_eq!(s.post("/subscriptions", sub).await.status, 201);
    for i in 1..=3 {
        s.post("/entities", parking(i, 1)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = s.get("/subscriptions?limit=10").await;
    assert_eq!(r.body[0]["notification"]["status"], "failed", "{}", r.text);
    assert!(r.body[0]["notification"]["timesFailed"].as_u64().unwrap() >= 3);
    // The receiver comes up on the same port: everything queued arrives.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let rx = common::receiver_on(listener).await;
    let got = rx.wait_for(3).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|(_, n)| n["data"][0]["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "urn:ngsi-ld:OffStreetParking:1",
            "urn:ngsi-ld:OffStreetParking:2",
            "urn:ngsi-ld:OffStreetParking:3"
        ]
    );
}

#[tokio::test]
async fn sse_stream_of_a_subscription() {
    let s = start().await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "OffStreetParking"}], "notification": {"endpoint": {"uri": "urn:citybrain:sse"}}});
    let r = s.post("/subscriptions", sub).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let path = r.header("location").unwrap();
    let url = format!("{}{}/stream", s.base.trim_end_matches("/ngsi-ld/v1"), path);
    let mut resp = s.http.get(&url).send().await.unwrap();
    assert_eq!(resp.headers().get("content-type").unwrap(), "text/event-stream");
    s.post("/entities", parking(1, 10)).await;
    s.post("/entities", parking(2, 10)).await;
    let mut text = String::new();
    while text.matches("event: notification").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("id: 1") && text.contains("id: 2"), "{text}");
    assert!(text.contains("urn:ngsi-ld:OffStreetParking:2"));
    // Resume after event 1: only event 2 is replayed.
    let mut again = s.http.get(&url).header("Last-Event-ID", "1").send().await.unwrap();
    let chunk = tokio::time::timeout(Duration::from_secs(5), again.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let t = String::from_utf8_lossy(&chunk).to_string();
    assert!(t.contains("id: 2") && !t.contains("id: 1\n"), "{t}");
}

#[tokio::test]
async fn contexts_expand_on_write_and_compact_on_read() {
    let s = start().await;
    let ctx = json!({"@context": {"sdm": "https://smartdatamodels.org/", "free": "sdm:availableSpotNumber", "Lot": "https://smartdatamodels.org/dataModel.Parking/OffStreetParking"}});
    let r = s.post("/jsonldContexts", ctx).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let loc = r.header("location").unwrap();
    let ctx_url = format!("{}{}", s.base.trim_end_matches("/ngsi-ld/v1"), loc);
    let link = format!("<{ctx_url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"");
    let r = s
        .req(
            "POST",
            "/entities",
            Some(json!({"id": "urn:x:lot1", "type": "Lot", "free": 4})),
            &[("Link", &link)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Without the context the terms come back expanded.
    let r = s.get("/entities/urn:x:lot1?options=keyValues").await;
    assert_eq!(
        r.body["https://smartdatamodels.org/availableSpotNumber"], 4,
        "{}",
        r.text
    );
    assert_eq!(
        r.body["type"],
        "https://smartdatamodels.org/dataModel.Parking/OffStreetParking"
    );
    // With it, compacted; queries use the same terms.
    let r = s
        .req(
            "GET",
            "/entities?type=Lot&q=free==4&options=keyValues",
            None,
            &[("Link", &link)],
        )
        .await;
    assert_eq!(r.body[0]["free"], 4, "{}", r.text);
    assert_eq!(r.body[0]["type"], "Lot");
    // Inline context in an ld+json body.
    let body = json!({"id": "urn:x:lot2", "type": "Lot", "free": 1, "@context": [{"free": "https://smartdatamodels.org/availableSpotNumber", "Lot": "https://smartdatamodels.org/dataModel.Parking/OffStreetParking"}, "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"]});
    let r = s
        .req(
            "POST",
            "/entities",
            Some(body),
            &[("Content-Type", "application/ld+json")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s
        .req("GET", "/entities?type=Lot&count=true", None, &[("Link", &link)])
        .await;
    assert_eq!(r.header("ngsild-results-count").unwrap(), "2");
    // ld+json with a Link header, unreachable and malformed contexts.
    let r = s
        .req(
            "POST",
            "/entities",
            Some(json!({"id": "urn:x:3", "type": "T", "@context": {}})),
            &[("Content-Type", "application/ld+json"), ("Link", &link)],
        )
        .await;
    assert_eq!(r.status, 400);
    let dead = "<http://127.0.0.1:1/ctx.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"";
    let r = s.req("GET", "/entities?type=T", None, &[("Link", dead)]).await;
    assert_eq!((r.status, r.error_type().as_str()), (503, "LdContextNotAvailable"));
    let r = s
        .req(
            "POST",
            "/entities",
            Some(json!({"id": "urn:x:3", "type": "T", "@context": 5})),
            &[("Content-Type", "application/ld+json")],
        )
        .await;
    assert_eq!(r.status, 400);
    // Listing, serving and deleting contexts.
    let r = s.get("/jsonldContexts?details=true").await;
    assert_eq!(r.body[0]["kind"], "Hosted");
    let id = loc.rsplit('/').next().unwrap();
    assert_eq!(
        s.get(&format!("/jsonldContexts/{id}")).await.body["@context"]["sdm"],
        "https://smartdatamodels.org/"
    );
    assert!(s
        .get("/jsonldContexts/https%3A%2F%2Furi.etsi.org%2Fngsi-ld%2Fv1%2Fngsi-ld-core-context-v1.8.jsonld")
        .await
        .body["@context"]
        .is_object());
    assert_eq!(s.delete(&format!("/jsonldContexts/{id}")).await.status, 204);
    assert_eq!(s.delete(&format!("/jsonldContexts/{id}")).await.status, 404);
}

#[tokio::test]
async fn tenants_are_isolated() {
    let s = start().await;
    let a = &[("NGSILD-Tenant", "district-a")];
    assert_eq!(
        s.req("GET", "/entities?type=OffStreetParking", None, a)
            .await
            .error_type(),
        "NonexistentTenant"
    );
    assert_eq!(
        s.req("GET", "/entities?type=OffStreetParking", None, a).await.status,
        404
    );
    assert_eq!(s.req("POST", "/entities", Some(parking(1, 1)), a).await.status, 201);
    assert_eq!(
        s.req("GET", "/entities/urn:ngsi-ld:OffStreetParking:1", None, a)
            .await
            .status,
        200
    );
    assert_eq!(s.get("/entities/urn:ngsi-ld:OffStreetParking:1").await.status, 404);
    assert_eq!(
        s.req(
            "GET",
            "/temporal/entities/urn:ngsi-ld:OffStreetParking:1",
            None,
            &[("NGSILD-Tenant", "other")]
        )
        .await
        .status,
        404
    );
    assert_eq!(
        s.req("GET", "/entities?type=T", None, &[("NGSILD-Tenant", "bad tenant!")])
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn http_level_errors() {
    let s = start_with(Default::default(), citybrain_api::ApiLimits { max_body_bytes: 1000 }).await;
    let r = s
        .req(
            "POST",
            "/entities",
            Some(parking(1, 1)),
            &[("Content-Type", "text/plain")],
        )
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.header("content-type").unwrap(), "application/json");
    let r = s.req("GET", "/entities?type=T", None, &[("Accept", "text/html")]).await;
    assert_eq!(r.status, 406);
    let r = s.req("DELETE", "/entityOperations/create", None, &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.error_type(), "InvalidRequest");
    let big = json!({"id": "urn:x:1", "type": "T", "a": "x".repeat(2000)});
    let r = s.post("/entities", big).await;
    assert_eq!(r.status, 413, "{}", r.text);
    let r = s
        .req("POST", "/entities", None, &[("Content-Type", "application/json")])
        .await;
    assert_eq!(r.status, 400);
    let resp = s
        .http
        .post(format!("{}/entities", s.base))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest");
    assert!(body["detail"].as_str().unwrap().contains("not valid JSON"));
    let root = s.base.trim_end_matches("/ngsi-ld/v1");
    assert_eq!(s.get(&format!("{root}/health")).await.body["status"], "ok");
    assert_eq!(s.get(&format!("{root}/nowhere")).await.status, 404);
}

#[tokio::test]
async fn remote_contexts_are_fetched_once_and_mapped_files_work_offline() {
    // A context server that counts its requests.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/ctx.jsonld",
        axum::routing::get(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                axum::Json(json!({"@context": {"spots": "https://example.org/vocab#spots"}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ctx_url = format!("http://{}/ctx.jsonld", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // An offline site maps another URL to a local file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("offline.jsonld");
    std::fs::write(&file, r#"{"@context": {"lanes": "https://example.org/vocab#lanes"}}"#).unwrap();
    let mut cfg = citybrain_hub::HubConfig::default();
    cfg.context_map
        .insert("https://contexts.example.org/offline.jsonld".into(), file);
    let s = start_with(cfg, Default::default()).await;

    let link = |u: &str| format!("<{u}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"");
    let l = link(&ctx_url);
    let r = s
        .req(
            "POST",
            "/entities",
            Some(json!({"id": "urn:x:1", "type": "Lot", "spots": 3})),
            &[("Link", &l)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.get("/entities/urn:x:1?options=keyValues").await;
    assert_eq!(r.body["https://example.org/vocab#spots"], 3, "{}", r.text);
    // Once fetched, the context is served from the cache even when its server is gone.
    server.abort();
    let r = s
        .req("GET", "/entities/urn:x:1?options=keyValues", None, &[("Link", &l)])
        .await;
    assert_eq!(r.body["spots"], 3, "{}", r.text);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        s.get("/jsonldContexts?details=true&kind=Cached").await.body[0]["kind"],
        "Cached"
    );
    // The mapped URL never touches the network.
    let m = link("https://contexts.example.org/offline.jsonld");
    let r = s
        .req(
            "POST",
            "/entities",
            Some(json!({"id": "urn:x:2", "type": "Road", "lanes": 2})),
            &[("Link", &m)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        s.get("/entities/urn:x:2?options=keyValues").await.body["https://example.org/vocab#lanes"],
        2
    );
}

#[tokio::test]
async fn framework_rejections_are_problem_details_too() {
    let s = start().await;
    let r = s.get("/entities/%FF%FE").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type").unwrap(), "application/json");
    assert_eq!(r.error_type(), "InvalidRequest");
    assert!(r.body["detail"].as_str().unwrap().contains("UTF-8"), "{}", r.text);
}

#[tokio::test]
async fn every_entity_of_a_type_is_read_page_by_page() {
    let s = common::start().await;
    let items: Vec<serde_json::Value> = (0..2500)
        .map(|i| json!({"id": format!("urn:ngsi-ld:Counter:{i}"), "type": "Counter", "n": i}))
        .collect();
    for chunk in items.chunks(1000) {
        let r = s
            .post("/entityOperations/upsert", serde_json::Value::Array(chunk.to_vec()))
            .await;
        assert!(r.status < 300, "{}", r.text);
    }
    s.post("/entities", json!({"id": "urn:ngsi-ld:Other:1", "type": "Other"}))
        .await;
    let t = "https://uri.etsi.org/ngsi-ld/default-context/Counter";
    let all = s.hub.entities_of_type("", t, usize::MAX).await.unwrap();
    assert_eq!(all.len(), 2500, "past one page of 1000");
    let ids: std::collections::HashSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 2500, "no entity twice");
    assert_eq!(s.hub.entities_of_type("", t, 1200).await.unwrap().len(), 1200);
}

#[tokio::test]
async fn the_hub_counts_the_entity_writes_that_change_something() {
    let s = common::start().await;
    let n0 = s.hub.entity_changes();
    s.post(
        "/entities",
        json!({"id": "urn:ngsi-ld:Counter:a", "type": "Counter", "n": 1}),
    )
    .await;
    assert_eq!(s.hub.entity_changes(), n0 + 1, "a create");
    let r = s
        .post(
            "/entityOperations/upsert",
            json!([{"id": "urn:ngsi-ld:Counter:a", "type": "Counter", "n": 2},
                   {"id": "urn:ngsi-ld:Counter:b", "type": "Counter", "n": 1}]),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    assert_eq!(s.hub.entity_changes(), n0 + 3, "a change and a create in one batch");
    s.delete("/entities/urn:ngsi-ld:Counter:b").await;
    assert_eq!(s.hub.entity_changes(), n0 + 4, "a delete");
}
