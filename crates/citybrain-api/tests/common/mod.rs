//! A real server on a loopback port over a temporary SQLite file, and a
//! small client that speaks to it.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use citybrain_api::{ApiLimits, AppState};
use citybrain_hub::{Hub, HubConfig};
use citybrain_store_sqlite::{Durability, SqliteStore};
use serde_json::Value;
use tokio::net::TcpListener;

pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub hub: Hub,
    _dir: tempfile::TempDir,
}

pub async fn start() -> Server {
    start_with(HubConfig::default(), ApiLimits::default()).await
}

pub async fn start_with(mut cfg: HubConfig, limits: ApiLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db"), Durability::Normal).unwrap();
    cfg.notify_max_backoff = Duration::from_millis(400);
    let store = Arc::new(store);
    let auth = citybrain_api::auth::Auth::disabled(store.clone());
    let hub = Hub::start(store, cfg).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let policies = std::sync::Arc::new(
        citybrain_rules::PolicySet::load(&root.join("policies")).expect("the shipped policies load"),
    );
    let app = citybrain_api::app(AppState {
        hub: hub.clone(),
        limits,
        metrics: None,
        auth,
        policies,
        // The services write their definitions into the hub; these tests
        // check the NGSI-LD API on an empty one (crates/citybrain/tests/services.rs has the services).
        services: None,
        appeals: None,
    });
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::ServiceExt::<axum::extract::Request>::into_make_service(app),
        )
        .await
        .unwrap();
    });
    Server {
        base: format!("http://{addr}/ngsi-ld/v1"),
        http: reqwest::Client::new(),
        hub,
        _dir: dir,
    }
}

impl Server {
    /// Waits until every notification queued so far has been delivered and
    /// acknowledged (the outbox is empty). Notifications are queued in the
    /// same commit as the change, so once this returns a count of what the
    /// receiver got is final: a test of "no extra notification" waits on
    /// this event instead of sleeping and hoping.
    pub async fn notifications_settled(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let pending = self.hub.store().pending_notifications(1000).await.unwrap();
            if pending.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} notifications still undelivered after 20 s",
                pending.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, k: &str) -> Option<String> {
        self.headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
    /// The NGSI-LD error type's last segment.
    pub fn error_type(&self) -> String {
        self.body["type"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

impl Server {
    pub async fn req(&self, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Resp {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut r = self.http.request(method.parse().unwrap(), url);
        let mut has_ct = false;
        for (k, v) in headers {
            if k.eq_ignore_ascii_case("content-type") {
                has_ct = true;
            }
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            if !has_ct {
                r = r.header("Content-Type", "application/json");
            }
            r = r.body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None, &[]).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.req("POST", path, Some(body), &[]).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.req("PATCH", path, Some(body), &[]).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.req("PUT", path, Some(body), &[]).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, None, &[]).await
    }
}

/// A notification receiver on a loopback port that records what it gets.
#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<(reqwest::header::HeaderMap, Value)>>>,
    pub url: String,
}

pub async fn receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    receiver_on(listener).await
}

pub async fn receiver_on(listener: TcpListener) -> Receiver {
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<(reqwest::header::HeaderMap, Value)>>> = Default::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                let mut h = reqwest::header::HeaderMap::new();
                for (k, v) in headers.iter() {
                    if let (Ok(k), Ok(v)) = (
                        reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()),
                        reqwest::header::HeaderValue::from_bytes(v.as_bytes()),
                    ) {
                        h.insert(k, v);
                    }
                }
                g.lock()
                    .unwrap()
                    .push((h, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver {
        got,
        url: format!("http://{addr}/notify"),
    }
}

impl Receiver {
    /// Waits (bounded) until at least n notifications arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<(reqwest::header::HeaderMap, Value)> {
        for _ in 0..200 {
            if self.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.got.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}
