//! The NGSI-LD query language `q` (clause 4.9), parsed once and evaluated
//! against expanded entities.
//!
//! Grammar, as implemented (`;` binds tighter than `|`):
//! ```text
//! expr   := and ('|' and)*
//! and    := factor (';' factor)*
//! factor := '(' expr ')' | '!' path | path [op value]
//! path   := name ('.' name)* ['[' key ('.' key)* ']']
//! op     := '==' | '!=' | '>' | '>=' | '<' | '<=' | '~=' | '!~='
//! value  := single (',' single)* | single '..' single
//! single := "string" | number | true | false | bare token (date-time, URI)
//! ```
//! A path's first name is an attribute term (expanded with the request's
//! @context); later dotted names are sub-attributes or the members
//! `observedAt`, `unitCode`, `datasetId`, `createdAt`, `modifiedAt`; the
//! bracket part walks into a compound value or picks a language of a
//! LanguageProperty. Comparisons against an array value match when any element
//! matches. Attribute names that are full IRIs containing '.' cannot be used in
//! `q`; use a term from the @context instead.

use std::cmp::Ordering;

use regex::Regex;
use serde_json::Value;

use crate::context::TermMap;
use crate::error::{NgsiError, Result};
use crate::model::{kind_of, main_value, Attr, Entity};
use crate::time;

/// Hard caps that keep any single query cheap to parse and evaluate.
pub const MAX_DEPTH: usize = 32;
pub const MAX_TERMS: usize = 256;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone)]
pub enum Query {
    And(Vec<Query>),
    Or(Vec<Query>),
    Exists(Path),
    NotExists(Path),
    Compare(Path, Op, Operand),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// Expanded attribute IRI.
    pub attr: String,
    /// Sub-attribute IRIs or member names, in order.
    pub sub: Vec<String>,
    /// Keys inside a compound value (or a language tag).
    pub compound: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Match,
    NoMatch,
}

#[derive(Debug, Clone)]
pub enum Operand {
    One(Lit),
    List(Vec<Lit>),
    Range(Lit, Lit),
    Pattern(Regex),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Num(f64, String),
    Str(String),
    Bool(bool),
}

const META_MEMBERS: &[&str] = &[
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
    "objectType",
];

impl Query {
    /// Parses `q`, expanding attribute names with `ctx`.
    pub fn parse(src: &str, ctx: &TermMap) -> Result<Query> {
        let mut p = Parser {
            s: src.as_bytes(),
            src,
            i: 0,
            ctx,
            terms: 0,
        };
        let q = p.expr(0)?;
        if p.i != p.s.len() {
            return Err(p.err("unexpected text"));
        }
        Ok(q)
    }

    pub fn eval(&self, e: &Entity) -> bool {
        match self {
            Query::And(qs) => qs.iter().all(|q| q.eval(e)),
            Query::Or(qs) => qs.iter().any(|q| q.eval(e)),
            Query::Exists(p) => !resolve(e, p).is_empty(),
            Query::NotExists(p) => resolve(e, p).is_empty(),
            Query::Compare(p, op, operand) => {
                let vals = resolve(e, p);
                match op {
                    // Not-equal: true when the attribute exists and no value equals.
                    Op::Ne => !vals.is_empty() && !vals.iter().any(|v| matches(v, Op::Eq, operand)),
                    Op::NoMatch => !vals.is_empty() && !vals.iter().any(|v| matches(v, Op::Match, operand)),
                    _ => vals.iter().any(|v| matches(v, *op, operand)),
                }
            }
        }
    }

    /// Every attribute IRI the query mentions (for subscription matching).
    pub fn attributes(&self, out: &mut Vec<String>) {
        match self {
            Query::And(qs) | Query::Or(qs) => qs.iter().for_each(|q| q.attributes(out)),
            Query::Exists(p) | Query::NotExists(p) | Query::Compare(p, _, _) => out.push(p.attr.clone()),
        }
    }
}

/// Values a path reaches in an entity (over every instance of the attribute).
fn resolve<'a>(e: &'a Entity, p: &Path) -> Vec<&'a Value> {
    let Some(instances) = e.attrs.get(&p.attr) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for inst in instances {
        resolve_instance(inst, &p.sub, &p.compound, &mut out);
    }
    out
}

fn resolve_instance<'a>(inst: &'a Attr, sub: &[String], compound: &[String], out: &mut Vec<&'a Value>) {
    if let Some((first, rest)) = sub.split_first() {
        if META_MEMBERS.contains(&first.as_str()) {
            if let Some(v) = inst.get(first) {
                if rest.is_empty() {
                    push_flat(v, out);
                }
            }
            return;
        }
        if let Some(Value::Object(s)) = inst.get(first) {
            resolve_instance(s, rest, compound, out);
        }
        return;
    }
    let Some(v) = main_value(inst) else { return };
    if kind_of(inst) == "LanguageProperty" {
        if let Value::Object(map) = v {
            match compound.first() {
                Some(lang) => {
                    if let Some(v) = map.get(lang) {
                        push_flat(v, out)
                    }
                }
                None => map.values().for_each(|v| push_flat(v, out)),
            }
        }
        return;
    }
    let mut cur = v;
    for k in compound {
        match cur.get(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if !cur.is_null() {
        out.push(cur);
    }
}

fn push_flat<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => out.extend(items.iter()),
        Value::Null => {}
        v => out.push(v),
    }
}

fn matches(v: &Value, op: Op, operand: &Operand) -> bool {
    if let Value::Array(items) = v {
        return items.iter().any(|i| matches(i, op, operand));
    }
    match operand {
        Operand::Pattern(re) => v.as_str().is_some_and(|s| re.is_match(s)),
        Operand::One(l) => compare(v, l).is_some_and(|o| op_holds(op, o)),
        Operand::List(ls) => op == Op::Eq && ls.iter().any(|l| compare(v, l) == Some(Ordering::Equal)),
        Operand::Range(lo, hi) => {
            op == Op::Eq
                && compare(v, lo).is_some_and(|o| o != Ordering::Less)
                && compare(v, hi).is_some_and(|o| o != Ordering::Greater)
        }
    }
}

/// `YYYY-MM-DD...`: the only strings worth parsing as dates.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-'
}

fn op_holds(op: Op, o: Ordering) -> bool {
    match op {
        Op::Eq => o == Ordering::Equal,
        Op::Ne => o != Ordering::Equal,
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
        Op::Match | Op::NoMatch => false,
    }
}

/// Orders a stored value against a literal; None when they are not comparable.
fn compare(v: &Value, l: &Lit) -> Option<Ordering> {
    match (v, l) {
        (Value::Number(n), Lit::Num(x, _)) => n.as_f64()?.partial_cmp(x),
        (Value::String(s), Lit::Num(_, raw)) => Some(s.as_str().cmp(raw.as_str())),
        (Value::String(s), Lit::Str(x)) => {
            // Dates compare as instants; only try when the literal looks like one.
            if looks_like_date(x) && looks_like_date(s) {
                if let (Some(a), Some(b)) = (time::parse(s), time::parse(x)) {
                    return Some(a.cmp(&b));
                }
                if let (Some(a), Some(b)) = (time::parse_date(s), time::parse_date(x)) {
                    return Some(a.cmp(&b));
                }
            }
            Some(s.as_str().cmp(x.as_str()))
        }
        (Value::Bool(b), Lit::Bool(x)) => Some(b.cmp(x)),
        // A Relationship or a string compared with a bare token written as a number.
        (Value::Number(n), Lit::Str(x)) => {
            let x: f64 = x.parse().ok()?;
            n.as_f64()?.partial_cmp(&x)
        }
        _ => None,
    }
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
    ctx: &'a TermMap,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, what: &str) -> NgsiError {
        NgsiError::bad_data(format!("q: {what} at position {} in '{}'", self.i, self.src))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Query> {
        if depth > MAX_DEPTH {
            return Err(NgsiError::too_complex(format!(
                "q nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut ors = vec![self.and(depth)?];
        while self.eat(b'|') {
            ors.push(self.and(depth)?);
        }
        Ok(if ors.len() == 1 {
            ors.pop().unwrap_or(Query::And(vec![]))
        } else {
            Query::Or(ors)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Query> {
        let mut ands = vec![self.factor(depth)?];
        while self.eat(b';') {
            ands.push(self.factor(depth)?);
        }
        Ok(if ands.len() == 1 {
            ands.pop().unwrap_or(Query::And(vec![]))
        } else {
            Query::And(ands)
        })
    }

    fn factor(&mut self, depth: usize) -> Result<Query> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(NgsiError::too_complex(format!("q has more than {MAX_TERMS} terms")));
        }
        if self.eat(b'(') {
            let q = self.expr(depth + 1)?;
            if !self.eat(b')') {
                return Err(self.err("missing ')'"));
            }
            return Ok(q);
        }
        if self.peek() == Some(b'!') && self.s.get(self.i + 1) != Some(&b'~') {
            self.i += 1;
            let p = self.path()?;
            return Ok(Query::NotExists(p));
        }
        let path = self.path()?;
        let Some(op) = self.op() else {
            return Ok(Query::Exists(path));
        };
        let operand = if matches!(op, Op::Match | Op::NoMatch) {
            self.pattern()?
        } else {
            self.value()?
        };
        if matches!(operand, Operand::List(_) | Operand::Range(..)) && !matches!(op, Op::Eq | Op::Ne) {
            return Err(self.err("lists and ranges only work with == and !="));
        }
        Ok(Query::Compare(path, op, operand))
    }

    fn op(&mut self) -> Option<Op> {
        let rest = &self.s[self.i..];
        let (op, n) = if rest.starts_with(b"==") {
            (Op::Eq, 2)
        } else if rest.starts_with(b"!=") {
            (Op::Ne, 2)
        } else if rest.starts_with(b">=") {
            (Op::Ge, 2)
        } else if rest.starts_with(b"<=") {
            (Op::Le, 2)
        } else if rest.starts_with(b"~=") {
            (Op::Match, 2)
        } else if rest.starts_with(b"!~=") {
            (Op::NoMatch, 3)
        } else if rest.starts_with(b">") {
            (Op::Gt, 1)
        } else if rest.starts_with(b"<") {
            (Op::Lt, 1)
        } else {
            return None;
        };
        self.i += n;
        Some(op)
    }

    fn name(&mut self) -> Result<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if b".;|()[]=!<>~,\" ".contains(&c) {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err(self.err("expected an attribute name"));
        }
        Ok(self.src[start..self.i].to_string())
    }

    fn path(&mut self) -> Result<Path> {
        let first = self.name()?;
        let attr = self.ctx.expand(&first);
        let mut sub = Vec::new();
        while self.eat(b'.') {
            let n = self.name()?;
            sub.push(if META_MEMBERS.contains(&n.as_str()) {
                n
            } else {
                self.ctx.expand(&n)
            });
        }
        let mut compound = Vec::new();
        if self.eat(b'[') {
            loop {
                compound.push(self.name()?);
                if !self.eat(b'.') {
                    break;
                }
            }
            if !self.eat(b']') {
                return Err(self.err("missing ']'"));
            }
        }
        Ok(Path { attr, sub, compound })
    }

    fn pattern(&mut self) -> Result<Operand> {
        let text = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            let start = self.i;
            let mut depth = 0i32;
            while let Some(c) = self.peek() {
                match c {
                    b'(' => depth += 1,
                    b')' if depth == 0 => break,
                    b')' => depth -= 1,
                    b';' | b'|' if depth == 0 => break,
                    _ => {}
                }
                self.i += 1;
            }
            self.src[start..self.i].to_string()
        };
        let re = regex::RegexBuilder::new(&text)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| NgsiError::bad_data(format!("q: invalid pattern '{text}': {e}")))?;
        Ok(Operand::Pattern(re))
    }

    fn value(&mut self) -> Result<Operand> {
        let first = self.single()?;
        if self.s[self.i..].starts_with(b"..") {
            self.i += 2;
            let hi = self.single()?;
            return Ok(Operand::Range(first, hi));
        }
        if self.peek() == Some(b',') {
            let mut list = vec![first];
            while self.eat(b',') {
                list.push(self.single()?);
            }
            return Ok(Operand::List(list));
        }
        Ok(Operand::One(first))
    }

    fn quoted(&mut self) -> Result<String> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            let rest = &self.src[self.i..];
            let mut chars = rest.chars();
            match chars.next() {
                None => return Err(self.err("unterminated string")),
                Some('"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    let c = chars.next().ok_or_else(|| self.err("unterminated string"))?;
                    out.push(c);
                    self.i += 1 + c.len_utf8();
                }
                Some(c) => {
                    out.push(c);
                    self.i += c.len_utf8();
                }
            }
        }
    }

    fn single(&mut self) -> Result<Lit> {
        if self.peek() == Some(b'"') {
            return Ok(Lit::Str(self.quoted()?));
        }
        let start = self.i;
        while let Some(c) = self.peek() {
            if b";|),".contains(&c) || self.s[self.i..].starts_with(b"..") {
                break;
            }
            self.i += 1;
        }
        let raw = &self.src[start..self.i];
        if raw.is_empty() || raw.starts_with(['=', '<', '>', '!', '~']) {
            return Err(self.err("expected a value"));
        }
        Ok(match raw {
            "true" => Lit::Bool(true),
            "false" => Lit::Bool(false),
            _ => match raw.parse::<f64>() {
                Ok(n) if n.is_finite() => Lit::Num(n, raw.to_string()),
                _ => Lit::Str(raw.to_string()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{parse_entity, InputLimits, Mode};
    use serde_json::json;

    fn entity(v: Value) -> Entity {
        let f = parse_entity(&v, &TermMap::core(), &InputLimits::default(), Mode::Create).unwrap();
        f.into_entity(time::parse("2026-01-01T00:00:00Z").unwrap()).unwrap()
    }

    fn q(src: &str, e: &Entity) -> bool {
        Query::parse(src, &TermMap::core()).unwrap().eval(e)
    }

    #[test]
    fn comparisons_and_logic() {
        let e = entity(json!({"id":"urn:ngsi-ld:P:1","type":"P",
            "speed":{"type":"Property","value":42,"observedAt":"2026-01-01T10:00:00Z","unitCode":"KMH",
                     "accuracy":{"type":"Property","value":0.9}},
            "name":"Lot A", "tags":["a","b"], "open": true,
            "addr":{"type":"Property","value":{"city":"Hangzhou","zip":{"code":"310000"}}},
            "owner":{"type":"Relationship","object":"urn:ngsi-ld:Org:1"},
            "label":{"type":"LanguageProperty","languageMap":{"en":"Gate","zh":"门"}},
            "when":"2026-01-01T09:00:00Z"}));
        assert!(q("speed==42", &e));
        assert!(q("speed>41;speed<43", &e));
        assert!(q("speed==1..50", &e));
        assert!(!q("speed==43..50", &e));
        assert!(q("speed==1,42,3", &e));
        assert!(q("speed!=1,2", &e));
        assert!(!q("speed!=42", &e));
        assert!(q("speed<1|name==\"Lot A\"", &e));
        assert!(q("(speed<1|speed>2);open==true", &e));
        assert!(q("name~=Lot.*", &e));
        assert!(q("name!~=^B", &e));
        assert!(q("tags==\"b\"", &e));
        assert!(q("speed.unitCode==\"KMH\"", &e));
        assert!(q("speed.observedAt>2026-01-01T09:59:59Z", &e));
        assert!(q("speed.accuracy>0.5", &e));
        assert!(q("addr[city]==\"Hangzhou\"", &e));
        assert!(q("addr[zip.code]==\"310000\"", &e));
        assert!(q("owner==urn:ngsi-ld:Org:1", &e));
        assert!(q("label[zh]==\"门\"", &e));
        assert!(q("label==\"Gate\"", &e));
        assert!(q("when<2026-01-02T00:00:00Z", &e));
        assert!(q("speed", &e));
        assert!(q("!missing", &e));
        assert!(!q("missing", &e));
        assert!(!q("missing!=3", &e));
    }

    #[test]
    fn parse_errors_name_the_position() {
        let ctx = TermMap::core();
        for bad in [
            "", "a==", "(a==1", "a==1)", "a>1,2", "a~=(", "a==\"x", "a[b==1", "a>>", "a==<3",
        ] {
            let err = Query::parse(bad, &ctx).unwrap_err();
            assert!(err.detail.starts_with("q:"), "{bad}: {}", err.detail);
        }
        let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(
            Query::parse(&deep, &ctx).unwrap_err().kind,
            crate::ErrorKind::TooComplexQuery
        );
    }
}
