//! The service catalog: `services/*.yaml`, one service a file — who runs
//! it, what data it needs (pre-filled from the hub, never asked twice), the
//! rule that decides it or manual review, the risk gate and the SLA. A
//! directory holds the bundles (`bundles/*.yaml`) beside it.

use std::collections::BTreeMap;
use std::path::Path;

use citybrain_rules::PolicySet;
use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::error::{line_of, parse_duration, read_file, yaml_error, ServiceError};

/// The largest service or bundle file read.
pub const MAX_DEFINITION_BYTES: u64 = 256 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    id: String,
    title: String,
    department: String,
    #[serde(default)]
    description: Option<String>,
    /// The hub entity type applied for (Person, Organization).
    applies_to: String,
    /// `{policy: ID}` or `manual`.
    decided_by: DecidedByFile,
    /// Attributes of the applicant's entity shown pre-filled (for manual
    /// services; a rule's inputs are pre-filled anyway).
    #[serde(default)]
    data_required: Vec<String>,
    /// Boolean attributes of the applicant: any of them true → manual review.
    #[serde(default)]
    risk_gate: Vec<String>,
    /// Time to a decision for manual review.
    sla: String,
    /// Visits to a counter the paper procedure needed (an assumption per
    /// service, see services/sources.md): what an online decision avoids.
    #[serde(default)]
    counter_visits: u32,
    /// Granted without application (免申即享): matching runs over every
    /// entity of the type and grants each eligible one.
    #[serde(default)]
    proactive: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DecidedByFile {
    Policy { policy: String },
    Word(String),
}

/// How an application is decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// By the rule, at once (秒批).
    Policy(String),
    /// By an officer of the service's department.
    Manual,
}

/// One service of the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub id: String,
    pub title: String,
    pub department: String,
    pub description: Option<String>,
    pub applies_to: String,
    pub decided_by: DecidedBy,
    pub data_required: Vec<String>,
    pub risk_gate: Vec<String>,
    #[serde(serialize_with = "ser_duration")]
    pub sla: chrono::Duration,
    pub counter_visits: u32,
    pub proactive: bool,
}

pub(crate) fn ser_duration<S: serde::Serializer>(d: &chrono::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(d.to_std().unwrap_or_default()).to_string())
}

impl Service {
    pub fn parse(path: &Path, text: &str) -> Result<Service, ServiceError> {
        let f: ServiceFile = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(path, &e))?;
        let at = |key: &str, m: String| ServiceError::at(path, line_of(text, key), m);
        check_id(&f.id).map_err(|m| at("id:", m))?;
        let sla = parse_duration("sla", &f.sla).map_err(|m| at("sla:", m))?;
        let decided_by = match f.decided_by {
            DecidedByFile::Policy { policy } => DecidedBy::Policy(policy),
            DecidedByFile::Word(w) if w == "manual" => DecidedBy::Manual,
            DecidedByFile::Word(w) => {
                return Err(at(
                    "decided_by:",
                    format!("decided_by: '{w}'; expected {{policy: ID}} or manual"),
                ))
            }
        };
        if f.proactive && decided_by == DecidedBy::Manual {
            return Err(at(
                "proactive:",
                "a proactive service grants by its rule; it needs decided_by: {policy: ID}".into(),
            ));
        }
        Ok(Service {
            id: f.id,
            title: f.title,
            department: f.department,
            description: f.description,
            applies_to: f.applies_to,
            decided_by,
            data_required: f.data_required,
            risk_gate: f.risk_gate,
            sla,
            counter_visits: f.counter_visits,
            proactive: f.proactive,
        })
    }

    pub fn policy(&self) -> Option<&str> {
        match &self.decided_by {
            DecidedBy::Policy(p) => Some(p),
            DecidedBy::Manual => None,
        }
    }
}

/// Ids go into entity ids and URLs: letters, digits and dashes.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!("id '{id}': 1 to 64 lower-case letters, digits and dashes"));
    }
    Ok(())
}

/// The services and bundles of a directory, checked against the policies.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    pub services: BTreeMap<String, Service>,
    pub bundles: BTreeMap<String, Bundle>,
}

fn yaml_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, ServiceError> {
    let io = |source| ServiceError::Io {
        file: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

impl Catalog {
    /// `dir/*.yaml` are services, `dir/bundles/*.yaml` bundles; a missing
    /// directory is an empty catalog. Every policy named must be in `policies`.
    pub fn load(dir: &Path, policies: &PolicySet) -> Result<Catalog, ServiceError> {
        let mut c = Catalog::default();
        if !dir.exists() {
            return Ok(c);
        }
        for p in yaml_files(dir)? {
            let s = Service::parse(&p, &read_file(&p, MAX_DEFINITION_BYTES)?)?;
            c.add_service(s).map_err(|m| ServiceError::at(&p, 1, m))?;
        }
        let bundles = dir.join("bundles");
        if bundles.exists() {
            for p in yaml_files(&bundles)? {
                let b = Bundle::parse(&p, &read_file(&p, MAX_DEFINITION_BYTES)?)?;
                c.add_bundle(b).map_err(|m| ServiceError::at(&p, 1, m))?;
            }
        }
        c.check(policies).map_err(ServiceError::Catalog)?;
        Ok(c)
    }

    pub fn add_service(&mut self, s: Service) -> Result<(), String> {
        if self.services.contains_key(&s.id) {
            return Err(format!("two services with id '{}'", s.id));
        }
        self.services.insert(s.id.clone(), s);
        Ok(())
    }

    pub fn add_bundle(&mut self, b: Bundle) -> Result<(), String> {
        if self.bundles.contains_key(&b.id) {
            return Err(format!("two bundles with id '{}'", b.id));
        }
        self.bundles.insert(b.id.clone(), b);
        Ok(())
    }

    /// Every policy a service or a bundle step names exists and decides
    /// about the type the service applies to.
    pub fn check(&self, policies: &PolicySet) -> Result<(), String> {
        let check = |who: String, policy: &str, ty: &str| -> Result<(), String> {
            let p = policies
                .get(policy)
                .ok_or_else(|| format!("{who}: no policy '{policy}' is loaded"))?;
            if p.applies_to != ty {
                return Err(format!(
                    "{who}: policy '{policy}' decides about {}, not {ty}",
                    p.applies_to
                ));
            }
            Ok(())
        };
        for s in self.services.values() {
            if let Some(p) = s.policy() {
                check(format!("service '{}'", s.id), p, &s.applies_to)?;
            }
        }
        for b in self.bundles.values() {
            for st in &b.steps {
                if let crate::bundle::StepKind::Rule(p) = &st.kind {
                    check(format!("bundle '{}' step '{}'", b.id, st.id), p, &b.applies_to)?;
                }
            }
        }
        Ok(())
    }
}
