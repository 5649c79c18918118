//! One decision with its explanation, computed by the `cel` interpreter: the
//! value of every clause, the inputs used and the hub entities they came
//! from, the policy and parameter versions, and the time.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use crate::policy::{Clause, Policy};
use crate::types::{self, Ty, Value};

/// Where a fact came from in the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub entity: String,
    pub attribute: String,
}

/// What is known about the subject: input values by name, with their sources.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub subject: Option<String>,
    pub values: BTreeMap<String, Value>,
    pub sources: BTreeMap<String, Vec<Source>>,
}

impl Facts {
    pub fn set(&mut self, name: &str, value: Value) -> &mut Self {
        self.values.insert(name.to_string(), value);
        self
    }

    /// Facts from a JSON object of input values, typed by the policy's
    /// declarations (what a test case or an applicant states).
    pub fn from_json(policy: &Policy, json: &serde_json::Map<String, Json>) -> Result<Facts, String> {
        let mut facts = Facts::default();
        for (name, v) in json {
            let input = policy
                .inputs
                .iter()
                .find(|i| &i.name == name)
                .ok_or_else(|| format!("'{name}' is not an input of {}", policy.id))?;
            let value = Value::from_json(&input.ty, v).map_err(|e| format!("{name}: {e}"))?;
            facts.values.insert(name.clone(), value);
        }
        Ok(facts)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Eligible,
    NotEligible,
    /// An input without a default is missing: nothing was evaluated.
    Incomplete,
    /// The policy is not in force on the decision date.
    NotInForce,
    /// A clause failed (an overflow, a division by zero): see its error.
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub policy: String,
    pub policy_version: u32,
    pub title: String,
    pub department: String,
    pub reference: String,
    /// The date whose law and parameters applied.
    pub on: NaiveDate,
    pub decided_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    pub clauses: Vec<ClauseValue>,
    pub inputs: Vec<InputUsed>,
    pub parameters: Vec<ParameterUsed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClauseValue {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The version of the clause that applied (its first day in force).
    pub version: NaiveDate,
    pub cel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputUsed {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub value: Json,
    /// True when no value was known and the declared default applied.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub defaulted: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParameterUsed {
    pub name: String,
    pub value: Json,
    /// The first day of the value that applied.
    pub in_force_since: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl Decision {
    pub fn clause(&self, id: &str) -> Option<&ClauseValue> {
        self.clauses.iter().find(|c| c.id == id)
    }
}

/// The standard CEL environment, built once.
static ENV: LazyLock<Arc<cel::Env>> = LazyLock::new(|| Arc::new(cel::Env::stdlib()));

/// A CEL context with the policy functions of [`crate::check::FUNCTIONS`].
pub(crate) fn context() -> cel::Context<'static, 'static> {
    const CLASH: &str = "policy functions do not clash with CEL's";
    type Ts = DateTime<FixedOffset>;
    let mut ctx = cel::Context::with_env(ENV.clone());
    ctx.add_function("years_between", |a: Ts, b: Ts| {
        types::years_between(a.date_naive(), b.date_naive())
    })
    .expect(CLASH);
    ctx.add_function("months_between", |a: Ts, b: Ts| {
        types::months_between(a.date_naive(), b.date_naive())
    })
    .expect(CLASH);
    ctx.add_function("days_between", |a: Ts, b: Ts| {
        types::days_between(a.date_naive(), b.date_naive())
    })
    .expect(CLASH);
    ctx.add_function("sum", |l: Arc<Vec<cel::Value>>| -> cel::ResolveResult {
        let mut total = 0.0;
        for v in l.iter() {
            total += match v {
                cel::Value::Int(i) => *i as f64,
                cel::Value::Float(f) => *f,
                other => {
                    return Err(cel::ExecutionError::function_error(
                        "sum",
                        format!("not a number: {other:?}"),
                    ))
                }
            };
        }
        Ok(cel::Value::Float(total))
    })
    .expect(CLASH);
    ctx.add_function("date", |s: Arc<String>| -> cel::ResolveResult {
        types::parse_date(&s)
            .map(|d| cel::Value::Timestamp(types::date_to_timestamp(d)))
            .map_err(|e| cel::ExecutionError::function_error("date", e))
    })
    .expect(CLASH);
    ctx
}

impl Policy {
    /// Decides about the subject of `facts` for the date `on`.
    pub fn decide(&self, facts: &Facts, on: NaiveDate, at: DateTime<Utc>) -> Decision {
        let mut decision = Decision {
            policy: self.id.clone(),
            policy_version: self.version,
            title: self.title.clone(),
            department: self.department.clone(),
            reference: self.reference.clone(),
            on,
            decided_at: at,
            subject: facts.subject.clone(),
            outcome: Outcome::NotInForce,
            amount: None,
            missing: Vec::new(),
            clauses: Vec::new(),
            inputs: Vec::new(),
            parameters: Vec::new(),
        };
        if !self.in_force(on) {
            return decision;
        }
        let mut ctx = context();
        ctx.add_variable_from_value("today", Value::Date(on).to_cel(&Ty::Date));
        for input in &self.inputs {
            let (value, defaulted) = match (facts.values.get(&input.name), &input.default) {
                (Some(v), _) => (v, false),
                (None, Some(d)) => (d, true),
                (None, None) => {
                    decision.missing.push(input.name.clone());
                    continue;
                }
            };
            if !value.conforms(&input.ty) {
                decision.outcome = Outcome::Error;
                decision.missing.push(format!("{} (not a {})", input.name, input.ty));
                continue;
            }
            ctx.add_variable_from_value(input.name.as_str(), value.to_cel(&input.ty));
            decision.inputs.push(InputUsed {
                name: input.name.clone(),
                label: input.label.clone(),
                value: value.to_json(&input.ty),
                defaulted,
                sources: facts.sources.get(&input.name).cloned().unwrap_or_default(),
            });
        }
        if !decision.missing.is_empty() {
            if decision.outcome != Outcome::Error {
                decision.outcome = Outcome::Incomplete;
            }
            return decision;
        }
        for p in &self.parameters {
            let v = p.in_force(on).expect("a policy in force has every parameter in force");
            ctx.add_variable_from_value(p.name.as_str(), v.value.to_cel(&p.ty));
            decision.parameters.push(ParameterUsed {
                name: p.name.clone(),
                value: v.value.to_json(&p.ty),
                in_force_since: v.from,
                unit: p.unit.clone(),
                reference: v.reference.clone().or_else(|| p.reference.clone()),
            });
        }
        for clause in &self.clauses {
            let (value, result) = evaluate(clause, &ctx, on);
            if let Some(v) = value {
                ctx.add_variable_from_value(clause.id.as_str(), v);
            }
            decision.clauses.push(result);
        }
        let (eligible, result) = evaluate(&self.eligible, &ctx, on);
        decision.clauses.push(result);
        decision.outcome = match eligible {
            Some(cel::Value::Bool(true)) => Outcome::Eligible,
            Some(cel::Value::Bool(false)) => Outcome::NotEligible,
            _ => Outcome::Error,
        };
        if decision.outcome == Outcome::Eligible {
            if let Some(amount) = &self.amount {
                let (value, result) = evaluate(amount, &ctx, on);
                decision.amount = match value {
                    Some(cel::Value::Float(f)) => Some(f),
                    Some(cel::Value::Int(i)) => Some(i as f64),
                    _ => {
                        decision.outcome = Outcome::Error;
                        None
                    }
                };
                decision.clauses.push(result);
            }
        }
        decision
    }
}

/// Runs the version of `clause` in force on `on`.
fn evaluate(clause: &Clause, ctx: &cel::Context, on: NaiveDate) -> (Option<cel::Value>, ClauseValue) {
    let version = clause
        .in_force(on)
        .expect("a policy in force has every clause in force");
    let mut out = ClauseValue {
        id: clause.id.clone(),
        label: clause.label.clone(),
        reference: clause.reference.clone(),
        version: version.from,
        cel: version.cel.clone(),
        value: None,
        error: None,
    };
    match version.program.execute(ctx) {
        Ok(v) => match Value::from_cel(&clause.ty, &v) {
            Ok(typed) => {
                out.value = Some(typed.to_json(&clause.ty));
                (Some(v), out)
            }
            Err(e) => {
                out.error = Some(e);
                (None, out)
            }
        },
        Err(e) => {
            out.error = Some(e.to_string());
            (None, out)
        }
    }
}
