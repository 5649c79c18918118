//! Storage faults on the real binary: a full disk (the database's size
//! limit, which SQLite reports exactly as a full disk) and a database
//! locked by another process give clear errors, lose nothing already
//! stored, and leave the file intact.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_citybrain");

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(db: &str) -> Server {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            db,
            "--no-auth",
            "--log",
            "error",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("{}/ngsi-ld/v1", common::listening(&mut child));
    Server(child, base)
}

async fn create(http: &reqwest::Client, base: &str, i: usize) -> (u16, Value) {
    let r = http
        .post(format!("{base}/entities"))
        .header("Content-Type", "application/json")
        .body(
            json!({"id": format!("urn:ngsi-ld:Filler:{i:05}"), "type": "Filler", "text": "x".repeat(40_000)})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn integrity(path: &std::path::Path) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_clearly_and_keeps_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let http = reqwest::Client::new();
    let mut stored = Vec::new();
    {
        let s = serve(&format!("sqlite:{}?max_size_mb=2", path.display()));
        let mut refusal = None;
        for i in 0..500 {
            match create(&http, &s.1, i).await {
                (201, _) => stored.push(i),
                (status, body) => {
                    refusal = Some((status, body));
                    break;
                }
            }
        }
        let (status, body) = refusal.expect("a 2 MiB database fills up");
        assert_eq!(status, 507, "{body}");
        assert_eq!(body["type"], "urn:citybrain:problem:storage-full");
        assert!(
            body["detail"].as_str().unwrap().contains("nothing was written"),
            "{body}"
        );
        assert!(!stored.is_empty());
        // Reads go on; everything acknowledged is there.
        for i in &stored {
            let r = http
                .get(format!("{}/entities/urn:ngsi-ld:Filler:{i:05}", s.1))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    assert_eq!(integrity(&path), "ok");
    // With room again, the same file takes writes, and has lost nothing.
    let s = serve(&format!("sqlite:{}", path.display()));
    assert_eq!(create(&http, &s.1, 9999).await.0, 201);
    let r = http
        .get(format!("{}/entities?type=Filler&count=true&limit=1", s.1))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["ngsild-results-count"],
        (stored.len() + 1).to_string().as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_database_refuses_writes_clearly_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let http = reqwest::Client::new();
    let s = serve(&format!("sqlite:{}", path.display()));
    assert_eq!(create(&http, &s.1, 1).await.0, 201);
    // Another process takes the write lock and keeps it.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let p = path.clone();
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE;").unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(60));
        c.execute_batch("ROLLBACK;").unwrap();
    });
    locked_rx.recv().unwrap();
    let (status, body) = create(&http, &s.1, 2).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:citybrain:problem:storage-busy");
    assert!(
        body["detail"].as_str().unwrap().contains("locked by another process"),
        "{body}"
    );
    // Reads are not blocked by it (WAL).
    let r = http
        .get(format!("{}/entities/urn:ngsi-ld:Filler:00001", s.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(
        create(&http, &s.1, 2).await.0,
        201,
        "writes resume once the lock is gone"
    );
    drop(s);
    assert_eq!(integrity(&path), "ok");
}
