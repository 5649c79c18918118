//! What one caller may see: a set of entity types, each with the attributes
//! it may read and, for personal records, the owner they must belong to.
//!
//! It is part of [`crate::selector::EntityQuery`] so that every backend
//! applies it where it applies the rest of the filter — a count, a page, a
//! subscription match or a temporal query never sees an entity the caller
//! may not read. Who gets which visibility is decided elsewhere (the trust
//! crate compiles a data-sharing policy into one per caller).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::model::{main_value, Entity};

/// Which attributes of a type a clause opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrSet {
    All,
    /// Expanded attribute IRIs.
    Only(HashSet<String>),
}

impl AttrSet {
    pub fn contains(&self, attr: &str) -> bool {
        match self {
            AttrSet::All => true,
            AttrSet::Only(s) => s.contains(attr),
        }
    }

    /// The union of two sets.
    pub fn union(&mut self, other: &AttrSet) {
        match (&mut *self, other) {
            (AttrSet::All, _) => {}
            (_, AttrSet::All) => *self = AttrSet::All,
            (AttrSet::Only(a), AttrSet::Only(b)) => a.extend(b.iter().cloned()),
        }
    }
}

/// Entities of one type that must belong to one owner: the owner's id is the
/// entity id itself (`attr` None) or the object/value of attribute `attr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub attr: Option<String>,
    pub subject: String,
}

impl Owner {
    pub fn owns(&self, e: &Entity) -> bool {
        match &self.attr {
            None => e.id == self.subject,
            Some(a) => e.attrs.get(a).is_some_and(|instances| {
                instances.iter().any(|i| match main_value(i) {
                    Some(Value::String(s)) => *s == self.subject,
                    Some(Value::Array(v)) => v.iter().any(|x| x.as_str() == Some(&self.subject)),
                    _ => false,
                })
            }),
        }
    }
}

/// One grant on one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    pub attrs: AttrSet,
    pub owner: Option<Owner>,
}

/// What a caller may read. `Visibility::everything()` is the administrator's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Visibility {
    everything: bool,
    /// Expanded type IRI → the clauses that open it.
    by_type: HashMap<String, Vec<Clause>>,
}

impl Visibility {
    pub fn everything() -> Self {
        Visibility {
            everything: true,
            by_type: HashMap::new(),
        }
    }

    /// Nothing at all (add clauses with [`Visibility::grant`]).
    pub fn nothing() -> Self {
        Visibility::default()
    }

    pub fn is_everything(&self) -> bool {
        self.everything
    }

    pub fn grant(&mut self, type_iri: impl Into<String>, clause: Clause) {
        self.by_type.entry(type_iri.into()).or_default().push(clause);
    }

    /// The types any clause opens (for discovery endpoints).
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// Whether some clause opens entities of this type (owner aside).
    pub fn opens_type(&self, type_iri: &str) -> bool {
        self.everything || self.by_type.contains_key(type_iri)
    }

    /// Whether some clause opens every entity of this type (no owner condition).
    pub fn opens_type_openly(&self, type_iri: &str) -> bool {
        self.everything
            || self
                .by_type
                .get(type_iri)
                .is_some_and(|cs| cs.iter().any(|c| c.owner.is_none()))
    }

    /// The attributes readable on every entity of this type (the union of its
    /// clauses without an owner condition); None when no such clause exists.
    pub fn open_attrs(&self, type_iri: &str) -> Option<AttrSet> {
        if self.everything {
            return Some(AttrSet::All);
        }
        let mut out: Option<AttrSet> = None;
        for c in self.by_type.get(type_iri)?.iter().filter(|c| c.owner.is_none()) {
            match &mut out {
                None => out = Some(c.attrs.clone()),
                Some(a) => a.union(&c.attrs),
            }
        }
        out
    }

    fn satisfied<'a>(&'a self, e: &'a Entity) -> impl Iterator<Item = &'a Clause> + 'a {
        e.types
            .iter()
            .filter_map(|t| self.by_type.get(t))
            .flatten()
            .filter(|c| c.owner.as_ref().is_none_or(|o| o.owns(e)))
    }

    /// May the caller see this entity at all?
    pub fn sees(&self, e: &Entity) -> bool {
        self.everything || self.satisfied(e).next().is_some()
    }

    /// The attributes of `e` the caller may read (None: all of them).
    pub fn readable_attrs(&self, e: &Entity) -> Option<AttrSet> {
        if self.everything {
            return None;
        }
        let mut out: Option<AttrSet> = None;
        for c in self.satisfied(e) {
            match &mut out {
                None => out = Some(c.attrs.clone()),
                Some(a) => a.union(&c.attrs),
            }
        }
        match out {
            Some(AttrSet::All) => None,
            Some(a) => Some(a),
            None => Some(AttrSet::Only(HashSet::new())),
        }
    }

    /// Removes the attributes the caller may not read.
    pub fn redact(&self, e: &mut Entity) {
        if let Some(allowed) = self.readable_attrs(e) {
            e.attrs.retain(|name, _| allowed.contains(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity(id: &str, ty: &str, attrs: Value) -> Entity {
        let mut e = Entity::new(id.into(), vec![ty.into()], vec![], chrono::Utc::now());
        for (k, v) in attrs.as_object().unwrap() {
            e.attrs.insert(k.clone(), vec![v.as_object().unwrap().clone()]);
        }
        e
    }

    #[test]
    fn owner_clause_opens_only_the_owners_records() {
        let mut v = Visibility::nothing();
        v.grant(
            "T:Application",
            Clause {
                attrs: AttrSet::All,
                owner: Some(Owner {
                    attr: Some("A:applicant".into()),
                    subject: "urn:p:1".into(),
                }),
            },
        );
        let mine = entity(
            "urn:a:1",
            "T:Application",
            json!({"A:applicant": {"type": "Relationship", "object": "urn:p:1"}}),
        );
        let theirs = entity(
            "urn:a:2",
            "T:Application",
            json!({"A:applicant": {"type": "Relationship", "object": "urn:p:2"}}),
        );
        let other_type = entity("urn:p:1", "T:Person", json!({}));
        assert!(v.sees(&mine));
        assert!(!v.sees(&theirs));
        assert!(!v.sees(&other_type));
        assert!(Visibility::everything().sees(&theirs));
    }

    #[test]
    fn redaction_keeps_the_union_of_satisfied_clauses() {
        let only = |a: &[&str]| AttrSet::Only(a.iter().map(|s| s.to_string()).collect());
        let mut v = Visibility::nothing();
        v.grant(
            "T:Person",
            Clause {
                attrs: only(&["A:name"]),
                owner: None,
            },
        );
        v.grant(
            "T:Person",
            Clause {
                attrs: only(&["A:income"]),
                owner: Some(Owner {
                    attr: None,
                    subject: "urn:p:1".into(),
                }),
            },
        );
        let attrs = json!({"A:name": {"value": "x"}, "A:income": {"value": 1}, "A:health": {"value": "y"}});
        let mut me = entity("urn:p:1", "T:Person", attrs.clone());
        let mut other = entity("urn:p:2", "T:Person", attrs);
        v.redact(&mut me);
        v.redact(&mut other);
        assert_eq!(me.attrs.keys().collect::<Vec<_>>(), ["A:income", "A:name"]);
        assert_eq!(other.attrs.keys().collect::<Vec<_>>(), ["A:name"]);
    }
}
