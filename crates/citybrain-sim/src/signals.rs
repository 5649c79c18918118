//! Signal control as a trait. The engine asks every controller, once per
//! step, for the state of each link it controls; scenarios can add their own
//! controllers (the City Brain policies).

use citybrain_net::{LaneId, Network, TlLogic, TlsId};

/// The state of one signalled link this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkSignal {
    /// Go (`G`, and `O`/`o` when the signal is off).
    Go,
    /// Go but yield to conflicting traffic (`g`).
    Yield,
    /// Amber: go only if unable to stop (`y`).
    Amber,
    /// Stop (`r`, `u`, `s`).
    Stop,
}

impl LinkSignal {
    pub fn from_char(c: char) -> LinkSignal {
        match c {
            'G' | 'O' => LinkSignal::Go,
            'g' | 'o' => LinkSignal::Yield,
            'y' | 'Y' => LinkSignal::Amber,
            _ => LinkSignal::Stop,
        }
    }
}

/// What a controller may read each step.
pub struct SignalInput<'a> {
    pub time: f64,
    /// Vehicles waiting (speed < 0.1 m/s) on each lane, by lane index.
    pub queue_by_lane: &'a [u32],
    /// Vehicles, moving or not, within 40 m of each lane's stop line (a
    /// detector zone), by lane index.
    pub near_stop_line: &'a [u32],
    /// Emergency vehicles approaching signals (all signals; each controller
    /// picks its own), nearest first per vehicle.
    pub priority: &'a [PriorityCall],
}

/// An emergency vehicle (vClass `emergency`) on its way to a signalled link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PriorityCall {
    pub tls: TlsId,
    /// The link it will take (index into the signal's state).
    pub link: u32,
    /// Distance to the stop line, m.
    pub distance: f64,
    /// Estimated arrival at the stop line at the lanes' speed limits, s from now.
    pub eta: f64,
}

/// A signal controller for one traffic light.
pub trait SignalController: Send + Sync {
    /// Fills `out` (one entry per link index) for this step. `out` is the
    /// same vector on every call for a controller and still holds what it
    /// wrote last time, so a controller may leave it untouched when nothing changed.
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>);
    /// A name for outputs ("fixed", "actuated", ...).
    fn kind(&self) -> &'static str;
}

/// One controller per traffic light.
pub type Controllers = Vec<(TlsId, Box<dyn SignalController>)>;

/// Fixed-time control from a `tlLogic`: the phases in turn, shifted by the offset.
pub struct FixedTime {
    phases: Vec<(f64, Vec<LinkSignal>)>,
    cycle: f64,
    offset: f64,
    /// The phase last written out (the engine keeps `out` between calls).
    shown: Option<usize>,
}

impl FixedTime {
    pub fn new(logic: &TlLogic) -> Self {
        let phases: Vec<(f64, Vec<LinkSignal>)> = logic
            .phases
            .iter()
            .map(|p| (p.duration, p.state.chars().map(LinkSignal::from_char).collect()))
            .collect();
        FixedTime {
            cycle: logic.cycle().max(1e-9),
            phases,
            offset: logic.offset,
            shown: None,
        }
    }

    /// The phase index in effect at time `t`.
    pub fn phase_at(&self, t: f64) -> usize {
        let mut x = (t + self.offset).rem_euclid(self.cycle);
        for (i, (d, _)) in self.phases.iter().enumerate() {
            if x < *d {
                return i;
            }
            x -= d;
        }
        self.phases.len().saturating_sub(1)
    }
}

impl SignalController for FixedTime {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        let p = self.phase_at(input.time);
        // Most steps change nothing: rewrite the states only on a phase change.
        if self.shown == Some(p) && !out.is_empty() {
            return;
        }
        self.shown = Some(p);
        out.clear();
        if let Some((_, s)) = self.phases.get(p) {
            out.extend_from_slice(s);
        }
    }

    fn kind(&self) -> &'static str {
        "fixed"
    }
}

/// Fixed-time controllers for every traffic light of a network, as read.
pub fn fixed_time_for(net: &Network) -> Controllers {
    net.tls
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                TlsId(i as u32),
                Box::new(FixedTime::new(t)) as Box<dyn SignalController>,
            )
        })
        .collect()
}

/// The lanes a signal's links join: link index → (incoming lane, outgoing lane).
pub fn link_lanes(net: &Network, tls: TlsId) -> Vec<Option<(LaneId, LaneId)>> {
    let n = net.tls[tls.idx()].phases.first().map(|p| p.state.len()).unwrap_or(0);
    let mut out = vec![None; n];
    for c in &net.connections {
        if let (Some(t), Some(i)) = (c.tls, c.link_index) {
            if t == tls && (i as usize) < n {
                let from = net.edge(c.from).lanes.get(c.from_lane as usize).copied();
                let to = net.edge(c.to).lanes.get(c.to_lane as usize).copied();
                if let (Some(f), Some(t)) = (from, to) {
                    out[i as usize] = Some((f, t));
                }
            }
        }
    }
    out
}

fn is_green(p: &[LinkSignal]) -> bool {
    p.iter().any(|s| matches!(s, LinkSignal::Go | LinkSignal::Yield))
}

fn has_amber(p: &[LinkSignal]) -> bool {
    p.iter().any(|s| matches!(s, LinkSignal::Amber))
}

/// Runs a program's phases in order, but decides how long each green lasts
/// (and, for max-pressure, which green comes next). The amber phases after a
/// green are kept as written, so no green ever follows a conflicting green
/// without the program's transition.
struct PhaseMachine {
    phases: Vec<(f64, Vec<LinkSignal>)>,
    min_dur: Vec<f64>,
    max_dur: Vec<f64>,
    current: usize,
    started: f64,
    /// After an amber, the green to go to (max-pressure).
    next_green: Option<usize>,
}

impl PhaseMachine {
    fn new(logic: &TlLogic, min_green: f64) -> Self {
        let phases: Vec<(f64, Vec<LinkSignal>)> = logic
            .phases
            .iter()
            .map(|p| (p.duration, p.state.chars().map(LinkSignal::from_char).collect()))
            .collect();
        let min_dur = logic
            .phases
            .iter()
            .map(|p| p.min_dur.unwrap_or(p.duration.min(min_green)))
            .collect();
        let max_dur = logic
            .phases
            .iter()
            .map(|p| p.max_dur.unwrap_or(p.duration * 2.0).max(p.duration))
            .collect();
        PhaseMachine {
            phases,
            min_dur,
            max_dur,
            current: 0,
            started: f64::NAN,
            next_green: None,
        }
    }

    fn elapsed(&mut self, t: f64) -> f64 {
        if self.started.is_nan() {
            self.started = t;
        }
        t - self.started
    }

    fn go_to(&mut self, p: usize, t: f64) {
        self.current = p % self.phases.len().max(1);
        self.started = t;
    }

    /// Leaves the current green: to its amber if the program has one next, else straight to `target`.
    fn leave_green(&mut self, target: usize, t: f64) {
        let after = (self.current + 1) % self.phases.len();
        if has_amber(&self.phases[after].1) {
            self.next_green = Some(target);
            self.go_to(after, t);
        } else {
            self.go_to(target, t);
        }
    }

    /// Non-green phases (amber, all-red) run for their written duration.
    fn step_transition(&mut self, t: f64) -> bool {
        if is_green(&self.phases[self.current].1) && !has_amber(&self.phases[self.current].1) {
            return false;
        }
        if self.elapsed(t) >= self.phases[self.current].0 {
            let next = match self.next_green.take() {
                Some(g) if has_amber(&self.phases[self.current].1) => g,
                _ => self.current + 1,
            };
            self.go_to(next, t);
        }
        true
    }

    fn out(&self, out: &mut Vec<LinkSignal>) {
        out.clear();
        out.extend_from_slice(&self.phases[self.current].1);
    }
}

/// Vehicle-actuated control: a green lasts at least its minimum, then is
/// extended while vehicles occupy the detection zone before the stop line
/// of its lanes (gap-out, as SUMO's actuated signals do with their loops),
/// up to its maximum. Durations
/// come from the program's `minDur`/`maxDur`, else the written duration
/// (capped at `min_green`) and twice the written duration.
pub struct Actuated {
    m: PhaseMachine,
    lanes: Vec<Option<(LaneId, LaneId)>>,
}

impl Actuated {
    pub fn new(net: &Network, tls: TlsId, min_green: f64) -> Self {
        Actuated {
            m: PhaseMachine::new(&net.tls[tls.idx()], min_green),
            lanes: link_lanes(net, tls),
        }
    }
}

impl SignalController for Actuated {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        let t = input.time;
        if !self.m.step_transition(t) {
            let cur = self.m.current;
            let e = self.m.elapsed(t);
            let demand = self.m.phases[cur].1.iter().enumerate().any(|(i, s)| {
                matches!(s, LinkSignal::Go | LinkSignal::Yield)
                    && self
                        .lanes
                        .get(i)
                        .copied()
                        .flatten()
                        .is_some_and(|(from, _)| input.near_stop_line.get(from.idx()).copied().unwrap_or(0) > 0)
            });
            let done = e >= self.m.max_dur[cur] || (e >= self.m.min_dur[cur] && !demand);
            if done {
                // On to the program's next phase (its amber, if it has one).
                self.m.go_to(cur + 1, t);
            }
        }
        self.m.out(out);
    }

    fn kind(&self) -> &'static str {
        "actuated"
    }
}

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

impl SignalController for MaxPressure {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        let t = input.time;
        if !self.m.step_transition(t) {
            let cur = self.m.current;
            let e = self.m.elapsed(t);
            if e >= self.m.min_dur[cur] && t - self.last_decision >= self.decision_interval {
                self.last_decision = t;
                let q = input.queue_by_lane;
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
    fn wanted(&mut self, input: &SignalInput<'_>) -> Option<usize> {
        let call = input
            .priority
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
                .map(|l| input.queue_by_lane.get(l.idx()).copied().unwrap_or(0))
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

impl SignalController for Priority {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        let t = input.time;
        self.base.states(input, &mut self.base_out);
        let phase = self.wanted(input);
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

    fn pressure(&self, phase: usize, input: &SignalInput<'_>) -> i64 {
        let get = |v: &[u32], l: LaneId| v.get(l.idx()).copied().unwrap_or(0) as i64;
        self.served[phase]
            .iter()
            .map(|&(from, to)| {
                get(input.queue_by_lane, from).max(get(input.near_stop_line, from)) - get(input.queue_by_lane, to)
            })
            .sum()
    }

    fn active(&self, phase: usize, input: &SignalInput<'_>) -> bool {
        self.served[phase]
            .iter()
            .any(|(from, _)| input.near_stop_line.get(from.idx()).copied().unwrap_or(0) > 0)
    }
}

/// How much more pressure another phase needs to cut a green that still carries traffic.
const DOMINANCE: i64 = 3;

impl SignalController for Adaptive {
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>) {
        let t = input.time;
        if !self.m.step_transition(t) {
            let cur = self.m.current;
            let e = self.m.elapsed(t);
            if e >= self.m.min_dur[cur] {
                let mut best: Option<(usize, i64)> = None;
                for p in 0..self.m.phases.len() {
                    if p != cur && is_green(&self.m.phases[p].1) && !has_amber(&self.m.phases[p].1) {
                        let pp = self.pressure(p, input);
                        if pp > 0 && best.is_none_or(|(_, b)| pp > b) {
                            best = Some((p, pp));
                        }
                    }
                }
                if let Some((p, pp)) = best {
                    let cur_p = self.pressure(cur, input);
                    let gap_out = !self.active(cur, input);
                    let max_out = e >= self.m.max_dur[cur];
                    if gap_out || max_out || pp > DOMINANCE * cur_p.max(1) {
                        self.m.leave_green(p, t);
                    }
                }
            }
        }
        self.m.out(out);
    }

    fn kind(&self) -> &'static str {
        "adaptive"
    }
}

/// Queue lengths from outside the engine — a hub fed by real or twin
/// sensors — by lane index: vehicles standing.
pub type SharedDetectors = std::sync::Arc<std::sync::RwLock<Vec<u32>>>;

/// Runs a controller on queue lengths from outside the engine instead of
/// the engine's own: the same control loop then works on real sensors. As
/// in real adaptive systems, the central view (queues, which decide which
/// phase has the most pressure) comes from outside, while the cabinet's own
/// stop-line loops (vehicles in the detection zone, which end a green that
/// no longer carries traffic), emergency calls and the clock stay local:
/// a gap-out on readings a publication period old would hold greens for
/// nobody and cut greens under moving traffic.
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
        let fed = SignalInput {
            time: input.time,
            queue_by_lane: &guard,
            near_stop_line: input.near_stop_line,
            priority: input.priority,
        };
        self.base.states(&fed, out);
    }

    fn kind(&self) -> &'static str {
        self.base.kind()
    }
}

/// Controllers of one kind for every traffic light of a network.
pub fn controllers_for(net: &Network, kind: &str) -> Result<Controllers, String> {
    let ids = (0..net.tls.len()).map(|i| TlsId(i as u32));
    Ok(match kind {
        "fixed" => fixed_time_for(net),
        "actuated" => ids
            .map(|t| (t, Box::new(Actuated::new(net, t, 5.0)) as Box<dyn SignalController>))
            .collect(),
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
            return Err(format!(
                "unknown signal control '{other}' (fixed, actuated, max-pressure, adaptive)"
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_net::Phase;

    #[test]
    fn fixed_time_cycles_with_offset() {
        let logic = TlLogic {
            id: "t".into(),
            program_id: "0".into(),
            kind: "static".into(),
            offset: 10.0,
            phases: vec![
                Phase {
                    duration: 42.0,
                    state: "Gr".into(),
                    min_dur: None,
                    max_dur: None,
                },
                Phase {
                    duration: 3.0,
                    state: "yr".into(),
                    min_dur: None,
                    max_dur: None,
                },
                Phase {
                    duration: 45.0,
                    state: "rG".into(),
                    min_dur: None,
                    max_dur: None,
                },
            ],
        };
        let mut f = FixedTime::new(&logic);
        assert_eq!(f.phase_at(0.0), 0);
        assert_eq!(f.phase_at(32.0), 1);
        assert_eq!(f.phase_at(35.0), 2);
        assert_eq!(f.phase_at(80.0), 0);
        let mut out = Vec::new();
        f.states(
            &SignalInput {
                time: 40.0,
                queue_by_lane: &[],
                near_stop_line: &[],
                priority: &[],
            },
            &mut out,
        );
        assert_eq!(out, vec![LinkSignal::Stop, LinkSignal::Go]);
    }
}
