//! Any SUMO network and demand under the same policies and measures as the
//! corridor (e.g. the netgenerate grids of the twin benchmark): `citybrain
//! scenario run sumo -n NET -r ROUTES`, optionally with an ambulance sent
//! between two edges. The seed drives the drivers' imperfection only; the
//! demand is the file's.

use std::path::PathBuf;
use std::sync::Arc;

use citybrain_control::controllers_for;
use citybrain_net::{EdgeId, Network};
use citybrain_sim::router::Router;
use citybrain_sim::{Behaviour, Demand, Sim, SimConfig};

use crate::ambulance::{self, Ambulance};
use crate::measure::{self, Outcome, Policy};
use crate::ScenarioError;

pub struct SumoFiles {
    pub net: Arc<Network>,
    demand: Demand,
    approaches: Vec<EdgeId>,
    /// The demand period: up to the last departure.
    duration: f64,
    ambulance: Option<AmbulanceTrip>,
}

/// Where and when the ambulance goes.
#[derive(Debug, Clone)]
pub struct AmbulanceTrip {
    pub route: Arc<[EdgeId]>,
    pub depart: f64,
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
            ambulance: None,
        })
    }

    /// Sends an ambulance from edge `from` to edge `to` by the shortest way,
    /// departing at `depart` s (default: the middle of the demand period).
    pub fn with_ambulance(mut self, from: &str, to: &str, depart: Option<f64>) -> Result<SumoFiles, ScenarioError> {
        let edge = |name: &str| {
            self.net
                .edge_id(name)
                .ok_or_else(|| ScenarioError::Data(format!("ambulance route: the network has no edge '{name}'")))
        };
        let (a, b) = (edge(from)?, edge(to)?);
        let route: Arc<[EdgeId]> = Router::new(&self.net)
            .shortest(&self.net, a, b, "emergency")
            .ok_or_else(|| ScenarioError::Data(format!("ambulance route: no way from '{from}' to '{to}'")))?
            .into();
        let depart = depart.unwrap_or(self.duration / 2.0);
        if !(depart.is_finite() && (0.0..=self.duration).contains(&depart)) {
            return Err(ScenarioError::Data(format!(
                "ambulance departure must be within the demand period, 0-{:.0} s; got {depart}",
                self.duration
            )));
        }
        if self.demand.vehicles.iter().any(|v| v.id == ambulance::AMBULANCE_ID) {
            return Err(ScenarioError::Data(format!(
                "the route files already have a vehicle called '{}'",
                ambulance::AMBULANCE_ID
            )));
        }
        self.ambulance = Some(AmbulanceTrip {
            route,
            depart: depart.floor(),
        });
        Ok(self)
    }

    /// The ambulance's trip, if one was set.
    pub fn ambulance(&self) -> Option<&AmbulanceTrip> {
        self.ambulance.as_ref()
    }

    /// The ambulance's free-flow time along its route, s.
    pub fn ambulance_free_flow_s(&self) -> Option<f64> {
        self.ambulance
            .as_ref()
            .map(|a| ambulance::free_flow_s(&self.net, &a.route))
    }

    pub fn run(
        &self,
        policy: Policy,
        seed: u64,
        with: Ambulance,
        each_step: impl FnMut(&Sim),
    ) -> Result<Outcome, ScenarioError> {
        if policy == Policy::Coordinated {
            return Err(ScenarioError::PolicyNotHere(
                "coordinated",
                "coordinated plans are laid out for the signal corridor's arterial; a SUMO network brings its own plans (policy fixed)",
            ));
        }
        let mut controllers = controllers_for(&self.net, policy.engine_kind())?;
        let mut demand = self.demand.clone();
        if with != Ambulance::None {
            let trip = self.ambulance.as_ref().ok_or_else(|| {
                ScenarioError::Data("an ambulance run needs the ambulance's route (with_ambulance)".into())
            })?;
            ambulance::dispatch(&mut demand, trip.route.clone(), trip.depart);
            if with == Ambulance::WithPriority {
                controllers = ambulance::with_priority(&self.net, controllers, ambulance::network_amber(&self.net));
            }
        }
        let cfg = SimConfig {
            seed,
            behaviour: Behaviour {
                // Traffic ahead of the ambulance opens a rescue lane (as on the corridor).
                rescue_lane: with != Ambulance::None,
                // ...and the ambulance may pass a red light when it is clear.
                emergency_red_speed: (with != Ambulance::None).then_some(ambulance::RED_CROSSING_SPEED_MPS),
                ..Behaviour::default()
            },
            ..SimConfig::default()
        };
        let sim = Sim::new(self.net.clone(), demand, cfg, controllers);
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
