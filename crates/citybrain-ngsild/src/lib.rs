//! # citybrain-ngsild — the NGSI-LD vocabulary, pure
//!
//! The data model and languages of ETSI GS CIM 009 (NGSI-LD, V1.8 behaviour):
//! entities and their attribute kinds, @context term expansion and compaction,
//! the `q`, `scopeQ`, type-selection and geo-query languages, subscription
//! matching, the output formats (normalized, concise, keyValues, GeoJSON) and
//! temporal representations.
//!
//! What it deliberately does **not** do: I/O of any kind. It does not fetch
//! remote @contexts (the hub resolves URLs to documents and hands them here),
//! does not store anything, knows no HTTP and no async runtime.
//!
//! ## Helpful terminology
//! - **term / IRI**: a short attribute or type name (`speed`) and its expanded
//!   form (`https://uri.etsi.org/ngsi-ld/default-context/speed`). Everything
//!   inside citybrain is stored and compared by **expanded IRI**; terms exist
//!   only on the wire.
//! - **TermMap**: the resolved @context of one request (user contexts, then the
//!   core context applied last and protected).
//! - **instance**: one value of an attribute. An attribute holds one instance
//!   per `datasetId` (multi-attribute); the default instance has none.
//! - **fragment**: a partial entity from a request body (merge, append, patch).
//! - **sysAttrs**: `createdAt` / `modifiedAt`, kept by the hub, shown on request.

#![forbid(unsafe_code)]

pub mod access;
pub mod context;
pub mod error;
pub mod geo;
pub mod input;
pub mod model;
pub mod order;
pub mod q;
pub mod render;
pub mod scope;
pub mod selector;
pub mod subscription;
pub mod temporal;
pub mod time;

pub use context::TermMap;
pub use error::{ErrorKind, NgsiError, Result};
pub use model::{Attr, Entity};
