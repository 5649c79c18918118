//! The twin's own dense ids, so that a vehicle's place in the demand, its
//! handle on the road, a parking area and a detector — all small integers —
//! cannot be passed one for another.

citybrain_net::id_type!(
    /// A vehicle of the demand (`Demand::vehicles[id.idx()]`): who it is for
    /// the whole run, before, on and after the road.
    VehicleId,
    "v"
);
citybrain_net::id_type!(
    /// A vehicle on the road: valid from its insertion until it arrives (the
    /// engine reuses the slot after that).
    VehicleHandle,
    "h"
);
citybrain_net::id_type!(
    /// A parking area of the additional files (`Additional::parking_areas[id.idx()]`).
    ParkingAreaId,
    "pa"
);
citybrain_net::id_type!(
    /// An induction loop of the additional files (`Additional::detectors[id.idx()]`).
    DetectorId,
    "d"
);
