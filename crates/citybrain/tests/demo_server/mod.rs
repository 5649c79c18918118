//! The demo server the services and appeals end-to-end tests start: the
//! real binary on a free port, with the shipped services, policies and
//! appeals, and the demo's tokens read from what it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_citybrain");

pub fn root(p: &str) -> String {
    format!("{}/../../{p}", env!("CARGO_MANIFEST_DIR"))
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// Demo tokens by whom they act for (an entity id, or an officer's departments).
    pub tokens: std::collections::HashMap<String, String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(args: &[&str], auth: bool) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--services",
            &root("services"),
            "--policies",
            &root("policies"),
            "--appeals",
            &root("appeals"),
            "--log",
            "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if auth {
        cmd.env_remove("CITYBRAIN_NO_AUTH");
    } else {
        cmd.arg("--no-auth");
    }
    let mut child = cmd.spawn().expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tokens = std::collections::HashMap::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let (Some(who), Some(t)) = (words.get(1), words.last()) {
                if t.starts_with("cbt_") {
                    tokens.insert(who.to_string(), t.to_string());
                }
            }
            if let Some(url) = line.strip_prefix("citybrain listening on ") {
                let _ = tx.send((url.to_string(), tokens.clone()));
            }
        }
    });
    let (base, tokens) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server prints its address");
    Server { child, base, tokens }
}

impl Server {
    pub fn token(&self, who: &str) -> &str {
        self.tokens
            .get(who)
            .unwrap_or_else(|| panic!("no demo token for {who}: {:?}", self.tokens.keys()))
    }
}

pub async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("the server answers");
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Polls `f` until it returns Some, for at most `secs`.
pub async fn until<T, F: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(secs), "waited {secs} s for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
