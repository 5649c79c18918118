//! The temporal API (clauses 5.6.11–5.6.16, 5.7.3–5.7.4): history retrieval
//! and query with time filters and paging, and direct provision of history.

use std::collections::BTreeMap;

use citybrain_ngsild::input::{parse_attr, parse_entity, Mode};
use citybrain_ngsild::model::{dataset_id, AttrInput};
use citybrain_ngsild::selector::EntityQuery;
use citybrain_ngsild::temporal::{Instance, TemporalQuery};
use citybrain_ngsild::time::{self, Timestamp};
use citybrain_ngsild::{Entity, NgsiError};
use citybrain_store::{HistoryDelete, HistoryQuery, Page};
use serde_json::Value;

use crate::contexts::RequestContext;
use crate::entities::not_found;
use crate::{now, Hub, Result};

/// What to read from history.
#[derive(Debug, Clone, Default)]
pub struct TemporalRequest {
    /// Expanded attribute names; None for all.
    pub attrs: Option<Vec<String>>,
    pub tq: TemporalQuery,
    /// Instances per attribute; None for the configured default.
    pub limit: Option<usize>,
    /// Aggregating: read every instance in the window (up to [`MAX_AGGREGATED`]).
    pub aggregate: bool,
}

/// Most instances per attribute one aggregation reads.
pub const MAX_AGGREGATED: usize = 100_000;

/// A temporal provision body: the entity's id and types, and its instances.
struct Provision {
    id: Option<String>,
    types: Option<Vec<String>>,
    instances: Vec<Instance>,
}

/// One entity's history, ready to render.
#[derive(Debug, Clone)]
pub struct TemporalEntity {
    pub id: String,
    pub types: Vec<String>,
    pub attrs: BTreeMap<String, Vec<Instance>>,
    /// Set when some attribute had more instances than were returned:
    /// (first time, last time, total instances of the largest attribute).
    pub truncated: Option<(Timestamp, Timestamp, usize)>,
}

impl Hub {
    fn history_query(&self, id: &str, req: &TemporalRequest) -> Result<HistoryQuery> {
        let limits = self.limits();
        let limit = if req.aggregate {
            MAX_AGGREGATED
        } else {
            req.limit.or(req.tq.last_n).unwrap_or(limits.temporal_page)
        };
        if !req.aggregate && limit > limits.max_temporal_page {
            return Err(NgsiError::new(
                citybrain_ngsild::ErrorKind::TooManyResults,
                format!(
                    "at most {} instances per attribute can be asked for",
                    limits.max_temporal_page
                ),
            ));
        }
        let (from, to) = req.tq.bounds();
        Ok(HistoryQuery {
            entity_id: id.to_string(),
            attrs: req.attrs.clone(),
            timeproperty: req.tq.timeproperty,
            from,
            to,
            last_n: req.tq.last_n,
            limit,
        })
    }

    async fn temporal_of(&self, tenant: &str, e: &Entity, req: &TemporalRequest) -> Result<TemporalEntity> {
        let hq = self.history_query(&e.id, req)?;
        let list = self.inner.store.history(tenant, &hq).await?;
        let mut attrs: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for i in list {
            attrs.entry(i.attr.clone()).or_default().push(i);
        }
        let mut truncated = None;
        // More instances in the window than returned (a page, or lastN of
        // more): 206 with Content-Range (GS CIM 009 V1.8.1, 6.3.17).
        if attrs.values().any(|l| l.len() >= hq.limit) {
            let total = self.inner.store.history_count(tenant, &hq).await?;
            let returned = attrs.values().map(Vec::len).max().unwrap_or(0);
            if total > returned {
                let times: Vec<Timestamp> = attrs
                    .values()
                    .flatten()
                    .filter_map(|i| req.tq.timeproperty.of(i))
                    .collect();
                if let (Some(a), Some(b)) = (times.iter().min(), times.iter().max()) {
                    truncated = Some((*a, *b, total));
                }
            }
        }
        Ok(TemporalEntity {
            id: e.id.clone(),
            types: e.types.clone(),
            attrs,
            truncated,
        })
    }

    /// GET /temporal/entities/{id}
    pub async fn temporal_retrieve(&self, tenant: &str, id: &str, req: &TemporalRequest) -> Result<TemporalEntity> {
        let e = self.retrieve_entity(tenant, id).await?;
        self.temporal_of(tenant, &e, req).await
    }

    /// GET /temporal/entities, POST /temporal/entityOperations/query
    pub async fn temporal_query(
        &self,
        tenant: &str,
        q: &EntityQuery,
        req: &TemporalRequest,
        page: Page,
    ) -> Result<(Vec<TemporalEntity>, Option<usize>)> {
        let r = self.query_entities(tenant, q, page).await?;
        let mut out = Vec::with_capacity(r.entities.len());
        for e in &r.entities {
            out.push(self.temporal_of(tenant, e, req).await?);
        }
        Ok((out, r.total))
    }

    /// Parses a temporal body: every attribute an array of instances.
    fn parse_instances(&self, body: &Value, ctx: &RequestContext) -> Result<Provision> {
        let obj = body
            .as_object()
            .ok_or_else(|| NgsiError::bad_data("a temporal entity must be a JSON object"))?;
        // id, type and scope are checked by the ordinary parser.
        let mut head = serde_json::Map::new();
        for k in ["id", "type", "scope"] {
            if let Some(v) = obj.get(k) {
                head.insert(k.into(), v.clone());
            }
        }
        let frag = parse_entity(&Value::Object(head), &ctx.terms, &self.limits().input, Mode::Create)?;
        let at = now();
        let mut out = Vec::new();
        for (k, v) in obj {
            if matches!(
                k.as_str(),
                "id" | "type" | "scope" | "@context" | "createdAt" | "modifiedAt"
            ) {
                continue;
            }
            citybrain_ngsild::input::validate_attr_name(k)?;
            let items: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            if out.len() + items.len() > self.limits().input.max_attrs * 10 {
                return Err(NgsiError::bad_data("too many temporal instances in one request"));
            }
            for item in items {
                for i in parse_attr(k, item, &ctx.terms, &self.limits().input, Mode::Create)? {
                    if let AttrInput::Set(mut a) = i {
                        let observed = a.get("observedAt").and_then(Value::as_str).and_then(time::parse);
                        a.remove("createdAt");
                        a.remove("modifiedAt");
                        out.push(Instance {
                            attr: ctx.terms.expand(k),
                            instance_id: format!("urn:ngsi-ld:attribute:instance:{}", uuid::Uuid::new_v4()),
                            dataset_id: dataset_id(&a).map(str::to_string),
                            observed_at: observed,
                            created_at: at,
                            modified_at: at,
                            deleted_at: None,
                            value: a,
                        });
                    }
                }
            }
        }
        Ok(Provision {
            id: frag.id,
            types: frag.types,
            instances: out,
        })
    }

    /// POST /temporal/entities: creates the entity (its current state is the
    /// newest instance of each attribute) or appends to an existing history.
    /// Returns true when the entity was created.
    pub async fn temporal_create(&self, tenant: &str, body: &Value, ctx: &RequestContext) -> Result<bool> {
        let Provision { id, types, instances } = self.parse_instances(body, ctx)?;
        let id = id.ok_or_else(|| NgsiError::bad_data("temporal entity has no 'id'"))?;
        let types = types.ok_or_else(|| NgsiError::bad_data("temporal entity has no 'type'"))?;
        self.transact(tenant, std::slice::from_ref(&id), |ws| {
            let at = ws.now;
            let exists = ws.current(&id).is_some();
            if !exists {
                let mut e = Entity::new(id.clone(), types.clone(), vec![], at);
                let mut newest: BTreeMap<(String, Option<String>), &Instance> = BTreeMap::new();
                for i in &instances {
                    let key = (i.attr.clone(), i.dataset_id.clone());
                    let t = i.observed_at.unwrap_or(i.modified_at);
                    if newest
                        .get(&key)
                        .is_none_or(|cur| cur.observed_at.unwrap_or(cur.modified_at) <= t)
                    {
                        newest.insert(key, i);
                    }
                }
                for ((attr, _), i) in newest {
                    let _ = e.write_attr(
                        &attr,
                        AttrInput::Set(i.value.clone()),
                        citybrain_ngsild::model::WriteMode::Overwrite,
                        at,
                    );
                }
                ws.create(e)?;
            }
            let slot = ws.slot(&id);
            // History comes from the request's instances, not from the creation.
            slot.changes.clear();
            slot.extra_history = instances.clone();
            Ok(!exists)
        })
        .await
    }

    /// POST /temporal/entities/{id}/attrs
    pub async fn temporal_add_attrs(&self, tenant: &str, id: &str, body: &Value, ctx: &RequestContext) -> Result<()> {
        crate::entities::check_path_id(id)?;
        self.require_tenant(tenant).await?;
        let Provision { id: bid, instances, .. } = self.parse_instances(body, ctx)?;
        if bid.is_some_and(|b| b != id) {
            return Err(NgsiError::bad_data("body id differs from the id in the URL"));
        }
        self.transact(tenant, &[id.to_string()], |ws| {
            let slot = ws.slot(id);
            if slot.after.is_none() {
                return Err(not_found(id));
            }
            slot.extra_history = instances.clone();
            Ok(())
        })
        .await
    }

    /// DELETE /temporal/entities/{id}/attrs/{attr}
    pub async fn temporal_delete_attr(
        &self,
        tenant: &str,
        id: &str,
        attr: &str,
        ctx: &RequestContext,
        ds: Option<&str>,
        all: bool,
    ) -> Result<()> {
        crate::entities::check_path_id(id)?;
        self.require_tenant(tenant).await?;
        let name = ctx.terms.expand(attr);
        self.transact(tenant, &[id.to_string()], |ws| {
            let slot = ws.slot(id);
            if slot.after.is_none() {
                return Err(not_found(id));
            }
            slot.history_deletes.push(HistoryDelete::Attribute {
                entity_id: id.to_string(),
                attr: name.clone(),
                dataset_id: if all { None } else { Some(ds.map(str::to_string)) },
            });
            Ok(())
        })
        .await
    }

    async fn find_instance(&self, tenant: &str, id: &str, attr: &str, instance_id: &str) -> Result<Instance> {
        let hq = HistoryQuery {
            entity_id: id.into(),
            attrs: Some(vec![attr.into()]),
            timeproperty: Default::default(),
            from: None,
            to: None,
            last_n: None,
            limit: usize::MAX >> 1,
        };
        self.inner
            .store
            .history(tenant, &hq)
            .await?
            .into_iter()
            .find(|i| i.instance_id == instance_id)
            .ok_or_else(|| NgsiError::not_found(format!("attribute instance {instance_id} does not exist")))
    }

    /// PATCH /temporal/entities/{id}/attrs/{attr}/{instanceId}
    pub async fn temporal_patch_instance(
        &self,
        tenant: &str,
        id: &str,
        attr: &str,
        instance_id: &str,
        body: &Value,
        ctx: &RequestContext,
    ) -> Result<()> {
        crate::entities::check_path_id(id)?;
        self.require_tenant(tenant).await?;
        let name = ctx.terms.expand(attr);
        let mut inst = self.find_instance(tenant, id, &name, instance_id).await?;
        let item = body
            .get(attr)
            .and_then(|v| if let Value::Array(a) = v { a.first() } else { Some(v) })
            .unwrap_or(body);
        let patch = citybrain_ngsild::input::parse_attr_patch(attr, item, &ctx.terms, &self.limits().input)?;
        for (k, v) in patch {
            inst.value.insert(k, v);
        }
        inst.observed_at = inst
            .value
            .get("observedAt")
            .and_then(Value::as_str)
            .and_then(time::parse);
        inst.modified_at = now();
        self.transact(tenant, &[id.to_string()], |ws| {
            let slot = ws.slot(id);
            // Replace the instance: drop the old row, write the new one (same instanceId).
            slot.history_deletes.push(HistoryDelete::Instance {
                entity_id: id.into(),
                attr: name.clone(),
                instance_id: instance_id.into(),
            });
            slot.extra_history = vec![inst.clone()];
            Ok(())
        })
        .await
    }

    /// DELETE /temporal/entities/{id}/attrs/{attr}/{instanceId}
    pub async fn temporal_delete_instance(
        &self,
        tenant: &str,
        id: &str,
        attr: &str,
        instance_id: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        crate::entities::check_path_id(id)?;
        self.require_tenant(tenant).await?;
        let name = ctx.terms.expand(attr);
        self.find_instance(tenant, id, &name, instance_id).await?;
        self.transact(tenant, &[id.to_string()], |ws| {
            ws.slot(id).history_deletes.push(HistoryDelete::Instance {
                entity_id: id.into(),
                attr: name.clone(),
                instance_id: instance_id.into(),
            });
            Ok(())
        })
        .await
    }
}
