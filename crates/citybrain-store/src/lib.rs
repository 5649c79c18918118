//! # citybrain-store — what the hub needs from a database
//!
//! One async trait, [`Store`], that every backend implements (SQLite now,
//! PostgreSQL next), and [`story`], the behavioural test every backend must
//! pass unchanged. The hub never speaks SQL; a backend never decides NGSI-LD
//! semantics — it stores expanded entities, history instances, subscriptions,
//! the notification outbox and @contexts, each keyed by tenant.
//!
//! **Architecture Invariant:** one [`WriteSet`] is applied atomically: the
//! entity rows, their history, and the notifications they cause land together
//! or not at all, so a 2xx answer means the change and its notifications are
//! durable. Entities carry a `version`; a write names the version it read, and
//! a backend refuses it with [`StoreError::Conflict`] if another writer got
//! there first (several servers can share one database).
//!
//! ## Helpful terminology
//! - **tenant**: an isolated namespace (`NGSILD-Tenant`); `""` is the default.
//! - **outbox**: notifications waiting for delivery, keyed by a growing `seq`.

#![forbid(unsafe_code)]

pub mod audit;
pub mod cache;
pub mod story;

use async_trait::async_trait;
use citybrain_ngsild::selector::EntityQuery;
use citybrain_ngsild::temporal::{Instance, TimeProperty};
use citybrain_ngsild::time::Timestamp;
use citybrain_ngsild::Entity;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("concurrent modification of {0}")]
    Conflict(String),
    #[error("storage failure: {0}")]
    Backend(String),
    /// Another process holds the database's lock; nothing was written.
    #[error("{0}")]
    Busy(String),
    /// No room left (disk full, or the database's size limit); nothing was written.
    #[error("{0}")]
    Full(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An entity with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub entity: Entity,
    pub version: u64,
}

/// Write (insert or replace) one entity. `expected_version` None means the
/// entity must not exist yet.
#[derive(Debug, Clone)]
pub struct EntityPut {
    pub entity: Entity,
    pub expected_version: Option<u64>,
}

/// Which history to drop.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryDelete {
    Entity(String),
    Attribute {
        entity_id: String,
        attr: String,
        dataset_id: Option<Option<String>>,
    },
    Instance {
        entity_id: String,
        attr: String,
        instance_id: String,
    },
}

/// One notification to deliver later.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub seq: i64,
    pub tenant: String,
    pub subscription_id: String,
    pub payload: String,
    pub attempts: u32,
    pub next_attempt_ms: i64,
}

/// Everything one request changes, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct WriteSet {
    pub puts: Vec<EntityPut>,
    /// (entity id, expected version)
    pub deletes: Vec<(String, u64)>,
    pub history: Vec<(String, Instance)>,
    pub history_deletes: Vec<HistoryDelete>,
    /// (subscription id, JSON payload)
    pub outbox: Vec<(String, String)>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty()
            && self.deletes.is_empty()
            && self.history.is_empty()
            && self.history_deletes.is_empty()
            && self.outbox.is_empty()
    }
}

/// A page of query results.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
    /// Also count every match (costs a full scan of the candidates).
    pub count: bool,
}

#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    pub entities: Vec<Entity>,
    pub total: Option<usize>,
}

/// History selection for one entity.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub entity_id: String,
    /// Expanded names; None for all.
    pub attrs: Option<Vec<String>>,
    pub timeproperty: TimeProperty,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Keep only the last N per attribute (newest), else the first `limit`.
    pub last_n: Option<usize>,
    /// At most this many instances per attribute.
    pub limit: usize,
}

/// Per-type facts for `/types` and `/attributes`.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeInfo {
    pub type_iri: String,
    pub entity_count: usize,
    /// (expanded attribute name, attribute kinds seen)
    pub attrs: Vec<(String, Vec<String>)>,
}

/// A stored subscription document and its tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub tenant: String,
    pub id: String,
    pub doc: Map<String, Value>,
}

/// A user @context stored by the hub (`/jsonldContexts`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContextRecord {
    pub id: String,
    pub url: String,
    /// Hosted (added by a client) or Cached (fetched from its URL).
    pub kind: String,
    pub body: Value,
    pub created_at: Timestamp,
}

/// An API token as stored: never the secret itself, only its memory-hard hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApiTokenRecord {
    pub id: String,
    /// PHC string of the secret's Argon2id hash.
    pub secret_hash: String,
    pub role: String,
    #[serde(default)]
    pub departments: Vec<String>,
    /// The person or enterprise a citizen/enterprise token acts for.
    #[serde(default)]
    pub subject: Option<String>,
    /// Tenants it may use (empty: the default tenant only; "*": all).
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub label: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Short name of the backend, for logs and `/health`.
    fn backend(&self) -> &'static str;

    async fn tenant_exists(&self, tenant: &str) -> Result<bool>;
    /// Creates the tenant if missing (a create operation makes it implicitly).
    async fn ensure_tenant(&self, tenant: &str) -> Result<()>;
    async fn tenants(&self) -> Result<Vec<String>>;

    async fn get(&self, tenant: &str, ids: &[String]) -> Result<Vec<Stored>>;
    async fn query(&self, tenant: &str, q: &EntityQuery, page: Page) -> Result<QueryResult>;
    /// Applies one write set atomically; returns the outbox seqs it created, in order.
    async fn commit(&self, tenant: &str, w: WriteSet) -> Result<Vec<i64>>;
    async fn types(&self, tenant: &str) -> Result<Vec<TypeInfo>>;

    async fn history(&self, tenant: &str, q: &HistoryQuery) -> Result<Vec<Instance>>;
    /// Number of instances per attribute matching the query, ignoring limits.
    async fn history_count(&self, tenant: &str, q: &HistoryQuery) -> Result<usize>;

    async fn subscriptions(&self) -> Result<Vec<SubscriptionRecord>>;
    async fn put_subscription(&self, s: &SubscriptionRecord) -> Result<()>;
    async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<bool>;

    /// Notifications not yet delivered, oldest first.
    async fn pending_notifications(&self, limit: usize) -> Result<Vec<OutboxItem>>;
    async fn ack_notifications(&self, seqs: &[i64]) -> Result<()>;
    async fn retry_notification(&self, seq: i64, attempts: u32, next_attempt_ms: i64) -> Result<()>;

    async fn contexts(&self, tenant: &str) -> Result<Vec<ContextRecord>>;
    async fn put_context(&self, tenant: &str, c: &ContextRecord) -> Result<()>;
    async fn delete_context(&self, tenant: &str, id: &str) -> Result<bool>;

    /// Drops the attribute history observed before `before` in every tenant
    /// (the hub's retention); the entities themselves stay. Returns how many
    /// instances went.
    async fn prune_history(&self, before: Timestamp) -> Result<u64>;

    async fn put_api_token(&self, t: &ApiTokenRecord) -> Result<()>;
    async fn api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>>;
    async fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>>;

    /// Appends entries to the audit log, each linked to the one before
    /// ([`audit::link`]) inside one transaction; returns the records.
    async fn append_audit(&self, entries: Vec<audit::AuditEntry>) -> Result<Vec<audit::AuditRecord>>;
    /// Records with seq > `after`, in order, at most `limit`.
    async fn audit_records(&self, after: u64, limit: usize) -> Result<Vec<audit::AuditRecord>>;
    /// The latest records that name `subject` among their subjects, newest first.
    async fn audit_for_subject(&self, subject: &str, limit: usize) -> Result<Vec<audit::AuditRecord>>;
}

impl From<StoreError> for citybrain_ngsild::NgsiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(id) => citybrain_ngsild::NgsiError::new(
                citybrain_ngsild::ErrorKind::Conflict,
                format!("entity {id} was changed by another request; retry"),
            ),
            StoreError::Backend(msg) => citybrain_ngsild::NgsiError::internal(msg),
            StoreError::Busy(msg) => citybrain_ngsild::NgsiError::new(citybrain_ngsild::ErrorKind::StorageBusy, msg),
            StoreError::Full(msg) => citybrain_ngsild::NgsiError::new(citybrain_ngsild::ErrorKind::StorageFull, msg),
        }
    }
}
