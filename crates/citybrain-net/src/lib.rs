//! # citybrain-net — the road network
//!
//! The network model the twin simulates and the readers that build it from
//! SUMO files (`.net.xml`, optionally gzip-compressed). No simulation logic.
//!
//! ## Helpful terminology
//! - **edge**: a directed road section between two junctions; *normal* edges
//!   carry traffic between junctions, *internal* edges (`:J_0`) lie inside a
//!   junction and are driven while crossing it.
//! - **lane**: one lane of an edge, with its own speed, length and shape.
//! - **connection**: a permitted movement from a lane of one edge to a lane of
//!   the next, possibly *via* an internal lane, possibly controlled by a
//!   traffic light (`tl` + `linkIndex` into the signal's state string).
//! - **request**: a junction's right-of-way row for one link: which links it
//!   must yield to (`response`) and which cross it (`foes`), as SUMO writes
//!   them (bit strings, read right to left).
//! - **tlLogic**: a signal program, a cycle of phases with durations and
//!   per-link state characters (`G` go, `g` go but yield, `y` amber, `r` stop, ...).

#![forbid(unsafe_code)]

pub mod model;
pub mod sumo;
pub mod xml;

pub use model::*;
pub use xml::XmlError;
