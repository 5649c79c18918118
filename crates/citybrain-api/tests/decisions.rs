//! Rules over HTTP: the policies as open data, and decisions read from the
//! hub's own entities with their explanation.

mod common;

use common::start;
use serde_json::json;

/// A URL outside the NGSI-LD base.
fn api(s: &common::Server, path: &str) -> String {
    format!("{}{path}", s.base.trim_end_matches("/ngsi-ld/v1"))
}

#[tokio::test]
async fn a_decision_reads_the_subject_and_its_household_from_the_hub() {
    let s = start().await;
    let people = json!([
        {"id": "urn:ngsi-ld:Person:p1", "type": "Person",
         "birthDate": {"type": "Property", "value": "1980-01-01"},
         "monthlySalary": {"type": "Property", "value": 0.0},
         "householdRole": {"type": "Property", "value": "adult"},
         "household": {"type": "Relationship", "object": "urn:ngsi-ld:Household:h1"}},
        {"id": "urn:ngsi-ld:Person:p2", "type": "Person",
         "birthDate": {"type": "Property", "value": "2012-05-01"},
         "householdRole": {"type": "Property", "value": "child"},
         "household": {"type": "Relationship", "object": "urn:ngsi-ld:Household:h1"}},
        {"id": "urn:ngsi-ld:Household:h1", "type": "Household"}
    ]);
    let r = s.req("POST", "/entityOperations/create", Some(people), &[]).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let r = s
        .req(
            "POST",
            &api(&s, "/api/v1/decisions"),
            Some(json!({"policy": "basic-income", "subject": "urn:ngsi-ld:Person:p1", "on": "2016-01-01"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["outcome"], "eligible");
    assert_eq!(r.body["amount"], 600.0);
    assert_eq!(r.body["subject"], "urn:ngsi-ld:Person:p1");
    let birth = r.body["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "birth")
        .unwrap()
        .clone();
    assert_eq!(birth["value"], "1980-01-01");
    assert_eq!(
        birth["sources"],
        json!([{"entity": "urn:ngsi-ld:Person:p1", "attribute": "birthDate"}])
    );

    // The household's members come from the Person entities that point at it.
    let r = s
        .req(
            "POST",
            &api(&s, "/api/v1/decisions"),
            Some(json!({"policy": "parenting-allowance", "subject": "urn:ngsi-ld:Household:h1", "on": "2016-01-01"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["outcome"], "eligible", "{}", r.text);
    let single = r.body["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "single")
        .unwrap()
        .clone();
    assert_eq!(single["value"], true);
    let members = r.body["inputs"][0].clone();
    assert_eq!(members["value"].as_array().unwrap().len(), 2);
    // The child's missing salary took the field's default.
    assert_eq!(members["value"][1]["salary"], 0.0, "{members}");

    // Stated inputs never replace what the hub holds.
    let r = s
        .req("POST", &api(&s, "/api/v1/decisions"), Some(json!({"policy": "basic-income", "subject": "urn:ngsi-ld:Person:p1", "on": "2016-01-01", "input": {"salary": 5000.0}})), &[])
        .await;
    assert_eq!(r.body["outcome"], "eligible", "{}", r.text);
}

#[tokio::test]
async fn policies_are_listed_whole_and_bad_requests_say_why() {
    let s = start().await;
    let r = s.req("GET", &api(&s, "/api/v1/policies"), None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.as_array().unwrap().iter().any(|p| p["id"] == "basic-income"));
    let r = s.req("GET", &api(&s, "/api/v1/policies/basic-income"), None, &[]).await;
    assert_eq!(r.status, 200);
    let majority = r.body["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "age_of_majority")
        .unwrap()
        .clone();
    assert_eq!(
        majority["values"][0],
        json!({"from": "1945-01-01", "value": 21, "reference": null})
    );
    let no_salary = r.body["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "no_salary")
        .unwrap()
        .clone();
    assert_eq!(no_salary["versions"].as_array().unwrap().len(), 2);

    let r = s.req("GET", &api(&s, "/api/v1/policies/nothing"), None, &[]).await;
    assert_eq!(r.status, 404);
    let r = s
        .req(
            "POST",
            &api(&s, "/api/v1/decisions"),
            Some(json!({"policy": "basic-income"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("subject"), "{}", r.text);
    let r = s
        .req(
            "POST",
            &api(&s, "/api/v1/decisions"),
            Some(json!({"policy": "basic-income", "subject": "urn:ngsi-ld:Person:none"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    s.req(
        "POST",
        "/entities",
        Some(json!({"id": "urn:ngsi-ld:Household:h9", "type": "Household"})),
        &[],
    )
    .await;
    let r = s
        .req(
            "POST",
            &api(&s, "/api/v1/decisions"),
            Some(json!({"policy": "basic-income", "subject": "urn:ngsi-ld:Household:h9"})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text
            .contains("is a Household; basic-income decides about Person entities"),
        "{}",
        r.text
    );
    let r = s
        .req(
            "POST",
            &api(&s, "/api/v1/decisions"),
            Some(json!({"policy": "basic-income", "subject": "urn:ngsi-ld:Household:h9", "colour": 1})),
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("unknown member 'colour'"), "{}", r.text);
}
