//! # citybrain-control — the City Brain's control layer
//!
//! The policies the City Brain runs on the city's signals — adaptive control
//! (`Adaptive`, `MaxPressure`) and emergency-vehicle priority (`Priority`) —
//! are written against an [`Observation`]: what the sensors say now; its
//! parking guidance ([`parking::best_lot`]) against a
//! [`ParkingObservation`] (free spaces per lot). Two
//! things provide one: the twin's engine, every step (its `SignalInput`), and
//! the hub, through [`Central`] — the queue lengths as published to the hub
//! and read back from it, beside the cabinet's own stop-line loops. The same
//! controller thus runs on the twin and on real sensors; that is a type here,
//! not a sentence. Controllers write their commands to the signals through
//! the twin's cabinet interface (`citybrain_sim::signals::SignalController`),
//! which keeps only what a cabinet does alone (fixed-time, actuated).
//!
//! Glossary:
//! - *queue*: vehicles standing (below 0.1 m/s) on a lane;
//! - *near stop line*: vehicles, moving or not, in the 40 m detection zone
//!   before a lane's stop line (the cabinet's loops);
//! - *pressure*: vehicles waiting on the lanes a phase serves minus those
//!   waiting on the lanes it feeds;
//! - *priority call*: an emergency vehicle approaching a signalled link.
//!
//! No HTTP, SQL or async runtime: `citybrain-live` fills the central view
//! from the hub.

#![forbid(unsafe_code)]

pub mod parking;
pub mod signals;

use citybrain_sim::signals::{PriorityCall, SignalInput};

pub use parking::{best_lot, FirstKnown, LotChoice, ParkingObservation};
pub use signals::{controllers_for, Adaptive, Fed, MaxPressure, Priority, SharedDetectors};

/// What a controller may read: the sensors' view of the network now, by lane
/// index.
pub trait Observation {
    /// Seconds (simulated on the twin).
    fn time(&self) -> f64;
    /// Vehicles standing on each lane.
    fn queue_by_lane(&self) -> &[u32];
    /// Vehicles within the detection zone before each lane's stop line.
    fn near_stop_line(&self) -> &[u32];
    /// Emergency vehicles approaching signals, nearest first per vehicle.
    fn priority_calls(&self) -> &[PriorityCall];
}

/// The twin's own readings of this step.
impl Observation for SignalInput<'_> {
    fn time(&self) -> f64 {
        self.time
    }
    fn queue_by_lane(&self) -> &[u32] {
        self.queue_by_lane
    }
    fn near_stop_line(&self) -> &[u32] {
        self.near_stop_line
    }
    fn priority_calls(&self) -> &[PriorityCall] {
        self.priority
    }
}

/// The central view: queue lengths from outside the engine (the hub, fed by
/// the twin's or real sensors), with the cabinet's own stop-line loops,
/// emergency calls and clock. As in real adaptive systems, the central view
/// decides which phase has the most pressure, while a gap-out on readings a
/// publication period old would hold greens for nobody, so the loops stay
/// local.
pub struct Central<'a> {
    pub queue_by_lane: &'a [u32],
    pub cabinet: &'a dyn Observation,
}

impl Observation for Central<'_> {
    fn time(&self) -> f64 {
        self.cabinet.time()
    }
    fn queue_by_lane(&self) -> &[u32] {
        self.queue_by_lane
    }
    fn near_stop_line(&self) -> &[u32] {
        self.cabinet.near_stop_line()
    }
    fn priority_calls(&self) -> &[PriorityCall] {
        self.cabinet.priority_calls()
    }
}

/// An observation as the cabinet interface takes it (to drive a cabinet's
/// own controller under a City Brain one).
pub fn as_input(o: &dyn Observation) -> SignalInput<'_> {
    SignalInput {
        time: o.time(),
        queue_by_lane: o.queue_by_lane(),
        near_stop_line: o.near_stop_line(),
        priority: o.priority_calls(),
    }
}
