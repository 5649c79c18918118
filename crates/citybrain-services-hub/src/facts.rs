//! Facts about a subject from the hub: its entity and the entities related
//! to it that a policy reads (household members, say), gathered as the
//! system, for one decision or for many.

use std::collections::HashMap;

use citybrain_hub::Hub;
use citybrain_ngsild::q::Query;
use citybrain_ngsild::render::{self, RenderOptions};
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
    // A whole city passes through here: entities are read a page at a time
    // and rendered with only the attributes the policy reads.
    let only = |names: Vec<&String>| RenderOptions {
        attrs: Some(names.into_iter().map(|n| terms.expand(n)).collect()),
        ..RenderOptions::default()
    };
    let mut groups: HashMap<String, Vec<Value>> = HashMap::new();
    let mut read = std::collections::HashSet::new();
    for input in &policy.inputs {
        let InputSource::Related { entity_type, via, .. } = &input.source else {
            continue;
        };
        if !read.insert((entity_type, via)) {
            continue;
        }
        let mut names: Vec<&String> = vec![via];
        for other in &policy.inputs {
            if let InputSource::Related {
                entity_type: t,
                via: v,
                fields,
            } = &other.source
            {
                if t == entity_type && v == via {
                    names.extend(fields.iter().map(|(_, a, _)| a));
                }
            }
        }
        let o = only(names);
        each_page(hub, tenant, &terms.expand(entity_type), max.saturating_mul(8), |page| {
            for e in page {
                let json = render::entity(e, terms, &o);
                if let Some(Value::String(target)) = gather::attribute(&json, via) {
                    groups.entry(target).or_default().push(json);
                }
            }
        })
        .await?;
    }
    let o = only(
        policy
            .inputs
            .iter()
            .filter_map(|i| match &i.source {
                InputSource::Attribute(a) => Some(a),
                _ => None,
            })
            .collect(),
    );
    let mut out = Vec::new();
    each_page(hub, tenant, &terms.expand(&policy.applies_to), max, |page| {
        for s in page {
            let mut json = render::entity(s, terms, &o);
            json["id"] = Value::String(s.id.clone());
            let rel = groups.get(&s.id).map(Vec::as_slice).unwrap_or(&[]);
            out.push((s.id.clone(), gather::facts(policy, &json, rel)));
        }
    })
    .await?;
    Ok(out)
}

/// Every entity of a type (expanded IRI), a page at a time, at most `max`.
async fn each_page(
    hub: &Hub,
    tenant: &str,
    type_iri: &str,
    max: usize,
    mut f: impl FnMut(&[Entity]),
) -> Result<(), Error> {
    let q = EntityQuery {
        selectors: vec![EntitySelector {
            types: Some(TypeExpr::Type(type_iri.to_string())),
            ..EntitySelector::default()
        }],
        ..EntityQuery::default()
    };
    let limit = hub.limits().max_page.clamp(1, 1000);
    let mut seen = 0;
    loop {
        let page = Page {
            offset: seen,
            limit,
            count: false,
        };
        let r = hub.query_entities(tenant, &q, page).await?;
        let n = r.entities.len();
        let take = n.min(max.saturating_sub(seen));
        f(&r.entities[..take]);
        seen += take;
        if n < limit || seen >= max {
            return Ok(());
        }
    }
}
