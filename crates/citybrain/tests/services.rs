//! The government services end to end, on the real binary: the demo's
//! application approved in seconds with its explanation, the newborn bundle
//! a birth record starts and a parent confirms, the restaurant bundle
//! across departments with an officer's reviews, benefits granted without
//! application over the synthetic city, the OpenAPI file covering every
//! route, and a server killed with SIGKILL mid-way resuming every bundle.

mod demo_server;

use std::time::{Duration, Instant};

use demo_server::{call, start, until, Server};
use serde_json::{json, Value};

#[tokio::test]
async fn the_demo_approves_in_seconds_completes_bundles_and_grants_without_application() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("demo.db").display());
    let s = start(&["demo", "--db", &db, "--live", "none", "--demo-city", "3000"], true);
    let http = reqwest::Client::new();
    let api = format!("{}/api/v1", s.base);
    let graduate = s.token("urn:ngsi-ld:Person:demo-graduate");
    // Approval in seconds: pre-filled from the hub, decided by the rule, explained.
    let (code, pre) = call(
        &http,
        "GET",
        &format!("{api}/services/talent-residence-intake/prefill"),
        Some(graduate),
        None,
    )
    .await;
    assert_eq!(code, 200, "{pre}");
    assert_eq!(pre["toState"], json!([]), "the hub holds everything: {pre}");
    let (code, body) = call(
        &http,
        "POST",
        &format!("{api}/applications"),
        Some(graduate),
        Some(json!({"service": "talent-residence-intake"})),
    )
    .await;
    assert_eq!(code, 400, "no consent, no application: {body}");
    let t0 = Instant::now();
    let (code, a) = call(
        &http,
        "POST",
        &format!("{api}/applications"),
        Some(graduate),
        Some(json!({"service": "talent-residence-intake", "consent": true})),
    )
    .await;
    let took = t0.elapsed();
    assert_eq!(code, 201, "{a}");
    assert_eq!(a["status"], "approved");
    assert!(took < Duration::from_secs(2), "approved in {took:?}");
    assert_eq!(a["decision"]["outcome"], "eligible");
    let clauses: Vec<&str> = a["decision"]["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(clauses.contains(&"within_age"), "{clauses:?}");
    assert_eq!(a["consent"]["records"], json!(["urn:ngsi-ld:Person:demo-graduate"]));
    // The graduate sees it; another citizen does not; the public may not ask.
    let id = a["id"].as_str().unwrap();
    let (code, _) = call(&http, "GET", &format!("{api}/applications/{id}"), Some(graduate), None).await;
    assert_eq!(code, 200);
    let parent = s.token("urn:ngsi-ld:Person:demo-parent");
    let (code, _) = call(&http, "GET", &format!("{api}/applications/{id}"), Some(parent), None).await;
    assert_eq!(code, 404);
    let (code, _) = call(&http, "GET", &format!("{api}/applications"), None, None).await;
    assert_eq!(code, 401);
    // Applying in another's name is refused.
    let (code, body) = call(&http, "POST", &format!("{api}/applications"), Some(parent), Some(json!({"service": "talent-residence-intake", "subject": "urn:ngsi-ld:Person:demo-graduate", "consent": true}))).await;
    assert_eq!(code, 403, "{body}");

    // Application without asking: the demo's birth record started the newborn bundle.
    let newborn = "urn:ngsi-ld:BundleInstance:newborn-demo-1";
    let i = until(30, "the newborn bundle", || {
        let (http, url) = (http.clone(), format!("{api}/bundle-instances/{newborn}"));
        async move {
            let (code, i) = call(&http, "GET", &url, Some(parent), None).await;
            (code == 200).then_some(i)
        }
    })
    .await;
    assert_eq!(i["status"], "awaiting_confirmation");
    let (code, body) = call(
        &http,
        "POST",
        &format!("{api}/bundle-instances/{newborn}/confirm"),
        Some(graduate),
        None,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let (code, i) = call(
        &http,
        "POST",
        &format!("{api}/bundle-instances/{newborn}/confirm"),
        Some(parent),
        None,
    )
    .await;
    assert_eq!(code, 200, "{i}");
    assert_eq!(i["status"], "completed", "{i}");
    let docs: Vec<&str> = i["steps"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["document"].as_str().unwrap())
        .collect();
    assert_eq!(docs.len(), 5);

    // One application, four departments: the restaurant.
    let restaurant = s.token("urn:ngsi-ld:Organization:demo-restaurant");
    let (code, r) = call(
        &http,
        "POST",
        &format!("{api}/bundle-instances"),
        Some(restaurant),
        Some(json!({"bundle": "opening-a-restaurant"})),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["steps"]["food-permit"]["status"], "waiting");
    let rid = r["id"].as_str().unwrap();
    let officer = s.token("civil-affairs,market-regulation,fire-rescue");
    let (code, q) = call(&http, "GET", &format!("{api}/review-queue"), Some(officer), None).await;
    assert_eq!(code, 200);
    let waiting: Vec<&str> = q["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["instance"] == rid)
        .map(|x| x["step"].as_str().unwrap())
        .collect();
    assert_eq!(waiting, ["food-permit", "fire-safety"]);
    let (code, _) = call(
        &http,
        "POST",
        &format!("{api}/bundle-instances/{rid}/steps/food-permit/review"),
        Some(restaurant),
        Some(json!({"approve": true})),
    )
    .await;
    assert_eq!(code, 403, "the applicant does not review");
    for step in ["food-permit", "fire-safety"] {
        let (code, r) = call(
            &http,
            "POST",
            &format!("{api}/bundle-instances/{rid}/steps/{step}/review"),
            Some(officer),
            Some(json!({"approve": true, "note": "inspected"})),
        )
        .await;
        assert_eq!(code, 200, "{r}");
    }
    let (_, r) = call(
        &http,
        "GET",
        &format!("{api}/bundle-instances/{rid}"),
        Some(restaurant),
        None,
    )
    .await;
    assert_eq!(r["status"], "completed");

    // Benefits without application over the synthetic city, with explanations.
    let grants = until(120, "the synthetic city's grants", || {
        let (http, url) = (http.clone(), format!("{api}/service-metrics"));
        async move {
            let (_, m) = call(&http, "GET", &url, None, None).await;
            let n = m["sme-stabilisation-subsidy"]["benefitsGranted"].as_u64().unwrap_or(0);
            (n > 0).then_some(m)
        }
    })
    .await;
    assert!(grants["all"]["visitsAvoided"].as_u64().unwrap() > 0, "{grants}");
    assert_eq!(grants["talent-residence-intake"]["decidedAutomatically"], 1);
    let (code, g) = call(&http, "GET", &format!("{api}/grants"), Some(parent), None).await;
    assert_eq!(code, 200);
    let rent = g
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service"] == "rent-subsidy")
        .expect("the demo family's rent subsidy");
    assert_eq!(rent["explanation"]["outcome"], "eligible");
    // Every state change is a hub entity: the parent reads the instance over NGSI-LD.
    let (code, e) = call(
        &http,
        "GET",
        &format!(
            "{}/ngsi-ld/v1/entities/{newborn}?options=keyValues&attrs=status",
            s.base
        ),
        Some(parent),
        None,
    )
    .await;
    assert_eq!(code, 200, "{e}");
    assert_eq!(e["status"], "completed");
}

#[tokio::test]
async fn the_openapi_file_describes_every_services_route() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("o.db").display());
    let s = start(&["serve", "--db", &db], false);
    let (code, doc) = call(
        &reqwest::Client::new(),
        "GET",
        &format!("{}/api/v1/openapi.json", s.base),
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut routes = 0;
    for (method, route, _) in citybrain_api::auth::RULES
        .iter()
        .filter(|(_, r, _)| r.starts_with("/api/v1/"))
    {
        let op = &paths
            .get(*route)
            .unwrap_or_else(|| panic!("{route} is not in openapi.json"))[method.to_lowercase()];
        assert!(op.is_object(), "{method} {route} is not in openapi.json");
        routes += 1;
    }
    let described: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(described, routes, "openapi.json describes a route that is not served");
}

/// Bundles started while the server is killed with SIGKILL: every one that
/// was acknowledged is there after the restart with its documents, and
/// finishes; birth records written just before the kill start their
/// bundles after it.
#[tokio::test]
async fn a_server_killed_mid_bundle_resumes_every_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("k.db").display());
    let http = reqwest::Client::new();
    let mut s = start(&["serve", "--db", &db], false);
    let ngsi = |s: &Server| format!("{}/ngsi-ld/v1", s.base);
    let firms: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("urn:ngsi-ld:Organization:k{i}"), "type": "Organization",
            "name": {"type": "Property", "value": format!("Restaurant {i}")}, "district": {"type": "Property", "value": "Futian"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [114.0, 22.5]}},
            "taxArrears": {"type": "Property", "value": false}}))
        .collect();
    let (code, _) = call(
        &http,
        "POST",
        &format!("{}/entityOperations/upsert", ngsi(&s)),
        None,
        Some(Value::Array(firms)),
    )
    .await;
    assert!(code == 201 || code == 204, "{code}");
    let api = format!("{}/api/v1", s.base);
    // Start bundles concurrently and kill the server while they are in flight.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (http, api) = (http.clone(), api.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 5)).await;
            let r = http
                .post(format!("{api}/bundle-instances"))
                .json(&json!({"bundle": "opening-a-restaurant", "subject": format!("urn:ngsi-ld:Organization:k{i}")}))
                .send()
                .await
                .ok()?;
            if r.status().as_u16() != 201 {
                return None;
            }
            let v: Value = r.json().await.ok()?;
            Some(v["id"].as_str()?.to_string())
        }));
    }
    let births: Vec<Value> = (0..10)
        .flat_map(|i| {
            [
                json!({"id": format!("urn:ngsi-ld:Household:k{i}"), "type": "Household",
                    "district": {"type": "Property", "value": "Futian"}}),
                json!({"id": format!("urn:ngsi-ld:BirthRecord:k{i}"), "type": "BirthRecord",
                    "household": {"type": "Relationship", "object": format!("urn:ngsi-ld:Household:k{i}")},
                    "mother": {"type": "Relationship", "object": format!("urn:ngsi-ld:Person:k{i}")}}),
            ]
        })
        .collect();
    let (code, _) = call(
        &http,
        "POST",
        &format!("{}/entityOperations/upsert", ngsi(&s)),
        None,
        Some(Value::Array(births)),
    )
    .await;
    assert!(code == 201 || code == 204, "{code}");
    tokio::time::sleep(Duration::from_millis(60)).await;
    s.child.kill().expect("SIGKILL");
    s.child.wait().unwrap();
    let mut acked = Vec::new();
    for t in tasks {
        if let Some(id) = t.await.unwrap() {
            acked.push(id);
        }
    }
    let s = start(&["serve", "--db", &db], false);
    let api = format!("{}/api/v1", s.base);
    for id in &acked {
        let (code, i) = call(&http, "GET", &format!("{api}/bundle-instances/{id}"), None, None).await;
        assert_eq!(code, 200, "acknowledged {id} is gone after the kill");
        let licence = i["steps"]["business-licence"]["document"]
            .as_str()
            .expect("the licence was issued");
        let (code, doc) = call(
            &http,
            "GET",
            &format!("{}/entities/{licence}?options=keyValues", ngsi(&s)),
            None,
            None,
        )
        .await;
        assert_eq!(code, 200, "the licence committed with the state");
        assert_eq!(doc["status"], "valid");
        for step in ["food-permit", "fire-safety"] {
            let (code, r) = call(
                &http,
                "POST",
                &format!("{api}/bundle-instances/{id}/steps/{step}/review"),
                None,
                Some(json!({"approve": true})),
            )
            .await;
            assert_eq!(code, 200, "{r}");
        }
        let (_, i) = call(&http, "GET", &format!("{api}/bundle-instances/{id}"), None, None).await;
        assert_eq!(i["status"], "completed");
    }
    // The birth records' bundles: started by the pass over the hub after the restart.
    for i in 0..10 {
        let url = format!("{api}/bundle-instances/urn:ngsi-ld:BundleInstance:newborn-k{i}");
        until(30, "a triggered bundle after the restart", || {
            let (http, url) = (http.clone(), url.clone());
            async move { (call(&http, "GET", &url, None, None).await.0 == 200).then_some(()) }
        })
        .await;
    }
    eprintln!(
        "{} of 40 bundles acknowledged before the kill, all resumed",
        acked.len()
    );
}
