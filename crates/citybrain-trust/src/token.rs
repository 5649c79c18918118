//! API tokens: `cbt_<id>_<secret>`. The id finds the stored record; the
//! secret (32 random bytes) is kept only as an Argon2id hash with at least
//! OWASP's minimum cost (19 MiB, 2 passes, 1 lane), so a stolen database
//! does not yield usable tokens.
//!
//! Checking a hash costs tens of milliseconds on purpose; the API keeps the
//! secrets it has already checked (as SHA-256 fingerprints, in memory only)
//! so that only a token's first request pays it.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "cbt_";
/// OWASP's minimum for Argon2id: m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a citybrain API token (expected cbt_<id>_<secret>)")]
    Malformed,
    #[error("cannot draw random bytes: {0}")]
    Random(String),
    #[error("cannot hash the secret: {0}")]
    Hash(String),
}

/// A new token: `plain` is shown once to whoever asked for it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub plain: String,
    pub id: String,
    pub secret_hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random(n: usize) -> Result<Vec<u8>, TokenError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(b)
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("constant Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Draws a new token.
pub fn issue() -> Result<Issued, TokenError> {
    let id = hex(&random(8)?);
    let secret = hex(&random(32)?);
    let secret_hash = hash_secret(&secret)?;
    Ok(Issued {
        plain: format!("{PREFIX}{id}_{secret}"),
        id,
        secret_hash,
    })
}

/// Splits a presented token into id and secret.
pub fn parse(plain: &str) -> Result<(&str, &str), TokenError> {
    let rest = plain.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(TokenError::Malformed)?;
    let hexish = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hexish(id, 16) || !hexish(secret, 64) {
        return Err(TokenError::Malformed);
    }
    Ok((id, secret))
}

/// The Argon2id PHC string of a secret, with a fresh salt.
pub fn hash_secret(secret: &str) -> Result<String, TokenError> {
    let salt = SaltString::encode_b64(&random(16)?).map_err(|e| TokenError::Hash(e.to_string()))?;
    hasher()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| TokenError::Hash(e.to_string()))
}

/// Whether `secret` matches a stored PHC string (constant time in the secret).
/// Hashes made with lower costs than ours are refused, not just checked.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let strong_enough = Params::try_from(&parsed)
        .is_ok_and(|p| p.m_cost() >= MEMORY_KIB && p.t_cost() >= PASSES && p.p_cost() >= LANES);
    strong_enough && hasher().verify_password(secret.as_bytes(), &parsed).is_ok()
}

/// A fast fingerprint of a secret already checked once (for the in-memory cache).
pub fn fingerprint(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_verifies_and_a_changed_one_does_not() {
        let t = issue().unwrap();
        let (id, secret) = parse(&t.plain).unwrap();
        assert_eq!(id, t.id);
        assert!(
            t.secret_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            t.secret_hash
        );
        assert!(verify_secret(secret, &t.secret_hash));
        let mut other = secret.to_string();
        other.replace_range(0..1, if secret.starts_with('0') { "1" } else { "0" });
        assert!(!verify_secret(&other, &t.secret_hash));
        assert!(!t.secret_hash.contains(secret), "the secret is not stored");
    }

    #[test]
    fn weak_hashes_are_refused() {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"s", &salt)
        .unwrap()
        .to_string();
        assert!(!verify_secret("s", &weak));
        assert!(!verify_secret("s", "not a hash"));
    }

    #[test]
    fn malformed_tokens_are_named() {
        for bad in [
            "",
            "cbt_",
            "cbt_abc_def",
            "Bearer x",
            &format!("cbt_{}_{}", "g".repeat(16), "0".repeat(64)),
        ] {
            assert_eq!(parse(bad), Err(TokenError::Malformed), "{bad:?}");
        }
        assert!(parse(&format!("cbt_{}_{}", "a".repeat(16), "0".repeat(64))).is_ok());
    }
}
