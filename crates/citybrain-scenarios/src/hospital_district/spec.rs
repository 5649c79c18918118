//! The scenario's inputs as `district.json` gives them, and their checks.

use super::*;

#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    pub hospitals: Vec<HospitalSpec>,
    pub shared_lots: Vec<SharedLotSpec>,
    pub demand: DemandSpec,
    pub gates: Gates,
    pub guidance: GuidanceSpec,
    pub door: DoorSpec,
    pub reservation: ReservationSpec,
    pub roads: Roads,
    pub behaviour: BehaviourSpec,
}

/// The drivers' behaviour constants that shape the figures (`district.json`
/// "behaviour"; sources.md gives each one's status).
#[derive(Debug, Clone, Deserialize)]
pub struct BehaviourSpec {
    /// A car slower than this is in a queue, m/s (SUMO's halting speed).
    pub halting_mps: f64,
    /// Drivers keep to the lane their route needs this many edges ahead.
    pub lane_lookahead_edges: usize,
    /// A driver held this long beside a queue that does not let it in
    /// drives on and is routed round, s.
    pub missed_turn_after_s: f64,
    /// Another way into the block only if it saves more than this, s.
    pub way_in_margin_s: f64,
    /// A visitor held outside the block looks at the other ways in again
    /// this often, s.
    pub held_think_again_s: f64,
    /// A through driver goes round when crossing would take this much
    /// longer than at free flow; the detour it then pays, s.
    pub through_detour_s: f64,
    /// Visitor stays are drawn within these bounds, s.
    pub dwell_bounds_s: (f64, f64),
    /// A car stuck this long at the front of a lane jumps ahead (SUMO's
    /// time-to-teleport; never a car on its way to a lot), s.
    pub time_to_teleport_s: f64,
}

/// The door as drop-off only: who is let out there and for how long.
#[derive(Debug, Clone, Deserialize)]
pub struct DoorSpec {
    /// Share of visitor cars that bring a patient to be let out at the door.
    pub drop_off_share: f64,
    /// How long letting the patient out takes, s (uniform between; the
    /// camera-enforced limit is the upper bound).
    pub drop_off_s: (f64, f64),
    /// Cars the drop-off bay holds at once.
    pub bay_spaces: u32,
}

/// Reservation of a space with the medical appointment.
#[derive(Debug, Clone, Deserialize)]
pub struct ReservationSpec {
    /// Share of visitors who book a space when they book the appointment.
    pub share: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Roads {
    pub east_west: Vec<RoadSpec>,
    pub north_south: Vec<RoadSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoadSpec {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HospitalSpec {
    pub id: String,
    pub name: String,
    /// The road its gate is on.
    pub gate_on: String,
    pub visitor_spaces: u32,
    pub staff_spaces: u32,
    pub visitor_cars_per_day: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SharedLotSpec {
    pub id: String,
    pub name: String,
    /// The road it is entered from.
    pub on: String,
    pub spaces: u32,
    /// (time s, spaces offered to hospital visitors), linear in between.
    pub offered: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemandSpec {
    pub begin_s: f64,
    /// Through traffic runs until here; visitors follow their profile.
    pub end_s: f64,
    pub visitor_profile: Vec<(f64, f64)>,
    pub visitor_dwell_median_s: f64,
    pub visitor_dwell_share_under_3h: f64,
    pub staff_arrive_s: (f64, f64),
    pub staff_leave_s: (f64, f64),
    pub through_veh_h_per_direction: ThroughRates,
    pub through_profile: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ThroughRates {
    pub east_west: f64,
    pub north_south: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Gates {
    pub pay_at_exit_s: f64,
    pub pay_after_leaving_s: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GuidanceSpec {
    pub compliance: f64,
    pub walk_speed_mps: f64,
    pub walk_detour: f64,
}

pub(super) fn validate(spec: &Spec) -> Result<(), ScenarioError> {
    let bad = |m: String| Err(ScenarioError::Data(format!("district.json: {m}")));
    let b = &spec.behaviour;
    for (name, x) in [
        ("halting_mps", b.halting_mps),
        ("missed_turn_after_s", b.missed_turn_after_s),
        ("way_in_margin_s", b.way_in_margin_s),
        ("held_think_again_s", b.held_think_again_s),
        ("through_detour_s", b.through_detour_s),
        ("time_to_teleport_s", b.time_to_teleport_s),
    ] {
        if !(x.is_finite() && x > 0.0) {
            return bad(format!("behaviour.{name} must be a number above 0, got {x}"));
        }
    }
    if b.lane_lookahead_edges == 0 || !(b.dwell_bounds_s.0 > 0.0 && b.dwell_bounds_s.0 < b.dwell_bounds_s.1) {
        return bad("behaviour: lane_lookahead_edges >= 1 and 0 < dwell_bounds_s[0] < dwell_bounds_s[1]".into());
    }
    let d = &spec.demand;
    for (name, p) in [
        ("visitor_profile", &d.visitor_profile),
        ("through_profile", &d.through_profile),
    ] {
        if p.is_empty() || p.iter().any(|x| !(x.1 >= 0.0 && x.0.is_finite())) || p.windows(2).any(|w| w[1].0 < w[0].0) {
            return bad(format!("{name} needs time-ordered points with multipliers >= 0"));
        }
    }
    if !(0.5..1.0).contains(&d.visitor_dwell_share_under_3h)
        || d.visitor_dwell_median_s.is_nan()
        || d.visitor_dwell_median_s <= 0.0
    {
        return bad("visitor dwell: median > 0 and a share under 3 h in [0.5, 1)".into());
    }
    if !(0.0..=1.0).contains(&spec.guidance.compliance)
        || spec.guidance.walk_speed_mps.is_nan()
        || spec.guidance.walk_speed_mps <= 0.0
    {
        return bad("guidance: compliance in [0, 1], walk speed > 0".into());
    }
    if d.staff_arrive_s.0 > d.staff_arrive_s.1 || d.staff_leave_s.0 > d.staff_leave_s.1 {
        return bad("staff windows must be [from, to]".into());
    }
    let door = &spec.door;
    let (from, to) = door.drop_off_s;
    let door_ok = (0.0..=1.0).contains(&door.drop_off_share) && from >= 0.0 && from <= to && to <= 3600.0;
    if !door_ok || door.bay_spaces == 0 {
        return bad("door: drop_off_share in [0, 1], drop_off_s [from, to] within an hour, bay_spaces > 0".into());
    }
    if !(0.0..=1.0).contains(&spec.reservation.share) {
        return bad("reservation: share in [0, 1]".into());
    }
    if spec.hospitals.is_empty() || spec.hospitals.len() > 200 {
        return bad("one or more hospitals".into());
    }
    Ok(())
}
