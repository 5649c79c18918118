//! Junctions and merges: signal states, busy links, right of way, zipper turns, room beyond a junction.

use super::*;

impl Sim {
    /// The state each link of a signal shows now.
    pub fn signal_state(&self, tls: TlsId) -> &[LinkSignal] {
        self.signal_states.get(tls.idx()).map_or(&[], |s| s.as_slice())
    }

    pub(super) fn update_signals(&mut self) {
        for &li in &self.occupied {
            let len = self.lane_info[li as usize].length;
            let (mut standing, mut near) = (0, 0);
            for &vi in &self.lanes[li as usize] {
                let v = self.veh(vi);
                if v.speed < STANDING {
                    standing += 1;
                }
                if len - v.pos <= DETECTION_RANGE {
                    near += 1;
                }
            }
            self.queue[li as usize] = standing;
            self.near_stop_line[li as usize] = near;
        }
        let calls = self.priority_calls();
        let input = SignalInput {
            time: self.clock.now(),
            queue_by_lane: &self.queue,
            near_stop_line: &self.near_stop_line,
            priority: &calls,
        };
        for (tls, c) in self.controllers.iter_mut() {
            c.states(&input, &mut self.signal_states[tls.idx()]);
        }
    }

    pub(super) fn signal(&self, link: &Link) -> LinkSignal {
        match link.tls {
            Some((t, i)) => self.signal_states[t.idx()]
                .get(i as usize)
                .copied()
                .unwrap_or(LinkSignal::Stop),
            None if link.major => LinkSignal::Go,
            None => LinkSignal::Yield,
        }
    }

    /// The link a vehicle takes at the end of its lane, if any.
    pub(super) fn link_of(&self, v: &Veh) -> Option<&Link> {
        let links = &self.links[v.lane.idx()];
        if self.is_internal(v.lane) {
            return links.first();
        }
        let next = *v.route.get(v.route_idx as usize + 1)?;
        links.iter().find(|l| l.to_edge == next)
    }

    /// Marks, per junction link, whether a vehicle is crossing or about to.
    pub(super) fn mark_busy_links(&mut self) {
        for (j, r) in self.busy_set.drain(..) {
            self.busy[j as usize][r as usize] = false;
        }
        let mut set = Vec::new();
        let mut moving: Vec<(u32, u32)> = Vec::new();
        let mut at_line: Vec<(u32, u32, LaneId, bool)> = Vec::new();
        let mut entrants: Vec<(LaneId, u8, u32, u32)> = Vec::new();
        for &li in &self.occupied {
            let lane_id = LaneId(li);
            let list = &self.lanes[li as usize];
            let Some(&front) = list.first() else { continue };
            let v = self.veh(front);
            let lane = self.net.lane(lane_id);
            let internal = self.net.edge(lane.edge).function == EdgeFunction::Internal;
            if internal {
                // A vehicle inside a junction keeps the links it drives busy,
                // except one standing at the internal waiting point, yielding.
                let waiting = v.yielding.is_some()
                    && v.speed < STANDING
                    && self.links[li as usize]
                        .first()
                        .is_some_and(|l| self.is_internal(l.next));
                if waiting {
                    continue;
                }
                for &(j, r) in &self.via_links[li as usize] {
                    if let (Some(j), Some(r)) = (j, r) {
                        set.push((j.0, r));
                    }
                }
                continue;
            }
            let Some(link) = self.link_of(v) else { continue };
            let dist = lane.length - v.pos;
            // Only a vehicle that will really enter reserves its link: one
            // held at the line (no room beyond the junction) must not make
            // the crossing traffic wait for it.
            let t = self.vtype(v);
            let room_ok = link.next == link.target || self.can_leave(link.target, t);
            let moving_in = v.speed > 0.5 && dist / v.speed < 4.0;
            let starting = dist < 2.0 && room_ok;
            if (moving_in || starting) && room_ok && !matches!(self.signal(link), LinkSignal::Stop) {
                if let (Some(j), Some(r)) = (link.junction, link.request) {
                    set.push((j.0, r));
                    if moving_in {
                        moving.push((j.0, r));
                    }
                }
            }
            let may_enter_now = self.signal(link) != LinkSignal::Stop;
            if self.cfg.behaviour.zipper_merges
                && link.next != link.target
                && dist < v.speed + 2.0
                && may_enter_now
                && self.room_left(link.target) < 2.0 * (t.length + t.min_gap)
            {
                // Who goes first for the last space: the link with the zipper
                // turn, then priority links, then by lane order.
                let rank = match link.junction.zip(link.request) {
                    Some((j, r)) if self.zipper_turn[link.target.idx()] == Some((j.0, r)) => 0u8,
                    _ if link.major => 1,
                    _ => 2,
                };
                entrants.push((link.target, rank, li, front));
            }
            if self.cfg.behaviour.zipper_merges
                && dist < 2.0
                && v.speed < STANDING
                && self.signal(link) != LinkSignal::Stop
            {
                if let (Some(j), Some(r)) = (link.junction, link.request) {
                    at_line.push((j.0, r, link.target, matches!(self.signal(link), LinkSignal::Yield)));
                }
            }
        }
        for (j, r) in set {
            if let Some(slot) = self.busy[j as usize].get_mut(r as usize) {
                if !*slot {
                    *slot = true;
                    self.busy_set.push((j, r));
                }
            }
        }
        if self.cfg.behaviour.zipper_merges {
            self.update_zipper_turns(&at_line, &moving);
            for l in self.permit_set.drain(..) {
                self.entry_permit[l as usize] = None;
            }
            entrants.sort_by(|a, b| (a.0 .0, a.1).cmp(&(b.0 .0, b.1)).then(a.2.cmp(&b.2)));
            for (target, _, _, vi) in entrants {
                if self.entry_permit[target.idx()].is_none() {
                    self.entry_permit[target.idx()] = Some(vi);
                    self.permit_set.push(target.0);
                }
            }
        }
    }

    /// Room beyond a junction on `target`, less what the cars already
    /// inside the junction bound for it will take, m.
    pub(super) fn room_left(&self, target: LaneId) -> f64 {
        let inside: f64 = self.feeders[target.idx()]
            .iter()
            .flat_map(|l| self.lanes[l.idx()].iter())
            .map(|v| {
                let vt = self.vtype(self.veh(*v));
                vt.length + vt.min_gap
            })
            .sum();
        self.room(target) - inside
    }

    /// Zipper merging: a yielding link whose car waits at the line while
    /// cars of a prior link merging into the same lane stand at theirs gets
    /// the next turn into that lane, unless the last car in came by it; the
    /// turn holds until its car has entered (crossing traffic permitting),
    /// and the merging links wait for it.
    pub(super) fn update_zipper_turns(&mut self, at_line: &[(u32, u32, LaneId, bool)], moving: &[(u32, u32)]) {
        let mut kept = Vec::new();
        for l in self.zipper_set.drain(..) {
            let turn = self.zipper_turn[l as usize];
            let still_waiting = turn.is_some_and(|(j, r)| at_line.iter().any(|a| (a.0, a.1) == (j, r) && a.2 .0 == l));
            if still_waiting && self.last_into[l as usize] != turn {
                kept.push(l);
            } else {
                self.zipper_turn[l as usize] = None;
            }
        }
        self.zipper_set = kept;
        for &(j, r, target, yielding) in at_line {
            if !yielding || self.zipper_turn[target.idx()].is_some() || self.last_into[target.idx()] == Some((j, r)) {
                continue;
            }
            let Some(row) = self.yields[j as usize].get(r as usize) else {
                continue;
            };
            let merging = |f: u32| self.request_target[j as usize].get(f as usize).copied().flatten() == Some(target);
            let foe_waiting = row
                .iter()
                .any(|&f| merging(f) && at_line.iter().any(|a| (a.0, a.1) == (j, f)));
            let foe_moving = row.iter().any(|&f| merging(f) && moving.contains(&(j, f)));
            if foe_waiting && !foe_moving {
                self.zipper_turn[target.idx()] = Some((j, r));
                self.zipper_set.push(target.0);
            }
        }
    }

    /// Crossing (not merging) foes of a link are busy.
    pub(super) fn crossing_foes_busy(&self, link: &Link) -> bool {
        let (Some(j), Some(r)) = (link.junction, link.request) else {
            return false;
        };
        self.crossing_foes_busy_at(j, r, link.target)
    }

    pub(super) fn crossing_foes_busy_at(&self, j: JunctionId, r: u32, target: LaneId) -> bool {
        let Some(row) = self.yields[j.idx()].get(r as usize) else {
            return false;
        };
        row.iter().any(|&f| {
            self.busy[j.idx()].get(f as usize).copied().unwrap_or(false)
                && self.request_target[j.idx()].get(f as usize).copied().flatten() != Some(target)
        })
    }

    /// Any link that crosses or merges with `link` busy (a vehicle inside
    /// the junction on it, or about to enter)?
    pub(super) fn any_crosser_busy(&self, link: &Link) -> bool {
        let (Some(j), Some(r)) = (link.junction, link.request) else {
            return false;
        };
        self.crossers[j.idx()].get(r as usize).is_some_and(|row| {
            row.iter()
                .any(|&f| self.busy[j.idx()].get(f as usize).copied().unwrap_or(false))
        })
    }

    pub(super) fn foe_busy(&self, link: &Link) -> bool {
        let (Some(j), Some(r)) = (link.junction, link.request) else {
            return false;
        };
        self.foes_busy_at(j, r)
    }

    /// Zipper merging: this yielding link has its turn into its target lane.
    pub(super) fn my_zipper_turn(&self, link: &Link) -> bool {
        self.cfg.behaviour.zipper_merges
            && link.junction.zip(link.request).map(|(j, r)| (j.0, r)) == self.zipper_turn[link.target.idx()]
    }

    /// Zipper merging: another link has the turn into this link's target lane.
    pub(super) fn others_zipper_turn(&self, link: &Link) -> bool {
        self.cfg.behaviour.zipper_merges
            && self.zipper_turn[link.target.idx()]
                .is_some_and(|turn| link.junction.zip(link.request).map(|(j, r)| (j.0, r)) != Some(turn))
    }

    pub(super) fn foes_busy_at(&self, j: JunctionId, r: u32) -> bool {
        let Some(row) = self.yields[j.idx()].get(r as usize) else {
            return false;
        };
        row.iter()
            .any(|f| self.busy[j.idx()].get(*f as usize).copied().unwrap_or(false))
    }

    /// A yielding link with an internal waiting point (a left turn in SUMO
    /// nets) may be entered to wait inside the junction, as drivers do, if
    /// the first internal lane is free.
    pub(super) fn may_wait_inside(&self, link: &Link, t: &VType) -> bool {
        if link.next == link.target {
            return false;
        }
        let has_waiting_point = self.links[link.next.idx()]
            .first()
            .is_some_and(|l| self.is_internal(l.next));
        has_waiting_point && self.lanes[link.next.idx()].is_empty() && self.can_leave(link.target, t)
    }

    /// Whether a vehicle entering the junction now will find room on its
    /// target lane: room there already, or a last vehicle driving away.
    pub(super) fn can_leave(&self, target: LaneId, t: &VType) -> bool {
        if self.cfg.behaviour.zipper_merges {
            let left = self.room_left(target);
            if left < t.length + t.min_gap {
                return left >= self.room(target)
                    && self.lanes[target.idx()]
                        .last()
                        .is_some_and(|l| self.veh(*l).speed > 2.0);
            }
            return true;
        }
        if self.room(target) >= t.length + t.min_gap {
            return true;
        }
        self.lanes[target.idx()]
            .last()
            .is_some_and(|l| self.veh(*l).speed > 2.0)
    }

    /// Free space at the start of a lane, m.
    pub(super) fn room(&self, lane: LaneId) -> f64 {
        match self.lanes[lane.idx()].last() {
            Some(&last) => {
                let v = self.veh(last);
                v.pos - self.vtype(v).length
            }
            None => self.lane_len(lane),
        }
    }
}
