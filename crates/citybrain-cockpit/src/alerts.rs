//! Alert rules ("countable and controllable"): files of rules over any hub
//! entity attribute — a threshold, a rate of change, or silence (no update
//! for some time) — and the state machine that opens an alert when a rule
//! starts to hold for an entity. An alert stays until an officer closes it;
//! the rule may fire again for that entity once it has stopped holding.
//! Pure: the web layer reads entities, feeds [`Watch::observe`], and writes
//! the `Alert` entities it returns to the hub.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definition::{CheckError, Text};

/// Most rules in one file.
pub const MAX_RULES: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleFile {
    pub schema_version: u32,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// Unique: lower-case letters, digits and '-'.
    pub id: String,
    pub title: Text,
    /// Entity type watched (a term, e.g. `TrafficFlowObserved`).
    pub entity_type: String,
    /// Only entities whose id starts with this.
    #[serde(default)]
    pub id_prefix: Option<String>,
    /// The attribute watched (not needed for `silentForS`).
    #[serde(default)]
    pub attr: Option<String>,
    pub condition: Condition,
    /// informational, low, medium, high or critical (Smart Data Models `Alert`).
    pub severity: Severity,
    /// Alert category (e.g. traffic, environment, security).
    pub category: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

/// When a rule holds for an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum Condition {
    /// The value is above this.
    Above(f64),
    /// The value is below this.
    Below(f64),
    /// The value rose by at least `amount` within `within_s` seconds.
    RisesBy {
        amount: f64,
        #[serde(rename = "withinS")]
        within_s: f64,
    },
    /// The entity has not been updated for this many seconds.
    SilentForS(f64),
}

fn err(field: impl Into<String>, message: impl Into<String>) -> CheckError {
    CheckError {
        field: field.into(),
        message: message.into(),
    }
}

/// Parses and checks a rule file.
pub fn parse_rules(text: &str) -> Result<RuleFile, CheckError> {
    if text.len() > crate::definition::MAX_FILE_BYTES {
        return Err(err("", "file too large"));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let f: RuleFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        err(
            if path == "." { String::new() } else { path },
            e.into_inner().to_string(),
        )
    })?;
    if f.schema_version != 1 {
        return Err(err("schemaVersion", "this build reads schemaVersion 1"));
    }
    if f.rules.len() > MAX_RULES {
        return Err(err("rules", format!("at most {MAX_RULES} rules")));
    }
    let mut ids = HashSet::new();
    for (i, r) in f.rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        let ok_id = !r.id.is_empty()
            && r.id.len() <= 64
            && r.id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok_id || !ids.insert(r.id.as_str()) {
            return Err(err(
                format!("{at}.id"),
                "a unique id of lower-case letters, digits and '-'",
            ));
        }
        if r.title.en.trim().is_empty() || r.title.zh.trim().is_empty() {
            return Err(err(
                format!("{at}.title"),
                "needs both an English (en) and a Chinese (zh) label",
            ));
        }
        if r.entity_type.trim().is_empty() {
            return Err(err(format!("{at}.entityType"), "an entity type is needed"));
        }
        let needs_attr = !matches!(r.condition, Condition::SilentForS(_));
        if needs_attr && r.attr.is_none() {
            return Err(err(format!("{at}.attr"), "this condition needs an attribute"));
        }
        let finite = match &r.condition {
            Condition::Above(x) | Condition::Below(x) => x.is_finite(),
            Condition::RisesBy { amount, within_s } => amount.is_finite() && *within_s > 0.0 && *within_s <= 86_400.0,
            Condition::SilentForS(s) => *s > 0.0 && *s <= 86_400.0 * 7.0,
        };
        if !finite {
            return Err(err(
                format!("{at}.condition"),
                "numbers must be finite; windows in (0, 86400] s",
            ));
        }
    }
    Ok(f)
}

/// An alert to write to the hub (an NGSI-LD `Alert` entity, Smart Data Models).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    pub id: String,
    pub rule: String,
    pub entity: String,
    pub severity: Severity,
    pub category: String,
    pub description: String,
    /// ms since the epoch
    pub at_ms: u64,
    pub value: Option<f64>,
}

impl NewAlert {
    /// The entity in NGSI-LD normalized form (default @context terms).
    pub fn to_entity(&self, date_issued: &str) -> Value {
        serde_json::json!({
            "id": self.id,
            "type": "Alert",
            "category": {"type": "Property", "value": self.category},
            "subCategory": {"type": "Property", "value": self.rule},
            "severity": {"type": "Property", "value": self.severity},
            "description": {"type": "Property", "value": self.description},
            "dateIssued": {"type": "Property", "value": {"@type": "DateTime", "@value": date_issued}},
            "alertSource": {"type": "Relationship", "object": self.entity},
            "status": {"type": "Property", "value": "open"},
            "observedValue": {"type": "Property", "value": self.value},
        })
    }
}

/// Watches entities against rules; remembers what it needs (recent values
/// for rates, which rules hold for which entity).
#[derive(Debug, Default)]
pub struct Watch {
    /// (rule, entity) → recent (ms, value), for rates of change.
    history: HashMap<(String, String), VecDeque<(u64, f64)>>,
    /// (rule, entity) pairs that held at the last look.
    holding: HashSet<(String, String)>,
    /// When each pair stopped holding (ms): it fires again only after `rearm_ms`.
    cleared_at: HashMap<(String, String), u64>,
    rearm_ms: u64,
    fired: u64,
}

fn number(v: Option<&Value>) -> Option<f64> {
    v?.as_f64().filter(|x| x.is_finite())
}

impl Watch {
    pub fn new() -> Watch {
        Watch::default()
    }

    /// A rule that stopped holding fires again for the same entity only
    /// after it has stayed clear this long (a lot flickering between full
    /// and one space free is one alert, not hundreds).
    pub fn with_rearm_ms(mut self, ms: u64) -> Watch {
        self.rearm_ms = ms;
        self
    }

    /// One look at the entities (key-value objects with `id`, `type`, the
    /// attributes, and `modifiedAtMs`) at `now_ms`: the alerts to open.
    pub fn observe(&mut self, rules: &[Rule], entities: &[Value], now_ms: u64) -> Vec<NewAlert> {
        let mut out = Vec::new();
        let mut now_holding = HashSet::new();
        for r in rules {
            for e in entities {
                if e["type"].as_str() != Some(r.entity_type.as_str()) {
                    continue;
                }
                let Some(id) = e["id"].as_str() else { continue };
                if r.id_prefix.as_ref().is_some_and(|p| !id.starts_with(p.as_str())) {
                    continue;
                }
                let key = (r.id.clone(), id.to_string());
                let value = r.attr.as_ref().and_then(|a| number(e.get(a)));
                let holds = match &r.condition {
                    Condition::Above(x) => value.is_some_and(|v| v > *x),
                    Condition::Below(x) => value.is_some_and(|v| v < *x),
                    Condition::RisesBy { amount, within_s } => {
                        let h = self.history.entry(key.clone()).or_default();
                        if let Some(v) = value {
                            h.push_back((now_ms, v));
                        }
                        let window = (*within_s * 1000.0) as u64;
                        while h.front().is_some_and(|(t, _)| t + window < now_ms) {
                            h.pop_front();
                        }
                        let low = h.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
                        value.is_some_and(|v| v - low >= *amount)
                    }
                    Condition::SilentForS(s) => {
                        let modified = e["modifiedAtMs"].as_u64().unwrap_or(now_ms);
                        now_ms.saturating_sub(modified) as f64 >= s * 1000.0
                    }
                };
                if !holds {
                    continue;
                }
                let rearmed = self
                    .cleared_at
                    .get(&key)
                    .is_none_or(|t| now_ms.saturating_sub(*t) >= self.rearm_ms);
                if !self.holding.contains(&key) && rearmed {
                    self.fired += 1;
                    let tail = id.rsplit(':').next().unwrap_or(id);
                    out.push(NewAlert {
                        id: format!("urn:ngsi-ld:Alert:citybrain:{}:{tail}:{now_ms}", r.id),
                        rule: r.id.clone(),
                        entity: id.to_string(),
                        severity: r.severity,
                        category: r.category.clone(),
                        description: match value {
                            Some(v) => format!("{} — {tail}: {v}", r.title.en),
                            None => format!("{} — {tail}", r.title.en),
                        },
                        at_ms: now_ms,
                        value,
                    });
                }
                now_holding.insert(key);
            }
        }
        for k in self.holding.difference(&now_holding) {
            self.cleared_at.insert(k.clone(), now_ms);
        }
        for k in &now_holding {
            if !self.holding.contains(k) {
                // Held again before re-arming: keep waiting from the last clear.
                continue;
            }
            self.cleared_at.remove(k);
        }
        self.holding = now_holding;
        // Forget rate histories of entities no longer seen.
        let seen: HashSet<&str> = entities.iter().filter_map(|e| e["id"].as_str()).collect();
        self.history.retain(|(_, id), _| seen.contains(id.as_str()));
        out
    }

    /// Alerts opened since the start.
    pub fn fired(&self) -> u64 {
        self.fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(cond: Value) -> Rule {
        let f = parse_rules(
            &json!({"schemaVersion": 1, "rules": [{"id": "r", "title": {"en": "Queue long", "zh": "排队过长"},
                "entityType": "TrafficFlowObserved", "attr": "queueLength", "condition": cond,
                "severity": "high", "category": "traffic"}]})
            .to_string(),
        )
        .unwrap();
        f.rules[0].clone()
    }

    fn flow(v: f64, modified: u64) -> Vec<Value> {
        vec![
            json!({"id": "urn:x:TrafficFlowObserved:a", "type": "TrafficFlowObserved", "queueLength": v, "modifiedAtMs": modified}),
        ]
    }

    #[test]
    fn a_threshold_opens_one_alert_per_crossing() {
        let r = [rule(json!({"above": 10.0}))];
        let mut w = Watch::new();
        assert!(w.observe(&r, &flow(5.0, 0), 1000).is_empty());
        let a = w.observe(&r, &flow(12.0, 0), 2000);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].severity, Severity::High);
        assert!(a[0].description.contains("Queue long"));
        assert!(
            w.observe(&r, &flow(15.0, 0), 3000).is_empty(),
            "still above: no second alert"
        );
        assert!(w.observe(&r, &flow(3.0, 0), 4000).is_empty());
        assert_eq!(w.observe(&r, &flow(11.0, 0), 5000).len(), 1, "a new crossing");
        assert_eq!(w.fired(), 2);
        // With re-arming, a flicker within the time is no new alert.
        let mut w = Watch::new().with_rearm_ms(60_000);
        assert_eq!(w.observe(&r, &flow(12.0, 0), 0).len(), 1);
        assert!(w.observe(&r, &flow(3.0, 0), 1_000).is_empty());
        assert!(w.observe(&r, &flow(12.0, 0), 2_000).is_empty(), "flicker");
        assert!(w.observe(&r, &flow(3.0, 0), 3_000).is_empty());
        assert_eq!(
            w.observe(&r, &flow(12.0, 0), 70_000).len(),
            1,
            "clear for a minute, then again"
        );
    }

    #[test]
    fn a_rate_of_change_and_silence() {
        let r = [rule(json!({"risesBy": {"amount": 10.0, "withinS": 60.0}}))];
        let mut w = Watch::new();
        assert!(w.observe(&r, &flow(0.0, 0), 0).is_empty());
        assert!(w.observe(&r, &flow(5.0, 0), 30_000).is_empty());
        assert_eq!(w.observe(&r, &flow(11.0, 0), 50_000).len(), 1);
        // The same rise spread over more than the window is no alert.
        let mut w = Watch::new();
        for (i, v) in [0.0, 4.0, 8.0, 12.0].iter().enumerate() {
            assert!(w.observe(&r, &flow(*v, 0), i as u64 * 70_000).is_empty());
        }
        let r = [rule(json!({"silentForS": 120.0}))];
        let mut w = Watch::new();
        assert!(w.observe(&r, &flow(1.0, 1_000), 100_000).is_empty());
        assert_eq!(w.observe(&r, &flow(1.0, 1_000), 122_000).len(), 1);
    }

    #[test]
    fn rule_files_are_checked() {
        let bad = json!({"schemaVersion": 1, "rules": [{"id": "r", "title": {"en": "a", "zh": "b"},
            "entityType": "T", "condition": {"above": 1.0}, "severity": "high", "category": "c"}]});
        assert_eq!(parse_rules(&bad.to_string()).unwrap_err().field, "rules[0].attr");
        let bad = json!({"schemaVersion": 1, "rules": [{"id": "r", "title": {"en": "a", "zh": "b"}, "attr": "v",
            "entityType": "T", "condition": {"above": 1.0}, "severity": "dire", "category": "c"}]});
        assert!(parse_rules(&bad.to_string())
            .unwrap_err()
            .to_string()
            .starts_with("rules[0].severity"));
    }
}
