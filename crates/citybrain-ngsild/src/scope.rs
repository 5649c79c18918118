//! `scopeQ` (clause 4.19): `/a/b` exact, `/a/#` the subtree, `/a/+` one level
//! below; `,` or `|` is OR, `;` is AND (binding tighter), parentheses group.

use crate::error::{NgsiError, Result};

const MAX_TERMS: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub enum ScopeQuery {
    Or(Vec<ScopeQuery>),
    And(Vec<ScopeQuery>),
    Path(Vec<String>),
}

impl ScopeQuery {
    pub fn parse(src: &str) -> Result<ScopeQuery> {
        let mut p = P { s: src, i: 0, terms: 0 };
        let q = p.or()?;
        if p.i != src.len() {
            return Err(NgsiError::bad_data(format!(
                "scopeQ: unexpected text at position {} in '{src}'",
                p.i
            )));
        }
        Ok(q)
    }

    /// True if any of the entity's scopes satisfies the query.
    pub fn matches(&self, scopes: &[String]) -> bool {
        match self {
            ScopeQuery::Or(qs) => qs.iter().any(|q| q.matches(scopes)),
            ScopeQuery::And(qs) => qs.iter().all(|q| q.matches(scopes)),
            ScopeQuery::Path(segs) => scopes.iter().any(|s| path_matches(segs, s)),
        }
    }
}

fn path_matches(pattern: &[String], scope: &str) -> bool {
    let segs: Vec<&str> = scope
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let mut i = 0;
    for p in pattern {
        match p.as_str() {
            "#" => return true,
            "+" => {
                if i >= segs.len() {
                    return false;
                }
            }
            lit => {
                if segs.get(i) != Some(&lit) {
                    return false;
                }
            }
        }
        i += 1;
    }
    i == segs.len()
}

struct P<'a> {
    s: &'a str,
    i: usize,
    terms: usize,
}

impl P<'_> {
    fn err(&self, what: &str) -> NgsiError {
        NgsiError::bad_data(format!("scopeQ: {what} at position {} in '{}'", self.i, self.s))
    }
    fn eat(&mut self, c: char) -> bool {
        if self.s[self.i..].starts_with(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn or(&mut self) -> Result<ScopeQuery> {
        let mut v = vec![self.and()?];
        // orOp is `|` or `,` (4.19 ABNF).
        while self.eat(',') || self.eat('|') {
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { ScopeQuery::Or(v) })
    }
    fn and(&mut self) -> Result<ScopeQuery> {
        let mut v = vec![self.factor()?];
        while self.eat(';') {
            v.push(self.factor()?);
        }
        Ok(if v.len() == 1 { v.remove(0) } else { ScopeQuery::And(v) })
    }
    fn factor(&mut self) -> Result<ScopeQuery> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(NgsiError::too_complex("scopeQ has too many terms"));
        }
        if self.eat('(') {
            let q = self.or()?;
            if !self.eat(')') {
                return Err(self.err("missing ')'"));
            }
            return Ok(q);
        }
        if !self.eat('/') {
            return Err(self.err("a scope starts with '/'"));
        }
        let start = self.i;
        while let Some(c) = self.s[self.i..].chars().next() {
            if matches!(c, ',' | '|' | ';' | '(' | ')') {
                break;
            }
            self.i += c.len_utf8();
        }
        let body = &self.s[start..self.i];
        let segs: Vec<String> = if body.is_empty() {
            vec![]
        } else {
            body.split('/').map(str::to_string).collect()
        };
        for (n, seg) in segs.iter().enumerate() {
            let last = n + 1 == segs.len();
            if seg.is_empty() || (seg == "#" && !last) || (seg.contains(['#', '+']) && seg.len() > 1) {
                return Err(self.err(&format!("bad scope segment '{seg}'")));
            }
        }
        Ok(ScopeQuery::Path(segs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(q: &str, scopes: &[&str]) -> bool {
        let s: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        ScopeQuery::parse(q).unwrap().matches(&s)
    }

    #[test]
    fn scope_semantics() {
        assert!(m("/hz/shangcheng", &["/hz/shangcheng"]));
        assert!(!m("/hz", &["/hz/shangcheng"]));
        assert!(m("/hz/#", &["/hz/shangcheng/x"]));
        assert!(m("/hz/#", &["/hz"]));
        assert!(m("/hz/+", &["/hz/shangcheng"]));
        assert!(!m("/hz/+", &["/hz/a/b"]));
        assert!(m("/a,/b", &["/b"]));
        assert!(m("/a;/b", &["/a", "/b"]));
        assert!(!m("/a;/b", &["/a"]));
        assert!(m("(/a,/c);/b", &["/c", "/b"]));
        assert!(m("/#", &["/x/y"]));
        assert!(!m("/#", &[]));
    }

    #[test]
    fn bad_scope_queries() {
        for bad in ["a", "/a/#/b", "(/a", "/a//b", "/a/b#"] {
            assert!(ScopeQuery::parse(bad).is_err(), "{bad}");
        }
    }
}
