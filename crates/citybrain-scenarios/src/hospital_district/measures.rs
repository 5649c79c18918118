//! The City Brain's measures: which are on, by name, and what they do — guidance to a lot with room, turning cars away at a full gate, booking a space.

use citybrain_control::{best_lot, FirstKnown, LotChoice, ParkingObservation};

use super::*;

/// Which City Brain measures are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Measures {
    pub guidance: bool,
    pub turn_away: bool,
    pub fast_gates: bool,
    /// The door is drop-off only: patients are let out there (3 min at
    /// most) and the car goes on to park.
    pub drop_off: bool,
    /// Some visitors book a space in a shared lot with their appointment.
    pub reservation: bool,
}

impl Measures {
    pub const BASELINE: Measures = Measures {
        guidance: false,
        turn_away: false,
        fast_gates: false,
        drop_off: false,
        reservation: false,
    };
    /// Every documented measure; reservation (not documented for these
    /// hospitals) is added by name: `citybrain+reservation`.
    pub const CITYBRAIN: Measures = Measures {
        guidance: true,
        turn_away: true,
        fast_gates: true,
        drop_off: true,
        reservation: false,
    };
    /// The measures' names, in the order they are written.
    pub const NAMES: [&'static str; 5] = ["guidance", "turn-away", "fast-gates", "drop-off", "reservation"];

    fn flags(self) -> [bool; 5] {
        [
            self.guidance,
            self.turn_away,
            self.fast_gates,
            self.drop_off,
            self.reservation,
        ]
    }

    /// `baseline`, `citybrain`, `citybrain+reservation` or `baseline+guidance+…`.
    pub fn name(self) -> String {
        let all = Measures::CITYBRAIN.flags();
        let city_brain = self.flags().iter().zip(all).all(|(on, in_all)| *on || !in_all);
        let mut s = String::from(if city_brain { "citybrain" } else { "baseline" });
        for ((on, in_all), n) in self.flags().into_iter().zip(all).zip(Measures::NAMES) {
            if on && !(city_brain && in_all) {
                s.push('+');
                s.push_str(n);
            }
        }
        s
    }

    /// Baseline, each measure alone, and all of them (the City Brain).
    pub fn each_alone() -> Vec<Measures> {
        vec![
            Measures::BASELINE,
            Measures {
                guidance: true,
                ..Measures::BASELINE
            },
            Measures {
                turn_away: true,
                ..Measures::BASELINE
            },
            Measures {
                fast_gates: true,
                ..Measures::BASELINE
            },
            Measures {
                drop_off: true,
                ..Measures::BASELINE
            },
            Measures {
                reservation: true,
                ..Measures::BASELINE
            },
            Measures::CITYBRAIN,
            Measures {
                reservation: true,
                ..Measures::CITYBRAIN
            },
        ]
    }
}

impl FromStr for Measures {
    type Err = ScenarioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ScenarioError::Data(format!(
                "unknown policy '{s}': baseline or citybrain, optionally followed by +measure (guidance, turn-away, fast-gates, drop-off, reservation), e.g. baseline+guidance"
            ))
        };
        let mut parts = s.split('+');
        let mut m = match parts.next() {
            Some("baseline") => Measures::BASELINE,
            Some("citybrain") => Measures::CITYBRAIN,
            _ => return Err(bad()),
        };
        for p in parts {
            match p {
                "guidance" => m.guidance = true,
                "turn-away" => m.turn_away = true,
                "fast-gates" => m.fast_gates = true,
                "drop-off" => m.drop_off = true,
                "reservation" => m.reservation = true,
                _ => return Err(bad()),
            }
        }
        Ok(m)
    }
}

impl Run<'_> {
    /// The best lot with room for a visitor of hospital `h` coming from
    /// `from` (the control layer's parking guidance): driving time plus
    /// walking time to the hospital, by the hub's availability where it
    /// has the lot, else the twin's own count.
    pub(super) fn best_lot(
        &mut self,
        h: usize,
        from: EdgeId,
        hub: Option<&Availability>,
        own_ok: bool,
    ) -> Option<usize> {
        let allowed: Vec<usize> = (0..self.d.lots.len())
            .filter(|&lot| {
                // Its own hospital's lot (when allowed) or a shared one.
                match self.d.lots[lot].hospital {
                    Some(of) => of == h && own_ok,
                    None => true,
                }
            })
            .collect();
        let choices: Vec<LotChoice> = allowed
            .into_iter()
            .map(|lot| LotChoice {
                lot,
                drive_s: self.drive_s(from, lot),
                walk_s: self.d.lots[lot].walk_m[h] / self.d.spec.guidance.walk_speed_mps,
            })
            .collect();
        let twin = TwinLots {
            lots: &self.d.lots,
            occupancy: self.sim.parking_occupancy(),
        };
        let obs = FirstKnown(
            HubLots {
                lots: &self.d.lots,
                hub,
            },
            twin,
        );
        best_lot(choices, &obs, &self.assigned)
    }

    /// Reservation with the appointment: a visitor who books (a share of
    /// them) gets a space held in the best shared lot with room, as the
    /// partner lots of the pilots offered; the hospital's own spaces are
    /// not booked (they serve whoever arrives). Asked once, when the car
    /// first shows on the road; with no room anywhere it books nothing.
    pub(super) fn book(&mut self, vehicle: usize, h: usize, from: EdgeId, hub: Option<&Availability>) {
        self.cars[vehicle].booking = Booking::Declined;
        if self.cars[vehicle].guidance != Guidance::Undecided
            || rng::draw(self.o.seed, vehicle as u64, BOOKING_DRAW) >= self.d.spec.reservation.share
        {
            return;
        }
        let Some(lot) = self.best_lot(h, from, hub, false) else {
            return;
        };
        self.cars[vehicle].booking = Booking::Booked { redirect_pending: true };
        self.send(vehicle, Guidance::Sent { lot });
    }

    /// Records where a car is sent, and counts it against that lot (not
    /// against the lot it was sent to before, if any) until it parks.
    fn send(&mut self, vehicle: usize, to: Guidance) {
        let car = &mut self.cars[vehicle];
        if let Some(before) = car.guidance.lot() {
            self.assigned[before] = self.assigned[before].saturating_sub(1);
        }
        car.guidance = to;
        if let Some(lot) = to.lot() {
            self.assigned[lot] += 1;
        }
    }

    /// Guidance (screens, the door, the app): sends a complying driver to
    /// the best lot with room; one that ignores it keeps heading for the
    /// hospital's own lot.
    pub(super) fn guide(
        &mut self,
        handle: VehicleHandle,
        vehicle: usize,
        h: usize,
        edge: EdgeId,
        next: Option<EdgeId>,
        hub: Option<&Availability>,
    ) {
        let complies = rng::draw(self.o.seed, vehicle as u64, 0x6d1d) < self.compliance;
        if !complies {
            self.cars[vehicle].guidance = Guidance::Ignores;
            return;
        }
        let from = next.unwrap_or(edge);
        let Some(lot) = self.best_lot(h, from, hub, true) else {
            return; // nowhere has room: ask again further on
        };
        let own = self.d.hospitals[h].lot;
        if lot != own && self.sim.redirect_to_parking(handle, self.d.lots[lot].area).is_err() {
            return; // mid-junction: ask again next step
        }
        self.send(vehicle, Guidance::Sent { lot });
        if lot != own {
            self.guided += 1;
        }
    }

    /// A guard at a full hospital's gate sends the car to the best lot with
    /// room (by the same availability the screens show).
    pub(super) fn turn_away(
        &mut self,
        handle: VehicleHandle,
        vehicle: usize,
        h: usize,
        edge: EdgeId,
        next: Option<EdgeId>,
        hub: Option<&Availability>,
    ) {
        let from = next.unwrap_or(edge);
        let Some(lot) = self.best_lot(h, from, hub, false) else {
            return; // nowhere has room: it waits for its hospital's lot
        };
        let gate = Some(self.d.hospitals[h].access_edge);
        if self
            .sim
            .redirect_to_parking_avoiding(handle, self.d.lots[lot].area, gate)
            .is_err()
        {
            return;
        }
        if !matches!(self.cars[vehicle].guidance, Guidance::TurnedAway { .. }) {
            self.turned_away += 1;
        }
        self.send(vehicle, Guidance::TurnedAway { lot });
        let car = &mut self.cars[vehicle];
        if car.progress == Progress::Queued {
            car.progress = Progress::Driving;
        }
    }
}

/// Free spaces as the twin counts them (batch runs).
struct TwinLots<'a> {
    lots: &'a [Lot],
    /// (id, occupied, capacity) per parking area.
    occupancy: Vec<(&'a str, u32, u32)>,
}

impl ParkingObservation for TwinLots<'_> {
    fn free_spaces(&self, lot: usize) -> Option<u32> {
        let (_, occ, cap) = *self.occupancy.get(self.lots.get(lot)?.area.idx())?;
        Some(cap.saturating_sub(occ))
    }
}

/// Free spaces as the hub holds them (`OffStreetParking` read back in live mode).
struct HubLots<'a> {
    lots: &'a [Lot],
    hub: Option<&'a Availability>,
}

impl ParkingObservation for HubLots<'_> {
    fn free_spaces(&self, lot: usize) -> Option<u32> {
        self.hub?.get(&self.lots.get(lot)?.id).copied()
    }
}
