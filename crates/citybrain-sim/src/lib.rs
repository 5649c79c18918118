//! # citybrain-sim — the traffic digital twin's engine
//!
//! A deterministic, time-stepped microscopic simulation of SUMO networks and
//! demand: Krauss car following, strategic lane changes, junctions passed by
//! traffic light or right of way, insertion queues, a jam-time teleport rule,
//! and SUMO-compatible trip outputs. No HTTP, no SQL, no async runtime; the
//! only I/O is reading input files (through `citybrain-net`'s XML layer).
//!
//! ## Helpful terminology
//! - **step**: one tick of simulated time (`step_length`, 1 s by default).
//! - **plan / apply**: the two halves of a step — decide every vehicle's speed
//!   from the previous state (parallel), then move everyone (sequential).
//! - **leader**: the vehicle ahead on the same lane, or across the junction.
//! - **safe speed** (Krauss): the fastest speed that still lets a vehicle stop
//!   behind its leader if the leader brakes hard.
//! - **link**: a connection from a lane to the next, with its signal or
//!   right-of-way; a **foe** link crosses it.
//! - **teleport**: SUMO's way out of a deadlock — a vehicle standing at the
//!   front of a lane for `time_to_teleport` seconds jumps to its next edge.
//! - **vehicle-step**: one vehicle advanced by one step (the unit of speed:
//!   vehicle-steps per second of wall time).

#![forbid(unsafe_code)]

pub mod additional;
pub mod demand;
pub mod engine;
pub mod ids;
pub mod output;
pub mod rng;
pub mod router;
pub mod signals;

pub use additional::Additional;
pub use demand::{Demand, StopSpec, VType, VehicleSpec};
pub use engine::{
    Behaviour, DetectorRecord, EdgeInterval, EdgeStat, Invariant, ParkingEvent, RedirectError, ReplanError, Sim,
    SimConfig, TeleportCause, TeleportEvent, Totals, VehicleView, Violation,
};
pub use ids::{DetectorId, ParkingAreaId, VehicleHandle, VehicleId};
pub use output::{RunSummary, TripInfo};
