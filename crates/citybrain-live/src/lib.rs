//! Live mode: a scenario runs on the twin at a speed-up of real time and its
//! sensors publish to the hub, as real ones would; the City Brain's
//! controllers read their inputs back **from the hub**, not from the twin's
//! internals, so the same loop could run on real sensors.
//!
//! [`bridge`] is the one loop every scenario shares (pacing, publishing only
//! what changed, reading back, the twin waiting for each read-back); each
//! scenario module says what its twin is, which entities it publishes and
//! what its controllers read back.
//!
//! Glossary:
//! - *publication*: the entities written to the hub every period of
//!   simulated time (30 s), only those whose readings changed;
//! - *read-back*: the entities of one type read from the hub after each
//!   publication into the controllers' *view*;
//! - *day*: one run of the scenario's demand; when it ends the next seed's
//!   day starts.

#![forbid(unsafe_code)]

pub mod bridge;
pub mod hospital_district;
pub mod signal_corridor;

/// Where terms without a definition in the core context expand to.
pub(crate) const DEFAULT_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/default-context/";

/// Simulated seconds between two publications (and two reads back): the
/// controllers act on data at most this old; only what changed since the
/// last publication is written, so the hub's history grows with the
/// traffic, not with the clock.
pub const PUBLISH_EVERY_S: f64 = 30.0;

/// What can stop live mode from starting.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Scenario(#[from] citybrain_scenarios::ScenarioError),
    #[error("cannot start the twin's thread: {0}")]
    Thread(#[from] std::io::Error),
}
