//! The controllers' queue view as a hub carries it: the twin's detector
//! readings copied every `period` simulated seconds, as live mode publishes
//! them to the hub and reads them back (`citybrain serve --live`). A run
//! measured with it shows what the City Brain's control achieves on
//! published data, a period old at worst, instead of the engine's readings
//! of every step. The cabinets' own stop-line loops stay local (see
//! `citybrain_control::Fed`).

use std::sync::{Arc, RwLock};

use citybrain_control::{Fed, SharedDetectors};
use citybrain_net::Network;
use citybrain_sim::signals::SignalController;
use citybrain_sim::Sim;

use crate::ScenarioError;

/// Shortest and longest publication period accepted, s.
pub const PERIOD_RANGE_S: (f64, f64) = (1.0, 900.0);

pub struct PublishedDetectors {
    feed: SharedDetectors,
    period_s: f64,
    next_s: f64,
}

impl PublishedDetectors {
    pub fn new(net: &Network, period_s: f64) -> Result<Self, ScenarioError> {
        let (lo, hi) = PERIOD_RANGE_S;
        if !(lo..=hi).contains(&period_s) {
            return Err(ScenarioError::Data(format!(
                "the detector publication period must be between {lo} and {hi} s, got {period_s}"
            )));
        }
        Ok(PublishedDetectors {
            feed: Arc::new(RwLock::new(vec![0; net.lanes.len()])),
            period_s,
            next_s: f64::NEG_INFINITY,
        })
    }

    /// `c`, reading its queues from what was last published.
    pub fn feed(&self, c: Box<dyn SignalController>) -> Box<dyn SignalController> {
        Box::new(Fed::new(c, self.feed.clone()))
    }

    /// After each step: publish the twin's queues when a period has passed.
    pub fn observe(&mut self, sim: &Sim) {
        if sim.time() < self.next_s {
            return;
        }
        self.next_s = sim.time() + self.period_s;
        let (queue, _) = sim.detector_readings();
        let mut feed = self.feed.write().unwrap_or_else(|e| e.into_inner());
        feed.clear();
        feed.extend_from_slice(queue);
    }
}
