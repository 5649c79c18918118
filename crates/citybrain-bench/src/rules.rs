//! `citybrain bench rules`: batch matching against OpenFisca on the same
//! rules and the same people, side by side in one run; then 100 policies
//! over a million enterprises, and single decisions with their explanation.
//!
//! The people come from `citybrain-synthcity`; they are written as raw
//! arrays for OpenFisca (`bench/openfisca/rules_bench.py`, embedded here),
//! which computes openfisca-country-template's `basic_income` and
//! `parenting_allowance` for 2016-01 and writes its results back; every
//! person's and household's result must equal ours, or the run fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use citybrain_rules::batch::buf;
use citybrain_rules::{gather, Column, Policy, PolicySet, Table};
use citybrain_synthcity::{City, CityConfig, DISTRICTS, INDUSTRIES};
use serde_json::{json, Value};

const OPENFISCA_SCRIPT: &str = include_str!("../../../bench/openfisca/rules_bench.py");

#[derive(Debug, Clone)]
pub struct RulesBench {
    /// The folder holding basic-income.yaml, parenting-allowance.yaml and
    /// sme-stabilisation-subsidy.yaml.
    pub policies: PathBuf,
    /// Persons per OpenFisca comparison.
    pub sizes: Vec<usize>,
    /// A Python with openfisca-core and openfisca-country-template; None: skip the peer.
    pub python: Option<PathBuf>,
    pub enterprises: usize,
    pub enterprise_policies: usize,
    pub repeats: usize,
    pub json: bool,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The people of `city` as the two policies' batch tables.
fn person_tables(city: &City) -> Result<(Table, Table)> {
    let p = &city.people;
    let persons = Table::new(p.birth.len())
        .with("birth", Column::dates(&p.birth))?
        .with("salary", Column::Double(buf(p.salary.clone())))?;
    // Household members: records {birth, role, salary} (fields in name order).
    let roles: Vec<&str> = p.role.iter().map(|r| r.as_str()).collect();
    let members = Column::List(
        buf(city.households.start.clone()),
        Box::new(Column::Record(Arc::new(vec![
            Column::dates(&p.birth),
            Column::strings(&roles),
            Column::Double(buf(p.salary.clone())),
        ]))),
    );
    let households = Table::new(city.households_len()).with("members", members)?;
    Ok((persons, households))
}

fn write_array<T: Copy>(path: &Path, values: &[T], to_le: impl Fn(T) -> Vec<u8>) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for v in values {
        f.write_all(&to_le(*v))?;
    }
    f.flush()?;
    Ok(())
}

fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Runs OpenFisca on the same people; returns its JSON line and results.
fn openfisca(python: &Path, city: &City, repeats: usize) -> Result<(Value, Vec<f32>, Vec<f32>)> {
    let dir = tempfile::tempdir()?;
    let p = &city.people;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    write_array(&dir.path().join("birth.i32"), &p.birth, |d| {
        ((d - epoch).num_days() as i32).to_le_bytes().to_vec()
    })?;
    write_array(&dir.path().join("salary.f32"), &p.salary, |s| {
        (s as f32).to_le_bytes().to_vec()
    })?;
    write_array(&dir.path().join("household.i32"), &p.household, |h| {
        (h as i32).to_le_bytes().to_vec()
    })?;
    write_array(&dir.path().join("role.i8"), &p.role, |r| {
        vec![(r == citybrain_synthcity::Role::Child) as u8]
    })?;
    let script = dir.path().join("rules_bench.py");
    std::fs::write(&script, OPENFISCA_SCRIPT)?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(dir.path())
        .arg(repeats.to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "OpenFisca failed ({}); install it with: python3 -m venv V && V/bin/pip install openfisca-core==46.0.1 openfisca-country-template==8.2.0, then pass --openfisca-python V/bin/python\n{}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(line.lines().last().unwrap_or_default()).context("OpenFisca's JSON line")?;
    Ok((
        json,
        read_f32(&dir.path().join("basic_income.f32"))?,
        read_f32(&dir.path().join("parenting_allowance.f32"))?,
    ))
}

fn seconds(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Rows whose amounts differ (OpenFisca computes in float32).
fn mismatches(ours: &[f64], theirs: &[f32]) -> usize {
    if ours.len() != theirs.len() {
        return ours.len().max(theirs.len());
    }
    ours.iter()
        .zip(theirs)
        .filter(|(a, b)| (**a - f64::from(**b)).abs() > 1e-3)
        .count()
}

pub fn run(cfg: RulesBench) -> Result<()> {
    let set = PolicySet::load(&cfg.policies).with_context(|| format!("loading {}", cfg.policies.display()))?;
    let get = |id: &str| {
        set.get(id)
            .with_context(|| format!("{} has no policy {id}", cfg.policies.display()))
    };
    let (basic, parenting) = (get("basic-income")?, get("parenting-allowance")?);
    let on = NaiveDate::from_ymd_opt(2016, 1, 1).expect("a date");
    let threads = rayon::current_num_threads();
    if !cfg.json {
        println!(
            "rules benchmark: {threads} threads; OpenFisca {}",
            if cfg.python.is_some() {
                "side by side"
            } else {
                "skipped (no --openfisca-python)"
            }
        );
        println!(
            "{:>10} {:>10} {:>14} {:>14} {:>9} {:>16}  same results",
            "persons", "households", "citybrain_ms", "openfisca_ms", "speedup", "checks_per_s"
        );
    }
    for &n in &cfg.sizes {
        let city = City::generate(CityConfig {
            people: n,
            enterprises: 0,
            seed: 42,
            as_of: on,
        });
        let (persons, households) = person_tables(&city)?;
        let (mut ours, mut ours_basic, mut ours_parenting) = (Vec::new(), Vec::new(), Vec::new());
        let mut results = None;
        // A warm-up round, untimed (the allocator settles over the first
        // runs), then the timed one; the OpenFisca script does the same.
        let repeats = cfg.repeats.max(1);
        for k in 0..2 * repeats {
            let t = Instant::now();
            let b = basic.decide_batch(&persons, on)?;
            let t_basic = t.elapsed().as_secs_f64();
            let p = parenting.decide_batch(&households, on)?;
            if k >= repeats {
                ours.push(t.elapsed().as_secs_f64());
                ours_basic.push(t_basic);
                ours_parenting.push(t.elapsed().as_secs_f64() - t_basic);
            }
            results = Some((b, p));
        }
        let (b, p) = results.expect("one repeat");
        let ours_s = median(&mut ours);
        let checks = (persons.rows() + households.rows()) as f64;
        let mut line = json!({
            "bench": "rules",
            "persons": persons.rows(),
            "households": households.rows(),
            "threads": threads,
            "citybrain_s": ours_s,
            "citybrain_basic_income_s": median(&mut ours_basic),
            "citybrain_parenting_allowance_s": median(&mut ours_parenting),
            "policy_entity_checks_per_s": checks / ours_s,
            "eligible_basic_income": b.eligible_count(),
            "eligible_parenting_allowance": p.eligible_count(),
        });
        if let Some(python) = &cfg.python {
            let (of, of_basic, of_parenting) = openfisca(python, &city, cfg.repeats.max(1))?;
            let mut totals: Vec<f64> = seconds(&of["t_basic_income_s"])
                .iter()
                .zip(seconds(&of["t_parenting_allowance_s"]))
                .map(|(a, b)| a + b)
                .collect();
            let theirs = median(&mut totals);
            let wrong = mismatches(&b.amount, &of_basic) + mismatches(&p.amount, &of_parenting);
            line["openfisca_s"] = json!(theirs);
            line["openfisca_basic_income_s"] = json!(median(&mut seconds(&of["t_basic_income_s"])));
            line["openfisca_parenting_allowance_s"] = json!(median(&mut seconds(&of["t_parenting_allowance_s"])));
            line["openfisca_build_s"] = json!(median(&mut seconds(&of["t_build_s"])));
            line["openfisca_core"] = of["openfisca_core"].clone();
            line["speedup_vs_openfisca"] = json!(theirs / ours_s);
            line["results_differ"] = json!(wrong);
            if wrong > 0 {
                bail!("{wrong} results differ from OpenFisca's at {n} persons: {line}");
            }
        }
        if cfg.json {
            println!("{line}");
        } else {
            println!(
                "{:>10} {:>10} {:>14.2} {:>14} {:>9} {:>16.0}  {}",
                persons.rows(),
                households.rows(),
                ours_s * 1e3,
                line["openfisca_s"]
                    .as_f64()
                    .map_or("-".into(), |s| format!("{:.2}", s * 1e3)),
                line["speedup_vs_openfisca"]
                    .as_f64()
                    .map_or("-".into(), |s| format!("{s:.1}x")),
                checks / ours_s,
                if cfg.python.is_some() {
                    "yes, every row"
                } else {
                    "not compared"
                }
            );
        }
    }
    enterprises(&cfg, &set)?;
    single_decisions(&cfg, basic)?;
    let policies = Arc::new(PolicySet::load(&cfg.policies)?);
    tokio::runtime::Handle::current().block_on(http_decisions(&cfg, policies))?;
    Ok(())
}

/// Decisions over HTTP, one client after another, on a hub in this
/// process: the subject and its data are read from the hub each time.
async fn http_decisions(cfg: &RulesBench, policies: Arc<PolicySet>) -> Result<()> {
    let on = NaiveDate::from_ymd_opt(2016, 1, 1).expect("a date");
    let (addr, _hub, _dir) = crate::serve(1000, policies).await?;
    let root = format!("http://{addr}");
    let http = reqwest::Client::new();
    let city = City::generate(CityConfig {
        people: 2_000,
        enterprises: 0,
        seed: 11,
        as_of: on,
    });
    let mut entities: Vec<Value> = (0..city.people.birth.len()).map(|i| city.person_entity(i)).collect();
    entities.extend((0..city.households_len()).map(|h| city.household_entity(h)));
    for batch in entities.chunks(1000) {
        let r = http
            .post(format!("{root}/ngsi-ld/v1/entityOperations/upsert"))
            .json(&batch)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("loading the people failed: {}", r.text().await?);
        }
    }
    for (policy, subjects) in [
        ("basic-income", city.people.birth.len()),
        ("parenting-allowance", city.households_len()),
    ] {
        let mut l = Vec::with_capacity(1000);
        for k in 0..1000 {
            let subject = if policy == "basic-income" {
                City::person_id(k % subjects)
            } else {
                City::household_id(k % subjects)
            };
            let t = Instant::now();
            let r = http
                .post(format!("{root}/api/v1/decisions"))
                .json(&json!({"policy": policy, "subject": subject, "on": "2016-01-01"}))
                .send()
                .await?;
            let ok = r.status().is_success();
            let body = r.bytes().await?;
            if !ok {
                bail!("a decision failed: {}", String::from_utf8_lossy(&body));
            }
            l.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (p50, p99) = (percentile(&mut l, 0.5), percentile(&mut l, 0.99));
        let line = json!({"bench": "rules-decision-http", "policy": policy, "decisions": l.len(), "p50_ms": p50, "p99_ms": p99});
        if cfg.json {
            println!("{line}");
        } else {
            println!("decisions over HTTP ({policy}, read from the hub, one client, {} decisions): p50 {p50:.2} ms, p99 {p99:.2} ms", l.len());
        }
    }
    Ok(())
}

/// Generated variants of the SME refund's clause shapes: each policy picks
/// its own industries, districts, size and revenue bands and founding date.
fn enterprise_policy(k: usize) -> String {
    let industries: Vec<String> = (0..3)
        .map(|j| format!("'{}'", INDUSTRIES[(k * 3 + j * 7) % INDUSTRIES.len()].0))
        .collect();
    let districts: Vec<String> = (0..4)
        .map(|j| format!("'{}'", DISTRICTS[(k + j * 3) % DISTRICTS.len()]))
        .collect();
    let max_employees = [9, 99, 299, 999][k % 4];
    let min_revenue = 200_000.0 * (1 + k % 7) as f64;
    let founded_before = format!("{}-01-01", 2010 + k % 15);
    format!(
        "id: bench-enterprise-{k}
title: Generated enterprise policy {k}
department: market-regulation
reference: generated by citybrain bench rules
version: 1
effective: {{from: 2020-01-01}}
applies_to: Organization
inputs:
  employees: {{type: int, attribute: employees}}
  insured_employees: {{type: int, attribute: insuredEmployees}}
  tax_arrears: {{type: bool, attribute: taxArrears}}
  industry: {{type: string, attribute: industry}}
  district: {{type: string, attribute: district}}
  revenue: {{type: double, attribute: annualRevenue}}
  founded: {{type: date, attribute: foundingDate}}
  high_tech: {{type: bool, attribute: highTech}}
parameters:
  max_employees: {{type: int, values: {{2020-01-01: {max_employees}}}}}
  min_revenue: {{type: double, values: {{2020-01-01: {min_revenue:.1}}}}}
  rate: {{type: double, values: {{2020-01-01: 0.0{r}}}}}
clauses:
  - id: size
    cel: employees >= 1 && employees <= max_employees
  - id: sector
    cel: industry in [{ind}] || high_tech
  - id: place
    cel: district in [{dis}]
  - id: established
    cel: founded < date('{founded_before}')
  - id: insured
    cel: double(insured_employees) >= 0.7 * double(employees)
  - id: turnover
    cel: revenue >= min_revenue
eligible: size && sector && place && established && insured && turnover && !tax_arrears
amount: revenue * rate
",
        r = 1 + k % 9,
        ind = industries.join(", "),
        dis = districts.join(", "),
    )
}

fn enterprise_table(city: &City) -> Result<Table> {
    let e = &city.enterprises;
    let industries: Vec<&str> = e.industry.iter().map(|i| INDUSTRIES[*i as usize].0).collect();
    let districts: Vec<&str> = e.district.iter().map(|d| DISTRICTS[*d as usize]).collect();
    Ok(Table::new(e.len())
        .with("employees", Column::Int(buf(e.employees.clone())))?
        .with("insured_employees", Column::Int(buf(e.insured_employees.clone())))?
        .with("tax_arrears", Column::Bool(buf(e.tax_arrears.clone())))?
        .with("industry", Column::strings(&industries))?
        .with("district", Column::strings(&districts))?
        .with("revenue", Column::Double(buf(e.revenue.clone())))?
        .with("founded", Column::dates(&e.founded))?
        .with("high_tech", Column::Bool(buf(e.high_tech.clone())))?)
}

fn enterprises(cfg: &RulesBench, set: &PolicySet) -> Result<()> {
    if cfg.enterprises == 0 || cfg.enterprise_policies == 0 {
        return Ok(());
    }
    let on = NaiveDate::from_ymd_opt(2024, 1, 1).expect("a date");
    let t = Instant::now();
    let city = City::generate(CityConfig {
        people: 0,
        enterprises: cfg.enterprises,
        seed: 42,
        as_of: on,
    });
    let table = enterprise_table(&city)?;
    let generated = t.elapsed().as_secs_f64();
    let mut policies: Vec<Policy> = Vec::new();
    for k in 0..cfg.enterprise_policies {
        policies.push(Policy::parse(
            Path::new(&format!("bench-enterprise-{k}.yaml")),
            &enterprise_policy(k),
        )?);
    }
    // The shipped enterprise policy is one of them (its inputs are in the table).
    let shipped = set.get("sme-stabilisation-subsidy");
    let t = Instant::now();
    let mut eligible = 0usize;
    let mut granted = 0.0;
    for p in policies.iter().chain(shipped) {
        let r = p.decide_batch(&table, on)?;
        eligible += r.eligible_count();
        granted += r.total_amount();
    }
    let took = t.elapsed().as_secs_f64();
    let n_policies = policies.len() + usize::from(shipped.is_some());
    let checks = (n_policies * table.rows()) as f64;
    let line = json!({
        "bench": "rules-enterprises",
        "policies": n_policies,
        "enterprises": table.rows(),
        "threads": rayon::current_num_threads(),
        "generate_s": generated,
        "match_s": took,
        "policy_entity_checks_per_s": checks / took,
        "eligible_pairs": eligible,
        "granted_yuan": granted.round(),
    });
    if cfg.json {
        println!("{line}");
    } else {
        println!(
            "{n_policies} policies x {} enterprises: matched in {took:.2} s ({:.0} policy-entity checks/s), {eligible} eligible pairs",
            table.rows(),
            checks / took
        );
    }
    Ok(())
}

/// One decision at a time, the way an application is decided: read the
/// inputs from the applicant's entity, decide, render the explanation.
fn single_decisions(cfg: &RulesBench, basic: &Policy) -> Result<()> {
    let on = NaiveDate::from_ymd_opt(2016, 1, 1).expect("a date");
    let city = City::generate(CityConfig {
        people: 2_000,
        enterprises: 0,
        seed: 7,
        as_of: on,
    });
    let entities: Vec<Value> = (0..city.people.birth.len()).map(|i| city.person_entity(i)).collect();
    let mut lat = Vec::with_capacity(10_000);
    let mut bytes = 0usize;
    for k in 0..10_000 {
        let t = Instant::now();
        let facts = gather::facts(basic, &entities[k % entities.len()], &[]).map_err(anyhow::Error::msg)?;
        let d = basic.decide(&facts, on, chrono::Utc::now());
        bytes += serde_json::to_vec(&d)?.len();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (p50, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));
    let line = json!({
        "bench": "rules-decision",
        "decisions": lat.len(),
        "p50_ms": p50,
        "p99_ms": p99,
        "explanation_bytes_mean": bytes / lat.len(),
    });
    if cfg.json {
        println!("{line}");
    } else {
        println!(
            "single decisions with explanation (in-process, {} decisions): p50 {p50:.3} ms, p99 {p99:.3} ms, explanation {} bytes",
            lat.len(),
            bytes / lat.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_enterprise_policy_loads_and_runs() {
        let city = City::generate(CityConfig {
            people: 0,
            enterprises: 3000,
            seed: 1,
            as_of: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        });
        let table = enterprise_table(&city).unwrap();
        let mut any = 0;
        for k in 0..100 {
            let p = Policy::parse(Path::new("g.yaml"), &enterprise_policy(k)).unwrap();
            any += p
                .decide_batch(&table, NaiveDate::from_ymd_opt(2024, 1, 1).unwrap())
                .unwrap()
                .eligible_count();
        }
        assert!(any > 0, "some generated policy matches some enterprise");
    }
}
