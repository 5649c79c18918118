//! The shipped policies load, their test cases pass through both the
//! interpreter and the batch, and bad files are refused with file, line and
//! clause.

use std::path::{Path, PathBuf};

use citybrain_rules::testcases::run_dir;
use citybrain_rules::{Outcome, Policy, PolicySet, RulesError};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

#[test]
fn every_shipped_policy_passes_its_test_cases() {
    let set = PolicySet::load(&policies_dir()).expect("the shipped policies load");
    assert!(set.policies.len() >= 2);
    let results = run_dir(&set, &policies_dir()).expect("the test files read");
    assert!(results.len() >= 10, "{} cases", results.len());
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.failures.is_empty())
        .map(|r| format!("{}:{} {}: {}", r.file.display(), r.line, r.name, r.failures.join("; ")))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for p in &set.policies {
        assert!(
            results.iter().any(|r| r.policy == p.id),
            "policy {} has no test cases",
            p.id
        );
    }
}

const GOOD: &str = "\
id: t
title: T
department: civil-affairs
reference: https://example.org/law
version: 1
effective: {from: 2020-01-01}
applies_to: Person
inputs:
  age: {type: int, attribute: age}
  income: {type: double, attribute: income}
parameters:
  limit:
    type: double
    values: {2020-01-01: 1000.0, 2021-01-01: 1200.0}
clauses:
  - id: adult
    cel: age >= 18
  - id: poor
    cel: income < limit
eligible: adult && poor
amount: limit - income
";

fn parse(text: &str) -> Result<Policy, RulesError> {
    Policy::parse(Path::new("policies/t.yaml"), text)
}

#[test]
fn a_decision_explains_itself_with_the_versions_in_force() {
    let p = parse(GOOD).unwrap();
    let mut facts = citybrain_rules::Facts::default();
    facts
        .set("age", citybrain_rules::Value::Int(30))
        .set("income", citybrain_rules::Value::Double(1100.0));
    facts.sources.insert(
        "income".into(),
        vec![citybrain_rules::Source {
            entity: "urn:ngsi-ld:Person:1".into(),
            attribute: "income".into(),
        }],
    );
    let on = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let d2020 = p.decide(&facts, on("2020-06-01"), chrono::Utc::now());
    assert_eq!(d2020.outcome, Outcome::NotEligible);
    assert_eq!(d2020.clause("poor").unwrap().value, Some(serde_json::json!(false)));
    let d2021 = p.decide(&facts, on("2021-06-01"), chrono::Utc::now());
    assert_eq!(d2021.outcome, Outcome::Eligible);
    assert_eq!(d2021.amount, Some(100.0));
    let limit = d2021.parameters.iter().find(|x| x.name == "limit").unwrap();
    assert_eq!(
        (limit.value.clone(), limit.in_force_since),
        (serde_json::json!(1200.0), on("2021-01-01"))
    );
    let income = d2021.inputs.iter().find(|x| x.name == "income").unwrap();
    assert_eq!(income.sources[0].entity, "urn:ngsi-ld:Person:1");
    let json = serde_json::to_value(&d2021).unwrap();
    assert_eq!(json["outcome"], "eligible");
    assert_eq!(json["policy_version"], 1);
}

fn error_of(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn bad_files_are_refused_with_file_line_and_clause() {
    let e = error_of(&GOOD.replace("cel: income < limit", "cel: income < 'a lot'"));
    assert_eq!(
        e,
        "policies/t.yaml:18: clause 'poor': cannot compare double with string by '<' (at `income < 'a lot'`)"
    );
    let e = error_of(&GOOD.replace("amount: limit - income", "amount: limit - age"));
    assert!(
        e.starts_with("policies/t.yaml:21: clause 'amount': cannot apply '-' to double and int"),
        "{e}"
    );
    assert!(e.contains("(at `limit - age`)"), "{e}");
    let e = error_of(&GOOD.replace("cel: age >= 18", "cel: agee >= 18"));
    assert!(
        e.starts_with("policies/t.yaml:16: clause 'adult': unknown name 'agee'"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("cel: age >= 18", "cel: age >= "));
    assert!(
        e.starts_with("policies/t.yaml:16: clause 'adult': does not parse"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("eligible: adult && poor", "eligible: age"));
    assert!(
        e.starts_with("policies/t.yaml:20: eligible must be a bool, it is int"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("{2020-01-01: 1000.0,", "{2020-02-01: 1000.0,"));
    assert!(
        e.starts_with("policies/t.yaml:12: parameter 'limit': has no value in force"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("  - id: poor\n", "  - id: adult\n"));
    assert!(e.contains("clause 'adult': the name is already used"), "{e}");
    let e = error_of(&GOOD.replace("title: T\n", "title: T\ncolour: red\n"));
    assert!(
        e.starts_with("policies/t.yaml:3:") && e.contains("unknown field `colour`"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("type: int", "type: integer"));
    assert!(e.contains("input 'age': unknown type 'integer'"), "{e}");
}
