//! # citybrain-store-sqlite — the embedded backend
//!
//! One SQLite file in WAL mode: one writer connection, a small pool of reader
//! connections (WAL lets readers run beside the writer), all used from
//! `spawn_blocking` so the async runtime never waits on disk.
//!
//! Durability: `synchronous=NORMAL` in WAL mode — a committed transaction
//! survives a crash of the process (`kill -9`); it can be lost only on power
//! failure before the next checkpoint. `durability = Full` (the
//! `?synchronous=full` URL option) makes every commit survive power loss too.
//!
//! Reads and queries are answered from a parsed in-memory copy of each
//! tenant's entities (`citybrain_store::cache`), which narrows candidates by id, type or an
//! attribute-value index and asks `EntityQuery::matches` for the rest.
//!
//! What it does **not** do: NGSI-LD semantics.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use citybrain_ngsild::selector::EntityQuery;
use citybrain_ngsild::temporal::{Instance, TimeProperty};
use citybrain_ngsild::{time, Entity};
use citybrain_store::audit::{self, AuditEntry, AuditRecord};
use citybrain_store::cache::TenantCache;
use citybrain_store::{
    ApiTokenRecord, ContextRecord, HistoryDelete, HistoryQuery, OutboxItem, Page, QueryResult, Result, Store,
    StoreError, Stored, SubscriptionRecord, TypeInfo, WriteSet,
};
use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_trust.sql"),
];
/// History series (entity attributes) pruned per write: the writer is held
/// for one batch at a time, so commits go on between batches.
const PRUNE_SERIES_PER_BATCH: usize = 200;
const READERS: usize = 4;
/// The WAL file is emptied (a TRUNCATE checkpoint) once it grows past this
/// (it holds the writers a moment: at 64 MiB that showed in the hub bench's
/// notification p99, 113 ms against 1 ms).
pub const WAL_LIMIT_BYTES: u64 = 512 * 1024 * 1024;

/// How hard each commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives process crashes (WAL + synchronous=NORMAL).
    #[default]
    Normal,
    /// Survives power loss too (synchronous=FULL).
    Full,
}

struct Inner {
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    path: PathBuf,
    /// Parsed entities per tenant, mirroring the `entities` table.
    cache: Mutex<HashMap<String, Arc<RwLock<TenantCache>>>>,
}

/// The tenant's cache, loaded through `conn` (the writer: callers hold its lock) if absent.
fn cached(inner: &Inner, conn: &Connection, tenant: &str) -> Result<Arc<RwLock<TenantCache>>> {
    if let Some(c) = inner.cache.lock().map_err(be)?.get(tenant) {
        return Ok(c.clone());
    }
    let mut tc = TenantCache::default();
    let mut st = conn
        .prepare_cached("SELECT version, doc FROM entities WHERE tenant=?1")
        .map_err(be)?;
    let mut rows = st.query([tenant]).map_err(be)?;
    while let Some(row) = rows.next().map_err(be)? {
        let v: i64 = row.get(0).map_err(be)?;
        let doc: String = row.get(1).map_err(be)?;
        tc.put(Arc::new(parse_entity(&doc)?), v as u64);
    }
    let c = Arc::new(RwLock::new(tc));
    inner.cache.lock().map_err(be)?.insert(tenant.to_string(), c.clone());
    Ok(c)
}

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get::<_, i64>(0)? as u64,
        doc: r.get(1)?,
        prev_hash: r.get(2)?,
        hash: r.get(3)?,
    })
}

/// A storage error; a lock held by another process and a full disk are told
/// apart (the client can act on them: retry later, free space), the rest
/// are server failures.
fn be(e: impl std::fmt::Display) -> StoreError {
    let msg = e.to_string();
    if msg.contains("database is locked") || msg.contains("database table is locked") {
        StoreError::Busy(
            "the database is locked by another process (waited 5 s); nothing was written, retry later".into(),
        )
    } else if msg.contains("database or disk is full") {
        StoreError::Full(
            "the disk is full, or the database reached its size limit (max_size_mb); nothing was written".into(),
        )
    } else {
        StoreError::Backend(msg)
    }
}

fn ms(t: &time::Timestamp) -> i64 {
    t.timestamp_millis()
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and migrates it.
    pub fn open(path: impl AsRef<Path>, durability: Durability) -> Result<Self> {
        Self::open_with_wal_limit(path, durability, WAL_LIMIT_BYTES)
    }

    fn open_with_wal_limit(path: impl AsRef<Path>, durability: Durability, wal_limit: u64) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| be(format!("cannot create {}: {e}", dir.display())))?;
        }
        let writer = Connection::open(&path).map_err(|e| be(format!("cannot open {}: {e}", path.display())))?;
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-65536;"
            ))
            .map_err(be)?;
        migrate(&writer)?;
        // Checkpoints run on their own thread (below), so a commit never
        // waits for one.
        writer.execute_batch("PRAGMA wal_autocheckpoint=0;").map_err(be)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(be)?;
            r.execute_batch("PRAGMA busy_timeout=5000; PRAGMA cache_size=-32768;")
                .map_err(be)?;
            readers.push(r);
        }
        let store = SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(writer),
                readers: Mutex::new(readers),
                path,
                cache: Mutex::new(HashMap::new()),
            }),
        };
        store.spawn_checkpointer(wal_limit)?;
        Ok(store)
    }

    /// Copies the WAL into the database in the background (PASSIVE: never
    /// blocks writers or readers); stops when the store is dropped. Under a
    /// steady stream of writes a passive checkpoint never finds the moment
    /// to start the WAL over, and the file grows without end (gigabytes a
    /// minute under the live demo at a high speed-up): past
    /// `wal_limit` ([`WAL_LIMIT_BYTES`]) a TRUNCATE checkpoint waits for the
    /// readers, holds the writers for the moment it takes, and empties the file.
    fn spawn_checkpointer(&self, wal_limit: u64) -> Result<()> {
        let conn = Connection::open(&self.inner.path).map_err(be)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(be)?;
        let weak = Arc::downgrade(&self.inner);
        let wal = {
            let mut p = self.inner.path.clone().into_os_string();
            p.push("-wal");
            PathBuf::from(p)
        };
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                if weak.upgrade().is_none() {
                    return;
                }
                let big = std::fs::metadata(&wal).is_ok_and(|m| m.len() > wal_limit);
                let mode = if big { "TRUNCATE" } else { "PASSIVE" };
                if let Err(error) = conn.execute_batch(&format!("PRAGMA wal_checkpoint({mode});")) {
                    tracing::warn!(%error, "WAL checkpoint failed; will retry");
                }
            })
            .map_err(be)?;
        Ok(())
    }

    /// Parses `sqlite:PATH`, `sqlite://PATH` or `sqlite:///ABS` with an
    /// optional `?synchronous=full`.
    pub fn open_url(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("sqlite:")
            .ok_or_else(|| be(format!("'{url}' is not a sqlite: URL")))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(be(format!("'{url}' names no file (try sqlite:./citybrain.db)")));
        }
        if path == ":memory:" {
            // Each pooled connection would open its own, empty database.
            return Err(be(format!(
                "'{url}': in-memory SQLite is not supported (the hub keeps several connections); use a file, e.g. sqlite:/tmp/citybrain.db"
            )));
        }
        let mut durability = Durability::Normal;
        let mut max_size_mb = None;
        for opt in query.split('&').filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("synchronous", "normal")) => durability = Durability::Normal,
                Some(("synchronous", "full")) => durability = Durability::Full,
                Some(("max_size_mb", n)) => match n.parse::<u64>() {
                    Ok(n) if n > 0 => max_size_mb = Some(n),
                    _ => {
                        return Err(be(format!(
                            "sqlite URL option max_size_mb={n}: a whole number of MiB above 0"
                        )))
                    }
                },
                _ => {
                    return Err(be(format!(
                        "unknown sqlite URL option '{opt}' (synchronous=normal|full, max_size_mb=N)"
                    )))
                }
            }
        }
        let store = Self::open(path, durability)?;
        if let Some(mb) = max_size_mb {
            store.limit_size(mb)?;
        }
        Ok(store)
    }

    /// Caps the database file at `mb` MiB: past it, writes fail as on a full
    /// disk (a quota for a shared disk; and how the full-disk path is tested).
    pub fn limit_size(&self, mb: u64) -> Result<()> {
        let w = self.inner.writer.lock().map_err(be)?;
        let page: u64 = w.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(be)?;
        w.execute_batch(&format!("PRAGMA max_page_count={};", (mb << 20) / page.max(512)))
            .map_err(be)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.readers.lock().map_err(be)?.pop();
            let conn = match conn {
                Some(c) => c,
                None => {
                    // All pooled readers busy: open a short-lived one.
                    let c = Connection::open_with_flags(
                        &inner.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(be)?;
                    c.busy_timeout(std::time::Duration::from_secs(5)).map_err(be)?;
                    c
                }
            };
            let out = f(&conn);
            let mut pool = inner.readers.lock().map_err(be)?;
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(be)?
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.write_with_cache(move |_, c| f(c)).await
    }

    async fn write_with_cache<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().map_err(be)?;
            f(&inner, &mut conn)
        })
        .await
        .map_err(be)?
    }

    /// Runs `f` on the tenant's cache (loading it first if needed), off the async runtime.
    async fn with_cache<T: Send + 'static>(
        &self,
        tenant: &str,
        f: impl FnOnce(&TenantCache) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let tenant = tenant.to_string();
        tokio::task::spawn_blocking(move || {
            let existing = inner.cache.lock().map_err(be)?.get(&tenant).cloned();
            let tc = match existing {
                Some(c) => c,
                None => {
                    let conn = inner.writer.lock().map_err(be)?;
                    cached(&inner, &conn, &tenant)?
                }
            };
            let guard = tc.read().map_err(be)?;
            f(&guard)
        })
        .await
        .map_err(be)?
    }
}

fn migrate(c: &Connection) -> Result<()> {
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(be)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = c.unchecked_transaction().map_err(be)?;
        tx.execute_batch(sql)
            .map_err(|e| be(format!("migration {} failed: {e}", i + 1)))?;
        tx.execute_batch(&format!("PRAGMA user_version={}", i + 1))
            .map_err(be)?;
        tx.commit().map_err(be)?;
    }
    c.execute(
        "INSERT OR IGNORE INTO tenants(name, created_at) VALUES ('', ?1)",
        [time::format(&chrono::Utc::now())],
    )
    .map_err(be)?;
    Ok(())
}

fn parse_entity(doc: &str) -> Result<Entity> {
    serde_json::from_str(doc).map_err(|e| be(format!("corrupt entity document: {e}")))
}

fn time_column(p: TimeProperty) -> &'static str {
    match p {
        TimeProperty::ObservedAt => "observed_at",
        TimeProperty::CreatedAt => "created_at",
        TimeProperty::ModifiedAt => "modified_at",
        TimeProperty::DeletedAt => "deleted_at",
    }
}

fn history_where(q: &HistoryQuery, attr: Option<&str>) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let col = time_column(q.timeproperty);
    let mut sql = String::from("tenant=?1 AND entity_id=?2");
    let mut args: Vec<V> = Vec::new();
    if let Some(a) = attr {
        args.push(V::Text(a.to_string()));
        sql.push_str(&format!(" AND attr=?{}", args.len() + 2));
    }
    if let Some(f) = q.from {
        args.push(V::Integer(ms(&f)));
        sql.push_str(&format!(" AND {col}>=?{}", args.len() + 2));
    }
    if let Some(t) = q.to {
        args.push(V::Integer(ms(&t)));
        sql.push_str(&format!(" AND {col}<?{}", args.len() + 2));
    }
    if q.timeproperty == TimeProperty::DeletedAt {
        sql.push_str(" AND deleted_at IS NOT NULL");
    }
    (sql, args)
}

fn from_ms(v: i64) -> Result<time::Timestamp> {
    chrono::DateTime::from_timestamp_millis(v).ok_or_else(|| be(format!("corrupt history time {v}")))
}

fn instance_of_row(r: &rusqlite::Row<'_>) -> Result<Instance> {
    let doc: String = r.get(6).map_err(be)?;
    let value: citybrain_ngsild::Attr =
        serde_json::from_str(&doc).map_err(|e| be(format!("corrupt history row: {e}")))?;
    let observed_at = value.get("observedAt").and_then(|v| v.as_str()).and_then(time::parse);
    Ok(Instance {
        attr: r.get(0).map_err(be)?,
        instance_id: r.get(1).map_err(be)?,
        dataset_id: r.get(2).map_err(be)?,
        observed_at,
        created_at: from_ms(r.get(3).map_err(be)?)?,
        modified_at: from_ms(r.get(4).map_err(be)?)?,
        deleted_at: r.get::<_, Option<i64>>(5).map_err(be)?.map(from_ms).transpose()?,
        value,
    })
}

fn attrs_of(c: &Connection, tenant: &str, entity_id: &str) -> Result<Vec<String>> {
    let mut st = c
        .prepare_cached("SELECT DISTINCT attr FROM history WHERE tenant=?1 AND entity_id=?2 ORDER BY attr")
        .map_err(be)?;
    let rows = st
        .query_map(params![tenant, entity_id], |r| r.get::<_, String>(0))
        .map_err(be)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().map_err(be)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn tenant_exists(&self, tenant: &str) -> Result<bool> {
        let t = tenant.to_string();
        self.read(move |c| {
            c.query_row("SELECT 1 FROM tenants WHERE name=?1", [t], |_| Ok(()))
                .optional()
                .map(|o| o.is_some())
                .map_err(be)
        })
        .await
    }

    async fn ensure_tenant(&self, tenant: &str) -> Result<()> {
        let t = tenant.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO tenants(name, created_at) VALUES (?1, ?2)",
                params![t, time::format(&chrono::Utc::now())],
            )
            .map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn tenants(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare("SELECT name FROM tenants ORDER BY name").map_err(be)?;
            let rows = st.query_map([], |r| r.get(0)).map_err(be)?;
            rows.collect::<std::result::Result<Vec<String>, _>>().map_err(be)
        })
        .await
    }

    async fn get(&self, tenant: &str, ids: &[String]) -> Result<Vec<Stored>> {
        let ids = ids.to_vec();
        self.with_cache(tenant, move |c| Ok(c.get(&ids))).await
    }

    async fn query(&self, tenant: &str, q: &EntityQuery, page: Page) -> Result<QueryResult> {
        let q = q.clone();
        self.with_cache(tenant, move |c| Ok(c.query(&q, page))).await
    }

    async fn commit(&self, tenant: &str, w: WriteSet) -> Result<Vec<i64>> {
        let t = tenant.to_string();
        self.write_with_cache(move |inner, c| {
            let cache = cached(inner, c, &t)?;
            let tx = c.transaction().map_err(be)?;
            let mut seqs = Vec::with_capacity(w.outbox.len());
            {
                tx.execute("INSERT OR IGNORE INTO tenants(name, created_at) VALUES (?1, ?2)", params![t, time::format(&chrono::Utc::now())])
                    .map_err(be)?;
                let mut ins = tx.prepare_cached("INSERT INTO entities(tenant, id, version, doc) VALUES (?1, ?2, 1, ?3)").map_err(be)?;
                let mut upd = tx.prepare_cached("UPDATE entities SET version=version+1, doc=?3 WHERE tenant=?1 AND id=?2 AND version=?4").map_err(be)?;
                let mut del = tx.prepare_cached("DELETE FROM entities WHERE tenant=?1 AND id=?2 AND version=?3").map_err(be)?;
                let current = cache.read().map_err(be)?;
                for put in &w.puts {
                    let e = &put.entity;
                    let doc = serde_json::to_string(e).map_err(be)?;
                    match put.expected_version {
                        None => {
                            if current.entities.contains_key(&e.id) {
                                return Err(StoreError::Conflict(e.id.clone()));
                            }
                            ins.execute(params![t, e.id, doc]).map_err(be)?;
                        }
                        Some(v) => {
                            let Some((cur_v, _)) = current.entities.get(&e.id) else {
                                return Err(StoreError::Conflict(e.id.clone()));
                            };
                            if *cur_v != v {
                                return Err(StoreError::Conflict(e.id.clone()));
                            }
                            upd.execute(params![t, e.id, doc, v as i64]).map_err(be)?;
                        }
                    }
                }
                for (id, v) in &w.deletes {
                    if del.execute(params![t, id, *v as i64]).map_err(be)? != 1 {
                        return Err(StoreError::Conflict(id.clone()));
                    }
                }
                let mut hist = tx
                    .prepare_cached(
                        "INSERT INTO history(tenant, entity_id, attr, instance_id, dataset_id, observed_at, created_at, modified_at, deleted_at, doc)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .map_err(be)?;
                for hd in &w.history_deletes {
                    match hd {
                        HistoryDelete::Entity(id) => {
                            tx.execute("DELETE FROM history WHERE tenant=?1 AND entity_id=?2", params![t, id]).map_err(be)?;
                        }
                        HistoryDelete::Attribute { entity_id, attr, dataset_id } => match dataset_id {
                            None => {
                                tx.execute("DELETE FROM history WHERE tenant=?1 AND entity_id=?2 AND attr=?3", params![t, entity_id, attr])
                                    .map_err(be)?;
                            }
                            Some(ds) => {
                                tx.execute(
                                    "DELETE FROM history WHERE tenant=?1 AND entity_id=?2 AND attr=?3 AND dataset_id IS ?4",
                                    params![t, entity_id, attr, ds],
                                )
                                .map_err(be)?;
                            }
                        },
                        HistoryDelete::Instance { entity_id, attr, instance_id } => {
                            tx.execute(
                                "DELETE FROM history WHERE tenant=?1 AND entity_id=?2 AND attr=?3 AND instance_id=?4",
                                params![t, entity_id, attr, instance_id],
                            )
                            .map_err(be)?;
                        }
                    }
                }
                for (eid, i) in &w.history {
                    // The columns hold the metadata; the document only the instance's members.
                    let doc = serde_json::to_string(&i.value).map_err(be)?;
                    hist.execute(params![
                        t,
                        eid,
                        i.attr,
                        i.instance_id,
                        i.dataset_id,
                        ms(&i.observed_at.unwrap_or(i.modified_at)),
                        ms(&i.created_at),
                        ms(&i.modified_at),
                        i.deleted_at.as_ref().map(ms),
                        doc
                    ])
                    .map_err(be)?;
                }
                let mut out = tx.prepare_cached("INSERT INTO outbox(tenant, subscription_id, payload) VALUES (?1, ?2, ?3)").map_err(be)?;
                for (sub, payload) in &w.outbox {
                    out.execute(params![t, sub, payload]).map_err(be)?;
                    seqs.push(tx.last_insert_rowid());
                }
            }
            tx.commit().map_err(be)?;
            // Durable now: mirror it in the cache (still under the writer lock).
            let mut cache = cache.write().map_err(be)?;
            for put in w.puts {
                let v = put.expected_version.map(|v| v + 1).unwrap_or(1);
                cache.put(Arc::new(put.entity), v);
            }
            for (id, _) in &w.deletes {
                cache.remove(id);
            }
            Ok(seqs)
        })
        .await
    }

    async fn types(&self, tenant: &str) -> Result<Vec<TypeInfo>> {
        self.with_cache(tenant, |c| Ok(c.types())).await
    }

    async fn history(&self, tenant: &str, q: &HistoryQuery) -> Result<Vec<Instance>> {
        let t = tenant.to_string();
        let q = q.clone();
        self.read(move |c| {
            let attrs = match &q.attrs {
                Some(a) => a.clone(),
                None => attrs_of(c, &t, &q.entity_id)?,
            };
            let col = time_column(q.timeproperty);
            let mut out = Vec::new();
            for a in attrs {
                let (cond, args) = history_where(&q, Some(&a));
                let (order, limit) = match q.last_n {
                    Some(n) => ("DESC", n.min(q.limit)),
                    None => ("ASC", q.limit),
                };
                let sql = format!(
                    "SELECT attr, instance_id, dataset_id, created_at, modified_at, deleted_at, doc FROM history
                     WHERE {cond} ORDER BY {col} {order}, instance_id {order} LIMIT {limit}"
                );
                let mut st = c.prepare_cached(&sql).map_err(be)?;
                let mut all: Vec<rusqlite::types::Value> = vec![t.clone().into(), q.entity_id.clone().into()];
                all.extend(args);
                let mut rows = st.query(params_from_iter(all)).map_err(be)?;
                let mut list = Vec::new();
                while let Some(r) = rows.next().map_err(be)? {
                    list.push(instance_of_row(r)?);
                }
                if q.last_n.is_some() {
                    list.reverse();
                }
                out.extend(list);
            }
            Ok(out)
        })
        .await
    }

    async fn history_count(&self, tenant: &str, q: &HistoryQuery) -> Result<usize> {
        let t = tenant.to_string();
        let q = q.clone();
        self.read(move |c| {
            let attrs = match &q.attrs {
                Some(a) => a.clone(),
                None => attrs_of(c, &t, &q.entity_id)?,
            };
            let mut max = 0usize;
            for a in attrs {
                let (cond, args) = history_where(&q, Some(&a));
                let mut all: Vec<rusqlite::types::Value> = vec![t.clone().into(), q.entity_id.clone().into()];
                all.extend(args);
                let n: i64 = c
                    .query_row(
                        &format!("SELECT COUNT(*) FROM history WHERE {cond}"),
                        params_from_iter(all),
                        |r| r.get(0),
                    )
                    .map_err(be)?;
                max = max.max(n as usize);
            }
            Ok(max)
        })
        .await
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT tenant, id, doc FROM subscriptions ORDER BY tenant, id")
                .map_err(be)?;
            let rows = st
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(be)?;
            let mut out = Vec::new();
            for r in rows {
                let (tenant, id, doc) = r.map_err(be)?;
                let doc = serde_json::from_str(&doc).map_err(|e| be(format!("corrupt subscription {id}: {e}")))?;
                out.push(SubscriptionRecord { tenant, id, doc });
            }
            Ok(out)
        })
        .await
    }

    async fn put_subscription(&self, s: &SubscriptionRecord) -> Result<()> {
        let s = s.clone();
        self.write(move |c| {
            let doc = serde_json::to_string(&s.doc).map_err(be)?;
            c.execute(
                "INSERT OR IGNORE INTO tenants(name, created_at) VALUES (?1, ?2)",
                params![s.tenant, time::format(&chrono::Utc::now())],
            )
            .map_err(be)?;
            c.execute(
                "INSERT OR REPLACE INTO subscriptions(tenant, id, doc) VALUES (?1, ?2, ?3)",
                params![s.tenant, s.id, doc],
            )
            .map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<bool> {
        let (t, id) = (tenant.to_string(), id.to_string());
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM subscriptions WHERE tenant=?1 AND id=?2", params![t, id])
                .map_err(be)?;
            c.execute(
                "DELETE FROM outbox WHERE tenant=?1 AND subscription_id=?2",
                params![t, id],
            )
            .map_err(be)?;
            Ok(n > 0)
        })
        .await
    }

    async fn pending_notifications(&self, limit: usize) -> Result<Vec<OutboxItem>> {
        self.read(move |c| {
            let mut st = c
                .prepare_cached("SELECT seq, tenant, subscription_id, payload, attempts, next_attempt_ms FROM outbox ORDER BY seq LIMIT ?1")
                .map_err(be)?;
            let rows = st
                .query_map([limit as i64], |r| {
                    Ok(OutboxItem {
                        seq: r.get(0)?,
                        tenant: r.get(1)?,
                        subscription_id: r.get(2)?,
                        payload: r.get(3)?,
                        attempts: r.get::<_, i64>(4)? as u32,
                        next_attempt_ms: r.get(5)?,
                    })
                })
                .map_err(be)?;
            rows.collect::<std::result::Result<Vec<_>, _>>().map_err(be)
        })
        .await
    }

    async fn ack_notifications(&self, seqs: &[i64]) -> Result<()> {
        let seqs = seqs.to_vec();
        self.write(move |c| {
            let tx = c.transaction().map_err(be)?;
            {
                let mut st = tx.prepare_cached("DELETE FROM outbox WHERE seq=?1").map_err(be)?;
                for s in &seqs {
                    st.execute([s]).map_err(be)?;
                }
            }
            tx.commit().map_err(be)
        })
        .await
    }

    async fn retry_notification(&self, seq: i64, attempts: u32, next_attempt_ms: i64) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "UPDATE outbox SET attempts=?2, next_attempt_ms=?3 WHERE seq=?1",
                params![seq, attempts as i64, next_attempt_ms],
            )
            .map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn contexts(&self, tenant: &str) -> Result<Vec<ContextRecord>> {
        let t = tenant.to_string();
        self.read(move |c| {
            let mut st = c
                .prepare("SELECT id, url, kind, body, created_at FROM contexts WHERE tenant=?1 ORDER BY id")
                .map_err(be)?;
            let rows = st
                .query_map([t], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(be)?;
            let mut out = Vec::new();
            for r in rows {
                let (id, url, kind, body, created) = r.map_err(be)?;
                out.push(ContextRecord {
                    id,
                    url,
                    kind,
                    body: serde_json::from_str(&body).map_err(be)?,
                    created_at: time::parse(&created).ok_or_else(|| be("corrupt context timestamp"))?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn put_api_token(&self, t: &ApiTokenRecord) -> Result<()> {
        let (id, doc) = (t.id.clone(), serde_json::to_string(t).map_err(be)?);
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO api_tokens(id, doc) VALUES (?1, ?2)",
                params![id, doc],
            )
            .map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>> {
        let id = id.to_string();
        self.read(move |c| {
            let doc: Option<String> = c
                .query_row("SELECT doc FROM api_tokens WHERE id=?1", params![id], |r| r.get(0))
                .optional()
                .map_err(be)?;
            doc.map(|d| serde_json::from_str(&d).map_err(be)).transpose()
        })
        .await
    }

    async fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>> {
        self.read(move |c| {
            let mut st = c.prepare("SELECT doc FROM api_tokens ORDER BY id").map_err(be)?;
            let docs = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(be)?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(be)?;
            docs.iter().map(|d| serde_json::from_str(d).map_err(be)).collect()
        })
        .await
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<Vec<AuditRecord>> {
        self.write(move |c| {
            let tx = c.transaction().map_err(be)?;
            let mut out = Vec::with_capacity(entries.len());
            {
                // The chain's tail is read inside the writing transaction, so
                // two writers can never link to the same record.
                let mut prev: Option<(u64, String)> = tx
                    .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| {
                        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
                    })
                    .optional()
                    .map_err(be)?;
                let mut ins = tx
                    .prepare_cached("INSERT INTO audit_log(seq, doc, prev_hash, hash) VALUES (?1, ?2, ?3, ?4)")
                    .map_err(be)?;
                let mut sub = tx
                    .prepare_cached("INSERT OR IGNORE INTO audit_subjects(subject, seq) VALUES (?1, ?2)")
                    .map_err(be)?;
                for e in &entries {
                    let r = audit::link(prev.as_ref().map(|(s, h)| (*s, h.as_str())), e);
                    ins.execute(params![r.seq as i64, r.doc, r.prev_hash, r.hash])
                        .map_err(be)?;
                    for s in &e.subjects {
                        sub.execute(params![s, r.seq as i64]).map_err(be)?;
                    }
                    prev = Some((r.seq, r.hash.clone()));
                    out.push(r);
                }
            }
            tx.commit().map_err(be)?;
            Ok(out)
        })
        .await
    }

    async fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.read(move |c| {
            let mut st = c
                .prepare("SELECT seq, doc, prev_hash, hash FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")
                .map_err(be)?;
            let rows = st
                .query_map(params![after as i64, limit as i64], audit_row)
                .map_err(be)?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(be)?;
            Ok(rows)
        })
        .await
    }

    async fn audit_for_subject(&self, subject: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        let subject = subject.to_string();
        self.read(move |c| {
            let mut st = c
                .prepare(
                    "SELECT a.seq, a.doc, a.prev_hash, a.hash FROM audit_subjects s JOIN audit_log a ON a.seq = s.seq \
                     WHERE s.subject = ?1 ORDER BY s.seq DESC LIMIT ?2",
                )
                .map_err(be)?;
            let rows = st
                .query_map(params![subject, limit as i64], audit_row)
                .map_err(be)?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(be)?;
            Ok(rows)
        })
        .await
    }

    async fn put_context(&self, tenant: &str, ctx: &ContextRecord) -> Result<()> {
        let (t, ctx) = (tenant.to_string(), ctx.clone());
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO contexts(tenant, id, url, kind, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t, ctx.id, ctx.url, ctx.kind, ctx.body.to_string(), time::format(&ctx.created_at)],
            )
            .map_err(be)?;
            Ok(())
        })
        .await
    }

    async fn delete_context(&self, tenant: &str, id: &str) -> Result<bool> {
        let (t, id) = (tenant.to_string(), id.to_string());
        self.write(move |c| {
            Ok(
                c.execute("DELETE FROM contexts WHERE tenant=?1 AND id=?2", params![t, id])
                    .map_err(be)?
                    > 0,
            )
        })
        .await
    }

    /// Series by series: the table is clustered by series and observation
    /// time, so each series' old instances are one range of the B-tree and
    /// the next series is one seek away — no index on the time to keep up
    /// on every insert (one cost a quarter of the ingest rate).
    async fn prune_history(&self, before: time::Timestamp) -> Result<u64> {
        let cutoff = ms(&before);
        let mut total = 0u64;
        // (tenant, entity, attr) of the last series pruned; no series sorts before this.
        let mut last = (String::new(), String::new(), String::new());
        loop {
            let (deleted, reached, done) = self
                .write(move |c| {
                    let mut deleted = 0usize;
                    let mut cur = last;
                    for _ in 0..PRUNE_SERIES_PER_BATCH {
                        let next = c
                            .prepare_cached(
                                "SELECT tenant, entity_id, attr FROM history
                                 WHERE (tenant, entity_id, attr) > (?1, ?2, ?3)
                                 ORDER BY tenant, entity_id, attr LIMIT 1",
                            )
                            .and_then(|mut st| {
                                st.query_row(params![cur.0, cur.1, cur.2], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                                    .optional()
                            })
                            .map_err(be)?;
                        let Some(series) = next else {
                            return Ok((deleted, cur, true));
                        };
                        deleted += c
                            .prepare_cached(
                                "DELETE FROM history WHERE tenant=?1 AND entity_id=?2 AND attr=?3 AND observed_at < ?4",
                            )
                            .and_then(|mut st| st.execute(params![series.0, series.1, series.2, cutoff]))
                            .map_err(be)?;
                        cur = series;
                    }
                    Ok((deleted, cur, false))
                })
                .await?;
            total += deleted as u64;
            if done {
                return Ok(total);
            }
            last = reached;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_storage_story() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("story.db"), Durability::Normal).unwrap();
        citybrain_store::story::run(&s).await;
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("re.db");
        {
            let s = SqliteStore::open(&p, Durability::Full).unwrap();
            s.ensure_tenant("x").await.unwrap();
        }
        let s = SqliteStore::open_url(&format!("sqlite:{}", p.display())).unwrap();
        assert!(s.tenant_exists("x").await.unwrap());
    }

    /// The WAL file does not keep the size of the busiest moment: past its
    /// limit it is emptied (with only passive checkpoints it never shrinks,
    /// and under steady writes it grows without end).
    #[test]
    fn the_wal_file_is_emptied_past_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wal.db");
        let s = SqliteStore::open_with_wal_limit(&p, Durability::Normal, 1 << 20).unwrap();
        let wal = dir.path().join("wal.db-wal");
        {
            let w = s.inner.writer.lock().unwrap();
            w.execute_batch("CREATE TABLE filler(x BLOB);").unwrap();
            for _ in 0..40 {
                w.execute_batch("BEGIN; INSERT INTO filler SELECT randomblob(16384) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8); COMMIT;")
                    .unwrap();
            }
        }
        let grown = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let mut size = grown;
        for _ in 0..40 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            if size <= 1 << 20 {
                break;
            }
        }
        assert!(size <= 1 << 20, "WAL still {size} bytes (grew to {grown})");
        // Nothing written was lost.
        let n: i64 = s
            .inner
            .writer
            .lock()
            .unwrap()
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 320);
    }

    /// Pruning walks every series of every tenant, across its batches.
    #[tokio::test]
    async fn pruning_reaches_every_series_of_every_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("prune.db"), Durability::Normal).unwrap();
        let at = |t: &str| time::parse(t).unwrap();
        let instance = |attr: &str, t: &str| citybrain_ngsild::temporal::Instance {
            attr: attr.into(),
            instance_id: format!("urn:i:{attr}:{t}"),
            dataset_id: None,
            observed_at: Some(at(t)),
            created_at: at(t),
            modified_at: at(t),
            deleted_at: None,
            value: serde_json::Map::new(),
        };
        let series = PRUNE_SERIES_PER_BATCH + 25;
        for tenant in ["", "cityB"] {
            s.ensure_tenant(tenant).await.unwrap();
            let mut w = WriteSet::default();
            for k in 0..series {
                let id = format!("urn:ngsi-ld:Thing:{k}");
                for t in ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z", "2026-01-01T03:00:00Z"] {
                    w.history.push((id.clone(), instance("https://x/n", t)));
                }
            }
            s.commit(tenant, w).await.unwrap();
        }
        let pruned = s.prune_history(at("2026-01-01T02:00:00Z")).await.unwrap();
        assert_eq!(
            pruned as usize,
            2 * series * 2,
            "two old instances of every series in both tenants"
        );
        let n: i64 = s
            .inner
            .writer
            .lock()
            .unwrap()
            .query_row("SELECT count(*) FROM history", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n as usize, 2 * series, "the newest of each stays");
        assert_eq!(s.prune_history(at("2026-01-01T02:00:00Z")).await.unwrap(), 0);
    }

    #[test]
    fn url_errors_are_clear() {
        assert!(SqliteStore::open_url("postgres://x")
            .err()
            .unwrap()
            .to_string()
            .contains("not a sqlite"));
        assert!(SqliteStore::open_url("sqlite:")
            .err()
            .unwrap()
            .to_string()
            .contains("names no file"));
        assert!(SqliteStore::open_url("sqlite:x.db?foo=bar")
            .err()
            .unwrap()
            .to_string()
            .contains("unknown sqlite URL option"));
    }
}
