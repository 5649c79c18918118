//! Access control end to end, on the real binary: every route refuses the
//! callers it should (the routes come from `citybrain_api::auth::RULES`, and
//! a route without a rule is the administrator's only), the data-sharing
//! policy narrows reads and writes, OpenID Connect tokens, rate limits, the
//! token commands, and the audit log's verifier catching tampering.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;

use citybrain_trust::Action;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_citybrain");

struct Demo {
    child: Child,
    base: String,
    tokens: std::collections::HashMap<String, String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    fn token(&self, who: &str) -> &str {
        self.tokens
            .get(who)
            .unwrap_or_else(|| panic!("no demo token for {who}"))
    }
}

/// `demo` with authentication on (no live scenarios), its printed tokens by
/// role ("admin", "transport", "health", "citizen", "enterprise").
fn demo(db: &str, extra: &[&str]) -> Demo {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db,
            "--live",
            "none",
            "--demo-city",
            "0",
        ])
        .args(extra)
        .env_remove("CITYBRAIN_NO_AUTH")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tokens = std::collections::HashMap::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let (Some(role), Some(t)) = (words.first(), words.last()) {
                if t.starts_with("cbt_") {
                    let key = match *role {
                        "officer" => words[1].to_string(),
                        r => r.to_string(),
                    };
                    // The first token of a role is the role's; every one is
                    // also found by whom it acts for.
                    tokens.entry(key).or_insert_with(|| t.to_string());
                    tokens.insert(words[1].to_string(), t.to_string());
                }
            }
            if let Some(url) = line.strip_prefix("citybrain listening on ") {
                let _ = tx.send((url.to_string(), tokens.clone()));
            }
        }
    });
    let (base, tokens) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("demo prints its address");
    Demo { child, base, tokens }
}

/// A concrete path for a route pattern.
fn concrete(route: &str) -> String {
    route
        .replace("{id}", "urn:ngsi-ld:Person:demo-citizen-1")
        .replace("{attr}", "name")
        .replace("{instance}", "urn:ngsi-ld:instance:x")
        .replace("{op}", "upsert")
        .replace("{type}", "Person")
        .replace("{uid}", "city-overview")
        .replace("{*path}", "cockpit.css")
        .replace("{name}", "hospital-district")
        .replace("{action}", "acknowledge")
}

async fn status(http: &reqwest::Client, method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = http.request(m.clone(), url).timeout(Duration::from_secs(10));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if ["POST", "PATCH", "PUT"].contains(&method) {
        let body = if url.ends_with("/entityOperations/upsert") || url.ends_with("/entityOperations/query") {
            json!([])
        } else {
            json!({})
        };
        rb = rb.header("Content-Type", "application/json").body(body.to_string());
    }
    let r = rb.send().await.expect("request");
    let code = r.status().as_u16();
    // A stream's body never ends: its status is enough.
    let text = if (200..300).contains(&code) && (url.ends_with("/stream") || url.ends_with("/events")) {
        String::new()
    } else {
        r.text().await.unwrap_or_default()
    };
    (code, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_whom_it_should() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("a.db").display());
    let d = demo(&db, &[]);
    let http = reqwest::Client::new();
    let root = d.base.clone();
    let mut checked = 0;
    for (method, route, action) in citybrain_api::auth::RULES {
        let url = format!("{root}{}", concrete(route));
        let action = *action;
        // The public: 401 wherever credentials are needed.
        let (code, body) = status(&http, method, &url, None).await;
        let public_ok = matches!(action, Action::Open | Action::Read);
        if public_ok {
            assert_ne!(code, 401, "{method} {route} refused the public: {body}");
        } else {
            assert_eq!(code, 401, "{method} {route} let the public through: {body}");
            assert!(body.contains("urn:citybrain:problem:unauthenticated"), "{body}");
        }
        // A citizen: 403 beyond reading and their own account.
        let (code, body) = status(&http, method, &url, Some(d.token("citizen"))).await;
        if matches!(action, Action::Write | Action::Subscribe | Action::Operate) {
            assert_eq!(code, 403, "{method} {route} let a citizen through: {body}");
            assert!(body.contains("urn:citybrain:problem:forbidden"), "{body}");
        } else {
            assert!(
                code != 401 && code != 403,
                "{method} {route} refused a citizen: {code} {body}"
            );
        }
        // An officer: 403 on operator work only.
        let (code, body) = status(&http, method, &url, Some(d.token("health"))).await;
        if action == Action::Operate {
            assert_eq!(code, 403, "{method} {route} let an officer operate: {body}");
        } else {
            assert_ne!(code, 401, "{method} {route}: {body}");
        }
        // The administrator passes, and the rule names a real route (not the
        // 404 fallback, not a 405 of a method the route lacks).
        let (code, body) = status(&http, method, &url, Some(d.token("admin"))).await;
        assert!(
            code != 401 && code != 403 && code != 405,
            "{method} {route} for the admin: {code} {body}"
        );
        assert!(
            !body.contains("no resource at"),
            "{method} {route} is in RULES but not routed"
        );
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} routes enumerated");

    // A cockpit for staff: the public must log in, a citizen may not, officers may.
    let staff = format!("{root}/api/cockpits/command/snapshot");
    assert_eq!(status(&http, "GET", &staff, None).await.0, 401);
    assert_eq!(status(&http, "GET", &staff, Some(d.token("citizen"))).await.0, 403);
    assert_eq!(status(&http, "GET", &staff, Some(d.token("transport"))).await.0, 200);
    let listed = status(&http, "GET", &format!("{root}/api/cockpits"), None).await.1;
    assert!(
        listed.contains("city-overview") && !listed.contains("command"),
        "{listed}"
    );

    // A route/method without a rule is the administrator's only (fails closed).
    let (code, _) = status(&http, "PUT", &format!("{root}/health"), Some(d.token("health"))).await;
    assert_eq!(code, 403);
    let (code, _) = status(&http, "PUT", &format!("{root}/health"), Some(d.token("admin"))).await;
    assert_eq!(code, 405);

    // Bad credentials are refused even where the public may read.
    let bad = format!("cbt_{}_{}", "0".repeat(16), "0".repeat(64));
    let (code, body) = status(
        &http,
        "GET",
        &format!("{root}/ngsi-ld/v1/entities?type=Road"),
        Some(&bad),
    )
    .await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = status(&http, "GET", &format!("{root}/health"), Some("not-a-jwt")).await;
    assert_eq!(code, 401);

    // Another tenant is closed to a token made for the default one.
    let r = http
        .get(format!("{root}/ngsi-ld/v1/entities?type=Road"))
        .bearer_auth(d.token("transport"))
        .header("NGSILD-Tenant", "district-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> Value {
    let mut rb = http.get(url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t).header("Citybrain-Purpose", "test of the policy");
    }
    let r = rb.send().await.unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap()
}

fn ids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_narrows_reads_and_writes_and_accesses_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("p.db").display());
    let d = demo(&db, &[]);
    let http = reqwest::Client::new();
    let api = format!("{}/ngsi-ld/v1", d.base);
    let people = format!("{api}/entities?type=Person,ParkingPermit,Organization&options=keyValues");

    // The public sees open data, no personal record, even by id or count.
    assert!(ids(&get(&http, &people, None).await).is_empty());
    let r = http
        .get(format!("{api}/entities?type=Person&count=true&limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["ngsild-results-count"], "0");
    let r = http
        .get(format!("{api}/entities/urn:ngsi-ld:Person:demo-citizen-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(!ids(&get(&http, &format!("{api}/entities?type=OffStreetParking"), None).await).is_empty());
    let types = get(&http, &format!("{api}/types"), None).await;
    assert!(
        !types["typeList"].as_array().unwrap().contains(&json!("Person")),
        "{types}"
    );

    // A citizen sees their own records only; an enterprise its own.
    let mine = ids(&get(&http, &people, Some(d.token("citizen"))).await);
    assert_eq!(
        mine,
        ["urn:ngsi-ld:ParkingPermit:demo-1", "urn:ngsi-ld:Person:demo-citizen-1"]
    );
    let theirs = ids(&get(&http, &people, Some(d.token("enterprise"))).await);
    assert_eq!(theirs, ["urn:ngsi-ld:Organization:demo-enterprise-1"]);

    // The transport officer reads people's names only; health more, but not ids.
    let t = get(
        &http,
        &format!("{api}/entities?type=Person&options=keyValues"),
        Some(d.token("transport")),
    )
    .await;
    for p in t.as_array().unwrap() {
        let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "type", "name"], "{p}");
    }
    let h = get(
        &http,
        &format!("{api}/entities/urn:ngsi-ld:Person:demo-citizen-1?options=keyValues"),
        Some(d.token("health")),
    )
    .await;
    assert!(
        h.get("birthDate").is_some() && h.get("nationalIdNumber").is_none(),
        "{h}"
    );
    // Nor can a query on a hidden attribute find who has it.
    let probe = get(
        &http,
        &format!("{api}/entities?type=Person&q=nationalIdNumber==%22DEMO-000000000000000001%22"),
        Some(d.token("transport")),
    )
    .await;
    assert_eq!(probe, json!([]), "a q on a hidden attribute matched");
    // ...nor order by it: health sees birth dates, transport does not.
    async fn ordered(http: &reqwest::Client, api: &str, token: &str, dir: &str) -> Vec<String> {
        let url = format!("{api}/entities?type=Person&orderBy=birthDate;{dir}&attrs=name");
        let v = get(http, &url, Some(token)).await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    }
    let (h, t) = (d.token("health"), d.token("transport"));
    assert_ne!(
        ordered(&http, &api, h, "asc").await,
        ordered(&http, &api, h, "desc").await,
        "birthDate orders the health officer's results"
    );
    assert_eq!(
        ordered(&http, &api, t, "asc").await,
        ordered(&http, &api, t, "desc").await,
        "a hidden birthDate ordered the transport officer's results"
    );

    // Writes: a department writes its own types and attributes only.
    let patch = |token: &str, id: &str, body: Value| {
        http.patch(format!("{api}/entities/{id}/attrs"))
            .bearer_auth(token.to_string())
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    let lot = "urn:ngsi-ld:OffStreetParking:zheyi-qingchun";
    assert_eq!(
        patch(d.token("transport"), lot, json!({"availableSpotNumber": 7}))
            .await
            .unwrap()
            .status(),
        204
    );
    let r = patch(d.token("health"), lot, json!({"availableSpotNumber": 8}))
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("may not write entities of type OffStreetParking"));
    let r = patch(
        d.token("transport"),
        "urn:ngsi-ld:Person:demo-citizen-1",
        json!({"name": "x"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403, "transport reads names but may not write people");
    let r = http
        .post(format!("{api}/entityOperations/upsert"))
        .bearer_auth(d.token("transport"))
        .header("Content-Type", "application/json")
        .body(json!([{"id": "urn:ngsi-ld:Person:new", "type": "Person", "name": "n"}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a batch cannot slip a forbidden type through");

    // A subscription stays within what its creator may read.
    let sub = |token: &str, body: Value| {
        http.post(format!("{api}/subscriptions"))
            .bearer_auth(token.to_string())
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
    };
    let endpoint = json!({"endpoint": {"uri": "http://127.0.0.1:9/n", "accept": "application/json"}});
    let r = sub(
        d.token("transport"),
        json!({"type": "Subscription", "entities": [{"type": "Person"}], "notification": endpoint}),
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        403,
        "only some of Person's attributes are open to transport"
    );
    let mut n = endpoint.clone();
    n["attributes"] = json!(["name"]);
    let r = sub(
        d.token("transport"),
        json!({"type": "Subscription", "entities": [{"type": "Person"}], "notification": n}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    // It is its creator's: another department neither sees nor deletes it.
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let sub_url = format!("{}{loc}", d.base);
    let by = |t: &str| http.get(&sub_url).bearer_auth(t.to_string()).send();
    assert_eq!(by(d.token("transport")).await.unwrap().status(), 200);
    assert_eq!(by(d.token("health")).await.unwrap().status(), 404);
    let r = http
        .delete(&sub_url)
        .bearer_auth(d.token("health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let listed = get(&http, &format!("{api}/subscriptions"), Some(d.token("health"))).await;
    assert_eq!(listed, json!([]), "health lists transport's subscription");
    let listed = get(&http, &format!("{api}/subscriptions"), Some(d.token("transport"))).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let r = sub(
        d.token("health"),
        json!({"type": "Subscription", "watchedAttributes": ["name"], "notification": endpoint}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403, "a subscription without types would see everything");

    // The citizen sees who looked at their records, and why — and only theirs.
    let acc = get(&http, &format!("{}/api/me/accesses", d.base), Some(d.token("citizen"))).await;
    let list = acc["accesses"].as_array().unwrap();
    assert!(list.iter().any(|a| a["role"] == "officer"
        && a["departments"] == json!(["health"])
        && a["purpose"] == "test of the policy"));
    for a in list {
        for r in a["records"].as_array().unwrap() {
            assert!(
                ["urn:ngsi-ld:Person:demo-citizen-1", "urn:ngsi-ld:ParkingPermit:demo-1"]
                    .contains(&r.as_str().unwrap()),
                "another person's record shown to the citizen: {a}"
            );
        }
    }
    let r = http.get(format!("{}/api/me/accesses", d.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    drop(d);

    // The log verifies, and any edit of the file is caught.
    let verify = |anchor: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["audit", "verify", "--db", &db]);
        if let Some(a) = anchor {
            c.args(["--anchor", a]);
        }
        c.output().unwrap()
    };
    let ok = verify(None);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("audit log intact"));
    let head = Command::new(BIN).args(["audit", "head", "--db", &db]).output().unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let path = dir.path().join("p.db");
    let sql = |q: &str| {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;")
            .unwrap();
        c.execute_batch(q).unwrap();
    };
    let broken = |what: &str| {
        let out = verify(Some(&head));
        assert!(!out.status.success(), "{what} was not caught");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let backup = std::fs::read(&path).unwrap();
    let restore = || {
        std::fs::write(&path, &backup).unwrap();
        let _ = std::fs::remove_file(dir.path().join("p.db-wal"));
        let _ = std::fs::remove_file(dir.path().join("p.db-shm"));
    };
    sql(r#"UPDATE audit_log SET doc = replace(doc, '"action":"', '"action":"x') WHERE seq = 2"#);
    assert!(broken("an altered record").contains("altered"));
    restore();
    sql("DELETE FROM audit_log WHERE seq = 2");
    let e = broken("a removed record");
    assert!(e.contains("record 3"), "{e}");
    restore();
    sql("UPDATE audit_log SET seq = -1 WHERE seq = 1; UPDATE audit_log SET seq = 1 WHERE seq = 2; UPDATE audit_log SET seq = 2 WHERE seq = -1;");
    broken("two swapped records");
    restore();
    let last: u64 = head.split(':').next().unwrap().parse().unwrap();
    sql(&format!("DELETE FROM audit_log WHERE seq = {last}"));
    assert!(broken("a cut tail").contains("removed from its end"));
    restore();
    assert!(verify(Some(&head)).status.success());
    // Through SQL the log refuses changes outright.
    let c = rusqlite::Connection::open(&path).unwrap();
    let e = c.execute("DELETE FROM audit_log WHERE seq = 1", []).unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["token"])
            .args(args)
            .args(["--db", &db])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, _, err) = run(&["create", "--role", "officer"]);
    assert!(!ok && err.contains("needs at least one --department"), "{err}");
    let (ok, _, err) = run(&["create", "--role", "officer", "--department", "police"]);
    assert!(!ok && err.contains("not in the policy"), "{err}");
    let (ok, _, err) = run(&["create", "--role", "citizen"]);
    assert!(!ok && err.contains("--subject"), "{err}");
    let (ok, plain, _) = run(&[
        "create",
        "--role",
        "officer",
        "--department",
        "transport",
        "--label",
        "signals team",
    ]);
    assert!(ok);
    let plain = plain.trim().to_string();
    assert!(plain.starts_with("cbt_"));
    let (_, list, _) = run(&["list"]);
    assert!(list.contains("signals team") && list.contains("active") && !list.contains(&plain[21..]));
    let id = plain[4..20].to_string();
    let (ok, _, _) = run(&["revoke", &id]);
    assert!(ok);
    let (_, list, _) = run(&["list"]);
    assert!(list.contains("revoked"));

    // A revoked token is refused by a server that starts after.
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db", &db])
        .env_remove("CITYBRAIN_NO_AUTH")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = common::listening(&mut child);
    let r = reqwest::Client::new()
        .get(format!("{base}/ngsi-ld/v1/entities?type=Road"))
        .bearer_auth(&plain)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("revoked"));
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn openid_tokens_and_rate_limits() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../citybrain-trust/tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("o.db").display());
    let jwks = format!("{fixtures}/oidc-test-jwks.json");
    let d = demo(
        &db,
        &[
            "--oidc-issuer",
            "https://id.city.example",
            "--oidc-jwks",
            &jwks,
            "--oidc-audience",
            "citybrain",
            "--rate-limit",
            "5",
            "--rate-burst",
            "5",
        ],
    );
    let key = EncodingKey::from_ed_pem(&std::fs::read(format!("{fixtures}/oidc-test-key.pem")).unwrap()).unwrap();
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("test-1".into());
    let exp = chrono::Utc::now().timestamp() + 600;
    let jwt = encode(
        &h,
        &json!({"iss": "https://id.city.example", "aud": "citybrain", "exp": exp, "sub": "u7",
                "roles": ["officer"], "departments": ["health"]}),
        &key,
    )
    .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/ngsi-ld/v1/entities?type=Person&options=keyValues", d.base);
    let r = http.get(&url).bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let people: Value = r.json().await.unwrap();
    assert_eq!(
        people.as_array().unwrap().len(),
        5,
        "a health officer by OpenID sees the demo's people (2 of the hospital district, 3 of the services)"
    );
    let wrong_aud = encode(
        &h,
        &json!({"iss": "https://id.city.example", "aud": "other", "exp": exp, "roles": "admin"}),
        &key,
    )
    .unwrap();
    assert_eq!(
        http.get(&url).bearer_auth(&wrong_aud).send().await.unwrap().status(),
        401
    );

    // Five a second: a burst of twenty from one caller meets 429s, with Retry-After.
    let mut limited = 0;
    for _ in 0..20 {
        let r = http.get(&url).bearer_auth(&jwt).send().await.unwrap();
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            limited += 1;
        }
    }
    assert!(limited >= 10, "only {limited} of 20 were limited");
    // ...and another caller is not held up by it.
    let admin = d.token("admin").to_string();
    assert_eq!(http.get(&url).bearer_auth(&admin).send().await.unwrap().status(), 200);
}

#[test]
fn no_auth_warns_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("n.db").display());
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db", &db, "--no-auth"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::listening(&mut child);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("AUTHENTICATION IS OFF"), "{err}");
}

#[tokio::test]
async fn a_decision_reads_only_what_the_caller_may_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("d.db").display());
    let policies = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    let d = demo(&db, &["--policies", policies]);
    let http = reqwest::Client::new();
    let decide = |subject: &str| json!({"policy": "basic-income", "subject": subject, "on": "2016-01-01"});
    let post = |body: Value, token: Option<&str>| {
        let mut r = http.post(format!("{}/api/v1/decisions", d.base)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    // A citizen about themselves: decided from their own record.
    let r = post(decide("urn:ngsi-ld:Person:demo-citizen-1"), Some(d.token("citizen")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["inputs"][0]["name"], "birth");
    assert_eq!(v["inputs"][0]["value"], "1958-04-12");
    // ...not about someone else, nor can the public: their records are not visible.
    let r = post(decide("urn:ngsi-ld:Person:demo-citizen-2"), Some(d.token("citizen")))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = post(decide("urn:ngsi-ld:Person:demo-citizen-1"), None).await.unwrap();
    assert_eq!(r.status(), 404);
    // The read behind the decision is in the citizen's access log.
    let mine = get(&http, &format!("{}/api/me/accesses", d.base), Some(d.token("citizen"))).await;
    assert!(
        mine["accesses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["what"] == "POST /api/v1/decisions"),
        "{mine}"
    );
    // The policies themselves are public.
    let list = get(&http, &format!("{}/api/v1/policies", d.base), None).await;
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == "parenting-allowance"));
}
