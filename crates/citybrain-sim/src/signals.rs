//! Signal control as a trait. The engine asks every controller, once per
//! step, for the state of each link it controls. This module holds what a
//! signal cabinet does on its own — fixed-time plans, vehicle-actuated
//! gap-out, the phase sequencing both keep (minimum greens, the program's
//! ambers) — and the interface the City Brain's controllers
//! (`citybrain-control`) drive the signals through.

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
    fixed_time_from(&net.tls)
}

/// Fixed-time controllers running `logics`, one per traffic light in the
/// network's order (e.g. its plans re-timed: coordinated offsets).
pub fn fixed_time_from(logics: &[TlLogic]) -> Controllers {
    logics
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

/// Whether a phase gives any link a green.
pub fn is_green(p: &[LinkSignal]) -> bool {
    p.iter().any(|s| matches!(s, LinkSignal::Go | LinkSignal::Yield))
}

/// Whether a phase is a transition (shows amber somewhere).
pub fn has_amber(p: &[LinkSignal]) -> bool {
    p.iter().any(|s| matches!(s, LinkSignal::Amber))
}

/// Runs a program's phases in order, but decides how long each green lasts
/// (and, for max-pressure, which green comes next). The amber phases after a
/// green are kept as written, so no green ever follows a conflicting green
/// without the program's transition.
pub struct PhaseMachine {
    /// The program's phases: written duration, link states.
    pub phases: Vec<(f64, Vec<LinkSignal>)>,
    pub min_dur: Vec<f64>,
    pub max_dur: Vec<f64>,
    /// The phase showing.
    pub current: usize,
    started: f64,
    /// After an amber, the green to go to (max-pressure).
    next_green: Option<usize>,
}

impl PhaseMachine {
    pub fn new(logic: &TlLogic, min_green: f64) -> Self {
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

    pub fn elapsed(&mut self, t: f64) -> f64 {
        if self.started.is_nan() {
            self.started = t;
        }
        t - self.started
    }

    pub fn go_to(&mut self, p: usize, t: f64) {
        self.current = p % self.phases.len().max(1);
        self.started = t;
    }

    /// Leaves the current green: to its amber if the program has one next, else straight to `target`.
    pub fn leave_green(&mut self, target: usize, t: f64) {
        let after = (self.current + 1) % self.phases.len();
        if has_amber(&self.phases[after].1) {
            self.next_green = Some(target);
            self.go_to(after, t);
        } else {
            self.go_to(target, t);
        }
    }

    /// Non-green phases (amber, all-red) run for their written duration.
    pub fn step_transition(&mut self, t: f64) -> bool {
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

    pub fn out(&self, out: &mut Vec<LinkSignal>) {
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

/// A signal control asked for by a name that is not one of `known`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signal control '{kind}' ({known})")]
pub struct UnknownControl {
    pub kind: String,
    pub known: &'static str,
}

/// The signal cabinets' own controllers by name (`fixed`, `actuated`); the
/// City Brain's (`max-pressure`, `adaptive`) and its priority come from
/// `citybrain-control`.
pub fn cabinet_controllers_for(net: &Network, kind: &str) -> Result<Controllers, UnknownControl> {
    let ids = (0..net.tls.len()).map(|i| TlsId(i as u32));
    Ok(match kind {
        "fixed" => fixed_time_for(net),
        "actuated" => ids
            .map(|t| (t, Box::new(Actuated::new(net, t, 5.0)) as Box<dyn SignalController>))
            .collect(),
        other => {
            return Err(UnknownControl {
                kind: other.to_string(),
                known: "fixed, actuated",
            })
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
