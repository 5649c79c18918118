//! Signal control as a trait. The engine asks every controller, once per
//! step, for the state of each link it controls; scenarios can add their own
//! controllers (the City Brain policies).

use citybrain_net::{Network, TlLogic, TlsId};

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
}

/// A signal controller for one traffic light.
pub trait SignalController: Send + Sync {
    /// Fills `out` (one entry per link index) for this step.
    fn states(&mut self, input: &SignalInput<'_>, out: &mut Vec<LinkSignal>);
    /// A name for outputs ("fixed", "actuated", ...).
    fn kind(&self) -> &'static str;
}

/// Fixed-time control from a `tlLogic`: the phases in turn, shifted by the offset.
pub struct FixedTime {
    phases: Vec<(f64, Vec<LinkSignal>)>,
    cycle: f64,
    offset: f64,
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
        out.clear();
        if let Some((_, s)) = self.phases.get(self.phase_at(input.time)) {
            out.extend_from_slice(s);
        }
    }

    fn kind(&self) -> &'static str {
        "fixed"
    }
}

/// Fixed-time controllers for every traffic light of a network, as read.
pub fn fixed_time_for(net: &Network) -> Vec<(TlsId, Box<dyn SignalController>)> {
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
            },
            &mut out,
        );
        assert_eq!(out, vec![LinkSignal::Stop, LinkSignal::Go]);
    }
}
