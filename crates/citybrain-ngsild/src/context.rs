//! JSON-LD @context handling, reduced to what NGSI-LD needs: expanding the
//! terms of entity types and attribute names to IRIs on write, and compacting
//! them back on read.
//!
//! Why not a full JSON-LD processor: NGSI-LD payloads never use the parts of
//! JSON-LD that need one (framing, graph containers, reverse properties); a
//! term map is exact for what brokers must do, and far faster. Values are not
//! expanded, except `vocab` members and Relationship `objectType`s.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::error::{NgsiError, Result};

/// The V1.8 core context, embedded so the hub never needs the network for it.
pub const CORE_CONTEXT_V1_8: &str = include_str!("../contexts/ngsi-ld-core-context-v1.8.jsonld");

/// The URL clients send most often for the core context (unversioned), and the
/// one we advertise in Link headers.
pub const CORE_CONTEXT_URL: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld";

/// `@vocab` of the core context: undefined terms expand under it.
pub const DEFAULT_VOCAB: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

/// The `rel` of the JSON-LD context Link header.
pub const LINK_REL: &str = "http://www.w3.org/ns/json-ld#context";

/// True for every URL that names the core context (v1.x, versioned or not).
pub fn is_core_context_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context") else {
        return false;
    };
    rest == ".jsonld"
        || rest
            .strip_prefix("-v1.")
            .and_then(|r| r.strip_suffix(".jsonld"))
            .is_some_and(|minor| minor.parse::<u32>().is_ok())
}

/// One entry of an `@context` value: a URL to resolve, or an inline object.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextRef {
    Url(String),
    Inline(Map<String, Value>),
}

/// Splits an `@context` value (string, object or array of both) into its entries.
pub fn parse_context_value(v: &Value) -> Result<Vec<ContextRef>> {
    fn one(v: &Value, out: &mut Vec<ContextRef>) -> Result<()> {
        match v {
            Value::String(s) => {
                if !looks_like_iri(s) {
                    return Err(NgsiError::bad_data(format!(
                        "@context entry '{s}' is not an absolute URL"
                    )));
                }
                out.push(ContextRef::Url(s.clone()));
            }
            Value::Object(m) => {
                // A remote document's body is itself `{"@context": ...}`.
                if let Some(inner) = m.get("@context") {
                    if m.len() == 1 {
                        return one(inner, out);
                    }
                }
                out.push(ContextRef::Inline(m.clone()))
            }
            Value::Array(items) => {
                for i in items {
                    one(i, out)?;
                }
            }
            Value::Null => {}
            _ => {
                return Err(NgsiError::bad_data(
                    "@context must be a URL, an object or an array of them",
                ))
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    one(v, &mut out)?;
    Ok(out)
}

/// A resolved @context: term → IRI, with the reverse map for compaction.
#[derive(Debug, Clone, Default)]
pub struct TermMap {
    terms: HashMap<String, String>,
    reverse: HashMap<String, String>,
    vocab: String,
}

fn core_map() -> &'static Arc<TermMap> {
    static CORE: OnceLock<Arc<TermMap>> = OnceLock::new();
    CORE.get_or_init(|| {
        let doc: Value = serde_json::from_str(CORE_CONTEXT_V1_8).expect("embedded core context is valid JSON");
        let mut m = TermMap::default();
        if let Some(Value::Object(ctx)) = doc.get("@context") {
            m.absorb(ctx);
        }
        m.vocab = DEFAULT_VOCAB.to_string();
        m.rebuild_reverse(&HashMap::new());
        Arc::new(m)
    })
}

impl TermMap {
    /// The core context alone (what a request without a user context gets).
    pub fn core() -> Arc<TermMap> {
        core_map().clone()
    }

    /// Builds the term map of a request: the given context objects in order,
    /// then the core context last (it is `@protected`, so its terms win).
    pub fn build(user_contexts: &[Map<String, Value>]) -> Result<TermMap> {
        let mut user = TermMap::default();
        for ctx in user_contexts {
            user.absorb(ctx);
        }
        let core = core_map();
        let mut m = TermMap {
            terms: user.terms.clone(),
            reverse: HashMap::new(),
            vocab: DEFAULT_VOCAB.to_string(),
        };
        for (k, v) in &core.terms {
            m.terms.insert(k.clone(), v.clone());
        }
        // Resolve compact IRIs (`sdm:speed`) now, so expansion is one lookup.
        let snapshot = m.terms.clone();
        for v in m.terms.values_mut() {
            *v = resolve_compact(v, &snapshot);
        }
        m.rebuild_reverse(&user.terms);
        Ok(m)
    }

    fn absorb(&mut self, ctx: &Map<String, Value>) {
        for (k, v) in ctx {
            match (k.as_str(), v) {
                ("@vocab", Value::String(s)) => self.vocab = s.clone(),
                (k, _) if k.starts_with('@') => {}
                (_, Value::String(s)) => {
                    self.terms.insert(k.clone(), s.clone());
                }
                (_, Value::Object(def)) => {
                    if let Some(Value::String(id)) = def.get("@id") {
                        self.terms.insert(k.clone(), id.clone());
                    } else if k.contains(':') {
                        self.terms.insert(k.clone(), k.clone());
                    }
                }
                (_, Value::Null) => {
                    self.terms.remove(k);
                }
                _ => {}
            }
        }
        let snapshot = self.terms.clone();
        for v in self.terms.values_mut() {
            *v = resolve_compact(v, &snapshot);
        }
    }

    fn rebuild_reverse(&mut self, preferred: &HashMap<String, String>) {
        let mut reverse: HashMap<String, String> = HashMap::new();
        for (term, iri) in &self.terms {
            if iri.starts_with('@') || !looks_like_iri(iri) {
                continue;
            }
            // Deterministic choice when two terms share an IRI: the user's own
            // term first, then the shortest, then the alphabetically first.
            let better = match reverse.get(iri) {
                None => true,
                Some(cur) => {
                    let (a, b) = (preferred.contains_key(term), preferred.contains_key(cur));
                    (a && !b) || (a == b && (term.len() < cur.len() || (term.len() == cur.len() && term < cur)))
                }
            };
            if better {
                reverse.insert(iri.clone(), term.clone());
            }
        }
        self.reverse = reverse;
    }

    /// Expands a term (attribute name or type) to its IRI.
    pub fn expand(&self, term: &str) -> String {
        if let Some(iri) = self.terms.get(term) {
            return iri.clone();
        }
        if term.contains(':') {
            return resolve_compact(term, &self.terms);
        }
        format!("{}{}", self.vocab, term)
    }

    /// Compacts an IRI back to the shortest term this context knows for it.
    pub fn compact(&self, iri: &str) -> String {
        if let Some(t) = self.reverse.get(iri) {
            return t.clone();
        }
        if let Some(rest) = iri.strip_prefix(&self.vocab) {
            if !rest.is_empty() && !self.terms.contains_key(rest) {
                return rest.to_string();
            }
        }
        iri.to_string()
    }

    /// Number of terms, for limits and diagnostics.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

fn resolve_compact(v: &str, terms: &HashMap<String, String>) -> String {
    if let Some((prefix, suffix)) = v.split_once(':') {
        if !suffix.starts_with("//") {
            if let Some(base) = terms.get(prefix) {
                if base != v && !base.starts_with('@') {
                    return format!("{base}{suffix}");
                }
            }
        }
    }
    v.to_string()
}

/// An absolute IRI: a scheme, a colon and something after it (`urn:x`, `https://…`).
pub fn looks_like_iri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    !rest.is_empty()
        && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        && !s.chars().any(|c| c.is_whitespace() || c == '<' || c == '>' || c == '"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_terms_expand_and_compact() {
        let m = TermMap::core();
        assert_eq!(m.expand("location"), "https://uri.etsi.org/ngsi-ld/location");
        assert_eq!(m.expand("speed"), format!("{DEFAULT_VOCAB}speed"));
        assert_eq!(m.compact(&format!("{DEFAULT_VOCAB}speed")), "speed");
        assert_eq!(m.compact("https://uri.etsi.org/ngsi-ld/location"), "location");
        assert_eq!(m.expand("https://example.org/x"), "https://example.org/x");
    }

    #[test]
    fn user_context_with_prefixes() {
        let ctx = json!({"sdm": "https://smartdatamodels.org/", "availableSpotNumber": "sdm:availableSpotNumber",
                         "OffStreetParking": {"@id": "https://smartdatamodels.org/dataModel.Parking/OffStreetParking"},
                         "location": "https://example.org/not-allowed"});
        let m = TermMap::build(&[ctx.as_object().unwrap().clone()]).unwrap();
        assert_eq!(
            m.expand("availableSpotNumber"),
            "https://smartdatamodels.org/availableSpotNumber"
        );
        assert_eq!(
            m.compact("https://smartdatamodels.org/availableSpotNumber"),
            "availableSpotNumber"
        );
        assert_eq!(m.expand("sdm:other"), "https://smartdatamodels.org/other");
        // The core context is protected: `location` keeps its core meaning.
        assert_eq!(m.expand("location"), "https://uri.etsi.org/ngsi-ld/location");
    }

    #[test]
    fn core_urls_recognised() {
        assert!(is_core_context_url(CORE_CONTEXT_URL));
        assert!(is_core_context_url(
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
        ));
        assert!(is_core_context_url(
            "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
        ));
        assert!(!is_core_context_url("https://example.org/ctx.jsonld"));
    }

    #[test]
    fn context_value_shapes() {
        let v = json!(["https://example.org/a.jsonld", {"a": "https://x/a"}]);
        assert_eq!(parse_context_value(&v).unwrap().len(), 2);
        assert!(parse_context_value(&json!(5)).is_err());
        assert!(parse_context_value(&json!("not a url")).is_err());
    }
}
