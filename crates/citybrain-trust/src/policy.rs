//! The departments' data-sharing policy: which entity types (and which of
//! their attributes) each department may read and write, which types are
//! open data, and which are personal records with the attribute that names
//! their owner. One JSON file (`policies/data-sharing.json`); type and
//! attribute names are expanded against the NGSI-LD core context, or given
//! as full IRIs.
//!
//! [`Policy::visibility`] turns it into what one caller may read — a map
//! from type IRI to clauses, so checking an entity is a hash lookup per type.

use std::collections::{BTreeMap, HashMap, HashSet};

use citybrain_ngsild::access::{AttrSet, Clause, Owner, Visibility};
use citybrain_ngsild::{Entity, TermMap};
use serde::Deserialize;

use crate::{Principal, Role};

/// The most a policy file may hold.
pub const MAX_FILE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name}: {what}")]
pub struct PolicyError {
    pub source_name: String,
    pub what: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGrant {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    attrs: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePersonal {
    #[serde(rename = "type")]
    ty: String,
    /// `@id` (the entity is the person) or the attribute naming the owner.
    owner: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDepartment {
    #[serde(default)]
    name: String,
    #[serde(default)]
    read: Vec<FileGrant>,
    #[serde(default)]
    write: Vec<FileGrant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "$comment")]
    _comment: Option<serde_json::Value>,
    #[serde(default)]
    open_data: Vec<FileGrant>,
    #[serde(default)]
    personal: Vec<FilePersonal>,
    departments: BTreeMap<String, FileDepartment>,
}

type Grants = Vec<(String, AttrSet)>;

/// One department.
#[derive(Debug, Clone)]
pub struct Department {
    pub name: String,
    read: Grants,
    write: Grants,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    open: Grants,
    /// Type IRI → the owner attribute (None: the entity id is the owner).
    personal: HashMap<String, Option<String>>,
    departments: BTreeMap<String, Department>,
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl Policy {
    /// Parses and checks a policy; errors name the field (`departments.health.read[1].type`).
    pub fn parse(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        let err = |what: String| PolicyError {
            source_name: source_name.to_string(),
            what,
        };
        if text.len() > MAX_FILE_BYTES {
            return Err(err(format!("larger than {MAX_FILE_BYTES} bytes")));
        }
        let f: File = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
        let terms = TermMap::core();
        let name = |s: &str, at: &str| -> Result<String, PolicyError> {
            let s = s.trim();
            if s.is_empty() || s.len() > 512 {
                return Err(err(format!("{at}: a name must have 1 to 512 characters")));
            }
            Ok(terms.expand(s))
        };
        let grants = |g: &[FileGrant], at: &str| -> Result<Grants, PolicyError> {
            g.iter()
                .enumerate()
                .map(|(i, g)| {
                    let ty = name(&g.ty, &format!("{at}[{i}].type"))?;
                    let attrs = match &g.attrs {
                        None => AttrSet::All,
                        Some(a) => AttrSet::Only(
                            a.iter()
                                .enumerate()
                                .map(|(j, a)| name(a, &format!("{at}[{i}].attrs[{j}]")))
                                .collect::<Result<HashSet<_>, _>>()?,
                        ),
                    };
                    Ok((ty, attrs))
                })
                .collect()
        };
        let open = grants(&f.open_data, "open_data")?;
        let mut personal = HashMap::new();
        for (i, p) in f.personal.iter().enumerate() {
            let ty = name(&p.ty, &format!("personal[{i}].type"))?;
            let owner = match p.owner.trim() {
                "@id" | "id" => None,
                a => Some(name(a, &format!("personal[{i}].owner"))?),
            };
            if personal.insert(ty, owner).is_some() {
                return Err(err(format!("personal[{i}].type: '{}' is listed twice", p.ty)));
            }
        }
        for (i, (ty, _)) in open.iter().enumerate() {
            if personal.contains_key(ty) {
                return Err(err(format!(
                    "open_data[{i}].type: '{}' is a personal record type; it cannot be open data",
                    f.open_data[i].ty
                )));
            }
        }
        let mut departments = BTreeMap::new();
        for (key, d) in &f.departments {
            let ok_key = !key.is_empty()
                && key.len() <= 64
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !ok_key {
                return Err(err(format!(
                    "departments.{key}: a department key is 1 to 64 characters of a-z 0-9 - _"
                )));
            }
            departments.insert(
                key.clone(),
                Department {
                    name: d.name.clone(),
                    read: grants(&d.read, &format!("departments.{key}.read"))?,
                    write: grants(&d.write, &format!("departments.{key}.write"))?,
                },
            );
        }
        Ok(Policy {
            open,
            personal,
            departments,
        })
    }

    /// No departments, no open data, no personal records (with authentication
    /// off, or for an administrator alone).
    pub fn empty() -> Policy {
        Policy {
            open: vec![],
            personal: HashMap::new(),
            departments: BTreeMap::new(),
        }
    }

    pub fn departments(&self) -> impl Iterator<Item = (&str, &Department)> {
        self.departments.iter().map(|(k, d)| (k.as_str(), d))
    }

    pub fn has_department(&self, key: &str) -> bool {
        self.departments.contains_key(key)
    }

    /// What this caller may read.
    pub fn visibility(&self, p: &Principal) -> Visibility {
        if p.role == Role::Admin {
            return Visibility::everything();
        }
        let mut v = Visibility::nothing();
        let open = |v: &mut Visibility, grants: &Grants| {
            for (ty, attrs) in grants {
                v.grant(
                    ty.clone(),
                    Clause {
                        attrs: attrs.clone(),
                        owner: None,
                    },
                );
            }
        };
        open(&mut v, &self.open);
        match p.role {
            Role::Officer => {
                for d in p.departments.iter().filter_map(|d| self.departments.get(d)) {
                    // Writing what one may not read makes no sense: a write grant reads too.
                    open(&mut v, &d.read);
                    open(&mut v, &d.write);
                }
            }
            Role::Citizen | Role::Enterprise => {
                if let Some(subject) = &p.subject {
                    for (ty, owner_attr) in &self.personal {
                        v.grant(
                            ty.clone(),
                            Clause {
                                attrs: AttrSet::All,
                                owner: Some(Owner {
                                    attr: owner_attr.clone(),
                                    subject: subject.clone(),
                                }),
                            },
                        );
                    }
                }
            }
            Role::Admin | Role::Public => {}
        }
        v
    }

    /// May this caller write these attributes (expanded names; empty: the
    /// entity as a whole, e.g. a delete) of an entity of these types?
    pub fn may_write<'a>(
        &self,
        p: &Principal,
        types: &[String],
        attrs: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), Refusal> {
        if p.role == Role::Admin {
            return Ok(());
        }
        if p.role != Role::Officer {
            return Err(Refusal(format!("the {} role cannot write entities", p.role)));
        }
        let grants: Vec<&AttrSet> = p
            .departments
            .iter()
            .filter_map(|d| self.departments.get(d))
            .flat_map(|d| d.write.iter())
            .filter(|(ty, _)| types.contains(ty))
            .map(|(_, a)| a)
            .collect();
        let terms = TermMap::core();
        if grants.is_empty() {
            let shown: Vec<String> = types.iter().map(|t| terms.compact(t)).collect();
            return Err(Refusal(format!(
                "departments [{}] may not write entities of type {}",
                p.departments.join(", "),
                shown.join(", ")
            )));
        }
        for a in attrs {
            if !grants.iter().any(|g| g.contains(a)) {
                return Err(Refusal(format!(
                    "departments [{}] may not write attribute '{}' of {}",
                    p.departments.join(", "),
                    terms.compact(a),
                    types.iter().map(|t| terms.compact(t)).collect::<Vec<_>>().join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Whether the entity is a personal record (its accesses are audited).
    pub fn is_personal(&self, e: &Entity) -> bool {
        e.types.iter().any(|t| self.personal.contains_key(t))
    }

    /// Whether any type is a personal record type (else nothing is audited by type).
    pub fn has_personal_types(&self) -> bool {
        !self.personal.is_empty()
    }

    /// Whether a type is a personal record type.
    pub fn is_personal_type(&self, type_iri: &str) -> bool {
        self.personal.contains_key(type_iri)
    }

    /// The people or enterprises a personal record belongs to.
    pub fn owners(&self, e: &Entity) -> Vec<String> {
        let mut out = Vec::new();
        for t in &e.types {
            match self.personal.get(t) {
                Some(None) => out.push(e.id.clone()),
                Some(Some(attr)) => {
                    for i in e.attrs.get(attr).into_iter().flatten() {
                        match citybrain_ngsild::model::main_value(i) {
                            Some(serde_json::Value::String(s)) => out.push(s.clone()),
                            Some(serde_json::Value::Array(v)) => {
                                out.extend(v.iter().filter_map(|x| x.as_str().map(str::to_string)))
                            }
                            _ => {}
                        }
                    }
                }
                None => {}
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const D: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

    fn policy() -> Policy {
        Policy::parse(
            &json!({
                "open_data": [{"type": "OffStreetParking"}],
                "personal": [{"type": "Person", "owner": "@id"}, {"type": "ParkingPermit", "owner": "holder"}],
                "departments": {
                    "transport": {"read": [{"type": "ParkingPermit", "attrs": ["validUntil"]}],
                                   "write": [{"type": "OffStreetParking", "attrs": ["availableSpotNumber"]}]},
                    "health": {"read": [{"type": "Person"}]}
                }
            })
            .to_string(),
            "test.json",
        )
        .unwrap()
    }

    fn entity(id: &str, ty: &str, attrs: serde_json::Value) -> Entity {
        let mut e = Entity::new(id.into(), vec![format!("{D}{ty}")], vec![], chrono::Utc::now());
        for (k, v) in attrs.as_object().unwrap() {
            e.attrs.insert(format!("{D}{k}"), vec![v.as_object().unwrap().clone()]);
        }
        e
    }

    fn officer(deps: &[&str]) -> Principal {
        Principal {
            actor: "t".into(),
            role: Role::Officer,
            departments: deps.iter().map(|s| s.to_string()).collect(),
            subject: None,
            tenants: vec![String::new()],
        }
    }

    #[test]
    fn each_role_sees_what_the_policy_opens_to_it() {
        let p = policy();
        let lot = entity("urn:l:1", "OffStreetParking", json!({}));
        let person = entity("urn:p:1", "Person", json!({}));
        let permit = entity(
            "urn:pp:1",
            "ParkingPermit",
            json!({"holder": {"type": "Relationship", "object": "urn:p:1"}, "validUntil": {"value": "2027"}}),
        );
        let public = p.visibility(&Principal::public());
        assert!(public.sees(&lot) && !public.sees(&person) && !public.sees(&permit));
        let transport = p.visibility(&officer(&["transport"]));
        assert!(transport.sees(&permit) && !transport.sees(&person));
        let mut redacted = permit.clone();
        transport.redact(&mut redacted);
        assert_eq!(redacted.attrs.keys().collect::<Vec<_>>(), [&format!("{D}validUntil")]);
        let health = p.visibility(&officer(&["health"]));
        assert!(health.sees(&person) && !health.sees(&permit));
        let citizen = |s: &str| Principal {
            role: Role::Citizen,
            subject: Some(s.into()),
            ..Principal::public()
        };
        assert!(p.visibility(&citizen("urn:p:1")).sees(&permit));
        assert!(p.visibility(&citizen("urn:p:1")).sees(&person));
        assert!(!p.visibility(&citizen("urn:p:2")).sees(&permit));
        assert!(p.visibility(&citizen("urn:p:2")).sees(&lot));
        assert_eq!(p.owners(&permit), ["urn:p:1"]);
        assert!(p.is_personal(&permit) && !p.is_personal(&lot));
    }

    #[test]
    fn writes_need_a_write_grant_on_the_type_and_every_attribute() {
        let p = policy();
        let lot = vec![format!("{D}OffStreetParking")];
        let free = format!("{D}availableSpotNumber");
        let total = format!("{D}totalSpotNumber");
        assert!(p.may_write(&officer(&["transport"]), &lot, [free.as_str()]).is_ok());
        let e = p
            .may_write(&officer(&["transport"]), &lot, [free.as_str(), total.as_str()])
            .unwrap_err();
        assert!(e.0.contains("may not write attribute 'totalSpotNumber'"), "{}", e.0);
        let e = p.may_write(&officer(&["health"]), &lot, []).unwrap_err();
        assert!(
            e.0.contains("may not write entities of type OffStreetParking"),
            "{}",
            e.0
        );
        assert!(p.may_write(&Principal::public(), &lot, []).is_err());
        assert!(p
            .may_write(&Principal::unrestricted("x"), &lot, [total.as_str()])
            .is_ok());
    }

    #[test]
    fn bad_files_name_the_field() {
        let e = Policy::parse(r#"{"departments": {"x": {"read": [{"type": ""}]}}}"#, "p.json").unwrap_err();
        assert_eq!(
            e.to_string(),
            "p.json: departments.x.read[0].type: a name must have 1 to 512 characters"
        );
        let e = Policy::parse(r#"{"departments": {"Bad Key": {}}}"#, "p.json").unwrap_err();
        assert!(e.to_string().contains("departments.Bad Key: a department key"), "{e}");
        let e = Policy::parse(r#"{"departments": {}, "extra": 1}"#, "p.json").unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
        let e = Policy::parse(
            r#"{"open_data": [{"type": "Person"}], "personal": [{"type": "Person", "owner": "@id"}], "departments": {}}"#,
            "p.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("cannot be open data"), "{e}");
    }
}
