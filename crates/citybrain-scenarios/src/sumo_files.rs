//! Any SUMO network and demand under the same policies and measures as the
//! corridor (e.g. the netgenerate grids of the twin benchmark): `citybrain
//! scenario run sumo -n NET -r ROUTES`. The seed drives the drivers'
//! imperfection only; the demand is the file's.

use std::path::PathBuf;
use std::sync::Arc;

use citybrain_net::{EdgeId, Network};
use citybrain_sim::signals::controllers_for;
use citybrain_sim::{Demand, Sim, SimConfig};

use crate::measure::{self, Outcome, Policy};
use crate::ScenarioError;

pub struct SumoFiles {
    pub net: Arc<Network>,
    demand: Demand,
    approaches: Vec<EdgeId>,
    /// The demand period: up to the last departure.
    duration: f64,
}

impl SumoFiles {
    pub fn load(net: &PathBuf, routes: &[PathBuf]) -> Result<SumoFiles, ScenarioError> {
        let net = Arc::new(citybrain_net::sumo::read_net(net).map_err(|e| ScenarioError::Data(e.to_string()))?);
        let demand = Demand::read(&net, routes).map_err(|e| ScenarioError::Data(e.to_string()))?;
        let duration = demand.vehicles.iter().map(|v| v.depart).fold(0.0, f64::max).max(1.0);
        Ok(SumoFiles {
            approaches: measure::signal_approaches(&net),
            net,
            demand,
            duration,
        })
    }

    pub fn run(&self, policy: Policy, seed: u64, each_step: impl FnMut(&Sim)) -> Result<Outcome, ScenarioError> {
        let controllers = controllers_for(&self.net, policy.engine_kind()).map_err(ScenarioError::Data)?;
        let cfg = SimConfig {
            seed,
            ..SimConfig::default()
        };
        let sim = Sim::new(self.net.clone(), self.demand.clone(), cfg, controllers);
        Ok(measure::run(
            sim,
            &self.net,
            &self.approaches,
            policy,
            seed,
            self.duration,
            each_step,
        ))
    }
}
