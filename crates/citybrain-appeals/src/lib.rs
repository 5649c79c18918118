//! # citybrain-appeals — appeals and public interaction (诉求响应, 12345)
//!
//! The domain, pure: what a city hotline does with an appeal from the
//! moment it is filed until the requester is satisfied.
//!
//! - [`config`]: categories (with their SLA and Open311 attributes), the
//!   routing table (category × area → department, supervisors), the
//!   working-day calendar and the moderation rules, read from `appeals/`.
//! - [`calendar`]: due times in calendar hours or working days.
//! - [`appeal`]: the lifecycle. Every change is an [`appeal::Update`] with
//!   a public note; timers warn before a breach and escalate at it.
//! - [`consultation`]: public consultations on draft policies: comments,
//!   answers with their adoption, the conclusion.
//! - [`redact`]: personal data removed from everything public; moderation.
//! - [`intake`]: a filing's category, route and possible duplicates.
//! - [`text`]: a tantivy index with jieba tokenisation: the classifier that
//!   routes an appeal filed without a category, and the search for similar
//!   appeals nearby (duplicates).
//!
//! No HTTP, no SQL: `citybrain-appeals-hub` keeps appeals in the hub.

#![forbid(unsafe_code)]

pub mod appeal;
pub mod calendar;
pub mod config;
pub mod consultation;
mod error;
pub mod intake;
pub mod redact;
pub mod text;

pub use appeal::{Appeal, Filing, Location, Status, Update, UpdateKind};
pub use calendar::{Sla, WorkCalendar};
pub use config::{AppealsConfig, Category, Route};
pub use error::AppealsError;
pub use text::TextIndex;

/// Who acts: the services' actor (citizen, enterprise, officer, administrator, system).
pub use citybrain_services::{Actor, ActorKind};
