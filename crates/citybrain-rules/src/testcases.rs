//! Test cases for policies as data files, like OpenFisca's YAML tests:
//! `policies/<policy-id>.test.yaml` holds situations and what must come
//! out. Each case runs through the decision (the `cel` interpreter) and the
//! batch evaluator, and both must give what the case expects.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;

use crate::decide::{Facts, Outcome};
use crate::error::RulesError;
use crate::gather::table_of_facts;
use crate::set::{files, is_test_file, PolicySet};
use crate::types::parse_date;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    name: String,
    #[serde(default)]
    policy: Option<String>,
    on: String,
    #[serde(default)]
    input: serde_json::Map<String, Json>,
    expect: ExpectFile,
    #[serde(default)]
    absolute_error_margin: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFile {
    outcome: Outcome,
    #[serde(default)]
    amount: Option<f64>,
    #[serde(default)]
    clauses: BTreeMap<String, Json>,
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "eligible" => Outcome::Eligible,
            "not_eligible" => Outcome::NotEligible,
            "incomplete" => Outcome::Incomplete,
            "not_in_force" => Outcome::NotInForce,
            "error" => Outcome::Error,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown outcome '{other}': eligible, not_eligible, incomplete, not_in_force or error"
                )))
            }
        })
    }
}

/// One case's result.
#[derive(Debug)]
pub struct CaseResult {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    pub policy: String,
    /// Empty when the case passed.
    pub failures: Vec<String>,
}

/// Runs every `*.test.yaml` file of `dir` against the policies of `set`.
pub fn run_dir(set: &PolicySet, dir: &Path) -> Result<Vec<CaseResult>, RulesError> {
    let mut results = Vec::new();
    for path in files(dir, is_test_file)? {
        results.extend(run_file(set, &path)?);
    }
    Ok(results)
}

pub fn run_file(set: &PolicySet, path: &Path) -> Result<Vec<CaseResult>, RulesError> {
    let text = std::fs::read_to_string(path).map_err(|e| RulesError::io(path, e))?;
    let cases: Vec<CaseFile> = serde_yaml_ng::from_str(&text)
        .map_err(|e| RulesError::at(path, e.location().map(|l| l.line()).unwrap_or(1), e.to_string()))?;
    let default_policy = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".test.yaml").or_else(|| n.strip_suffix(".test.yml")))
        .unwrap_or_default()
        .to_string();
    let mut out = Vec::new();
    for case in cases {
        let line = text
            .lines()
            .position(|l| {
                l.trim_start()
                    .trim_start_matches("- ")
                    .trim_start()
                    .strip_prefix("name:")
                    .is_some_and(|n| n.trim().trim_matches(['"', '\'']) == case.name)
            })
            .map_or(1, |i| i + 1);
        let policy_id = case.policy.clone().unwrap_or_else(|| default_policy.clone());
        let policy = set.get(&policy_id).ok_or_else(|| {
            RulesError::at(
                path,
                line,
                format!("case '{}': no policy '{policy_id}' is loaded", case.name),
            )
        })?;
        let on = parse_date(&case.on).map_err(|e| RulesError::at(path, line, format!("case '{}': {e}", case.name)))?;
        let facts: Facts = Facts::from_json(policy, &case.input)
            .map_err(|e| RulesError::at(path, line, format!("case '{}': {e}", case.name)))?;
        let margin = case.absolute_error_margin.unwrap_or(1e-9);
        let mut failures = Vec::new();
        let decision = policy.decide(&facts, on, chrono::Utc::now());
        if decision.outcome != case.expect.outcome {
            let why: Vec<String> = decision
                .clauses
                .iter()
                .filter_map(|c| c.error.as_ref().map(|e| format!("{}: {e}", c.id)))
                .chain(decision.missing.iter().map(|m| format!("missing {m}")))
                .collect();
            failures.push(format!(
                "outcome: expected {:?}, got {:?}{}",
                case.expect.outcome,
                decision.outcome,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            ));
        }
        if let Some(want) = case.expect.amount {
            let got = decision.amount.unwrap_or(0.0);
            if (got - want).abs() > margin {
                failures.push(format!("amount: expected {want}, got {got}"));
            }
        }
        for (id, want) in &case.expect.clauses {
            match decision.clause(id) {
                None => failures.push(format!("clause '{id}': the policy has no such clause")),
                Some(c) => {
                    let same = match (c.value.as_ref(), want) {
                        (Some(Json::Number(a)), Json::Number(b)) => {
                            (a.as_f64().unwrap_or(f64::NAN) - b.as_f64().unwrap_or(f64::NAN)).abs() <= margin
                        }
                        (Some(a), b) => a == b,
                        (None, _) => false,
                    };
                    if !same {
                        failures.push(format!(
                            "clause '{id}': expected {want}, got {}",
                            c.value.as_ref().map_or_else(
                                || format!("an error ({})", c.error.clone().unwrap_or_default()),
                                |v| v.to_string()
                            )
                        ));
                    }
                }
            }
        }
        // The batch evaluator must agree with the decision on the same facts.
        match policy.decide_batch(&table_of_facts(policy, &facts), on) {
            Ok(batch) => {
                let batch_outcome = batch.outcome(0);
                if batch_outcome != decision.outcome {
                    failures.push(format!(
                        "batch: gives {batch_outcome:?} where the decision gives {:?}",
                        decision.outcome
                    ));
                } else if (batch.amount[0] - decision.amount.unwrap_or(0.0)).abs() > 1e-9 {
                    failures.push(format!(
                        "batch: amount {} where the decision gives {:?}",
                        batch.amount[0], decision.amount
                    ));
                }
            }
            Err(e) => failures.push(format!("batch: {e}")),
        }
        out.push(CaseResult {
            file: path.to_path_buf(),
            line,
            name: case.name,
            policy: policy_id,
            failures,
        });
    }
    Ok(out)
}
