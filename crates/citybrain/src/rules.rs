//! `citybrain rules`: check policies, run their test cases, decide one case.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use citybrain_rules::testcases::run_dir;
use citybrain_rules::{Facts, PolicySet};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// Load and type-check every policy of a folder (policies/*.yaml);
    /// prints each with its clauses, or the first error as FILE:LINE: what.
    Check {
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Run the test cases (policies/*.test.yaml) through the interpreter and
    /// the batch evaluator; exits with 1 when a case fails.
    ///
    /// Example: citybrain rules test policies/
    Test {
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Decide one situation and print the decision with its explanation (JSON).
    ///
    /// Example: citybrain rules decide basic-income --on 2016-01-01
    ///          --input '{"birth": "1980-01-01", "salary": 0}'
    Decide {
        /// The policy id.
        policy: String,
        /// The date whose law applies (YYYY-MM-DD).
        #[arg(long)]
        on: String,
        /// The inputs as a JSON object, or @FILE to read them from a file.
        #[arg(long, default_value = "{}")]
        input: String,
        #[arg(long, default_value = "policies")]
        dir: PathBuf,
    },
}

pub fn run(cmd: RulesCommand) -> Result<()> {
    match cmd {
        RulesCommand::Check { dir } => {
            let set = PolicySet::load(&dir)?;
            for p in &set.policies {
                println!(
                    "{}: ok ({} v{}, {}, for {}; {} inputs, {} parameters, {} clauses)",
                    p.file.display(),
                    p.id,
                    p.version,
                    p.department,
                    p.applies_to,
                    p.inputs.len(),
                    p.parameters.len(),
                    p.clauses.len()
                );
            }
            println!("{} policies checked", set.policies.len());
            Ok(())
        }
        RulesCommand::Test { dir } => {
            let set = PolicySet::load(&dir)?;
            let results = run_dir(&set, &dir)?;
            let mut failed = 0;
            for r in &results {
                if r.failures.is_empty() {
                    println!("ok    {} {}", r.policy, r.name);
                } else {
                    failed += 1;
                    println!("FAIL  {}:{} {} {}", r.file.display(), r.line, r.policy, r.name);
                    for f in &r.failures {
                        println!("        {f}");
                    }
                }
            }
            println!(
                "{} cases, {} passed, {failed} failed",
                results.len(),
                results.len() - failed
            );
            if failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        RulesCommand::Decide { policy, on, input, dir } => {
            let set = PolicySet::load(&dir)?;
            let Some(p) = set.get(&policy) else {
                bail!(
                    "no policy '{policy}' in {}; `citybrain rules check` lists them",
                    dir.display()
                );
            };
            let on = citybrain_rules::types::parse_date(&on)
                .map_err(anyhow::Error::msg)
                .context("--on")?;
            let text = match input.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
                None => input,
            };
            let json: serde_json::Value = serde_json::from_str(&text).context("--input is not JSON")?;
            let Some(obj) = json.as_object() else {
                bail!("--input must be a JSON object of input values")
            };
            let facts = Facts::from_json(p, obj).map_err(anyhow::Error::msg)?;
            let decision = p.decide(&facts, on, chrono::Utc::now());
            println!("{}", serde_json::to_string_pretty(&decision)?);
            Ok(())
        }
    }
}
