//! Who makes a call. Every use case takes one, so the trust layer's roles
//! decide without the services knowing how a caller was authenticated.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    Citizen,
    Enterprise,
    Officer,
    Administrator,
    /// The platform itself: triggers, timers, proactive matching.
    System,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    /// Stable name for the log (`token:…`, `oidc:…`, `system`).
    pub id: String,
    pub kind: ActorKind,
    /// An officer's departments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departments: Vec<String>,
    /// The person or enterprise a citizen or enterprise acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Actor {
    pub fn system() -> Actor {
        Actor {
            id: "system".into(),
            kind: ActorKind::System,
            departments: Vec::new(),
            subject: None,
        }
    }

    /// May act in the name of `subject` (apply, confirm, read its status):
    /// the subject itself, an officer at a counter, the administrator, the system.
    pub fn speaks_for(&self, subject: &str) -> bool {
        match self.kind {
            ActorKind::Citizen | ActorKind::Enterprise => self.subject.as_deref() == Some(subject),
            ActorKind::Officer | ActorKind::Administrator | ActorKind::System => true,
        }
    }

    /// May decide for `department` (review an application or a step).
    pub fn works_for(&self, department: &str) -> bool {
        match self.kind {
            ActorKind::Officer => self.departments.iter().any(|d| d == department || d == "*"),
            ActorKind::Administrator => true,
            _ => false,
        }
    }
}
