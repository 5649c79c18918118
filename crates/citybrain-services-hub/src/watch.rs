//! The hub watcher: a stream subscription on the types that start bundles
//! (a birth record) or feed proactive policies (an enterprise's data). A
//! full pass at start catches what changed while the server was down; a
//! lagging stream falls back to another full pass.

use citybrain_ngsild::Entity;
use citybrain_rules::InputSource;
use citybrain_services::{Actor, Bundle};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::entity::{self, INSTANCE};
use crate::{Result, Services};

const SUBSCRIPTION: &str = "urn:ngsi-ld:Subscription:citybrain-services";

/// The instance a trigger record starts: one per record and bundle.
fn triggered_id(b: &Bundle, record: &str) -> String {
    format!("urn:ngsi-ld:{INSTANCE}:{}-{}", b.id, entity::tail(record))
}

impl Services {
    /// The entity types whose changes matter: triggers, proactive subjects
    /// and the related types their policies read.
    fn watched(&self) -> Vec<String> {
        let mut types: Vec<String> = Vec::new();
        for b in self.inner.catalog.bundles.values() {
            if let Some(t) = &b.trigger {
                types.push(t.entity_type.clone());
            }
        }
        for s in self.inner.catalog.services.values().filter(|s| s.proactive) {
            types.push(s.applies_to.clone());
            if let Some(p) = s.policy().and_then(|p| self.inner.policies.get(p)) {
                for i in &p.inputs {
                    if let InputSource::Related { entity_type, .. } = &i.source {
                        types.push(entity_type.clone());
                    }
                }
            }
        }
        types.sort();
        types.dedup();
        types
    }

    /// Starts the bundles a hub record triggers (once per record).
    pub async fn trigger(&self, record: &Entity) -> Result<Vec<String>> {
        let ty = self
            .terms()
            .compact(record.types.first().map(String::as_str).unwrap_or_default());
        let json = entity::normalized(record, self.terms());
        let mut started = Vec::new();
        let bundles: Vec<Bundle> = self
            .inner
            .catalog
            .bundles
            .values()
            .filter(|b| b.trigger.as_ref().is_some_and(|t| t.entity_type == ty))
            .cloned()
            .collect();
        for b in bundles {
            let t = b.trigger.as_ref().expect("filtered");
            let id = triggered_id(&b, &record.id);
            if self.get(&id).await?.is_some() {
                continue;
            }
            let attr = |name: &str| {
                citybrain_rules::gather::attribute(&json, name).and_then(|v| v.as_str().map(str::to_string))
            };
            let Some(subject) = attr(&t.subject) else {
                tracing::warn!("{}: no '{}' relationship to start {} for", record.id, t.subject, b.id);
                continue;
            };
            let confirm_by = match &t.confirm_by {
                Some(c) => match attr(c) {
                    Some(who) => Some(who),
                    None => {
                        tracing::warn!("{}: no '{c}' to confirm {}", record.id, b.id);
                        continue;
                    }
                },
                None => None,
            };
            let b = self.definition(&b.id, b.version)?;
            let i = self
                .start_instance(&Actor::system(), &b, id, &subject, confirm_by)
                .await?;
            started.push(i.id);
        }
        Ok(started)
    }

    /// Every trigger record without its instance yet, and every proactive
    /// policy over all its subjects.
    pub async fn full_pass(&self) -> Result<()> {
        let types: Vec<String> = self
            .inner
            .catalog
            .bundles
            .values()
            .filter_map(|b| b.trigger.as_ref().map(|t| t.entity_type.clone()))
            .collect();
        for t in types {
            for r in self.all_of(&t).await? {
                // One record that cannot start its bundle does not stop the others.
                if let Err(e) = self.trigger(&r).await {
                    tracing::warn!("{}: {e}", r.id);
                }
            }
        }
        for r in self.match_all().await? {
            tracing::info!(
                "{}: {} of {} eligible, {} newly granted in {:.2} s",
                r.service,
                r.eligible,
                r.checked,
                r.granted,
                r.seconds
            );
        }
        Ok(())
    }

    /// One changed entity: start what it triggers, re-decide what it feeds.
    async fn changed(&self, id: &str, ty: &str) -> Result<()> {
        let Some(e) = self.get(id).await? else { return Ok(()) };
        self.trigger(&e).await?;
        let json = entity::normalized(&e, self.terms());
        let services: Vec<(String, String)> = self
            .inner
            .catalog
            .services
            .values()
            .filter(|s| s.proactive)
            .map(|s| (s.id.clone(), s.policy().unwrap_or_default().to_string()))
            .collect();
        for (sid, pid) in services {
            let Some(p) = self.inner.policies.get(&pid) else {
                continue;
            };
            if p.applies_to == ty {
                self.grant_one(&sid, id).await?;
            }
            for i in &p.inputs {
                if let InputSource::Related { entity_type, via, .. } = &i.source {
                    if entity_type == ty {
                        if let Some(Value::String(owner)) = citybrain_rules::gather::attribute(&json, via) {
                            self.grant_one(&sid, &owner).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn ensure_subscription(&self, types: &[String]) -> Result<()> {
        let hub = &self.inner.hub;
        if hub.get_subscription(self.tenant(), SUBSCRIPTION).await.is_ok() {
            hub.delete_subscription(self.tenant(), SUBSCRIPTION).await?;
        }
        let entities: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        hub.create_subscription(
            self.tenant(),
            &json!({"id": SUBSCRIPTION, "type": "Subscription", "entities": entities,
                    "description": "citybrain services: bundle triggers and proactive benefits",
                    "notification": {"format": "keyValues", "endpoint": {"uri": "urn:citybrain:sse"}}}),
            &self.inner.ctx,
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn watch(&self) {
        let types = self.watched();
        if types.is_empty() {
            return;
        }
        if let Err(e) = self.watch_inner(&types).await {
            tracing::error!("services watcher stopped: {e}");
        }
    }

    async fn watch_inner(&self, types: &[String]) -> Result<()> {
        self.ensure_subscription(types).await?;
        let mut rx = self.inner.hub.stream(self.tenant(), SUBSCRIPTION, None).await?.rx;
        if let Err(e) = self.full_pass().await {
            tracing::warn!("services full pass: {e}");
        }
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                        continue;
                    };
                    for d in v["data"].as_array().into_iter().flatten() {
                        let (Some(id), Some(ty)) = (d["id"].as_str(), d["type"].as_str()) else {
                            continue;
                        };
                        if let Err(e) = self.changed(id, ty).await {
                            tracing::warn!("services: {id}: {e}");
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!("services watcher missed {n} notifications; a full pass");
                    // A fresh receiver first: what the pass reads covers everything
                    // before it, the receiver everything after.
                    rx = self.inner.hub.stream(self.tenant(), SUBSCRIPTION, None).await?.rx;
                    if let Err(e) = self.full_pass().await {
                        tracing::warn!("services full pass: {e}");
                    }
                }
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}
