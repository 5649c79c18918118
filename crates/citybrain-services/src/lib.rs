//! # citybrain-services — digital government, the domain
//!
//! The service catalog (`services/*.yaml`), applications with once-only
//! prefill and consent decided at once by a rule (秒批) or by an officer,
//! and life-event bundles (一件事): versioned DAGs of department steps with
//! parallel fan-out and join, SLA timers and escalation, and compensation.
//!
//! Pure: no HTTP, SQL or runtime. The engine takes the clock and what the
//! departments answer as arguments and returns the effects to commit with
//! the new state; `citybrain-services-hub` keeps that state in the hub.

#![forbid(unsafe_code)]

pub mod actor;
pub mod application;
pub mod bundle;
pub mod catalog;
pub mod error;
pub mod instance;

pub use actor::{Actor, ActorKind};
pub use application::{Application, ApplicationStatus, Consent, Prefilled, Submission};
pub use bundle::{Bundle, Step, StepKind};
pub use catalog::{Catalog, DecidedBy, Service};
pub use error::ServiceError;
pub use instance::{Departments, Effect, Instance, InstanceStatus, StepStatus};
