//! # citybrain-store-postgres — the PostgreSQL backend
//!
//! The hub's [`Store`] on PostgreSQL (`--db postgres://…`), through
//! `tokio-postgres` with a `deadpool` connection pool. Several citybrain
//! servers may share one database.
//!
//! Reads and queries are answered, as on SQLite, from a parsed in-memory
//! copy of each tenant's entities ([`citybrain_store::cache`]); what makes
//! it safe with several servers is how the copy is kept up:
//!
//! - every entity change takes the next number of the `entity_seq`
//!   sequence, and a deletion leaves a tombstone row, so "what changed
//!   since number N" is one indexed query;
//! - writers of a tenant take a transaction-scoped advisory lock, so the
//!   numbers of one tenant commit in order and a reader that has seen
//!   number N has seen every number below it;
//! - before each read the copy reads the rows numbered above the last it
//!   saw (one round trip when nothing changed): a read on any server sees
//!   every write any server had committed when the read began;
//! - a write checks the stored version in SQL (`WHERE version = $n`), never
//!   the copy, so two servers can never both win a race.
//!
//! Migrations are applied on open, under an advisory lock (servers
//! starting together migrate once); `citybrain migrate` applies them alone.
//! `?schema=NAME` in the URL keeps everything in that schema (created if
//! missing), so several citybrains can share one database.
//!
//! What it does **not** do yet: evaluate queries in SQL (the copy holds a
//! tenant in memory on every server, a few KB per entity), PostGIS (geo
//! queries are evaluated on the copy, exactly as on SQLite), or share the
//! notification outbox's deliveries between servers.

#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
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
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

/// The schema, in order; `citybrain_migrations` records what was applied.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../migrations/0001_init.sql"))];
/// The advisory lock migrations run under (any constant no one else uses).
const MIGRATION_LOCK: i64 = 0x6369_7479_6272_6e01;
/// The advisory lock the audit chain is appended under.
const AUDIT_LOCK: i64 = 0x6369_7479_6272_6e02;
/// Connections per server.
const POOL_SIZE: usize = 16;

fn be(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A PostgreSQL error, told apart where the client can act on it.
fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // 53100 disk_full, 53200 out_of_memory, 53300 too_many_connections.
        if code == "53100" {
            return StoreError::Full(format!("PostgreSQL: {}; nothing was written", db.message()));
        }
        if code.starts_with("53") || code == "40001" || code == "40P01" || code == "55P03" {
            return StoreError::Busy(format!(
                "PostgreSQL is busy ({}: {}); nothing was written, retry later",
                code,
                db.message()
            ));
        }
        return StoreError::Backend(format!("PostgreSQL {}: {}", code, db.message()));
    }
    StoreError::Backend(format!("PostgreSQL: {e}"))
}

/// Takes citybrain's own `schema=NAME` option out of the URL (libpq has no
/// such option): several citybrains, or tests, may share one database, each
/// in its schema.
fn split_schema(url: &str) -> Result<(String, Option<String>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut schema = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", name)) => {
                let ok = name.len() <= 63
                    && name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !ok {
                    return Err(be(format!(
                        "schema={name}: lower-case letters, digits and '_', starting with a letter, at most 63"
                    )));
                }
                schema = Some(name.to_string());
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, schema))
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Busy(format!("no connection to PostgreSQL: {e}"))
}

/// One tenant's copy and how far it has read the change numbers.
#[derive(Default)]
struct Replica {
    cache: TenantCache,
    seen: i64,
}

struct Tenant {
    copy: RwLock<Replica>,
    /// One writer of this tenant at a time in this server (the advisory
    /// lock orders them across servers).
    writer: tokio::sync::Mutex<()>,
    loaded: tokio::sync::OnceCell<()>,
    /// The tenants row is known to exist (written by a commit of ours).
    registered: std::sync::atomic::AtomicBool,
}

struct Inner {
    pool: Pool,
    /// The schema of `?schema=` (created if missing), else the server's search path.
    schema: Option<String>,
    tenants: Mutex<HashMap<String, Arc<Tenant>>>,
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

fn parse_entity(doc: &str) -> Result<Entity> {
    serde_json::from_str(doc).map_err(|e| be(format!("corrupt entity document: {e}")))
}

fn ms(t: &time::Timestamp) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: i64) -> Result<time::Timestamp> {
    chrono::DateTime::from_timestamp_millis(v).ok_or_else(|| be(format!("corrupt history time {v}")))
}

fn time_column(p: TimeProperty) -> &'static str {
    match p {
        TimeProperty::ObservedAt => "observed_at",
        TimeProperty::CreatedAt => "created_at",
        TimeProperty::ModifiedAt => "modified_at",
        TimeProperty::DeletedAt => "deleted_at",
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// The WHERE clause of one attribute's history, its parameters from $1.
fn history_where(tenant: &str, q: &HistoryQuery, attr: &str) -> (String, Vec<Param>) {
    let col = time_column(q.timeproperty);
    let mut args: Vec<Param> = vec![
        Box::new(tenant.to_string()),
        Box::new(q.entity_id.clone()),
        Box::new(attr.to_string()),
    ];
    let mut sql = String::from("tenant=$1 AND entity_id=$2 AND attr=$3");
    if let Some(f) = q.from {
        args.push(Box::new(ms(&f)));
        sql.push_str(&format!(" AND {col}>=${}", args.len()));
    }
    if let Some(t) = q.to {
        args.push(Box::new(ms(&t)));
        sql.push_str(&format!(" AND {col}<${}", args.len()));
    }
    if q.timeproperty == TimeProperty::DeletedAt {
        sql.push_str(" AND deleted_at IS NOT NULL");
    }
    (sql, args)
}

fn refs(args: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect()
}

fn instance_of_row(r: &Row) -> Result<Instance> {
    let doc: String = r.get(6);
    let value: citybrain_ngsild::Attr =
        serde_json::from_str(&doc).map_err(|e| be(format!("corrupt history row: {e}")))?;
    let observed_at = value.get("observedAt").and_then(|v| v.as_str()).and_then(time::parse);
    Ok(Instance {
        attr: r.get(0),
        instance_id: r.get(1),
        dataset_id: r.get(2),
        observed_at,
        created_at: from_ms(r.get(3))?,
        modified_at: from_ms(r.get(4))?,
        deleted_at: r.get::<_, Option<i64>>(5).map(from_ms).transpose()?,
        value,
    })
}

fn audit_row(r: &Row) -> AuditRecord {
    AuditRecord {
        seq: r.get::<_, i64>(0) as u64,
        doc: r.get(1),
        prev_hash: r.get(2),
        hash: r.get(3),
    }
}

/// Entity rows read from the change numbers: (id, version, document or None when deleted, seq).
type Change = (String, u64, Option<Arc<Entity>>, i64);

fn changes_of(rows: Vec<Row>) -> Result<Vec<Change>> {
    rows.iter()
        .map(|r| {
            let deleted: bool = r.get(2);
            let doc: Option<String> = r.get(3);
            let entity = match (deleted, doc) {
                (false, Some(d)) => Some(Arc::new(parse_entity(&d)?)),
                _ => None,
            };
            Ok((r.get(0), r.get::<_, i64>(1) as u64, entity, r.get(4)))
        })
        .collect()
}

fn apply(copy: &mut Replica, changes: Vec<Change>) {
    for (id, version, entity, seq) in changes {
        if seq <= copy.seen {
            continue;
        }
        match entity {
            Some(e) => copy.cache.put(e, version),
            None => copy.cache.remove(&id),
        }
        copy.seen = seq;
    }
}

const CHANGES: &str = "SELECT id, version, deleted, doc, seq FROM entities WHERE tenant=$1 AND seq>$2 ORDER BY seq";

impl PostgresStore {
    /// Connects (`postgres://user@host:port/db?options`, as libpq reads it)
    /// and applies the migrations the database lacks.
    pub async fn connect(url: &str) -> Result<Self> {
        let store = Self::connect_unmigrated(url)?;
        store.migrate().await?;
        Ok(store)
    }

    fn connect_unmigrated(url: &str) -> Result<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(be(format!(
                "'{url}' is not a postgres:// URL (like postgres://citybrain@127.0.0.1:5432/citybrain)"
            )));
        }
        let (url, schema) = split_schema(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| be(format!("the PostgreSQL URL '{url}': {e}")))?;
        if let Some(s) = &schema {
            let options = config.get_options().map(str::to_string).unwrap_or_default();
            config.options(format!("{options} -csearch_path={s}").trim());
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(be)?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                schema,
                tenants: Mutex::new(HashMap::new()),
            }),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(pool_err)
    }

    /// Applies the migrations the database lacks, one transaction each;
    /// returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i32>> {
        let mut c = self.client().await?;
        if let Some(s) = &self.inner.schema {
            // A valid identifier (split_schema), so it can be written in.
            c.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
                .await
                .map_err(pg)?;
        }
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS citybrain_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .map_err(pg)?;
        c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        let result = async {
            let mut applied = Vec::new();
            for (version, sql) in MIGRATIONS {
                let done = c
                    .query_opt("SELECT 1 FROM citybrain_migrations WHERE version=$1", &[version])
                    .await
                    .map_err(pg)?
                    .is_some();
                if done {
                    continue;
                }
                let tx = c.transaction().await.map_err(pg)?;
                tx.batch_execute(sql)
                    .await
                    .map_err(|e| be(format!("migration {version} failed: {}", pg(e))))?;
                tx.execute("INSERT INTO citybrain_migrations(version) VALUES ($1)", &[version])
                    .await
                    .map_err(pg)?;
                tx.commit().await.map_err(pg)?;
                applied.push(*version);
            }
            Ok(applied)
        }
        .await;
        c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        result
    }

    fn tenant(&self, name: &str) -> Arc<Tenant> {
        let mut t = self.inner.tenants.lock().unwrap_or_else(|p| p.into_inner());
        t.entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Tenant {
                    copy: RwLock::new(Replica::default()),
                    writer: tokio::sync::Mutex::new(()),
                    loaded: tokio::sync::OnceCell::new(),
                    registered: std::sync::atomic::AtomicBool::new(false),
                })
            })
            .clone()
    }

    /// The tenant's copy, brought up to every change committed so far.
    async fn synced(&self, name: &str) -> Result<Arc<Tenant>> {
        let t = self.tenant(name);
        let c = self.client().await?;
        t.loaded
            .get_or_try_init(|| async {
                // One statement, one snapshot: the live rows and the highest number.
                let rows = c
                    .query(
                        "SELECT id, version, deleted, doc, seq FROM entities WHERE tenant=$1 AND NOT deleted \
                         UNION ALL SELECT '', 0, true, NULL, coalesce(max(seq), 0) FROM entities WHERE tenant=$1",
                        &[&name],
                    )
                    .await
                    .map_err(pg)?;
                let mut copy = Replica::default();
                let mut top = 0;
                for (id, version, entity, seq) in changes_of(rows)? {
                    match entity {
                        Some(e) => copy.cache.put(e, version),
                        None if id.is_empty() => top = seq,
                        None => {}
                    }
                }
                copy.seen = top;
                *t.copy.write().map_err(be)? = copy;
                Ok::<(), StoreError>(())
            })
            .await?;
        self.catch_up(&t, name, &c).await?;
        Ok(t)
    }

    async fn catch_up(&self, t: &Tenant, name: &str, c: &deadpool_postgres::Client) -> Result<()> {
        let seen = t.copy.read().map_err(be)?.seen;
        let st = c.prepare_cached(CHANGES).await.map_err(pg)?;
        let rows = c.query(&st, &[&name, &seen]).await.map_err(pg)?;
        if rows.is_empty() {
            return Ok(());
        }
        let changes = changes_of(rows)?;
        apply(&mut *t.copy.write().map_err(be)?, changes);
        Ok(())
    }

    /// Runs `f` on the synced copy, off the async runtime (a scan is CPU work).
    async fn with_copy<T: Send + 'static>(
        &self,
        tenant: &str,
        f: impl FnOnce(&TenantCache) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let t = self.synced(tenant).await?;
        tokio::task::spawn_blocking(move || {
            let copy = t.copy.read().map_err(be)?;
            f(&copy.cache)
        })
        .await
        .map_err(be)?
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn tenant_exists(&self, tenant: &str) -> Result<bool> {
        let c = self.client().await?;
        Ok(c.query_opt("SELECT 1 FROM tenants WHERE name=$1", &[&tenant])
            .await
            .map_err(pg)?
            .is_some())
    }

    async fn ensure_tenant(&self, tenant: &str) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO tenants(name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&tenant, &time::format(&chrono::Utc::now())],
        )
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn tenants(&self) -> Result<Vec<String>> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT name FROM tenants ORDER BY name", &[])
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn get(&self, tenant: &str, ids: &[String]) -> Result<Vec<Stored>> {
        let ids = ids.to_vec();
        self.with_copy(tenant, move |c| Ok(c.get(&ids))).await
    }

    async fn query(&self, tenant: &str, q: &EntityQuery, page: Page) -> Result<QueryResult> {
        let q = q.clone();
        self.with_copy(tenant, move |c| Ok(c.query(&q, page))).await
    }

    async fn commit(&self, tenant: &str, w: WriteSet) -> Result<Vec<i64>> {
        let t = self.synced(tenant).await?;
        let _one_writer = t.writer.lock().await;
        let mut c = self.client().await?;
        // Documents serialised before the transaction: it holds the tenant's lock.
        let docs: Vec<String> = w
            .puts
            .iter()
            .map(|p| serde_json::to_string(&p.entity).map_err(be))
            .collect::<Result<_>>()?;
        let history_docs: Vec<String> = w
            .history
            .iter()
            .map(|(_, i)| serde_json::to_string(&i.value).map_err(be))
            .collect::<Result<_>>()?;
        let tx = c.transaction().await.map_err(pg)?;
        if !t.registered.load(std::sync::atomic::Ordering::Relaxed) {
            tx.execute(
                "INSERT INTO tenants(name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&tenant, &time::format(&chrono::Utc::now())],
            )
            .await
            .map_err(pg)?;
        }
        let lock = tx
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtext($1))")
            .await
            .map_err(pg)?;
        tx.execute(&lock, &[&format!("citybrain entities {tenant}")])
            .await
            .map_err(pg)?;
        // Under the lock: what other servers committed comes first.
        let seen = t.copy.read().map_err(be)?.seen;
        let changes = tx.prepare_cached(CHANGES).await.map_err(pg)?;
        let rows = tx.query(&changes, &[&tenant, &seen]).await.map_err(pg)?;
        let theirs = changes_of(rows)?;
        apply(&mut *t.copy.write().map_err(be)?, theirs);

        // Each kind of change in one statement over arrays: the lock is held
        // for a few round trips, not one per row.
        let mut mine: Vec<i64> = Vec::with_capacity(w.puts.len() + w.deletes.len());
        let (mut new_ids, mut new_docs) = (Vec::new(), Vec::new());
        let (mut upd_ids, mut upd_docs, mut upd_versions) = (Vec::new(), Vec::new(), Vec::new());
        for (put, doc) in w.puts.iter().zip(&docs) {
            match put.expected_version {
                None => {
                    new_ids.push(put.entity.id.as_str());
                    new_docs.push(doc.as_str());
                }
                Some(v) => {
                    upd_ids.push(put.entity.id.as_str());
                    upd_docs.push(doc.as_str());
                    upd_versions.push(v as i64);
                }
            }
        }
        // Which of `wanted` the statement did not touch: the first is the conflict.
        fn missing(wanted: &[&str], rows: &[Row]) -> Option<String> {
            let got: BTreeSet<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
            wanted.iter().find(|id| !got.contains(**id)).map(|id| id.to_string())
        }
        if !new_ids.is_empty() {
            let st = tx
                .prepare_cached(
                    "INSERT INTO entities(tenant, id, version, seq, deleted, doc) \
                     SELECT $1, u.id, 1, nextval('entity_seq'), false, u.doc FROM unnest($2::text[], $3::text[]) AS u(id, doc) \
                     ON CONFLICT (tenant, id) DO UPDATE SET version=1, seq=EXCLUDED.seq, deleted=false, doc=EXCLUDED.doc \
                     WHERE entities.deleted RETURNING id, seq",
                )
                .await
                .map_err(pg)?;
            let rows = tx.query(&st, &[&tenant, &new_ids, &new_docs]).await.map_err(pg)?;
            if let Some(id) = missing(&new_ids, &rows) {
                return Err(StoreError::Conflict(id));
            }
            mine.extend(rows.iter().map(|r| r.get::<_, i64>(1)));
        }
        if !upd_ids.is_empty() {
            let st = tx
                .prepare_cached(
                    "UPDATE entities AS e SET version=e.version+1, seq=nextval('entity_seq'), doc=u.doc \
                     FROM unnest($2::text[], $3::text[], $4::int8[]) AS u(id, doc, v) \
                     WHERE e.tenant=$1 AND e.id=u.id AND e.version=u.v AND NOT e.deleted RETURNING e.id, e.seq",
                )
                .await
                .map_err(pg)?;
            let rows = tx
                .query(&st, &[&tenant, &upd_ids, &upd_docs, &upd_versions])
                .await
                .map_err(pg)?;
            if let Some(id) = missing(&upd_ids, &rows) {
                return Err(StoreError::Conflict(id));
            }
            mine.extend(rows.iter().map(|r| r.get::<_, i64>(1)));
        }
        if !w.deletes.is_empty() {
            let ids: Vec<&str> = w.deletes.iter().map(|(id, _)| id.as_str()).collect();
            let versions: Vec<i64> = w.deletes.iter().map(|(_, v)| *v as i64).collect();
            let st = tx
                .prepare_cached(
                    "UPDATE entities AS e SET version=e.version+1, seq=nextval('entity_seq'), deleted=true, doc=NULL \
                     FROM unnest($2::text[], $3::int8[]) AS u(id, v) \
                     WHERE e.tenant=$1 AND e.id=u.id AND e.version=u.v AND NOT e.deleted RETURNING e.id, e.seq",
                )
                .await
                .map_err(pg)?;
            let rows = tx.query(&st, &[&tenant, &ids, &versions]).await.map_err(pg)?;
            if let Some(id) = missing(&ids, &rows) {
                return Err(StoreError::Conflict(id));
            }
            mine.extend(rows.iter().map(|r| r.get::<_, i64>(1)));
        }
        for hd in &w.history_deletes {
            match hd {
                HistoryDelete::Entity(id) => {
                    tx.execute("DELETE FROM history WHERE tenant=$1 AND entity_id=$2", &[&tenant, id])
                        .await
                        .map_err(pg)?;
                }
                HistoryDelete::Attribute {
                    entity_id,
                    attr,
                    dataset_id,
                } => match dataset_id {
                    None => {
                        tx.execute(
                            "DELETE FROM history WHERE tenant=$1 AND entity_id=$2 AND attr=$3",
                            &[&tenant, entity_id, attr],
                        )
                        .await
                        .map_err(pg)?;
                    }
                    Some(ds) => {
                        tx.execute(
                            "DELETE FROM history WHERE tenant=$1 AND entity_id=$2 AND attr=$3 AND dataset_id IS NOT DISTINCT FROM $4",
                            &[&tenant, entity_id, attr, ds],
                        )
                        .await
                        .map_err(pg)?;
                    }
                },
                HistoryDelete::Instance {
                    entity_id,
                    attr,
                    instance_id,
                } => {
                    tx.execute(
                        "DELETE FROM history WHERE tenant=$1 AND entity_id=$2 AND attr=$3 AND instance_id=$4",
                        &[&tenant, entity_id, attr, instance_id],
                    )
                    .await
                    .map_err(pg)?;
                }
            }
        }
        if !w.history.is_empty() {
            let h = &w.history;
            let eids: Vec<&str> = h.iter().map(|(e, _)| e.as_str()).collect();
            let attrs: Vec<&str> = h.iter().map(|(_, i)| i.attr.as_str()).collect();
            let iids: Vec<&str> = h.iter().map(|(_, i)| i.instance_id.as_str()).collect();
            let dsids: Vec<Option<&str>> = h.iter().map(|(_, i)| i.dataset_id.as_deref()).collect();
            let observed: Vec<i64> = h
                .iter()
                .map(|(_, i)| ms(&i.observed_at.unwrap_or(i.modified_at)))
                .collect();
            let created: Vec<i64> = h.iter().map(|(_, i)| ms(&i.created_at)).collect();
            let modified: Vec<i64> = h.iter().map(|(_, i)| ms(&i.modified_at)).collect();
            let deleted: Vec<Option<i64>> = h.iter().map(|(_, i)| i.deleted_at.as_ref().map(ms)).collect();
            let hdocs: Vec<&str> = history_docs.iter().map(String::as_str).collect();
            let st = tx
                .prepare_cached(
                    "INSERT INTO history(tenant, entity_id, attr, instance_id, dataset_id, observed_at, created_at, modified_at, deleted_at, doc) \
                     SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::text[]) \
                     AS u(entity_id, attr, instance_id, dataset_id, observed_at, created_at, modified_at, deleted_at, doc)",
                )
                .await
                .map_err(pg)?;
            tx.execute(
                &st,
                &[
                    &tenant, &eids, &attrs, &iids, &dsids, &observed, &created, &modified, &deleted, &hdocs,
                ],
            )
            .await
            .map_err(pg)?;
        }
        let mut seqs: Vec<i64> = Vec::with_capacity(w.outbox.len());
        if !w.outbox.is_empty() {
            // The numbers first, then the rows with them: the caller gets
            // them in the order of `w.outbox`, whatever order RETURNING has.
            let rows = tx
                .query(
                    "SELECT nextval('outbox_seq_seq') FROM generate_series(1, $1::int)",
                    &[&(w.outbox.len() as i32)],
                )
                .await
                .map_err(pg)?;
            seqs = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
            seqs.sort_unstable();
            let subs: Vec<&str> = w.outbox.iter().map(|(s, _)| s.as_str()).collect();
            let payloads: Vec<&str> = w.outbox.iter().map(|(_, p)| p.as_str()).collect();
            let st = tx
                .prepare_cached(
                    "INSERT INTO outbox(seq, tenant, subscription_id, payload) \
                     SELECT u.seq, $1, u.sub, u.payload FROM unnest($2::int8[], $3::text[], $4::text[]) AS u(seq, sub, payload)",
                )
                .await
                .map_err(pg)?;
            tx.execute(&st, &[&tenant, &seqs, &subs, &payloads]).await.map_err(pg)?;
        }
        tx.commit().await.map_err(pg)?;
        t.registered.store(true, std::sync::atomic::Ordering::Relaxed);
        // Durable now: into the copy, and the highest number our rows took
        // (no other writer of this tenant ran in between: the lock).
        let mut copy = t.copy.write().map_err(be)?;
        for put in w.puts {
            let v = put.expected_version.map(|v| v + 1).unwrap_or(1);
            copy.cache.put(Arc::new(put.entity), v);
        }
        for (id, _) in &w.deletes {
            copy.cache.remove(id);
        }
        if let Some(top) = mine.iter().max() {
            copy.seen = copy.seen.max(*top);
        }
        Ok(seqs)
    }

    async fn types(&self, tenant: &str) -> Result<Vec<TypeInfo>> {
        self.with_copy(tenant, |c| Ok(c.types())).await
    }

    async fn history(&self, tenant: &str, q: &HistoryQuery) -> Result<Vec<Instance>> {
        let c = self.client().await?;
        let attrs = match &q.attrs {
            Some(a) => a.clone(),
            None => attrs_of(&c, tenant, &q.entity_id).await?,
        };
        let col = time_column(q.timeproperty);
        let mut out = Vec::new();
        for a in attrs {
            let (cond, args) = history_where(tenant, q, &a);
            let (order, limit) = match q.last_n {
                Some(n) => ("DESC", n.min(q.limit)),
                None => ("ASC", q.limit),
            };
            let sql = format!(
                "SELECT attr, instance_id, dataset_id, created_at, modified_at, deleted_at, doc FROM history \
                 WHERE {cond} ORDER BY {col} {order}, instance_id {order} LIMIT {limit}"
            );
            let rows = c.query(sql.as_str(), &refs(&args)).await.map_err(pg)?;
            let mut list = rows.iter().map(instance_of_row).collect::<Result<Vec<_>>>()?;
            if q.last_n.is_some() {
                list.reverse();
            }
            out.extend(list);
        }
        Ok(out)
    }

    async fn history_count(&self, tenant: &str, q: &HistoryQuery) -> Result<usize> {
        let c = self.client().await?;
        let attrs = match &q.attrs {
            Some(a) => a.clone(),
            None => attrs_of(&c, tenant, &q.entity_id).await?,
        };
        let mut max = 0usize;
        for a in attrs {
            let (cond, args) = history_where(tenant, q, &a);
            let row = c
                .query_one(
                    format!("SELECT COUNT(*) FROM history WHERE {cond}").as_str(),
                    &refs(&args),
                )
                .await
                .map_err(pg)?;
            max = max.max(row.get::<_, i64>(0) as usize);
        }
        Ok(max)
    }

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT tenant, id, doc FROM subscriptions ORDER BY tenant, id", &[])
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                let (tenant, id, doc): (String, String, String) = (r.get(0), r.get(1), r.get(2));
                let doc = serde_json::from_str(&doc).map_err(|e| be(format!("corrupt subscription {id}: {e}")))?;
                Ok(SubscriptionRecord { tenant, id, doc })
            })
            .collect()
    }

    async fn put_subscription(&self, s: &SubscriptionRecord) -> Result<()> {
        let doc = serde_json::to_string(&s.doc).map_err(be)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        tx.execute(
            "INSERT INTO tenants(name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&s.tenant, &time::format(&chrono::Utc::now())],
        )
        .await
        .map_err(pg)?;
        tx.execute(
            "INSERT INTO subscriptions(tenant, id, doc) VALUES ($1, $2, $3) ON CONFLICT (tenant, id) DO UPDATE SET doc=EXCLUDED.doc",
            &[&s.tenant, &s.id, &doc],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)
    }

    async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        let n = tx
            .execute("DELETE FROM subscriptions WHERE tenant=$1 AND id=$2", &[&tenant, &id])
            .await
            .map_err(pg)?;
        tx.execute(
            "DELETE FROM outbox WHERE tenant=$1 AND subscription_id=$2",
            &[&tenant, &id],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        Ok(n > 0)
    }

    async fn pending_notifications(&self, limit: usize) -> Result<Vec<OutboxItem>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT seq, tenant, subscription_id, payload, attempts, next_attempt_ms FROM outbox ORDER BY seq LIMIT $1",
                &[&(limit as i64)],
            )
            .await
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| OutboxItem {
                seq: r.get(0),
                tenant: r.get(1),
                subscription_id: r.get(2),
                payload: r.get(3),
                attempts: r.get::<_, i32>(4) as u32,
                next_attempt_ms: r.get(5),
            })
            .collect())
    }

    async fn ack_notifications(&self, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let c = self.client().await?;
        c.execute("DELETE FROM outbox WHERE seq = ANY($1)", &[&seqs])
            .await
            .map_err(pg)?;
        Ok(())
    }

    async fn retry_notification(&self, seq: i64, attempts: u32, next_attempt_ms: i64) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE outbox SET attempts=$2, next_attempt_ms=$3 WHERE seq=$1",
            &[&seq, &(attempts as i32), &next_attempt_ms],
        )
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn contexts(&self, tenant: &str) -> Result<Vec<ContextRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, url, kind, body, created_at FROM contexts WHERE tenant=$1 ORDER BY id",
                &[&tenant],
            )
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| {
                let body: String = r.get(3);
                let created: String = r.get(4);
                Ok(ContextRecord {
                    id: r.get(0),
                    url: r.get(1),
                    kind: r.get(2),
                    body: serde_json::from_str(&body).map_err(be)?,
                    created_at: time::parse(&created).ok_or_else(|| be("corrupt context timestamp"))?,
                })
            })
            .collect()
    }

    async fn put_context(&self, tenant: &str, ctx: &ContextRecord) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO contexts(tenant, id, url, kind, body, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant, id) DO UPDATE SET url=EXCLUDED.url, kind=EXCLUDED.kind, body=EXCLUDED.body, created_at=EXCLUDED.created_at",
            &[&tenant, &ctx.id, &ctx.url, &ctx.kind, &ctx.body.to_string(), &time::format(&ctx.created_at)],
        )
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn delete_context(&self, tenant: &str, id: &str) -> Result<bool> {
        let c = self.client().await?;
        Ok(
            c.execute("DELETE FROM contexts WHERE tenant=$1 AND id=$2", &[&tenant, &id])
                .await
                .map_err(pg)?
                > 0,
        )
    }

    /// One statement: PostgreSQL's MVCC lets writes go on beside it.
    async fn prune_history(&self, before: time::Timestamp) -> Result<u64> {
        let c = self.client().await?;
        c.execute("DELETE FROM history WHERE observed_at < $1", &[&ms(&before)])
            .await
            .map_err(pg)
    }

    async fn put_api_token(&self, t: &ApiTokenRecord) -> Result<()> {
        let doc = serde_json::to_string(t).map_err(be)?;
        let c = self.client().await?;
        c.execute(
            "INSERT INTO api_tokens(id, doc) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET doc=EXCLUDED.doc",
            &[&t.id, &doc],
        )
        .await
        .map_err(pg)?;
        Ok(())
    }

    async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>> {
        let c = self.client().await?;
        let row = c
            .query_opt("SELECT doc FROM api_tokens WHERE id=$1", &[&id])
            .await
            .map_err(pg)?;
        row.map(|r| serde_json::from_str(&r.get::<_, String>(0)).map_err(be))
            .transpose()
    }

    async fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT doc FROM api_tokens ORDER BY id", &[])
            .await
            .map_err(pg)?;
        rows.iter()
            .map(|r| serde_json::from_str(&r.get::<_, String>(0)).map_err(be))
            .collect()
    }

    async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<Vec<AuditRecord>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg)?;
        // Servers append one at a time, so no two link to the same record.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
            .await
            .map_err(pg)?;
        let mut prev: Option<(u64, String)> = tx
            .query_opt("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", &[])
            .await
            .map_err(pg)?
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)));
        let ins = tx
            .prepare("INSERT INTO audit_log(seq, doc, prev_hash, hash) VALUES ($1, $2, $3, $4)")
            .await
            .map_err(pg)?;
        let sub = tx
            .prepare("INSERT INTO audit_subjects(subject, seq) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .await
            .map_err(pg)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in &entries {
            let r = audit::link(prev.as_ref().map(|(s, h)| (*s, h.as_str())), e);
            tx.execute(&ins, &[&(r.seq as i64), &r.doc, &r.prev_hash, &r.hash])
                .await
                .map_err(pg)?;
            for s in &e.subjects {
                tx.execute(&sub, &[s, &(r.seq as i64)]).await.map_err(pg)?;
            }
            prev = Some((r.seq, r.hash.clone()));
            out.push(r);
        }
        tx.commit().await.map_err(pg)?;
        Ok(out)
    }

    async fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT seq, doc, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&(after as i64), &(limit as i64)],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(audit_row).collect())
    }

    async fn audit_for_subject(&self, subject: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT a.seq, a.doc, a.prev_hash, a.hash FROM audit_subjects s JOIN audit_log a ON a.seq = s.seq \
                 WHERE s.subject = $1 ORDER BY s.seq DESC LIMIT $2",
                &[&subject, &(limit as i64)],
            )
            .await
            .map_err(pg)?;
        Ok(rows.iter().map(audit_row).collect())
    }
}

async fn attrs_of(c: &tokio_postgres::Client, tenant: &str, entity_id: &str) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT DISTINCT attr FROM history WHERE tenant=$1 AND entity_id=$2 ORDER BY attr",
            &[&tenant, &entity_id],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_errors_are_clear() {
        let e = PostgresStore::connect_unmigrated("sqlite:x.db")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a postgres:// URL"), "{e}");
        let e = PostgresStore::connect_unmigrated("postgres://x:notaport/db")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("PostgreSQL URL"), "{e}");
        let e = PostgresStore::connect_unmigrated("postgres://h/db?schema=Bad-Name")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("schema=Bad-Name"), "{e}");
    }

    #[test]
    fn the_schema_option_is_taken_out_of_the_url() {
        let (u, s) = split_schema("postgres://u@h:5432/db?schema=city_2&connect_timeout=5").unwrap();
        assert_eq!(u, "postgres://u@h:5432/db?connect_timeout=5");
        assert_eq!(s.as_deref(), Some("city_2"));
        let (u, s) = split_schema("postgres://u@h/db").unwrap();
        assert_eq!((u.as_str(), s), ("postgres://u@h/db", None));
    }
}
