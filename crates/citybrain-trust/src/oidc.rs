//! OpenID Connect bearer tokens: JWTs signed by the city's identity
//! provider, checked against its published keys (a JWKS document, read from
//! a file or fetched from the provider's `jwks_uri` by the caller).
//!
//! What is checked: the signature (asymmetric algorithms only — RS*, PS*,
//! ES*, EdDSA — with the key the token's `kid` names), `iss`, `aud` when
//! configured, `exp` and `nbf` (30 s leeway). The role comes from a claim
//! (`roles` by default: a string or a list; the most privileged known role
//! wins), the departments from another (`departments`), and for citizens
//! and enterprises the entity id they act for from a third (`sub` by
//! default).

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::{Principal, Role};

/// The largest JWT accepted (bytes).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The largest JWKS document accepted (bytes).
pub const MAX_JWKS_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: Option<String>,
    pub roles_claim: String,
    pub departments_claim: String,
    pub subject_claim: String,
    pub tenants_claim: String,
}

impl OidcConfig {
    pub fn new(issuer: impl Into<String>) -> Self {
        OidcConfig {
            issuer: issuer.into(),
            audience: None,
            roles_claim: "roles".into(),
            departments_claim: "departments".into(),
            subject_claim: "sub".into(),
            tenants_claim: "tenants".into(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    #[error("the key set is not a JWKS document: {0}")]
    KeySet(String),
    #[error("the bearer token is not a valid JWT: {0}")]
    Invalid(String),
    #[error("the token is signed with key '{0}', which the identity provider's key set does not have")]
    UnknownKey(String),
    #[error("the token's claim '{claim}' {what}")]
    Claim { claim: String, what: String },
}

/// Checks tokens against one provider's keys.
#[derive(Debug, Clone)]
pub struct JwtVerifier {
    config: OidcConfig,
    keys: JwkSet,
}

fn asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl JwtVerifier {
    pub fn new(config: OidcConfig, jwks_json: &str) -> Result<Self, OidcError> {
        if jwks_json.len() > MAX_JWKS_BYTES {
            return Err(OidcError::KeySet(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        let keys: JwkSet = serde_json::from_str(jwks_json).map_err(|e| OidcError::KeySet(e.to_string()))?;
        if keys.keys.is_empty() {
            return Err(OidcError::KeySet("it has no keys".into()));
        }
        Ok(JwtVerifier { config, keys })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Whether the key set has the key this token names (else: refetch it).
    pub fn knows_key_of(&self, token: &str) -> bool {
        decode_header(token)
            .ok()
            .and_then(|h| h.kid)
            .is_some_and(|kid| self.keys.find(&kid).is_some())
    }

    /// Who the token speaks for.
    pub fn verify(&self, token: &str) -> Result<Principal, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Invalid(format!("longer than {MAX_TOKEN_BYTES} bytes")));
        }
        let header = decode_header(token).map_err(|e| OidcError::Invalid(e.to_string()))?;
        if !asymmetric(header.alg) {
            return Err(OidcError::Invalid(format!(
                "algorithm {:?} is not accepted (only asymmetric signatures)",
                header.alg
            )));
        }
        let jwk = match &header.kid {
            Some(kid) => self.keys.find(kid).ok_or_else(|| OidcError::UnknownKey(kid.clone()))?,
            None if self.keys.keys.len() == 1 => &self.keys.keys[0],
            None => {
                return Err(OidcError::Invalid(
                    "no 'kid' header, and the key set has several keys".into(),
                ))
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| OidcError::KeySet(e.to_string()))?;
        let mut v = Validation::new(header.alg);
        v.leeway = 30;
        v.validate_nbf = true;
        v.set_issuer(&[&self.config.issuer]);
        match &self.config.audience {
            Some(a) => v.set_audience(&[a]),
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&["exp", "iss"]);
        let data = decode::<Map<String, Value>>(token, &key, &v).map_err(|e| OidcError::Invalid(e.to_string()))?;
        self.principal(&data.claims)
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, OidcError> {
        let c = &self.config;
        let strings = |name: &str| -> Result<Vec<String>, OidcError> {
            match claims.get(name) {
                None | Some(Value::Null) => Ok(vec![]),
                Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_string).collect()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str().map(str::to_string).ok_or_else(|| OidcError::Claim {
                            claim: name.into(),
                            what: "must be a string or a list of strings".into(),
                        })
                    })
                    .collect(),
                Some(_) => Err(OidcError::Claim {
                    claim: name.into(),
                    what: "must be a string or a list of strings".into(),
                }),
            }
        };
        let roles: Vec<Role> = strings(&c.roles_claim)?.iter().filter_map(|r| r.parse().ok()).collect();
        let role = [Role::Admin, Role::Officer, Role::Enterprise, Role::Citizen]
            .into_iter()
            .find(|r| roles.contains(r))
            .ok_or_else(|| OidcError::Claim {
                claim: c.roles_claim.clone(),
                what: "names no citybrain role (admin, officer, citizen, enterprise)".into(),
            })?;
        let sub = claims.get("sub").and_then(Value::as_str).unwrap_or_default();
        let subject = if role.has_subject() {
            let s = claims.get(&c.subject_claim).and_then(Value::as_str).unwrap_or_default();
            if s.is_empty() {
                return Err(OidcError::Claim {
                    claim: c.subject_claim.clone(),
                    what: format!("is needed for the {role} role (the entity id they act for)"),
                });
            }
            Some(s.to_string())
        } else {
            None
        };
        let mut tenants = strings(&c.tenants_claim)?;
        if tenants.is_empty() {
            tenants.push(String::new());
        }
        Ok(Principal {
            actor: format!("oidc:{sub}"),
            role,
            departments: strings(&c.departments_claim)?,
            subject,
            tenants,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    // A test-only Ed25519 key pair (generated for these tests; never used elsewhere).
    const PRIVATE_PEM: &str = include_str!("../tests/fixtures/oidc-test-key.pem");
    const JWKS: &str = include_str!("../tests/fixtures/oidc-test-jwks.json");

    fn token(claims: Value, kid: Option<&str>) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = kid.map(str::to_string);
        encode(&h, &claims, &EncodingKey::from_ed_pem(PRIVATE_PEM.as_bytes()).unwrap()).unwrap()
    }

    fn verifier() -> JwtVerifier {
        let mut c = OidcConfig::new("https://id.city.example");
        c.audience = Some("citybrain".into());
        JwtVerifier::new(c, JWKS).unwrap()
    }

    fn exp() -> i64 {
        chrono::Utc::now().timestamp() + 600
    }

    #[test]
    fn a_signed_token_gives_its_role_departments_and_subject() {
        let t = token(
            json!({"iss": "https://id.city.example", "aud": "citybrain", "exp": exp(), "sub": "u1",
                   "roles": ["citizen", "officer"], "departments": ["health"]}),
            Some("test-1"),
        );
        let p = verifier().verify(&t).unwrap();
        assert_eq!(p.role, Role::Officer);
        assert_eq!(p.departments, ["health"]);
        assert_eq!(p.actor, "oidc:u1");
        let t = token(
            json!({"iss": "https://id.city.example", "aud": "citybrain", "exp": exp(), "sub": "urn:ngsi-ld:Person:1", "roles": "citizen"}),
            Some("test-1"),
        );
        assert_eq!(
            verifier().verify(&t).unwrap().subject.as_deref(),
            Some("urn:ngsi-ld:Person:1")
        );
    }

    #[test]
    fn wrong_issuer_audience_expiry_key_or_role_is_refused() {
        let v = verifier();
        let base =
            json!({"iss": "https://id.city.example", "aud": "citybrain", "exp": exp(), "sub": "u", "roles": "admin"});
        let with = |k: &str, val: Value| {
            let mut c = base.clone();
            c[k] = val;
            c
        };
        assert!(v.verify(&token(base.clone(), Some("test-1"))).is_ok());
        for (claims, why) in [
            (with("iss", json!("https://evil.example")), "issuer"),
            (with("aud", json!("other")), "audience"),
            (with("exp", json!(1_000_000)), "expired"),
            (with("roles", json!("superuser")), "role"),
        ] {
            assert!(v.verify(&token(claims, Some("test-1"))).is_err(), "{why}");
        }
        assert_eq!(
            v.verify(&token(base.clone(), Some("other-key"))),
            Err(OidcError::UnknownKey("other-key".into()))
        );
        // Change one signature byte for sure: a character in the middle of
        // the signature (the last one also carries padding bits).
        let good = token(base, Some("test-1"));
        let at = good.rfind('.').unwrap() + 10;
        let c = good.as_bytes()[at];
        let mut forged = good.clone();
        forged.replace_range(at..at + 1, if c == b'A' { "B" } else { "A" });
        assert!(v.verify(&forged).is_err(), "a changed signature");
        let hs = encode(
            &Header::new(Algorithm::HS256),
            &json!({"iss": "https://id.city.example", "exp": exp(), "roles": "admin"}),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(matches!(v.verify(&hs), Err(OidcError::Invalid(m)) if m.contains("asymmetric")));
    }
}
