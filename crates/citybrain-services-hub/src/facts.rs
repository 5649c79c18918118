//! Facts about a subject from the hub: its entity and the entities related
//! to it that a policy reads (household members, say), gathered as the
//! system, for one decision or for many.

use std::collections::HashMap;

use citybrain_hub::Hub;
use citybrain_ngsild::q::Query;
use citybrain_ngsild::selector::{EntityQuery, EntitySelector, TypeExpr};
use citybrain_ngsild::{Entity, TermMap};
use citybrain_rules::{gather, Facts, InputSource, Policy};
use citybrain_store::Page;
use serde_json::Value;

use crate::entity::normalized;
use crate::Error;

/// The most related entities one decision reads.
pub const MAX_RELATED: usize = 1000;

/// The query for the entities of `entity_type` whose relationship `via`
/// points at `subject` (the members of a household).
pub fn related_query(
    entity_type: &str,
    via: &str,
    subject: &str,
    terms: &TermMap,
) -> citybrain_ngsild::Result<EntityQuery> {
    Ok(EntityQuery {
        selectors: vec![EntitySelector {
            types: Some(TypeExpr::parse(entity_type, terms)?),
            ..EntitySelector::default()
        }],
        q: Some(Query::parse(&format!("{via}==\"{subject}\""), terms)?),
        ..EntityQuery::default()
    })
}

/// The related entities `policy` reads about `subject`, as normalized JSON.
pub async fn related(
    hub: &Hub,
    tenant: &str,
    terms: &TermMap,
    policy: &Policy,
    subject: &str,
) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for input in &policy.inputs {
        let InputSource::Related { entity_type, via, .. } = &input.source else {
            continue;
        };
        let q = related_query(entity_type, via, subject, terms)?;
        let page = Page {
            offset: 0,
            limit: MAX_RELATED,
            count: false,
        };
        let found = hub.query_entities(tenant, &q, page).await?.entities;
        out.extend(found.iter().map(|e| normalized(e, terms)));
    }
    Ok(out)
}

/// `policy`'s facts about one subject entity.
pub async fn about(
    hub: &Hub,
    tenant: &str,
    terms: &TermMap,
    policy: &Policy,
    subject: &Entity,
) -> Result<Facts, Error> {
    let json = normalized(subject, terms);
    let rel = related(hub, tenant, terms, policy, &subject.id).await?;
    gather::facts(policy, &json, &rel)
        .map_err(|e| Error::Data(format!("the hub's data does not fit {}: {e}", policy.id)))
}

/// Every entity of `policy`'s type with its facts, reading each related
/// type once and grouping it by the relationship (the bulk of 免申即享).
pub async fn all(
    hub: &Hub,
    tenant: &str,
    terms: &TermMap,
    policy: &Policy,
    max: usize,
) -> Result<Vec<(String, Result<Facts, String>)>, Error> {
    let subjects = hub
        .entities_of_type(tenant, &terms.expand(&policy.applies_to), max)
        .await?;
    let mut groups: HashMap<String, Vec<Value>> = HashMap::new();
    let mut read = std::collections::HashSet::new();
    for input in &policy.inputs {
        let InputSource::Related { entity_type, via, .. } = &input.source else {
            continue;
        };
        if !read.insert((entity_type, via)) {
            continue;
        }
        for e in hub
            .entities_of_type(tenant, &terms.expand(entity_type), max.saturating_mul(8))
            .await?
        {
            let json = normalized(&e, terms);
            if let Some(Value::String(target)) = gather::attribute(&json, via) {
                groups.entry(target).or_default().push(json);
            }
        }
    }
    Ok(subjects
        .iter()
        .map(|s| {
            let json = normalized(s, terms);
            let rel = groups.get(&s.id).map(Vec::as_slice).unwrap_or(&[]);
            (s.id.clone(), gather::facts(policy, &json, rel))
        })
        .collect())
}
