//! The batch evaluator and the `cel` interpreter agree: random subjects, one
//! policy that uses every construct the checker accepts (errors included),
//! and the shipped policies.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use citybrain_rules::gather::{column_of, table_of_facts};
use citybrain_rules::{Column, Facts, Policy, PolicySet, Table, Ty, Value};
use proptest::prelude::*;

const EVERYTHING: &str = "\
id: everything
title: Every construct
department: civil-affairs
reference: https://example.org/law
version: 1
effective: {from: 2000-01-01}
applies_to: Person
inputs:
  a: {type: int}
  b: {type: int}
  x: {type: double}
  s: {type: string}
  born: {type: date}
  flag: {type: bool, default: false}
  kids:
    type: list
    related:
      type: Person
      via: parent
      fields:
        born: {type: date, attribute: birthDate}
        pay: {type: double, attribute: pay}
        kind: {type: string, attribute: kind}
  codes: {type: list<int>}
parameters:
  p: {type: int, values: {2000-01-01: 7, 2010-01-01: 9}}
clauses:
  - id: quotient
    cel: a / b
  - id: rest
    cel: a % b
  - id: big
    cel: a * 4611686018427387904 > 0
  - id: guarded
    cel: b != 0 && a / b > 1
  - id: guarded_right
    cel: a / b > 1 || b == 0
  - id: mixed
    cel: x > a && x <= double(b) + 0.5
  - id: cond
    cel: \"flag ? a - b : -a\"
  - id: named
    cel: s in ['north', 'south'] || s == 'east' || s < 'd'
  - id: age
    cel: years_between(born, today)
  - id: months
    cel: months_between(born, today) - days_between(born, today) / 30
  - id: young_kids
    cel: kids.filter(k, years_between(k.born, today) < 6 && k.kind != 'step').size()
  - id: kids_pay
    cel: sum(kids.map(k, k.pay * 2.0)) + sum(codes)
  - id: one_code
    cel: codes.exists_one(c, c == p)
  - id: all_kids_younger
    cel: kids.all(k, k.born > born)
  - id: some_code_over
    cel: codes.exists(c, c > a) && p in codes
  - id: truncated
    cel: int(x * 1.5) + p
eligible: \"(guarded || mixed || named) && !(one_code && all_kids_younger) || some_code_over\"
amount: double(cond + truncated) + kids_pay / double(young_kids + 1)
";

fn date(days: i32) -> Value {
    Value::Date(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Duration::days(days as i64))
}

fn subject() -> impl Strategy<Value = Facts> {
    let kid = (0i32..20_000, -100i64..100, 0usize..3).prop_map(|(born, pay, kind)| {
        Value::Record(Arc::new(vec![
            date(born),
            Value::String(["own", "step", "foster"][kind].into()),
            Value::Double(pay as f64 / 4.0),
        ]))
    });
    (
        (prop_oneof![Just(i64::MAX), Just(i64::MIN), -20i64..20], -3i64..4),
        (-40i64..40, 0usize..6, 0i32..20_000),
        (
            proptest::option::of(any::<bool>()),
            proptest::collection::vec(kid, 0..4),
            proptest::collection::vec(-5i64..12, 0..4),
        ),
    )
        .prop_map(|((a, b), (x, s, born), (flag, kids, codes))| {
            let mut f = Facts::default();
            f.set("a", Value::Int(a))
                .set("b", Value::Int(b))
                .set("x", Value::Double(x as f64 / 3.0))
                .set(
                    "s",
                    Value::String(["north", "south", "east", "west", "centre", ""][s].into()),
                )
                .set("born", date(born))
                .set("kids", Value::List(Arc::new(kids)))
                .set(
                    "codes",
                    Value::List(Arc::new(codes.into_iter().map(Value::Int).collect())),
                );
            if let Some(flag) = flag {
                f.set("flag", Value::Bool(flag));
            }
            f
        })
}

/// All subjects in one table, so chunks, offsets and gathers are exercised.
fn table_of(policy: &Policy, subjects: &[Facts]) -> Table {
    let mut table = Table::new(subjects.len());
    for input in &policy.inputs {
        let values: Vec<Option<Value>> = subjects.iter().map(|f| f.values.get(&input.name).cloned()).collect();
        let (column, absent) = column_of(&input.ty, &values);
        table = table.with(&input.name, column).unwrap();
        if absent.iter().any(|a| *a) {
            table = table.with_absent(&input.name, absent).unwrap();
        }
    }
    table
}

fn check_agreement(policy: &Policy, subjects: &[Facts], on: NaiveDate) -> Result<(), TestCaseError> {
    let batch = policy.decide_batch(&table_of(policy, subjects), on).unwrap();
    for (i, facts) in subjects.iter().enumerate() {
        let d = policy.decide(facts, on, chrono::Utc::now());
        prop_assert_eq!(
            batch.outcome(i),
            d.outcome,
            "subject {}: {:?}\n{:#?}",
            i,
            facts.values,
            d.clauses
        );
        let amount = d.amount.unwrap_or(0.0);
        prop_assert!(
            (batch.amount[i] - amount).abs() <= 1e-9 * amount.abs().max(1.0),
            "subject {}: batch amount {} vs {}",
            i,
            batch.amount[i],
            amount
        );
        // A one-row table gives the same as the row in the big one.
        let one = policy.decide_batch(&table_of_facts(policy, facts), on).unwrap();
        prop_assert_eq!(one.outcome(0), d.outcome);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn batch_and_interpreter_agree_on_every_construct(subjects in proptest::collection::vec(subject(), 1..40), year in 2000i32..2030) {
        let policy = Policy::parse(Path::new("everything.yaml"), EVERYTHING).unwrap();
        check_agreement(&policy, &subjects, NaiveDate::from_ymd_opt(year, 3, 1).unwrap())?;
    }

    #[test]
    fn batch_and_interpreter_agree_on_the_shipped_policies(
        people in proptest::collection::vec((0i32..17_000, proptest::option::of(0u32..3000), 0usize..3), 1..60),
        day in 16_000i32..18_000,
    ) {
        let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let set = PolicySet::load(&dir).unwrap();
        let on = match date(day) { Value::Date(d) => d, _ => unreachable!() };
        let basic = set.get("basic-income").unwrap();
        let persons: Vec<Facts> = people.iter().map(|(born, salary, _)| {
            let mut f = Facts::default();
            f.set("birth", date(*born));
            if let Some(s) = salary { f.set("salary", Value::Double((*s / 10 * 10) as f64 * f64::from(*s % 3 == 0))); }
            f
        }).collect();
        check_agreement(basic, &persons, on)?;
        let parenting = set.get("parenting-allowance").unwrap();
        // Households of up to three people, in order.
        let households: Vec<Facts> = people.chunks(3).map(|members| {
            let list = members.iter().map(|(born, salary, role)| Value::Record(Arc::new(vec![
                date(*born),
                Value::String(["adult", "child", "adult"][*role].into()),
                Value::Double(salary.map_or(0.0, |s| (s % 400) as f64)),
            ]))).collect();
            let mut f = Facts::default();
            f.set("members", Value::List(Arc::new(list)));
            f
        }).collect();
        check_agreement(parenting, &households, on)?;
    }
}

#[test]
fn malformed_columns_are_refused_when_added() {
    use citybrain_rules::batch::buf;
    let list = |off: Vec<u32>, n: usize| Column::List(buf(off), Box::new(Column::Int(buf(vec![0; n]))));
    let e = Table::new(2).with("l", list(vec![0, 3, 2], 2)).unwrap_err();
    assert!(e.to_string().contains("never decrease"), "{e}");
    let e = Table::new(2).with("l", list(vec![0, 1, 2], 5)).unwrap_err();
    assert!(e.to_string().contains("offsets end at 2, the values are 5"), "{e}");
    let e = Table::new(2).with_absent("l", vec![true]).unwrap_err();
    assert!(e.to_string().contains("1 flags, the table has 2 rows"), "{e}");
    assert!(Table::new(2).with("l", list(vec![0, 1, 2], 2)).is_ok());
}

#[test]
fn a_table_column_of_the_wrong_type_is_refused() {
    let policy = Policy::parse(Path::new("everything.yaml"), EVERYTHING).unwrap();
    let table = Table::new(1)
        .with("a", column_of(&Ty::String, &[Some(Value::String("1".into()))]).0)
        .unwrap();
    let err = policy
        .decide_batch(&table, NaiveDate::from_ymd_opt(2020, 1, 1).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("column 'a' is not a int"), "{err}");
}

/// Thousands of rows: the table is cut into chunks evaluated in parallel,
/// and every row still agrees with the interpreter.
#[test]
fn batch_and_interpreter_agree_across_chunks() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let strategy = proptest::collection::vec(subject(), 5000);
    let subjects = strategy.new_tree(&mut runner).unwrap().current();
    let policy = Policy::parse(Path::new("everything.yaml"), EVERYTHING).unwrap();
    check_agreement(&policy, &subjects, NaiveDate::from_ymd_opt(2016, 3, 1).unwrap()).unwrap();
}
