//! The policies of a folder, loaded together.

use std::path::Path;

use crate::error::RulesError;
use crate::policy::Policy;

/// The largest number of policy files a folder may hold.
pub const MAX_POLICIES: usize = 10_000;

#[derive(Debug, Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
}

/// A policy file: `*.yaml`, not a test file (`*.test.yaml`).
pub fn is_policy_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !is_test_file(path)
}

pub fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

/// The files of `dir` that `keep` accepts, sorted by name.
pub fn files(dir: &Path, keep: fn(&Path) -> bool) -> Result<Vec<std::path::PathBuf>, RulesError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| RulesError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && keep(p))
        .collect();
    files.sort();
    if files.len() > MAX_POLICIES {
        return Err(RulesError::Set(format!(
            "{} holds {} files; at most {MAX_POLICIES} are read",
            dir.display(),
            files.len()
        )));
    }
    Ok(files)
}

impl PolicySet {
    /// Loads every policy file of `dir` (not its sub-folders). Ids must be
    /// unique, and policies that share an input name must declare it alike
    /// (one batch table column serves them all).
    pub fn load(dir: &Path) -> Result<PolicySet, RulesError> {
        let mut set = PolicySet::default();
        for path in files(dir, is_policy_file)? {
            set.add(Policy::load(&path)?)?;
        }
        Ok(set)
    }

    pub fn add(&mut self, policy: Policy) -> Result<(), RulesError> {
        if let Some(other) = self.get(&policy.id) {
            return Err(RulesError::Set(format!(
                "{} and {} both define the policy '{}'",
                other.file.display(),
                policy.file.display(),
                policy.id
            )));
        }
        for input in &policy.inputs {
            for other in &self.policies {
                if let Some(o) = other.inputs.iter().find(|o| o.name == input.name) {
                    if o.ty != input.ty || o.source != input.source {
                        return Err(RulesError::Set(format!(
                            "the input '{}' is declared as {} in {} and as {} in {}: policies that share an input name must declare it alike",
                            input.name,
                            o.ty,
                            other.file.display(),
                            input.ty,
                            policy.file.display()
                        )));
                    }
                }
            }
        }
        self.policies.push(policy);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.id == id)
    }

    /// The policies in force on `on` that decide about entities of `entity_type`.
    pub fn active_for<'a>(
        &'a self,
        entity_type: &'a str,
        on: chrono::NaiveDate,
    ) -> impl Iterator<Item = &'a Policy> + 'a {
        self.policies
            .iter()
            .filter(move |p| p.applies_to == entity_type && p.in_force(on))
    }
}
