//! Appeals end to end, on the real binary: the Open311 GeoReport v2 facade
//! in JSON and XML (services, definitions, requests with api_key and
//! filters, tokens, updates, errors), an anonymous appeal through the API
//! routed, answered by the district and rated with the secret, a signed-in
//! requester's own queue, the public board without personal data, the
//! metrics entity the cockpit reads; a public consultation on the shipped
//! draft and the one-stop page.

mod demo_server;

use demo_server::{call, start, until};
use serde_json::{json, Value};

const DISTRICT: &str = "shangcheng-urban-management,hotline-triage";

async fn get_text(http: &reqwest::Client, url: &str) -> (u16, String, String) {
    let r = http.get(url).send().await.expect("the server answers");
    let code = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (code, ct, r.text().await.unwrap_or_default())
}

async fn post_form(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> (u16, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let r = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("the server answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn open311_in_json_and_xml_with_its_filters_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("o.db").display());
    let s = start(&["demo", "--db", &db, "--live", "none", "--demo-city", "0"], true);
    let http = reqwest::Client::new();
    let o = format!("{}/open311/v2", s.base);

    let (code, ct, body) = get_text(&http, &format!("{o}/services.json")).await;
    assert_eq!((code, ct.starts_with("application/json")), (200, true));
    let services: Value = serde_json::from_str(&body).unwrap();
    let codes: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["service_code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"streetlight") && codes.contains(&"policy-question"),
        "{codes:?}"
    );
    let (code, ct, xml) = get_text(&http, &format!("{o}/services.xml")).await;
    assert_eq!((code, ct.starts_with("text/xml")), (200, true));
    assert!(
        xml.starts_with("<?xml") && xml.contains("<services><service><service_code>policy-question</service_code>"),
        "{xml}"
    );
    let (_, _, def) = get_text(&http, &format!("{o}/services/road-damage.json")).await;
    let def: Value = serde_json::from_str(&def).unwrap();
    assert_eq!(def["attributes"][0]["code"], "danger");
    assert_eq!(def["attributes"][0]["datatype"], "singlevaluelist");
    let (code, _, err) = get_text(&http, &format!("{o}/services/ufo.json")).await;
    assert_eq!(code, 404);
    assert_eq!(serde_json::from_str::<Value>(&err).unwrap()[0]["code"], 404);
    let (code, _, _) = get_text(&http, &format!("{o}/services.json?jurisdiction_id=elsewhere.example")).await;
    assert_eq!(code, 404, "an unknown jurisdiction");

    // POST needs an api_key (403), a service_code and a location (400).
    let form = [
        ("service_code", "streetlight"),
        ("lat", "30.2612"),
        ("long", "120.1791"),
        ("description", "公交站旁边的路灯不亮了，请联系13812345678"),
        ("email", "resident@example.cn"),
        ("first_name", "Wei"),
    ];
    let (code, body) = post_form(&http, &format!("{o}/requests.json"), &form).await;
    assert_eq!(code, 403, "{body}");
    let key = s.token(DISTRICT);
    let mut with_key = form.to_vec();
    with_key.push(("api_key", key));
    let (code, body) = post_form(
        &http,
        &format!("{o}/requests.xml"),
        &[("api_key", key), ("service_code", "streetlight")],
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        body.contains("<errors><error><code>400</code>") && body.contains("location"),
        "{body}"
    );
    let (code, body) = post_form(&http, &format!("{o}/requests.json"), &with_key).await;
    assert_eq!(code, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let id = created[0]["service_request_id"].as_str().unwrap().to_string();
    assert!(created[0]["service_notice"].as_str().unwrap().contains("Shangcheng"));
    // A second on a road: its required attribute, as attribute[code].
    let (code, body) = post_form(
        &http,
        &format!("{o}/requests.json"),
        &[
            ("api_key", key),
            ("service_code", "road-damage"),
            ("lat", "30.2590"),
            ("long", "120.1800"),
            ("description", "A deep pothole"),
            ("attribute[danger]", "yes"),
        ],
    )
    .await;
    assert_eq!(code, 201, "{body}");

    // Reads: one request in JSON and XML, filters, the token, the window.
    let (_, _, one) = get_text(&http, &format!("{o}/requests/{id}.json")).await;
    let one: Value = serde_json::from_str(&one).unwrap();
    let r = &one[0];
    assert_eq!(r["status"], "open");
    assert_eq!(r["service_code"], "streetlight");
    assert_eq!(r["lat"], json!(30.2612));
    assert!(r["agency_responsible"].as_str().unwrap().contains("上城区"));
    assert!(r["expected_datetime"].as_str().unwrap().ends_with("+08:00"));
    let d = r["description"].as_str().unwrap();
    assert!(!d.contains("13812345678") && d.contains("[phone]"), "{d}");
    assert!(
        !one.to_string().contains("resident@example.cn"),
        "no contact in public: {one}"
    );
    let (_, _, x) = get_text(&http, &format!("{o}/requests/{id}.xml")).await;
    assert!(
        x.contains(&format!(
            "<service_requests><request><service_request_id>{id}</service_request_id><status>open</status>"
        )),
        "{x}"
    );
    let (_, _, list) = get_text(
        &http,
        &format!("{o}/requests.json?service_code=road-damage&status=open"),
    )
    .await;
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["service_code"], "road-damage");
    let (_, _, paged) = get_text(&http, &format!("{o}/requests.json?page=1&page_size=1")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&paged).unwrap().as_array().unwrap().len(),
        1
    );
    let (_, _, closed) = get_text(&http, &format!("{o}/requests.json?status=closed")).await;
    assert_eq!(closed, "[]");
    let (code, _, _) = get_text(
        &http,
        &format!("{o}/requests.json?start_date=2026-01-01T00:00:00Z&end_date=2026-06-01T00:00:00Z"),
    )
    .await;
    assert_eq!(code, 400, "a span over 90 days");
    let (_, _, tok) = get_text(&http, &format!("{o}/tokens/{id}.json")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&tok).unwrap()[0]["service_request_id"],
        id.as_str()
    );
    let (code, _, _) = get_text(&http, &format!("{o}/requests/nope.json")).await;
    assert_eq!(code, 404);

    // The department answers; the update shows in servicerequestupdates.
    let (code, body) = call(
        &http,
        "POST",
        &format!("{}/api/v1/appeals/{id}/actions", s.base),
        Some(key),
        Some(json!({"action": "answer", "answer": "The lamp was replaced."})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (_, _, ups) = get_text(&http, &format!("{o}/servicerequestupdates.json")).await;
    let ups: Value = serde_json::from_str(&ups).unwrap();
    let mine: Vec<&Value> = ups
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["service_request_id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "{ups}");
    assert_eq!(mine[1]["description"], "The lamp was replaced.");
    let (_, _, x) = get_text(&http, &format!("{o}/servicerequestupdates.xml")).await;
    assert!(
        x.contains("<service_request_updates><request_update><update_id>"),
        "{x}"
    );
    let (_, _, disc) = get_text(&http, &format!("{o}/discovery.json")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&disc).unwrap()["endpoints"][0]["specification"],
        "http://wiki.open311.org/GeoReport_v2"
    );
}

#[tokio::test]
async fn an_appeal_is_filed_routed_answered_rated_and_shown_on_the_board() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("a.db").display());
    let s = start(&["demo", "--db", &db, "--live", "none", "--demo-city", "0"], true);
    let http = reqwest::Client::new();
    let api = format!("{}/api/v1", s.base);

    // Anonymous, no category: classified, routed by the area, a secret returned.
    let (code, filed) = call(
        &http,
        "POST",
        &format!("{api}/appeals"),
        None,
        Some(json!({
            "description": "小区门口的垃圾三天没人清运了，我的电话13912345678",
            "location": {"lat": 30.2600, "lon": 120.1780},
            "anonymous": true,
            "name": "王芳",
        })),
    )
    .await;
    assert_eq!(code, 201, "{filed}");
    let a = &filed["appeal"];
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["category"], "sanitation");
    assert_eq!(a["department"], "shangcheng-urban-management");
    assert!(a.get("secret_sha256").is_none());
    let secret = filed["secret"].as_str().unwrap().to_string();

    // The district sees it in its queue, without who filed it (anonymous).
    let officer = s.token(DISTRICT);
    let (code, q) = call(&http, "GET", &format!("{api}/appeal-queue"), Some(officer), None).await;
    assert_eq!(code, 200, "{q}");
    let mine = q["appeals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .unwrap();
    assert_eq!(mine["name"], Value::Null);
    // Another department may not answer it.
    let transport = s.token("transport");
    let act = |token: Option<String>, body: Value, secret: Option<String>| {
        let http = http.clone();
        let url = format!("{api}/appeals/{id}/actions");
        async move {
            let mut r = http.post(url).json(&body);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            if let Some(sec) = secret {
                r = r.header("citybrain-appeal-secret", sec);
            }
            let r = r.send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, _) = act(Some(transport.into()), json!({"action": "answer", "answer": "x"}), None).await;
    assert_eq!(code, 403);
    let (code, v) = act(Some(officer.into()), json!({"action": "accept"}), None).await;
    assert_eq!((code, v["status"].as_str()), (200, Some("in_progress")), "{v}");
    let (code, v) = act(
        Some(officer.into()),
        json!({"action": "answer", "answer": "Collected this morning; the schedule is now daily."}),
        None,
    )
    .await;
    assert_eq!((code, v["status"].as_str()), (200, Some("answered")), "{v}");
    // Rating without the secret is refused; with it, 5 stars close the appeal.
    let (code, _) = act(None, json!({"action": "rate", "stars": 5}), None).await;
    assert_eq!(code, 403);
    let (code, v) = act(
        None,
        json!({"action": "rate", "stars": 5, "comment": "Quick, thanks"}),
        Some(secret.clone()),
    )
    .await;
    assert_eq!((code, v["status"].as_str()), (200, Some("closed")), "{v}");
    let (code, _) = act(None, json!({"action": "rate", "stars": 1}), Some(secret)).await;
    assert_eq!(code, 409, "rated already");

    // The public board: closed, rated, no phone or name; its updates public notes only.
    let (code, board) = call(&http, "GET", &format!("{api}/appeals?status=closed"), None, None).await;
    assert_eq!(code, 200);
    let shown = &board["appeals"][0];
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["rating"], 5);
    let text = board.to_string();
    assert!(!text.contains("13912345678") && !text.contains("王芳"), "{text}");
    let (_, one) = call(&http, "GET", &format!("{api}/appeals/{id}"), None, None).await;
    assert_eq!(one["updates"].as_array().unwrap().len(), 5, "{one}");
    assert!(one["updates"][0].get("internalNote").is_none());

    // Signed in: a policy question goes to the enterprise service centre in 24 h, and is in one's queue.
    let graduate = s.token("urn:ngsi-ld:Person:demo-graduate");
    let (code, filed) = call(
        &http,
        "POST",
        &format!("{api}/appeals"),
        Some(graduate),
        Some(json!({"category": "policy-question", "description": "人才落户需要哪些材料？"})),
    )
    .await;
    assert_eq!(code, 201, "{filed}");
    assert_eq!(filed["appeal"]["department"], "enterprise-service");
    assert_eq!(filed["secret"], Value::Null);
    let (_, q) = call(&http, "GET", &format!("{api}/appeal-queue"), Some(graduate), None).await;
    assert_eq!(q["total"], 1, "{q}");
    let (code, bad) = call(
        &http,
        "POST",
        &format!("{api}/appeals"),
        None,
        Some(json!({"description": ""})),
    )
    .await;
    assert_eq!(code, 400);
    assert!(bad["detail"].as_str().unwrap().contains("description"), "{bad}");
    let (code, bad) = call(
        &http,
        "POST",
        &format!("{api}/appeals"),
        None,
        Some(json!({"description": "x", "colour": "red"})),
    )
    .await;
    assert_eq!(code, 400);
    assert!(
        bad["detail"].as_str().unwrap().contains("colour"),
        "an unknown member is named: {bad}"
    );
    // Reporting needs an account; each reporter counts once.
    let (code, _) = call(
        &http,
        "POST",
        &format!("{api}/appeals/{id}/actions"),
        None,
        Some(json!({"action": "report"})),
    )
    .await;
    assert_eq!(code, 403);

    // The enterprise one-stop page: its appeal, the policies it matches, its applications and grants.
    let restaurant = s.token("urn:ngsi-ld:Organization:demo-restaurant");
    let (code, _) = call(
        &http,
        "POST",
        &format!("{api}/appeals"),
        Some(restaurant),
        Some(json!({"category": "enterprise-appeal", "description": "食品经营许可证审批超时"})),
    )
    .await;
    assert_eq!(code, 201);
    let (code, page) = call(
        &http,
        "GET",
        &format!("{api}/enterprise-overview"),
        Some(restaurant),
        None,
    )
    .await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["appeals"]["total"], 1, "{page}");
    assert_eq!(page["appeals"]["appeals"][0]["department"], "enterprise-service");
    assert!(page["matchingPolicies"].is_array() && page["applications"].is_array() && page["grants"].is_array());
    for d in page["matchingPolicies"].as_array().unwrap() {
        assert_eq!(d["outcome"], "eligible", "{d}");
    }
    let (code, other) = call(
        &http,
        "GET",
        &format!("{api}/enterprise-overview?subject=urn:ngsi-ld:Organization:demo-restaurant"),
        Some(graduate),
        None,
    )
    .await;
    assert_eq!(code, 403, "another's page: {other}");
    let (code, own) = call(
        &http,
        "GET",
        &format!("{api}/enterprise-overview"),
        Some(graduate),
        None,
    )
    .await;
    assert_eq!(
        (code, own["appeals"]["total"].as_u64()),
        (200, Some(1)),
        "a citizen's own page: {own}"
    );

    // The figures, computed on request and kept in the hub for the cockpit.
    let (_, figures) = call(&http, "GET", &format!("{api}/appeal-metrics"), None, None).await;
    let city = figures
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["department"] == "city")
        .unwrap();
    assert_eq!(
        (city["appeals"].as_u64(), city["satisfactionMean"].as_f64()),
        (Some(3), Some(5.0)),
        "{city}"
    );
    until(30, "the AppealMetrics entity", || {
        let http = http.clone();
        let url = format!("{}/ngsi-ld/v1/entities?type=AppealMetrics&options=keyValues", s.base);
        async move {
            let (_, v) = call(&http, "GET", &url, None, None).await;
            v.as_array()?
                .iter()
                .find(|e| e["department"] == "city" && e["appeals"] == 3)
                .cloned()
        }
    })
    .await;
}

#[tokio::test]
async fn a_draft_is_consulted_on_over_http_and_the_one_stop_page_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("c.db").display());
    let s = start(&["demo", "--db", &db, "--live", "none", "--demo-city", "0"], true);
    let http = reqwest::Client::new();
    let api = format!("{}/api/v1", s.base);
    let id = "elderly-allowance-2027";
    let citizen = s.token("urn:ngsi-ld:Person:demo-citizen-1");
    let enterprise = s.token("urn:ngsi-ld:Organization:demo-enterprise-1");
    let civil = s.token("civil-affairs,market-regulation,fire-rescue");

    // The shipped draft is open to the public, with its articles.
    let (code, list) = call(&http, "GET", &format!("{api}/consultations?stage=open"), None, None).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["consultations"][0]["id"], id, "{list}");
    let (_, c) = call(&http, "GET", &format!("{api}/consultations/{id}"), None, None).await;
    assert_eq!(c["stage"], "open");
    assert_eq!(c["sections"].as_array().unwrap().len(), 4, "{c}");

    // The public reads but does not comment; a citizen and an enterprise do.
    let comment = |text: &str, section: Option<&str>| json!({"text": text, "section": section});
    let url = format!("{api}/consultations/{id}/comments");
    let (code, _) = call(&http, "POST", &url, None, Some(comment("x", None))).await;
    assert_eq!(code, 401);
    let (code, made) = call(
        &http,
        "POST",
        &url,
        Some(citizen),
        Some(comment("Please index it to prices; mail me at a@b.cn", Some("art-2"))),
    )
    .await;
    assert_eq!(code, 201, "{made}");
    assert!(made["text"].as_str().unwrap().contains("[e-mail]"), "{made}");
    let (code, bad) = call(&http, "POST", &url, Some(citizen), Some(comment("x", Some("art-9")))).await;
    assert_eq!(code, 400, "{bad}");
    assert!(bad["detail"].as_str().unwrap().contains("art-9"), "{bad}");
    let (code, _) = call(
        &http,
        "POST",
        &url,
        Some(enterprise),
        Some(comment("Fine as it is.", None)),
    )
    .await;
    assert_eq!(code, 201);
    let seq = made["seq"].as_u64().unwrap();
    let (code, _) = call(
        &http,
        "POST",
        &format!("{url}/{seq}/actions"),
        Some(enterprise),
        Some(json!({"action": "support"})),
    )
    .await;
    assert_eq!(code, 200);

    // The public list never names an author.
    let (_, public) = call(&http, "GET", &url, None, None).await;
    assert_eq!(public["total"], 2, "{public}");
    let text = public.to_string();
    assert!(!text.contains("demo-citizen-1") && !text.contains("a@b.cn"), "{text}");
    assert_eq!(public["comments"][0]["supports"], 1);
    assert_eq!(public["comments"][1]["authorKind"], "enterprise");
    let (code, _) = call(&http, "GET", &format!("{url}?hidden=true"), Some(citizen), None).await;
    assert_eq!(code, 403, "hidden comments are the department's to see");

    // Only the department answers; a citizen may not publish.
    let answer = json!({"action": "answer", "text": "Adopted in article 2.", "adoption": "adopted"});
    let (code, _) = call(
        &http,
        "POST",
        &format!("{url}/{seq}/actions"),
        Some(citizen),
        Some(answer.clone()),
    )
    .await;
    assert_eq!(code, 403);
    let (code, answered) = call(
        &http,
        "POST",
        &format!("{url}/{seq}/actions"),
        Some(civil),
        Some(answer),
    )
    .await;
    assert_eq!(code, 200, "{answered}");
    assert_eq!(answered["answer"]["adoption"], "adopted");
    let draft = json!({"id": "mine", "title": "T", "summary": "S", "department": "civil-affairs",
        "sections": [{"id": "a", "title": "A", "text": "x"}],
        "opens": "2027-01-01T00:00:00Z", "closes": "2027-03-01T00:00:00Z"});
    let (code, _) = call(
        &http,
        "POST",
        &format!("{api}/consultations"),
        Some(citizen),
        Some(draft.clone()),
    )
    .await;
    assert_eq!(code, 403);
    let mut short = draft.clone();
    short["closes"] = json!("2027-01-10T00:00:00Z");
    let (code, short) = call(&http, "POST", &format!("{api}/consultations"), Some(civil), Some(short)).await;
    assert_eq!(code, 400, "{short}");
    let (code, made) = call(&http, "POST", &format!("{api}/consultations"), Some(civil), Some(draft)).await;
    assert_eq!(code, 201, "{made}");
    let (_, upcoming) = call(&http, "GET", &format!("{api}/consultations?stage=upcoming"), None, None).await;
    assert_eq!(upcoming["consultations"][0]["id"], "mine", "{upcoming}");
    // Concluding waits for the close.
    let (code, early) = call(
        &http,
        "POST",
        &format!("{api}/consultations/{id}/conclude"),
        Some(civil),
        Some(json!({"outcome": "done"})),
    )
    .await;
    assert_eq!(code, 409, "{early}");

    // The one-stop page, and its data for the enterprise signed in.
    let (code, _, page) = get_text(&http, &format!("{}/enterprise", s.base)).await;
    assert_eq!(code, 200);
    assert!(page.contains("/assets/enterprise.js"), "{page}");
    let (code, o) = call(
        &http,
        "GET",
        &format!("{api}/enterprise-overview"),
        Some(enterprise),
        None,
    )
    .await;
    assert_eq!(code, 200, "{o}");
    assert_eq!(o["subject"], "urn:ngsi-ld:Organization:demo-enterprise-1");
    // The board's map reads the areas' outlines.
    let (_, d) = call(&http, "GET", &format!("{api}/appeal-departments"), None, None).await;
    assert!(d["areas"][0]["polygon"].as_array().unwrap().len() >= 3, "{d}");
}
