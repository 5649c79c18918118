//! A cockpit definition: a versioned JSON file modelled on Grafana's
//! dashboard model — a 1920×1080 canvas on a 24-column grid, panels with a
//! query over hub entities, variables (district → street → lot) kept in the
//! URL, labels in Chinese and English.
//!
//! [`parse`] reads one file and checks it, reporting the first problem with
//! the field's path (`panels[2].gridPos.w: ...`).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// The definition format this build reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Columns of the layout grid (as Grafana).
pub const GRID_COLUMNS: u32 = 24;
/// Rows of the layout grid on the 1920×1080 wall canvas.
pub const GRID_ROWS: u32 = 27;
/// Largest definition file, bytes.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Most panels in one cockpit.
pub const MAX_PANELS: usize = 64;

/// A label in both languages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    pub en: String,
    pub zh: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Definition {
    pub schema_version: u32,
    /// Stable id, used in URLs: lower-case letters, digits and '-'.
    pub uid: String,
    pub title: Text,
    /// city, district, street or department (the tiers of the cockpits).
    pub tier: Tier,
    #[serde(default)]
    pub description: Option<Text>,
    /// Variables, in drill-down order (e.g. district, then street).
    #[serde(default)]
    pub variables: Vec<Variable>,
    pub panels: Vec<Panel>,
    /// Who may view it: `public` (anyone, the public board), `staff` (every
    /// department officer) and/or department keys of the data-sharing
    /// policy. Administrators see every cockpit. Default: staff.
    #[serde(default = "staff")]
    pub audience: Vec<String>,
}

fn staff() -> Vec<String> {
    vec!["staff".into()]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    City,
    District,
    Street,
    Department,
}

/// A variable: a choice the viewer makes (kept in the URL as `?name=value`),
/// substituted as `${name}` in panel queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    pub name: String,
    pub label: Text,
    pub default: String,
    pub options: Vec<VariableOption>,
    /// An earlier variable this one narrows (district → street → lot): only
    /// the options whose `parent` is that variable's value apply.
    #[serde(default, rename = "dependsOn", skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableOption {
    pub value: String,
    pub label: Text,
    /// With `dependsOn`: the parent variable's value this option belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// The variables' values for a view: each from `given` (the URL) or, when
/// absent, its default — or, when the default does not belong under the
/// parent's value, the first option that does. A given value that is not
/// an option, or not under its parent's value, is an error naming both.
pub fn resolve_variables(
    d: &Definition,
    given: &std::collections::HashMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for v in &d.variables {
        let parent = v.depends_on.as_ref().and_then(|p| {
            out.iter()
                .find(|(n, _)| n == p)
                .map(|(n, val)| (n.clone(), val.clone()))
        });
        let fits = |o: &VariableOption| {
            parent
                .as_ref()
                .is_none_or(|(_, pv)| o.parent.as_deref() == Some(pv.as_str()))
        };
        let value = match given.get(&v.name) {
            Some(value) => {
                let Some(o) = v.options.iter().find(|o| &o.value == value) else {
                    return Err(format!("variable {}: '{value}' is not one of its options", v.name));
                };
                if !fits(o) {
                    let (pn, pv) = parent.clone().unwrap_or_default();
                    return Err(format!("variable {}: '{value}' is not under {pn} '{pv}'", v.name));
                }
                value.clone()
            }
            None => match v.options.iter().find(|o| o.value == v.default).filter(|o| fits(o)) {
                Some(o) => o.value.clone(),
                None => match v.options.iter().find(|o| fits(o)) {
                    Some(o) => o.value.clone(),
                    None => return Err(format!("variable {}: no option under its parent's value", v.name)),
                },
            },
        };
        out.push((v.name.clone(), value));
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Panel {
    /// Unique in the cockpit: letters, digits, '-' and '_'.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: PanelKind,
    pub title: Text,
    pub grid_pos: GridPos,
    /// What it shows; every panel but `alerts` and `map` needs one.
    #[serde(default)]
    pub query: Option<Query>,
    /// `map`: the network drawn and the layers coloured by live state.
    #[serde(default)]
    pub map: Option<MapSpec>,
    /// Unit shown after values (e.g. "veh", "min", "%").
    #[serde(default)]
    pub unit: Option<String>,
    /// Colour steps: a value at or above `value` takes `color`.
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    /// `gauge`: the largest value of the dial.
    #[serde(default)]
    pub max: Option<f64>,
    /// `timeseries`: seconds of history kept and shown.
    #[serde(default)]
    pub window_s: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    Kpi,
    Gauge,
    Timeseries,
    Bar,
    Table,
    Alerts,
    Map,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridPos {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub value: f64,
    pub color: String,
}

/// Which entities a panel reads and how it reduces them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Query {
    /// Entity type (a term, e.g. `OffStreetParking`).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Only entities whose id starts with this (may hold `${variable}`).
    #[serde(default)]
    pub id_prefix: Option<String>,
    /// Only entities whose id starts with one of these (with `idPrefix`,
    /// both must hold): several scenarios' sensors in one figure.
    #[serde(default)]
    pub any_id_prefix: Vec<String>,
    /// Never entities whose id starts with one of these (an aggregate that
    /// would count the same cars twice).
    #[serde(default)]
    pub except_id_prefix: Vec<String>,
    /// The attribute read (its value; a number for kpi, gauge, timeseries, bar).
    #[serde(default)]
    pub attr: Option<String>,
    /// How the values of the matching entities are reduced to one.
    #[serde(default)]
    pub aggregate: Aggregate,
    /// `bar` and `table`: the attribute naming each row (default: the id).
    #[serde(default)]
    pub label_attr: Option<String>,
    /// `table`: the columns shown.
    #[serde(default)]
    pub columns: Vec<String>,
    /// `table`: the columns' headings, one per column (default: the names).
    #[serde(default)]
    pub column_labels: Vec<Text>,
    /// Only entities whose attributes have these values (`{"status":
    /// "open"}`; string values may hold `${variable}`).
    #[serde(default, rename = "where")]
    pub where_equal: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    #[default]
    Sum,
    Avg,
    Min,
    Max,
    /// Number of matching entities (no attribute needed).
    Count,
}

/// A map: the roads of a scenario network and its lots, coloured by the
/// entities that describe them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MapSpec {
    /// The network whose geometry is drawn: `hospital-district` or `signal-corridor`.
    pub network: String,
    /// Roads coloured by this attribute of `TrafficFlowObserved` entities
    /// whose id ends with the road's edge id (e.g. `queueLength`).
    #[serde(default)]
    pub road_attr: Option<String>,
    /// Only flows whose id starts with this.
    #[serde(default)]
    pub road_id_prefix: Option<String>,
    /// Points drawn: entities of this type with a `location`.
    #[serde(default)]
    pub point_type: Option<String>,
    /// Only points whose id starts with this.
    #[serde(default)]
    pub point_id_prefix: Option<String>,
    /// Their colour attribute (e.g. `availableSpotNumber`) and its scale maximum.
    #[serde(default)]
    pub point_attr: Option<String>,
    /// Points placed by this attribute (`[x, y]` in the network's own
    /// metres) instead of `location`: for networks without a geographic
    /// reference (the signal corridor).
    #[serde(default)]
    pub point_position_attr: Option<String>,
    /// The page a click on a point opens (drill-down), on this server:
    /// `{id}` is the last part of the entity's id, `{attr}` an attribute's
    /// value, `${var}` a variable of this cockpit — e.g.
    /// `/cockpit/street?street={street}&lot={id}`.
    #[serde(default)]
    pub point_link: Option<String>,
}

/// A problem in a definition: where (the field's path) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct CheckError {
    /// Path of the field, e.g. `panels[2].gridPos.w` (empty: the whole file).
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> CheckError {
    CheckError {
        field: field.into(),
        message: message.into(),
    }
}

/// The known map networks.
pub const NETWORKS: &[&str] = &["hospital-district", "signal-corridor"];

/// Parses and checks one definition.
pub fn parse(text: &str) -> Result<Definition, CheckError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(err("", format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let def: Definition = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        err(field, e.into_inner().to_string())
    })?;
    check(&def)?;
    Ok(def)
}

fn valid_name(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
}

/// The checks beyond the shape: ids, layout, queries, variables.
pub fn check(d: &Definition) -> Result<(), CheckError> {
    if d.schema_version != SCHEMA_VERSION {
        return Err(err(
            "schemaVersion",
            format!(
                "{} is not supported (this build reads {SCHEMA_VERSION})",
                d.schema_version
            ),
        ));
    }
    if !valid_name(&d.uid, &['-']) {
        return Err(err("uid", "use 1-64 lower-case letters, digits and '-'"));
    }
    if d.audience.is_empty() {
        return Err(err(
            "audience",
            "name at least one of public, staff or a department key",
        ));
    }
    for (i, a) in d.audience.iter().enumerate() {
        if !valid_name(a, &['-', '_']) {
            return Err(err(
                format!("audience[{i}]"),
                "public, staff or a department key (1-64 of a-z 0-9 - _)",
            ));
        }
    }
    for (field, t) in [("title", &d.title)] {
        if t.en.trim().is_empty() || t.zh.trim().is_empty() {
            return Err(err(field, "needs both an English (en) and a Chinese (zh) label"));
        }
    }
    if d.panels.is_empty() || d.panels.len() > MAX_PANELS {
        return Err(err("panels", format!("1 to {MAX_PANELS} panels")));
    }
    let mut var_names = HashSet::new();
    for (i, v) in d.variables.iter().enumerate() {
        let at = format!("variables[{i}]");
        if !valid_name(&v.name, &['_']) || !var_names.insert(v.name.as_str()) {
            return Err(err(
                format!("{at}.name"),
                "a unique name of lower-case letters, digits and '_'",
            ));
        }
        if v.options.is_empty() || !v.options.iter().any(|o| o.value == v.default) {
            return Err(err(format!("{at}.default"), "must be one of the options"));
        }
        match &v.depends_on {
            None => {
                if let Some(j) = v.options.iter().position(|o| o.parent.is_some()) {
                    return Err(err(
                        format!("{at}.options[{j}].parent"),
                        "only options of a variable with dependsOn have a parent",
                    ));
                }
            }
            Some(p) => {
                let Some(parent) = d.variables[..i].iter().find(|x| &x.name == p) else {
                    return Err(err(format!("{at}.dependsOn"), format!("'{p}' is no earlier variable")));
                };
                for (j, o) in v.options.iter().enumerate() {
                    let ok = o
                        .parent
                        .as_ref()
                        .is_some_and(|pv| parent.options.iter().any(|po| &po.value == pv));
                    if !ok {
                        return Err(err(
                            format!("{at}.options[{j}].parent"),
                            format!("must be one of the values of '{p}'"),
                        ));
                    }
                }
                for po in &parent.options {
                    if !v.options.iter().any(|o| o.parent.as_deref() == Some(po.value.as_str())) {
                        return Err(err(
                            format!("{at}.options"),
                            format!("no option under {p} '{}'", po.value),
                        ));
                    }
                }
            }
        }
    }
    let mut ids = HashSet::new();
    let mut cells: Vec<(usize, GridPos)> = Vec::new();
    for (i, p) in d.panels.iter().enumerate() {
        let at = format!("panels[{i}]");
        if !valid_name(&p.id, &['-', '_']) {
            return Err(err(format!("{at}.id"), "use lower-case letters, digits, '-' and '_'"));
        }
        if !ids.insert(p.id.as_str()) {
            return Err(err(format!("{at}.id"), format!("'{}' is used by another panel", p.id)));
        }
        if p.title.en.trim().is_empty() || p.title.zh.trim().is_empty() {
            return Err(err(
                format!("{at}.title"),
                "needs both an English (en) and a Chinese (zh) label",
            ));
        }
        let g = p.grid_pos;
        if g.w == 0 || g.h == 0 {
            return Err(err(format!("{at}.gridPos"), "w and h must be at least 1"));
        }
        let (right, bottom) = (g.x as u64 + g.w as u64, g.y as u64 + g.h as u64);
        if right > GRID_COLUMNS as u64 {
            return Err(err(
                format!("{at}.gridPos.w"),
                format!("x + w = {right} is beyond the grid's {GRID_COLUMNS} columns"),
            ));
        }
        if bottom > GRID_ROWS as u64 {
            return Err(err(
                format!("{at}.gridPos.h"),
                format!("y + h = {bottom} is beyond the wall's {GRID_ROWS} rows"),
            ));
        }
        if let Some((j, _)) = cells.iter().find(|(_, o)| overlap(o, &g)) {
            return Err(err(
                format!("{at}.gridPos"),
                format!("overlaps panel '{}'", d.panels[*j].id),
            ));
        }
        cells.push((i, g));
        match p.kind {
            PanelKind::Alerts => {}
            PanelKind::Map => {
                let Some(m) = &p.map else {
                    return Err(err(
                        format!("{at}.map"),
                        "a map panel needs \"map\": {\"network\": ...}",
                    ));
                };
                if !NETWORKS.contains(&m.network.as_str()) {
                    return Err(err(
                        format!("{at}.map.network"),
                        format!("unknown network '{}' ({})", m.network, NETWORKS.join(", ")),
                    ));
                }
                if let Some(link) = &m.point_link {
                    // Same server only: a path, never another site or a script.
                    if !link.starts_with('/') || link.starts_with("//") || link.contains('\\') {
                        return Err(err(
                            format!("{at}.map.pointLink"),
                            "a path on this server, starting with '/' (e.g. /cockpit/street?lot={id})",
                        ));
                    }
                    for name in variables_in(link) {
                        if !var_names.contains(name.as_str()) {
                            return Err(err(
                                format!("{at}.map.pointLink"),
                                format!("'${{{name}}}' names no variable of this cockpit"),
                            ));
                        }
                    }
                }
            }
            kind => {
                let Some(q) = &p.query else {
                    return Err(err(format!("{at}.query"), "this panel type needs a query"));
                };
                if q.entity_type.trim().is_empty() {
                    return Err(err(format!("{at}.query.type"), "an entity type is needed"));
                }
                let numeric = matches!(
                    kind,
                    PanelKind::Kpi | PanelKind::Gauge | PanelKind::Timeseries | PanelKind::Bar
                );
                if numeric && q.aggregate != Aggregate::Count && q.attr.is_none() {
                    return Err(err(
                        format!("{at}.query.attr"),
                        "an attribute is needed (or \"aggregate\": \"count\")",
                    ));
                }
                if kind == PanelKind::Table && q.columns.is_empty() {
                    return Err(err(format!("{at}.query.columns"), "a table needs columns"));
                }
                if !q.column_labels.is_empty() && q.column_labels.len() != q.columns.len() {
                    return Err(err(
                        format!("{at}.query.columnLabels"),
                        format!("{} labels for {} columns", q.column_labels.len(), q.columns.len()),
                    ));
                }
                let mut texts: Vec<(String, &str)> = Vec::new();
                if let Some(prefix) = &q.id_prefix {
                    texts.push((format!("{at}.query.idPrefix"), prefix));
                }
                for (k, v) in &q.where_equal {
                    if let Some(v) = v.as_str() {
                        texts.push((format!("{at}.query.where.{k}"), v));
                    }
                }
                for (field, text) in texts {
                    for name in variables_in(text) {
                        if !var_names.contains(name.as_str()) {
                            return Err(err(field, format!("'${{{name}}}' names no variable of this cockpit")));
                        }
                    }
                }
            }
        }
        if p.kind == PanelKind::Gauge && !p.max.is_some_and(|m| m > 0.0) {
            return Err(err(format!("{at}.max"), "a gauge needs a max above 0"));
        }
        if p.window_s.is_some_and(|w| !(10..=86_400).contains(&w)) {
            return Err(err(format!("{at}.windowS"), "between 10 and 86400 seconds"));
        }
        if p.thresholds.windows(2).any(|w| w[1].value < w[0].value) {
            return Err(err(format!("{at}.thresholds"), "values must rise"));
        }
    }
    Ok(())
}

fn overlap(a: &GridPos, b: &GridPos) -> bool {
    a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
}

/// The `${name}` references in a string.
pub fn variables_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// `s` with each `${name}` replaced by its value (unknown names left as they are).
pub fn substitute(s: &str, values: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (k, v) in values {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    out
}
