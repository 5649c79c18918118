//! Wiring of access control: the serve flags (`--no-auth`, `--policy`,
//! OpenID Connect, rate limits), `citybrain token …` and `citybrain audit …`.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use citybrain_api::auth::{AuthConfig, Jwks, OidcSettings};
use citybrain_store::audit::Verifier;
use citybrain_store::{ApiTokenRecord, Store};
use citybrain_trust::oidc::OidcConfig;
use citybrain_trust::policy::Policy;
use citybrain_trust::{token, Role};
use clap::{Args, Subcommand};

/// The shipped data-sharing policy, used when ./policies/data-sharing.json is absent.
const BUILT_IN_POLICY: &str = include_str!("../../../policies/data-sharing.json");

#[derive(Args, Debug, Clone)]
pub struct TrustArgs {
    /// Turn authentication off: every request acts as an administrator.
    /// For local experiments only — never on a network others can reach.
    #[arg(long, env = "CITYBRAIN_NO_AUTH")]
    pub no_auth: bool,
    /// The departments' data-sharing policy (JSON). Default:
    /// ./policies/data-sharing.json if it exists, else the one built in.
    #[arg(long, env = "CITYBRAIN_POLICY")]
    pub policy: Option<PathBuf>,
    /// OpenID Connect issuer whose JWTs are accepted as bearer tokens (the
    /// `iss` they must carry), e.g. https://id.city.example/realms/city.
    #[arg(long, env = "CITYBRAIN_OIDC_ISSUER", requires = "oidc_jwks")]
    pub oidc_issuer: Option<String>,
    /// The issuer's keys: a JWKS file, or its jwks_uri (https://…); a URL is
    /// fetched again when a token names a key it lacks (key rotation).
    #[arg(long, env = "CITYBRAIN_OIDC_JWKS", requires = "oidc_issuer")]
    pub oidc_jwks: Option<String>,
    /// The `aud` tokens must carry (not checked when unset).
    #[arg(long, env = "CITYBRAIN_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// Claim holding the citybrain role(s).
    #[arg(long, env = "CITYBRAIN_OIDC_ROLES_CLAIM", default_value = "roles")]
    pub oidc_roles_claim: String,
    /// Claim holding the officer's department keys.
    #[arg(long, env = "CITYBRAIN_OIDC_DEPARTMENTS_CLAIM", default_value = "departments")]
    pub oidc_departments_claim: String,
    /// Claim holding the entity id a citizen or enterprise acts for.
    #[arg(long, env = "CITYBRAIN_OIDC_SUBJECT_CLAIM", default_value = "sub")]
    pub oidc_subject_claim: String,
    /// Requests per second each caller may make (the public: per address); 0: no limit.
    #[arg(long, env = "CITYBRAIN_RATE_LIMIT", default_value_t = 500)]
    pub rate_limit: u32,
    /// Requests a caller may send at once above the rate.
    #[arg(long, env = "CITYBRAIN_RATE_BURST", default_value_t = 1000)]
    pub rate_burst: u32,
}

/// Reads the policy the flags name.
pub fn load_policy(path: Option<&PathBuf>) -> Result<Arc<Policy>> {
    let default = PathBuf::from("policies/data-sharing.json");
    let path = path.cloned().or_else(|| default.is_file().then_some(default));
    let p = match &path {
        Some(p) => {
            let meta = std::fs::metadata(p).with_context(|| format!("--policy {}", p.display()))?;
            if meta.len() as usize > citybrain_trust::policy::MAX_FILE_BYTES {
                bail!(
                    "--policy {}: larger than {} bytes",
                    p.display(),
                    citybrain_trust::policy::MAX_FILE_BYTES
                );
            }
            let text = std::fs::read_to_string(p).with_context(|| format!("--policy {}", p.display()))?;
            Policy::parse(&text, &p.display().to_string())?
        }
        None => Policy::parse(BUILT_IN_POLICY, "built-in policies/data-sharing.json")?,
    };
    Ok(Arc::new(p))
}

impl TrustArgs {
    pub fn auth_config(&self) -> Result<AuthConfig> {
        let policy = load_policy(self.policy.as_ref())?;
        let oidc = match (&self.oidc_issuer, &self.oidc_jwks) {
            (Some(issuer), Some(jwks)) => {
                let mut c = OidcConfig::new(issuer.clone());
                c.audience = self.oidc_audience.clone();
                c.roles_claim = self.oidc_roles_claim.clone();
                c.departments_claim = self.oidc_departments_claim.clone();
                c.subject_claim = self.oidc_subject_claim.clone();
                let jwks = if jwks.starts_with("https://") || jwks.starts_with("http://") {
                    Jwks::Url(jwks.clone())
                } else {
                    Jwks::File(PathBuf::from(jwks))
                };
                Some(OidcSettings { config: c, jwks })
            }
            _ => None,
        };
        Ok(AuthConfig {
            enabled: !self.no_auth,
            policy,
            oidc,
            rate_per_second: NonZeroU32::new(self.rate_limit),
            burst: NonZeroU32::new(self.rate_burst.max(1)).expect("max(1) is not zero"),
        })
    }
}

/// The loud warning `--no-auth` prints.
pub fn warn_no_auth() {
    let line = "!".repeat(78);
    eprintln!(
        "{line}\n!! AUTHENTICATION IS OFF (--no-auth): every request acts as an administrator.\n\
         !! Anyone who can reach this port can read, change and delete all data.\n\
         !! Use it for local experiments only.\n{line}"
    );
    tracing::warn!("authentication is off (--no-auth)");
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token; prints it once (only its Argon2id hash is stored).
    Create {
        /// Database URL (as for serve).
        #[arg(long, env = "CITYBRAIN_DB", default_value = "sqlite:./citybrain.db")]
        db: String,
        /// admin, officer, citizen or enterprise.
        #[arg(long)]
        role: Role,
        /// An officer's department key (repeat for several); see the policy file.
        #[arg(long = "department")]
        departments: Vec<String>,
        /// The entity id a citizen or enterprise token acts for, e.g. urn:ngsi-ld:Person:123.
        #[arg(long)]
        subject: Option<String>,
        /// A tenant it may use (repeat; `*` for all). Default: the default tenant.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// What it is for (shown in `token list`).
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime, e.g. 90days or 12h (default: until revoked).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Policy file to check department keys against (default as for serve).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, env = "CITYBRAIN_DB", default_value = "sqlite:./citybrain.db")]
        db: String,
    },
    /// Revoke a token by id (a running server stops accepting it within 30 s).
    Revoke {
        #[arg(long, env = "CITYBRAIN_DB", default_value = "sqlite:./citybrain.db")]
        db: String,
        id: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the whole hash chain; exits 1 naming the first altered,
    /// removed or reordered record.
    Verify {
        #[arg(long, env = "CITYBRAIN_DB", default_value = "sqlite:./citybrain.db")]
        db: String,
        /// SEQ:HASH printed by an earlier `audit head`: also catches records
        /// cut from the end since then.
        #[arg(long)]
        anchor: Option<String>,
    },
    /// Print the last record's SEQ:HASH, an anchor to keep somewhere else.
    Head {
        #[arg(long, env = "CITYBRAIN_DB", default_value = "sqlite:./citybrain.db")]
        db: String,
    },
}

/// A new token record for these settings (checked), and its plain text.
#[allow(clippy::too_many_arguments)]
pub fn new_token(
    policy: &Policy,
    role: Role,
    departments: Vec<String>,
    subject: Option<String>,
    tenants: Vec<String>,
    label: String,
    expires_in: Option<std::time::Duration>,
) -> Result<(ApiTokenRecord, String)> {
    if role == Role::Public {
        bail!("--role public: the public needs no token (requests without one are the public's)");
    }
    if role == Role::Officer && departments.is_empty() {
        bail!("--role officer needs at least one --department");
    }
    if let Some(d) = departments.iter().find(|d| !policy.has_department(d)) {
        let known: Vec<&str> = policy.departments().map(|(k, _)| k).collect();
        bail!("--department {d}: not in the policy (known: {})", known.join(", "));
    }
    if role.has_subject() != subject.is_some() {
        bail!(if role.has_subject() {
            "--role citizen/enterprise needs --subject ENTITY_ID (whose records it reads)"
        } else {
            "--subject is for citizen and enterprise tokens only"
        });
    }
    for t in tenants.iter().filter(|t| t.as_str() != "*") {
        citybrain_hub::Hub::check_tenant_name(t).map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    }
    let issued = token::issue()?;
    let now = chrono::Utc::now();
    let expires_at = match expires_in {
        Some(d) => Some(now + chrono::Duration::from_std(d).context("--expires-in is too long")?),
        None => None,
    };
    let rec = ApiTokenRecord {
        id: issued.id,
        secret_hash: issued.secret_hash,
        role: role.to_string(),
        departments,
        subject,
        tenants,
        label,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    Ok((rec, issued.plain))
}

pub async fn token_command(cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            db,
            role,
            departments,
            subject,
            tenants,
            label,
            expires_in,
            policy,
        } => {
            let policy = load_policy(policy.as_ref())?;
            let (rec, plain) = new_token(&policy, role, departments, subject, tenants, label, expires_in)?;
            let store = crate::open_store(&db).await?;
            store.put_api_token(&rec).await?;
            eprintln!("token {} ({}) created; it is shown once:", rec.id, rec.role);
            println!("{plain}");
        }
        TokenCommand::List { db } => {
            let store = crate::open_store(&db).await?;
            println!(
                "{:<16}  {:<10}  {:<24}  {:<10}  label",
                "id", "role", "departments/subject", "state"
            );
            for t in store.api_tokens().await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else if t.expires_at.is_some_and(|e| e <= chrono::Utc::now()) {
                    "expired"
                } else {
                    "active"
                };
                let who = t.subject.clone().unwrap_or_else(|| t.departments.join(","));
                println!("{:<16}  {:<10}  {:<24}  {:<10}  {}", t.id, t.role, who, state, t.label);
            }
        }
        TokenCommand::Revoke { db, id } => {
            let store = crate::open_store(&db).await?;
            let Some(mut t) = store.api_token(&id).await? else {
                bail!("no token {id} (see `citybrain token list`)");
            };
            t.revoked_at = Some(chrono::Utc::now());
            store.put_api_token(&t).await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

/// Walks the chain; Ok(records, head) or the first break.
pub async fn verify_chain(
    store: &Arc<dyn Store>,
    anchor: Option<(u64, String)>,
) -> Result<(u64, Option<(u64, String)>)> {
    let mut v = Verifier::default();
    let mut after = 0;
    let mut anchor_hash: Option<String> = None;
    loop {
        let page = store.audit_records(after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            v.check(r)?;
            if anchor.as_ref().is_some_and(|(s, _)| *s == r.seq) {
                anchor_hash = Some(r.hash.clone());
            }
        }
    }
    let s = v.finish(anchor.as_ref().map(|(s, h)| (*s, h.as_str())), anchor_hash.as_deref())?;
    Ok((s.records, s.head))
}

pub async fn audit_command(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Verify { db, anchor } => {
            let anchor = match anchor {
                None => None,
                Some(a) => {
                    let (s, h) = a
                        .split_once(':')
                        .context("--anchor: expected SEQ:HASH (from `citybrain audit head`)")?;
                    Some((
                        s.parse::<u64>().context("--anchor: SEQ is not a number")?,
                        h.to_string(),
                    ))
                }
            };
            let store = crate::open_store(&db).await?;
            match verify_chain(&store, anchor).await {
                Ok((n, head)) => {
                    let head = head.map_or("(empty)".to_string(), |(s, h)| format!("{s}:{h}"));
                    println!("audit log intact: {n} records; head {head}");
                }
                Err(e) => {
                    eprintln!("audit log BROKEN: {e}");
                    std::process::exit(1);
                }
            }
        }
        AuditCommand::Head { db } => {
            let store = crate::open_store(&db).await?;
            let (_, head) = verify_chain(&store, None).await?;
            match head {
                Some((s, h)) => println!("{s}:{h}"),
                None => println!("(empty)"),
            }
        }
    }
    Ok(())
}
