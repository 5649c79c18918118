//! Life-event bundles (一件事): a versioned DAG of department steps. A step
//! looks data up in the hub (instead of asking the citizen), checks a rule,
//! or waits for an officer's review; when done it may issue a document,
//! which compensation revokes if a later step fails. Steps whose needs are
//! met run in parallel; the bundle's result joins them all.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::catalog::{check_id, ser_duration};
use crate::error::{line_of, parse_duration, yaml_error, ServiceError};

/// The most steps one bundle has (a life event, not a factory).
pub const MAX_STEPS: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    id: String,
    version: u32,
    title: String,
    #[serde(default)]
    description: Option<String>,
    /// The department that answers for the whole bundle.
    lead: String,
    /// The hub entity type a bundle is about (the child, the enterprise).
    applies_to: String,
    #[serde(default)]
    trigger: Option<TriggerFile>,
    /// Time for the whole bundle.
    sla: String,
    /// Visits the separate procedures needed (see services/sources.md).
    #[serde(default)]
    counter_visits: u32,
    steps: Vec<StepFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerFile {
    /// An entity of this type appearing in the hub starts the bundle.
    #[serde(rename = "type")]
    entity_type: String,
    /// Its relationship naming the subject.
    subject: String,
    /// Its relationship naming who must confirm before the bundle runs.
    #[serde(default)]
    confirm_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    id: String,
    title: String,
    department: String,
    #[serde(default)]
    needs: Vec<String>,
    /// Attributes of the subject read from the hub.
    #[serde(default)]
    lookup: Option<Vec<String>>,
    /// A policy that decides the step.
    #[serde(default)]
    rule: Option<String>,
    /// An officer of the department decides the step.
    #[serde(default)]
    review: bool,
    /// The document type issued when the step is done.
    #[serde(default)]
    issues: Option<String>,
    #[serde(default)]
    sla: Option<String>,
    /// When the department is warned that the SLA nears.
    #[serde(default)]
    warn_after: Option<String>,
    /// Who is told when the SLA is breached (a supervising department).
    #[serde(default)]
    escalate_to: Option<String>,
    /// What a breached review step becomes: escalated only (default), or
    /// approved where the law deems silence consent (超时默认).
    #[serde(default)]
    on_breach: Breach,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Lookup(Vec<String>),
    Rule(String),
    Review,
    /// Nothing to decide: the department issues its document.
    Issue,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Breach {
    #[default]
    Escalate,
    Approve,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub id: String,
    pub title: String,
    pub department: String,
    pub needs: Vec<String>,
    pub kind: StepKind,
    pub issues: Option<String>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub sla: Option<chrono::Duration>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub warn_after: Option<chrono::Duration>,
    pub escalate_to: Option<String>,
    pub on_breach: Breach,
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<chrono::Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    pub entity_type: String,
    pub subject: String,
    pub confirm_by: Option<String>,
}

/// A checked bundle definition; its steps are in an order where every
/// step comes after the steps it needs.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    pub id: String,
    pub version: u32,
    pub title: String,
    pub description: Option<String>,
    pub lead: String,
    pub applies_to: String,
    pub trigger: Option<Trigger>,
    #[serde(serialize_with = "ser_duration")]
    pub sla: chrono::Duration,
    pub counter_visits: u32,
    pub steps: Vec<Step>,
    /// The file's text: kept with the instances so each runs by the
    /// version it started with.
    #[serde(skip)]
    pub source: String,
}

impl Bundle {
    pub fn parse(path: &Path, text: &str) -> Result<Bundle, ServiceError> {
        let f: BundleFile = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(path, &e))?;
        let at = |key: &str, m: String| ServiceError::at(path, line_of(text, key), m);
        check_id(&f.id).map_err(|m| at("id:", m))?;
        let sla = parse_duration("sla", &f.sla).map_err(|m| at("sla:", m))?;
        if f.steps.is_empty() || f.steps.len() > MAX_STEPS {
            return Err(at(
                "steps:",
                format!("a bundle has 1 to {MAX_STEPS} steps, found {}", f.steps.len()),
            ));
        }
        let mut steps = Vec::new();
        let mut seen = BTreeSet::new();
        for s in f.steps {
            let here = format!("id: {}", s.id);
            let at = |m: String| at(&here, format!("step '{}': {m}", s.id));
            check_id(&s.id).map_err(at)?;
            if !seen.insert(s.id.clone()) {
                return Err(at("a second step with this id".into()));
            }
            let kinds = [s.lookup.is_some(), s.rule.is_some(), s.review]
                .iter()
                .filter(|k| **k)
                .count();
            if kinds > 1 {
                return Err(at("one of lookup, rule and review, not several".into()));
            }
            let kind = match (s.lookup, s.rule, s.review) {
                (Some(a), _, _) if a.is_empty() => return Err(at("lookup: name the attributes".into())),
                (Some(a), _, _) => StepKind::Lookup(a),
                (_, Some(p), _) => StepKind::Rule(p),
                (_, _, true) => StepKind::Review,
                _ if s.issues.is_some() => StepKind::Issue,
                _ => return Err(at("does nothing: give it lookup, rule, review or issues".into())),
            };
            let dur =
                |what: &str, v: &Option<String>| v.as_deref().map(|x| parse_duration(what, x)).transpose().map_err(at);
            let (step_sla, warn_after) = (dur("sla", &s.sla)?, dur("warn_after", &s.warn_after)?);
            if let (Some(w), Some(d)) = (warn_after, step_sla) {
                if w >= d {
                    return Err(at("warn_after must come before the sla".into()));
                }
            }
            if step_sla.is_none()
                && (warn_after.is_some() || s.escalate_to.is_some() || s.on_breach != Breach::Escalate)
            {
                return Err(at("warn_after, escalate_to and on_breach need an sla".into()));
            }
            if s.on_breach == Breach::Approve && kind != StepKind::Review {
                return Err(at("on_breach: approve is for review steps".into()));
            }
            if let Some(t) = &s.issues {
                if t.is_empty() || !t.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(at(format!("issues: '{t}' is not an entity type name")));
                }
            }
            steps.push(Step {
                id: s.id,
                title: s.title,
                department: s.department,
                needs: s.needs,
                kind,
                issues: s.issues,
                sla: step_sla,
                warn_after,
                escalate_to: s.escalate_to,
                on_breach: s.on_breach,
            });
        }
        let steps =
            topological(steps).map_err(|(step, m)| at(&format!("id: {step}"), format!("step '{step}': {m}")))?;
        Ok(Bundle {
            id: f.id,
            version: f.version,
            title: f.title,
            description: f.description,
            lead: f.lead,
            applies_to: f.applies_to,
            trigger: f.trigger.map(|t| Trigger {
                entity_type: t.entity_type,
                subject: t.subject,
                confirm_by: t.confirm_by,
            }),
            sla,
            counter_visits: f.counter_visits,
            steps,
            source: text.to_string(),
        })
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// Orders the steps so each follows what it needs; refuses an unknown
/// need and a cycle, naming a step of it.
fn topological(steps: Vec<Step>) -> Result<Vec<Step>, (String, String)> {
    let ids: BTreeSet<&str> = steps.iter().map(|s| s.id.as_str()).collect();
    for s in &steps {
        if let Some(n) = s.needs.iter().find(|n| !ids.contains(n.as_str())) {
            return Err((s.id.clone(), format!("needs '{n}', which is no step of this bundle")));
        }
        if s.needs.contains(&s.id) {
            return Err((s.id.clone(), "needs itself".into()));
        }
    }
    let mut left: BTreeMap<String, Step> = BTreeMap::new();
    let mut order: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
    for s in steps {
        left.insert(s.id.clone(), s);
    }
    let mut out: Vec<Step> = Vec::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    while !order.is_empty() {
        let ready = order
            .iter()
            .position(|id| left[id].needs.iter().all(|n| done.contains(n)));
        let Some(i) = ready else {
            return Err((
                order[0].clone(),
                format!("is in a cycle of needs among {}", order.join(", ")),
            ));
        };
        let id = order.remove(i);
        done.insert(id.clone());
        out.push(left.remove(&id).expect("each id once"));
    }
    Ok(out)
}
