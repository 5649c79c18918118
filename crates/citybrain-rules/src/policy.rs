//! Policies as files: the YAML shape, and loading it into a checked
//! [`Policy`]. Every error names the file, the line and the clause.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::check::{CheckError, Expr, Scope, Slot};
use crate::error::RulesError;
use crate::types::{parse_date, Ty, Value};

/// The largest policy file read (a policy is a page of law, not a dataset).
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    id: String,
    title: String,
    department: String,
    #[serde(default)]
    description: Option<String>,
    /// The legal text the policy implements.
    reference: String,
    version: u32,
    effective: EffectiveFile,
    /// The hub entity type the policy decides about (Person, Household, Organization...).
    applies_to: String,
    #[serde(default)]
    inputs: BTreeMap<String, InputFile>,
    #[serde(default)]
    parameters: BTreeMap<String, ParameterFile>,
    #[serde(default)]
    clauses: Vec<ClauseFile>,
    eligible: BodyFile,
    #[serde(default)]
    amount: Option<BodyFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EffectiveFile {
    from: String,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputFile {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    label: Option<String>,
    /// The attribute of the subject entity that holds it.
    #[serde(default)]
    attribute: Option<String>,
    /// Or: the entities of a type whose relationship `via` points at the subject.
    #[serde(default)]
    related: Option<RelatedFile>,
    #[serde(default)]
    default: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RelatedFile {
    #[serde(rename = "type")]
    entity_type: String,
    via: String,
    fields: BTreeMap<String, FieldFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    #[serde(rename = "type")]
    ty: String,
    attribute: String,
    #[serde(default)]
    default: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParameterFile {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    values: BTreeMap<String, ParameterValueFile>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ParameterValueFile {
    Full {
        value: serde_yaml_ng::Value,
        #[serde(default)]
        reference: Option<String>,
    },
    Bare(serde_yaml_ng::Value),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClauseFile {
    id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    #[serde(default)]
    cel: Option<String>,
    #[serde(default)]
    versions: Option<Vec<VersionFile>>,
}

/// A clause's CEL: one text, or dated versions (a law amended on a date).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BodyFile {
    Versions { versions: Vec<VersionFile> },
    Cel { cel: String },
    Text(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionFile {
    from: String,
    cel: String,
}

/// A loaded, checked policy.
#[derive(Debug)]
pub struct Policy {
    pub id: String,
    pub title: String,
    pub department: String,
    pub description: Option<String>,
    pub reference: String,
    pub version: u32,
    pub effective_from: NaiveDate,
    pub effective_to: Option<NaiveDate>,
    pub applies_to: String,
    pub inputs: Vec<Input>,
    pub parameters: Vec<Parameter>,
    pub clauses: Vec<Clause>,
    pub eligible: Clause,
    pub amount: Option<Clause>,
    pub file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub label: Option<String>,
    pub ty: Ty,
    pub source: InputSource,
    pub default: Option<Value>,
}

/// Where the hub holds an input.
#[derive(Debug, Clone, PartialEq)]
pub enum InputSource {
    /// An attribute of the subject entity.
    Attribute(String),
    /// One record per related entity: fields from their attributes.
    Related {
        entity_type: String,
        via: String,
        /// (field, attribute, default) in the record type's order.
        fields: Vec<(String, String, Option<Value>)>,
    },
    /// Not in the hub: the applicant states it.
    Stated,
}

#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    pub label: Option<String>,
    pub ty: Ty,
    pub unit: Option<String>,
    pub reference: Option<String>,
    /// In force from each date until the next; sorted by date.
    pub values: Vec<DatedValue>,
}

#[derive(Debug, Clone)]
pub struct DatedValue {
    pub from: NaiveDate,
    pub value: Value,
    pub reference: Option<String>,
}

impl Parameter {
    /// The value in force on `on`, if any.
    pub fn in_force(&self, on: NaiveDate) -> Option<&DatedValue> {
        self.values.iter().rev().find(|v| v.from <= on)
    }
}

#[derive(Debug)]
pub struct Clause {
    pub id: String,
    pub label: Option<String>,
    pub reference: Option<String>,
    pub ty: Ty,
    /// Sorted by date; the one in force on a date decides.
    pub versions: Vec<ClauseVersion>,
}

#[derive(Debug)]
pub struct ClauseVersion {
    pub from: NaiveDate,
    pub cel: String,
    pub program: cel::Program,
    pub expr: Expr,
}

impl Clause {
    pub fn in_force(&self, on: NaiveDate) -> Option<&ClauseVersion> {
        self.versions.iter().rev().find(|v| v.from <= on)
    }
}

impl Policy {
    /// Reads and checks one policy file.
    pub fn load(path: &Path) -> Result<Policy, RulesError> {
        let size = std::fs::metadata(path).map_err(|e| RulesError::io(path, e))?.len();
        if size > MAX_POLICY_BYTES {
            return Err(RulesError::at(
                path,
                1,
                format!("the file is {size} bytes; a policy may have at most {MAX_POLICY_BYTES}"),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| RulesError::io(path, e))?;
        Policy::parse(path, &text)
    }

    /// Checks a policy from its text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Policy, RulesError> {
        let file: PolicyFile = serde_yaml_ng::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            RulesError::at(path, line, e.to_string())
        })?;
        let lines = Lines { path, text };
        let date = |s: &str, key: &str| parse_date(s).map_err(|e| lines.error(key, s, e));

        let effective_from = date(&file.effective.from, "from:")?;
        let effective_to = file.effective.to.as_deref().map(|s| date(s, "to:")).transpose()?;
        if effective_to.is_some_and(|to| to < effective_from) {
            return Err(lines.error("to:", "", "the policy ends before it starts".into()));
        }

        let mut inputs = Vec::new();
        for (name, input) in &file.inputs {
            inputs.push(
                load_input(name, input)
                    .map_err(|e| lines.error(&format!("{name}:"), "", format!("input '{name}': {e}")))?,
            );
        }
        let mut parameters = Vec::new();
        for (name, p) in &file.parameters {
            let here = |e: String| lines.error(&format!("{name}:"), "", format!("parameter '{name}': {e}"));
            let ty = Ty::parse(&p.ty).map_err(here)?;
            let mut values = Vec::new();
            for (from, v) in &p.values {
                let (raw, reference) = match v {
                    ParameterValueFile::Full { value, reference } => (value, reference.clone()),
                    ParameterValueFile::Bare(value) => (value, None),
                };
                values.push(DatedValue {
                    from: parse_date(from).map_err(here)?,
                    value: yaml_value(&ty, raw).map_err(here)?,
                    reference,
                });
            }
            values.sort_by_key(|v| v.from);
            if values.first().is_none_or(|v| v.from > effective_from) {
                return Err(here(format!(
                    "has no value in force when the policy starts ({effective_from})"
                )));
            }
            parameters.push(Parameter {
                name: name.clone(),
                label: p.label.clone(),
                ty,
                unit: p.unit.clone(),
                reference: p.reference.clone(),
                values,
            });
        }

        let mut names: Vec<(&str, Slot, Ty)> = vec![("today", Slot::Today, Ty::Date)];
        for (i, input) in inputs.iter().enumerate() {
            names.push((&input.name, Slot::Input(i), input.ty.clone()));
        }
        for (i, p) in parameters.iter().enumerate() {
            if names.iter().any(|(n, _, _)| *n == p.name) {
                return Err(lines.error(
                    &format!("{}:", p.name),
                    "",
                    format!("'{}' is both an input and a parameter", p.name),
                ));
            }
            names.push((&p.name, Slot::Parameter(i), p.ty.clone()));
        }
        let mut clauses: Vec<Clause> = Vec::new();
        for (i, c) in file.clauses.iter().enumerate() {
            if names.iter().any(|(n, _, _)| *n == c.id) || crate::check::FUNCTIONS.contains(&c.id.as_str()) {
                return Err(lines.error("id:", &c.id, format!("clause '{}': the name is already used", c.id)));
            }
            let body = match (&c.cel, &c.versions) {
                (Some(cel), None) => BodyFile::Text(cel.clone()),
                (None, Some(v)) => BodyFile::Versions { versions: v.clone() },
                _ => {
                    return Err(lines.error(
                        "id:",
                        &c.id,
                        format!("clause '{}': give cel or versions, one of them", c.id),
                    ))
                }
            };
            let clause = load_clause(
                &lines,
                &c.id,
                c.label.clone(),
                c.reference.clone(),
                &body,
                &names,
                effective_from,
            )?;
            names.push((&file.clauses[i].id, Slot::Clause(i), clause.ty.clone()));
            clauses.push(clause);
        }
        let eligible = load_clause(&lines, "eligible", None, None, &file.eligible, &names, effective_from)?;
        if eligible.ty != Ty::Bool {
            return Err(lines.error(
                "eligible:",
                "",
                format!("eligible must be a bool, it is {}", eligible.ty),
            ));
        }
        let amount = match &file.amount {
            Some(body) => {
                let a = load_clause(&lines, "amount", None, None, body, &names, effective_from)?;
                if !a.ty.is_numeric() {
                    return Err(lines.error("amount:", "", format!("amount must be a number, it is {}", a.ty)));
                }
                Some(a)
            }
            None => None,
        };
        Ok(Policy {
            id: file.id,
            title: file.title,
            department: file.department,
            description: file.description,
            reference: file.reference,
            version: file.version,
            effective_from,
            effective_to,
            applies_to: file.applies_to,
            inputs,
            parameters,
            clauses,
            eligible,
            amount,
            file: path.to_path_buf(),
        })
    }

    /// Whether the policy is in force on `on`.
    pub fn in_force(&self, on: NaiveDate) -> bool {
        self.effective_from <= on && self.effective_to.is_none_or(|to| on <= to)
    }
}

fn load_input(name: &str, input: &InputFile) -> Result<Input, String> {
    let (ty, source) = match (&input.attribute, &input.related) {
        (Some(_), Some(_)) => return Err("give attribute or related, not both".into()),
        (Some(attr), None) => (Ty::parse(&input.ty)?, InputSource::Attribute(attr.clone())),
        (None, None) => (Ty::parse(&input.ty)?, InputSource::Stated),
        (None, Some(rel)) => {
            if input.ty.trim() != "list" {
                return Err("an input of related entities has type: list".into());
            }
            let mut types = Vec::new();
            let mut fields = Vec::new();
            for (field, f) in &rel.fields {
                let ty = Ty::parse(&f.ty).map_err(|e| format!("field '{field}': {e}"))?;
                let default = f
                    .default
                    .as_ref()
                    .map(|d| yaml_value(&ty, d))
                    .transpose()
                    .map_err(|e| format!("field '{field}': {e}"))?;
                types.push((field.clone(), ty));
                fields.push((field.clone(), f.attribute.clone(), default));
            }
            (
                Ty::List(Box::new(Ty::Record(Arc::new(types)))),
                InputSource::Related {
                    entity_type: rel.entity_type.clone(),
                    via: rel.via.clone(),
                    fields,
                },
            )
        }
    };
    let default = input.default.as_ref().map(|d| yaml_value(&ty, d)).transpose()?;
    Ok(Input {
        name: name.to_string(),
        label: input.label.clone(),
        ty,
        source,
        default,
    })
}

fn load_clause(
    lines: &Lines,
    id: &str,
    label: Option<String>,
    reference: Option<String>,
    body: &BodyFile,
    names: &[(&str, Slot, Ty)],
    effective_from: NaiveDate,
) -> Result<Clause, RulesError> {
    let key = if matches!(id, "eligible" | "amount") {
        format!("{id}:")
    } else {
        "id:".to_string()
    };
    let anchor = if key == "id:" { id } else { "" };
    let here = |msg: String| lines.error(&key, anchor, format!("clause '{id}': {msg}"));
    let texts: Vec<(NaiveDate, &str)> = match body {
        BodyFile::Text(t) | BodyFile::Cel { cel: t } => vec![(effective_from, t.as_str())],
        BodyFile::Versions { versions } => {
            let mut v = Vec::new();
            for ver in versions {
                v.push((parse_date(&ver.from).map_err(here)?, ver.cel.as_str()));
            }
            v.sort_by_key(|(d, _)| *d);
            v
        }
    };
    if texts.first().is_none_or(|(d, _)| *d > effective_from) {
        return Err(here(format!(
            "has no version in force when the policy starts ({effective_from})"
        )));
    }
    let mut versions = Vec::new();
    let mut ty: Option<Ty> = None;
    for (from, text) in texts {
        let program =
            cel::Program::compile(text).map_err(|e| here(format!("does not parse: {}", one_line(&e.to_string()))))?;
        let mut scope = Scope::new(names.to_vec());
        let expr = scope.check(program.expression()).map_err(|e: CheckError| {
            let at = find(program.expression(), e.node)
                .and_then(|node| span(node, program.source_info()))
                .and_then(|(start, stop)| text.get(start as usize..(stop as usize + 1).min(text.len())))
                .map(|s| format!(" (at `{}`)", s.trim()))
                .unwrap_or_default();
            here(format!("{}{at}", e.message))
        })?;
        if let Some(t) = &ty {
            if *t != expr.ty {
                return Err(here(format!("its versions give {t} and {}; they must agree", expr.ty)));
            }
        }
        ty = Some(expr.ty.clone());
        versions.push(ClauseVersion {
            from,
            cel: text.to_string(),
            program,
            expr,
        });
    }
    Ok(Clause {
        id: id.to_string(),
        label,
        reference,
        ty: ty.expect("at least one version"),
        versions,
    })
}

/// The node with id `id` in the tree.
fn find(e: &cel::common::ast::IdedExpr, id: u64) -> Option<&cel::common::ast::IdedExpr> {
    if e.id == id {
        return Some(e);
    }
    children(e).into_iter().find_map(|c| find(c, id))
}

fn children(e: &cel::common::ast::IdedExpr) -> Vec<&cel::common::ast::IdedExpr> {
    use cel::common::ast::Expr as E;
    match &e.expr {
        E::Call(c) => c.target.as_deref().into_iter().chain(c.args.iter()).collect(),
        E::Select(s) => vec![&s.operand],
        E::List(l) => l.elements.iter().collect(),
        E::Comprehension(c) => vec![&c.iter_range, &c.loop_step],
        _ => Vec::new(),
    }
}

/// The source text range a whole sub-tree covers (the parser records only
/// each node's own token).
fn span(e: &cel::common::ast::IdedExpr, info: &cel::common::ast::SourceInfo) -> Option<(u32, u32)> {
    let own = info.offset_for(e.id);
    children(e)
        .into_iter()
        .filter_map(|c| span(c, info))
        .chain(own)
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
}

fn yaml_value(ty: &Ty, raw: &serde_yaml_ng::Value) -> Result<Value, String> {
    let json: Json = serde_json::to_value(raw).map_err(|e| e.to_string())?;
    Value::from_json(ty, &json)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Finds the line of a key in the file, for errors found after parsing.
struct Lines<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Lines<'_> {
    /// The first line whose text, trimmed of a leading `- `, starts with
    /// `key` and holds `anchor`.
    fn line_of(&self, key: &str, anchor: &str) -> usize {
        self.text
            .lines()
            .position(|l| {
                let t = l.trim_start().trim_start_matches("- ").trim_start();
                t.starts_with(key) && (anchor.is_empty() || t[key.len()..].trim().trim_matches(['"', '\'']) == anchor)
            })
            .map(|i| i + 1)
            .unwrap_or(1)
    }

    fn error(&self, key: &str, anchor: &str, message: String) -> RulesError {
        RulesError::at(self.path, self.line_of(key, anchor), message)
    }
}
