//! # citybrain-services-hub — the services, kept in the hub
//!
//! The use cases of `citybrain-services` over a [`Hub`]: an application is
//! pre-filled from the hub and decided at once; a bundle instance, its
//! documents, its notifications and its timers are hub entities, each state
//! change written in one batch (the new state and its effects commit
//! together: the outbox; what must leave the city's systems leaves through
//! the hub's subscriptions, at least once). A server killed at any point
//! finds every instance as last committed and its timers again.
//!
//! Background work (started by [`Services::spawn`]): the timer scheduler,
//! the watcher that starts bundles from hub records (无感申办) and grants
//! proactive benefits when data changes (免申即享), and the metrics.
//!
//! One server writes the services' state at a time: instances are locked in
//! this process while they change (several servers need the store's
//! version checks, issue 21).

#![forbid(unsafe_code)]

mod applications;
mod bundles;
pub mod entity;
pub mod facts;
mod grants;
mod metrics;
mod watch;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use citybrain_hub::{BatchOp, Hub, RequestContext};
use citybrain_ngsild::NgsiError;
use citybrain_rules::PolicySet;
use citybrain_services::{Bundle, Catalog, ServiceError};
use serde_json::Value;

pub use applications::Preview;
pub use bundles::InstanceFilter;
pub use grants::MatchReport;
pub use metrics::ServiceFigures;

/// What can go wrong in a service call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Hub(#[from] NgsiError),
    #[error("{0}")]
    NotFound(String),
    /// The hub's data does not fit a policy.
    #[error("{0}")]
    Data(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The clock the services read (controllable in tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

#[derive(Clone)]
pub struct Settings {
    pub tenant: String,
    /// How often the scheduler looks for due timers.
    pub tick: Duration,
    /// How often the metrics entities are recomputed.
    pub metrics_every: Duration,
    /// The most subjects one proactive matching reads.
    pub max_subjects: usize,
    pub clock: Clock,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tenant: String::new(),
            tick: Duration::from_secs(1),
            metrics_every: Duration::from_secs(10),
            max_subjects: 2_000_000,
            clock: Arc::new(Utc::now),
        }
    }
}

/// Due timers in order, and each instance's entry in them.
pub(crate) type Timers = (BTreeSet<(DateTime<Utc>, String)>, HashMap<String, DateTime<Utc>>);

const LOCK_STRIPES: usize = 64;

pub(crate) struct Inner {
    pub hub: Hub,
    pub catalog: Catalog,
    pub policies: Arc<PolicySet>,
    pub settings: Settings,
    pub ctx: RequestContext,
    /// Every bundle definition an instance may run by: (id, version).
    pub definitions: RwLock<HashMap<(String, u32), Arc<Bundle>>>,
    /// Due timers: (when, instance id), and each instance's entry.
    pub timers: Mutex<Timers>,
    pub locks: Vec<tokio::sync::Mutex<()>>,
}

/// The services over one hub tenant.
#[derive(Clone)]
pub struct Services {
    pub(crate) inner: Arc<Inner>,
}

impl Services {
    /// Registers the catalog's bundle definitions in the hub (a definition
    /// whose text changed under the same version is refused), loads every
    /// version instances may still run by, and rebuilds the timers.
    pub async fn open(hub: Hub, catalog: Catalog, policies: Arc<PolicySet>, settings: Settings) -> Result<Services> {
        let s = Services {
            inner: Arc::new(Inner {
                hub,
                catalog,
                policies,
                settings,
                ctx: RequestContext::core(),
                definitions: RwLock::new(HashMap::new()),
                timers: Mutex::new(Default::default()),
                locks: (0..LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            }),
        };
        s.register_definitions().await?;
        s.rebuild_timers().await?;
        Ok(s)
    }

    /// Starts the scheduler, the hub watcher (with a first full pass over
    /// triggers and proactive policies) and the metrics loop.
    pub fn spawn(&self) {
        let s = self.clone();
        tokio::spawn(async move { s.schedule().await });
        let s = self.clone();
        tokio::spawn(async move { s.watch().await });
        let s = self.clone();
        tokio::spawn(async move { s.metrics_loop().await });
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn policies(&self) -> &PolicySet {
        &self.inner.policies
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        (self.inner.settings.clock)()
    }

    pub(crate) fn tenant(&self) -> &str {
        &self.inner.settings.tenant
    }

    pub(crate) fn terms(&self) -> &citybrain_ngsild::TermMap {
        &self.inner.ctx.terms
    }

    pub(crate) fn lock_for(&self, id: &str) -> &tokio::sync::Mutex<()> {
        let h = id
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.inner.locks[h % LOCK_STRIPES]
    }

    /// Writes entities in one commit (upsert, replacing each whole).
    pub(crate) async fn commit(&self, items: Vec<Value>) -> Result<()> {
        for chunk in items.chunks(self.inner.hub.limits().max_batch.max(1)) {
            let r = self
                .inner
                .hub
                .batch_write(self.tenant(), chunk, &self.inner.ctx, BatchOp::Upsert { replace: true })
                .await?;
            if let Some(e) = r.errors.into_iter().next() {
                return Err(Error::Hub(e.error));
            }
        }
        Ok(())
    }

    /// Creates entities that must exist once; those already there are left
    /// as they are. Returns the ids created.
    pub(crate) async fn create_once(&self, items: Vec<Value>) -> Result<Vec<String>> {
        let mut created = Vec::new();
        for chunk in items.chunks(self.inner.hub.limits().max_batch.max(1)) {
            let r = self
                .inner
                .hub
                .batch_write(self.tenant(), chunk, &self.inner.ctx, BatchOp::Create)
                .await?;
            if let Some(e) = r
                .errors
                .iter()
                .find(|e| e.error.kind != citybrain_ngsild::ErrorKind::AlreadyExists)
            {
                return Err(Error::Hub(e.error.clone()));
            }
            created.extend(r.success);
        }
        Ok(created)
    }

    pub(crate) async fn get(&self, id: &str) -> Result<Option<citybrain_ngsild::Entity>> {
        match self.inner.hub.retrieve_entity(self.tenant(), id).await {
            Ok(e) => Ok(Some(e)),
            Err(e) if e.kind == citybrain_ngsild::ErrorKind::ResourceNotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Entities of `ty` whose attributes equal the given values (a `q` of
    /// `attr=="value"` clauses), at most `limit` (1 to 1000).
    pub(crate) async fn where_equal(
        &self,
        ty: &str,
        equal: &[(&str, Option<&str>)],
        limit: usize,
    ) -> Result<Vec<citybrain_ngsild::Entity>> {
        use citybrain_ngsild::selector::{EntityQuery, EntitySelector, TypeExpr};
        let clauses: Vec<String> = equal
            .iter()
            .filter_map(|(attr, v)| v.map(|v| format!("{attr}==\"{}\"", v.replace('"', ""))))
            .collect();
        let terms = self.terms();
        let q = EntityQuery {
            selectors: vec![EntitySelector {
                types: Some(TypeExpr::Type(terms.expand(ty))),
                ..EntitySelector::default()
            }],
            q: if clauses.is_empty() {
                None
            } else {
                Some(citybrain_ngsild::q::Query::parse(&clauses.join(";"), terms)?)
            },
            ..EntityQuery::default()
        };
        let page = citybrain_store::Page {
            offset: 0,
            limit: limit.clamp(1, 1000),
            count: false,
        };
        Ok(self.inner.hub.query_entities(self.tenant(), &q, page).await?.entities)
    }

    pub(crate) async fn all_of(&self, ty: &str) -> Result<Vec<citybrain_ngsild::Entity>> {
        Ok(self
            .inner
            .hub
            .entities_of_type(
                self.tenant(),
                &self.terms().expand(ty),
                self.inner.settings.max_subjects,
            )
            .await?)
    }
}
