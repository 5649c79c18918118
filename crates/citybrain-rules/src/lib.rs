//! Rules as code: a government policy as a file that a lawyer can read and a
//! machine can decide with.
//!
//! Glossary:
//! - **policy**: one YAML file (`policies/*.yaml`): who it is for
//!   (`applies_to`, a hub entity type), the **inputs** it reads (each from an
//!   attribute of the subject entity, from related entities, or stated by the
//!   applicant), dated **parameters** (amounts, thresholds: the value in
//!   force on the decision date applies), named **clauses** (CEL
//!   expressions, possibly in dated versions), `eligible` and `amount`.
//! - **check**: on load every clause is type-checked against what it may
//!   see (inputs, parameters, earlier clauses, `today`); the `cel` crate has
//!   no checker of its own.
//! - **decision**: one subject, one date: every clause's value, the inputs
//!   with the hub entities they came from, the parameter values with the
//!   day they came into force, the versions, the time — the explanation.
//! - **batch**: every subject of a table at once, column by column
//!   ([`batch`]); it must agree with the decisions, and tests hold it to that.
//! - **test case**: a data file of situations and expected results
//!   (`policies/*.test.yaml`), run by `citybrain rules test`.

pub mod batch;
pub mod check;
pub mod decide;
pub mod error;
pub mod gather;
pub mod policy;
pub mod set;
pub mod testcases;
pub mod types;

pub use batch::{BatchResult, Column, Table};
pub use decide::{Decision, Facts, Outcome, Source};
pub use error::RulesError;
pub use policy::{Input, InputSource, Policy};
pub use set::PolicySet;
pub use types::{Ty, Value};
