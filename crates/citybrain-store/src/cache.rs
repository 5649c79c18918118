//! The read cache of one tenant: every entity, parsed, at its stored version,
//! with a type index and an equality index over attribute values.
//!
//! Why: parsing JSON documents dominated reads and queries. The database
//! stays the source of truth; each backend loads the cache from it and
//! changes it only after a successful commit (SQLite: under its one writer;
//! PostgreSQL: also from the change numbers other servers committed), so it
//! never runs ahead of what is durable. It holds the whole tenant in memory
//! (a few KB per entity).
//!
//! **Invariant:** the value index holds, for every attribute, every scalar a
//! `q` equality on that attribute's plain path could match; a query planned
//! from it is then re-checked in full with `EntityQuery::matches`, so the
//! index only ever narrows the scan, never decides a result.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use citybrain_ngsild::model::{kind_of, main_value};
use citybrain_ngsild::q::{Lit, Op, Operand, Query};
use citybrain_ngsild::selector::EntityQuery;
use citybrain_ngsild::Entity;
use serde_json::Value;

/// A scalar as the equality index keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Num(u64),
    Str(Box<str>),
    Bool(bool),
}

fn num_key(f: f64) -> Key {
    // One key for 0.0 and -0.0, as == treats them.
    Key::Num(if f == 0.0 { 0.0f64.to_bits() } else { f.to_bits() })
}

fn keys_of(v: &Value, out: &mut Vec<Key>) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.push(num_key(f));
            }
        }
        Value::String(s) => out.push(Key::Str(s.as_str().into())),
        Value::Bool(b) => out.push(Key::Bool(*b)),
        Value::Array(items) => items.iter().for_each(|i| keys_of(i, out)),
        Value::Null | Value::Object(_) => {}
    }
}

/// Every key a plain-path `q` equality can match in this entity, by attribute.
fn entity_keys(e: &Entity) -> Vec<(&str, Vec<Key>)> {
    let mut out = Vec::with_capacity(e.attrs.len());
    for (name, instances) in &e.attrs {
        let mut keys = Vec::new();
        for inst in instances {
            match (kind_of(inst), main_value(inst)) {
                ("LanguageProperty", Some(Value::Object(m))) => m.values().for_each(|v| keys_of(v, &mut keys)),
                (_, Some(v)) => keys_of(v, &mut keys),
                _ => {}
            }
        }
        keys.sort();
        keys.dedup();
        out.push((name.as_str(), keys));
    }
    out
}

/// Keys a literal can equal (see `q::compare`: a string equals a bare number
/// token by its text, a number equals a numeric string literal). None when the
/// index cannot answer (a date-like string compares as an instant).
fn literal_keys(l: &Lit) -> Option<Vec<Key>> {
    match l {
        Lit::Num(f, raw) => Some(vec![num_key(*f), Key::Str(raw.as_str().into())]),
        Lit::Bool(b) => Some(vec![Key::Bool(*b)]),
        Lit::Str(s) => {
            let b = s.as_bytes();
            let date_like = b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-';
            if date_like {
                return None;
            }
            let mut keys = vec![Key::Str(s.as_str().into())];
            if let Ok(f) = s.parse::<f64>() {
                keys.push(num_key(f));
            }
            Some(keys)
        }
    }
}

#[derive(Default)]
pub struct TenantCache {
    pub entities: BTreeMap<String, (u64, Arc<Entity>)>,
    /// The same entities by type, in id order (saves a lookup per scanned entity).
    pub by_type: HashMap<String, BTreeMap<String, Arc<Entity>>>,
    /// attribute IRI → scalar → ids holding it.
    by_value: HashMap<String, HashMap<Key, BTreeSet<String>>>,
}

impl TenantCache {
    /// The entities of `ids` it holds, at their versions (`Store::get`).
    pub fn get(&self, ids: &[String]) -> Vec<crate::Stored> {
        ids.iter()
            .filter_map(|id| self.entities.get(id))
            .map(|(v, e)| crate::Stored {
                entity: e.as_ref().clone(),
                version: *v,
            })
            .collect()
    }

    /// A page of the entities matching `q`, with the total when asked (`Store::query`).
    pub fn query(&self, q: &EntityQuery, page: crate::Page) -> crate::QueryResult {
        let mut out = Vec::new();
        let mut matched = 0usize;
        let mut visit = |e: &Arc<Entity>| -> bool {
            if !q.matches(e) {
                return true;
            }
            if matched >= page.offset && out.len() < page.limit {
                out.push(e.as_ref().clone());
            }
            matched += 1;
            page.count || out.len() < page.limit
        };
        self.scan(q, &mut visit);
        crate::QueryResult {
            entities: out,
            total: page.count.then_some(matched),
        }
    }

    /// Every type with its count and the kinds of each attribute (`Store::types`).
    pub fn types(&self) -> Vec<crate::TypeInfo> {
        let mut out = Vec::with_capacity(self.by_type.len());
        for (type_iri, ids) in &self.by_type {
            let mut attrs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for e in ids.values() {
                for (name, list) in &e.attrs {
                    let kinds = attrs.entry(name.clone()).or_default();
                    for a in list {
                        kinds.insert(kind_of(a).to_string());
                    }
                }
            }
            out.push(crate::TypeInfo {
                type_iri: type_iri.clone(),
                entity_count: ids.len(),
                attrs: attrs.into_iter().map(|(a, k)| (a, k.into_iter().collect())).collect(),
            });
        }
        out.sort_by(|a, b| a.type_iri.cmp(&b.type_iri));
        out
    }

    pub fn put(&mut self, e: Arc<Entity>, version: u64) {
        self.remove(&e.id);
        for t in &e.types {
            self.by_type
                .entry(t.clone())
                .or_default()
                .insert(e.id.clone(), e.clone());
        }
        for (attr, keys) in entity_keys(&e) {
            let idx = self.by_value.entry(attr.to_string()).or_default();
            for k in keys {
                idx.entry(k).or_default().insert(e.id.clone());
            }
        }
        self.entities.insert(e.id.clone(), (version, e));
    }

    pub fn remove(&mut self, id: &str) {
        let Some((_, old)) = self.entities.remove(id) else {
            return;
        };
        for t in &old.types {
            if let Some(set) = self.by_type.get_mut(t) {
                set.remove(id);
                if set.is_empty() {
                    self.by_type.remove(t);
                }
            }
        }
        for (attr, keys) in entity_keys(&old) {
            if let Some(idx) = self.by_value.get_mut(attr) {
                for k in keys {
                    if let Some(ids) = idx.get_mut(&k) {
                        ids.remove(id);
                        if ids.is_empty() {
                            idx.remove(&k);
                        }
                    }
                }
                if idx.is_empty() {
                    self.by_value.remove(attr);
                }
            }
        }
    }

    /// The id sets whose union an equality term can match, or None if the
    /// index cannot answer it.
    fn equality_candidates(&self, q: &Query) -> Option<Vec<&BTreeSet<String>>> {
        let Query::Compare(path, Op::Eq, operand) = q else {
            return None;
        };
        if !path.sub.is_empty() || !path.compound.is_empty() {
            return None;
        }
        let lits: Vec<&Lit> = match operand {
            Operand::One(l) => vec![l],
            Operand::List(ls) => ls.iter().collect(),
            _ => return None,
        };
        let idx = self.by_value.get(&path.attr);
        let mut out = Vec::new();
        for l in lits {
            for k in literal_keys(l)? {
                if let Some(ids) = idx.and_then(|i| i.get(&k)) {
                    out.push(ids);
                }
            }
        }
        Some(out)
    }

    /// The smallest candidate sets the value index offers for a query's `q`
    /// (its single term, or the most selective equality of its top-level AND).
    fn value_candidates(&self, q: &EntityQuery) -> Option<Vec<&BTreeSet<String>>> {
        let terms: Vec<&Query> = match q.q.as_ref()? {
            Query::And(parts) => parts.iter().collect(),
            one => vec![one],
        };
        terms
            .into_iter()
            .filter_map(|t| self.equality_candidates(t))
            .min_by_key(|sets| sets.iter().map(|s| s.len()).sum::<usize>())
    }

    /// Visits, in id order, every entity that may match `q` (a superset);
    /// `visit` returns false to stop.
    pub fn scan(&self, q: &EntityQuery, mut visit: impl FnMut(&Arc<Entity>) -> bool) {
        if let Some(ids) = q.exact_ids() {
            for id in &ids {
                if let Some((_, e)) = self.entities.get(id) {
                    if !visit(e) {
                        return;
                    }
                }
            }
            return;
        }
        let by_type: Option<Vec<&BTreeMap<String, Arc<Entity>>>> = q
            .candidate_types()
            .map(|types| types.iter().filter_map(|t| self.by_type.get(t)).collect());
        let type_size = by_type.as_ref().map(|s| s.iter().map(|m| m.len()).sum::<usize>());
        if let Some(sets) = self.value_candidates(q) {
            let n: usize = sets.iter().map(|s| s.len()).sum();
            if type_size.is_none_or(|t| n < t) {
                // One set is already in id order; several are merged.
                let ids: Box<dyn Iterator<Item = &String>> = match sets.as_slice() {
                    [one] => Box::new(one.iter()),
                    many => Box::new(many.iter().flat_map(|s| s.iter()).collect::<BTreeSet<_>>().into_iter()),
                };
                for id in ids {
                    if let Some((_, e)) = self.entities.get(id) {
                        if !visit(e) {
                            return;
                        }
                    }
                }
                return;
            }
        }
        match by_type {
            Some(sets) if sets.len() == 1 => {
                for e in sets[0].values() {
                    if !visit(e) {
                        return;
                    }
                }
            }
            Some(sets) => {
                let merged: BTreeMap<&String, &Arc<Entity>> = sets.iter().flat_map(|s| s.iter()).collect();
                for e in merged.into_values() {
                    if !visit(e) {
                        return;
                    }
                }
            }
            None => {
                for (_, e) in self.entities.values() {
                    if !visit(e) {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_ngsild::input::{parse_entity, InputLimits, Mode};
    use citybrain_ngsild::selector::{EntitySelector, TypeExpr};
    use citybrain_ngsild::{time, TermMap};
    use serde_json::json;

    fn e(v: Value) -> Arc<Entity> {
        Arc::new(
            parse_entity(&v, &TermMap::core(), &InputLimits::default(), Mode::Create)
                .unwrap()
                .into_entity(time::parse("2026-01-01T00:00:00Z").unwrap())
                .unwrap(),
        )
    }

    fn run(c: &TenantCache, q: &str) -> (Vec<String>, usize) {
        let ctx = TermMap::core();
        let eq = EntityQuery {
            selectors: vec![EntitySelector {
                types: Some(TypeExpr::parse("T", &ctx).unwrap()),
                ..Default::default()
            }],
            q: Some(Query::parse(q, &ctx).unwrap()),
            ..Default::default()
        };
        let mut seen = 0;
        let mut hits = Vec::new();
        c.scan(&eq, |x| {
            seen += 1;
            if eq.matches(x) {
                hits.push(x.id.clone());
            }
            true
        });
        (hits, seen)
    }

    #[test]
    fn the_index_narrows_and_agrees_with_a_full_scan() {
        let mut c = TenantCache::default();
        for i in 0..100 {
            c.put(
                e(
                    json!({"id": format!("urn:x:{i:03}"), "type": "T", "d": format!("d{}", i % 10), "n": i % 7,
                "tags": ["a", format!("t{}", i % 3)], "s": "5", "rel": {"object": format!("urn:r:{}", i % 4)},
                "label": {"languageMap": {"en": format!("L{}", i % 5)}}}),
                ),
                1,
            );
        }
        let (hits, seen) = run(&c, "d==\"d3\";n>2");
        assert_eq!(seen, 10, "only the d3 entities were scanned");
        assert_eq!(hits.len(), (0..100).filter(|i| i % 10 == 3 && i % 7 > 2).count());
        assert_eq!(run(&c, "tags==\"t1\"").0.len(), 33);
        assert_eq!(
            run(&c, "n==1,2").0.len(),
            (0..100).filter(|i| i % 7 == 1 || i % 7 == 2).count()
        );
        assert_eq!(run(&c, "s==5").0.len(), 100, "a bare number matches a numeric string");
        assert_eq!(run(&c, "rel==urn:r:2").0.len(), 25);
        assert_eq!(run(&c, "label==\"L4\"").0.len(), 20);
        assert_eq!(run(&c, "d==\"nope\"").1, 0);
        // Removing an entity removes it from the index.
        c.remove("urn:x:003");
        assert_eq!(run(&c, "d==\"d3\"").1, 9);
        // Re-putting with a new value moves it.
        c.put(e(json!({"id": "urn:x:013", "type": "T", "d": "d4"})), 2);
        assert_eq!(run(&c, "d==\"d3\"").1, 8);
        assert_eq!(run(&c, "d==\"d4\"").1, 11);
    }
}
