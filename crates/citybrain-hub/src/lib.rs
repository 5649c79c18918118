//! # citybrain-hub — the context hub (中枢)
//!
//! The NGSI-LD broker's operations, independent of HTTP: entity writes with
//! their history and the notifications they cause, queries, temporal
//! retrieval, subscriptions with durable delivery and in-process streams,
//! tenants and @contexts. Every other part of citybrain reads and writes city
//! state through a [`Hub`].
//!
//! What it deliberately does **not** do: parse HTTP requests or speak SQL.
//! The API crate turns requests into calls here; a [`citybrain_store::Store`]
//! keeps the data.
//!
//! **Architecture Invariant:** a write returns only after its entity rows,
//! history and outgoing notifications are committed together; delivery then
//! works from the durable outbox, so a crash or an unreachable receiver loses
//! no notification (delivery is at-least-once).
//!
//! ## Helpful terminology
//! - **working set**: the entities one request touches, loaded at a version,
//!   changed in memory, and committed at once (retried on a version conflict).
//! - **outbox / deliverer**: queued notifications and the task that POSTs them.
//! - **stream**: an in-process feed of one subscription's notifications (SSE).

#![forbid(unsafe_code)]

mod audit;
pub mod clock;
pub mod contexts;
mod delivery;
mod entities;
mod subscriptions;
mod temporal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use citybrain_ngsild::input::InputLimits;
use citybrain_ngsild::time::Timestamp;
use citybrain_ngsild::{ErrorKind, NgsiError};
use citybrain_store::Store;
use tokio::sync::mpsc;

pub use contexts::RequestContext;
pub use entities::{BatchError, BatchOp, BatchResult, Purge, UpdateResult};
pub use subscriptions::{StreamEvent, StreamSubscription};
pub use temporal::{TemporalEntity, TemporalRequest};

pub type Result<T, E = NgsiError> = std::result::Result<T, E>;

/// Limits on what one request may ask for. Every breach is a clear error.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Entities per batch operation.
    pub max_batch: usize,
    /// Default page size of queries.
    pub default_page: usize,
    /// Largest `limit` a query may ask for (above: 403 TooManyResults).
    pub max_page: usize,
    /// The most matches a query with `orderBy` may sort in memory.
    pub max_ordered: usize,
    /// Longest `q` / `scopeQ` accepted.
    pub max_query_len: usize,
    /// Attributes per entity, coordinates per geometry, nesting depth.
    pub input: InputLimits,
    /// Default number of temporal instances per attribute (21..=40 per the spec's advice).
    pub temporal_page: usize,
    /// Largest temporal page a client may ask for with `lastN` or `limit`.
    pub max_temporal_page: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 1000,
            default_page: 20,
            max_page: 1000,
            max_ordered: 100_000,
            max_query_len: 4096,
            input: InputLimits::default(),
            temporal_page: 30,
            max_temporal_page: 1000,
        }
    }
}

/// How the hub behaves; every field has a sensible default.
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub limits: Limits,
    /// Remote @context URL → local file, for sites without internet.
    pub context_map: HashMap<String, PathBuf>,
    pub context_fetch_timeout: Duration,
    /// Notification POST timeout.
    pub notify_timeout: Duration,
    /// How long an undeliverable notification is retried before it is dropped.
    pub notify_retry_window: Duration,
    /// Largest backoff between two delivery attempts.
    pub notify_max_backoff: Duration,
    /// Attribute history observed longer ago than this is dropped (None:
    /// kept for ever). Entities and their current values always stay.
    pub history_retention: Option<Duration>,
    /// How often the retention is applied.
    pub history_prune_every: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            limits: Limits::default(),
            context_map: HashMap::new(),
            context_fetch_timeout: Duration::from_secs(5),
            notify_timeout: Duration::from_secs(10),
            notify_retry_window: Duration::from_secs(3600),
            notify_max_backoff: Duration::from_secs(30),
            history_retention: None,
            history_prune_every: Duration::from_secs(60),
        }
    }
}

struct Inner {
    store: Arc<dyn Store>,
    config: HubConfig,
    contexts: contexts::Resolver,
    subs: subscriptions::Registry,
    deliver_tx: mpsc::UnboundedSender<delivery::Job>,
    http: reqwest::Client,
    /// Tenants seen to exist; tenants are never dropped, so this only grows.
    known_tenants: std::sync::RwLock<std::collections::HashSet<String>>,
    /// Entities created, changed or deleted since start, all tenants.
    entity_changes: std::sync::atomic::AtomicU64,
    /// Set when the server shuts down: open notification streams end.
    closing: tokio::sync::watch::Sender<bool>,
    /// The audit log's group-commit writer.
    audit_tx: mpsc::Sender<audit::Job>,
}

/// The hub. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Hub {
    /// Starts a hub over a store: loads subscriptions and starts the
    /// notification deliverer and the periodic tasks (on the current runtime).
    pub async fn start(store: Arc<dyn Store>, config: HubConfig) -> Result<Hub> {
        let http = reqwest::Client::builder()
            .timeout(config.notify_timeout)
            .build()
            .map_err(|e| NgsiError::internal(format!("cannot build HTTP client: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let hub = Hub {
            inner: Arc::new(Inner {
                contexts: contexts::Resolver::new(
                    config.context_map.clone(),
                    config.context_fetch_timeout,
                    http.clone(),
                ),
                subs: subscriptions::Registry::default(),
                audit_tx: audit::spawn(store.clone()),
                store,
                config,
                deliver_tx: tx,
                http,
                known_tenants: Default::default(),
                entity_changes: Default::default(),
                closing: tokio::sync::watch::channel(false).0,
            }),
        };
        hub.load_subscriptions().await?;
        delivery::spawn(hub.clone(), rx).await?;
        subscriptions::spawn_periodic(hub.clone());
        if let Some(keep) = hub.inner.config.history_retention {
            spawn_history_pruning(&hub, keep);
        }
        Ok(hub)
    }

    /// Drops the history observed longer ago than `keep` (by the hub's
    /// clock) now; returns how many instances went.
    pub async fn prune_history(&self, keep: Duration) -> Result<u64> {
        let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        let before: Timestamp = clock::now()
            .checked_sub_signed(keep)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        Ok(self.inner.store.prune_history(before).await?)
    }

    /// How many entity writes (creates, changes, deletes; a write that
    /// changes nothing is not one) were committed since the hub started, in
    /// every tenant: the difference over time is the hub's update rate.
    pub fn entity_changes(&self) -> u64 {
        self.inner.entity_changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends every open notification stream (call when the server begins to
    /// shut down: a graceful shutdown waits for every response, and a
    /// stream never ends by itself). Deliveries to endpoints go on.
    pub fn close_streams(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Whether the server is shutting down (`close_streams` was called).
    pub fn is_closing(&self) -> bool {
        *self.inner.closing.borrow()
    }

    /// Resolves once `close_streams` was called.
    pub fn streams_closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.config.limits
    }

    /// Fails with 404 NonexistentTenant unless the tenant exists (reads and updates).
    pub async fn require_tenant(&self, tenant: &str) -> Result<()> {
        let known = tenant.is_empty() || self.inner.known_tenants.read().is_ok_and(|k| k.contains(tenant));
        if known {
            return Ok(());
        }
        if self.inner.store.tenant_exists(tenant).await? {
            if let Ok(mut k) = self.inner.known_tenants.write() {
                k.insert(tenant.to_string());
            }
            Ok(())
        } else {
            Err(NgsiError::new(
                ErrorKind::NonexistentTenant,
                format!("tenant '{tenant}' does not exist"),
            ))
        }
    }

    /// Validates a tenant name from the `NGSILD-Tenant` header.
    pub fn check_tenant_name(name: &str) -> Result<()> {
        let ok = name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if ok {
            Ok(())
        } else {
            Err(NgsiError::bad_data(format!(
                "tenant '{name}' must be at most 64 characters of A-Z a-z 0-9 _ - ."
            )))
        }
    }

    pub async fn tenants(&self) -> Result<Vec<String>> {
        Ok(self.inner.store.tenants().await?)
    }
}

pub(crate) fn now() -> Timestamp {
    clock::now()
}

/// Applies the history retention every `history_prune_every` until the hub
/// is dropped.
fn spawn_history_pruning(hub: &Hub, keep: Duration) {
    let weak = Arc::downgrade(&hub.inner);
    let every = hub.inner.config.history_prune_every;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            match (Hub { inner }).prune_history(keep).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(instances = n, "history past its retention dropped"),
                Err(error) => tracing::warn!(%error, "dropping history past its retention failed; will retry"),
            }
        }
    });
}
