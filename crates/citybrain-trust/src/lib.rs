//! # citybrain-trust — who may do what
//!
//! Identities and their roles ([`Principal`], [`Role`]), API tokens stored
//! as Argon2id hashes ([`token`]), OpenID Connect bearer JWTs ([`oidc`]),
//! and the departments' data-sharing policy ([`policy`]) compiled into a
//! [`citybrain_ngsild::access::Visibility`] per caller and a write check.
//!
//! What it deliberately does **not** do: read requests or databases. The
//! API crate finds the credentials in a request, asks here who they belong
//! to and what they may touch, and the store keeps tokens and the audit log.

#![forbid(unsafe_code)]

pub mod oidc;
pub mod policy;
pub mod token;

use serde::{Deserialize, Serialize};

/// The roles of the issue that defines them: an administrator runs the hub;
/// a department officer works on what the policy opens to their
/// departments; a citizen or enterprise sees their own records; the public
/// sees open data and public boards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Officer,
    Citizen,
    Enterprise,
    Public,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Officer,
        Role::Citizen,
        Role::Enterprise,
        Role::Public,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Officer => "officer",
            Role::Citizen => "citizen",
            Role::Enterprise => "enterprise",
            Role::Public => "public",
        }
    }

    /// Whether this role acts for one person or enterprise (needs a subject).
    pub fn has_subject(self) -> bool {
        matches!(self, Role::Citizen | Role::Enterprise)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" | "administrator" => Ok(Role::Admin),
            "officer" | "department-officer" | "department_officer" => Ok(Role::Officer),
            "citizen" => Ok(Role::Citizen),
            "enterprise" => Ok(Role::Enterprise),
            "public" => Ok(Role::Public),
            other => Err(format!(
                "unknown role '{other}' (admin, officer, citizen, enterprise, public)"
            )),
        }
    }
}

/// What an endpoint does, for the role check that comes before any data is
/// touched. Each route of the API names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Health, version, the cockpit pages' HTML and assets: anyone.
    Open,
    /// Read entities, types, history, cockpit data (filtered by visibility).
    Read,
    /// Create, change or delete entities and history; add @contexts.
    Write,
    /// Create, list, change or delete subscriptions; open their streams.
    Subscribe,
    /// One's own account: "who looked at my data".
    Own,
    /// Operator work: purge, @context deletion, metrics, the whole audit log.
    Operate,
}

impl Role {
    /// May this role call endpoints of this kind at all?
    pub fn may(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Officer => matches!(action, Open | Read | Write | Subscribe | Own),
            Role::Citizen | Role::Enterprise => matches!(action, Open | Read | Own),
            Role::Public => matches!(action, Open | Read),
        }
    }
}

/// Who is calling, once their credentials were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable name for logs and the audit trail: `token:<id>`, `oidc:<sub>`,
    /// `public`, `anonymous-admin` (with --no-auth).
    pub actor: String,
    pub role: Role,
    pub departments: Vec<String>,
    /// The person or enterprise (an entity id) a citizen/enterprise acts for.
    pub subject: Option<String>,
    /// Tenants this caller may use; `*` is every tenant, `""` the default one.
    pub tenants: Vec<String>,
}

impl Principal {
    /// The caller without credentials: the public, on the default tenant.
    pub fn public() -> Self {
        Principal {
            actor: "public".into(),
            role: Role::Public,
            departments: vec![],
            subject: None,
            tenants: vec![String::new()],
        }
    }

    /// Everything allowed: the hub run with `--no-auth`, and internal tasks.
    pub fn unrestricted(actor: &str) -> Self {
        Principal {
            actor: actor.into(),
            role: Role::Admin,
            departments: vec![],
            subject: None,
            tenants: vec!["*".into()],
        }
    }

    pub fn may_use_tenant(&self, tenant: &str) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tenant)
    }

    pub fn is_authenticated(&self) -> bool {
        self.role != Role::Public
    }
}

/// A caller as every handler sees it: who, what they may read (compiled
/// once per request), why they say they ask, and the policy for writes.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub visibility: std::sync::Arc<citybrain_ngsild::access::Visibility>,
    /// The purpose the caller declared (`Citybrain-Purpose`), for the audit log.
    pub purpose: Option<String>,
    pub policy: std::sync::Arc<policy::Policy>,
}

impl Caller {
    pub fn new(principal: Principal, policy: std::sync::Arc<policy::Policy>, purpose: Option<String>) -> Self {
        Caller {
            visibility: std::sync::Arc::new(policy.visibility(&principal)),
            principal,
            purpose,
            policy,
        }
    }

    /// The restriction to put into an entity query (None: sees everything).
    pub fn restriction(&self) -> Option<std::sync::Arc<citybrain_ngsild::access::Visibility>> {
        (!self.visibility.is_everything()).then(|| self.visibility.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print_back() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().unwrap_err().contains("unknown role 'root'"));
    }

    #[test]
    fn only_the_administrator_operates_and_only_officers_write() {
        for r in Role::ALL {
            assert_eq!(r.may(Action::Operate), r == Role::Admin, "{r}");
            assert_eq!(r.may(Action::Write), matches!(r, Role::Admin | Role::Officer), "{r}");
            assert!(r.may(Action::Open) && r.may(Action::Read), "{r}");
        }
        assert!(!Role::Public.may(Action::Own));
    }

    #[test]
    fn tenants_are_closed_unless_named() {
        let p = Principal::public();
        assert!(p.may_use_tenant(""));
        assert!(!p.may_use_tenant("district-2"));
        assert!(Principal::unrestricted("x").may_use_tenant("district-2"));
    }
}
