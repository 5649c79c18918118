//! Entity operations (clauses 5.6, 5.7): every write goes through one
//! working-set commit that records history and queues notifications.

use std::collections::{BTreeMap, HashSet};

use citybrain_ngsild::input::{self, parse_attr, parse_attr_patch, parse_entity, Fragment, Mode};
use citybrain_ngsild::model::{AttrChange, AttrInput, ChangeKind, Entity, NotUpdated, WriteMode};
use citybrain_ngsild::selector::EntityQuery;
use citybrain_ngsild::temporal::Instance;
use citybrain_ngsild::time::Timestamp;
use citybrain_ngsild::{ErrorKind, NgsiError};
use citybrain_store::{EntityPut, HistoryDelete, Page, QueryResult, Stored, TypeInfo, WriteSet};
use serde_json::Value;

use crate::contexts::RequestContext;
use crate::{now, Hub, Result};

const CONFLICT_RETRIES: usize = 8;

/// Outcome of an attribute append/update: what was written and what was not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateResult {
    pub updated: Vec<String>,
    pub not_updated: Vec<NotUpdated>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchError {
    pub entity_id: String,
    pub error: NgsiError,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResult {
    pub success: Vec<String>,
    pub errors: Vec<BatchError>,
    /// Ids that were created (for upsert's 201 vs 204).
    pub created: Vec<String>,
}

/// One entity in a working set.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    version: Option<u64>,
    pub(crate) before: Option<Entity>,
    pub(crate) after: Option<Entity>,
    pub(crate) changes: Vec<AttrChange>,
    /// Whole-history deletion (entity deleted).
    drop_history: bool,
    /// Extra history rows (temporal provision).
    pub(crate) extra_history: Vec<Instance>,
    pub(crate) history_deletes: Vec<HistoryDelete>,
}

/// The entities a request touches, by id.
pub(crate) struct WorkingSet {
    pub(crate) slots: BTreeMap<String, Slot>,
    pub(crate) now: Timestamp,
}

impl WorkingSet {
    pub(crate) fn slot(&mut self, id: &str) -> &mut Slot {
        self.slots.entry(id.to_string()).or_insert_with(|| Slot {
            version: None,
            before: None,
            after: None,
            changes: Vec::new(),
            drop_history: false,
            extra_history: Vec::new(),
            history_deletes: Vec::new(),
        })
    }

    pub(crate) fn current(&self, id: &str) -> Option<&Entity> {
        self.slots.get(id).and_then(|s| s.after.as_ref())
    }

    /// Creates an entity; AlreadyExists if it exists.
    pub(crate) fn create(&mut self, e: Entity) -> Result<()> {
        let now = self.now;
        let slot = self.slot(&e.id);
        if slot.after.is_some() {
            return Err(NgsiError::new(
                ErrorKind::AlreadyExists,
                format!("entity {} already exists", e.id),
            ));
        }
        for (name, list) in &e.attrs {
            for a in list {
                slot.changes.push(AttrChange {
                    name: name.clone(),
                    dataset_id: citybrain_ngsild::model::dataset_id(a).map(str::to_string),
                    kind: ChangeKind::Created,
                    previous: None,
                    current: Some(a.clone()),
                });
            }
        }
        let mut e = e;
        e.created_at = now;
        e.modified_at = now;
        slot.after = Some(e);
        Ok(())
    }

    /// Replaces the whole entity (keeps createdAt).
    pub(crate) fn replace(&mut self, id: &str, frag: Fragment) -> Result<()> {
        let now = self.now;
        let slot = self.slot(id);
        let old = slot.after.clone().ok_or_else(|| not_found(id))?;
        let mut e = Entity::new(
            id.to_string(),
            frag.types.clone().unwrap_or_else(|| old.types.clone()),
            frag.scope.clone().unwrap_or_default(),
            now,
        );
        e.created_at = old.created_at;
        for (name, list) in frag.attrs {
            for i in list {
                if let AttrInput::Set(mut a) = i {
                    let prev = old.instance(&name, citybrain_ngsild::model::dataset_id(&a)).cloned();
                    let stamp = Value::String(citybrain_ngsild::time::format(&now));
                    let created = prev
                        .as_ref()
                        .and_then(|p| p.get("createdAt").cloned())
                        .unwrap_or(stamp.clone());
                    a.insert("createdAt".into(), created);
                    a.insert("modifiedAt".into(), stamp);
                    slot.changes.push(AttrChange {
                        name: name.clone(),
                        dataset_id: citybrain_ngsild::model::dataset_id(&a).map(str::to_string),
                        kind: if prev.is_some() {
                            ChangeKind::Updated
                        } else {
                            ChangeKind::Created
                        },
                        previous: prev,
                        current: Some(a.clone()),
                    });
                    e.attrs.entry(name.clone()).or_default().push(a);
                }
            }
        }
        for (name, list) in &old.attrs {
            for a in list {
                let ds = citybrain_ngsild::model::dataset_id(a);
                if e.instance(name, ds).is_none() {
                    slot.changes.push(AttrChange {
                        name: name.clone(),
                        dataset_id: ds.map(str::to_string),
                        kind: ChangeKind::Deleted,
                        previous: Some(a.clone()),
                        current: None,
                    });
                }
            }
        }
        slot.after = Some(e);
        Ok(())
    }

    /// Writes a fragment's attributes with a mode; returns what happened.
    pub(crate) fn write(&mut self, id: &str, frag: Fragment, mode: WriteMode) -> Result<UpdateResult> {
        let now = self.now;
        let slot = self.slot(id);
        let e = slot.after.as_mut().ok_or_else(|| not_found(id))?;
        let mut r = UpdateResult::default();
        if let Some(types) = frag.types {
            // Types only ever grow by a write (NGSI-LD 5.6: types are added).
            for t in types {
                if !e.types.contains(&t) {
                    e.types.push(t);
                    e.modified_at = now;
                }
            }
        }
        if let Some(scope) = frag.scope {
            match mode {
                WriteMode::Merge | WriteMode::Overwrite => e.scope = scope,
                _ => {
                    for s in scope {
                        if !e.scope.contains(&s) {
                            e.scope.push(s);
                        }
                    }
                }
            }
            e.modified_at = now;
        }
        for (name, list) in frag.attrs {
            for input in list {
                match e.write_attr(&name, input, mode, now) {
                    Ok(Some(c)) => {
                        if !r.updated.contains(&name) {
                            r.updated.push(name.clone());
                        }
                        slot.changes.push(c);
                    }
                    Ok(None) => {
                        if mode == WriteMode::OnlyExisting {
                            r.not_updated.push(NotUpdated {
                                name: name.clone(),
                                reason: "attribute does not exist".into(),
                            });
                        } else if !r.updated.contains(&name) {
                            // Deleting something absent in a merge is not an error.
                            r.updated.push(name.clone());
                        }
                    }
                    Err(nu) => r.not_updated.push(nu),
                }
            }
        }
        Ok(r)
    }

    pub(crate) fn delete(&mut self, id: &str) -> Result<()> {
        let slot = self.slot(id);
        if slot.after.take().is_none() {
            return Err(not_found(id));
        }
        slot.drop_history = true;
        Ok(())
    }
}

/// An entity id taken from a request path must be a URI: "If the Entity Id
/// is not present or it is not a valid URI, an error of type BadRequestData
/// shall be raised" (GS CIM 009 V1.8.1, 5.6.x / 5.7.1).
pub(crate) fn check_path_id(id: &str) -> Result<()> {
    if citybrain_ngsild::context::looks_like_iri(id) {
        Ok(())
    } else {
        Err(NgsiError::bad_data(format!("entity id '{id}' is not a URI")))
    }
}

pub(crate) fn not_found(id: &str) -> NgsiError {
    NgsiError::not_found(format!("entity {id} does not exist"))
}

fn instance_id() -> String {
    format!("urn:ngsi-ld:attribute:instance:{}", uuid::Uuid::new_v4())
}

/// History rows for the changes of one slot.
pub(crate) fn history_of(changes: Vec<AttrChange>, now: Timestamp) -> Vec<Instance> {
    changes
        .into_iter()
        .filter_map(|c| {
            let mut value = c.current?;
            let observed = value
                .get("observedAt")
                .and_then(Value::as_str)
                .and_then(citybrain_ngsild::time::parse);
            let created = value
                .remove("createdAt")
                .as_ref()
                .and_then(Value::as_str)
                .and_then(citybrain_ngsild::time::parse)
                .unwrap_or(now);
            value.remove("modifiedAt");
            Some(Instance {
                attr: c.name,
                instance_id: instance_id(),
                dataset_id: c.dataset_id,
                observed_at: observed,
                created_at: created,
                modified_at: now,
                deleted_at: None,
                value,
            })
        })
        .collect()
}

impl Hub {
    /// Loads the ids, runs `f` on the working set, commits, and on a version
    /// conflict starts again from fresh data.
    pub(crate) async fn transact<R>(
        &self,
        tenant: &str,
        ids: &[String],
        mut f: impl FnMut(&mut WorkingSet) -> Result<R>,
    ) -> Result<R> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let stored = self.inner.store.get(tenant, ids).await?;
            let mut ws = WorkingSet {
                slots: BTreeMap::new(),
                now: now(),
            };
            for Stored { entity, version } in stored {
                let id = entity.id.clone();
                let slot = ws.slot(&id);
                slot.version = Some(version);
                slot.before = Some(entity.clone());
                slot.after = Some(entity);
            }
            let r = f(&mut ws)?;
            match self.commit_working_set(tenant, ws).await {
                Ok(()) => return Ok(r),
                Err(e) if e.kind == ErrorKind::Conflict && attempt < CONFLICT_RETRIES => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn commit_working_set(&self, tenant: &str, ws: WorkingSet) -> Result<()> {
        let mut w = WriteSet::default();
        let mut streams = Vec::new();
        let now = ws.now;
        for (id, slot) in ws.slots {
            let changed =
                slot.before != slot.after || !slot.extra_history.is_empty() || !slot.history_deletes.is_empty();
            if !changed {
                continue;
            }
            // Notifications read the slot; afterwards its parts move into the write set.
            let (out, stream) = self.notifications_for(tenant, &slot, now);
            w.outbox.extend(out);
            streams.extend(stream);
            let Slot {
                version,
                before,
                after,
                changes,
                drop_history,
                extra_history,
                history_deletes,
            } = slot;
            if drop_history {
                w.history_deletes.push(HistoryDelete::Entity(id.clone()));
            }
            w.history_deletes.extend(history_deletes);
            if after.is_some() {
                w.history
                    .extend(history_of(changes, now).into_iter().map(|i| (id.clone(), i)));
            }
            w.history.extend(extra_history.into_iter().map(|i| (id.clone(), i)));
            match (after, version) {
                (Some(e), v) if before.as_ref() != Some(&e) => w.puts.push(EntityPut {
                    entity: e,
                    expected_version: v,
                }),
                (None, Some(v)) => w.deletes.push((id, v)),
                _ => {}
            }
        }
        if w.is_empty() {
            return Ok(());
        }
        let outbox: Vec<(String, String)> = w.outbox.clone();
        let changed = (w.puts.len() + w.deletes.len()) as u64;
        let seqs = self.inner.store.commit(tenant, w).await?;
        metrics::counter!("citybrain_hub_commits_total").increment(1);
        self.inner
            .entity_changes
            .fetch_add(changed, std::sync::atomic::Ordering::Relaxed);
        self.after_commit(tenant, outbox, seqs, streams);
        Ok(())
    }

    fn parse_body(&self, body: &Value, ctx: &RequestContext, mode: Mode) -> Result<Fragment> {
        parse_entity(body, &ctx.terms, &self.limits().input, mode)
    }

    /// POST /entities
    pub async fn create_entity(&self, tenant: &str, body: &Value, ctx: &RequestContext) -> Result<String> {
        let frag = self.parse_body(body, ctx, Mode::Create)?;
        let id = frag
            .id
            .clone()
            .ok_or_else(|| NgsiError::bad_data("entity has no 'id'"))?;
        let e = frag.into_entity(now())?;
        self.transact(tenant, std::slice::from_ref(&id), |ws| ws.create(e.clone()))
            .await?;
        Ok(id)
    }

    /// GET /entities/{id}
    pub async fn retrieve_entity(&self, tenant: &str, id: &str) -> Result<Entity> {
        check_path_id(id)?;
        self.require_tenant(tenant).await?;
        self.inner
            .store
            .get(tenant, &[id.to_string()])
            .await?
            .pop()
            .map(|s| s.entity)
            .ok_or_else(|| not_found(id))
    }

    /// The entities among `ids` that exist (linked-entity retrieval; ids
    /// that are not URIs or name nothing are left out).
    pub async fn entities_by_id(&self, tenant: &str, ids: &[String]) -> Result<Vec<Entity>> {
        let ids: Vec<String> = ids
            .iter()
            .filter(|i| citybrain_ngsild::context::looks_like_iri(i))
            .cloned()
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .inner
            .store
            .get(tenant, &ids)
            .await?
            .into_iter()
            .map(|s| s.entity)
            .collect())
    }

    /// PUT /entities/{id}
    pub async fn replace_entity(&self, tenant: &str, id: &str, body: &Value, ctx: &RequestContext) -> Result<()> {
        check_path_id(id)?;
        self.require_tenant(tenant).await?;
        let frag = self.parse_body(body, ctx, Mode::Create)?;
        check_id_matches(id, &frag)?;
        self.transact(tenant, &[id.to_string()], |ws| ws.replace(id, frag.clone()))
            .await
    }

    /// PATCH /entities/{id} (merge)
    pub async fn merge_entity(&self, tenant: &str, id: &str, body: &Value, ctx: &RequestContext) -> Result<()> {
        check_path_id(id)?;
        self.require_tenant(tenant).await?;
        let frag = self.parse_body(body, ctx, Mode::Merge)?;
        check_id_matches(id, &frag)?;
        self.transact(tenant, &[id.to_string()], |ws| {
            ws.write(id, frag.clone(), WriteMode::Merge).map(|_| ())
        })
        .await
    }

    /// DELETE /entities/{id}
    pub async fn delete_entity(&self, tenant: &str, id: &str) -> Result<()> {
        check_path_id(id)?;
        self.require_tenant(tenant).await?;
        self.transact(tenant, &[id.to_string()], |ws| ws.delete(id)).await
    }

    /// POST /entities/{id}/attrs (append; `no_overwrite` keeps existing ones)
    pub async fn append_attrs(
        &self,
        tenant: &str,
        id: &str,
        body: &Value,
        ctx: &RequestContext,
        no_overwrite: bool,
    ) -> Result<UpdateResult> {
        check_path_id(id)?;
        self.require_tenant(tenant).await?;
        let frag = self.parse_body(body, ctx, Mode::Create)?;
        check_id_matches(id, &frag)?;
        let mode = if no_overwrite {
            WriteMode::NoOverwrite
        } else {
            WriteMode::Overwrite
        };
        self.transact(tenant, &[id.to_string()], |ws| ws.write(id, frag.clone(), mode))
            .await
    }

    /// PATCH /entities/{id}/attrs (update existing attributes only)
    pub async fn update_attrs(
        &self,
        tenant: &str,
        id: &str,
        body: &Value,
        ctx: &RequestContext,
    ) -> Result<UpdateResult> {
        check_path_id(id)?;
        self.require_tenant(tenant).await?;
        let frag = self.parse_body(body, ctx, Mode::Merge)?;
        check_id_matches(id, &frag)?;
        self.transact(tenant, &[id.to_string()], |ws| {
            ws.write(id, frag.clone(), WriteMode::OnlyExisting)
        })
        .await
    }

    /// PATCH /entities/{id}/attrs/{attr} (partial update of one attribute)
    pub async fn patch_attr(
        &self,
        tenant: &str,
        id: &str,
        attr: &str,
        body: &Value,
        ctx: &RequestContext,
    ) -> Result<()> {
        check_path_id(id)?;
        self.require_tenant(tenant).await?;
        input::validate_attr_name(attr)?;
        let name = ctx.terms.expand(attr);
        let patch = parse_attr_patch(attr, body, &ctx.terms, &self.limits().input)?;
        self.transact(tenant, &[id.to_string()], |ws| {
            let now = ws.now;
            let slot = ws.slot(id);
            let e = slot.after.as_mut().ok_or_else(|| not_found(id))?;
            let c = e
                .patch_attr(&name, patch.clone(), now)
                .ok_or_else(|| NgsiError::not_found(format!("entity {id} has no attribute {attr}")))?;
            slot.changes.push(c);
            Ok(())
        })
        .await
    }

    /// PUT /entities/{id}/attrs/{attr} (replace one attribute)
    pub async fn replace_attr(
        &self,
        tenant: &str,
        id: &str,
        attr: &str,
        body: &Value,
        ctx: &RequestContext,
    ) -> Result<()> {
        check_path_id(id)?;
        self.require_tenant(tenant).await?;
        input::validate_attr_name(attr)?;
        let name = ctx.terms.expand(attr);
        let list = parse_attr(attr, body, &ctx.terms, &self.limits().input, Mode::Create)?;
        self.transact(tenant, &[id.to_string()], |ws| {
            let now = ws.now;
            let slot = ws.slot(id);
            let e = slot.after.as_mut().ok_or_else(|| not_found(id))?;
            if !e.attrs.contains_key(&name) {
                return Err(NgsiError::not_found(format!("entity {id} has no attribute {attr}")));
            }
            for i in list.clone() {
                if let Ok(Some(c)) = e.write_attr(&name, i, WriteMode::Overwrite, now) {
                    slot.changes.push(c);
                }
            }
            Ok(())
        })
        .await
    }

    /// DELETE /entities/{id}/attrs/{attr}
    pub async fn delete_attr(
        &self,
        tenant: &str,
        id: &str,
        attr: &str,
        ctx: &RequestContext,
        dataset_id: Option<&str>,
        all: bool,
    ) -> Result<()> {
        check_path_id(id)?;
        self.require_tenant(tenant).await?;
        let name = ctx.terms.expand(attr);
        self.transact(tenant, &[id.to_string()], |ws| {
            let now = ws.now;
            let slot = ws.slot(id);
            let e = slot.after.as_mut().ok_or_else(|| not_found(id))?;
            let changes = e.delete_attr(&name, dataset_id, all, now);
            if changes.is_empty() {
                let which = dataset_id.map(|d| format!(" with datasetId {d}")).unwrap_or_default();
                return Err(NgsiError::not_found(format!(
                    "entity {id} has no attribute {attr}{which}"
                )));
            }
            slot.changes.extend(changes);
            Ok(())
        })
        .await
    }

    /// Every entity of one type (its expanded IRI), read page by page, at
    /// most `max` (what the live scenarios and the cockpits read each tick).
    pub async fn entities_of_type(&self, tenant: &str, type_iri: &str, max: usize) -> Result<Vec<Entity>> {
        let q = EntityQuery {
            selectors: vec![citybrain_ngsild::selector::EntitySelector {
                types: Some(citybrain_ngsild::selector::TypeExpr::Type(type_iri.to_string())),
                ..Default::default()
            }],
            ..EntityQuery::default()
        };
        let limit = self.limits().max_page.clamp(1, 1000);
        let mut out = Vec::new();
        loop {
            let page = Page {
                offset: out.len(),
                limit,
                count: false,
            };
            let r = self.query_entities(tenant, &q, page).await?;
            let n = r.entities.len();
            out.extend(r.entities);
            if n < limit || out.len() >= max {
                break;
            }
        }
        out.truncate(max);
        Ok(out)
    }

    /// GET /entities, POST /entityOperations/query
    pub async fn query_entities(&self, tenant: &str, q: &EntityQuery, page: Page) -> Result<QueryResult> {
        if page.limit > self.limits().max_page {
            return Err(NgsiError::new(
                ErrorKind::TooManyResults,
                format!(
                    "limit {} is above the maximum page size {}",
                    page.limit,
                    self.limits().max_page
                ),
            ));
        }
        self.require_tenant(tenant).await?;
        metrics::counter!("citybrain_hub_queries_total").increment(1);
        match &q.order {
            None => Ok(self.inner.store.query(tenant, q, page).await?),
            Some(order) => self.query_ordered(tenant, q, order, page).await,
        }
    }

    /// `orderBy`: every match is read (at most `max_ordered` of them), sorted,
    /// and the page cut from the sorted list.
    async fn query_ordered(
        &self,
        tenant: &str,
        q: &EntityQuery,
        order: &citybrain_ngsild::order::OrderBy,
        page: Page,
    ) -> Result<QueryResult> {
        let cap = self.limits().max_ordered;
        let step = self.limits().max_page.max(1);
        let mut all = Vec::new();
        loop {
            let r = self
                .inner
                .store
                .query(
                    tenant,
                    q,
                    Page {
                        offset: all.len(),
                        limit: step,
                        count: false,
                    },
                )
                .await?;
            let n = r.entities.len();
            all.extend(r.entities);
            if all.len() > cap {
                return Err(NgsiError::new(
                    ErrorKind::TooManyResults,
                    format!("orderBy sorts at most {cap} matching entities; narrow the query"),
                ));
            }
            if n < step {
                break;
            }
        }
        // Sort on what the caller may see: an attribute hidden from them
        // must not order their results either.
        if let Some(v) = &q.visible {
            for e in &mut all {
                v.redact(e);
            }
        }
        order.sort(&mut all);
        let total = page.count.then_some(all.len());
        let entities = all.into_iter().skip(page.offset).take(page.limit).collect();
        Ok(QueryResult { entities, total })
    }

    /// DELETE /entities?... (purge, GS CIM 009 V1.8.1 5.6.21): deletes every
    /// match, or with `drop` / `keep` only removes attributes from them;
    /// returns how many entities it changed.
    pub async fn purge(&self, tenant: &str, q: &EntityQuery, what: &Purge) -> Result<usize> {
        self.require_tenant(tenant).await?;
        // Every matching id first: dropping attributes may change what matches.
        let mut ids: Vec<String> = Vec::new();
        loop {
            let page = self
                .inner
                .store
                .query(
                    tenant,
                    q,
                    Page {
                        offset: ids.len(),
                        limit: 500,
                        count: false,
                    },
                )
                .await?;
            let n = page.entities.len();
            ids.extend(page.entities.into_iter().map(|e| e.id));
            if n < 500 {
                break;
            }
        }
        let mut changed = 0;
        for chunk in ids.chunks(500) {
            changed += self
                .transact(tenant, chunk, |ws| {
                    let mut n = 0;
                    for id in chunk {
                        match what {
                            Purge::Entities => {
                                if ws.delete(id).is_ok() {
                                    n += 1;
                                }
                            }
                            Purge::Drop(names) | Purge::Keep(names) => {
                                let now = ws.now;
                                let slot = ws.slot(id);
                                let Some(e) = slot.after.as_mut() else { continue };
                                let doomed: Vec<String> = e
                                    .attrs
                                    .keys()
                                    .filter(|a| names.contains(a) == matches!(what, Purge::Drop(_)))
                                    .cloned()
                                    .collect();
                                for a in &doomed {
                                    let c = e.delete_attr(a, None, true, now);
                                    slot.changes.extend(c);
                                }
                                if !doomed.is_empty() {
                                    n += 1;
                                }
                            }
                        }
                    }
                    Ok(n)
                })
                .await?;
        }
        Ok(changed)
    }

    pub async fn types(&self, tenant: &str) -> Result<Vec<TypeInfo>> {
        self.require_tenant(tenant).await?;
        Ok(self.inner.store.types(tenant).await?)
    }

    fn check_batch(&self, n: usize) -> Result<()> {
        if n > self.limits().max_batch {
            return Err(NgsiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "batch of {n} entities is above the limit of {}",
                    self.limits().max_batch
                ),
            ));
        }
        Ok(())
    }

    /// Batch create / upsert / update / merge, one commit for the whole batch.
    pub async fn batch_write(
        &self,
        tenant: &str,
        items: &[Value],
        ctx: &RequestContext,
        op: BatchOp,
    ) -> Result<BatchResult> {
        self.check_batch(items.len())?;
        if !matches!(op, BatchOp::Create | BatchOp::Upsert { .. }) {
            self.require_tenant(tenant).await?;
        }
        let mode = if matches!(op, BatchOp::Update { .. } | BatchOp::Merge) {
            Mode::Merge
        } else {
            Mode::Create
        };
        let parse_all = || -> Vec<std::result::Result<Fragment, BatchError>> {
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let id_hint = v
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("(entity #{i})"));
                    self.parse_body(v, ctx, mode)
                        .and_then(|f| match (&f.id, &f.types, op) {
                            (None, _, _) => Err(NgsiError::bad_data("entity has no 'id'")),
                            (_, None, BatchOp::Create | BatchOp::Upsert { .. }) => {
                                Err(NgsiError::bad_data("entity has no 'type'"))
                            }
                            _ => Ok(f),
                        })
                        .map_err(|error| BatchError {
                            entity_id: id_hint,
                            error,
                        })
                })
                .collect()
        };
        let mut parsed = parse_all();
        let ids: Vec<String> = {
            let mut seen = HashSet::new();
            parsed
                .iter()
                .filter_map(|p| p.as_ref().ok()?.id.clone())
                .filter(|id| seen.insert(id.clone()))
                .collect()
        };
        let mut first_attempt = true;
        self.transact(tenant, &ids, |ws| {
            let mut r = BatchResult::default();
            // An id repeated in a batch is reported once.
            let (mut success_seen, mut created_seen) = (HashSet::new(), HashSet::new());
            // The parsed fragments are consumed; a retry after a conflict parses again.
            let fragments = if std::mem::take(&mut first_attempt) {
                std::mem::take(&mut parsed)
            } else {
                parse_all()
            };
            for p in fragments {
                let f = match p {
                    Ok(f) => f,
                    Err(e) => {
                        r.errors.push(e);
                        continue;
                    }
                };
                let id = f.id.clone().unwrap_or_default();
                let exists = ws.current(&id).is_some();
                let outcome: Result<()> = match op {
                    BatchOp::Create => f.into_entity(ws.now).and_then(|e| ws.create(e)),
                    BatchOp::Upsert { replace } => {
                        if !exists {
                            let created = f.into_entity(ws.now).and_then(|e| ws.create(e));
                            if created.is_ok() && created_seen.insert(id.clone()) {
                                r.created.push(id.clone());
                            }
                            created
                        } else if replace {
                            ws.replace(&id, f)
                        } else {
                            ws.write(&id, f, WriteMode::Overwrite).map(|_| ())
                        }
                    }
                    BatchOp::Update { no_overwrite } => {
                        let mode = if no_overwrite {
                            WriteMode::NoOverwrite
                        } else {
                            WriteMode::Overwrite
                        };
                        if !exists {
                            Err(not_found(&id))
                        } else {
                            ws.write(&id, f, mode).map(|_| ())
                        }
                    }
                    BatchOp::Merge => ws.write(&id, f, WriteMode::Merge).map(|_| ()),
                };
                match outcome {
                    Ok(()) => {
                        if success_seen.insert(id.clone()) {
                            r.success.push(id)
                        }
                    }
                    Err(error) => r.errors.push(BatchError { entity_id: id, error }),
                }
            }
            Ok(r)
        })
        .await
    }

    /// POST /entityOperations/delete
    pub async fn batch_delete(&self, tenant: &str, ids: &[Value]) -> Result<BatchResult> {
        self.check_batch(ids.len())?;
        self.require_tenant(tenant).await?;
        let mut r = BatchResult::default();
        let mut valid = Vec::new();
        for v in ids {
            match v.as_str().filter(|s| citybrain_ngsild::context::looks_like_iri(s)) {
                Some(id) => valid.push(id.to_string()),
                None => r.errors.push(BatchError {
                    entity_id: v.to_string(),
                    error: NgsiError::bad_data("not an entity id (URI)"),
                }),
            }
        }
        let done = self
            .transact(tenant, &valid, |ws| {
                let mut out = BatchResult::default();
                for id in &valid {
                    match ws.delete(id) {
                        Ok(()) => out.success.push(id.clone()),
                        Err(error) => out.errors.push(BatchError {
                            entity_id: id.clone(),
                            error,
                        }),
                    }
                }
                Ok(out)
            })
            .await?;
        r.success = done.success;
        r.errors.extend(done.errors);
        Ok(r)
    }
}

/// What a purge removes from the matching entities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// The entities themselves.
    Entities,
    /// These attributes (expanded names).
    Drop(Vec<String>),
    /// Every attribute but these.
    Keep(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOp {
    Create,
    Upsert { replace: bool },
    Update { no_overwrite: bool },
    Merge,
}

fn check_id_matches(id: &str, f: &Fragment) -> Result<()> {
    match &f.id {
        Some(other) if other != id => Err(NgsiError::bad_data(format!(
            "body id {other} differs from the id in the URL {id}"
        ))),
        _ => Ok(()),
    }
}
