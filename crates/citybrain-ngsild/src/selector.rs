//! Which entities a query or subscription is about: ids, id patterns, type
//! selections (`A,B` OR, `A;B` AND, parentheses), attribute presence, `q`,
//! `scopeQ` and geo-queries, combined in one [`EntityQuery`].

use regex::Regex;

use crate::context::TermMap;
use crate::error::{NgsiError, Result};
use crate::geo::{self, GeoQuery};
use crate::model::Entity;
use crate::q::Query;
use crate::scope::ScopeQuery;

const MAX_TYPE_TERMS: usize = 64;

/// A type selection over expanded type IRIs.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    Type(String),
    Or(Vec<TypeExpr>),
    And(Vec<TypeExpr>),
}

impl TypeExpr {
    pub fn parse(src: &str, ctx: &TermMap) -> Result<TypeExpr> {
        let mut p = TP {
            s: src,
            i: 0,
            ctx,
            terms: 0,
        };
        let t = p.or()?;
        if p.i != src.len() {
            return Err(NgsiError::bad_data(format!(
                "type: unexpected text at position {} in '{src}'",
                p.i
            )));
        }
        Ok(t)
    }

    pub fn matches(&self, types: &[String]) -> bool {
        match self {
            TypeExpr::Type(t) => types.iter().any(|x| x == t),
            TypeExpr::Or(v) => v.iter().any(|t| t.matches(types)),
            TypeExpr::And(v) => v.iter().all(|t| t.matches(types)),
        }
    }

    /// A set of types of which every matching entity has at least one: lets a
    /// backend pre-filter by an index before evaluating the whole expression.
    pub fn candidates(&self) -> Vec<String> {
        match self {
            TypeExpr::Type(t) => vec![t.clone()],
            TypeExpr::Or(v) => {
                let mut out: Vec<String> = v.iter().flat_map(TypeExpr::candidates).collect();
                out.sort();
                out.dedup();
                out
            }
            TypeExpr::And(v) => v.first().map(TypeExpr::candidates).unwrap_or_default(),
        }
    }
}

struct TP<'a> {
    s: &'a str,
    i: usize,
    ctx: &'a TermMap,
    terms: usize,
}

impl TP<'_> {
    fn eat(&mut self, c: char) -> bool {
        if self.s[self.i..].starts_with(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn or(&mut self) -> Result<TypeExpr> {
        let mut v = vec![self.and()?];
        while self.eat(',') || self.eat('|') {
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { TypeExpr::Or(v) })
    }
    fn and(&mut self) -> Result<TypeExpr> {
        let mut v = vec![self.factor()?];
        while self.eat(';') {
            v.push(self.factor()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { TypeExpr::And(v) })
    }
    fn factor(&mut self) -> Result<TypeExpr> {
        self.terms += 1;
        if self.terms > MAX_TYPE_TERMS {
            return Err(NgsiError::too_complex("type selection has too many terms"));
        }
        if self.eat('(') {
            let t = self.or()?;
            if !self.eat(')') {
                return Err(NgsiError::bad_data(format!("type: missing ')' in '{}'", self.s)));
            }
            return Ok(t);
        }
        let start = self.i;
        while let Some(c) = self.s[self.i..].chars().next() {
            if matches!(c, ',' | ';' | '|' | '(' | ')') {
                break;
            }
            self.i += c.len_utf8();
        }
        let name = self.s[start..self.i].trim();
        if name.is_empty() {
            return Err(NgsiError::bad_data(format!("type: empty type name in '{}'", self.s)));
        }
        Ok(TypeExpr::Type(self.ctx.expand(name)))
    }
}

/// One `{id | idPattern, type}` entry of a query or subscription.
#[derive(Debug, Clone, Default)]
pub struct EntitySelector {
    pub ids: Vec<String>,
    pub id_pattern: Option<Regex>,
    pub types: Option<TypeExpr>,
}

impl EntitySelector {
    pub fn matches(&self, e: &Entity) -> bool {
        (self.ids.is_empty() || self.ids.contains(&e.id))
            && self.id_pattern.as_ref().is_none_or(|r| r.is_match(&e.id))
            && self.types.as_ref().is_none_or(|t| t.matches(&e.types))
    }
}

/// Compiles an `idPattern` (a regular expression, size-limited).
pub fn id_pattern(p: &str) -> Result<Regex> {
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| NgsiError::bad_data(format!("idPattern '{p}' is not a valid regular expression: {e}")))
}

/// A whole entity filter. Selectors are OR'ed (empty: any entity); every other
/// part must hold too.
#[derive(Debug, Clone, Default)]
pub struct EntityQuery {
    pub selectors: Vec<EntitySelector>,
    /// Entities must have at least one of these attributes (expanded), if any.
    pub attrs: Vec<String>,
    pub q: Option<Query>,
    pub scope_q: Option<ScopeQuery>,
    pub geo: Option<GeoQuery>,
    /// `orderBy`: the order of the results (not a filter; the hub sorts).
    pub order: Option<crate::order::OrderBy>,
    /// What the caller may read (None: no restriction). Applied like every
    /// other part of the filter, so counts and pages never see the rest.
    pub visible: Option<std::sync::Arc<crate::access::Visibility>>,
}

impl EntityQuery {
    /// Whether `e` is in the result. With a visibility, the filter is judged
    /// on the entity as the caller may see it (hidden attributes removed), so
    /// a `q` on an attribute one may not read finds nothing by it.
    pub fn matches(&self, e: &Entity) -> bool {
        if let Some(v) = &self.visible {
            if !v.sees(e) {
                return false;
            }
            if let Some(allowed) = v.readable_attrs(e) {
                let mut seen = e.clone();
                seen.attrs.retain(|name, _| allowed.contains(name));
                return self.matches_as_is(&seen);
            }
        }
        self.matches_as_is(e)
    }

    fn matches_as_is(&self, e: &Entity) -> bool {
        (self.selectors.is_empty() || self.selectors.iter().any(|s| s.matches(e)))
            && (self.attrs.is_empty() || self.attrs.iter().any(|a| e.attrs.contains_key(a)))
            && self.scope_q.as_ref().is_none_or(|s| s.matches(&e.scope))
            && self.q.as_ref().is_none_or(|q| q.eval(e))
            && self.geo.as_ref().is_none_or(|g| geo_matches(g, e))
    }

    /// True when the query says nothing about which entities it wants.
    pub fn is_unrestricted(&self) -> bool {
        self.selectors.is_empty()
            && self.attrs.is_empty()
            && self.q.is_none()
            && self.scope_q.is_none()
            && self.geo.is_none()
    }

    /// Exact ids, when every selector names ids (lets a backend look them up directly).
    pub fn exact_ids(&self) -> Option<Vec<String>> {
        if self.selectors.is_empty() || self.selectors.iter().any(|s| s.ids.is_empty()) {
            return None;
        }
        let mut ids: Vec<String> = self.selectors.iter().flat_map(|s| s.ids.iter().cloned()).collect();
        ids.sort();
        ids.dedup();
        Some(ids)
    }

    /// Candidate types (see [`TypeExpr::candidates`]), when every selector has a type.
    pub fn candidate_types(&self) -> Option<Vec<String>> {
        if self.selectors.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for s in &self.selectors {
            out.extend(s.types.as_ref()?.candidates());
        }
        out.sort();
        out.dedup();
        Some(out)
    }
}

fn geo_matches(g: &GeoQuery, e: &Entity) -> bool {
    let Some(list) = e.attrs.get(&g.property) else {
        return false;
    };
    list.iter().any(|inst| {
        inst.get("value")
            .and_then(|v| geo::parse_geometry(v, usize::MAX).ok())
            .is_some_and(|geom| g.test(&geom))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_expressions() {
        let ctx = TermMap::core();
        let t = |s: &str| vec![ctx.expand(s)];
        let both = vec![ctx.expand("A"), ctx.expand("B")];
        let e = TypeExpr::parse("A,B", &ctx).unwrap();
        assert!(e.matches(&t("A")) && e.matches(&t("B")) && !e.matches(&t("C")));
        let e = TypeExpr::parse("A;B", &ctx).unwrap();
        assert!(e.matches(&both) && !e.matches(&t("A")));
        let e = TypeExpr::parse("(A;B),C", &ctx).unwrap();
        assert!(e.matches(&both) && e.matches(&t("C")) && !e.matches(&t("B")));
        assert_eq!(e.candidates().len(), 2);
        assert!(TypeExpr::parse("A,", &ctx).is_err());
        assert!(TypeExpr::parse("(A", &ctx).is_err());
    }
}
