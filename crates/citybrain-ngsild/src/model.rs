//! The entity as citybrain keeps it: expanded IRIs for types and attribute
//! names, every attribute as a list of instances (one per `datasetId`), each
//! instance a normalized JSON object with system timestamps.
//!
//! The change operations here (append, update, merge, delete) are the single
//! place where NGSI-LD's write semantics live; they return what changed so the
//! hub can record history and match subscriptions from the same facts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::{self, Timestamp};

/// One attribute instance in normalized form. Keys are NGSI-LD member names
/// (`type`, `value`, `object`, `observedAt`, ...) or expanded sub-attribute IRIs.
pub type Attr = Map<String, Value>;

/// Attribute kinds (the `type` member of an attribute).
pub const ATTR_KINDS: &[&str] = &[
    "Property",
    "Relationship",
    "GeoProperty",
    "LanguageProperty",
    "VocabProperty",
    "JsonProperty",
    "ListProperty",
    "ListRelationship",
];

/// The members that carry an attribute's value, one per kind.
pub const VALUE_MEMBERS: &[&str] = &[
    "value",
    "object",
    "languageMap",
    "vocab",
    "json",
    "valueList",
    "objectList",
];

/// Members of an attribute instance that are not sub-attributes.
pub const RESERVED_MEMBERS: &[&str] = &[
    "type",
    "value",
    "object",
    "objectType",
    "languageMap",
    "vocab",
    "json",
    "valueList",
    "objectList",
    "datasetId",
    "observedAt",
    "unitCode",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "expiresAt",
    "instanceId",
    "lang",
    "previousValue",
    "previousObject",
    "previousLanguageMap",
    "previousVocab",
    "previousJson",
    "previousValueList",
    "previousObjectList",
    "@context",
];

pub fn is_reserved_member(k: &str) -> bool {
    RESERVED_MEMBERS.contains(&k)
}

/// The member that carries an attribute kind's main value.
pub fn value_member(kind: &str) -> &'static str {
    match kind {
        "Relationship" => "object",
        "LanguageProperty" => "languageMap",
        "VocabProperty" => "vocab",
        "JsonProperty" => "json",
        "ListProperty" => "valueList",
        "ListRelationship" => "objectList",
        _ => "value",
    }
}

/// The kind of an instance (`Property` when absent).
pub fn kind_of(a: &Attr) -> &str {
    a.get("type").and_then(Value::as_str).unwrap_or("Property")
}

/// The main value of an instance (value, object, languageMap, ...).
pub fn main_value(a: &Attr) -> Option<&Value> {
    a.get(value_member(kind_of(a)))
}

pub fn dataset_id(a: &Attr) -> Option<&str> {
    a.get("datasetId").and_then(Value::as_str)
}

/// An NGSI-LD entity, expanded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub id: String,
    #[serde(rename = "type")]
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
    #[serde(rename = "createdAt")]
    pub created_at: Timestamp,
    #[serde(rename = "modifiedAt")]
    pub modified_at: Timestamp,
    #[serde(default)]
    pub attrs: BTreeMap<String, Vec<Attr>>,
}

/// What happened to one attribute instance in a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttrChange {
    pub name: String,
    pub dataset_id: Option<String>,
    pub kind: ChangeKind,
    /// The instance before the write (for `showChanges`).
    pub previous: Option<Attr>,
    /// The instance after the write (None when deleted).
    pub current: Option<Attr>,
}

/// How a write treats an attribute instance that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Append, replacing existing instances (POST /attrs, upsert).
    Overwrite,
    /// Append, keeping existing instances (`options=noOverwrite`).
    NoOverwrite,
    /// Replace existing instances only (PATCH /attrs, batch update).
    OnlyExisting,
    /// Deep-merge into existing instances, create the rest (PATCH /entities/{id}, merge).
    Merge,
}

/// Why an attribute was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUpdated {
    pub name: String,
    pub reason: String,
}

/// An attribute from a request body: set this instance, or delete one
/// (`urn:ngsi-ld:null` in a merge).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrInput {
    Set(Attr),
    Delete { dataset_id: Option<String> },
}

impl Entity {
    pub fn new(id: String, types: Vec<String>, scope: Vec<String>, now: Timestamp) -> Self {
        Entity {
            id,
            types,
            scope,
            created_at: now,
            modified_at: now,
            attrs: BTreeMap::new(),
        }
    }

    pub fn instance(&self, name: &str, dataset: Option<&str>) -> Option<&Attr> {
        self.attrs.get(name)?.iter().find(|a| dataset_id(a) == dataset)
    }

    /// Writes one attribute input according to the mode. Returns the change, or
    /// why nothing was written.
    pub fn write_attr(
        &mut self,
        name: &str,
        input: AttrInput,
        mode: WriteMode,
        now: Timestamp,
    ) -> Result<Option<AttrChange>, NotUpdated> {
        match input {
            AttrInput::Delete { dataset_id } => {
                let changes = self.delete_attr(name, dataset_id.as_deref(), false, now);
                Ok(changes.into_iter().next())
            }
            AttrInput::Set(mut inst) => {
                let ds = dataset_id(&inst).map(str::to_string);
                let list = self.attrs.entry(name.to_string()).or_default();
                let pos = list.iter().position(|a| dataset_id(a) == ds.as_deref());
                let stamp = Value::String(time::format(&now));
                match (pos, mode) {
                    (None, WriteMode::OnlyExisting) => {
                        if list.is_empty() {
                            self.attrs.remove(name);
                        }
                        Err(NotUpdated {
                            name: name.to_string(),
                            reason: "attribute does not exist".into(),
                        })
                    }
                    (Some(_), WriteMode::NoOverwrite) => Err(NotUpdated {
                        name: name.to_string(),
                        reason: "attribute exists and noOverwrite was requested".into(),
                    }),
                    (None, _) => {
                        inst.insert("createdAt".into(), stamp.clone());
                        inst.insert("modifiedAt".into(), stamp);
                        list.push(inst.clone());
                        self.modified_at = now;
                        Ok(Some(AttrChange {
                            name: name.to_string(),
                            dataset_id: ds,
                            kind: ChangeKind::Created,
                            previous: None,
                            current: Some(inst),
                        }))
                    }
                    (Some(i), _) => {
                        let previous = list[i].clone();
                        let created = previous.get("createdAt").cloned().unwrap_or(stamp.clone());
                        if mode == WriteMode::Merge && kind_of(&previous) == kind_of(&inst) {
                            let mut merged = previous.clone();
                            merge_members(&mut merged, inst);
                            inst = merged;
                        }
                        inst.insert("createdAt".into(), created);
                        inst.insert("modifiedAt".into(), stamp);
                        list[i] = inst.clone();
                        self.modified_at = now;
                        Ok(Some(AttrChange {
                            name: name.to_string(),
                            dataset_id: ds,
                            kind: ChangeKind::Updated,
                            previous: Some(previous),
                            current: Some(inst),
                        }))
                    }
                }
            }
        }
    }

    /// Merges a partial attribute (PATCH /entities/{id}/attrs/{attr}) into the
    /// instance with the same datasetId. None when no such instance exists.
    pub fn patch_attr(&mut self, name: &str, patch: Attr, now: Timestamp) -> Option<AttrChange> {
        let ds = dataset_id(&patch).map(str::to_string);
        let list = self.attrs.get_mut(name)?;
        let inst = list.iter_mut().find(|a| dataset_id(a) == ds.as_deref())?;
        let previous = inst.clone();
        let kind_changes = patch
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|k| k != kind_of(&previous));
        if kind_changes {
            // A new kind replaces the old members outright.
            let created = previous.get("createdAt").cloned();
            *inst = patch;
            if let Some(c) = created {
                inst.insert("createdAt".into(), c);
            }
        } else {
            merge_members(inst, patch);
        }
        inst.insert("modifiedAt".into(), Value::String(time::format(&now)));
        let current = inst.clone();
        self.modified_at = now;
        Some(AttrChange {
            name: name.to_string(),
            dataset_id: ds,
            kind: ChangeKind::Updated,
            previous: Some(previous),
            current: Some(current),
        })
    }

    /// Deletes the default instance, the instance with `dataset`, or all.
    pub fn delete_attr(&mut self, name: &str, dataset: Option<&str>, all: bool, now: Timestamp) -> Vec<AttrChange> {
        let Some(list) = self.attrs.get_mut(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        list.retain(|a| {
            let hit = all || dataset_id(a) == dataset;
            if hit {
                out.push(AttrChange {
                    name: name.to_string(),
                    dataset_id: dataset_id(a).map(str::to_string),
                    kind: ChangeKind::Deleted,
                    previous: Some(a.clone()),
                    current: None,
                });
            }
            !hit
        });
        if list.is_empty() {
            self.attrs.remove(name);
        }
        if !out.is_empty() {
            self.modified_at = now;
        }
        out
    }

    /// Number of attribute instances (for limits).
    pub fn instance_count(&self) -> usize {
        self.attrs.values().map(Vec::len).sum()
    }
}

/// Merge-patch of members: the patch's members replace the target's; nested
/// sub-attributes merge recursively; `urn:ngsi-ld:null` removes a sub-attribute.
fn merge_members(target: &mut Attr, patch: Attr) {
    for (k, v) in patch {
        if k == "createdAt" || k == "modifiedAt" {
            continue;
        }
        if is_reserved_member(&k) {
            target.insert(k, v);
            continue;
        }
        if is_null_marker(&v) {
            target.remove(&k);
            continue;
        }
        match (target.get_mut(&k), v) {
            (Some(Value::Object(existing)), Value::Object(sub)) => {
                let same_kind = kind_of(existing) == sub.get("type").and_then(Value::as_str).unwrap_or("Property");
                if same_kind {
                    merge_members(existing, sub);
                } else {
                    *existing = sub;
                }
            }
            (_, v) => {
                target.insert(k, v);
            }
        }
    }
}

/// The NGSI-LD null: `urn:ngsi-ld:null`, alone or as the value of an attribute.
pub fn is_null_marker(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s == "urn:ngsi-ld:null",
        // The value member is the null, or (for a LanguageProperty) a map
        // `{"@none": "urn:ngsi-ld:null"}` (GS CIM 009 V1.8.1, 4.5.5 / 4.5.18).
        Value::Object(m) => VALUE_MEMBERS.iter().any(|k| match m.get(*k) {
            Some(Value::String(s)) => s == "urn:ngsi-ld:null",
            Some(Value::Object(lm)) if *k == "languageMap" => {
                lm.len() == 1 && lm.get("@none").and_then(Value::as_str) == Some("urn:ngsi-ld:null")
            }
            _ => false,
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> Timestamp {
        time::parse(s).unwrap()
    }

    fn prop(v: Value) -> Attr {
        json!({"type": "Property", "value": v}).as_object().unwrap().clone()
    }

    #[test]
    fn append_update_merge_delete() {
        let t0 = t("2026-01-01T00:00:00Z");
        let t1 = t("2026-01-01T00:01:00Z");
        let mut e = Entity::new("urn:x:1".into(), vec!["T".into()], vec![], t0);
        let c = e
            .write_attr("a", AttrInput::Set(prop(json!(1))), WriteMode::Overwrite, t0)
            .unwrap()
            .unwrap();
        assert_eq!(c.kind, ChangeKind::Created);
        let nu = e
            .write_attr("a", AttrInput::Set(prop(json!(2))), WriteMode::NoOverwrite, t1)
            .unwrap_err();
        assert!(nu.reason.contains("noOverwrite"));
        assert!(e
            .write_attr("b", AttrInput::Set(prop(json!(2))), WriteMode::OnlyExisting, t1)
            .is_err());
        assert!(!e.attrs.contains_key("b"));
        let mut with_sub = prop(json!(3));
        with_sub.insert("urn:sub".into(), json!({"type": "Property", "value": "s"}));
        let c = e
            .write_attr("a", AttrInput::Set(with_sub), WriteMode::Merge, t1)
            .unwrap()
            .unwrap();
        assert_eq!(c.kind, ChangeKind::Updated);
        assert_eq!(c.previous.unwrap()["value"], json!(1));
        let a = e.instance("a", None).unwrap();
        assert_eq!(a["value"], json!(3));
        assert_eq!(a["createdAt"], json!("2026-01-01T00:00:00Z"));
        assert_eq!(a["modifiedAt"], json!("2026-01-01T00:01:00Z"));
        assert_eq!(e.modified_at, t1);
        let gone = e
            .write_attr("a", AttrInput::Delete { dataset_id: None }, WriteMode::Merge, t1)
            .unwrap()
            .unwrap();
        assert_eq!(gone.kind, ChangeKind::Deleted);
        assert!(e.attrs.is_empty());
    }

    #[test]
    fn multi_instance_by_dataset_id() {
        let t0 = t("2026-01-01T00:00:00Z");
        let mut e = Entity::new("urn:x:1".into(), vec!["T".into()], vec![], t0);
        let mut a = prop(json!(1));
        a.insert("datasetId".into(), json!("urn:ds:1"));
        e.write_attr("a", AttrInput::Set(a), WriteMode::Overwrite, t0).unwrap();
        e.write_attr("a", AttrInput::Set(prop(json!(0))), WriteMode::Overwrite, t0)
            .unwrap();
        assert_eq!(e.attrs["a"].len(), 2);
        assert_eq!(e.delete_attr("a", Some("urn:ds:1"), false, t0).len(), 1);
        assert_eq!(e.attrs["a"].len(), 1);
        assert!(e.delete_attr("a", Some("urn:ds:9"), false, t0).is_empty());
        assert_eq!(e.delete_attr("a", None, true, t0).len(), 1);
    }

    #[test]
    fn patch_merges_sub_attributes() {
        let t0 = t("2026-01-01T00:00:00Z");
        let mut e = Entity::new("urn:x:1".into(), vec!["T".into()], vec![], t0);
        let mut a = prop(json!(1));
        a.insert("urn:s1".into(), json!({"type": "Property", "value": 1}));
        a.insert("urn:s2".into(), json!({"type": "Property", "value": 2}));
        e.write_attr("a", AttrInput::Set(a), WriteMode::Overwrite, t0).unwrap();
        let patch = json!({"urn:s1": {"value": 10}, "urn:s2": "urn:ngsi-ld:null"})
            .as_object()
            .unwrap()
            .clone();
        e.patch_attr("a", patch, t0).unwrap();
        let a = e.instance("a", None).unwrap();
        assert_eq!(a["urn:s1"]["value"], json!(10));
        assert_eq!(a["value"], json!(1));
        assert!(!a.contains_key("urn:s2"));
        assert!(e.patch_attr("missing", Map::new(), t0).is_none());
    }
}
