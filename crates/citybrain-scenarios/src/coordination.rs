//! Coordinated fixed-time plans for an arterial: the plans a city runs on a
//! corridor like this one — one common cycle, and offsets that give the
//! arterial a green wave in both directions.
//!
//! The method is maximal bandwidth (MAXBAND; Little 1966, Little, Kelson &
//! Gartner 1981): choose the offsets so that the widest band of time for
//! which a vehicle driving at the progression speed meets green at every
//! signal, outbound `b` plus `k` times inbound `b̄`, with `b̄ ≥ k·b` when
//! `k < 1` (the lighter direction's band is at least `k` times the
//! heavier's; `k` = inbound / outbound volume). MAXBAND writes this as a
//! mixed-integer programme; with a green window per signal for the
//! arterial (both directions green together, as here), the two bands'
//! relative shift is the only coupling between signals, so this module
//! searches it exhaustively on a fine grid (and `b` with it) and reads each
//! signal's offset from where the bands pass it: the same optimum, to the
//! grid's resolution, without a solver.
//!
//! The common cycle is the longest of the signals' own (Webster) cycles —
//! the critical intersection's, as practice has it (FHWA Traffic Signal
//! Timing Manual, ch. 6) — and each other signal gives its extra time to the
//! arterial's green. Inputs and sources: `corridor.json` ("coordination")
//! and `scenarios/signal-corridor/sources.md`.

use citybrain_net::TlLogic;

/// One signal along the arterial, as the search sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signal {
    /// Distance from the first signal, m.
    pub position_m: f64,
    /// The arterial's green (both directions), s.
    pub green_s: f64,
}

/// The bands found and the offsets that give them.
#[derive(Debug, Clone, PartialEq)]
pub struct Progression {
    pub cycle_s: f64,
    /// Outbound (first signal to last) and inbound bandwidth, s.
    pub outbound_band_s: f64,
    pub inbound_band_s: f64,
    /// When each signal's arterial green starts, s into the common cycle
    /// (the outbound band leaves the first signal at 0).
    pub green_start_s: Vec<f64>,
}

/// Maximal two-way bandwidth for `signals` (ordered along the outbound
/// direction) at `speed` m/s, with inbound weight `k` (> 0), the cycle
/// `cycle_s` and the search grid `step_s`.
pub fn max_bandwidth(signals: &[Signal], cycle_s: f64, speed: f64, k: f64, step_s: f64) -> Progression {
    let c = cycle_s;
    let last = signals.last().map_or(0.0, |s| s.position_m);
    let out_t: Vec<f64> = signals.iter().map(|s| s.position_m / speed).collect();
    let in_t: Vec<f64> = signals.iter().map(|s| (last - s.position_m) / speed).collect();
    let max_b = signals.iter().map(|s| s.green_s).fold(f64::INFINITY, f64::min).max(0.0);
    let steps = |span: f64| (span / step_s).floor() as usize;
    let mut best: Option<(f64, f64, f64, f64)> = None; // (objective, u, b, b̄)
    for iu in 0..steps(c).max(1) {
        let u = iu as f64 * step_s;
        // Per signal: where the inbound band passes, after the outbound one.
        let d: Vec<f64> = (0..signals.len())
            .map(|i| (u + in_t[i] - out_t[i]).rem_euclid(c))
            .collect();
        for ib in 0..=steps(max_b) {
            let b = ib as f64 * step_s;
            let Some(bb) = max_inbound(signals, &d, c, b) else {
                break;
            };
            // Directional priority, (1 − k)·b̄ >= (1 − k)·k·b: with k < 1 the
            // inbound band is at least k·b; with k > 1 at most k·b (a narrower
            // band always fits where a wider one does).
            let bb = if k > 1.0 { bb.min(k * b) } else { bb };
            if k < 1.0 && bb < k * b - 1e-9 {
                continue;
            }
            let objective = b + k * bb;
            if best.is_none_or(|x| objective > x.0 + 1e-9) {
                best = Some((objective, u, b, bb));
            }
        }
    }
    let (_, u, b, bb) = best.unwrap_or((0.0, 0.0, 0.0, 0.0));
    let green_start_s = signals
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let a = out_t[i].rem_euclid(c);
            let d = (u + in_t[i] - out_t[i]).rem_euclid(c);
            // The two bands as one window: inbound after outbound (span
            // max(b, d + b̄)) or before it (span max(b̄, c − d + b)); the
            // narrower that fits, centred in the green.
            let after = b.max(d + bb);
            let before = bb.max(c - d + b);
            let (start, span) = if after <= s.green_s + 1e-9 && (after <= before || before > s.green_s + 1e-9) {
                (a, after)
            } else {
                (a + d - c, before)
            };
            (start - (s.green_s - span).max(0.0) / 2.0).rem_euclid(c)
        })
        .collect();
    Progression {
        cycle_s: c,
        outbound_band_s: b,
        inbound_band_s: bb,
        green_start_s,
    }
}

/// The widest inbound band that fits at every signal beside an outbound
/// band `b`, given each signal's shift `d` of the inbound band after the
/// outbound; None when `b` itself does not fit.
fn max_inbound(signals: &[Signal], d: &[f64], c: f64, b: f64) -> Option<f64> {
    let mut most = f64::INFINITY;
    for (s, &d) in signals.iter().zip(d) {
        let g = s.green_s;
        if b > g + 1e-9 {
            return None;
        }
        // Inbound after outbound: needs d + b̄ <= g. Before: c − d + b <= g.
        let after = g - d;
        let before = if c - d + b <= g + 1e-9 { g } else { f64::NEG_INFINITY };
        most = most.min(after.max(before));
    }
    (most >= 0.0).then_some(most)
}

/// The plans with the common cycle: `logics` (one per signal, phase
/// `through` the arterial's green) lengthened to `cycle_s` by that phase,
/// and shifted so that green starts at `green_start_s` (the engine shows a
/// program's phase at (time + offset) mod cycle).
pub fn coordinated_plans(logics: &[TlLogic], through: usize, p: &Progression) -> Vec<TlLogic> {
    logics
        .iter()
        .zip(&p.green_start_s)
        .map(|(l, &start)| {
            let mut l = l.clone();
            let extra = p.cycle_s - l.cycle();
            if let Some(ph) = l.phases.get_mut(through) {
                ph.duration += extra;
            }
            let before: f64 = l.phases[..through].iter().map(|ph| ph.duration).sum();
            l.offset = (before - start).rem_euclid(p.cycle_s);
            l
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn green_at(p: &Progression, s: &[Signal], i: usize, t: f64) -> bool {
        let x = (t - p.green_start_s[i]).rem_euclid(p.cycle_s);
        x <= s[i].green_s + 1e-6
    }

    /// Every vehicle inside either band meets green at every signal.
    fn check_bands(s: &[Signal], p: &Progression, v: f64) {
        let last = s.last().unwrap().position_m;
        // The inbound band's start at the last signal is recovered from the
        // first signal's window: search it.
        for k in 0..=20 {
            let t0 = p.outbound_band_s * k as f64 / 20.0;
            for (i, sig) in s.iter().enumerate() {
                assert!(
                    green_at(p, s, i, t0 + sig.position_m / v),
                    "outbound t0={t0} signal {i}"
                );
            }
        }
        let ok_inbound = (0..(p.cycle_s * 10.0) as usize).any(|u10| {
            let u = u10 as f64 / 10.0;
            (0..=20).all(|k| {
                let t0 = u + p.inbound_band_s * k as f64 / 20.0;
                s.iter()
                    .enumerate()
                    .all(|(i, sig)| green_at(p, s, i, t0 + (last - sig.position_m) / v))
            })
        });
        assert!(ok_inbound, "no inbound band of {} s", p.inbound_band_s);
    }

    #[test]
    fn two_signals_half_a_cycle_apart_get_full_bands_both_ways() {
        // Travel time 30 s, cycle 60 s, green 30 s: green at the second
        // signal 30 s after the first gives the whole green to both
        // directions (the classic simultaneous/alternate case).
        let s = [
            Signal {
                position_m: 0.0,
                green_s: 30.0,
            },
            Signal {
                position_m: 300.0,
                green_s: 30.0,
            },
        ];
        let p = max_bandwidth(&s, 60.0, 10.0, 1.0, 0.5);
        assert!((p.outbound_band_s - 30.0).abs() < 1e-9, "{p:?}");
        assert!((p.inbound_band_s - 30.0).abs() < 1e-9, "{p:?}");
        check_bands(&s, &p, 10.0);
    }

    #[test]
    fn uneven_spacing_trades_bandwidth_and_weights_it() {
        let s: Vec<Signal> = [0.0, 267.0, 620.0, 960.0, 1280.0, 1555.0]
            .iter()
            .zip([40.0, 32.0, 45.0, 30.0, 38.0, 42.0])
            .map(|(&position_m, green_s)| Signal { position_m, green_s })
            .collect();
        let p = max_bandwidth(&s, 90.0, 13.89, 0.75, 0.5);
        assert!(
            p.outbound_band_s > 0.0 && p.inbound_band_s >= 0.75 * p.outbound_band_s - 1e-9,
            "{p:?}"
        );
        assert!(p.outbound_band_s <= 30.0 && p.inbound_band_s <= 30.0);
        check_bands(&s, &p, 13.89);
    }

    #[test]
    fn plans_keep_the_cycle_and_start_green_where_asked() {
        use citybrain_net::Phase;
        let ph = |d: f64, s: &str| Phase {
            duration: d,
            state: s.into(),
            min_dur: None,
            max_dur: None,
        };
        let logic = TlLogic {
            id: "J1".into(),
            program_id: "0".into(),
            kind: "static".into(),
            offset: 0.0,
            phases: vec![ph(30.0, "Gr"), ph(3.0, "yr"), ph(24.0, "rG"), ph(3.0, "ry")],
        };
        let p = Progression {
            cycle_s: 80.0,
            outbound_band_s: 0.0,
            inbound_band_s: 0.0,
            green_start_s: vec![17.0],
        };
        let plans = coordinated_plans(&[logic], 0, &p);
        assert_eq!(plans[0].cycle(), 80.0);
        assert_eq!(plans[0].phases[0].duration, 50.0);
        let f = citybrain_sim::signals::FixedTime::new(&plans[0]);
        assert_eq!(f.phase_at(17.0), 0);
        assert_eq!(f.phase_at(16.5), 3);
        assert_eq!(f.phase_at(17.0 + 49.5), 0);
        assert_eq!(f.phase_at(17.0 + 50.5), 1);
    }
}
