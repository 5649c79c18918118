//! # citybrain-cockpit — live dashboards defined as files
//!
//! A cockpit (数字驾驶舱) is a JSON file in `dashboards/`: a wall canvas of
//! panels (KPI tile, gauge, time series, bar, table, alert list, map), each
//! reading hub entities. This crate holds the definition model and its
//! checks ([`definition`]) and what each panel shows of a set of entities
//! ([`panel`]). No HTTP, no SQL, no async: the web layer fetches entities
//! from the hub and streams what changed.
//!
//! Terms: *tier* — city, district, street or department cockpit; *variable* —
//! a choice kept in the URL (`?district=…`) and substituted as `${name}` in
//! queries, so one definition serves many districts.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod definition;
pub mod panel;

pub use definition::{parse, CheckError, Definition, Panel, PanelKind};
pub use panel::{evaluate, PanelData};
