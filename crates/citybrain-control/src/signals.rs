//! The City Brain's signal controllers: max-pressure, adaptive (the City
//! Brain policy), emergency priority over any controller, and `Fed`, which
//! runs a controller on the hub's central view.

use citybrain_net::{LaneId, Network, TlsId};
use citybrain_sim::signals::{
    cabinet_controllers_for, has_amber, is_green, link_lanes, Controllers, LinkSignal, PhaseMachine, SignalController,
    SignalInput, UnknownControl,
};

use crate::{as_input, Central, Observation};

/// Max-pressure control: after a minimum green, every `decision_interval`
/// seconds, switch to the green phase whose links carry the largest pressure
/// (vehicles waiting upstream minus vehicles waiting downstream), through the
/// program's amber.
pub struct MaxPressure {
    m: PhaseMachine,
    lanes: Vec<Option<(LaneId, LaneId)>>,
    decision_interval: f64,
    last_decision: f64,
}

impl MaxPressure {
    pub fn new(net: &Network, tls: TlsId, min_green: f64, decision_interval: f64) -> Self {
        MaxPressure {
            m: PhaseMachine::new(&net.tls[tls.idx()], min_green),
            lanes: link_lanes(net, tls),
            decision_interval,
            last_decision: f64::NEG_INFINITY,
        }
    }

    fn pressure(&self, phase: usize, q: &[u32]) -> i64 {
        self.m.phases[phase]
            .1
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, LinkSignal::Go | LinkSignal::Yield))
            .filter_map(|(i, _)| self.lanes.get(i).copied().flatten())
            .map(|(from, to)| {
                q.get(from.idx()).copied().unwrap_or(0) as i64 - q.get(to.idx()).copied().unwrap_or(0) as i64
            })
            .sum()
    }
}

impl MaxPressure {
    /// This step's link states from what `obs` says.
    pub fn decide(&mut self, obs: &dyn Observation, out: &mut Vec<LinkSignal>) {
        let t = obs.time();
        if !self.m.step_transition(t) {
            let cur = self.m.current;
            let e = self.m.elapsed(t);
            if e >= self.m.min_dur[cur] && t - self.last_decision >= self.decision_interval {
                self.last_decision = t;
                let q = obs.queue_by_lane();
                // Ties keep the current phase, then the lowest index: deterministic.
                let mut best = cur;
                let mut best_p = self.pressure(cur, q);
                for p in 0..self.m.phases.len() {
                    if p != cur && is_green(&self.m.phases[p].1) && !has_amber(&self.m.phases[p].1) {
                        let pp = self.pressure(p, q);
                        if pp > best_p {
                            best = p;
                            best_p = pp;
                        }
                    }
                }
                if best != cur {
                    self.m.leave_green(best, t);
                }
            }
        }
        self.m.out(out);
    }
}

impl SignalController for MaxPressure {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        self.decide(input, out);
    }

    fn kind(&self) -> &'static str {
        "max-pressure"
    }
}

/// Emergency-vehicle priority over any controller: when an emergency vehicle
/// is due at a link of this signal soon enough that the queue ahead of it
/// needs the green to clear, show the program's green phase for that link
/// and hold it until the vehicle has passed; otherwise show what the base
/// controller says (it keeps running underneath). Every change that takes
/// green away from a link goes through amber first, so no driver ever faces
/// green-to-red, and only the program's own phases are shown — never two
/// conflicting greens.
pub struct Priority {
    base: Box<dyn SignalController>,
    tls: TlsId,
    phases: Vec<Vec<LinkSignal>>,
    /// Per link: the lanes of the edge it leaves from (the approach).
    approach: Vec<Vec<LaneId>>,
    amber: f64,
    base_out: Vec<LinkSignal>,
    shown: Vec<LinkSignal>,
    /// While > time: the transition amber is showing; then `shown` becomes what is wanted.
    amber_until: f64,
    /// The link being served for an emergency vehicle.
    serving: Option<u32>,
}

/// Seconds per queued vehicle to discharge (saturation headway), and the
/// start-up loss, for the clearance estimate.
const DISCHARGE_HEADWAY: f64 = 2.0;
const START_UP_LOSS: f64 = 4.0;
/// Lead time before the predicted arrival, beyond clearing the standing
/// queue: the vehicles driving ahead of the emergency vehicle on the way
/// need the green too, or it catches up with them at the line (measured on
/// the signal corridor: 8 s of lead saved 13 % of the ambulance's time,
/// 30 s 24 %, 60 s 32 %, with others delayed by 3–7 s on average).
const PRIORITY_MARGIN: f64 = 60.0;

impl Priority {
    pub fn new(net: &Network, tls: TlsId, base: Box<dyn SignalController>, amber: f64) -> Self {
        let logic = &net.tls[tls.idx()];
        let phases = logic
            .phases
            .iter()
            .map(|p| p.state.chars().map(LinkSignal::from_char).collect())
            .collect();
        let approach = link_lanes(net, tls)
            .into_iter()
            .map(|l| {
                l.map(|(from, _)| net.edge(net.lane(from).edge).lanes.clone())
                    .unwrap_or_default()
            })
            .collect();
        Priority {
            base,
            tls,
            phases,
            approach,
            amber,
            base_out: Vec::new(),
            shown: Vec::new(),
            amber_until: f64::NEG_INFINITY,
            serving: None,
        }
    }

    /// The program phase that serves `link` best: `G` before `g`.
    fn phase_for(&self, link: u32) -> Option<usize> {
        let state = |p: &Vec<LinkSignal>| p.get(link as usize).copied();
        self.phases
            .iter()
            .position(|p| state(p) == Some(LinkSignal::Go))
            .or_else(|| self.phases.iter().position(|p| state(p) == Some(LinkSignal::Yield)))
    }

    /// The program phase an emergency call needs now, if any (None: show
    /// what the base controller says).
    fn wanted(&mut self, obs: &dyn Observation) -> Option<usize> {
        let call = obs
            .priority_calls()
            .iter()
            .filter(|c| c.tls == self.tls)
            .min_by(|a, b| a.eta.total_cmp(&b.eta));
        let Some(call) = call else {
            self.serving = None;
            return None;
        };
        let queue = self.approach.get(call.link as usize).map_or(0, |lanes| {
            lanes
                .iter()
                .map(|l| obs.queue_by_lane().get(l.idx()).copied().unwrap_or(0))
                .max()
                .unwrap_or(0)
        });
        let clearance = queue as f64 * DISCHARGE_HEADWAY + START_UP_LOSS + self.amber + PRIORITY_MARGIN;
        if self.serving == Some(call.link) || call.eta <= clearance {
            if let Some(p) = self.phase_for(call.link) {
                self.serving = Some(call.link);
                return Some(p);
            }
        }
        self.serving = None;
        None
    }
}

fn is_go(s: LinkSignal) -> bool {
    matches!(s, LinkSignal::Go | LinkSignal::Yield)
}

impl Priority {
    /// This step's link states from what `obs` says: the base controller's
    /// (it sees the same observation), unless an emergency call needs a green.
    pub fn decide(&mut self, obs: &dyn Observation, out: &mut Vec<LinkSignal>) {
        let t = obs.time();
        self.base.states(&as_input(obs), &mut self.base_out);
        let phase = self.wanted(obs);
        let want: &[LinkSignal] = match phase {
            Some(p) => &self.phases[p],
            None => &self.base_out,
        };
        if t >= self.amber_until && self.shown.as_slice() != want {
            let loses = self.shown.len() == want.len()
                && self
                    .shown
                    .iter()
                    .zip(want)
                    .any(|(s, w)| is_go(*s) && *w == LinkSignal::Stop);
            if loses {
                // Amber on every link that loses its green; nothing gains one yet.
                for (shown, w) in self.shown.iter_mut().zip(want) {
                    if is_go(*shown) && !is_go(*w) {
                        *shown = LinkSignal::Amber;
                    }
                }
                self.amber_until = t + self.amber;
            } else {
                self.shown.clear();
                self.shown.extend_from_slice(want);
            }
        }
        out.clear();
        out.extend_from_slice(&self.shown);
    }
}

impl SignalController for Priority {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        self.decide(input, out);
    }

    fn kind(&self) -> &'static str {
        "priority"
    }
}

/// Adaptive control (the City Brain policy): greens chosen by pressure and
/// held while they still carry traffic. Every step after a minimum green it
/// compares the phases' pressure — vehicles queued or in the detection zone
/// on the lanes a phase serves, minus the queue on the lanes it feeds (no
/// green into a blocked street) — and leaves the current green when its
/// lanes have emptied (gap-out) and another phase has demand, when it has
/// run its maximum, or when another phase's pressure clearly dominates.
/// Unlike max-pressure with a fixed decision period, it does not cut a
/// platoon that is still discharging, and it skips phases nobody waits for.
pub struct Adaptive {
    m: PhaseMachine,
    /// Per phase: the distinct (incoming, outgoing) lanes its greens serve.
    served: Vec<Vec<(LaneId, LaneId)>>,
}

impl Adaptive {
    pub fn new(net: &Network, tls: TlsId, min_green: f64) -> Self {
        let m = PhaseMachine::new(&net.tls[tls.idx()], min_green);
        let lanes = link_lanes(net, tls);
        let served = m
            .phases
            .iter()
            .map(|(_, p)| {
                let mut v: Vec<(LaneId, LaneId)> = p
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| is_go(**s))
                    .filter_map(|(i, _)| lanes.get(i).copied().flatten())
                    .collect();
                v.sort();
                v.dedup_by_key(|x| x.0);
                v
            })
            .collect();
        Adaptive { m, served }
    }

    fn pressure(&self, phase: usize, obs: &dyn Observation) -> i64 {
        let get = |v: &[u32], l: LaneId| v.get(l.idx()).copied().unwrap_or(0) as i64;
        let (queue, near) = (obs.queue_by_lane(), obs.near_stop_line());
        self.served[phase]
            .iter()
            .map(|&(from, to)| get(queue, from).max(get(near, from)) - get(queue, to))
            .sum()
    }

    fn active(&self, phase: usize, obs: &dyn Observation) -> bool {
        self.served[phase]
            .iter()
            .any(|(from, _)| obs.near_stop_line().get(from.idx()).copied().unwrap_or(0) > 0)
    }
}

/// How much more pressure another phase needs to cut a green that still carries traffic.
const DOMINANCE: i64 = 3;

impl Adaptive {
    /// This step's link states from what `obs` says.
    pub fn decide(&mut self, obs: &dyn Observation, out: &mut Vec<LinkSignal>) {
        let t = obs.time();
        if !self.m.step_transition(t) {
            let cur = self.m.current;
            let e = self.m.elapsed(t);
            if e >= self.m.min_dur[cur] {
                let mut best: Option<(usize, i64)> = None;
                for p in 0..self.m.phases.len() {
                    if p != cur && is_green(&self.m.phases[p].1) && !has_amber(&self.m.phases[p].1) {
                        let pp = self.pressure(p, obs);
                        if pp > 0 && best.is_none_or(|(_, b)| pp > b) {
                            best = Some((p, pp));
                        }
                    }
                }
                if let Some((p, pp)) = best {
                    let cur_p = self.pressure(cur, obs);
                    let gap_out = !self.active(cur, obs);
                    let max_out = e >= self.m.max_dur[cur];
                    if gap_out || max_out || pp > DOMINANCE * cur_p.max(1) {
                        self.m.leave_green(p, t);
                    }
                }
            }
        }
        self.m.out(out);
    }
}

impl SignalController for Adaptive {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        self.decide(input, out);
    }

    fn kind(&self) -> &'static str {
        "adaptive"
    }
}

/// Queue lengths from outside the engine — a hub fed by real or twin
/// sensors — by lane index: vehicles standing.
pub type SharedDetectors = std::sync::Arc<std::sync::RwLock<Vec<u32>>>;

/// Runs a controller on the [`Central`] view — queue lengths from outside
/// the engine — instead of the engine's own: the same control loop then
/// works on real sensors (see [`Central`] for what stays local and why).
pub struct Fed {
    base: Box<dyn SignalController>,
    feed: SharedDetectors,
}

impl Fed {
    pub fn new(base: Box<dyn SignalController>, feed: SharedDetectors) -> Self {
        Fed { base, feed }
    }
}

impl SignalController for Fed {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        let guard = self.feed.read().unwrap_or_else(|e| e.into_inner());
        let central = Central {
            queue_by_lane: &guard,
            cabinet: input,
        };
        self.base.states(&as_input(&central), out);
    }

    fn kind(&self) -> &'static str {
        self.base.kind()
    }
}

/// Controllers of one kind for every traffic light of a network: the
/// cabinets' own (`fixed`, `actuated`) or the City Brain's.
pub fn controllers_for(net: &Network, kind: &str) -> Result<Controllers, UnknownControl> {
    let ids = (0..net.tls.len()).map(|i| TlsId(i as u32));
    Ok(match kind {
        "fixed" | "actuated" => cabinet_controllers_for(net, kind)?,
        "adaptive" => ids
            .map(|t| (t, Box::new(Adaptive::new(net, t, 6.0)) as Box<dyn SignalController>))
            .collect(),
        "max-pressure" => ids
            .map(|t| {
                (
                    t,
                    Box::new(MaxPressure::new(net, t, 10.0, 5.0)) as Box<dyn SignalController>,
                )
            })
            .collect(),
        other => {
            return Err(UnknownControl {
                kind: other.to_string(),
                known: "fixed, actuated, max-pressure, adaptive",
            })
        }
    })
}
