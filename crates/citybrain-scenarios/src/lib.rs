//! Scenarios on the twin: a network, demand drawn per seed, and policies
//! (signal controllers) to compare, with the figures each scenario reports.
//! Domain only: no HTTP, SQL or async runtime — the binary wires scenarios to
//! the CLI and the hub.
//!
//! Glossary:
//! - *policy*: how the signals are run (fixed-time plans as designed,
//!   coordinated fixed-time plans, actuated, City Brain adaptive control),
//!   optionally with emergency-vehicle priority on top;
//! - *seed*: drives the demand draw (Poisson arrivals, destinations) and the
//!   drivers' imperfection in the engine; the same seed gives the same figures;
//! - *delay index*: travel time over free-flow travel time, per vehicle,
//!   averaged (the City Brain KDD Cup's measure).

pub mod ambulance;
pub mod bands;
pub mod coordination;
pub mod draw;
pub mod hospital_district;
pub mod measure;
pub mod published;
pub mod report;
pub mod signal_corridor;
pub mod stats;
pub mod sumo_files;
pub mod turn_times;

/// What can go wrong loading or running a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario data: {0}")]
    Data(String),
    #[error("unknown policy '{0}' (fixed, coordinated, actuated, citybrain)")]
    Policy(String),
    #[error("policy '{0}' is not available for this scenario: {1}")]
    PolicyNotHere(&'static str, &'static str),
    #[error(transparent)]
    Control(#[from] citybrain_sim::signals::UnknownControl),
}
