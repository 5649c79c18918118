//! The audit log's records and its hash chain.
//!
//! Every record names the one before it: `hash = SHA-256(prev_hash "\n" seq
//! "\n" doc)`, where `doc` is the record's JSON exactly as stored. Changing a
//! record changes its hash and breaks the link from the next; removing or
//! reordering records breaks the sequence or a link. Only removing records
//! from the end leaves a valid shorter chain: [`verify`] catches that against
//! an anchor (a `(seq, hash)` an operator copied out earlier, `citybrain
//! audit head`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use citybrain_ngsild::time::Timestamp;

/// The hash the first record links to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as the caller describes it (the store adds seq and hashes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    /// Who: a token id (`token:…`), an OpenID subject (`oidc:…`), `public`
    /// or `system`.
    pub actor: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departments: Vec<String>,
    /// read, write, delete, refused, decision, ...
    pub action: String,
    /// The API path or operation.
    pub resource: String,
    pub tenant: String,
    /// The personal records touched (entity ids).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<String>,
    /// Whose records they are (the people and enterprises they belong to):
    /// what a citizen's "who looked at my data" lists by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// Why, as the caller declared it (`Citybrain-Purpose` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// HTTP status or decision outcome.
    pub outcome: String,
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: u64,
    /// The entry's JSON as stored (what the hash covers).
    pub doc: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    pub fn entry(&self) -> Result<AuditEntry, String> {
        serde_json::from_str(&self.doc).map_err(|e| format!("record {}: not an audit entry: {e}", self.seq))
    }
}

/// The hash of a record linked to `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: u64, doc: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(doc.as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The record `entry` becomes after `prev` (None: the first).
pub fn link(prev: Option<(u64, &str)>, entry: &AuditEntry) -> AuditRecord {
    let (seq, prev_hash) = match prev {
        Some((s, h)) => (s + 1, h.to_string()),
        None => (1, GENESIS.to_string()),
    };
    let doc = serde_json::to_string(entry).expect("an audit entry always serialises");
    let hash = chain_hash(&prev_hash, seq, &doc);
    AuditRecord {
        seq,
        doc,
        prev_hash,
        hash,
    }
}

/// A break in the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error(
        "record {seq}: expected sequence number {expected} (a record before it was removed, or records were reordered)"
    )]
    Sequence { seq: u64, expected: u64 },
    #[error("record {seq}: it does not link to the record before it (prev_hash {found}, expected {expected})")]
    Link { seq: u64, found: String, expected: String },
    #[error("record {seq}: its content does not match its hash (the record was altered)")]
    Content { seq: u64 },
    #[error("record {seq}: {what}")]
    Unreadable { seq: u64, what: String },
    #[error("the anchor names record {seq}, but the log ends at {last} (records were removed from its end)")]
    Truncated { seq: u64, last: u64 },
    #[error("record {seq}: its hash differs from the anchor's (the log was rewritten)")]
    AnchorMismatch { seq: u64 },
}

/// Walks records in order and checks every link; feed it page by page.
#[derive(Debug, Default)]
pub struct Verifier {
    last: Option<(u64, String)>,
    checked: u64,
}

impl Verifier {
    pub fn check(&mut self, r: &AuditRecord) -> Result<(), ChainError> {
        let (expected_seq, expected_prev) = match &self.last {
            Some((s, h)) => (s + 1, h.as_str()),
            None => (1, GENESIS),
        };
        if r.seq != expected_seq {
            return Err(ChainError::Sequence {
                seq: r.seq,
                expected: expected_seq,
            });
        }
        if r.prev_hash != expected_prev {
            return Err(ChainError::Link {
                seq: r.seq,
                found: r.prev_hash.clone(),
                expected: expected_prev.to_string(),
            });
        }
        if chain_hash(&r.prev_hash, r.seq, &r.doc) != r.hash {
            return Err(ChainError::Content { seq: r.seq });
        }
        r.entry().map_err(|what| ChainError::Unreadable { seq: r.seq, what })?;
        self.last = Some((r.seq, r.hash.clone()));
        self.checked += 1;
        Ok(())
    }

    /// How many records were checked; the last one's seq and hash.
    pub fn finish(self, anchor: Option<(u64, &str)>, anchor_hash_at: Option<&str>) -> Result<Summary, ChainError> {
        let last = self.last.as_ref().map_or(0, |(s, _)| *s);
        if let Some((seq, hash)) = anchor {
            if seq > last {
                return Err(ChainError::Truncated { seq, last });
            }
            if anchor_hash_at != Some(hash) {
                return Err(ChainError::AnchorMismatch { seq });
            }
        }
        Ok(Summary {
            records: self.checked,
            head: self.last,
        })
    }
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    /// The last record's seq and hash (the anchor to keep for next time).
    pub head: Option<(u64, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32) -> AuditEntry {
        AuditEntry {
            at: chrono::DateTime::from_timestamp(1_800_000_000 + n as i64, 0).unwrap(),
            actor: format!("token:{n}"),
            role: "officer".into(),
            departments: vec!["health".into()],
            action: "read".into(),
            resource: "/ngsi-ld/v1/entities".into(),
            tenant: String::new(),
            entities: vec![format!("urn:ngsi-ld:Person:{n}")],
            subjects: vec![format!("urn:ngsi-ld:Person:{n}")],
            purpose: Some("case 7".into()),
            outcome: "200".into(),
        }
    }

    fn chain(n: u32) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|r| (r.seq, r.hash.as_str()));
            let r = link(prev, &entry(i));
            out.push(r);
        }
        out
    }

    fn verify(rs: &[AuditRecord]) -> Result<Summary, ChainError> {
        let mut v = Verifier::default();
        for r in rs {
            v.check(r)?;
        }
        v.finish(None, None)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rs = chain(5);
        let s = verify(&rs).unwrap();
        assert_eq!(s.records, 5);
        assert_eq!(s.head.unwrap().1, rs[4].hash);
    }

    #[test]
    fn altering_removing_or_reordering_is_caught() {
        let rs = chain(5);
        let mut altered = rs.clone();
        altered[2].doc = altered[2].doc.replace("token:2", "token:9");
        assert_eq!(verify(&altered), Err(ChainError::Content { seq: 3 }));

        let mut removed = rs.clone();
        removed.remove(1);
        assert!(matches!(
            verify(&removed),
            Err(ChainError::Sequence { seq: 3, expected: 2 })
        ));

        // Renumbered after a removal: the link breaks instead.
        let mut renumbered = removed.clone();
        for (i, r) in renumbered.iter_mut().enumerate() {
            r.seq = i as u64 + 1;
        }
        assert!(matches!(verify(&renumbered), Err(ChainError::Link { seq: 2, .. })));

        let mut swapped = rs.clone();
        let (a, b) = (swapped[1].clone(), swapped[2].clone());
        swapped[1] = AuditRecord { seq: 2, ..b };
        swapped[2] = AuditRecord { seq: 3, ..a };
        assert!(matches!(verify(&swapped), Err(ChainError::Link { seq: 2, .. })));

        // A rehashed record (content and hash both rewritten) breaks the next link.
        let mut rehashed = rs.clone();
        rehashed[2].doc = rehashed[2].doc.replace("token:2", "token:9");
        rehashed[2].hash = chain_hash(&rehashed[2].prev_hash, 3, &rehashed[2].doc);
        assert!(matches!(verify(&rehashed), Err(ChainError::Link { seq: 4, .. })));
    }

    #[test]
    fn cutting_the_tail_is_caught_against_an_anchor() {
        let rs = chain(5);
        let anchor = (5, rs[4].hash.as_str());
        let mut v = Verifier::default();
        for r in &rs[..3] {
            v.check(r).unwrap();
        }
        assert_eq!(
            v.finish(Some(anchor), None),
            Err(ChainError::Truncated { seq: 5, last: 3 })
        );
    }
}
